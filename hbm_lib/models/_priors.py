"""Priors shared by the model families: how they are written down, checked and built in PyMC."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pymc as pm

from hbm_lib._validation import check_finite, check_positive

#: ``(family, scale)`` with family ``"half_normal"``, ``"half_cauchy"`` or ``"uniform"``.
SdPrior = tuple[str, float]
#: ``("student_t", nu, mu, sigma)`` or ``("normal", mu, sigma)``.
LocationPrior = tuple[Any, ...]

SD_FAMILIES = ("half_normal", "half_cauchy", "uniform")


def check_sd_prior(prior: Any, name: str) -> SdPrior:
    """A prior on a standard deviation as ``(family, scale)``, or a ``ValueError`` naming ``name``."""
    if isinstance(prior, str) or not isinstance(prior, Sequence) or len(prior) != 2:
        raise ValueError(f"{name} must be a tuple (family, scale), e.g. ('half_normal', 5.0); got {prior!r}")
    family, scale = prior
    if family not in SD_FAMILIES:
        raise ValueError(f"{name}: unknown family {family!r}; use one of {SD_FAMILIES}")
    return family, check_positive(scale, f"{name} scale")


def check_location_prior(prior: Any, name: str) -> LocationPrior:
    usage = "('student_t', nu, mu, sigma) or ('normal', mu, sigma)"
    if isinstance(prior, str) or not isinstance(prior, Sequence) or not prior:
        raise ValueError(f"{name} must be a tuple {usage}; got {prior!r}")
    family = prior[0]
    if family == "student_t" and len(prior) == 4:
        return (
            "student_t",
            check_positive(prior[1], f"{name} nu"),
            check_finite(prior[2], f"{name} mu"),
            check_positive(prior[3], f"{name} sigma"),
        )
    if family == "normal" and len(prior) == 3:
        return ("normal", check_finite(prior[1], f"{name} mu"), check_positive(prior[2], f"{name} sigma"))
    raise ValueError(f"{name} must be a tuple {usage}; got {prior!r}")


def sd_variable(name: str, prior: SdPrior):
    """The PyMC random variable of a standard deviation with ``prior`` (inside a model context)."""
    family, scale = prior
    if family == "half_normal":
        return pm.HalfNormal(name, sigma=scale)
    if family == "half_cauchy":
        return pm.HalfCauchy(name, beta=scale)
    return pm.Uniform(name, lower=0.0, upper=scale)


def location_variable(name: str, prior: LocationPrior):
    if prior[0] == "student_t":
        _, nu, mu, sigma = prior
        return pm.StudentT(name, nu=nu, mu=mu, sigma=sigma)
    _, mu, sigma = prior
    return pm.Normal(name, mu=mu, sigma=sigma)

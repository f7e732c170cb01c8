"""A simulated panel of creators observed while a feature is rolled out to them (staggered adoption).

Creator ``i`` in period ``t`` has outcome ``alpha_i + lambda_t + tau_it * treated_it + noise``: a
creator fixed effect, a common period effect (season, trend and shocks), and, from its adoption
period ``F_i`` on, an effect ``tau_it = base_effect_i + growth * (t - F_i)`` whose base is drawn
hierarchically like the experiments' effects. Adoption times are random, independent of everything
else; see :func:`simulate_staggered_panel` for the details, the serially correlated noise and the
two violations it can switch on.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from hbm_lib._validation import Seed, as_generator
from hbm_lib.simulate._checks import check_count, check_real

__all__ = ["StaggeredTruth", "simulate_staggered_panel"]


@dataclass(frozen=True)
class StaggeredTruth:
    """The truth behind a simulated staggered-adoption panel.

    Attributes
    ----------
    creators : pandas.DataFrame
        One row per creator, in panel order: ``creator``, ``genre``, ``size`` (audience, users per
        period), ``first_treated`` (adoption period, pandas ``Int64``, ``<NA>`` if never treated),
        ``n_post`` (treated periods in the panel, 0 if never treated), ``base_effect`` (the
        creator's effect at horizon 0), ``effect`` (its true average effect over its own treated
        periods in the panel, ``base_effect + growth * (n_post - 1) / 2``; NaN if never treated)
        and ``pre_mean`` (its expected untreated outcome level: fixed effect plus the mean period
        effect, which is 0; the ``trend_violation`` and ``anticipation`` terms are not included).
    genres : pandas.DataFrame
        One row per genre: ``genre`` and ``effect`` (the genre's mean base effect, the draw around
        which its creators' base effects scatter).
    by_horizon : pandas.DataFrame
        One row per horizon ``0, 1, ...`` (periods since adoption): ``horizon``, ``effect`` (mean
        true effect over the treated observations at that horizon) and ``n_obs``.
    observations : pandas.DataFrame
        One row per treated creator-period, in panel order: ``creator``, ``period``, ``horizon``
        and ``effect`` (the true effect ``tau_it``).
    att : float
        Mean true effect over all treated observations (the average treatment effect on the treated).
    params : dict
        Every setting used, plus ``median_size`` (the reference size of ``noise_sd``) and
        ``n_never_treated``.
    periods : pandas.DataFrame
        One row per period: ``period`` and ``effect`` (the common period effect ``lambda_t``; mean 0).
    """

    creators: pd.DataFrame
    genres: pd.DataFrame
    by_horizon: pd.DataFrame
    observations: pd.DataFrame
    att: float
    params: dict = field(default_factory=dict)
    periods: pd.DataFrame = field(default_factory=pd.DataFrame)


def simulate_staggered_panel(
    n_creators: int = 200,
    n_periods: int = 24,
    n_genres: int = 5,
    *,
    adoption_periods: tuple[int, ...] | list[int] | np.ndarray = (6, 10, 14, 18),
    never_treated_share: float = 0.25,
    mu: float = 1.0,
    sigma_genre: float = 0.5,
    sigma_creator: float = 0.5,
    growth: float = 0.05,
    level_mean: float = 10.0,
    level_sd: float = 3.0,
    period_sd: float = 1.0,
    noise_sd: float = 2.0,
    min_size: int = 30,
    max_size: int = 3000,
    noise_ar: float = 0.0,
    trend_violation: float = 0.0,
    anticipation: float = 0.0,
    seed: Seed = 0,
) -> tuple[pd.DataFrame, StaggeredTruth]:
    """Simulate a creator panel in which a feature is rolled out at different times.

    Creators ``i`` are observed in periods ``t = 0, ..., n_periods - 1``. A random share of them
    never gets the feature; every other creator adopts it in one of the ``adoption_periods``
    (its cohort, ``first_treated``) and stays treated. The outcome is

    ``y_it = alpha_i + lambda_t + trend_violation * t * ever_i + anticipation * [t = F_i - 1]
    + tau_it * treated_it + e_it``

    with creator fixed effects ``alpha_i ~ N(level_mean, level_sd)``, common period effects
    ``lambda_t``, ``ever_i`` = 1 for creators that adopt within the panel, and effects
    ``tau_it = base_effect_i + growth * (t - F_i)`` that grow with the horizon ``t - F_i``. Base
    effects are hierarchical: genre means ``~ N(mu, sigma_genre)``, creators ``~ N(genre mean,
    sigma_creator)``. The noise ``e_it`` has sd ``noise_sd * sqrt(median_size / size_i)``, larger for
    small audiences, and is serially correlated within creator when ``noise_ar`` is set. Timing is drawn independently of genre, size, level and effect, so parallel
    trends and no anticipation hold exactly unless ``trend_violation`` or ``anticipation`` is set.

    Parameters
    ----------
    n_creators, n_periods, n_genres : int
        Number of creators (at least 2), of periods (at least 2) and of genres (at least 1, at
        most ``n_creators``); creators are assigned to genres in equal shares, in order.
    adoption_periods : sequence of int
        The cohorts: distinct integers in ``1..n_periods - 1``, so that every cohort has at least
        one untreated and one treated period. Each treated creator adopts in one of them with
        equal probability (independently).
    never_treated_share : float
        Share of creators never treated, in ``[0, 1)``: exactly ``round(share * n_creators)``,
        chosen at random; at least one creator must be treated.
    mu, sigma_genre, sigma_creator : float
        The base effects (effect at horizon 0): genre means ``~ N(mu, sigma_genre)``, creator base
        effects ``~ N(genre mean, sigma_creator)``.
    growth : float
        Change of the effect per period since adoption (may be negative).
    level_mean, level_sd : float
        Creator fixed effects ``alpha_i ~ N(level_mean, level_sd)``.
    period_sd : float
        Scale of the common period effects: ``lambda_t = period_sd * (s_t + z_t)``, centred so that
        they average exactly 0 over the panel, where ``s_t = sin(2 pi t / 12) + 2 (t - tbar) /
        (n_periods - 1)`` is a 12-period season plus a linear trend from -1 to +1, and
        ``z_t ~ N(0, 1)`` are shocks. ``period_sd = 0`` removes period effects.
    noise_sd : float
        Noise sd (positive) of a creator of median size, ``median_size = sqrt(min_size * max_size)``
        (the median of the size distribution); creator ``i``'s is
        ``noise_sd * sqrt(median_size / size_i)``, as for a mean over ``size_i`` users.
    noise_ar : float, default 0
        Autocorrelation of each creator's noise from one period to the next, in ``(-1, 1)``: a
        stationary AR(1), ``e_it = noise_ar * e_i,t-1 + sqrt(1 - noise_ar^2) * z_it``, with the
        same marginal sd as without it. Real panels have such serial correlation; standard errors
        that assume independent errors are then too small.
    min_size, max_size : int
        Audience sizes (users per period) are log-uniform on ``[min_size, max_size]``, rounded;
        ``1 <= min_size <= max_size``. ``size`` is an observed covariate that only sets the noise.
    trend_violation : float
        Extra trend per period of creators that will adopt, relative to the never-treated,
        ``trend_violation * t`` in every period, before and after adoption (breaks parallel
        trends). Not part of the effects in the truth.
    anticipation : float
        Extra outcome in the single period before adoption, ``t = F_i - 1`` (breaks no
        anticipation). Not part of the effects in the truth, which stay the post-adoption ones.
    seed : int or numpy.random.Generator
        Randomness; the same seed gives the same data. The random draws do not depend on
        ``trend_violation``, ``anticipation``, ``growth``, ``noise_ar`` or the sds, so two calls with
        the same seed differ only by the terms those settings control.

    Returns
    -------
    panel : pandas.DataFrame
        One row per creator and period, sorted by creator then period: ``creator`` (str),
        ``period`` (int), ``genre`` (str), ``size`` (int), ``first_treated`` (``Int64``, ``<NA>``
        if never treated), ``treated`` (bool, ``period >= first_treated``) and ``outcome`` (float).
    truth : StaggeredTruth
        Per-creator, per-genre, per-horizon and per-observation true effects, the ATT, the period
        effects and the settings.

    Examples
    --------
    >>> panel, truth = simulate_staggered_panel(20, 8, 2, adoption_periods=(3, 5), seed=1)
    >>> list(panel.columns)
    ['creator', 'period', 'genre', 'size', 'first_treated', 'treated', 'outcome']
    >>> len(panel), int(truth.creators["first_treated"].isna().sum())
    (160, 5)
    >>> bool(truth.att == truth.observations["effect"].mean())
    True
    """
    d = _PanelDesign(**{k: v for k, v in locals().items() if k != "seed"}).checked()
    draws = _draw(d, as_generator(seed))
    params = {**dataclasses.asdict(d), "adoption_periods": d.adoption_periods.tolist(),
              "n_never_treated": d.n_never, "median_size": d.median_size,
              "seed": int(seed) if not isinstance(seed, np.random.Generator) else None}
    return _panel_frame(d, draws), _truth(d, draws, params)


@dataclass(frozen=True)
class _PanelDesign:
    """The settings of :func:`simulate_staggered_panel`, checked."""

    n_creators: int
    n_periods: int
    n_genres: int
    adoption_periods: np.ndarray
    never_treated_share: float
    mu: float
    sigma_genre: float
    sigma_creator: float
    growth: float
    level_mean: float
    level_sd: float
    period_sd: float
    noise_sd: float
    min_size: int
    max_size: int
    noise_ar: float
    trend_violation: float
    anticipation: float

    @property
    def n_never(self) -> int:
        return int(round(self.never_treated_share * self.n_creators))

    @property
    def median_size(self) -> float:
        return float(np.sqrt(self.min_size * self.max_size))

    def checked(self) -> _PanelDesign:
        n_creators = check_count(self.n_creators, "n_creators", 2)
        n_periods = check_count(self.n_periods, "n_periods", 2)
        n_genres = check_count(self.n_genres, "n_genres", 1)
        if n_genres > n_creators:
            raise ValueError(f"n_genres must not exceed n_creators; got {n_genres} > {n_creators}")
        share = check_real(self.never_treated_share, "never_treated_share", minimum=0.0)
        if not share < 1:
            raise ValueError(f"never_treated_share must be in [0, 1); got {share:g}")
        n_never = int(round(share * n_creators))
        if n_never >= n_creators:
            raise ValueError(f"never_treated_share leaves no treated creator: round({share:g} * {n_creators}) = {n_never}")
        noise_ar = check_real(self.noise_ar, "noise_ar")
        if not -1 < noise_ar < 1:
            raise ValueError(f"noise_ar must be in (-1, 1) (a stationary AR(1)); got {noise_ar:g}")
        min_size = check_count(self.min_size, "min_size", 1)
        real = {name: check_real(getattr(self, name), name) for name in ("mu", "growth", "level_mean", "trend_violation", "anticipation")}
        spread = {name: check_real(getattr(self, name), name, minimum=0.0) for name in ("sigma_genre", "sigma_creator", "level_sd", "period_sd")}
        return dataclasses.replace(
            self, n_creators=n_creators, n_periods=n_periods, n_genres=n_genres,
            adoption_periods=_check_adoption_periods(self.adoption_periods, n_periods), never_treated_share=share,
            noise_sd=check_real(self.noise_sd, "noise_sd", positive=True), noise_ar=noise_ar, min_size=min_size,
            max_size=check_count(self.max_size, "max_size", min_size), **real, **spread,
        )


def _draw(d: _PanelDesign, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Every random draw, in a fixed order and number that do not depend on the effect, noise or
    violation settings; and what follows from them (one row per creator, one column per period)."""
    genre_idx = np.arange(d.n_creators) * d.n_genres // d.n_creators
    genre_mean = rng.normal(d.mu, d.sigma_genre, size=d.n_genres)
    size = np.round(np.exp(rng.uniform(np.log(d.min_size), np.log(d.max_size), size=d.n_creators))).astype(np.int64)
    base = rng.normal(genre_mean[genre_idx], d.sigma_creator)
    alpha = rng.normal(d.level_mean, d.level_sd, size=d.n_creators)
    never = np.zeros(d.n_creators, dtype=bool)
    never[rng.permutation(d.n_creators)[: d.n_never]] = True
    first = np.full(d.n_creators, -1, dtype=np.int64)  # -1 marks never treated, internally
    first[~never] = rng.choice(d.adoption_periods, size=d.n_creators - d.n_never)
    shocks = rng.normal(0.0, 1.0, size=d.n_periods)
    noise = _ar1(rng.normal(0.0, 1.0, size=(d.n_creators, d.n_periods)), d.noise_ar)

    t = np.arange(d.n_periods)
    smooth = np.sin(2 * np.pi * t / 12) + (2 * (t - t.mean()) / (d.n_periods - 1))
    lam = d.period_sd * (smooth + shocks)
    lam = lam - lam.mean()
    ever = ~never
    horizon = np.where(ever[:, None], t[None, :] - first[:, None], -(10**9))
    treated = ever[:, None] & (horizon >= 0)
    tau = base[:, None] + d.growth * horizon
    noise_sd = d.noise_sd * np.sqrt(d.median_size / size)
    outcome = (
        alpha[:, None] + lam[None, :] + d.trend_violation * t[None, :] * ever[:, None]
        + d.anticipation * (horizon == -1) + np.where(treated, tau, 0.0) + noise_sd[:, None] * noise
    )
    return dict(genre_idx=genre_idx, genre_mean=genre_mean, size=size, base=base, alpha=alpha, never=never,
                first=first, lam=lam, horizon=horizon, treated=treated, tau=tau, outcome=outcome)


def _names(d: _PanelDesign) -> tuple[np.ndarray, np.ndarray]:
    genres = np.array([f"genre {k + 1}" for k in range(d.n_genres)])
    creators = np.array([f"creator {c + 1:0{len(str(d.n_creators))}d}" for c in range(d.n_creators)])
    return genres, creators


def _first_treated(x: dict) -> pd.arrays.IntegerArray:
    first_treated = pd.array(x["first"], dtype="Int64")
    first_treated[x["never"]] = pd.NA
    return first_treated


def _panel_frame(d: _PanelDesign, x: dict) -> pd.DataFrame:
    genre_names, creator_names = _names(d)
    return pd.DataFrame(
        {
            "creator": np.repeat(creator_names, d.n_periods),
            "period": np.tile(np.arange(d.n_periods), d.n_creators).astype(np.int64),
            "genre": np.repeat(genre_names[x["genre_idx"]], d.n_periods),
            "size": np.repeat(x["size"], d.n_periods),
            "first_treated": _first_treated(x).take(np.repeat(np.arange(d.n_creators), d.n_periods)),
            "treated": x["treated"].ravel(),
            "outcome": x["outcome"].ravel(),
        }
    )


def _truth(d: _PanelDesign, x: dict, params: dict) -> StaggeredTruth:
    genre_names, creator_names = _names(d)
    rows, cols = np.nonzero(x["treated"])  # row-major: panel order
    observations = pd.DataFrame(
        {"creator": creator_names[rows], "period": cols.astype(np.int64),
         "horizon": x["horizon"][rows, cols].astype(np.int64), "effect": x["tau"][rows, cols]}
    )
    n_post = x["treated"].sum(axis=1).astype(np.int64)
    ever = ~x["never"]
    creators = pd.DataFrame(
        {
            "creator": creator_names, "genre": genre_names[x["genre_idx"]], "size": x["size"],
            "first_treated": _first_treated(x), "n_post": n_post, "base_effect": x["base"],
            "effect": np.where(ever, x["base"] + d.growth * (n_post - 1) / 2, np.nan),
            "pre_mean": x["alpha"] + x["lam"].mean(),
        }
    )
    by_horizon = observations.groupby("horizon", sort=True)["effect"].agg(effect="mean", n_obs="size").reset_index()
    by_horizon["n_obs"] = by_horizon["n_obs"].astype(np.int64)
    return StaggeredTruth(
        creators=creators,
        genres=pd.DataFrame({"genre": genre_names, "effect": x["genre_mean"]}),
        by_horizon=by_horizon,
        observations=observations,
        att=float(observations["effect"].mean()),
        params=params,
        periods=pd.DataFrame({"period": np.arange(d.n_periods, dtype=np.int64), "effect": x["lam"]}),
    )


def _check_adoption_periods(adoption_periods, n_periods: int) -> np.ndarray:
    """The cohorts as a sorted int array: distinct integers in ``1..n_periods - 1``, at least one."""
    if isinstance(adoption_periods, (str, bytes)) or adoption_periods is None:
        raise ValueError(f"adoption_periods must be a sequence of integers; got {adoption_periods!r}")
    values = np.atleast_1d(np.asarray(adoption_periods, dtype=object))
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"adoption_periods must be a non-empty sequence of integers; got {adoption_periods!r}")
    out = []
    for v in values:
        try:
            ok = not isinstance(v, (bool, np.bool_)) and float(v).is_integer()
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ValueError(f"adoption_periods must hold integers; got {v!r}")
        out.append(int(v))
    cohorts = np.array(out, dtype=np.int64)
    if len(np.unique(cohorts)) != len(cohorts):
        raise ValueError(f"adoption_periods must be unique; got {out}")
    bad = (cohorts < 1) | (cohorts > n_periods - 1)
    if bad.any():
        raise ValueError(
            f"adoption_periods must lie in 1..{n_periods - 1} (n_periods - 1) so every cohort has an "
            f"untreated and a treated period; got {int(cohorts[bad][0])}"
        )
    return np.sort(cohorts)


def _ar1(z: np.ndarray, rho: float) -> np.ndarray:
    """Stationary AR(1) rows with unit variance from independent standard normals ``z`` (rows: units)."""
    if rho == 0:
        return z
    out = np.empty_like(z)
    out[:, 0] = z[:, 0]
    scale = np.sqrt(1.0 - rho**2)
    for t in range(1, z.shape[1]):
        out[:, t] = rho * out[:, t - 1] + scale * z[:, t]
    return out

"""Simulated creator experiments: one small A/B test per creator, creators grouped in genres.

The revenue model
-----------------
A user buys with probability ``buy_prob``; a buyer spends a log-normal amount. So revenue per user
has many exact zeros and a long right tail, like real revenue. Creator ``c`` has its own spend scale
(log-normal around 1), hence a baseline mean revenue per user ``base[c]``. Treatment multiplies
every treated buyer's spend by ``(base[c] + effect[c]) / base[c]``: the zeros stay zeros, the tail
keeps its shape, and the expected revenue per user rises by exactly ``effect[c]`` dollars, which is
the creator's true treatment effect.

True effects are drawn hierarchically: genre means ``genre_effect[g] ~ N(mu, sigma_genre)`` and
creator effects ``effect[c] = genre_effect[g[c]] + sigma_creator * e[c]`` with ``e[c]`` standard
normal, or (``effect_dist="student_t"``) Student-t with ``effect_df`` degrees of freedom rescaled to
unit variance: the same spread of effects, with the fat tails that the effects of experiments at
large platforms show (a few ideas are worth far more, or far less, than most).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from hbm_lib._validation import Seed, as_generator, reject_unknown
from hbm_lib.simulate._checks import check_count, check_real, check_share

__all__ = ["CreatorTruth", "simulate_creator_experiments", "simulate_creator_summaries"]

EFFECT_DISTS = ("normal", "student_t")


@dataclass(frozen=True)
class CreatorTruth:
    """The truth behind a simulation of creator experiments.

    Attributes
    ----------
    creators : pandas.DataFrame
        One row per creator: ``creator``, ``genre``, ``n_users``, ``effect`` (true treatment effect
        on expected revenue per user, dollars) and ``baseline`` (expected revenue per user without
        treatment).
    genres : pandas.DataFrame
        One row per genre: ``genre`` and ``effect`` (the genre's mean effect).
    params : dict
        The population values: ``mu``, ``sigma_genre``, ``sigma_creator`` and the settings used.
    """

    creators: pd.DataFrame
    genres: pd.DataFrame
    params: dict = field(default_factory=dict)

    @property
    def effect(self) -> pd.Series:
        """Each creator's true effect, indexed by creator label (to score estimates against)."""
        return self.creators.set_index("creator")["effect"]


@dataclass(frozen=True)
class _Design:
    """The settings of one simulated platform (the keyword arguments of the simulators)."""

    n_creators: int = 500
    n_genres: int = 5
    mu: float = 0.3
    sigma_genre: float = 0.25
    sigma_creator: float | np.ndarray | list[float] = 0.2
    genre_effects: np.ndarray | list[float] | None = None
    min_users: int = 30
    max_users: int = 5000
    treated_share: float = 0.5
    buy_prob: float = 0.2
    spend_median: float = 5.0
    spend_log_sd: float = 0.75
    creator_scale_log_sd: float = 0.3
    effect_dist: str = "normal"
    effect_df: float = 3.0

    def checked(self) -> _Design:
        n_creators = check_count(self.n_creators, "n_creators", 2)
        n_genres = check_count(self.n_genres, "n_genres", 1)
        if n_genres > n_creators:
            raise ValueError(f"n_genres must not exceed n_creators; got {n_genres} > {n_creators}")
        min_users = check_count(self.min_users, "min_users", 4)
        sigma_creator = np.asarray(self.sigma_creator, dtype=float)
        sigma_creator = np.broadcast_to(sigma_creator, (n_genres,)) if sigma_creator.ndim == 0 else sigma_creator
        if sigma_creator.shape != (n_genres,) or not np.all(np.isfinite(sigma_creator)) or (sigma_creator < 0).any():
            raise ValueError(f"sigma_creator must be one value >= 0 or one per genre ({n_genres}); got {self.sigma_creator!r}")
        genre_effects = self.genre_effects
        if genre_effects is not None:
            genre_effects = np.asarray(genre_effects, dtype=float)
            if genre_effects.shape != (n_genres,) or not np.all(np.isfinite(genre_effects)):
                raise ValueError(f"genre_effects must hold {n_genres} finite values; got {self.genre_effects!r}")
        if self.effect_dist not in EFFECT_DISTS:
            raise ValueError(f"effect_dist must be one of {EFFECT_DISTS}; got {self.effect_dist!r}")
        effect_df = check_real(self.effect_df, "effect_df")
        if not effect_df > 2:
            raise ValueError(f"effect_df must be > 2 (the effects need a finite variance); got {effect_df:g}")
        return dataclasses.replace(
            self, n_creators=n_creators, n_genres=n_genres, min_users=min_users,
            max_users=check_count(self.max_users, "max_users", min_users),
            mu=check_real(self.mu, "mu"),
            sigma_genre=check_real(self.sigma_genre, "sigma_genre", minimum=0.0),
            sigma_creator=sigma_creator, genre_effects=genre_effects,
            treated_share=check_share(self.treated_share, "treated_share"),
            buy_prob=check_share(self.buy_prob, "buy_prob"),
            spend_median=check_real(self.spend_median, "spend_median", positive=True),
            spend_log_sd=check_real(self.spend_log_sd, "spend_log_sd", minimum=0.0),
            creator_scale_log_sd=check_real(self.creator_scale_log_sd, "creator_scale_log_sd", minimum=0.0),
            effect_df=effect_df,
        )


def simulate_creator_experiments(
    n_creators: int = 500,
    n_genres: int = 5,
    *,
    mu: float = 0.3,
    sigma_genre: float = 0.25,
    sigma_creator: float | np.ndarray | list[float] = 0.2,
    genre_effects: np.ndarray | list[float] | None = None,
    min_users: int = 30,
    max_users: int = 5000,
    treated_share: float = 0.5,
    buy_prob: float = 0.2,
    spend_median: float = 5.0,
    spend_log_sd: float = 0.75,
    creator_scale_log_sd: float = 0.3,
    effect_dist: Literal["normal", "student_t"] = "normal",
    effect_df: float = 3.0,
    seed: Seed = 0,
) -> tuple[pd.DataFrame, CreatorTruth]:
    """Simulate one A/B test per creator, creators grouped in genres, with user-level revenue.

    Parameters
    ----------
    n_creators, n_genres : int
        Number of creators (at least 2) and of genres (at least 1, at most ``n_creators``);
        creators are assigned to genres in equal shares, in order.
    mu, sigma_genre : float
        Mean of the genre effects and their sd around ``mu`` (dollars of revenue per user).
    sigma_creator : float or array-like
        Sd of the creator effects around their genre's; one value for all genres, or one per
        genre (to make one genre unlike the others).
    genre_effects : array-like, optional
        Fix the genre means instead of drawing them (one per genre); ``mu`` and ``sigma_genre`` are
        then reported as their mean and sd.
    min_users, max_users : int
        Users per creator are log-uniform on ``[min_users, max_users]`` (``min_users >= 4``).
    treated_share : float
        Share of each creator's users assigned to treatment (exactly, then shuffled).
    buy_prob, spend_median, spend_log_sd, creator_scale_log_sd : float
        The revenue model (see the module docstring).
    effect_dist : {"normal", "student_t"}, default "normal"
        Shape of the creator effects around their genre's mean; either way their sd is
        ``sigma_creator``.
    effect_df : float, default 3.0
        Degrees of freedom of the Student-t (``> 2``; at most 4 the kurtosis is infinite); used
        only with ``effect_dist="student_t"``.
    seed : int or numpy.random.Generator
        Randomness; the same seed gives the same data.

    Returns
    -------
    users : pandas.DataFrame
        One row per user: ``creator``, ``genre``, ``treated`` (0/1), ``revenue``. Turn it into one
        estimate per creator with :func:`hbm_lib.difference_in_means`.
    truth : CreatorTruth
        Each creator's and genre's true effect and the population values.

    Examples
    --------
    >>> users, truth = simulate_creator_experiments(20, 2, max_users=100, seed=1)
    >>> list(users.columns)
    ['creator', 'genre', 'treated', 'revenue']
    >>> len(truth.creators), len(truth.genres)
    (20, 2)
    """
    design = _Design(**{k: v for k, v in locals().items() if k != "seed"}).checked()
    rng = as_generator(seed)
    truth, scale = _draw_creators(design, rng)
    return _draw_users(design, truth, scale, rng), truth


def simulate_creator_summaries(
    n_creators: int = 500,
    n_genres: int = 5,
    *,
    sampling: Literal["normal", "exact"] = "normal",
    seed: Seed = 0,
    **design,
) -> tuple[pd.DataFrame, CreatorTruth]:
    """Per-creator summaries drawn directly, for scales where user rows would not fit in memory.

    Same design and keyword arguments as :func:`simulate_creator_experiments` (``treated_share``
    excluded: arms are split in half), without materialising the users. Two ways to draw each
    creator's estimate:

    * ``sampling="normal"``: ``estimate ~ N(effect, se)``, with ``se`` the *true* standard error,
      computed from the revenue model's variance in each arm. The normal model with known
      standard errors that every estimator in the book assumes, exactly true.
    * ``sampling="exact"``: what :func:`hbm_lib.difference_in_means` would return on the user rows
      of :func:`simulate_creator_experiments`, in distribution: each arm's number of buyers is
      binomial, every buyer's spend is drawn, and the arm's mean and sample variance of revenue
      per user (zeros included) follow from the buyers' sums of spend and squared spend. So the
      estimate is the difference in means of skewed revenue and ``se`` its Welch standard error,
      itself an estimate, at the cost of drawing the buyers only (a fifth of the users by
      default) and without user rows. An arm without buyers has variance 0; a creator with none
      in either arm has ``se = 0`` and is refused, as by :func:`hbm_lib.difference_in_means`.

    Parameters
    ----------
    n_creators, n_genres : int
        As in :func:`simulate_creator_experiments`.
    sampling : {"normal", "exact"}, default "normal"
        How each creator's estimate and standard error are drawn (above).
    seed : int or numpy.random.Generator
        Randomness; the same seed gives the same data.
    **design
        The other keyword arguments of :func:`simulate_creator_experiments`.

    Returns
    -------
    summaries : pandas.DataFrame
        Indexed by creator label (index named ``creator``), with columns ``genre``,
        ``n_control``, ``n_treated``, ``n`` (users), ``estimate`` and ``se``: the columns of
        :func:`hbm_lib.difference_in_means` on user rows (``"exact"`` adds its
        ``mean_control`` and ``mean_treated`` too).
    truth : CreatorTruth

    Examples
    --------
    >>> summaries, truth = simulate_creator_summaries(50_000, seed=1)
    >>> len(summaries), list(summaries.columns)[-2:]
    (50000, ['estimate', 'se'])
    >>> welch, _ = simulate_creator_summaries(100, sampling="exact", seed=1)
    >>> list(welch.columns)
    ['genre', 'n_control', 'n_treated', 'n', 'mean_control', 'mean_treated', 'estimate', 'se']
    """
    reject_unknown("simulate_creator_summaries()", design, [f.name for f in dataclasses.fields(_Design)])
    if "treated_share" in design:
        raise ValueError("treated_share is not supported here: arms are split in half")
    if sampling not in ("normal", "exact"):
        raise ValueError(f"sampling must be 'normal' or 'exact'; got {sampling!r}")
    spec = _Design(n_creators=n_creators, n_genres=n_genres, **design).checked()
    rng = as_generator(seed)
    truth, scale = _draw_creators(spec, rng)
    creators = truth.creators
    lift = (creators["baseline"] + creators["effect"]).to_numpy() / creators["baseline"].to_numpy()
    n = creators["n_users"].to_numpy()
    n_treated = np.round(n * 0.5).astype(int).clip(2, n - 2)
    n_control = n - n_treated
    columns = {"genre": creators["genre"].to_numpy(), "n_control": n_control, "n_treated": n_treated, "n": n}
    if sampling == "normal":
        log_mu, log_sd, buy = np.log(spec.spend_median), spec.spend_log_sd, spec.buy_prob
        # revenue R = buy * spend * scale * lift: E[R] = p m1 s l, E[R^2] = p m2 (s l)^2
        m1, m2 = np.exp(log_mu + log_sd**2 / 2), np.exp(2 * log_mu + 2 * log_sd**2)
        var_control = buy * m2 * scale**2 - (buy * m1 * scale) ** 2
        var_treated = buy * m2 * (scale * lift) ** 2 - (buy * m1 * scale * lift) ** 2
        se = np.sqrt(var_treated / n_treated + var_control / n_control)
        columns |= {"estimate": rng.normal(creators["effect"].to_numpy(), se), "se": se}
    else:
        control = _arm_moments(spec, n_control, scale, rng)
        treated = _arm_moments(spec, n_treated, scale * lift, rng)
        se = np.sqrt(treated[1] / n_treated + control[1] / n_control)
        if (se <= 0).any():
            bad = creators["creator"].iloc[int(np.flatnonzero(se <= 0)[0])]
            raise ValueError(f"{bad!r} has no buyer in either arm, so its standard error is 0; use another seed or larger creators")
        columns |= {"mean_control": control[0], "mean_treated": treated[0], "estimate": treated[0] - control[0], "se": se}
    return pd.DataFrame(columns, index=pd.Index(creators["creator"].to_numpy(), name="creator")), truth


def _arm_moments(d: _Design, n_arm: np.ndarray, scale: np.ndarray, rng: np.random.Generator):
    """Mean and sample variance (ddof 1) of revenue per user in one arm of every creator, drawn
    through the buyers only: the zeros add nothing to the sums of revenue and squared revenue."""
    buyers = rng.binomial(n_arm, d.buy_prob)
    owner = np.repeat(np.arange(len(n_arm)), buyers)
    spend = np.exp(rng.normal(np.log(d.spend_median), d.spend_log_sd, size=len(owner))) * scale[owner]
    total = np.bincount(owner, weights=spend, minlength=len(n_arm))
    squares = np.bincount(owner, weights=spend**2, minlength=len(n_arm))
    mean = total / n_arm
    return mean, np.maximum(squares - n_arm * mean**2, 0.0) / (n_arm - 1)


def _draw_creators(d: _Design, rng: np.random.Generator) -> tuple[CreatorTruth, np.ndarray]:
    """Genres, creators, audience sizes and true effects; also each creator's spend scale."""
    genre_names = np.array([f"genre {k + 1}" for k in range(d.n_genres)])
    genre_mean = rng.normal(d.mu, d.sigma_genre, size=d.n_genres) if d.genre_effects is None else d.genre_effects
    genre_idx = np.arange(d.n_creators) * d.n_genres // d.n_creators
    # "creator 001", ...: zero-padded to the width of the largest number, vectorised for millions
    numbers = np.strings.zfill(np.arange(1, d.n_creators + 1).astype(str), len(str(d.n_creators)))
    creator_names = np.strings.add("creator ", numbers)
    n_users = np.round(np.exp(rng.uniform(np.log(d.min_users), np.log(d.max_users), size=d.n_creators))).astype(int)
    mean_spend = np.exp(np.log(d.spend_median) + d.spend_log_sd**2 / 2)
    scale = np.exp(rng.normal(0.0, d.creator_scale_log_sd, size=d.n_creators))
    baseline = d.buy_prob * mean_spend * scale
    if d.effect_dist == "normal":
        shape = rng.standard_normal(d.n_creators)
    else:  # Student-t scaled to unit variance
        shape = rng.standard_t(d.effect_df, size=d.n_creators) * np.sqrt((d.effect_df - 2.0) / d.effect_df)
    drawn_effect = genre_mean[genre_idx] + d.sigma_creator[genre_idx] * shape
    # revenue cannot fall below zero: a treatment can at most remove (almost) all of it
    effect = np.maximum(drawn_effect, -0.95 * baseline)
    creators = pd.DataFrame(
        {
            "creator": creator_names,
            "genre": genre_names[genre_idx],
            "n_users": n_users,
            "effect": effect,
            "baseline": baseline,
        }
    )
    fixed = d.genre_effects is not None
    params = {
        "mu": float(genre_mean.mean() if fixed else d.mu),
        "sigma_genre": float((genre_mean.std(ddof=1) if d.n_genres > 1 else 0.0) if fixed else d.sigma_genre),
        "sigma_creator": float(d.sigma_creator[0]) if np.ptp(d.sigma_creator) == 0 else d.sigma_creator.tolist(),
        "n_clipped": int(np.sum(effect != drawn_effect)),
        "buy_prob": d.buy_prob,
        "spend_median": d.spend_median,
        "spend_log_sd": d.spend_log_sd,
        "effect_dist": d.effect_dist,
        **({"effect_df": d.effect_df} if d.effect_dist == "student_t" else {}),
    }
    genres = pd.DataFrame({"genre": genre_names, "effect": genre_mean})
    return CreatorTruth(creators=creators, genres=genres, params=params), scale


def _draw_users(d: _Design, truth: CreatorTruth, scale: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    """One row per user: arm (an exact split per creator, shuffled), purchase and revenue."""
    creators = truth.creators
    n_users = creators["n_users"].to_numpy()
    baseline, effect = creators["baseline"].to_numpy(), creators["effect"].to_numpy()
    owner = np.repeat(np.arange(d.n_creators), n_users)
    treated = np.zeros(int(n_users.sum()), dtype=np.int8)
    starts = np.concatenate([[0], np.cumsum(n_users)[:-1]])
    n_treated = np.round(n_users * d.treated_share).astype(int).clip(2, n_users - 2)
    for c in range(d.n_creators):
        arm = np.zeros(n_users[c], dtype=np.int8)
        arm[: n_treated[c]] = 1
        treated[starts[c] : starts[c] + n_users[c]] = rng.permutation(arm)
    buys = rng.random(len(treated)) < d.buy_prob
    spend = np.exp(rng.normal(np.log(d.spend_median), d.spend_log_sd, size=len(treated))) * scale[owner]
    lift = np.where(treated == 1, (baseline[owner] + effect[owner]) / baseline[owner], 1.0)
    return pd.DataFrame(
        {
            "creator": creators["creator"].to_numpy()[owner],
            "genre": creators["genre"].to_numpy()[owner],
            "treated": treated,
            "revenue": np.where(buys, spend * lift, 0.0),
        }
    )

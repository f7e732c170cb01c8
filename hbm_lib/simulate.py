"""Simulated experiments with a known truth, for judging estimators.

:func:`simulate_creator_experiments` generates many small A/B tests, one per creator, with creators
grouped in genres; :func:`summarize_experiments` reduces the user-level rows to one estimate and
standard error per creator, the input of every pooling method in the book. :func:`simulate_staggered_panel` generates a panel
of creators observed over periods while a feature is rolled out to them at different times
(staggered adoption), with effects that vary by creator and grow with time since adoption, and
switches that break parallel trends or no anticipation.

The revenue model
-----------------
A user buys with probability ``buy_prob``; a buyer spends a log-normal amount. So revenue per user
has many exact zeros and a long right tail, like real revenue. Creator ``c`` has its own spend scale
(log-normal around 1), hence a baseline mean revenue per user ``base[c]``. Treatment multiplies
every treated buyer's spend by ``(base[c] + effect[c]) / base[c]``: the zeros stay zeros, the tail
keeps its shape, and the expected revenue per user rises by exactly ``effect[c]`` dollars, which is
the creator's true treatment effect.

True effects are drawn hierarchically: genre means ``genre_effect[g] ~ N(mu, sigma_genre)`` and
creator effects ``effect[c] ~ N(genre_effect[g[c]], sigma_creator)``.

The staggered panel
-------------------
Creator ``i`` in period ``t`` has outcome ``alpha_i + lambda_t + tau_it * treated_it + noise``: a
creator fixed effect, a common period effect (season, trend and shocks), and, from its adoption
period ``F_i`` on, an effect ``tau_it = base_effect_i + growth * (t - F_i)`` whose base is drawn
hierarchically like the experiments' effects. Adoption times are random, independent of everything
else; see :func:`simulate_staggered_panel` for the details and the two violations it can switch on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = [
    "CreatorTruth",
    "StaggeredTruth",
    "simulate_creator_experiments",
    "simulate_creator_summaries",
    "simulate_staggered_panel",
    "summarize_experiments",
]


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
    seed: int | np.random.Generator = 0,
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
    seed : int or numpy.random.Generator
        Randomness; the same seed gives the same data.

    Returns
    -------
    users : pandas.DataFrame
        One row per user: ``creator``, ``genre``, ``treated`` (0/1), ``revenue``.
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
    return _simulate_creators(
        n_creators,
        n_genres,
        mu=mu,
        sigma_genre=sigma_genre,
        sigma_creator=sigma_creator,
        genre_effects=genre_effects,
        min_users=min_users,
        max_users=max_users,
        treated_share=treated_share,
        buy_prob=buy_prob,
        spend_median=spend_median,
        spend_log_sd=spend_log_sd,
        creator_scale_log_sd=creator_scale_log_sd,
        seed=seed,
    )


def _simulate_creators(
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
    seed: int | np.random.Generator = 0,
    users: bool = True,
) -> tuple[pd.DataFrame, CreatorTruth]:
    """Body of :func:`simulate_creator_experiments`; ``users=False`` skips the user rows."""
    n_creators = _check_count(n_creators, "n_creators", 2)
    n_genres = _check_count(n_genres, "n_genres", 1)
    if n_genres > n_creators:
        raise ValueError(f"n_genres must not exceed n_creators; got {n_genres} > {n_creators}")
    min_users = _check_count(min_users, "min_users", 4)
    max_users = _check_count(max_users, "max_users", min_users)
    sigma_creator_g = np.broadcast_to(np.asarray(sigma_creator, dtype=float), (n_genres,)) if np.ndim(sigma_creator) == 0 else np.asarray(sigma_creator, dtype=float)
    if sigma_creator_g.shape != (n_genres,):
        raise ValueError(f"sigma_creator must be one value or one per genre ({n_genres}); got {sigma_creator!r}")
    for name, value in {"sigma_genre": sigma_genre, "sigma_creator": sigma_creator_g.min(),
                        "spend_log_sd": spend_log_sd, "creator_scale_log_sd": creator_scale_log_sd}.items():
        if not np.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be finite and >= 0; got {value}")
    if not np.all(np.isfinite(sigma_creator_g)):
        raise ValueError(f"sigma_creator must be finite and >= 0; got {sigma_creator!r}")
    for name, value in {"treated_share": treated_share, "buy_prob": buy_prob}.items():
        if not 0 < value < 1:
            raise ValueError(f"{name} must be in (0, 1); got {value}")
    if not np.isfinite(mu) or not spend_median > 0:
        raise ValueError("mu must be finite and spend_median positive")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)

    genre_names = np.array([f"genre {k + 1}" for k in range(n_genres)])
    if genre_effects is None:
        genre_mean = rng.normal(mu, sigma_genre, size=n_genres)
    else:
        genre_mean = np.asarray(genre_effects, dtype=float)
        if genre_mean.shape != (n_genres,) or not np.all(np.isfinite(genre_mean)):
            raise ValueError(f"genre_effects must hold {n_genres} finite values; got {genre_effects!r}")
    genre_idx = np.arange(n_creators) * n_genres // n_creators
    creator_names = np.array([f"creator {c + 1:0{len(str(n_creators))}d}" for c in range(n_creators)])
    n_users = np.round(np.exp(rng.uniform(np.log(min_users), np.log(max_users), size=n_creators))).astype(int)

    spend_mu = np.log(spend_median)
    mean_spend = np.exp(spend_mu + spend_log_sd**2 / 2)
    scale = np.exp(rng.normal(0.0, creator_scale_log_sd, size=n_creators))
    baseline = buy_prob * mean_spend * scale
    drawn_effect = rng.normal(genre_mean[genre_idx], sigma_creator_g[genre_idx])
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
    genres = pd.DataFrame({"genre": genre_names, "effect": genre_mean})
    params = {
        "mu": float(mu if genre_effects is None else genre_mean.mean()),
        "sigma_genre": float(sigma_genre if genre_effects is None else genre_mean.std(ddof=1) if n_genres > 1 else 0.0),
        "sigma_creator": float(sigma_creator_g[0]) if np.ptp(sigma_creator_g) == 0 else sigma_creator_g.tolist(),
        "n_clipped": int(np.sum(effect != drawn_effect)),
        "buy_prob": buy_prob,
        "spend_median": spend_median,
        "spend_log_sd": spend_log_sd,
    }
    truth = CreatorTruth(creators=creators, genres=genres, params=params)
    if not users:
        return pd.DataFrame(), truth

    total = int(n_users.sum())
    owner = np.repeat(np.arange(n_creators), n_users)
    treated = np.zeros(total, dtype=np.int8)
    starts = np.concatenate([[0], np.cumsum(n_users)[:-1]])
    n_treated = np.round(n_users * treated_share).astype(int).clip(2, n_users - 2)
    for c in range(n_creators):  # exact split per creator, then shuffled
        arm = np.zeros(n_users[c], dtype=np.int8)
        arm[: n_treated[c]] = 1
        treated[starts[c] : starts[c] + n_users[c]] = rng.permutation(arm)
    buys = rng.random(total) < buy_prob
    spend = np.exp(rng.normal(spend_mu, spend_log_sd, size=total)) * scale[owner]
    lift = np.where(treated == 1, (baseline[owner] + effect[owner]) / baseline[owner], 1.0)
    revenue = np.where(buys, spend * lift, 0.0)

    users = pd.DataFrame(
        {
            "creator": creator_names[owner],
            "genre": genre_names[genre_idx][owner],
            "treated": treated,
            "revenue": revenue,
        }
    )
    return users, truth


def simulate_creator_summaries(n_creators: int = 500, n_genres: int = 5, **kwargs) -> tuple[pd.DataFrame, CreatorTruth]:
    """Per-creator summaries drawn directly, for scales where user rows would not fit in memory.

    Same design and arguments as :func:`simulate_creator_experiments` (``treated_share`` excluded:
    arms are split in half), but instead of simulating users it draws each creator's estimate from
    its sampling distribution, ``effect_hat ~ N(effect, se)``, with ``se`` computed exactly from the
    revenue model's variance in each arm. The normal approximation is what every estimator in the
    book assumes anyway; with user rows, :func:`summarize_experiments` gives the real thing.

    Returns
    -------
    summaries : pandas.DataFrame
        Columns ``creator``, ``genre``, ``n_control``, ``n_treated``, ``n_users``, ``effect``, ``se``.
    truth : CreatorTruth

    Examples
    --------
    >>> summaries, truth = simulate_creator_summaries(50_000, seed=1)
    >>> len(summaries), list(summaries.columns)[-2:]
    (50000, ['effect', 'se'])
    """
    if "treated_share" in kwargs:
        raise ValueError("treated_share is not supported here: arms are split in half")
    seed = kwargs.pop("seed", 0)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    _, truth = _simulate_creators(n_creators, n_genres, **kwargs, seed=rng, users=False)
    creators = truth.creators
    buy_prob = truth.params["buy_prob"]
    log_mu, log_sd = np.log(truth.params["spend_median"]), truth.params["spend_log_sd"]
    scale = creators["baseline"].to_numpy() / (buy_prob * np.exp(log_mu + log_sd**2 / 2))
    # revenue R = buy * spend * scale * lift: E[R] = p m1 s l, E[R^2] = p m2 (s l)^2
    m1, m2 = np.exp(log_mu + log_sd**2 / 2), np.exp(2 * log_mu + 2 * log_sd**2)
    lift = (creators["baseline"] + creators["effect"]).to_numpy() / creators["baseline"].to_numpy()
    var_control = buy_prob * m2 * scale**2 - (buy_prob * m1 * scale) ** 2
    var_treated = buy_prob * m2 * (scale * lift) ** 2 - (buy_prob * m1 * scale * lift) ** 2
    n = creators["n_users"].to_numpy()
    n_treated = np.round(n * 0.5).astype(int).clip(2, n - 2)
    n_control = n - n_treated
    se = np.sqrt(var_treated / n_treated + var_control / n_control)
    summaries = pd.DataFrame(
        {
            "creator": creators["creator"],
            "genre": creators["genre"],
            "n_control": n_control,
            "n_treated": n_treated,
            "n_users": n,
            "effect": rng.normal(creators["effect"].to_numpy(), se),
            "se": se,
        }
    )
    return summaries, truth


def summarize_experiments(
    users: pd.DataFrame,
    *,
    creator: str = "creator",
    genre: str | None = "genre",
    treated: str = "treated",
    outcome: str = "revenue",
) -> pd.DataFrame:
    """One row per creator: difference in means between arms and its Welch standard error.

    Parameters
    ----------
    users : pandas.DataFrame
        One row per user.
    creator, genre, treated, outcome : str
        Column names. ``treated`` must be 0/1; ``genre`` (optional, ``None`` to skip) must be
        constant within a creator.

    Returns
    -------
    pandas.DataFrame
        Columns ``creator``, ``genre`` (if given), ``n_control``, ``n_treated``, ``n_users``,
        ``mean_control``, ``mean_treated``, ``effect`` (treated minus control mean) and ``se``
        (Welch: ``sqrt(s_t^2 / n_t + s_c^2 / n_c)`` with sample variances), in order of first
        appearance of each creator.

    Examples
    --------
    >>> import pandas as pd
    >>> users = pd.DataFrame({"creator": ["a"] * 4, "treated": [0, 0, 1, 1], "revenue": [1.0, 1.0, 2.0, 4.0]})
    >>> summarize_experiments(users, genre=None)[["effect", "se"]]
       effect   se
    0     2.0  1.0
    """
    if not isinstance(users, pd.DataFrame):
        raise TypeError(f"users must be a pandas DataFrame; got {type(users).__name__}")
    needed = [c for c in (creator, genre, treated, outcome) if c is not None]
    missing = [c for c in needed if c not in users.columns]
    if missing:
        raise ValueError(f"users is missing column(s) {missing}; it has {list(users.columns)}")
    if users.empty:
        raise ValueError("users is empty")
    y = pd.to_numeric(users[outcome], errors="coerce").to_numpy(dtype=float)
    if not np.all(np.isfinite(y)):
        i = int(np.flatnonzero(~np.isfinite(y))[0])
        raise ValueError(f"{outcome} must be finite numbers; got {users[outcome].iloc[i]!r} at row {i}")
    arm = users[treated]
    if not arm.isin([0, 1]).all():
        bad = arm[~arm.isin([0, 1])].iloc[0]
        raise ValueError(f"{treated} must be 0 or 1; got {bad!r}")
    if users[creator].isna().any():
        raise ValueError(f"{creator} has missing labels")

    frame = pd.DataFrame({"creator": users[creator].to_numpy(), "arm": arm.to_numpy().astype(int), "y": y})
    stats = frame.groupby(["creator", "arm"], sort=False)["y"].agg(["count", "mean", "var"]).unstack("arm")
    order = pd.unique(frame["creator"])
    stats = stats.reindex(order)
    counts = stats["count"].reindex(columns=[0, 1]).fillna(0).astype(int)
    short = counts[(counts < 2).any(axis=1)]
    if len(short):
        name = short.index[0]
        raise ValueError(
            f"creator {name!r} has an empty or single-user arm (control {short.iloc[0, 0]}, "
            f"treated {short.iloc[0, 1]}); each arm needs at least 2 users for a standard error"
        )
    out = pd.DataFrame(
        {
            "creator": order,
            "n_control": counts[0].to_numpy(),
            "n_treated": counts[1].to_numpy(),
            "mean_control": stats[("mean", 0)].to_numpy(),
            "mean_treated": stats[("mean", 1)].to_numpy(),
        }
    )
    out["n_users"] = out["n_control"] + out["n_treated"]
    out["effect"] = out["mean_treated"] - out["mean_control"]
    out["se"] = np.sqrt(stats[("var", 1)].to_numpy() / out["n_treated"] + stats[("var", 0)].to_numpy() / out["n_control"])
    if genre is not None:
        genres = users.groupby(creator, sort=False)[genre].agg(["nunique", "first"]).reindex(order)
        mixed = genres.index[genres["nunique"] > 1]
        if len(mixed):
            raise ValueError(f"creator {mixed[0]!r} appears in more than one {genre}")
        out.insert(1, "genre", genres["first"].to_numpy())
    if (out["se"] <= 0).any():
        name = out.loc[out["se"] <= 0, "creator"].iloc[0]
        raise ValueError(f"creator {name!r} has zero variance in both arms, so its standard error is 0")
    return out


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
    trend_violation: float = 0.0,
    anticipation: float = 0.0,
    seed: int | np.random.Generator = 0,
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
    sigma_creator)``. The noise ``e_it ~ N(0, noise_sd * sqrt(median_size / size_i))`` is larger for
    small audiences. Timing is drawn independently of genre, size, level and effect, so parallel
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
        ``trend_violation``, ``anticipation``, ``growth`` or the sds, so two calls with the same seed
        differ only by the terms those settings control.

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
    n_creators = _check_count(n_creators, "n_creators", 2)
    n_periods = _check_count(n_periods, "n_periods", 2)
    n_genres = _check_count(n_genres, "n_genres", 1)
    if n_genres > n_creators:
        raise ValueError(f"n_genres must not exceed n_creators; got {n_genres} > {n_creators}")
    cohorts = _check_adoption_periods(adoption_periods, n_periods)
    never_treated_share = _check_real(never_treated_share, "never_treated_share", minimum=0.0)
    if not never_treated_share < 1:
        raise ValueError(f"never_treated_share must be in [0, 1); got {never_treated_share:g}")
    n_never = int(round(never_treated_share * n_creators))
    if n_never >= n_creators:
        raise ValueError(
            f"never_treated_share leaves no treated creator: round({never_treated_share:g} * {n_creators}) = {n_never}"
        )
    mu = _check_real(mu, "mu")
    growth = _check_real(growth, "growth")
    level_mean = _check_real(level_mean, "level_mean")
    trend_violation = _check_real(trend_violation, "trend_violation")
    anticipation = _check_real(anticipation, "anticipation")
    sigma_genre = _check_real(sigma_genre, "sigma_genre", minimum=0.0)
    sigma_creator = _check_real(sigma_creator, "sigma_creator", minimum=0.0)
    level_sd = _check_real(level_sd, "level_sd", minimum=0.0)
    period_sd = _check_real(period_sd, "period_sd", minimum=0.0)
    noise_sd = _check_real(noise_sd, "noise_sd", positive=True)
    min_size = _check_count(min_size, "min_size", 1)
    max_size = _check_count(max_size, "max_size", min_size)
    if not isinstance(seed, np.random.Generator):
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer or a numpy Generator; got {seed!r}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)

    # draws, in a fixed order and number that do not depend on the effect or violation settings
    genre_names = np.array([f"genre {k + 1}" for k in range(n_genres)])
    genre_idx = np.arange(n_creators) * n_genres // n_creators
    creator_names = np.array([f"creator {c + 1:0{len(str(n_creators))}d}" for c in range(n_creators)])
    genre_mean = rng.normal(mu, sigma_genre, size=n_genres)
    size = np.round(np.exp(rng.uniform(np.log(min_size), np.log(max_size), size=n_creators))).astype(np.int64)
    base = rng.normal(genre_mean[genre_idx], sigma_creator)
    alpha = rng.normal(level_mean, level_sd, size=n_creators)
    never = np.zeros(n_creators, dtype=bool)
    never[rng.permutation(n_creators)[:n_never]] = True
    first = np.full(n_creators, -1, dtype=np.int64)  # -1 marks never treated, internally
    first[~never] = rng.choice(cohorts, size=n_creators - n_never)
    shocks = rng.normal(0.0, 1.0, size=n_periods)
    noise = rng.normal(0.0, 1.0, size=(n_creators, n_periods))

    t = np.arange(n_periods)
    smooth = np.sin(2 * np.pi * t / 12) + (2 * (t - t.mean()) / (n_periods - 1))
    lam = period_sd * (smooth + shocks)
    lam = lam - lam.mean()
    median_size = float(np.sqrt(min_size * max_size))
    creator_noise_sd = noise_sd * np.sqrt(median_size / size)

    ever = ~never
    horizon = np.where(ever[:, None], t[None, :] - first[:, None], -(10**9))
    treated = ever[:, None] & (horizon >= 0)
    tau = base[:, None] + growth * horizon
    outcome = (
        alpha[:, None]
        + lam[None, :]
        + trend_violation * t[None, :] * ever[:, None]
        + anticipation * (horizon == -1)
        + np.where(treated, tau, 0.0)
        + creator_noise_sd[:, None] * noise
    )

    first_treated = pd.array(first, dtype="Int64")
    first_treated[never] = pd.NA
    panel = pd.DataFrame(
        {
            "creator": np.repeat(creator_names, n_periods),
            "period": np.tile(t, n_creators).astype(np.int64),
            "genre": np.repeat(genre_names[genre_idx], n_periods),
            "size": np.repeat(size, n_periods),
            "first_treated": first_treated.take(np.repeat(np.arange(n_creators), n_periods)),
            "treated": treated.ravel(),
            "outcome": outcome.ravel(),
        }
    )

    rows, cols = np.nonzero(treated)  # row-major: panel order
    observations = pd.DataFrame(
        {
            "creator": creator_names[rows],
            "period": cols.astype(np.int64),
            "horizon": horizon[rows, cols].astype(np.int64),
            "effect": tau[rows, cols],
        }
    )
    n_post = treated.sum(axis=1).astype(np.int64)
    effect = np.where(ever, base + growth * (n_post - 1) / 2, np.nan)
    creators = pd.DataFrame(
        {
            "creator": creator_names,
            "genre": genre_names[genre_idx],
            "size": size,
            "first_treated": first_treated,
            "n_post": n_post,
            "base_effect": base,
            "effect": effect,
            "pre_mean": alpha + lam.mean(),
        }
    )
    by_horizon = (
        observations.groupby("horizon", sort=True)["effect"].agg(effect="mean", n_obs="size").reset_index()
    )
    by_horizon["n_obs"] = by_horizon["n_obs"].astype(np.int64)
    params = {
        "n_creators": n_creators,
        "n_periods": n_periods,
        "n_genres": n_genres,
        "adoption_periods": cohorts.tolist(),
        "never_treated_share": never_treated_share,
        "n_never_treated": n_never,
        "mu": mu,
        "sigma_genre": sigma_genre,
        "sigma_creator": sigma_creator,
        "growth": growth,
        "level_mean": level_mean,
        "level_sd": level_sd,
        "period_sd": period_sd,
        "noise_sd": noise_sd,
        "median_size": median_size,
        "min_size": min_size,
        "max_size": max_size,
        "trend_violation": trend_violation,
        "anticipation": anticipation,
        "seed": int(seed) if not isinstance(seed, np.random.Generator) else None,
    }
    truth = StaggeredTruth(
        creators=creators,
        genres=pd.DataFrame({"genre": genre_names, "effect": genre_mean}),
        by_horizon=by_horizon,
        observations=observations,
        att=float(observations["effect"].mean()),
        params=params,
        periods=pd.DataFrame({"period": t.astype(np.int64), "effect": lam}),
    )
    return panel, truth


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


def _check_real(value, name: str, *, minimum: float | None = None, positive: bool = False) -> float:
    """``value`` as a finite float, optionally ``>= minimum`` or ``> 0``; else a ValueError naming ``name``."""
    try:
        if isinstance(value, bool):
            raise TypeError
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number; got {value!r}") from None
    if not np.isfinite(out):
        raise ValueError(f"{name} must be finite; got {value!r}")
    if positive and not out > 0:
        raise ValueError(f"{name} must be positive; got {out:g}")
    if minimum is not None and out < minimum:
        raise ValueError(f"{name} must be finite and >= {minimum:g}; got {out:g}")
    return out


def _check_count(value, name: str, minimum: int) -> int:
    try:
        integral = not isinstance(value, bool) and float(value).is_integer()
    except (TypeError, ValueError):
        integral = False
    if not integral:
        raise ValueError(f"{name} must be an integer; got {value!r}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}; got {value}")
    return value


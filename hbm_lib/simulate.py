"""Simulated experiments with a known truth, for judging estimators.

:func:`simulate_creator_experiments` generates many small A/B tests, one per creator, with creators
grouped in genres; :func:`summarize_experiments` reduces the user-level rows to one estimate and
standard error per creator, the input of every pooling method in the book.

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
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = ["CreatorTruth", "simulate_creator_experiments", "simulate_creator_summaries", "summarize_experiments"]


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


def _check_count(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not float(value).is_integer():
        raise ValueError(f"{name} must be an integer; got {value!r}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}; got {value}")
    return value

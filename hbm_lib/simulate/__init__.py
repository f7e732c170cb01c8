"""Simulated data with a known truth, for judging estimators.

* ``hbm_lib.simulate.creators``: many small A/B tests, one per creator, creators grouped in
  genres, with user-level revenue (:func:`simulate_creator_experiments`) or per-creator summaries
  drawn directly at any scale (:func:`simulate_creator_summaries`);
* ``hbm_lib.simulate.panels``: a panel of creators observed over periods while a feature is
  rolled out to them at different times (:func:`simulate_staggered_panel`), with effects that vary
  by creator and grow with time since adoption, optional serially correlated noise, and switches
  that break parallel trends or no anticipation.
"""

from hbm_lib.simulate.creators import CreatorTruth, simulate_creator_experiments, simulate_creator_summaries
from hbm_lib.simulate.panels import StaggeredTruth, simulate_staggered_panel

__all__ = [
    "CreatorTruth",
    "simulate_creator_experiments",
    "simulate_creator_summaries",
    "StaggeredTruth",
    "simulate_staggered_panel",
]

"""Pure bandit math: posteriors, policies with ``pull``/``update``, offline replay and off-policy estimates.

Nothing here imports MLServer, a store or a metric: the same objects run inside the routers,
in ``seldon_market_ab.analysis.router_evidence`` and in the tests.
"""

from .policies import (
           Bandit,
           EpsilonGreedy,
           FixedSplit,
           Policy,
           State,
           ThompsonSampling,
           draw,
           state_from_dict,
           state_to_dict,
)
from .posteriors import FAMILIES, ArmStats, BetaBernoulli, NormalGamma, probability_best

__all__ = ["FAMILIES", "ArmStats", "Bandit", "BetaBernoulli", "EpsilonGreedy", "FixedSplit", "NormalGamma", "Policy",
           "State", "ThompsonSampling", "draw", "probability_best", "state_from_dict", "state_to_dict"]

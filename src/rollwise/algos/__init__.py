"""Pure-torch RL math: advantage estimators, policy losses, loss aggregation and KL, each behind a registry.

The trainer looks each part up by its config name (``ADVANTAGES.get("grpo")``) and calls the shared signature.
"""

from rollwise.algos.advantages import (
    ADVANTAGES,
    AdvantageContext,
    AdvantageFn,
    AdvantageOutput,
    compute_group_mean_std,
    group_sizes,
)
from rollwise.algos.aggregation import AGGREGATIONS, compute_aggregate, count_tokens_and_seqs
from rollwise.algos.kl import KL_ESTIMATORS
from rollwise.algos.losses import POLICY_LOSSES, LossParams, PolicyLossFn, masked_mean

__all__ = [
    "ADVANTAGES",
    "AGGREGATIONS",
    "KL_ESTIMATORS",
    "POLICY_LOSSES",
    "AdvantageContext",
    "AdvantageFn",
    "AdvantageOutput",
    "LossParams",
    "PolicyLossFn",
    "compute_aggregate",
    "compute_group_mean_std",
    "count_tokens_and_seqs",
    "group_sizes",
    "masked_mean",
]

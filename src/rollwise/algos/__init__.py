"""Pure-torch RL math: advantage estimators, policy losses, loss aggregation and KL, each behind a registry.

The trainer looks each part up by its config name (``ADVANTAGES.get("grpo")``) and calls the shared signature.
The registries live in ``catalog.py`` (no torch), so the config can check names and knobs without importing
torch; the names below are imported on first use.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "ADVANTAGES": "catalog", "AGGREGATIONS": "catalog", "KL_ESTIMATORS": "catalog", "POLICY_LOSSES": "catalog",
    "SHAPERS": "catalog", "CORRECTIONS": "catalog", "ShapingContext": "shaping", "needs_of": "shaping",
    "AdvantageContext": "advantages", "AdvantageFn": "advantages", "AdvantageOutput": "advantages",
    "compute_group_mean_std": "advantages", "group_sizes": "advantages",
    "compute_aggregate": "aggregation", "count_tokens_and_seqs": "aggregation",
    "LossParams": "losses", "PolicyLossFn": "losses", "masked_mean": "losses",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'rollwise.algos' has no attribute {name!r}")
    return getattr(import_module(f"rollwise.algos.{_EXPORTS[name]}"), name)

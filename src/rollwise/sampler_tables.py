"""A validated ``SamplerConfig`` and its pipeline from keyword arguments, for tests and benches.

Above :mod:`rollwise.config_models` (which holds ``SamplerConfig``) and :mod:`rollwise.sampling.presets`
(which resolves presets and builds the pipeline of a validated config), so ``sampling/`` never imports config.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rollwise.config_models import SamplerConfig
from rollwise.sampling import presets
from rollwise.sampling.base import Estimator, RescueSources
from rollwise.sampling.pipeline import SamplingPipeline


def sampler_config(preset: str = "uniform", params: dict[str, dict[str, Any]] | None = None,
                   **table: Any) -> SamplerConfig:
    """A validated ``SamplerConfig`` from keyword arguments (see :func:`build_pipeline`)."""
    data = presets.resolve({"type": preset, **table})
    for name, kn in (params or {}).items():
        hits = [slot for slot in [*presets.SLOTS, "replay"] if isinstance(data.get(slot), dict)
                and (data[slot].get("type") == name or slot == name)]
        hits += [f"gates.{i}" for i, g in enumerate(data["gates"]) if g["type"] == name]
        if not hits:
            raise ValueError(f"params for {name!r}: no slot of this sampler holds it")
        if len(hits) > 1:
            raise ValueError(f"params for {name!r} match slots {hits}; key the knobs by slot name")
        for slot in hits:
            if slot.startswith("gates."):
                data["gates"][int(slot[6:])] |= kn
            else:
                data[slot] = data[slot] | kn
    return SamplerConfig.model_validate(data)


def build_pipeline(s: Any = None, *, pool_size: int, total_steps: int, seed: int,
                   levels: np.ndarray | None = None, estimate: Estimator | None = None,
                   sources: RescueSources | None = None, **overrides: Any) -> SamplingPipeline:
    """The pipeline of a validated ``SamplerConfig`` ``s``; or of the sampler table given as keyword arguments
    (``preset=`` is ``type=``; ``params={component name: knobs}`` tunes whichever slot holds that component)."""
    if s is None:
        s = sampler_config(**overrides)
    return presets.build_pipeline(s, pool_size=pool_size, total_steps=total_steps, seed=seed, levels=levels,
                                  estimate=estimate, sources=sources)

"""Dataset-backed tasks (``task.suite = "dataset"``): a training pool and held-out eval groups from the
loaders, with a difficulty level per prompt when the data has one (MATH ``level``, or ``task.group_by``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from rollwise.data.loaders import Example, load_preset
from rollwise.types import Prompt


def to_prompts(examples: list[Example]) -> list[Prompt]:
    return [Prompt(e.uid, e.prompt, e.reference, dict(e.meta)) for e in examples]


def group_prompts(prompts: list[Prompt], field: str) -> dict[str, list[Prompt]]:
    """Split prompts by a meta field (all in one group ``all`` when the field is absent)."""
    groups: dict[str, list[Prompt]] = {}
    for p in prompts:
        key = p.meta.get(field)
        groups.setdefault("all" if key is None else f"{field}{key}", []).append(p)
    return dict(sorted(groups.items()))


def build_dataset_task(cfg: Any) -> Any:
    """TaskData for a dataset preset or path (``task.dataset``), eval on ``task.eval_dataset``."""
    from rollwise.train.setup import TaskData

    t = cfg.task
    if not t.dataset:
        raise ValueError("task.dataset must name a dataset (e.g. gsm8k:train) when task.suite='dataset'")
    pool = to_prompts(load_preset(t.dataset, limit=t.train_limit, on_error=t.on_error))
    if not pool:
        raise ValueError(f"task.dataset {t.dataset!r} has no usable rows")
    eval_prompts = to_prompts(load_preset(t.eval_dataset, limit=t.eval_limit, on_error=t.on_error)) \
        if t.eval_dataset else []
    names = sorted({str(p.meta.get(t.group_by)) for p in pool if p.meta.get(t.group_by) is not None})
    levels = None
    if names:
        index = {n: i for i, n in enumerate(names)}
        levels = np.array([index.get(str(p.meta.get(t.group_by)), 0) for p in pool], dtype=np.int64)
    return TaskData(pool, levels, names, group_prompts(eval_prompts, t.group_by), set())

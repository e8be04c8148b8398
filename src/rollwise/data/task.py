"""The task layer shared by training, evaluation and integrations: the training pool (with a difficulty level
per prompt, if known), the held-out eval sets, and how a config builds them (the procedural suite or a
dataset)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rollwise.data.tasks import build_suite
from rollwise.types import Prompt


@dataclass
class TaskData:
    """The training pool (with a difficulty level per prompt, if known) and held-out eval sets."""

    pool: list[Prompt]
    levels: np.ndarray | None
    level_names: list[str]
    eval_sets: dict[str, list[Prompt]]
    heldout: set[str]  # prompt texts the warm start must not see
    skipped: dict[str, int] = field(default_factory=dict)  # dataset rows skipped at load, by reason


def train_eval_sets(task: TaskData, size: int) -> dict[str, list[Prompt]]:
    """The first ``size`` pool prompts of every level (pool order is fixed by the seed): prompts RL trains on."""
    if size <= 0:
        return {}
    names = task.level_names if task.levels is not None else ["all"]
    sets: dict[str, list[Prompt]] = {n: [] for n in names}
    for i, p in enumerate(task.pool):
        name = names[int(task.levels[i])] if task.levels is not None else "all"
        if len(sets[name]) < size:
            sets[name].append(p)
    return sets


def build_task(cfg: Any) -> TaskData:
    """The procedural suite (embedded default) or a dataset pool with its eval split."""
    t = cfg.task
    if t.suite == "arith":
        s = build_suite(t.levels, t.train_size, t.eval_size, t.seed, t.answer_order)
        return TaskData(s.pool, s.levels, s.level_names, s.eval_sets, s.heldout)
    if t.suite == "dataset":
        from rollwise.data.sources import build_dataset_task

        return build_dataset_task(cfg)
    raise ValueError(f"task.suite: unknown suite {t.suite!r}; choose 'arith' or 'dataset'")



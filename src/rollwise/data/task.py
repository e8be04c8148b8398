"""The task layer shared by training, evaluation and integrations: the training pool (with a difficulty level
per prompt, if known), the held-out eval sets, and how a config builds them (a procedural suite or a
dataset)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rollwise.data.tasks import TaskSuite, build_suite
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


def _suite_task(s: TaskSuite) -> TaskData:
    return TaskData(s.pool, s.levels, s.level_names, s.eval_sets, s.heldout)


def _arith_task(cfg: Any) -> TaskData:
    t = cfg.task
    return _suite_task(build_suite(t.levels, t.train_size, t.eval_size, t.seed, t.answer_order))


def _words_task(cfg: Any) -> TaskData:
    from rollwise.data.word_problems import build_word_suite

    t = cfg.task
    return _suite_task(build_word_suite(t.levels, t.train_size, t.eval_size, t.seed))


def _dataset_task(cfg: Any) -> TaskData:
    from rollwise.data.sources import build_dataset_task

    return build_dataset_task(cfg)


#: task.suite -> builder of its TaskData (keys: config_models.TASK_SUITES)
SUITE_BUILDERS: dict[str, Callable[[Any], TaskData]] = {
    "arith": _arith_task, "words": _words_task, "dataset": _dataset_task,
}


def build_task(cfg: Any) -> TaskData:
    """The task of ``task.suite``: the procedural arithmetic suite (embedded default), arithmetic word problems,
    or a dataset pool with its eval split."""
    suite = cfg.task.suite
    if suite not in SUITE_BUILDERS:
        raise ValueError(f"task.suite: unknown suite {suite!r}; choose one of {sorted(SUITE_BUILDERS)}")
    return SUITE_BUILDERS[suite](cfg)

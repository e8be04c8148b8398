"""The task layer shared by training, evaluation and integrations: the training pool (with a difficulty level
per prompt, if known), the held-out eval sets, and how a config builds them (a procedural suite or a
dataset); :func:`build_eval_sets` gives ``rollwise eval`` its sets from the same builders."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import ValidationError

from rollwise.config import ConfigError, dataset_verifier
from rollwise.data.loaders import DatasetError, PromptList
from rollwise.data.sources import dataset_eval_sets, group_prompts, load_task_prompts, skipped_by_reason
from rollwise.data.tasks import TaskSuite, build_suite
from rollwise.data.word_problems import build_word_suite
from rollwise.envs.base import env_factory
from rollwise.types import Prompt

PROCEDURAL_SUITES = ("arith", "words")  # `rollwise eval --data` names that mean a procedural suite's held-out split


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
    t = cfg.task
    return _suite_task(build_word_suite(t.levels, t.train_size, t.eval_size, t.seed))


def build_dataset_task(cfg: Any) -> TaskData:
    """TaskData for a dataset preset or path (``task.dataset``), eval on ``task.eval_dataset`` split by
    ``task.group_by``; rows skipped at load (train and eval together) are counted by reason in its ``skipped``."""
    t = cfg.task
    if not t.dataset:
        raise DatasetError("task.dataset must name a dataset (e.g. gsm8k:train) when task.suite='dataset'")
    if t.dataset.startswith("reasoning_gym:"):
        return _reasoning_gym_task(cfg)
    pool = load_task_prompts(t, t.dataset, t.train_limit)
    if not pool:
        why = f" (skipped: {skipped_by_reason(pool)})" if pool.skipped else ""
        raise DatasetError(f"task.dataset {t.dataset!r} has no usable rows{why}")
    evals = load_task_prompts(t, t.eval_dataset, t.eval_limit) if t.eval_dataset else PromptList()
    names = sorted({str(p.meta.get(t.group_by)) for p in pool if p.meta.get(t.group_by) is not None})
    levels = None
    if names:
        index = {n: i for i, n in enumerate(names)}
        levels = np.array([index.get(str(p.meta.get(t.group_by)), 0) for p in pool], dtype=np.int64)
    return TaskData(list(pool), levels, names, group_prompts(list(evals), t.group_by), set(),
                    skipped=skipped_by_reason(pool, evals))


def _reasoning_gym_task(cfg: Any) -> TaskData:
    """A ``reasoning_gym:...`` mix (``data/reasoning_gym_tasks.py``): generated, so its held-out sets come with it
    (``task.eval_size`` per entry; ``task.eval_dataset`` unused); scored only by the ``reasoning_gym`` verifiers."""
    from rollwise.data.reasoning_gym_tasks import build_rg_suite  # lazy: imports reasoning-gym

    t = cfg.task
    if t.verifier_name() not in ("reasoning_gym", "reasoning_gym_number"):
        raise ConfigError("task.verifier: reasoning_gym tasks are scored by their own score_answer; set "
                          "task.verifier = 'reasoning_gym' (or 'reasoning_gym_number' for untagged numeric replies)")
    size = min(t.train_size, t.train_limit or t.train_size)
    return _suite_task(build_rg_suite(t.dataset, size, t.eval_size, t.seed))


#: task.suite -> builder of its TaskData (keys: config_models.TASK_SUITES)
SUITE_BUILDERS: dict[str, Callable[[Any], TaskData]] = {
    "arith": _arith_task, "words": _words_task, "dataset": build_dataset_task,
}


def build_env_task(cfg: Any) -> TaskData:
    """The tasks of the ``[env]`` environment: ``task.train_size`` train tasks drawn with ``task.seed``, and its
    held-out split (``task.eval_size`` tasks, or the environment's own set) as one eval set named after it."""
    env = env_factory(cfg.env)()
    t = cfg.task
    return TaskData(env.tasks("train", t.train_size, t.seed), None, [],
                    {cfg.env.type: env.tasks("eval", t.eval_size, t.seed + 1)}, set())


def build_task(cfg: Any) -> TaskData:
    """The task of ``task.suite``: the procedural arithmetic suite (embedded default), arithmetic word problems,
    or a dataset pool with its eval split; with an ``[env]`` section, the environment's tasks."""
    if getattr(cfg, "env", None) is not None:  # a multi-turn run: episodes of the environment's tasks
        return build_env_task(cfg)
    suite = cfg.task.suite
    if suite not in SUITE_BUILDERS:
        raise ValueError(f"task.suite: unknown suite {suite!r}; choose one of {sorted(SUITE_BUILDERS)}")
    return SUITE_BUILDERS[suite](cfg)


def procedural_eval_sets(cfg: Any, suite: str) -> tuple[dict[str, list[Prompt]], str]:
    """The held-out sets of procedural ``suite`` built from ``cfg.task`` (levels, sizes, seed) and its verifier.
    ``cfg`` may name another suite (``--data words`` under the default config): its levels must then still be
    levels of ``suite``, else a one-line :class:`ConfigError`."""
    try:
        if cfg.task.suite != suite:
            cfg = cfg.model_copy(update={"task": type(cfg.task).model_validate({**cfg.task.model_dump(),
                                                                                "suite": suite})})
        return build_task(cfg).eval_sets, cfg.task.verifier_name()
    except (ValidationError, ValueError) as exc:
        msg = ("; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
               if isinstance(exc, ValidationError) else str(exc))
        hint = " (e.g. --config configs/smollm2_arith.toml)" if suite == "words" else ""
        raise ConfigError(f"--data {suite}: {msg}{hint}") from None


def build_eval_sets(cfg: Any, data: str) -> tuple[dict[str, list[Prompt]], str, dict[str, int]]:
    """(eval sets, verifier name, ``data/skipped_*`` counts) of ``rollwise eval --data``: a procedural suite's
    held-out split (``arith``, ``words``), else a dataset preset or file scored with ``task.verifier`` (else its
    family's, ``math`` for a plain file)."""
    if data in PROCEDURAL_SUITES:
        sets, verifier = procedural_eval_sets(cfg, data)
        return sets, verifier, {}
    sets, skipped = dataset_eval_sets(cfg.task, data)
    return sets, cfg.task.verifier if cfg.task.verifier != "auto" else dataset_verifier(data), skipped

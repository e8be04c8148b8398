"""Dataset-backed tasks (``task.suite = "dataset"``): a training pool and held-out eval groups from the
loaders, with a difficulty level per prompt when the data has one (MATH ``level``, or ``task.group_by``).
Rows skipped at load (``task.on_error = "skip"``) are counted by reason on the task (``skipped``) and reach
metrics as ``data/skipped_*`` through :func:`skip_metrics`."""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from rollwise.data.loaders import SKIP_REASONS, DatasetError, Example, ExampleList, load_preset
from rollwise.types import Prompt


def to_prompts(examples: list[Example]) -> list[Prompt]:
    return [Prompt(e.uid, e.prompt, e.reference, dict(e.meta)) for e in examples]


_NUMBER = re.compile(r"[-+]?[0-9]+(?:\.[0-9]+)?")
_TAKEN = ("", "all", "mean")  # eval/all and eval/mean already name the whole set and the mean over sets


def group_label(field: str, value: Any) -> str:
    """The eval set name of prompts whose ``field`` is ``value``: the value itself (``add`` -> ``eval/add/...``),
    but a number keeps the field's name (level 3 or "Level 3" -> ``level3``), as does a name already taken."""
    text = str(value).strip()
    if text[:len(field)].lower() == field.lower() and _NUMBER.fullmatch(text[len(field):].strip()):
        text = text[len(field):].strip()  # MATH writes its levels "Level 3"
    return f"{field}{text}" if _NUMBER.fullmatch(text) or text in _TAKEN else text


def group_prompts(prompts: list[Prompt], field: str) -> dict[str, list[Prompt]]:
    """Split prompts by a meta field into sets named by :func:`group_label` (all in one group ``all`` when the
    field is absent)."""
    groups: dict[str, list[Prompt]] = {}
    for p in prompts:
        key = p.meta.get(field)
        groups.setdefault("all" if key is None else group_label(field, key), []).append(p)
    return dict(sorted(groups.items()))


def skipped_by_reason(*loads: ExampleList) -> dict[str, int]:
    """Rows skipped at load, summed over the given loads, by reason: ``{"malformed": n, "too_long": m, ...}``."""
    return {r: sum(x.skipped_by[r] for x in loads) for r in SKIP_REASONS}


def skip_metrics(task: Any) -> dict[str, int]:
    """``data/skipped_<reason>`` for a task's load-time skips (all 0 for a task that skipped nothing, or one
    built without data files, like the arithmetic suite)."""
    skipped = getattr(task, "skipped", None) or {}
    return {f"data/skipped_{r}": int(skipped.get(r, 0)) for r in SKIP_REASONS}


def build_dataset_task(cfg: Any) -> Any:
    """TaskData for a dataset preset or path (``task.dataset``), eval on ``task.eval_dataset``; rows skipped
    at load (train and eval together) are counted by reason in its ``skipped``."""
    from rollwise.data.task import TaskData

    t = cfg.task
    if not t.dataset:
        raise DatasetError("task.dataset must name a dataset (e.g. gsm8k:train) when task.suite='dataset'")
    load = dict(on_error=t.on_error, max_prompt_chars=t.max_prompt_chars, max_reference_chars=t.max_reference_chars)
    train = load_preset(t.dataset, limit=t.train_limit, **load)
    pool = to_prompts(train)
    if not pool:
        why = f" (skipped: {skipped_by_reason(train)})" if train.skipped else ""
        raise DatasetError(f"task.dataset {t.dataset!r} has no usable rows{why}")
    evals = load_preset(t.eval_dataset, limit=t.eval_limit, **load) if t.eval_dataset else ExampleList()
    eval_prompts = to_prompts(evals)
    names = sorted({str(p.meta.get(t.group_by)) for p in pool if p.meta.get(t.group_by) is not None})
    levels = None
    if names:
        index = {n: i for i, n in enumerate(names)}
        levels = np.array([index.get(str(p.meta.get(t.group_by)), 0) for p in pool], dtype=np.int64)
    task = TaskData(pool, levels, names, group_prompts(eval_prompts, t.group_by), set(),
                    skipped=skipped_by_reason(train, evals))
    return task

"""Dataset-backed prompt sets: loading a dataset with a task's options, and grouping prompts into named eval
sets by a meta field (MATH ``level``, ``subject``, or ``task.group_by``). Rows skipped at load
(``task.on_error = "skip"``) are counted by reason (``skipped``) and reach metrics as ``data/skipped_*``
through :func:`skip_metrics`. :mod:`rollwise.data.task` builds tasks from these."""

from __future__ import annotations

import re
from typing import Any

from rollwise.data.loaders import SKIP_REASONS, DatasetError, PromptList, load_preset
from rollwise.types import Prompt

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


def skipped_by_reason(*loads: PromptList) -> dict[str, int]:
    """Rows skipped at load, summed over the given loads, by reason: ``{"malformed": n, "too_long": m, ...}``."""
    return {r: sum(x.skipped_by[r] for x in loads) for r in SKIP_REASONS}


def skip_metrics(task: Any) -> dict[str, int]:
    """``data/skipped_<reason>`` for a task's load-time skips (all 0 for a task that skipped nothing, or one
    built without data files, like the arithmetic suite)."""
    skipped = getattr(task, "skipped", None) or {}
    return {f"data/skipped_{r}": int(skipped.get(r, 0)) for r in SKIP_REASONS}


def load_task_prompts(task: Any, name: str, limit: int | None) -> PromptList:
    """Prompts of a dataset preset or path with ``task``'s (``cfg.task``) error policy and length bounds; a
    ``reasoning_gym:...`` mix gives its held-out prompts (``task.eval_size`` per entry)."""
    if name.startswith("reasoning_gym:"):
        from rollwise.data.reasoning_gym_tasks import eval_prompts  # lazy: imports reasoning-gym

        return PromptList(eval_prompts(name, task.eval_size, task.seed)[:limit])
    return load_preset(name, limit=limit, on_error=task.on_error, max_prompt_chars=task.max_prompt_chars,
                       max_reference_chars=task.max_reference_chars)


def dataset_eval_sets(task: Any, data: str) -> tuple[dict[str, list[Prompt]], dict[str, int]]:
    """The eval sets of ``rollwise eval --data <preset or file>`` and its ``data/skipped_*`` counts: ``all``,
    plus one set per ``subject`` when the rows have one, else per ``task.group_by`` value. (A training task's
    eval split, :func:`rollwise.data.task.build_dataset_task`, is split by ``task.group_by`` only.)"""
    rows = load_task_prompts(task, data, task.eval_limit)
    skipped = {f"data/skipped_{k}": v for k, v in rows.skipped_by.items()}
    if not rows:
        raise DatasetError(f"--data {data}: no usable rows" + (f" (skipped: {rows.skipped_by})" if rows.skipped
                                                               else ""))
    prompts = list(rows)
    by = "subject" if any("subject" in p.meta for p in prompts) else task.group_by
    sets = {"all": prompts} | ({} if by is None else
                               {k: v for k, v in group_prompts(prompts, by).items() if k != "all"})
    return sets, skipped

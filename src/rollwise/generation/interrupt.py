"""Interruptible generation (AReaL, arXiv:2505.24298): a weight update aborts the running call at its next decode
step, the new weights are loaded, and every aborted row continues from its partial completion as a forced
prefix, keeping the behaviour logprobs and weight versions of the tokens already sampled. A completion can
therefore span several weight versions (``Completion.versions``), which is what the decoupled objective and
the staleness metrics read.

It wraps any engine that supports ``prefixes`` and ``control`` (the HF engine). A call that brings its own
:class:`StepControl` (a rollout strategy such as APRIL or ARRoL steering its rows) is not interrupted: its
weights change between calls, so the strategy's row bookkeeping is never disturbed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from rollwise.generation.base import (
    WORK_KEYS,
    Completion,
    Decision,
    GenerateStats,
    OutputSpec,
    Prefix,
    SamplingParams,
    StepControl,
    StepView,
)


class InterruptibleEngine:
    """``engine`` whose calls yield to new weights: ``pending()`` says weights wait, ``apply()`` loads them (and
    bumps ``engine.version``)."""

    def __init__(self, engine: Any, pending: Callable[[], bool], apply: Callable[[], None]) -> None:
        self.engine, self.pending, self.apply = engine, pending, apply
        self.interrupts = 0  # calls cut short by a weight update
        self.resumed_rows = 0  # rows continued under newer weights
        self._stats = GenerateStats()

    @property
    def last_stats(self) -> GenerateStats:
        """The last call's stats: those of every inner call it made (the first and each resume), added up."""
        return self._stats

    def __getattr__(self, name: str) -> Any:  # version, last_stats, sync_weights, ... of the wrapped engine
        return getattr(self.engine, name)

    def generate(self, prompts: list[list[int]], counts: list[int], params: SamplingParams, *,
                 prefixes: list[Prefix | None] | None = None, outputs: OutputSpec | None = None,
                 control: StepControl | None = None) -> list[list[Completion]]:
        if self.pending():
            self.apply()
        if control is not None:
            got = self.engine.generate(prompts, counts, params, prefixes=prefixes, outputs=outputs, control=control)
            self._stats = self.engine.last_stats
            return got
        stop = StepControl(self._check)
        got = self.engine.generate(prompts, counts, params, prefixes=prefixes, outputs=outputs, control=stop)
        stats = [self.engine.last_stats]
        rows = [(i, j) for i, cs in enumerate(got) for j in range(len(cs))]  # call order = the engine's row ids
        while any(got[i][j].finish_reason == "abort" for i, j in rows):  # only this wrapper aborts here
            self.interrupts += 1
            self.resumed_rows += sum(got[i][j].finish_reason == "abort" for i, j in rows)
            self.apply()
            # every row again, in the same order and with the same seed, each continuing its completion so far
            # (a finished row is not decoded again): row ids and per-position noise stay those of the first call,
            # so under unchanged weights the result equals an uninterrupted call
            again = self.engine.generate([prompts[i] for i, _ in rows], [1] * len(rows), params,
                                         prefixes=[_as_prefix(got[i][j]) for i, j in rows], outputs=outputs,
                                         control=stop)
            stats.append(self.engine.last_stats)
            for (i, j), cs in zip(rows, again):
                if got[i][j].finish_reason == "abort":
                    got[i][j] = _merge(got[i][j], cs[0])
        self._stats = _add_stats(stats)
        return got

    def _check(self, view: StepView) -> Decision | None:
        return Decision.ABORT if self.pending() else None


def _add_stats(stats: list[GenerateStats]) -> GenerateStats:
    """One call's stats from its inner calls' (counters added; ``extra`` of the last)."""
    nums = ("sequences", "prompt_tokens", "completion_tokens", "seconds", *WORK_KEYS)
    return GenerateStats(**{k: sum(getattr(s, k) for s in stats) for k in nums}, extra=dict(stats[-1].extra))


def _as_prefix(c: Completion) -> Prefix:
    return Prefix(list(c.token_ids), list(c.logprobs), list(c.versions) if c.versions else None)


def _merge(before: Completion, after: Completion) -> Completion:
    """The resumed completion: the original request's forced prefix (not the resumed part) stays its prefix,
    and the per-token outputs and metadata recorded before the interrupt are kept."""
    n = len(before.token_ids)
    out = dataclasses.replace(after, prefix_len=before.prefix_len, meta=before.meta | after.meta,
                              hidden=after.hidden | before.hidden)
    if before.topk_ids:
        out.topk_ids = before.topk_ids + after.topk_ids[n:]
        out.topk_logprobs = before.topk_logprobs + after.topk_logprobs[n:]
    if before.entropies:
        out.entropies = before.entropies + after.entropies[n:]
    return out

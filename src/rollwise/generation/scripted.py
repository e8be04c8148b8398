"""A deterministic fake engine for tests: completions come from a script function or a table of canned texts,
so trainer and sampler tests run without a model."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rollwise.generation.base import Completion, GenerateStats, SamplingParams

ScriptFn = Callable[[list[int], int, int], tuple[list[int], list[float], str]]
"""(prompt_ids, sample_index, call_index) -> (token_ids, logprobs, finish_reason)."""


@dataclass
class ScriptedCall:
    """What one ``generate`` call asked for."""

    prompts: list[list[int]]
    counts: list[int]
    params: SamplingParams
    version: int


class ScriptedEngine:
    """Returns scripted completions and records every call.

    ``script`` is either a function ``(prompt_ids, sample_index, call_index) -> (token_ids, logprobs,
    finish_reason)`` or a table ``{prompt: completion text | [texts]}`` keyed by prompt text (decoded with
    ``tokenizer``) or by a tuple of prompt ids; sample ``j`` of a prompt gets ``texts[j % len(texts)]``. Table
    completions are encoded with ``tokenizer`` (required for a table), end with eos (``finish_reason``
    "stop") unless ``append_eos=False``, and get ``logprob`` per token. Either way a completion longer than
    ``params.max_new_tokens`` is cut there with finish reason "length", as a real engine would.
    """

    def __init__(self, script: ScriptFn | Mapping[Any, str | Sequence[str]], *, tokenizer: Any = None,
                 logprob: float = -1.0, append_eos: bool = True, default: str | None = None) -> None:
        if not callable(script) and tokenizer is None:
            raise ValueError("a table script needs a tokenizer to encode its completions")
        self.script, self.tokenizer, self.logprob = script, tokenizer, logprob
        self.append_eos, self.default = append_eos, default
        self.calls = 0
        self.history: list[ScriptedCall] = []
        self.version = 0
        self.synced: list[int] = []
        self._stats = GenerateStats()

    @property
    def last_stats(self) -> GenerateStats:
        return self._stats

    def sync_weights(self, model: Any, version: int) -> None:
        """Record the version (there are no weights)."""
        self.version = version
        self.synced.append(version)

    def generate(self, prompts: list[list[int]], counts: list[int],
                 params: SamplingParams) -> list[list[Completion]]:
        """Return ``counts[i]`` scripted completions per prompt, in input order."""
        if len(prompts) != len(counts):
            raise ValueError(f"{len(prompts)} prompts but {len(counts)} counts")
        t0 = time.perf_counter()
        call = self.calls
        self.history.append(ScriptedCall([list(p) for p in prompts], list(counts), params, self.version))
        out: list[list[Completion]] = []
        for ids, n in zip(prompts, counts):
            out.append([self._complete(list(ids), j, call, params) for j in range(n)])
        self.calls += 1
        done = [c for cs in out for c in cs]
        self._stats = GenerateStats(
            sequences=len(done), prompt_tokens=sum(len(p) * n for p, n in zip(prompts, counts)),
            completion_tokens=sum(len(c.token_ids) for c in done), seconds=time.perf_counter() - t0,
            extra={"policy_version": self.version, "call_index": call},
        )
        return out

    def _complete(self, ids: list[int], j: int, call: int, params: SamplingParams) -> Completion:
        if callable(self.script):
            toks, lps, reason = self.script(ids, j, call)
            toks, lps = list(toks), [float(x) for x in lps]
            if len(toks) != len(lps):
                raise ValueError(f"script returned {len(toks)} tokens but {len(lps)} logprobs")
        else:
            toks = self._encode(self._lookup(ids, j))
            reason = "length"
            if self.append_eos:
                toks, reason = [*toks, self.tokenizer.eos_token_id], "stop"
            lps = [self.logprob] * len(toks)
        if len(toks) > params.max_new_tokens:
            toks, lps, reason = toks[: params.max_new_tokens], lps[: params.max_new_tokens], "length"
        return Completion(toks, lps, reason, self._decode(toks))

    def _lookup(self, ids: list[int], j: int) -> str:
        table: Mapping[Any, str | Sequence[str]] = self.script  # type: ignore[assignment]
        key: Any = tuple(ids)
        if key not in table and self.tokenizer is not None:
            key = self.tokenizer.decode(ids, skip_special_tokens=True)
        if key not in table:
            if self.default is None:
                raise KeyError(f"no scripted completion for prompt {key!r}")
            return self.default
        texts = table[key]
        return texts if isinstance(texts, str) else texts[j % len(texts)]

    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def _decode(self, toks: list[int]) -> str:
        return self.tokenizer.decode(toks, skip_special_tokens=True) if self.tokenizer is not None else ""

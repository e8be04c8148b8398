"""A deterministic fake engine for tests: completions come from a script function or a table of canned texts,
so trainer and sampler tests run without a model.

It honours the whole engine API of generation/base.py. The script defines each row's *uninterrupted*
completion; a request continuing a :class:`Prefix` gets prefix + the scripted tokens after ``len(prefix)``
(so resuming an aborted row gives back the uninterrupted completion, as a seeded HF engine does). Rows decode
in lockstep in one batch: a step callback sees, every ``every`` steps, the rows that have not finished, with
their tokens so far. Top-k, entropy and hidden states come from ``step_fn`` (default: the scripted token as the
only candidate, top-k filled with id -1 / logprob -inf, entropy 0, hidden ``[position] * 4``), as torch tensors
in the view and in ``Completion.hidden`` (like the HF engine); torch is imported only when they are asked for.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rollwise.generation.base import (
    Completion,
    GenerateStats,
    OutputSpec,
    Prefix,
    SamplingParams,
    StepControl,
    StepView,
    estimate_work,
    pad_outputs,
    prefix_completion,
    prefix_finish,
    resolve_decision,
)

ScriptFn = Callable[[list[int], int, int], tuple[list[int], list[float], str]]
"""(prompt_ids, sample_index, call_index) -> (token_ids, logprobs, finish_reason)."""

StepFn = Callable[[list[int], int, int], tuple[list[int], list[float], float, list[float]]]
"""(completion so far including the token at ``position``, position, k) -> (top-k ids, top-k logprobs, entropy,
hidden state at ``position``)."""


def default_step_fn(tokens: list[int], position: int, k: int) -> tuple[list[int], list[float], float, list[float]]:
    """The scripted token as the only candidate, entropy 0, hidden state ``[position] * 4``."""
    return [tokens[position]] + [-1] * (k - 1), [0.0] + [float("-inf")] * (k - 1), 0.0, [float(position)] * 4


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
                 logprob: float = -1.0, append_eos: bool = True, default: str | None = None,
                 step_fn: StepFn = default_step_fn) -> None:
        if not callable(script) and tokenizer is None:
            raise ValueError("a table script needs a tokenizer to encode its completions")
        self.script, self.tokenizer, self.logprob, self.step_fn = script, tokenizer, logprob, step_fn
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

    def generate(self, prompts: list[list[int]], counts: list[int], params: SamplingParams, *,
                 prefixes: list[Prefix | None] | None = None, outputs: OutputSpec | None = None,
                 control: StepControl | None = None) -> list[list[Completion]]:
        """Return ``counts[i]`` scripted completions per prompt, in input order (options: see the module doc)."""
        if len(prompts) != len(counts) or (prefixes is not None and len(prefixes) != len(prompts)):
            raise ValueError(f"{len(prompts)} prompts but {len(counts)} counts / prefixes")
        t0 = time.perf_counter()
        call = self.calls
        self.history.append(ScriptedCall([list(p) for p in prompts], list(counts), params, self.version))
        pre = prefixes if prefixes is not None else [None] * len(prompts)
        rows = [(i, j) for i, n in enumerate(counts) for j in range(n)]  # row -> (prompt index, sample index)
        done = [self._complete(list(prompts[i]), j, call, params, pre[i]) for i, j in rows]
        if control is not None:
            self._control(done, [i for i, _ in rows], control, params)
        for c in done:
            self._outputs(c, outputs)
        out: list[list[Completion]] = [[] for _ in prompts]
        for (i, _), c in zip(rows, done):
            out[i].append(c)
        self.calls += 1
        self._stats = GenerateStats(
            sequences=len(done), prompt_tokens=sum(len(p) * n for p, n in zip(prompts, counts)),
            completion_tokens=sum(len(c.token_ids) - c.prefix_len for c in done), seconds=time.perf_counter() - t0,
            extra={"policy_version": self.version, "call_index": call},
            **estimate_work(prompts, prefixes, out, max(len(done), 1)),  # as one continuous batch of every row
        )
        return out

    def _complete(self, ids: list[int], j: int, call: int, params: SamplingParams,
                  prefix: Prefix | None) -> Completion:
        """The row's completion: prefix + the scripted tokens after it, cut to ``max_new_tokens``."""
        M = params.max_new_tokens
        stop = [*params.stop_token_ids, *([self.tokenizer.eos_token_id] if self.tokenizer is not None else [])]
        if (reason := prefix_finish(prefix, M, stop)) is not None:
            return prefix_completion(prefix, M, reason, None, self._decode)
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
        n = len(prefix.token_ids) if prefix else 0
        versions = (prefix.version_list() if prefix else []) + [self.version] * max(len(toks) - n, 0)
        if prefix is not None:
            toks, lps = list(prefix.token_ids) + toks[n:], list(prefix.logprobs) + lps[n:]
        if len(toks) > M:
            toks, lps, versions, reason = toks[:M], lps[:M], versions[:M], "length"
        return Completion(toks, lps, reason, self._decode(toks), versions, prefix_len=n)

    def _control(self, done: list[Completion], groups: list[int], control: StepControl,
                 params: SamplingParams) -> None:
        """Replay the rows' decoding in lockstep, asking ``control`` every ``every`` steps (cuts rows in place)."""
        full = [list(c.token_ids) for c in done]
        new = [len(c.token_ids) - c.prefix_len for c in done]  # new tokens each row would sample
        finished = {r: c.finish_reason for r, c in enumerate(done) if new[r] == 0}
        for t in range(1, max(new, default=0) + 1):
            finished |= {r: done[r].finish_reason for r in range(len(done)) if new[r] == t}
            live = [r for r in range(len(done)) if new[r] > t and r not in finished]
            if t % control.every or not live:
                continue
            view = StepView(t, live, [groups[r] for r in live],
                            [full[r][: done[r].prefix_len + t] for r in live], dict(finished), len(done),
                            **self._view(full, done, live, t, control))
            decided = resolve_decision(control.callback(view), live)  # one batch: ABORT-all = every live row
            if unknown := set(decided) - set(live):
                raise ValueError(f"step callback decided for rows {sorted(unknown)} that are not live")
            for r, d in decided.items():
                n = done[r].prefix_len + t
                c = done[r]
                c.token_ids, c.logprobs, c.versions = c.token_ids[:n], c.logprobs[:n], c.versions[:n]
                c.finish_reason, c.text = d.value, self._decode(c.token_ids)
                finished[r] = d.value

    def _view(self, full: list[list[int]], done: list[Completion], live: list[int], t: int,
              control: StepControl) -> dict[str, Any]:
        """The view's tensors for the step just sampled (position prefix_len + t - 1 of each live row)."""
        if not (control.topk or control.entropy or control.hidden):
            return {}
        import torch

        steps = [self.step_fn(full[r], done[r].prefix_len + t - 1, control.topk) for r in live]
        out: dict[str, Any] = {}
        if control.topk:
            out["topk_ids"] = torch.tensor([s[0] for s in steps], dtype=torch.long)
            out["topk_logprobs"] = torch.tensor([s[1] for s in steps])
        if control.entropy:
            out["entropy"] = torch.tensor([s[2] for s in steps])
        if control.hidden:
            out["hidden"] = torch.tensor([s[3] for s in steps])
        return out

    def _outputs(self, c: Completion, o: OutputSpec | None) -> None:
        """Fill the asked-for per-token outputs of the new tokens from ``step_fn`` (prefix placeholders after)."""
        if o is None:
            return
        k = max(o.topk, 1)
        steps = [self.step_fn(c.token_ids, t, k) for t in range(len(c.token_ids))]
        new = steps[c.prefix_len:]
        if o.topk:
            c.topk_ids, c.topk_logprobs = [s[0] for s in new], [s[1] for s in new]
        if o.entropy:
            c.entropies = [s[2] for s in new]
        if o.hidden_every:
            import torch

            c.hidden = {t: torch.tensor(steps[t][3]) for t in range(o.hidden_every - 1, len(c.token_ids) - 1,
                                                                     o.hidden_every)}
        pad_outputs(c, o)

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


def build_scripted_engine(model: Any, tok: Any, *, batch_size: int = 256, default: str = "7") -> ScriptedEngine:
    """``generation.engine = "scripted"`` from config: every prompt gets ``default`` (then EOS), with the run's
    tokenizer; the model and batch size are not used. Tests build :class:`ScriptedEngine` with their own script."""
    return ScriptedEngine({}, tokenizer=tok, default=default)

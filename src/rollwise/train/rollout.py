"""One step's rollout collection: ask the sampler pipeline what to generate (with what context before each
prompt), generate, verify, repeat (successive rounds and refills), all within the step's budget."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rollwise.generation.base import Engine, SamplingParams
from rollwise.sampling import Budget, GroupObs, Request, SamplingPipeline
from rollwise.types import Prompt, Rollout


@dataclass
class StepRollouts:
    """Everything generated in one step, by prompt, with the sampler's view of it and the step's counters."""

    rollouts: dict[int, list[Rollout]] = field(default_factory=dict)  # pool index -> rollouts, generation order
    gen_seconds: float = 0.0
    verify_seconds: float = 0.0
    calls: int = 0
    verify_failures: int = 0  # checks that timed out or raised (scored 0)

    def obs(self) -> dict[int, GroupObs]:
        """The sampler's view of every pool, with the rollouts as its opaque payload."""
        out = {}
        for p, rs in self.rollouts.items():
            out[p] = GroupObs(
                p,
                np.array([r.reward for r in rs], dtype=np.float64),
                np.array([r.num_tokens for r in rs], dtype=np.int64),
                np.array([np.mean(r.behaviour_logprobs) if r.behaviour_logprobs else 0.0 for r in rs]),
                payload=list(rs),
                texts=[r.text for r in rs],
            )
        return out

    def metrics(self) -> dict[str, float]:
        """The step's rollout and generation metrics (``rollout/``, ``perf/``)."""
        rs = [r for v in self.rollouts.values() for r in v]
        n = max(len(rs), 1)
        return {
            "rollout/reward_mean": sum(r.reward for r in rs) / n,
            "rollout/parsed_share": sum(r.parsed for r in rs) / n,
            "rollout/length_mean": self.num_tokens / n,
            "rollout/truncated_share": sum(r.finish_reason == "length" for r in rs) / n,
            "rollout/verify_failures": self.verify_failures,
            "perf/generate_seconds": self.gen_seconds,
            "perf/verify_seconds": self.verify_seconds,
            "perf/generate_calls": self.calls,
        }

    @property
    def num_rollouts(self) -> int:
        return sum(len(v) for v in self.rollouts.values())

    @property
    def num_tokens(self) -> int:
        return sum(r.num_tokens for v in self.rollouts.values() for r in v)


def render_context(context: Any, pool: list[Prompt], text: str) -> str:
    """A prompt shown after a sampler context: solved examples ``((pool index, solution), ...)``, each as
    prompt + solution on its own line (XRPO's in-context seeding), then the prompt itself."""
    if context is None:
        return text
    return "".join(f"{pool[j].text}{sol}\n" for j, sol in context) + text


class RolloutCollector:
    """Turns sampler requests into verified rollouts: tokenise (cached), generate, verify, charge the budget."""

    def __init__(self, engine: Engine, verifier: Any, pool: list[Prompt], encode: Any,
                 params: SamplingParams) -> None:
        self.engine, self.verifier, self.pool, self.params = engine, verifier, pool, params
        self._encode = encode
        self._token_cache: dict[int, list[int]] = {}

    def prompt_ids(self, index: int, context: Any = None) -> list[int]:
        if context is not None:
            return self._encode(render_context(context, self.pool, self.pool[index].text))
        ids = self._token_cache.get(index)
        if ids is None:
            ids = self._token_cache[index] = self._encode(self.pool[index].text)
        return ids

    def collect(self, pipeline: SamplingPipeline, step: int, budget: Budget, seed: int,
                version: int) -> StepRollouts:
        out = StepRollouts()
        req: Request | None = pipeline.begin_step(step, budget)
        while req is not None and len(req):
            self._run(req, out, budget, seed + 7919 * out.calls, version)
            req = pipeline.next_request(out.obs())
        return out

    def _run(self, req: Request, out: StepRollouts, budget: Budget, seed: int, version: int) -> None:
        prompts = [int(p) for p in req.prompts]
        contexts = req.contexts or [None] * len(prompts)
        ids = [self.prompt_ids(p, c) for p, c in zip(prompts, contexts)]
        t0 = time.perf_counter()
        params = SamplingParams(self.params.temperature, self.params.top_p, self.params.max_new_tokens,
                                self.params.stop_token_ids, seed)
        completions = self.engine.generate(ids, [int(c) for c in req.counts], params)
        out.gen_seconds += time.perf_counter() - t0
        out.calls += 1
        flat = [(p, i, c) for p, i, cs in zip(prompts, ids, completions) for c in cs]
        t0 = time.perf_counter()
        results = self.verifier.score_batch([c.text for _, _, c in flat], [self.pool[p].reference for p, _, _ in flat])
        out.verify_seconds += time.perf_counter() - t0
        tokens = 0
        for (p, pid, c), res in zip(flat, results):
            r = Rollout(p, pid, c.token_ids, c.logprobs, c.text, c.finish_reason, version,
                        float(res.score), bool(res.parsed), dict(res.info))
            out.verify_failures += int(bool(res.info.get("timeout") or res.info.get("error")))
            out.rollouts.setdefault(p, []).append(r)
            tokens += r.num_tokens
        budget.charge(len(flat), tokens)

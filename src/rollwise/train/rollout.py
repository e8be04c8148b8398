"""One step's rollout collection: ask the sampler pipeline what to generate (with what context before each
prompt), generate, verify, repeat (successive rounds and refills), all within the step's budget.

Verifier faults (``info["fault"]``: error, timeout, crash, out_of_range) are counted per kind; a step in which
more than ``max_failure_share`` of the checks failed stops the run with :class:`VerifierFailureError`, since
its rewards (faults score 0 or are clamped) say more about the verifier than about the policy."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rollwise.generation.base import WORK_KEYS, Engine, SamplingParams
from rollwise.generation.strategy import CountingEngine, PlainStrategy, RolloutStrategy
from rollwise.rewards.base import FAULTS
from rollwise.rewards.ttrl import pseudo_label_metrics
from rollwise.sampling import Budget, GroupObs, PromptContext, Request, SamplingPipeline
from rollwise.types import Prompt, Rollout


class VerifierFailureError(RuntimeError):
    """More than the allowed share of a step's checks failed (``task.max_verify_failures``)."""


def describe_fault(info: dict[str, Any]) -> str:
    """One line on a failed check, from its ``VerifyResult.info``."""
    fault = info.get("fault")
    if fault == "timeout":
        return f"timeout after {info.get('timeout_s', '?')} s"
    if fault == "crash":
        return f"verifier process died (exit code {info.get('exitcode')})"
    if fault == "out_of_range":
        return f"reward {info.get('raw_score')!r} clamped to the reward range"
    return str(info.get("error", fault))


@dataclass
class StepRollouts:
    """Everything generated in one step, by prompt, with the sampler's view of it and the step's counters."""

    rollouts: dict[int, list[Rollout]] = field(default_factory=dict)  # pool index -> rollouts, generation order
    gen_seconds: float = 0.0
    verify_seconds: float = 0.0
    calls: int = 0
    faults: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FAULTS, 0))  # failed checks by kind
    last_fault: str = ""  # the last failed check, described in one line
    discarded_rollouts: int = 0  # generated then dropped by the rollout strategy (pruned): charged, not trained
    discarded_tokens: int = 0  # of decoded_tokens, those of the dropped rollouts
    decoded_tokens: int = 0  # tokens the engine decoded this step (its own count: trees, prunes, partials, resumes)
    # the engine's forwards this step (prefill tokens, decode steps, decode row-steps: WORK_KEYS), for cost.py
    work: dict[str, int] = field(default_factory=lambda: dict.fromkeys(WORK_KEYS, 0))

    def add_fault(self, info: dict[str, Any]) -> None:
        """Count a check's fault, if its result is marked with one."""
        fault = info.get("fault")
        if fault in self.faults:
            self.faults[fault] += 1
            self.last_fault = " ".join(describe_fault(info).split())  # one line, whatever the verifier raised

    @property
    def verify_failures(self) -> int:
        """Checks that failed this step, all kinds together."""
        return sum(self.faults.values())

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
                traj=trajectory_ids(rs),
            )
        return out

    def metrics(self) -> dict[str, float]:
        """The step's rollout and generation metrics (``rollout/``, ``perf/``); with FAPO reward shaping (rollouts
        marked ``flawed``) also the share of correct rollouts judged flawed and the judge's failures."""
        rs = [r for v in self.rollouts.values() for r in v]
        n = max(len(rs), 1)
        judged = [r.verify_info for r in rs if "flawed" in r.verify_info]
        fapo: dict[str, float] = {}
        if judged:
            correct = sum(i["flawed"] is not None or "judge_error" in i for i in judged)
            fapo = {"rollout/flawed_positive_share": sum(i["flawed"] is True for i in judged) / max(correct, 1),
                    "rollout/judge_errors": sum("judge_error" in i for i in judged)}
        return {
            "rollout/reward_mean": sum(r.reward for r in rs) / n,
            "rollout/parsed_share": sum(r.parsed for r in rs) / n,
            "rollout/length_mean": self.num_tokens / n,
            # mean -log mu(y_t) of the sampled tokens: an unbiased estimate of the sampling policy's per-token
            # entropy, for free (the entropy curve of every run, whatever its loss computes)
            "rollout/token_nll_mean": -sum(sum(r.behaviour_logprobs) for r in rs) / max(self.num_tokens, 1),
            "rollout/truncated_share": sum(r.finish_reason == "length" for r in rs) / n,
            "rollout/distinct_answers": self.distinct_answers(),
            "rollout/verify_failures": self.verify_failures,
            **{f"rollout/verify_{kind}": count for kind, count in self.faults.items()},
            "perf/generate_seconds": self.gen_seconds,
            "perf/verify_seconds": self.verify_seconds,
            "perf/generate_calls": self.calls,
            **fapo,
            # task.labels = "none" (TTRL): pseudo-label accuracy against the hidden references, empty votes
            **pseudo_label_metrics([[r.verify_info for r in v] for v in self.rollouts.values()]),
        }

    def distinct_answers(self) -> float:
        """Mean number of distinct final answers per prompt with two or more rollouts (the verifier's
        ``extracted`` answer; every unparsed rollout counts as one shared "no answer"): the diversity that tree
        rollouts claim, comparable across strategies (0.0 if no prompt has two rollouts)."""
        counts = [len({r.verify_info.get("extracted") if r.parsed else None for r in v})
                  for v in self.rollouts.values() if len(v) >= 2]
        return float(np.mean(counts)) if counts else 0.0

    @property
    def num_rollouts(self) -> int:
        return sum(len(v) for v in self.rollouts.values())

    @property
    def num_tokens(self) -> int:
        return sum(r.num_tokens for v in self.rollouts.values() for r in v)


def trajectory_ids(rs: list[Rollout]) -> np.ndarray:
    """[n] trajectory id per rollout of a pool, in first-seen order: the turns of one episode share one (by its id,
    ``verify_info["episode"]``, so episodes whose turns interleave, as environment workers hand them over, stay
    apart; without one, consecutive turns ``meta["turn"]`` 0, 1, 2, ...); any other rollout is its own."""
    if rs and all("episode" in r.verify_info for r in rs):
        seen: dict[Any, int] = {}
        return np.array([seen.setdefault(r.verify_info["episode"], len(seen)) for r in rs], dtype=np.int64)
    starts, prev = [], None
    for r in rs:
        turn = r.meta.get("turn")
        starts.append(turn is None or turn == 0 or prev is None or turn != prev + 1)
        prev = turn
    return np.cumsum(starts, dtype=np.int64) - 1


def render_context(context: Any, pool: list[Prompt], text: str) -> str:
    """The prompt text a sampler context asks for: a :class:`PromptContext` puts its ``before`` and ``after``
    around the prompt (its ``answer_prefix`` is added after the template, see ``prompt_ids``); a tuple of
    solved examples ``((pool index, solution), ...)`` shows each as prompt + solution on its own line (XRPO's
    in-context seeding), then the prompt itself."""
    if context is None:
        return text
    if isinstance(context, PromptContext):
        return context.before + text + context.after
    return "".join(f"{pool[j].text}{sol}\n" for j, sol in context) + text


def answer_prefix(context: Any) -> str:
    """The answer text a context forces before the completion ('' for none)."""
    return context.answer_prefix if isinstance(context, PromptContext) else ""


class RolloutCollector:
    """Turns sampler requests into verified rollouts: tokenise (cached), generate, verify, charge the budget."""

    def __init__(self, engine: Engine, verifier: Any, pool: list[Prompt], encode: Any,
                 params: SamplingParams, *, max_failure_share: float = 1.0, encode_raw: Any = None,
                 strategy: RolloutStrategy | None = None,
                 reward_shaper: Any = None) -> None:
        if not 0.0 <= max_failure_share <= 1.0:
            raise ValueError(f"max_failure_share must be in [0, 1], got {max_failure_share}")
        self.engine, self.verifier, self.pool, self.params = engine, verifier, pool, params
        self.reward_shaper = reward_shaper  # task.reward_shaping (e.g. FAPO), applied after verification
        self.max_failure_share = max_failure_share  # 1.0 never stops
        self._encode = encode  # prompt text -> ids through the prompt template
        self._encode_raw = encode_raw or encode  # answer text (a forced prefix) -> ids, no template
        self.strategy = strategy or PlainStrategy()  # how a request's completions come out of the engine
        self._token_cache: dict[int, list[int]] = {}

    def prompt_ids(self, index: int, context: Any = None) -> list[int]:
        """Token ids of a pool prompt as the context shows it; a forced answer prefix is encoded after the
        rendered (templated) prompt, so the policy continues it as the start of its own answer."""
        if context is not None:
            ids = self._encode(render_context(context, self.pool, self.pool[index].text))
            prefix = answer_prefix(context)
            return ids + self._encode_raw(prefix) if prefix else ids
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
        self.check_faults(out, step)
        return out

    def metrics(self) -> dict[str, float]:
        """The rollout strategy's metrics and the engine's own, if it reports any (the HF engine's cross-call KV
        cache hits and misses), as ``generation/...``."""
        engine = getattr(self.engine, "metrics", None)
        own = engine() if callable(engine) else {}
        return {f"generation/{k}": v for k, v in {**self.strategy.metrics(), **own}.items()}

    def check_faults(self, out: StepRollouts, step: int) -> None:
        """Stop the run if more than ``max_failure_share`` of a step's checks failed (sync and async alike)."""
        failed, checks = out.verify_failures, out.num_rollouts
        if checks and failed / checks > self.max_failure_share:
            kinds = ", ".join(f"{kind.replace('_', ' ')} {n}" for kind, n in out.faults.items())
            raise VerifierFailureError(
                f"verifier failing at step {step + 1}: {failed} of {checks} checks failed this step ({kinds}) > max "
                f"share {self.max_failure_share:g}; last error: {out.last_fault}; fix the verifier or raise "
                "task.max_verify_failures")

    def _run(self, req: Request, out: StepRollouts, budget: Budget, seed: int, version: int) -> None:
        job = self.make_job(req, seed, version)
        self.record(run_job(job, self.engine, self.verifier, self.strategy, self.reward_shaper, self.problem), out,
                    budget)

    def problem(self, index: int) -> tuple[str, Any]:
        """A pool prompt's (text, reference answer)."""
        return self.pool[index].text, self.pool[index].reference

    def make_job(self, req: Request, seed: int, version: int) -> RoundJob:
        """A generation round as plain data (it may run in another process: async mode's rollout workers)."""
        prompts = [int(p) for p in req.prompts]
        contexts = req.contexts or [None] * len(prompts)
        params = SamplingParams(self.params.temperature, self.params.top_p, self.params.max_new_tokens,
                                self.params.stop_token_ids, seed)
        return RoundJob(prompts, [self.prompt_ids(p, c) for p, c in zip(prompts, contexts)],
                        [int(c) for c in req.counts], [answer_prefix(c) for c in contexts],
                        {p: (self.pool[p].text, self.pool[p].reference) for p in prompts}, params, version)

    def record(self, got: RoundResult, out: StepRollouts, budget: Budget) -> None:
        """Book a finished round: rollouts (policy version = the oldest weights that sampled any token), fault
        counts, and the tokens the engine decoded for it (``got.decoded_tokens``) charged to the step's budget."""
        out.gen_seconds += got.gen_seconds
        out.verify_seconds += got.verify_seconds
        out.calls += 1
        for p, pid, c, res in got.items:
            r = Rollout(p, pid, c.token_ids, c.logprobs, c.text, c.finish_reason, min([got.version, *c.versions]),
                        float(res.score), bool(res.parsed), dict(res.info), versions=list(c.versions),
                        meta=dict(c.meta))
            out.add_fault(res.info)
            out.rollouts.setdefault(p, []).append(r)
        budget.charge(len(got.items) + got.discarded_rollouts, got.decoded_tokens)
        out.discarded_rollouts += got.discarded_rollouts
        out.discarded_tokens += got.discarded_tokens
        out.decoded_tokens += got.decoded_tokens
        for k, v in got.work.items():
            out.work[k] = out.work.get(k, 0) + v


@dataclass
class RoundJob:
    """One generation round as plain, picklable data: what to generate and how to verify it."""

    prompts: list[int]  # [P] pool indices
    ids: list[list[int]]  # [P] prompt token ids as the context shows them
    counts: list[int]  # [P] rollouts per prompt
    forced: list[str]  # [P] answer prefix forced before each completion ('' for none), verified with it
    problems: dict[int, tuple[str, Any]]  # pool index -> (prompt text, reference answer)
    params: SamplingParams
    version: int  # the weight version the round was planned under


@dataclass
class RoundResult:
    """A round's verified completions ``(pool index, prompt ids, completion, verify result)`` and its costs."""

    items: list[tuple[int, list[int], Any, Any]]
    version: int
    gen_seconds: float = 0.0
    verify_seconds: float = 0.0
    discarded_rollouts: int = 0
    discarded_tokens: int = 0
    decoded_tokens: int = 0  # the engine's count of the tokens it decoded for the round (CountingEngine)
    work: dict[str, int] = field(default_factory=dict)  # the engine's work counters for the round (CountingEngine)


def run_job(job: RoundJob, engine: Engine, verifier: Any, strategy: RolloutStrategy, reward_shaper: Any = None,
            problem: Any = None) -> RoundResult:
    """Generate a round through the rollout strategy, verify it (and shape the rewards), and let the strategy
    learn from the outcome. Runs where the engine is: in the trainer (sync) or in a rollout worker (async).
    ``problem(p)`` gives a pool prompt's (text, reference) that ``job.problems`` lacks (resumed partials). The
    strategy generates through a :class:`CountingEngine`: the round's cost is what the engine decoded."""
    t0 = time.perf_counter()
    counted = CountingEngine(engine)
    strategy.bind_scorer(lambda rows, cs: [float(r.score) for r in verifier.score_batch(
        [job.forced[i] + c.text for i, c in zip(rows, cs)], [job.problems[job.prompts[i]][1] for i in rows])])
    got = strategy.generate(counted, job.prompts, job.ids, job.counts, job.params, step=job.version)
    gen_seconds = time.perf_counter() - t0
    flat = [(p, i, c) for p, i, cs in zip(job.prompts, job.ids, got.completions) for c in cs]
    forced = [f for f, cs in zip(job.forced, got.completions) for _ in cs]
    for p, (pid, cs) in got.extra.items():  # completions of prompts not asked for (resumed partials)
        flat += [(p, pid, c) for c in cs]
        forced += [""] * len(cs)
    lookup = problem or job.problems.__getitem__
    info = {p: job.problems.get(p) or lookup(p) for p, _, _ in flat}
    t0 = time.perf_counter()
    texts = [f + c.text for f, (_, _, c) in zip(forced, flat)]
    refs = [info[p][1] for p, _, _ in flat]
    results = verifier.score_batch(texts, refs)
    if reward_shaper is not None:  # judges see the problem and the same text the verifier scored
        results = reward_shaper.shape([info[p][0] for p, _, _ in flat], texts, refs, results)
    verify_seconds = time.perf_counter() - t0
    strategy.observe([p for p, _, _ in flat], [c for _, _, c in flat], [float(r.score) for r in results])
    return RoundResult([(p, pid, c, res) for (p, pid, c), res in zip(flat, results)], job.version, gen_seconds,
                       verify_seconds, got.discarded_rollouts, got.discarded_tokens, counted.decoded,
                       dict(counted.work))

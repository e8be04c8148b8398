"""Episodes as the trainer's rollouts: the collector a run with an ``[env]`` section uses instead of the
single-turn :class:`rollwise.train.rollout.RolloutCollector`, behind the same interface (``collect``,
``metrics``, ``engine``, ``strategy``), chosen once in setup.

A sampler request ``(task, count)`` plays ``count`` episodes of the task (the task's pool index plays the prompt
id). Every turn of an episode becomes one :class:`Rollout`: its prompt is the conversation before the turn, its
completion the action, so the update trains actions only and every estimator, sampler and correction works on
the task's *group of turns* unchanged. Credit (``credit``): ``return`` puts the episode's return on each of its
turns (a group's statistics then weight an episode by its number of turns); ``to_go`` the discounted rewards from
the turn on (``gamma``), so a turn is credited only with what followed it.

The sampler's budget is charged per episode (what it asked for) and per decoded token; the run's ledger counts
turns as rollouts. An episode whose environment faulted is played again up to ``retries`` times (``envs/retry.py``,
``env/retries``), then dropped, never trained on: a faulted try's tokens are charged as discarded and its fault is
counted in ``env/faults_<kind>``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

from rollwise.envs.base import ENV_FAULTS, ENVIRONMENTS, EnvKnobs, env_factory
from rollwise.envs.chat import ChatFormat
from rollwise.envs.loop import AgentLoop, Episode, PlainFormat, TurnFormat
from rollwise.envs.retry import all_tries, play_with_retries
from rollwise.envs.rounds import EpisodeResult, EpisodeRounds
from rollwise.generation.base import Engine, SamplingParams
from rollwise.generation.strategy import PlainStrategy
from rollwise.sampling import Budget, Request, SamplingPipeline
from rollwise.train.rollout import StepRollouts
from rollwise.types import Prompt, Rollout


def compute_turn_credit(rewards: list[float], credit: str = "return", gamma: float = 1.0) -> list[float]:
    """Each turn's training reward from the step rewards ``[T]``: ``return``, the episode's return on every turn;
    ``to_go``, the discounted rewards from the turn on, ``sum_{k >= t} gamma^(k - t) r_k``."""
    if credit == "return":
        return [float(sum(rewards))] * len(rewards)
    if credit != "to_go":
        raise ValueError(f"unknown credit {credit!r}; choose 'return' or 'to_go'")
    out, acc = [0.0] * len(rewards), 0.0
    for t in reversed(range(len(rewards))):
        acc = rewards[t] + gamma * acc
        out[t] = acc
    return out


def episode_rollouts(ep: Episode, version: int, credit: str = "return", gamma: float = 1.0) -> list[Rollout]:
    """One rollout per turn: prompt = the context before the turn, completion = the action, reward = the turn's
    credit (:func:`compute_turn_credit`), policy version = the oldest weights that sampled a token."""
    ret = ep.episode_return
    info = {"episode_return": ret, "turns": ep.num_turns, "success": ep.success, "finish": ep.finish,
            "episode": ep.uid}
    credits = compute_turn_credit([t.reward for t in ep.turns], credit, gamma)
    return [Rollout(ep.task_index, t.context_ids, t.action_ids, t.logprobs, t.text, t.finish_reason,
                    min([version, *t.versions]), c, True, info | {"turn": i, "step_reward": t.reward},
                    versions=list(t.versions), meta={"turn": i})
            for i, (t, c) in enumerate(zip(ep.turns, credits))]


def episode_metrics(episodes: list[Episode], prefix: str = "env") -> dict[str, float]:
    """``{prefix}/success``, ``turns_mean`` (all kept episodes), ``solve_turns`` (solved ones), ``return_mean``,
    ``tokens_mean``, finish shares, the fault count of every kind (0 when none; faulted tries played again
    included) and ``retries`` (tries played again, ``envs/retry.py``)."""
    kept = [e for e in episodes if e.fault is None]
    n = max(len(kept), 1)
    solved = [e.num_turns for e in kept if e.success]
    faults = Counter(e.fault for e in all_tries(episodes) if e.fault is not None)
    return {
        f"{prefix}/episodes": len(episodes),
        f"{prefix}/success": sum(e.success for e in kept) / n,
        f"{prefix}/turns_mean": sum(e.num_turns for e in kept) / n,
        f"{prefix}/solve_turns": float(np.mean(solved)) if solved else 0.0,
        f"{prefix}/return_mean": sum(e.episode_return for e in kept) / n,
        f"{prefix}/tokens_mean": sum(e.tokens for e in kept) / n,
        f"{prefix}/finish_max_turns": sum(e.finish == "max_turns" for e in kept) / n,
        f"{prefix}/finish_max_tokens": sum(e.finish == "max_tokens" for e in kept) / n,
        **{f"{prefix}/faults_{k}": faults.get(k, 0) for k in ENV_FAULTS},
        f"{prefix}/retries": sum(len(e.earlier) for e in episodes),
    }


class EpisodeCollector(EpisodeRounds):
    """Turns sampler requests into episodes (through :class:`AgentLoop`, or ``runner``: an
    :class:`rollwise.envs.runner.EpisodeRunner` over environment workers) and episodes into groups of turns."""

    def __init__(self, engine: Engine, make_env: Callable[[], Any], limits: EnvKnobs, pool: list[Prompt],
                 fmt: TurnFormat, params: SamplingParams, runner: Any = None) -> None:
        self.engine, self.pool, self.params, self.limits = engine, pool, params, limits
        self.runner, self.fmt = runner, fmt
        self.loop = runner if runner is not None else AgentLoop(engine, make_env, fmt, limits)
        self.strategy = PlainStrategy()  # the rollout source checkpoints its strategy's state (none here)
        self.last_episodes: list[Episode] = []

    def collect(self, pipeline: SamplingPipeline, step: int, budget: Budget, seed: int,
                version: int) -> StepRollouts:
        out = StepRollouts()
        self.last_episodes = []
        req: Request | None = pipeline.begin_step(step, budget)
        while req is not None and len(req):
            self.last_episodes += self._run(req, out, budget, seed + 7919 * out.calls, version)
            req = pipeline.next_request(out.obs())
        self._booked().pop(id(out), None)  # kept for async's handover only
        return out

    def _run(self, req: Request, out: StepRollouts, budget: Budget, seed: int, version: int) -> list[Episode]:
        got = self.play(self.make_job(req, seed, version))
        self.record(got, out, budget)
        return got.episodes

    def record(self, got: EpisodeResult, out: StepRollouts, budget: Budget) -> None:
        """Book a played job: every kept episode's turns as its task's rollouts; faulted tries and lost turns
        charged as discarded, never trained on."""
        out.gen_seconds += got.gen_seconds
        out.calls += 1
        decoded = got.lost_tokens
        out.discarded_tokens += got.lost_tokens
        for ep in all_tries(got.episodes):
            tokens = sum(len(t.action_ids) for t in ep.turns)
            decoded += tokens
            if ep.fault is not None:  # dropped (or played again): charged, never trained on
                out.discarded_rollouts += ep.num_turns
                out.discarded_tokens += tokens
                continue
            for r in episode_rollouts(ep, got.version, self.limits.credit, self.limits.gamma):
                out.rollouts.setdefault(ep.task_index, []).append(r)
        out.decoded_tokens += decoded
        budget.charge(len(got.episodes), decoded)
        self.book(got, out)

    def metrics(self) -> dict[str, float]:
        """The last step's episode metrics (``env/...``), and the environment workers' counters (if any)."""
        return episode_metrics(self.last_episodes) | self.env_worker_metrics()

    def evaluate(self, eval_sets: dict[str, list[Prompt]], params: SamplingParams, n: int = 1,
                 prefix: str = "eval") -> dict[str, Any]:
        """Play every task of every set ``n`` times with ``params``: ``{prefix}/{set}/success`` (also written
        ``pass@1``, so reports and plots of single-turn runs read it), ``turns_mean``, ``solve_turns`` and the
        rest of :func:`episode_metrics`, and their means over sets ``{prefix}/mean/...``."""
        out: dict[str, Any] = {}
        per_set = []
        for name, tasks in eval_sets.items():
            if not tasks:
                continue
            index = [i for i in range(len(tasks)) for _ in range(n)]
            got = episode_metrics(play_with_retries(self.loop, [tasks[i] for i in index], index, params,
                                                    retries=self.limits.retries), f"{prefix}/{name}")
            got[f"{prefix}/{name}/pass@1"] = got[f"{prefix}/{name}/success"]
            out |= got
            per_set.append({k.rsplit("/", 1)[1]: v for k, v in got.items()})
        for key in ("pass@1", "success", "turns_mean", "solve_turns", "return_mean"):
            if per_set:
                out[f"{prefix}/mean/{key}"] = float(np.mean([s[key] for s in per_set]))
        return out


def build_episode_collector(cfg: Any, engine: Engine, pool: list[Prompt], tok: Any, params: SamplingParams,
                            in_worker: bool = False, before_generate: Any = None) -> EpisodeCollector:
    """The collector of an ``[env]`` run (``cfg.env``): turns through the tokenizer's chat template
    (:class:`rollwise.envs.chat.ChatFormat`, opened by ``task.system_prompt``; the loop also stops generation at
    the template's end-of-turn token) when it has one and ``task.chat`` is not False, else as plain text. What this
    cut does not do yet (rollout strategies) is refused here, before any rollout. Episodes are played turn by turn
    in this process (``AgentLoop``), or by an ``EpisodeRunner`` with ``env.workers`` environment workers (also
    with none, on an async rollout worker: ``in_worker``, whose ``before_generate`` applies new weights)."""
    unsupported = {f"generation.strategy = {cfg.generation.strategy.type!r}": cfg.generation.strategy.type != "plain"}
    if any(unsupported.values()):
        what = ", ".join(k for k, v in unsupported.items() if v)
        raise ValueError(f"env: multi-turn episodes do not support {what} yet (issue 28)")
    fmt: TurnFormat
    if bool(getattr(tok, "chat_template", None)) and cfg.task.chat is not False:
        fmt = ChatFormat(tok, cfg.task.system_prompt)
    else:
        fmt = PlainFormat(lambda s: tok(s, add_special_tokens=False)["input_ids"], params.stop_token_ids)
    runner = None
    if cfg.env.workers or in_worker:
        from rollwise.envs.runner import EpisodeRunner
        from rollwise.envs.worker import EnvPool

        envs = EnvPool(env_factory(cfg.env), cfg.env.timeout_s, cfg.env.reward_range, cfg.env.workers)
        runner = EpisodeRunner(engine, envs, fmt, cfg.env, before_generate)
    collector = EpisodeCollector(engine, env_factory(cfg.env), cfg.env, pool, fmt, params, runner)
    own_loop = getattr(ENVIRONMENTS.get(cfg.env.type), "agent_loop", None)
    if own_loop is not None:  # an environment that plays its own episodes (verifiers): its loop, same signature
        if cfg.run.mode != "sync":
            raise ValueError(f"env.type = {cfg.env.type!r} plays its own episodes in the rollout process: "
                             "run.mode = 'sync' only")
        collector.loop = own_loop(engine, env_factory(cfg.env), fmt, cfg.env)
    return collector

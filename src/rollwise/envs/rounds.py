"""Rounds of episodes as plain data, so a round can be played where the engine is: in the trainer (sync mode)
or on an async rollout worker (``run.mode = "async"``, ``train/async_rollouts.py``, whose staleness bound,
weight sync and worker restarts episodes reuse as they are).

:class:`EpisodeRounds` is the part of :class:`rollwise.envs.collector.EpisodeCollector` that the async source
calls: ``make_job`` (a sampler request as an :class:`EpisodeJob`, every episode with its id), ``split`` (one
job per task: each task's group comes back, and is booked, once its own episodes are done, not its whole
step's: trajectory-level asynchrony), ``play`` (on the worker), ``record`` (the collector's: book a result, turns
as rollouts, faulted tries and turns lost with a dead environment worker charged as discarded) and
``check_faults`` (the step is handed over: its ``env/`` metrics). Sync mode plays the same jobs in the trainer,
so both modes book episodes with one function.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

from rollwise.envs.loop import Episode
from rollwise.envs.retry import play_with_retries
from rollwise.generation.base import SamplingParams
from rollwise.sampling import Request
from rollwise.train.rollout import StepRollouts
from rollwise.types import Prompt


@dataclass
class EpisodeJob:
    """What to play: ``counts[i]`` episodes of task ``prompts[i]``, episode ``j`` with id ``uids[i][j]``."""

    prompts: list[int]  # [P] pool indices of the tasks
    counts: list[int]  # [P] episodes per task
    tasks: dict[int, Prompt]  # pool index -> task
    uids: list[list[str]]  # [P][count] episode ids: "<seed of the request>:<task>:<j>", unique in a run
    params: SamplingParams
    version: int  # the weight version the round was planned under


@dataclass
class EpisodeResult:
    """A played job: its episodes (one per id, in order) and what it cost besides them."""

    episodes: list[Episode]
    version: int
    gen_seconds: float = 0.0
    lost_tokens: int = 0  # decoded for tries lost with a dead environment worker (played again, never trained)
    stats: dict[str, float] = field(default_factory=dict)  # the player's runner counters so far (cumulative)
    worker: int = 0  # which rollout worker played it (async)


class _Counted:
    """A runner's ``run`` that adds each call's lost tokens to ``self.lost`` (retries call ``run`` again)."""

    def __init__(self, runner: Any) -> None:
        self.runner, self.lost = runner, 0

    def run(self, tasks: list[Prompt], task_index: list[int], params: SamplingParams, version: int = 0) -> Any:
        stats: dict[str, int] = {}
        episodes = self.runner.run(tasks, task_index, params, version, stats=stats)
        self.lost += stats.get("replayed_tokens", 0)
        return episodes


class EpisodeRounds:
    """Jobs, play and booking of an episode collector (needs ``pool``, ``params``, ``limits``, ``loop``,
    ``runner``: the :class:`rollwise.envs.runner.EpisodeRunner` or None for the in-process ``AgentLoop``)."""

    round_concurrency = 64  # async: jobs (task groups) one rollout worker plays at once, sharing its engine
    pool: list[Prompt]
    params: SamplingParams
    limits: Any
    loop: Any
    runner: Any
    last_episodes: list[Episode]

    def make_job(self, req: Request, seed: int, version: int) -> EpisodeJob:
        prompts, counts = [int(p) for p in req.prompts], [int(c) for c in req.counts]
        p = self.params
        return EpisodeJob(prompts, counts, {i: self.pool[i] for i in prompts},
                          [[f"{seed}:{i}:{j}" for j in range(c)] for i, c in zip(prompts, counts)],
                          SamplingParams(p.temperature, p.top_p, p.max_new_tokens, p.stop_token_ids, seed), version)

    @staticmethod
    def split(job: EpisodeJob, workers: int) -> list[EpisodeJob]:
        """One job per task, each with a seed of its own (``seed + 31 i``): each group is booked when done."""
        out = []
        for i, (p, c, u) in enumerate(zip(job.prompts, job.counts, job.uids)):
            seed = None if job.params.seed is None else job.params.seed + 31 * i
            out.append(EpisodeJob([p], [c], {p: job.tasks[p]}, [u], dataclasses.replace(job.params, seed=seed),
                                  job.version))
        return out

    def play(self, job: EpisodeJob, worker: int = 0) -> EpisodeResult:
        """Play a job's episodes (faulted ones again up to ``env.retries`` times) with this collector's loop."""
        index = [p for p, c in zip(job.prompts, job.counts) for _ in range(c)]
        loop = self.loop if self.runner is None else _Counted(self.runner)
        t0 = time.perf_counter()
        episodes = play_with_retries(loop, [job.tasks[i] for i in index], index, job.params, job.version,
                                     self.limits.retries)
        gen_seconds = time.perf_counter() - t0
        for ep, uid in zip(episodes, [u for us in job.uids for u in us]):
            ep.uid = uid
        return EpisodeResult(episodes, job.version, gen_seconds, getattr(loop, "lost", 0), self.runner_stats(),
                             worker)

    def book(self, got: EpisodeResult, out: StepRollouts) -> None:
        """Keep a played job's episodes (the step's ``env/`` metrics at handover) and its player's counters."""
        if got.stats:
            self._worker_stats()[got.worker] = got.stats
        self._booked().setdefault(id(out), []).extend(got.episodes)

    def check_faults(self, out: StepRollouts, step: int) -> None:
        """The step is handed over (async): its episodes become the last step's, whose ``env/`` metrics the async
        source adds to the step's row (``async_metrics``). Environment faults never stop a run (their episodes
        are dropped)."""
        self.last_episodes = self._booked().pop(id(out), [])

    def async_metrics(self) -> dict[str, float]:
        """The metrics of the step handed over last (async mode's rows)."""
        return self.metrics()  # type: ignore[attr-defined]

    def runner_stats(self) -> dict[str, float]:
        """The runner's counters (worker restarts, replays, engine idle seconds); none for the in-process loop."""
        return self.runner.stats() if self.runner is not None else {}

    def env_worker_metrics(self) -> dict[str, float]:
        """``env/worker_restarts``, ``env/replayed_episodes``, ... summed over the rollout workers (async) or
        this process's runner (sync)."""
        stats = list(self._worker_stats().values()) or ([self.runner_stats()] if self.runner is not None else [])
        out: dict[str, float] = {}
        for s in stats:
            for k, v in s.items():
                out[f"env/{k}"] = out.get(f"env/{k}", 0) + v
        return out

    def close(self) -> None:
        """Stop this process's environment workers."""
        if self.runner is not None:
            self.runner.pool.close_all()

    def _booked(self) -> dict[int, list[Episode]]:
        return self.__dict__.setdefault("_booked_eps", {})

    def _worker_stats(self) -> dict[int, dict[str, float]]:
        return self.__dict__.setdefault("_stats_of", {})

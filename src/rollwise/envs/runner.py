"""The pipelined agent loop: episodes played through the engine while their environments answer on
environment workers (``envs/worker.py``), each episode at its own pace (RollArt arXiv 2512.22560's
disaggregation, trajectory-level asynchrony as in AReaL arXiv 2505.24298).

:class:`rollwise.envs.loop.AgentLoop` plays a batch turn by turn: every live episode's action in one
``generate`` call, then every environment's step, one after another, in this process; the engine waits for the
slowest environment of every turn. :class:`EpisodeRunner` sends the steps to an :class:`EnvPool` without waiting
and samples the next action of whichever episodes have their observation back, so generation goes on while
environments compute, and N workers compute N steps at once. An episode is done (and its ``run`` call may
return) without waiting for the others of its batch.

Several ``run`` calls may be in progress at once from different threads (async mode's rollout worker: one
call per task group, every group of every step in flight sharing the engine's batches): each registers its
episodes and waits; one of them at a time drives the loop (``before_generate`` runs in the driving thread
before each ``generate``: new weights land between turns). With answers that come at once (``workers = 0``)
and one call, the batches, seeds and so the episodes are exactly :class:`AgentLoop`'s (a test holds them equal).

An environment worker that dies takes its episodes' environment state with it: each of those episodes is played
again from its start (``replayed_episodes``; its tokens so far are counted in ``replayed_tokens`` and never
trained), at most ``max_replays`` times, then dropped as an ``error`` fault. No episode is lost or returned twice.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from rollwise.envs.base import EnvKnobs
from rollwise.envs.loop import Episode, Turn, TurnFormat
from rollwise.envs.worker import LOST, Answer, EnvPool
from rollwise.generation.base import Engine, SamplingParams
from rollwise.types import Prompt


@dataclass
class _Job:
    """One ``run`` call's episodes."""

    params: SamplingParams
    version: int
    eps: list[_Ep] = field(default_factory=list)
    left: int = 0
    done: threading.Event = field(default_factory=threading.Event)
    replayed: int = 0
    replayed_tokens: int = 0


@dataclass
class _Ep:
    seq: int  # registration order: batch order, and the episode's key on the workers
    task: Prompt
    job: _Job
    episode: Episode
    max_turns: int
    context: list[int] = field(default_factory=list)
    state: str = "env"  # "env": a call out; "ready": its next action to sample; "done"
    lives: int = 0  # times played again after its worker died

    @property
    def key(self) -> str:
        return str(self.seq)


class EpisodeRunner:
    """Plays episodes through ``engine`` with their environments on ``pool``; ``run`` as ``AgentLoop.run``."""

    def __init__(self, engine: Engine, pool: EnvPool, fmt: TurnFormat, limits: EnvKnobs,
                 before_generate: Any = None, max_replays: int = 3, gather_share: float = 0.25,
                 gather_s: float = 0.01) -> None:
        self.engine, self.pool, self.fmt, self.limits = engine, pool, fmt, limits
        self.before_generate, self.max_replays = before_generate, max_replays
        self.gather_share, self.gather_s = gather_share, gather_s  # batch answers that come close together
        self._lock = threading.Lock()  # guards _incoming
        self._drive = threading.Lock()  # one thread drives at a time
        self._incoming: list[_Ep] = []
        self._live: dict[str, _Ep] = {}
        self._seq = 0
        self.counters = {"replayed_episodes": 0, "replayed_tokens": 0, "engine_idle_seconds": 0.0,
                         "generate_seconds": 0.0}

    def run(self, tasks: list[Prompt], task_index: list[int], params: SamplingParams, version: int = 0,
            stats: dict[str, int] | None = None) -> list[Episode]:
        """Play ``tasks[i]`` once each (pool index ``task_index[i]``); returns when all are done, with this call's
        ``replayed`` episodes and ``replayed_tokens`` in ``stats``."""
        job = _Job(params, version)
        lim = self.limits
        with self._lock:
            for t, i in zip(tasks, task_index):
                ep = Episode(i)
                turns = min(lim.max_turns, int(t.meta.get("max_turns", lim.max_turns)))
                job.eps.append(_Ep(self._seq, t, job, ep, turns))
                self._seq += 1
            job.left = len(job.eps)
            if not job.left:
                job.done.set()
            self._incoming += job.eps
        while not job.done.is_set():
            if self._drive.acquire(blocking=False):
                try:
                    while not job.done.is_set():
                        self._turn()
                finally:
                    self._drive.release()
            else:
                job.done.wait(0.01)
        if stats is not None:
            stats.update(replayed=job.replayed, replayed_tokens=job.replayed_tokens)
        return [x.episode for x in job.eps]

    def stats(self) -> dict[str, float]:
        """Counters since this runner was built, the pool's worker restarts and its workers' busy seconds (the
        environments' idle time is workers x wall-clock minus it)."""
        return {**self.counters, "worker_restarts": self.pool.restarts, "worker_busy_seconds": self.pool.busy_seconds()}

    # ------------------------------------------------------------------ the loop (driving thread only)
    def _turn(self) -> None:
        """Take in new episodes, collect the answers that came (waiting when nothing can be sampled), then sample
        one action for every episode whose observation is in, and send the actions to the environments."""
        with self._lock:
            new, self._incoming = self._incoming, []
        for x in new:
            self._live[x.key] = x
            self.pool.submit_reset(x.key, x.task)
        idle = not any(x.state == "ready" for x in self._live.values())
        t0 = time.perf_counter()
        answers = self.pool.poll(timeout=0.05 if idle else 0.0)
        if idle:
            self.counters["engine_idle_seconds"] += time.perf_counter() - t0
        for key, ans in answers:
            self._answer(self._live[key], ans)
        self._gather()
        rooms: dict[tuple, list[_Ep]] = {}
        for x in sorted((x for x in self._live.values() if x.state == "ready"), key=lambda x: x.seq):
            room = self.limits.max_tokens - len(x.context)
            if len(x.episode.turns) >= x.max_turns:
                self._finish(x, "max_turns")
            elif room < 1:
                self._finish(x, "max_tokens")
            else:
                p = x.job.params
                rooms.setdefault((min(room, p.max_new_tokens), p.temperature, p.top_p, p.stop_token_ids),
                                 []).append(x)
        for k, ((room, temp, top_p, stop), batch) in enumerate(sorted(rooms.items(), key=lambda kv: kv[0][0])):
            first = batch[0]
            seed = first.job.params.seed
            stops = tuple(dict.fromkeys((*stop, *sorted(getattr(self.fmt, "stop_ids", ())))))
            p = SamplingParams(temp, top_p, room, stops,
                               None if seed is None else seed + 1_000_003 * len(first.episode.turns) + 7919 * k)
            if self.before_generate is not None:
                self.before_generate()
            t0 = time.perf_counter()
            got = self.engine.generate([x.context for x in batch], [1] * len(batch), p)
            self.counters["generate_seconds"] += time.perf_counter() - t0
            for x, (c,) in zip(batch, got):
                turn = Turn(list(x.context), list(c.token_ids), list(c.logprobs),
                            list(c.versions) or [x.job.version] * len(c.token_ids), c.finish_reason, c.text)
                x.episode.turns.append(turn)
                x.state = "env"
                self.pool.submit_step(x.key, turn.text)

    def _gather(self) -> None:
        """While fewer than ``gather_share`` of the episodes waiting on an answer or a sample are ready to sample,
        wait up to ``gather_s`` for more answers: one ``generate`` call for a batch rather than many for one or
        two episodes each (answers that come at once never wait: the in-process worker has none in flight)."""
        deadline = time.perf_counter() + self.gather_s
        while self.pool.in_flight:
            ready = sum(x.state == "ready" for x in self._live.values())
            left = deadline - time.perf_counter()
            if ready >= self.gather_share * (ready + self.pool.in_flight) or left <= 0:
                return
            t0 = time.perf_counter()
            answers = self.pool.poll(timeout=left)
            self.counters["engine_idle_seconds"] += time.perf_counter() - t0
            for key, ans in answers:
                self._answer(self._live[key], ans)

    def _answer(self, x: _Ep, ans: Answer) -> None:
        ep = x.episode
        if ans == LOST:
            self._replay(x)
        elif ans[0] == "fault":
            ep.fault, ep.fault_detail = ans[1], ans[2]
            self._finish(x, "fault")
        elif len(ans) == 2:  # reset: the first observation
            x.context = self.fmt.first(ans[1])
            x.state = "ready"
        else:
            _, obs, reward, done, info = ans
            turn = ep.turns[-1]
            turn.reward = reward
            ep.info = info
            if done:
                ep.success = bool(info.get("success", False))
                x.context = x.context + turn.action_ids
                self._finish(x, "done")
            else:
                x.context = x.context + self.fmt.after(turn.action_ids, obs)
                x.state = "ready"

    def _replay(self, x: _Ep) -> None:
        """The episode's worker died: play it again from its start (its tokens so far are never trained)."""
        tokens = sum(len(t.action_ids) for t in x.episode.turns)
        x.job.replayed_tokens += tokens
        self.counters["replayed_tokens"] += tokens
        x.lives += 1
        if x.lives > self.max_replays:
            x.episode.fault = "error"
            x.episode.fault_detail = f"its environment worker died {x.lives} times under it"
            self._finish(x, "fault")
            return
        x.job.replayed += 1
        self.counters["replayed_episodes"] += 1
        x.episode = Episode(x.episode.task_index)
        x.context, x.state = [], "env"
        self.pool.submit_reset(x.key, x.task)

    def _finish(self, x: _Ep, how: str) -> None:
        ep = x.episode
        ep.finish = how
        last = ep.turns[-1] if ep.turns else None
        ep.tokens = max(len(x.context), len(last.context_ids) + len(last.action_ids) if last else 0)
        if how in ("max_turns", "max_tokens"):
            self.pool.close(x.key)
        x.state = "done"
        del self._live[x.key]
        x.job.left -= 1
        if x.job.left == 0:
            x.job.done.set()

"""A rollout worker: one engine, its verifier and rollout strategy, in its own process (a Ray actor in async
mode). It runs generation rounds (:class:`RoundJob`) and takes new weights whenever the trainer publishes them;
with ``async.interrupt`` a round in progress yields to them at its next decode step (the aborted rows resume
under the new weights, their tokens keep the version that sampled them).

The class imports no Ray: ``async_rollouts`` wraps it with ``ray.remote``; rounds run one at a time, while
``set_weights`` and ``stats`` have their own thread, so new weights land while ``run`` decodes. The worker
builds the policy's architecture from the config (no warm start: the first weights come from the trainer), so
it needs no run directory and no training data.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import torch

from rollwise.config import Config
from rollwise.generation.interrupt import InterruptibleEngine
from rollwise.train import rollout_parts as parts
from rollwise.train.rollout import run_job
from rollwise.train.weight_sync import Meta, new_group, worker_receive


class RolloutWorker:
    def __init__(self, cfg_data: dict[str, Any], index: int, threads: int = 1) -> None:
        torch.set_num_threads(threads)
        cfg = Config.model_validate(cfg_data)
        cfg = cfg.model_copy(update={"warmstart": cfg.warmstart.model_copy(update={"enabled": False})})
        self.cfg, self.index = cfg, index
        self.model, self.tok, _ = parts.build_policy(cfg, None)  # no warm start: no task
        self.model.eval()
        self.verifier = parts.build_verifier(cfg)
        self.strategy = parts.build_strategy(cfg)
        self.shaper = parts.build_reward_shaper(cfg)
        self._problems: dict[int, tuple[str, Any]] = {}  # of the prompts the strategy holds (APRIL's buffer)
        self.version = -1  # no trainer weights yet
        self._group: Any = None  # the collective weight sync's broadcast group (join_group)
        self._lock = threading.Lock()
        self._pending: tuple[dict[str, torch.Tensor], int] | None = None
        base = parts.build_engine(cfg, self.model, self.tok)
        self.engine = InterruptibleEngine(base, self._has_pending, self._apply) if cfg.async_.interrupt else base
        self.episodes = None  # an [env] run's rounds are episodes, played several rounds at once (envs/rounds.py)
        if cfg.env is not None:
            from rollwise.envs.collector import build_episode_collector

            params = parts.sampling_params(cfg, self.tok)
            self.episodes = build_episode_collector(cfg, self.engine, [], self.tok, params, in_worker=True,
                                                    before_generate=self._apply)

    def pid(self) -> int:
        return os.getpid()

    def restarted(self) -> bool:
        """Whether this process is a restart of the actor (it died before the trainer first saw it)."""
        try:
            import ray  # only ever called inside a Ray actor

            return bool(ray.get_runtime_context().was_current_actor_reconstructed)
        except Exception:  # not under Ray
            return False

    def set_weights(self, state: dict[str, torch.Tensor], version: int) -> int:
        """Queue the trainer's weights; a running round picks them up at its next decode step (interrupt), an
        idle worker at its next round."""
        with self._lock:
            if self._pending is None or version > self._pending[1]:
                self._pending = (state, version)
        return version

    def join_group(self, addr: str, port: int, rank: int, world: int, backend: str) -> None:
        """Join the trainer's weight-broadcast group (``async.weight_sync = "collective"``)."""
        self._group = None  # the old group first: its store and sockets go before the new rendezvous
        self._group = new_group(addr, port, rank, world, backend)

    def receive_weights(self, meta: Meta, version: int) -> int:
        """Take part in the trainer's broadcast of ``version`` and queue the weights as ``set_weights`` does."""
        return self.set_weights(worker_receive(meta, next(self.model.parameters()).device, self._group), version)

    def run(self, job: Any, latest: tuple[list[Any], int] | None = None) -> Any:
        """Generate and verify one round with the newest weights, at least the version the round was planned
        under: ``latest`` = ([object ref of the trainer's newest weights], version), fetched here when this
        worker has nothing as new (a fresh or restarted worker, or a round that overtook ``set_weights``);
        None under the collective weight sync, which broadcasts to every worker before a round is sent."""
        with self._lock:
            have = max(self.version, self._pending[1] if self._pending else -1)
        if have < job.version and latest is not None:
            import ray  # only ever called inside a Ray actor

            self.set_weights(ray.get(latest[0][0]), latest[1])
        if self.episodes is not None:  # the thread that drives the episodes applies new weights between turns
            return self.episodes.play(job, self.index)
        self._apply()
        if self.version < job.version:
            raise RuntimeError(f"rollout worker {self.index} has weights v{self.version}, the round needs "
                               f"v{job.version}")
        self._problems.update(job.problems)
        out = run_job(job, self.engine, self.verifier, self.strategy, self.shaper, self._problems.__getitem__)
        held = self.strategy.pending_keys()  # all a later round can return that its job does not name
        self._problems = {k: v for k, v in self._problems.items() if k in held}
        return out

    def strategy_state(self) -> dict[str, Any]:
        """The rollout strategy's state and the problems of the prompts it holds."""
        return {"strategy": self.strategy.state_dict(), "problems": dict(self._problems)}

    def load_strategy_state(self, state: dict[str, Any]) -> None:
        if "strategy" not in state:  # a checkpoint from before the problems were kept
            state = {"strategy": state, "problems": {}}
        self.strategy.load_state_dict(state["strategy"])
        self._problems = dict(state["problems"])

    def stats(self) -> dict[str, int]:
        eng = self.engine
        return {"interrupts": getattr(eng, "interrupts", 0), "resumed_rows": getattr(eng, "resumed_rows", 0),
                "version": self.version}

    # ------------------------------------------------------------------ weights
    def _has_pending(self) -> bool:
        return self._pending is not None

    def _apply(self) -> None:
        with self._lock:
            got, self._pending = self._pending, None
        if got is None:
            return
        state, version = got
        self.model.load_state_dict(state)
        self.version = version
        self.engine.sync_weights(self.model, version)

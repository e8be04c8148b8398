"""Environment workers: environments in processes of their own, apart from the engine and the trainer
(RollArt arXiv 2512.22560, DART arXiv 2509.23866: disaggregate the stateful, CPU-heavy environment side so a
slow environment never blocks generation).

- :class:`EnvWorker` holds the environments of many episodes, each under a key its caller chooses, and answers
  ``reset(key, task)`` / ``step(key, action)`` / ``close(key)`` with plain tuples (picklable, checked: every
  call goes through :func:`guarded_call` and :func:`check_step`, so a fault comes back as data, never as an
  exception). It imports no Ray; with ``[env] workers = N`` each of N workers is a Ray actor. A method that
  needs environments on a worker of its own (DART's curation, a verifier of whole episodes) can use it as is.
- :class:`EnvPool` is the caller's side: episodes pinned to a worker by key, calls sent without waiting
  (``submit_reset`` / ``submit_step``) and answers collected as they come (``poll``). ``workers = 0`` keeps
  one :class:`EnvWorker` in this process whose calls answer at once (no Ray).

Use from other code (e.g. a curation pass that plays or checks episodes off the trainer's path)::

    pool = EnvPool(env_factory(cfg.env), cfg.env.timeout_s, cfg.env.reward_range, workers=4)
    pool.submit_reset("ep-0", task)                    # returns at once
    for key, answer in pool.poll(timeout=None):        # ("ok", messages) once the reset is in
        pool.submit_step(key, "8")                     # then ("ok", obs, reward, done, info) or a fault
    pool.close_all()

A worker that dies (SIGKILL, OOM) is restarted by Ray (``max_restarts=-1``); every call it had not answered
comes back from ``poll`` as :data:`LOST`, and the caller plays those episodes again from their start on the new
process (their environment state died with the old one). ``restarts`` counts new worker processes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from rollwise.envs.base import EnvFault, check_messages, check_step, guarded_call
from rollwise.types import Prompt

LOST = ("lost",)
"""``poll``'s answer for a call whose worker died before answering."""

Answer = tuple  # ("ok", messages) | ("ok", messages, reward, done, info) | ("fault", kind, detail) | LOST


class EnvWorker:
    """Environments of many episodes in one process; answers are ``("ok", ...)`` or ``("fault", kind, detail)``."""

    def __init__(self, make_env: Callable[[], Any], timeout_s: float, reward_range: tuple[float, float]) -> None:
        self.make_env, self.timeout_s, self.reward_range = make_env, timeout_s, tuple(reward_range)
        self.envs: dict[str, Any] = {}
        self.busy_s = 0.0  # seconds spent in reset and step (the rest of its life it waited for work)

    def pid(self) -> int:
        return os.getpid()

    def busy(self) -> float:
        """Seconds this process spent in ``reset`` and ``step``."""
        return self.busy_s

    def reset(self, key: str, task: Prompt) -> Answer:
        """A fresh environment for episode ``key`` (replacing any it had): ``("ok", first messages)``."""
        t0 = time.perf_counter()
        try:
            return self._reset(key, task)
        finally:
            self.busy_s += time.perf_counter() - t0

    def _reset(self, key: str, task: Prompt) -> Answer:
        try:
            env = guarded_call(self.make_env, timeout_s=self.timeout_s)
            self.envs[key] = env
            return ("ok", check_messages(guarded_call(env.reset, task, timeout_s=self.timeout_s)))
        except EnvFault as f:
            self.envs.pop(key, None)
            return ("fault", f.kind, f.detail)

    def step(self, key: str, action: str) -> Answer:
        """Episode ``key``'s step: ``("ok", observation messages, reward, done, info)``; the environment is
        dropped once the episode is done or faulted. :data:`LOST` for a key this process never reset (it is a
        restart of the worker that held the episode)."""
        t0 = time.perf_counter()
        try:
            return self._step(key, action)
        finally:
            self.busy_s += time.perf_counter() - t0

    def _step(self, key: str, action: str) -> Answer:
        env = self.envs.get(key)
        if env is None:  # this process is a restart: the episode's state died with the one before
            return LOST
        try:
            obs, reward, done, info = check_step(guarded_call(env.step, action, timeout_s=self.timeout_s),
                                                 self.reward_range)
        except EnvFault as f:
            self.envs.pop(key, None)
            return ("fault", f.kind, f.detail)
        if done:
            self.envs.pop(key, None)
        return ("ok", obs, reward, done, info)

    def close(self, key: str) -> None:
        """Forget episode ``key`` (ended by a limit on the caller's side)."""
        self.envs.pop(key, None)

    def live(self) -> int:
        """Episodes this worker holds."""
        return len(self.envs)


class _Now:
    """A call answered at once (the in-process worker)."""

    def __init__(self, value: Answer) -> None:
        self.value = value


class EnvPool:
    """The caller's side of ``workers`` environment workers (0: one in-process worker, no Ray)."""

    def __init__(self, make_env: Callable[[], Any], timeout_s: float, reward_range: tuple[float, float],
                 workers: int = 0, ray: Any = None) -> None:
        self.workers_n = workers
        self.restarts = 0
        self.pending: dict[Any, str] = {}  # call handle -> episode key, in sending order
        self.where: dict[str, int] = {}  # episode key -> worker index
        self._next = 0
        if workers == 0:
            self.ray, self.workers = None, [EnvWorker(make_env, timeout_s, reward_range)]
            self._pids = [os.getpid()]
            return
        self.ray, self.workers, self._pids, self._owns_ray = ray, [], [], False
        self._args = (make_env, timeout_s, tuple(reward_range))

    def _start(self) -> None:
        """Start the workers at the first episode (Ray is started here, loopback only, if nobody started it)."""
        if self.ray is None:
            import ray

            self.ray = ray
        if not self.ray.is_initialized():
            os.environ.setdefault("RAY_worker_niceness", "0")  # as the async mode's Ray (train/async_rollouts.py)
            self.ray.init(address="local", num_cpus=os.cpu_count() or 1, _node_ip_address="127.0.0.1",
                          include_dashboard=False, log_to_driver=False, configure_logging=False)
            self._owns_ray = True
        # one call at a time per worker: an environment may hold the GIL (CPU-heavy); concurrency comes from
        # the number of workers. A dead worker's unanswered calls fail (max_task_retries=0): the caller replays
        actor = self.ray.remote(max_restarts=-1, max_task_retries=0, max_concurrency=1, num_cpus=0,
                                concurrency_groups={"control": 1})(EnvWorker)
        self.workers = [actor.remote(*self._args) for _ in range(self.workers_n)]
        self._pids = [self._pid(i) for i in range(self.workers_n)]

    # ------------------------------------------------------------------ calls
    def submit_reset(self, key: str, task: Prompt) -> None:
        """Start episode ``key`` on the next worker in turn (or the one it had: a replayed episode)."""
        if not self.workers:
            self._start()
        if key not in self.where:
            self.where[key], self._next = self._next % len(self.workers), self._next + 1
        self._send(key, "reset", task)

    def submit_step(self, key: str, action: str) -> None:
        self._send(key, "step", action)

    def close(self, key: str) -> None:
        """Forget an episode the caller ended (a limit); a worker drops finished and faulted ones itself."""
        w = self.where.pop(key, None)
        if w is not None:
            if not self.workers_n:
                self.workers[w].close(key)
            else:
                self.workers[w].close.remote(key)  # nothing waits for it

    def poll(self, timeout: float | None = 0.0) -> list[tuple[str, Answer]]:
        """The answers that have come, in sending order, as ``(key, answer)`` (:data:`LOST` for a call whose
        worker died); waits up to ``timeout`` seconds for a first one (None: until one comes)."""
        if not self.pending:
            return []
        if not self.workers_n:
            got, self.pending = list(self.pending.items()), {}
            return [(key, h.value) for h, key in got]
        refs = list(self.pending)
        ready, _ = self.ray.wait(refs, num_returns=1, timeout=timeout)
        if not ready:
            return []
        ready, _ = self.ray.wait(refs, num_returns=len(refs), timeout=0)  # and the others already in
        done = set(ready)
        out = []
        for ref in [r for r in refs if r in done]:
            key = self.pending.pop(ref)
            out.append((key, self._get(ref, key)))
        return out

    def busy_seconds(self) -> float:
        """Seconds the workers (their current processes) spent in environment calls, summed; read through each
        worker's own control thread, so it does not wait behind queued steps (0 for a worker that does not
        answer within a second)."""
        if not self.workers_n:
            return self.workers[0].busy()
        from ray.exceptions import GetTimeoutError, RayActorError

        total = 0.0
        for w in self.workers:
            try:
                total += float(self.ray.get(w.busy.options(concurrency_group="control").remote(), timeout=1.0))
            except (RayActorError, GetTimeoutError):
                pass
        return total

    @property
    def in_flight(self) -> int:
        return len(self.pending)

    def _send(self, key: str, method: str, arg: Any) -> None:
        w = self.where[key]
        if not self.workers_n:
            self.pending[_Now(getattr(self.workers[w], method)(key, arg))] = key
        else:
            self.pending[getattr(self.workers[w], method).remote(key, arg)] = key

    def _get(self, ref: Any, key: str) -> Answer:
        from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

        try:
            got = self.ray.get(ref)
        except (RayActorError, ActorDiedError, ActorUnavailableError):
            got = LOST
        if got == LOST:
            self._revive(self.where.get(key))
        return got

    # ------------------------------------------------------------------ restarts
    def _revive(self, worker: int | None) -> None:
        """Wait out the restart of a worker that died (every worker when which is unknown) and count it once."""
        for i in range(len(self.workers)) if worker is None else [worker]:
            pid = self._pid(i)
            if pid != self._pids[i]:
                self.restarts += 1
                self._pids[i] = pid

    def _pid(self, i: int, wait_s: float = 120.0) -> int:
        from ray.exceptions import ActorDiedError, ActorUnavailableError, GetTimeoutError, RayActorError

        deadline = time.monotonic() + wait_s
        while True:
            try:
                return int(self.ray.get(self.workers[i].pid.remote(), timeout=max(deadline - time.monotonic(), 1.0)))
            except (RayActorError, ActorDiedError, ActorUnavailableError, GetTimeoutError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"environment worker {i} did not come back within {wait_s:.0f} s") from None
                time.sleep(0.2)

    def close_all(self) -> None:
        """Stop the workers (and the Ray this pool started)."""
        if self.workers_n:
            for w in self.workers:
                try:
                    self.ray.kill(w)
                except Exception:  # noqa: BLE001 - its Ray is gone already (another pool started and stopped it)
                    pass
            self.workers, self.pending, self.where = [], {}, {}
            if self._owns_ray:
                self.ray.shutdown()
                self._owns_ray = False

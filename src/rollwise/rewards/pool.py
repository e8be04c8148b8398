"""``VerifierPool``: bounded verification in worker processes, so no answer can stall or kill training.

Each check is bounded in input size (``max_chars``; longer texts are skipped unparsed, before any IPC) and
in time (``timeout_s``; a worker still busy at its deadline is SIGKILLed and replaced). A worker that dies
mid-check (segfault, out-of-memory abort, ``os._exit``) is replaced too. Failed checks score 0, are marked
with their kind in ``info["fault"]`` ("error", "timeout", "crash") and counted in ``stats``. Every score is
checked against ``reward_range``: outside it, the batch raises :class:`RewardRangeError` (policy "error") or
the score is clamped and counted as an "out_of_range" fault (policy "clamp").

Workers are started with ``spawn`` (not ``fork``: forking a process that holds torch/OpenMP threads can
deadlock), ignore SIGINT, and run under an address-space limit so a runaway power like ``10^{10^{10}}``
fails there instead of swapping the host. A worker announces itself ready after importing its verifier and,
for a built-in (registered) verifier only, one warm-up call on a known-good pair (so sympy's import is never
charged to a check's time budget). User code is never called before a real check: a verifier that dies on
an input the pool made up would otherwise kill the run. A warm-up that fails, hangs or kills its worker is
not fatal either: the worker is replaced and later workers skip the warm-up.

Verifiers marked ``safe_inline`` (``exact``, ``gsm8k``) run in-process instead: no IPC, no startup.
Workers run the raw verifier (a :class:`~rollwise.rewards.base.BoundedVerifier` given as ``verifier`` is
unwrapped), so a worker never starts a pool; the shared pools behind ``get_verifier`` are instances of this class.
Replacements start asynchronously; the time a batch takes is bounded by about
``ceil(n / workers) * timeout_s`` plus worker start-up when every worker had to be replaced.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import pickle
import signal
import sys
import threading
import time
import types
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any

from rollwise.rewards.core import (
    FAULTS,
    VERIFIERS,
    Verifier,
    VerifierSpec,
    VerifyResult,
    WrappedVerifier,
    _mark_worker_process,
    check_reward_range,
    is_inline_safe,
    raw_verifier,
)

__all__ = ["DEFAULT_MAX_CHARS", "VerifierPool"]

DEFAULT_MAX_CHARS = 64 * 1024
_STARTUP_TIMEOUT_S = 120.0  # spawn + imports + warm-up of a fresh worker; generous for loaded CI machines
_MAX_STARTUP_FAILURES = 3
_WARMUP = ("The answer is \\boxed{\\frac{1}{2}}", "0.5")  # built-in verifiers only
# stats key of each fault kind (the plural keys predate out_of_range; evaluation and tests read them)
_STAT_KEY = {"error": "errors", "timeout": "timeouts", "crash": "crashes", "out_of_range": "out_of_range"}


def _resolve(spec: VerifierSpec) -> Verifier:
    return raw_verifier(spec)  # never a BoundedVerifier: this pool is the bound


def _limit_memory(extra_mb: int | None) -> None:
    """Cap this process's address space at its current size plus ``extra_mb`` (Linux only, best effort)."""
    if not extra_mb:
        return
    try:
        import resource

        with open("/proc/self/statm") as f:
            current = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        limit = current + extra_mb * 2**20
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ImportError, OSError, ValueError):
        pass


@contextlib.contextmanager
def _main_hidden(spec: VerifierSpec, start_method: str) -> Iterator[None]:
    """Start a spawned worker without the parent's ``__main__``: spawn would re-run the user's script in the
    worker, which fails (and recurses) in a script without an ``if __name__ == "__main__"`` guard. Kept when
    the verifier itself lives there. Only ``Process.start`` runs inside (it reads ``sys.modules`` synchronously)."""
    main = sys.modules.get("__main__")
    try:
        needs_main = b"__main__" in pickle.dumps(spec)
    except Exception:  # unpicklable: let Process.start raise its own error
        needs_main = True
    if needs_main or main is None or start_method == "fork":  # a forked child would keep the stand-in
        yield
        return
    sys.modules["__main__"] = types.ModuleType("__main__")  # no __file__, no __spec__: nothing to re-run
    try:
        yield
    finally:
        sys.modules["__main__"] = main


def _worker_main(conn: Connection, spec: VerifierSpec, memory_mb: int | None, warmup: bool) -> None:
    """Worker loop: receive ``(index, completion, reference)``, reply ``(kind, index, payload)``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the trainer's to handle; it closes the pool
    _mark_worker_process()  # bounded verifiers called by user code here run raw, under this worker's deadline
    try:
        fn = _resolve(spec)
    except BaseException as exc:
        conn.send(("fatal", -1, f"{type(exc).__name__}: {exc}"))
        return
    if warmup:
        try:
            fn(*_WARMUP)  # import sympy & co now, not inside the first check's time budget
        except BaseException:  # even SystemExit: a warm-up is an optimisation, never a reason to stop
            pass
    _limit_memory(memory_mb)
    conn.send(("ready", -1, None))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):  # parent is gone
            return
        if msg is None:
            return
        index, completion, reference = msg
        try:
            reply: tuple[str, int, Any] = ("ok", index, fn(completion, reference))
        except Exception as exc:  # includes MemoryError and RecursionError from deep parses
            reply = ("error", index, f"{type(exc).__name__}: {str(exc)[:300]}")
        try:
            conn.send(reply)
        except Exception as exc:  # e.g. a user verifier put something unpicklable in info
            conn.send(("error", index, f"unpicklable result: {str(exc)[:300]}"))


class _Worker:
    """One worker process, its pipe, and the check it is running (index, deadline)."""

    def __init__(self, ctx: Any, spec: VerifierSpec, memory_mb: int | None, warmup: bool) -> None:
        self.conn, child = ctx.Pipe(duplex=True)
        self.process = ctx.Process(
            target=_worker_main, args=(child, spec, memory_mb, warmup), daemon=True, name="rollwise-verifier"
        )
        self.warmup = warmup
        with _main_hidden(spec, ctx.get_start_method()):
            self.process.start()
        child.close()
        self.ready = False
        self.started = time.monotonic()
        self.task: tuple[int, float] | None = None

    def ask_to_exit(self) -> None:
        try:
            self.conn.send(None)
        except (OSError, ValueError):
            pass

    def stop(self, grace_s: float = 0.0) -> None:
        """Join within ``grace_s`` (after ``ask_to_exit``), else SIGKILL; then release the pipe."""
        if grace_s > 0:
            self.process.join(grace_s)
        if self.process.is_alive():
            self.process.kill()
        self.process.join(2.0)
        self.conn.close()


class VerifierPool:
    """Score (completion, reference) pairs with one verifier, bounded in time and size; see module doc.

    ``verifier`` is a registered name, ``package.module:function``, or a picklable (module-level)
    function. ``inline`` None follows the verifier's ``safe_inline`` mark; False forces processes.
    ``max_memory_mb`` is the address space a worker may add after start-up (None: unlimited).
    ``reward_range`` (low, high) bounds every score; ``out_of_range`` is "error" (raise
    :class:`RewardRangeError`) or "clamp" (clamp and count).

    ``stats`` counts checks, skipped (too long) checks and faults (keys "errors", "timeouts", "crashes",
    "out_of_range"; a key never counted reads 0); :attr:`faults` gives the same counts by fault kind.
    """

    def __init__(
        self,
        verifier: VerifierSpec = "math",
        workers: int = 2,
        timeout_s: float = 2.0,
        max_chars: int = DEFAULT_MAX_CHARS,
        inline: bool | None = None,
        max_memory_mb: int | None = 2048,
        start_method: str = "spawn",
        reward_range: tuple[float, float] = (0.0, 1.0),
        out_of_range: str = "error",
    ) -> None:
        if workers < 1 or timeout_s <= 0 or max_chars < 1:
            raise ValueError("workers >= 1, timeout_s > 0 and max_chars >= 1 are required")
        low, high = (float(x) for x in reward_range)
        if not low <= high:
            raise ValueError(f"reward_range must be (low, high) with low <= high, got {reward_range!r}")
        if out_of_range not in ("error", "clamp"):
            raise ValueError(f"out_of_range must be 'error' or 'clamp', got {out_of_range!r}")
        self.reward_range, self.out_of_range = (low, high), out_of_range
        if isinstance(verifier, WrappedVerifier):  # a BoundedVerifier
            verifier = verifier.spec  # this pool bounds it; its workers resolve the raw verifier
        self.spec = verifier
        self.name = verifier if isinstance(verifier, str) else getattr(verifier, "__name__", repr(verifier))
        self.fn = _resolve(verifier)  # resolve here too: an unknown name fails now, not in a worker
        safe = is_inline_safe(self.fn)
        if inline and not safe:
            raise ValueError(f"verifier {verifier!r} is not marked safe_inline; it must run in processes")
        self.inline = safe if inline is None else inline
        self.timeout_s = timeout_s
        self.max_chars = max_chars
        # a Counter: "out_of_range" appears once counted (callers and tests compare the other keys as a dict)
        self.stats: Counter[str] = Counter(checks=0, timeouts=0, errors=0, crashes=0, skipped=0)
        self._lock = threading.Lock()
        self._ctx = mp.get_context(start_method)
        self._memory_mb = max_memory_mb
        self._startup_failures = 0
        # warm up built-ins only; switched off for good once a warm-up killed or stalled a worker
        self._warmup = isinstance(verifier, str) and verifier in VERIFIERS
        n = 0 if self.inline else workers
        self._pid = os.getpid()  # a forked child's copy must not stop its parent's workers
        self._workers: list[_Worker] = [self._new_worker() for _ in range(n)]

    # ---- public -------------------------------------------------------------------------------------
    def score(self, completion: str, reference: str) -> VerifyResult:
        return self.score_batch([completion], [reference])[0]

    @property
    def faults(self) -> dict[str, int]:
        """Faults counted so far, by kind (``FAULTS``)."""
        return {kind: self.stats[_STAT_KEY[kind]] for kind in FAULTS}

    def score_batch(self, completions: Sequence[str], references: Sequence[str]) -> list[VerifyResult]:
        """One result per pair, in order. Never raises for a bad answer; raises :class:`RewardRangeError`
        for a score outside ``reward_range`` under policy "error"."""
        if len(completions) != len(references):
            raise ValueError(f"{len(completions)} completions but {len(references)} references")
        with self._lock:
            results: list[VerifyResult | None] = [None] * len(completions)
            todo: deque[int] = deque()
            for i, (c, r) in enumerate(zip(completions, references)):
                self.stats["checks"] += 1
                size = max(len(c), len(r))
                if size > self.max_chars:
                    self.stats["skipped"] += 1
                    results[i] = VerifyResult(0.0, False, {"reason": "too_long", "chars": size})
                else:
                    todo.append(i)
            if self.inline:
                for i in todo:
                    results[i] = self._inline(completions[i], references[i])
            elif todo:
                self._run(todo, completions, references, results)
            return [r if r is not None else VerifyResult(0.0, False, {"reason": "lost"}) for r in results]

    def wait_ready(self, timeout_s: float = _STARTUP_TIMEOUT_S) -> None:
        """Block until every worker has started (e.g. before timing a batch); no-op for inline pools."""
        with self._lock:
            deadline = time.monotonic() + timeout_s
            while not all(w.ready for w in self._workers):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"verifier workers did not start within {timeout_s:.0f} s")
                waitables = [w.conn for w in self._workers if not w.ready]
                waitables += [w.process.sentinel for w in self._workers if not w.ready]
                ready = set(wait(waitables, timeout=max(0.0, deadline - time.monotonic())))
                for w in list(self._workers):
                    if w.conn in ready:
                        self._receive(w, [])
                    elif w.process.sentinel in ready:
                        self._on_death(w, [])

    def close(self) -> None:
        """Stop every worker (politely, then SIGKILL); in a forked child, only forget them."""
        if os.getpid() != getattr(self, "_pid", os.getpid()):
            self._workers = []
            return
        for w in self._workers:
            w.ask_to_exit()
        for w in self._workers:
            w.stop(grace_s=0.5)
        self._workers = []

    def __enter__(self) -> VerifierPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    # ---- internals ----------------------------------------------------------------------------------
    def _fail(self, kind: str, **info: Any) -> VerifyResult:
        self.stats[_STAT_KEY[kind]] += 1
        return VerifyResult(0.0, False, {"reason": kind, "fault": kind, **info})

    def _check_range(self, result: VerifyResult) -> VerifyResult:
        """Apply the range policy to a verifier's own result (failed checks score 0 and are not checked)."""
        checked = check_reward_range(result, self.reward_range, self.out_of_range, self.name)
        if checked is not result:
            self.stats[_STAT_KEY[checked.info["fault"]]] += 1
        return checked

    def _inline(self, completion: str, reference: str) -> VerifyResult:
        try:
            result = self.fn(completion, reference)
        except Exception as exc:
            return self._fail("error", error=f"{type(exc).__name__}: {str(exc)[:300]}")
        return self._check_range(result)

    def _new_worker(self) -> _Worker:
        return _Worker(self._ctx, self.spec, self._memory_mb, self._warmup)

    def _replace(self, w: _Worker) -> None:
        w.stop()
        self._workers[self._workers.index(w)] = self._new_worker()

    def _run(self, todo: deque[int], comps: Sequence[str], refs: Sequence[str], results: list[Any]) -> None:
        try:
            while todo or any(w.task for w in self._workers):
                self._dispatch(todo, comps, refs)
                busy = [w.task[1] for w in self._workers if w.task]
                wait_s = min(busy) - time.monotonic() if busy else 0.5
                waitables = [w.conn for w in self._workers] + [w.process.sentinel for w in self._workers]
                ready = set(wait(waitables, timeout=max(0.0, wait_s)))
                for w in list(self._workers):
                    if w.conn in ready:
                        self._receive(w, results)
                    elif w.process.sentinel in ready:
                        self._on_death(w, results)
                self._expire(results)
        except BaseException:
            for w in list(self._workers):  # leave no worker holding a stale check
                if w.task:
                    self._replace(w)
            raise

    def _dispatch(self, todo: deque[int], comps: Sequence[str], refs: Sequence[str]) -> None:
        for w in list(self._workers):
            if not (w.ready and w.task is None and todo):
                continue
            i = todo.popleft()
            try:
                w.conn.send((i, comps[i], refs[i]))
            except (OSError, ValueError):  # died while idle: not this item's fault, retry it elsewhere
                todo.appendleft(i)
                self._replace(w)
                continue
            w.task = (i, time.monotonic() + self.timeout_s)

    def _receive(self, w: _Worker, results: list[Any]) -> None:
        try:
            kind, _, payload = w.conn.recv()
        except (EOFError, OSError):
            self._on_death(w, results)
            return
        if kind == "ready":
            w.ready, self._startup_failures = True, 0
        elif kind == "fatal":
            raise RuntimeError(f"verifier {self.spec!r} failed to start in a worker: {payload}")
        elif w.task is not None:
            i, w.task = w.task[0], None
            if kind == "ok" and isinstance(payload, VerifyResult):
                results[i] = self._check_range(payload)
            else:
                results[i] = self._fail("error", error=str(payload))

    def _on_death(self, w: _Worker, results: list[Any]) -> None:
        w.process.join(0.5)
        code = w.process.exitcode
        if w.task is not None:
            results[w.task[0]] = self._fail("crash", exitcode=code)
            w.task = None
        elif not w.ready and w.warmup:
            self._warmup = False  # the warm-up killed it: replace it with one that skips the warm-up
        elif not w.ready:
            self._startup_failures += 1
            if self._startup_failures > _MAX_STARTUP_FAILURES:
                raise RuntimeError(f"verifier workers keep dying at start-up (exit code {code})")
        self._replace(w)

    def _expire(self, results: list[Any]) -> None:
        now = time.monotonic()
        for w in list(self._workers):
            if w.task is not None and now >= w.task[1]:
                results[w.task[0]] = self._fail("timeout", timeout_s=self.timeout_s)
                w.task = None
                self._replace(w)
            elif not w.ready and now - w.started > _STARTUP_TIMEOUT_S:
                if not w.warmup and not any(o.ready for o in self._workers):
                    raise RuntimeError(f"no verifier worker started within {_STARTUP_TIMEOUT_S:.0f} s")
                if w.warmup:
                    self._warmup = False  # a stalled warm-up is skipped from now on
                self._replace(w)

"""Verifier protocol, result type and the ``VERIFIERS`` registry (defined in :mod:`rollwise.rewards.core`, below
the pool, and re-exported here), bounded verifiers and the shared pools behind them.

A verifier is a plain callable ``(completion, reference) -> VerifyResult``. Verifiers never eval/exec model
text; the ones that call a parser that can hang (sympy) must run behind :class:`rollwise.rewards.pool.
VerifierPool`, which bounds every call in time and input size. A verifier marked ``safe_inline = True``
(pure python, linear in its input) may be called in-process by the pool to skip the IPC round trip.

Bounded by default: ``get_verifier`` and ``as_verifier`` return a verifier that answers within its
``timeout_s`` on any input (plus worker start-up on the first call and after a timeout), so a direct caller (a
notebook, a TRL reward function) cannot be stalled by one completion. A ``safe_inline`` verifier is returned
as is; any other becomes a :class:`BoundedVerifier`, which runs its checks in a shared pool, one per verifier
and timeout, started on its first call and closed at exit. Pool workers use the raw verifier
(:func:`raw_verifier`, or ``bounded=False``), so they never start pools of their own.

User code plugs in by name: ``get_verifier("my_pkg.rewards:check")`` imports ``check`` and wraps it, so it
may return a ``VerifyResult``, a ``float`` or a ``bool``.

Faults are named by kind (``FAULTS``: the verifier raised, ran past its deadline, killed its process, or
returned a reward outside the task's declared range); a faulty check's ``info["fault"]`` holds its kind, so
every layer above counts faults from the results alone. :func:`check_reward_range` applies the range policy.
"""

from __future__ import annotations

import atexit
import math
import os
import pickle
import sys
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from rollwise.rewards.core import (
    FAULTS,
    VERIFIERS,
    FunctionVerifier,
    RewardRangeError,
    Verifier,
    VerifierSpec,
    VerifyResult,
    WrappedVerifier,
    check_reward_range,
    in_pool_worker,
    inline_safe,
    is_inline_safe,
    raw_verifier,
)
from rollwise.rewards.pool import VerifierPool

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "FAULTS",
    "VERIFIERS",
    "BoundedVerifier",
    "FunctionVerifier",
    "RewardRangeError",
    "Verifier",
    "VerifierSpec",
    "VerifyResult",
    "as_verifier",
    "check_reward_range",
    "get_verifier",
    "inline_safe",
    "close_shared_pools",
    "is_inline_safe",
    "raw_verifier",
]


DEFAULT_TIMEOUT_S = 2.0
"""Seconds one check of a bounded verifier may take (the default of ``task.verify_timeout``)."""
_SHARED_WORKERS = 2  # a second worker serves the next call while a worker killed at its deadline restarts


def as_verifier(fn: Callable[[str, str], Any], *, bounded: bool = True, timeout_s: float | None = None) -> Verifier:
    """Wrap ``fn`` so that its result is always a VerifyResult (idempotent). ``bounded`` (the default): unless
    ``fn`` is marked ``safe_inline``, a :class:`BoundedVerifier` whose checks end within ``timeout_s``
    (default :data:`DEFAULT_TIMEOUT_S`); ``fn`` must then be importable by reference (a module-level function)."""
    if isinstance(fn, str) or not callable(fn):
        raise TypeError(f"a verifier must be callable, got {type(fn).__name__}")
    if isinstance(fn, BoundedVerifier):
        if not bounded:
            return fn.raw
        return fn if timeout_s is None or timeout_s == fn.timeout_s else BoundedVerifier(fn.spec, timeout_s)
    raw = raw_verifier(fn)
    if not bounded or raw.safe_inline:
        return raw
    return BoundedVerifier(raw.fn, DEFAULT_TIMEOUT_S if timeout_s is None else timeout_s)


def get_verifier(name: str, *, bounded: bool = True, timeout_s: float | None = None) -> Verifier:
    """Look up a verifier by registered name or ``package.module:function`` and wrap it; bounded as in
    :func:`as_verifier` (``bounded=False`` is :func:`raw_verifier`)."""
    raw = raw_verifier(name)  # an unknown name or a failing import fails here, not in a worker
    if not bounded or raw.safe_inline:
        return raw
    return BoundedVerifier(name, DEFAULT_TIMEOUT_S if timeout_s is None else timeout_s)


class BoundedVerifier(WrappedVerifier):
    """A verifier that is not ``safe_inline``, run in the process-wide pool of its ``(spec, timeout_s)``:
    each check returns within ``timeout_s`` (plus worker start-up on the first call and after a timeout).

    Faults score 0 and carry ``info["fault"]``, as in :class:`~rollwise.rewards.pool.VerifierPool`
    (a NaN score is an "error" fault); the reward range is the task's concern (``check_reward_range``), so any
    other score passes. ``stats`` / ``faults`` read the shared pool's counters (zeros before its first call).
    Pickles as its spec, so a pool given one runs the raw verifier in its workers.
    """

    safe_inline = False

    def __init__(self, spec: VerifierSpec, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s!r}")
        if not isinstance(spec, str):
            _check_spawnable(spec)
        self.spec, self.timeout_s = spec, float(timeout_s)
        self.__name__ = spec if isinstance(spec, str) else getattr(spec, "__name__", type(spec).__name__)
        self.__doc__ = getattr(spec, "__doc__", None) if not isinstance(spec, str) else None

    def __call__(self, completion: str, reference: str) -> VerifyResult:
        if in_pool_worker():  # a user verifier calling a built-in inside a pool worker: already under its deadline
            return self.raw(completion, reference)
        return _shared_pool(self.spec, self.timeout_s).score(completion, reference)

    def score_batch(self, completions: Sequence[str], references: Sequence[str]) -> list[VerifyResult]:
        """One result per pair, in order, checked in parallel by the pool's workers."""
        return _shared_pool(self.spec, self.timeout_s).score_batch(completions, references)

    @property
    def raw(self) -> FunctionVerifier:
        return raw_verifier(self.spec)

    @property
    def stats(self) -> Counter[str]:
        """The shared pool's counters (``checks``, ``skipped``, ``timeouts``, ``errors``, ``crashes``)."""
        pool = _shared_pool(self.spec, self.timeout_s, start=False)
        return pool.stats if pool is not None else Counter(checks=0, timeouts=0, errors=0, crashes=0, skipped=0)

    @property
    def faults(self) -> dict[str, int]:
        """Faults counted so far by the shared pool, by kind (``FAULTS``)."""
        pool = _shared_pool(self.spec, self.timeout_s, start=False)
        return pool.faults if pool is not None else dict.fromkeys(FAULTS, 0)

    def __reduce__(self) -> tuple[Any, ...]:
        return (BoundedVerifier, (self.spec, self.timeout_s))

    def __repr__(self) -> str:
        return f"BoundedVerifier({self.__name__!r}, timeout_s={self.timeout_s:g})"


def _check_spawnable(fn: Any) -> None:
    """A spawned worker imports ``fn`` by reference: refuse one it could not find now, not in a worker."""
    main = sys.modules.get("__main__")
    try:
        pickle.dumps(fn)
    except Exception as exc:
        problem = f"cannot be pickled ({type(exc).__name__})"
    else:
        if getattr(fn, "__module__", None) != "__main__" or getattr(main, "__file__", None):
            return
        problem = "is defined in an interactive session"
    name = getattr(fn, "__name__", type(fn).__name__)
    raise TypeError(f"verifier {name!r} {problem}, so it cannot run in a bounded worker process: define it in "
                    "an importable module, mark it @inline_safe if it is cheap pure python linear in its input, "
                    "or pass bounded=False to call it unbounded")


# ---- the process-wide pools behind BoundedVerifier ------------------------------------------------------
_pools: dict[tuple[Any, float], Any] = {}
_pools_lock = threading.Lock()
_pools_pid = os.getpid()
_atexit_registered = False


def _pool_key(spec: VerifierSpec, timeout_s: float) -> tuple[Any, float]:
    try:
        hash(spec)
    except TypeError:  # an unhashable callable instance: its identity (the pool holds it, so the id stays live)
        return (id(spec), timeout_s)
    return (spec, timeout_s)


def _shared_pool(spec: VerifierSpec, timeout_s: float, start: bool = True) -> Any:
    """The pool of ``(spec, timeout_s)``, started on first use (None when ``start`` is False and none runs)."""
    global _pools_pid, _atexit_registered
    with _pools_lock:
        if _pools_pid != os.getpid():  # a forked child: the parent's pools and workers are not ours to use
            _pools.clear()
            _pools_pid = os.getpid()
        key = _pool_key(spec, timeout_s)
        pool = _pools.get(key)
        if pool is None and start:
            pool = VerifierPool(spec, workers=_SHARED_WORKERS, timeout_s=timeout_s,
                                reward_range=(-math.inf, math.inf), out_of_range="clamp")
            _pools[key] = pool
            if not _atexit_registered:
                atexit.register(close_shared_pools)
                _atexit_registered = True
        return pool


def close_shared_pools() -> None:
    """Stop the workers of every shared pool (run at exit; a later call of a bounded verifier restarts its pool)."""
    with _pools_lock:
        pools = list(_pools.values()) if _pools_pid == os.getpid() else []
        _pools.clear()
    for pool in pools:
        pool.close()

"""Verifier protocol, result type and the ``VERIFIERS`` registry.

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
from dataclasses import dataclass, field
from typing import Any, Protocol

from rollwise.registry import Registry

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "FAULTS",
    "VERIFIERS",
    "BoundedVerifier",
    "FunctionVerifier",
    "RewardRangeError",
    "Verifier",
    "VerifyResult",
    "as_verifier",
    "check_reward_range",
    "get_verifier",
    "inline_safe",
    "close_shared_pools",
    "is_inline_safe",
    "raw_verifier",
]


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of one check: ``score`` in [0, 1] (usually 0/1), whether an answer could be parsed at all
    (a format signal, separate from correctness), and free-form ``info`` (reason, extracted answer...)."""

    score: float
    parsed: bool
    info: dict[str, Any] = field(default_factory=dict)


FAULTS = ("error", "timeout", "crash", "out_of_range")
"""Kinds of verifier fault, as written in ``VerifyResult.info["fault"]``."""


class RewardRangeError(ValueError):
    """A verifier returned a reward outside the task's ``reward_range`` (with ``out_of_range = "error"``)."""


class Verifier(Protocol):
    def __call__(self, completion: str, reference: str) -> VerifyResult: ...


def inline_safe(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a verifier as cheap pure python, linear in its input: the pool may run it in-process."""
    fn.safe_inline = True  # type: ignore[attr-defined]
    return fn


def is_inline_safe(fn: Any) -> bool:
    return bool(getattr(fn, "safe_inline", False))


def _coerce(value: Any) -> VerifyResult:
    """Turn a user verifier's return value (VerifyResult, bool, int or float) into a VerifyResult."""
    if isinstance(value, VerifyResult):
        return value
    if isinstance(value, bool):
        return VerifyResult(float(value), True)
    if isinstance(value, int | float):
        score = float(value)
        if not math.isfinite(score):
            raise ValueError(f"verifier returned a non-finite score {value!r}")
        return VerifyResult(score, True)
    raise TypeError(f"verifier must return VerifyResult, float or bool, got {type(value).__name__}")


def check_reward_range(result: VerifyResult, reward_range: tuple[float, float], policy: str = "error",
                       verifier: Any = "verifier") -> VerifyResult:
    """``result`` if its score lies in ``reward_range`` (inclusive). Otherwise, by ``policy``: "error" raises
    :class:`RewardRangeError` naming ``verifier``, the value and the range; "clamp" returns the score clamped
    to the range, marked ``fault="out_of_range"`` with the ``raw_score``. A NaN score cannot be clamped: it is
    an ``error`` fault scoring 0, like a verifier that raised."""
    low, high = reward_range
    try:
        score = float(result.score)
    except (TypeError, ValueError):
        score = math.nan
    if low <= score <= high:
        return result
    if policy == "error":
        raise RewardRangeError(
            f"verifier {verifier!r} returned reward {result.score!r}, outside task.reward_range [{low:g}, {high:g}]; "
            "fix the verifier, declare its range in task.reward_range, or set task.out_of_range=clamp")
    if policy != "clamp":
        raise ValueError(f"out_of_range policy must be 'error' or 'clamp', got {policy!r}")
    if math.isnan(score):
        return VerifyResult(0.0, False, {**result.info, "reason": "error", "fault": "error",
                                         "error": f"non-numeric score {result.score!r}"})
    return VerifyResult(min(max(score, low), high), result.parsed,
                        {**result.info, "fault": "out_of_range", "raw_score": score})


class FunctionVerifier:
    """Picklable wrapper that turns a plain function into a Verifier (results coerced to VerifyResult)."""

    def __init__(self, fn: Callable[[str, str], Any]) -> None:
        self.fn = fn
        self.safe_inline = is_inline_safe(fn)
        self.__doc__ = getattr(fn, "__doc__", None)
        self.__name__ = getattr(fn, "__name__", type(fn).__name__)

    def __call__(self, completion: str, reference: str) -> VerifyResult:
        return _coerce(self.fn(completion, reference))

    def __repr__(self) -> str:
        return f"FunctionVerifier({self.__name__})"


VERIFIERS: Registry[Callable[..., Any]] = Registry("verifier")
# One line per verifier; lazy strings so `import rollwise.rewards` pulls in neither sympy nor math-verify.
VERIFIERS.register("math", "rollwise.rewards.math:verify_math", doc="LaTeX answer, symbolic equivalence")
VERIFIERS.register("gsm8k", "rollwise.rewards.gsm8k:verify_gsm8k", doc="numeric final answer (#### / last)")
VERIFIERS.register("final_number", "rollwise.rewards.final_number:verify_final_number",
                   doc="final number of a chatty reply (box / answer line / last)")
VERIFIERS.register("exact", "rollwise.rewards.text:verify_exact", doc="normalised string match")
VERIFIERS.register("regex", "rollwise.rewards.text:verify_regex", doc="reference is a fullmatch pattern")
VERIFIERS.register("synthetic_int", "rollwise.rewards.synthetic:verify_int", doc="procedural integer tasks")
VERIFIERS.register("synthetic_scratch", "rollwise.rewards.synthetic:verify_scratch", doc="'<work>|<integer>'")
VERIFIERS.register("synthetic_mixed", "rollwise.rewards.synthetic:verify_mixed", doc="'<int>' or '#<work>|<int>'")


VerifierSpec = str | Callable[[str, str], Any]
"""A registered name, ``package.module:function``, or a verifier callable."""

DEFAULT_TIMEOUT_S = 2.0
"""Seconds one check of a bounded verifier may take (the default of ``task.verify_timeout``)."""
_SHARED_WORKERS = 2  # a second worker serves the next call while a worker killed at its deadline restarts


def raw_verifier(spec: VerifierSpec) -> FunctionVerifier:
    """The verifier itself, unbounded (a :class:`BoundedVerifier` is unwrapped): for pool workers, and for
    callers that bound it themselves. A model's answer can stall it; prefer :func:`get_verifier`."""
    if isinstance(spec, BoundedVerifier):
        spec = spec.spec
    fn = VERIFIERS.get(spec) if isinstance(spec, str) else spec
    if isinstance(fn, FunctionVerifier):
        return fn
    if not callable(fn):
        raise TypeError(f"a verifier must be callable, got {type(fn).__name__}")
    return FunctionVerifier(fn)


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


class BoundedVerifier:
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
        if _in_worker:  # a user verifier calling a built-in inside a pool worker: already under its deadline
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
_in_worker = False  # set in pool workers (pool._worker_main): they call raw verifiers, never start pools
_pools: dict[tuple[Any, float], Any] = {}
_pools_lock = threading.Lock()
_pools_pid = os.getpid()
_atexit_registered = False


def _mark_worker_process() -> None:
    global _in_worker
    _in_worker = True


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
            from rollwise.rewards.pool import VerifierPool

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

"""What a verifier is, below the pools that bound it: the result type, the fault kinds, the ``VERIFIERS``
registry, :func:`raw_verifier` (a spec -> the unbounded callable) and the flag a pool worker sets.

:mod:`rollwise.rewards.pool` needs exactly these, and :mod:`rollwise.rewards.base` (bounded verifiers, the
shared pools behind them, ``get_verifier``) builds on both and re-exports them, so ``rollwise.rewards.base``
stays the place to import them from.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from rollwise.registry import Registry


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
VERIFIERS.register("reasoning_gym", "rollwise.data.reasoning_gym_tasks:verify_reasoning_gym",
                   doc="a reasoning-gym item's own score_answer (references from reasoning_gym:... specs)")
VERIFIERS.register("reasoning_gym_number", "rollwise.data.reasoning_gym_tasks:verify_reasoning_gym_number",
                   doc="reasoning_gym, reading an untagged reply's final number (small chat models)")
VERIFIERS.register("synthetic_mixed", "rollwise.rewards.synthetic:verify_mixed", doc="'<int>' or '#<work>|<int>'")


VerifierSpec = str | Callable[[str, str], Any]
"""A registered name, ``package.module:function``, or a verifier callable."""


class WrappedVerifier:
    """Base of a verifier that runs another one, given by ``spec`` (:class:`~rollwise.rewards.base.BoundedVerifier`):
    :func:`raw_verifier` and the pool resolve ``spec`` instead of the wrapper."""

    spec: VerifierSpec


def raw_verifier(spec: VerifierSpec) -> FunctionVerifier:
    """The verifier itself, unbounded (a :class:`~rollwise.rewards.base.BoundedVerifier` is unwrapped): for pool
    workers, and for callers that bound it themselves. A model's answer can stall it; prefer
    :func:`~rollwise.rewards.base.get_verifier`."""
    if isinstance(spec, WrappedVerifier):
        spec = spec.spec
    fn = VERIFIERS.get(spec) if isinstance(spec, str) else spec
    if isinstance(fn, FunctionVerifier):
        return fn
    if not callable(fn):
        raise TypeError(f"a verifier must be callable, got {type(fn).__name__}")
    return FunctionVerifier(fn)


# ---- set in pool workers (pool._worker_main): they call raw verifiers, never start pools ----------------
_in_worker = False


def _mark_worker_process() -> None:
    global _in_worker
    _in_worker = True


def in_pool_worker() -> bool:
    """True in a verifier pool's worker process (a bounded verifier called there runs raw)."""
    return _in_worker

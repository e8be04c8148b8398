"""Bounded by default: verifiers from the public API (``get_verifier``, ``as_verifier``) return within their
timeout on any input. Those not ``safe_inline`` run in a shared pool per (verifier, timeout); the hostile
corpus goes through this direct API too.

No wall-clock asserts: a hang is caught by running the calls in a thread with a generous budget (start-up of
the spawned workers on a loaded 2-core machine included); what is asserted is the result (a fault scoring 0).
"""

from __future__ import annotations

import pickle
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest
import rollwise_nested_verifiers
import rollwise_user_verifiers
from test_verifier_hostile import MARKER, _corpus

from rollwise.rewards import BoundedVerifier, VerifierPool, VerifyResult, as_verifier, get_verifier, inline_safe
from rollwise.rewards.base import FunctionVerifier, close_shared_pools, raw_verifier

TIMEOUT_S = 1.0
BUDGET_S = 120.0  # a whole test, hang guard only: ~20 checks of which a few run into their 1 s deadline
FAULTS = ("timeout", "crash", "error")
TOWER = "\\boxed{10^{10^{10^{10}}}}"
DEEP_FRAC = "\\boxed{" + "\\frac{1}{" * 2000 + "2" + "}" * 2000 + "}"


def within(budget_s: float, fn: Callable[[], Any]) -> Any:
    """``fn()``, failing the test (instead of hanging it) when it has not returned within ``budget_s``."""
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["value"] = fn()
        except BaseException as exc:  # re-raised in the test's thread
            out["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(budget_s)
    assert not thread.is_alive(), f"still running after {budget_s:.0f} s: not bounded"
    if "error" in out:
        raise out["error"]
    return out["value"]


@pytest.fixture(scope="module")
def math_verifier():
    yield get_verifier("math", timeout_s=TIMEOUT_S)
    close_shared_pools()


def test_unsafe_verifiers_are_bounded_and_safe_ones_stay_in_process():
    for name in ("math", "regex", "rollwise_user_verifiers:half"):
        v = get_verifier(name)
        assert isinstance(v, BoundedVerifier) and not v.safe_inline, name
        assert isinstance(get_verifier(name, bounded=False), FunctionVerifier)
    for name in ("exact", "gsm8k", "synthetic_int", "synthetic_scratch", "synthetic_mixed"):
        assert isinstance(get_verifier(name), FunctionVerifier), name  # no pool, no process
    assert isinstance(as_verifier(rollwise_user_verifiers.half), BoundedVerifier)
    assert isinstance(as_verifier(inline_safe(lambda c, r: 1.0)), FunctionVerifier)


def test_worst_cases_through_get_verifier_are_stopped_and_counted(math_verifier):
    before = sum(math_verifier.faults[k] for k in FAULTS)
    for completion in (TOWER, DEEP_FRAC):
        result = within(BUDGET_S, lambda c=completion: math_verifier(c, "42"))
        assert isinstance(result, VerifyResult)
        assert result.score == 0.0 and result.info["fault"] in FAULTS, result
    assert sum(math_verifier.faults[k] for k in FAULTS) == before + 2
    assert math_verifier.stats["checks"] >= 2


def test_hostile_corpus_through_get_verifier(math_verifier, tmp_path):
    marker = tmp_path / MARKER
    corpus = _corpus(str(marker))

    def run() -> dict[str, VerifyResult]:
        return {name: math_verifier(text, "42") for name, text in corpus.items()}

    results = within(BUDGET_S, run)
    for name, result in results.items():
        assert isinstance(result, VerifyResult) and result.score == 0.0, (name, result)
    assert results["tower_boxed"].info["fault"] in FAULTS, results["tower_boxed"]
    assert results["megabyte"].info["reason"] == "too_long"  # skipped before any worker
    assert not marker.exists(), "model text was executed"


def test_issue_repro_in_a_script_without_main_guard(tmp_path):
    """The issue's one-liner as a user's script (no ``if __name__ == "__main__"``, which spawned workers would
    otherwise re-run): the first call starts the pool, the tower times out, the interpreter exits cleanly."""
    script = tmp_path / "user_script.py"
    script.write_text("from rollwise.rewards import get_verifier\n"
                      "v = get_verifier('math')\n"
                      "r = v('\\\\boxed{10^{10^{10^{10}}}}', '1')\n"
                      "print(r.score, r.info.get('fault'), v.faults[r.info['fault']])\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=BUDGET_S)
    assert done.returncode == 0, done.stderr
    score, fault, counted = done.stdout.split()
    assert float(score) == 0.0 and fault in FAULTS and counted == "1"


def test_user_verifier_faults_score_zero_instead_of_raising():
    v = as_verifier(rollwise_user_verifiers.misbehave, timeout_s=0.5)
    results = within(BUDGET_S, lambda: v.score_batch(["sleep", "raise", "exit", "ok"], ["x"] * 4))
    assert [r.info.get("fault") for r in results] == ["timeout", "error", "crash", None]
    assert [r.score for r in results] == [0.0, 0.0, 0.0, 1.0]
    assert v.faults == {"error": 1, "timeout": 1, "crash": 1, "out_of_range": 0}
    bad = get_verifier("rollwise_user_verifiers:bad_type")("a", "b")  # the raw verifier raises TypeError
    assert bad.score == 0.0 and bad.info["fault"] == "error" and "VerifyResult" in bad.info["error"]
    assert get_verifier("rollwise_user_verifiers:half")("a", "b") == VerifyResult(0.5, True)


def test_one_shared_pool_per_verifier_and_timeout(math_verifier):
    again = get_verifier("math", timeout_s=TIMEOUT_S)
    assert again("\\boxed{2}", "2").score == 1.0
    assert again.stats is math_verifier.stats  # the same pool's counters
    other = get_verifier("math", timeout_s=TIMEOUT_S + 0.25)  # a timeout no other test uses
    assert other.stats is not math_verifier.stats and other.stats["checks"] == 0  # not started: zeros


def test_workers_call_raw_verifiers():
    """A user verifier calling ``get_verifier("math")`` inside a worker runs it there, under the worker's
    deadline (a daemonic worker may not start processes: a nested pool would be an error fault)."""
    v = as_verifier(rollwise_nested_verifiers.via_math, timeout_s=BUDGET_S / 2)  # user code gets no warm-up:
    # sympy's import is charged to this check, so its deadline is a hang guard only
    result = within(BUDGET_S, lambda: v("\\boxed{\\frac{1}{2}}", "0.5"))
    assert result.score == 1.0 and "fault" not in result.info, result


def test_bounded_verifier_pickles_as_its_spec_and_a_pool_unwraps_it():
    v = get_verifier("rollwise_user_verifiers:half", timeout_s=3.0)
    copy = pickle.loads(pickle.dumps(v))
    assert isinstance(copy, BoundedVerifier) and (copy.spec, copy.timeout_s) == (v.spec, v.timeout_s)
    assert raw_verifier(v)("a", "b") == VerifyResult(0.5, True)
    assert as_verifier(v) is v and isinstance(as_verifier(v, bounded=False), FunctionVerifier)
    with VerifierPool(v, workers=1) as pool:
        assert pool.spec == "rollwise_user_verifiers:half" and pool.score("a", "b").score == 0.5


def test_unpicklable_callable_is_refused_with_the_ways_out():
    with pytest.raises(TypeError, match="bounded=False"):
        as_verifier(lambda c, r: 1.0)
    assert as_verifier(lambda c, r: 1.0, bounded=False)("a", "b") == VerifyResult(1.0, True)

"""``VerifierPool`` mechanics: timeouts, crashes and errors are scored 0, counted, and workers replaced."""

from __future__ import annotations

import time

import pytest

from rollwise.rewards import VerifierPool, VerifyResult

USER = "rollwise_user_verifiers:misbehave"


@pytest.fixture(scope="module")
def pool():
    with VerifierPool(USER, workers=2, timeout_s=1.0) as p:
        p.wait_ready()
        yield p


def _delta(pool, before):
    return {k: pool.stats[k] - before[k] for k in before}


def test_results_keep_order(pool):
    assert [r.score for r in pool.score_batch(["ok"] * 7, ["x"] * 7)] == [1.0] * 7


def test_mixed_failures_are_counted_and_scored_zero(pool):
    before = dict(pool.stats)
    batch = ["ok", "sleep", "segv", "raise", "exit", "ok", "ok"]
    start = time.monotonic()
    results = pool.score_batch(batch, ["x"] * len(batch))
    assert time.monotonic() - start < 30  # bound, not a speed assert
    reasons = [r.info.get("reason") for r in results]
    assert reasons == [None, "timeout", "crash", "error", "crash", None, None]
    assert [r.score for r in results] == [1.0, 0, 0, 0, 0, 1.0, 1.0]
    assert not any(r.parsed for r in results if r.score == 0)
    assert results[2].info["exitcode"] == -11 and results[4].info["exitcode"] == 3
    assert "RuntimeError: verifier bug" in results[3].info["error"]
    assert _delta(pool, before) == {"checks": 7, "timeouts": 1, "errors": 1, "crashes": 2, "skipped": 0}


def test_pool_recovers_after_failures(pool):
    pool.score_batch(["sleep", "segv"], ["x", "x"])
    pool.wait_ready()
    assert all(w.process.is_alive() for w in pool._workers)
    assert [r.score for r in pool.score_batch(["ok"] * 4, ["x"] * 4)] == [1.0] * 4


def test_memory_cap_turns_a_huge_allocation_into_a_failure(pool):
    result = pool.score("alloc", "x")
    assert result.score == 0.0 and result.info["reason"] in ("error", "crash")


def test_too_long_is_skipped_before_any_worker():
    with VerifierPool("exact", max_chars=10) as p:
        result = p.score("x" * 11, "x")
        assert result == VerifyResult(0.0, False, {"reason": "too_long", "chars": 11})
        assert p.score("x", "x" * 11).info["reason"] == "too_long"  # references are capped too
        assert p.stats["skipped"] == 2 and p.stats["checks"] == 2


def test_inline_pools_start_no_process():
    for name, completion in (("exact", "5"), ("gsm8k", "#### 5")):
        p = VerifierPool(name)
        assert p.inline and p._workers == []
        assert [r.score for r in p.score_batch([completion, "x"], ["5", "5"])] == [1.0, 0.0]


def test_inline_errors_are_counted():
    p = VerifierPool("gsm8k")
    result = p.score("#### 5", "five")  # a reference without a number is a data error
    assert result.info["reason"] == "error" and p.stats["errors"] == 1


def test_math_and_regex_refuse_inline():
    for name in ("math", "regex"):
        with pytest.raises(ValueError, match="safe_inline"):
            VerifierPool(name, inline=True)


def test_unknown_verifier_fails_at_construction():
    with pytest.raises(KeyError, match="unknown verifier"):
        VerifierPool("nope")


def test_length_mismatch_raises():
    with pytest.raises(ValueError, match="references"):
        VerifierPool("exact").score_batch(["a"], [])


def test_close_stops_workers():
    p = VerifierPool("rollwise_user_verifiers:half", workers=1, inline=False)
    assert p.score("a", "b").score == 0.5
    workers = list(p._workers)
    p.close()
    assert not any(w.process.is_alive() for w in workers)

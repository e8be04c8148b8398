"""Verifier faults are counted by kind and marked on each result; rewards are checked against the declared
range (an error or a counted clamp); the pool's warm-up can never kill it (issue 14, cases 6 and 7)."""

from __future__ import annotations

import math

import pytest
from rollwise_fault_verifiers import WARMUP_TEXT, faulty_inline  # noqa: E402

from rollwise.rewards import VerifierPool, VerifyResult
from rollwise.rewards import pool as pool_module
from rollwise.rewards.base import FAULTS, RewardRangeError, check_reward_range

USER = "rollwise_fault_verifiers:faulty"


@pytest.fixture(scope="module")
def clamp_pool():
    with VerifierPool(USER, workers=2, timeout_s=0.5, out_of_range="clamp") as p:
        p.wait_ready()
        yield p


def test_warmup_text_is_the_pools():
    assert pool_module._WARMUP[0] == WARMUP_TEXT


# ---- every kind counted and marked ---------------------------------------------------------------------
def test_each_fault_kind_is_counted_and_marked(clamp_pool):
    before = clamp_pool.faults
    batch = ["ok", "sleep", "exit", "raise", "five", "minus", "ok"]
    results = clamp_pool.score_batch(batch, ["x"] * len(batch))
    assert [r.info.get("fault") for r in results] == [None, "timeout", "crash", "error", "out_of_range",
                                                      "out_of_range", None]
    after = clamp_pool.faults
    assert {k: after[k] - before[k] for k in FAULTS} == {"error": 1, "timeout": 1, "crash": 1, "out_of_range": 2}
    assert [r.score for r in results] == [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0]  # failures 0, clamps at the bounds
    assert results[1].info["timeout_s"] == 0.5 and results[2].info["exitcode"] == 3
    assert results[4].info["raw_score"] == 5.0 and results[4].parsed  # a clamp keeps the verifier's verdict
    assert results[5].info == {"user": True, "fault": "out_of_range", "raw_score": -2.0}
    assert clamp_pool.stats["out_of_range"] == after["out_of_range"]


def test_a_nan_score_cannot_be_clamped_and_is_an_error(clamp_pool):
    before = clamp_pool.faults["error"]
    result = clamp_pool.score("nan", "x")
    assert (result.score, result.parsed, result.info["fault"]) == (0.0, False, "error")
    assert clamp_pool.faults["error"] == before + 1


def test_out_of_range_is_an_error_by_default():
    with VerifierPool(USER, workers=1, timeout_s=5.0) as p:
        with pytest.raises(RewardRangeError, match=r"rollwise_fault_verifiers:faulty.*5\.0.*\[0, 1\]") as info:
            p.score_batch(["ok", "five"], ["x", "x"])
        assert isinstance(info.value, ValueError) and "\n" not in str(info.value)
        assert p.score("ok", "x").score == 1.0  # the pool still works after the error


def test_inline_verifiers_get_the_same_checks():
    strict = VerifierPool(faulty_inline)
    assert strict.inline and strict._workers == []
    with pytest.raises(RewardRangeError, match="verifier .faulty_inline. returned reward 5.0"):
        strict.score("five", "x")
    clamp = VerifierPool(faulty_inline, out_of_range="clamp")
    results = clamp.score_batch(["ok", "five", "raise", "nan"], ["x"] * 4)
    assert [r.score for r in results] == [1.0, 1.0, 0.0, 0.0]
    assert [r.info.get("fault") for r in results] == [None, "out_of_range", "error", "error"]
    assert clamp.faults == {"error": 2, "timeout": 0, "crash": 0, "out_of_range": 1}


def test_a_declared_range_is_respected():
    wide = VerifierPool(faulty_inline, reward_range=(-5.0, 5.0))
    assert [r.score for r in wide.score_batch(["five", "minus"], ["x", "x"])] == [5.0, -2.0]
    assert wide.faults["out_of_range"] == 0


def test_check_reward_range_by_hand():
    ok = VerifyResult(0.5, True, {"a": 1})
    assert check_reward_range(ok, (0.0, 1.0)) is ok
    assert check_reward_range(VerifyResult(1.0, True), (0.0, 1.0)).info == {}  # bounds are inclusive
    low = check_reward_range(VerifyResult(-0.25, True, {"a": 1}), (0.0, 1.0), "clamp")
    assert low == VerifyResult(0.0, True, {"a": 1, "fault": "out_of_range", "raw_score": -0.25})
    with pytest.raises(RewardRangeError, match=r"'v' returned reward inf, outside task.reward_range \[0, 1\]"):
        check_reward_range(VerifyResult(math.inf, True), (0.0, 1.0), "error", "v")
    with pytest.raises(ValueError, match="out_of_range"):
        VerifierPool("exact", out_of_range="ignore")
    with pytest.raises(ValueError, match="low <= high"):
        VerifierPool("exact", reward_range=(1.0, 0.0))


# ---- warm-up ---------------------------------------------------------------------------------------------
def test_user_verifier_that_dies_on_the_warmup_string_does_not_kill_the_pool():
    # 4 workers: before the fix each died in warm-up, and a 4th start-up death stopped the run
    with VerifierPool(USER, workers=4, timeout_s=5.0) as p:
        assert not any(w.warmup for w in p._workers)  # user code is never called before a real check
        p.wait_ready(timeout_s=30)
        assert [r.score for r in p.score_batch(["ok"] * 4, ["x"] * 4)] == [1.0] * 4
        crashed = p.score(WARMUP_TEXT, "0.5")  # as a real check it is a counted crash, nothing more
        assert crashed.info["fault"] == "crash" and p.faults["crash"] == 1


def test_builtins_warm_up_and_a_fatal_warmup_is_survived(monkeypatch):
    with VerifierPool("regex", workers=1) as builtin:
        assert builtin._workers[0].warmup
    # the same verifier treated as a built-in: every warm-up kills its worker, the replacements skip it
    monkeypatch.setattr(pool_module, "VERIFIERS", {USER})
    with VerifierPool(USER, workers=4, timeout_s=5.0) as p:
        assert all(w.warmup for w in p._workers)
        p.wait_ready(timeout_s=30)
        assert not any(w.warmup for w in p._workers)
        assert [r.score for r in p.score_batch(["ok"] * 4, ["x"] * 4)] == [1.0] * 4
        assert p.faults == dict.fromkeys(FAULTS, 0)  # warm-up deaths are not check faults

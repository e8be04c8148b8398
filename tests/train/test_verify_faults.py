"""A step's verifier faults reach the metrics by kind, and a step where too many checks failed stops the run
(issue 14, case 6): scripted engine, real VerifierPool, hand-counted faults."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from rollwise.generation import SamplingParams
from rollwise.generation.scripted import ScriptedEngine
from rollwise.rewards import VerifierPool, VerifyResult
from rollwise.sampler_tables import build_pipeline
from rollwise.sampling import Budget
from rollwise.train.rollout import RolloutCollector, StepRollouts, VerifierFailureError
from rollwise.types import Prompt, Rollout

REWARDS = str(Path(__file__).parents[1] / "rewards")
if REWARDS not in sys.path:  # the user-code verifiers of the reward tests; pool workers inherit sys.path
    sys.path.insert(0, REWARDS)

from rollwise_fault_verifiers import faulty_inline  # noqa: E402

POOL = [Prompt("a", "A?", "x"), Prompt("b", "B?", "x")]


def collect(tokenizer, verifier, completions: dict[str, list[str]], share: float = 1.0) -> StepRollouts:
    """One uniform step over both prompts, 4 rollouts each; ``completions`` scripts each prompt's texts."""
    engine = ScriptedEngine(completions, tokenizer=tokenizer)
    collector = RolloutCollector(engine, verifier, POOL, tokenizer.encode, SamplingParams(max_new_tokens=16),
                                 max_failure_share=share)
    pipe = build_pipeline(preset="uniform", pool_size=2, group_size=4, batch_prompts=2, total_steps=3, seed=0)
    return collector.collect(pipe, 0, Budget(8), seed=0, version=0)


def test_metrics_count_each_kind():
    out = StepRollouts()
    infos = [{}, {"fault": "error", "error": "RuntimeError: bad\nline"}, {"fault": "timeout", "timeout_s": 0.5},
             {"fault": "crash", "exitcode": 3}, {"fault": "crash", "exitcode": -11},
             {"fault": "out_of_range", "raw_score": 5.0}, {"reason": "too_long"}]
    for info in infos:
        out.rollouts.setdefault(0, []).append(Rollout(0, [1], [2], [-1.0], "t", "stop", verify_info=info))
        out.add_fault(info)
    m = out.metrics()
    assert (m["rollout/verify_failures"], m["rollout/verify_error"], m["rollout/verify_timeout"],
            m["rollout/verify_crash"], m["rollout/verify_out_of_range"]) == (5, 1, 1, 2, 1)
    assert out.last_fault == "reward 5.0 clamped to the reward range"
    one = StepRollouts()
    one.add_fault(infos[1])
    assert one.last_fault == "RuntimeError: bad line"  # one line, whatever the verifier raised


def test_timeouts_and_crashes_reach_the_step_metrics(tokenizer):
    # the bug: rollout counted info "timeout"/"error" keys the pool never wrote, so these read 0 failures
    with VerifierPool("rollwise_fault_verifiers:faulty", workers=2, timeout_s=0.5) as pool:
        out = collect(tokenizer, pool, {"A?": ["ok", "sleep", "exit", "raise"], "B?": "ok"})
    m = out.metrics()
    assert (m["rollout/verify_failures"], m["rollout/verify_error"], m["rollout/verify_timeout"],
            m["rollout/verify_crash"], m["rollout/verify_out_of_range"]) == (3, 1, 1, 1, 0)
    assert m["rollout/reward_mean"] == 5 / 8
    assert [r.verify_info.get("fault") for r in out.rollouts[0]] == [None, "timeout", "crash", "error"]


def test_too_many_failures_stop_the_step(tokenizer):
    clamp = VerifierPool(faulty_inline, out_of_range="clamp")  # in-process: no worker to start
    script = {"A?": ["ok", "raise", "five", "ok"], "B?": ["ok", "ok", "ok", "raise"]}  # 3 of 8 fail
    assert collect(tokenizer, clamp, script, share=0.375).verify_failures == 3  # at the share: carries on
    with pytest.raises(VerifierFailureError) as info:
        collect(tokenizer, clamp, script, share=0.25)
    assert str(info.value) == (
        "verifier failing at step 1: 3 of 8 checks failed this step (error 2, timeout 0, crash 0, out of range 1)"
        " > max share 0.25; last error: RuntimeError: verifier bug; fix the verifier or raise "
        "task.max_verify_failures")


class AllFail:
    """A verifier object whose every check timed out."""

    def score_batch(self, completions: list[str], references: list[str]) -> list[VerifyResult]:
        return [VerifyResult(0.0, False, {"reason": "timeout", "fault": "timeout", "timeout_s": 2.0})
                for _ in completions]


def test_default_share_never_stops_and_any_share_below_one_does(tokenizer):
    script = {"A?": "ok", "B?": "ok"}
    assert collect(tokenizer, AllFail(), script).metrics()["rollout/verify_timeout"] == 8  # default 1.0
    with pytest.raises(VerifierFailureError, match=r"8 of 8 checks failed.*last error: timeout after 2.0 s"):
        collect(tokenizer, AllFail(), script, share=0.99)
    with pytest.raises(ValueError, match="max_failure_share"):
        RolloutCollector(ScriptedEngine({}, tokenizer=object()), AllFail(), POOL, str, SamplingParams(),
                         max_failure_share=1.5)

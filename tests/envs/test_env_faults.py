"""Environments are untrusted: a reset or step that raises, hangs past its time limit, returns something that is
not a step result, or a reward that is not a number, NaN, infinite or out of range is counted by kind in
``env/faults_<kind>`` and its episode dropped: none of its turns reaches the sampler or the update."""

from __future__ import annotations

import numpy as np
import pytest
from env_helpers import RELEASE, Password, password_pool, scripted_sayer

from rollwise.envs.base import ENV_FAULTS, EnvFault, EnvKnobs, check_reward
from rollwise.envs.collector import EpisodeCollector
from rollwise.envs.loop import PlainFormat
from rollwise.generation import SamplingParams
from rollwise.sampler_tables import build_pipeline
from rollwise.sampling import Budget

# task 1's environment faults at its second step (reset_error: at reset), in the way named -> the kind counted
CASES = [("error", "error"), ("reset_error", "error"), ("timeout", "timeout"), ("malformed", "malformed"),
         ("not_a_number", "not_a_number"), ("none", "not_a_number"), ("nan", "nan"), ("inf", "inf"),
         ("neg_inf", "inf"), ("out_of_range", "out_of_range")]


@pytest.fixture()
def release_hung():
    RELEASE.clear()
    yield
    RELEASE.set()  # lets an abandoned step thread finish


@pytest.mark.parametrize("how,kind", CASES)
def test_faulty_episode_is_counted_and_dropped(tokenizer, release_hung, how, kind):
    assert {k for _, k in CASES} == set(ENV_FAULTS)  # every kind is covered
    engine = scripted_sayer(tokenizer, wrong_first=3)  # 4 turns: "x", "x", "x", "ok"
    pool = password_pool(["ok", f"bad:{how}:2", "ok"])
    limits = EnvKnobs(timeout_s=0.05)
    fmt = PlainFormat(lambda s: tokenizer.encode(s, add_special_tokens=False), (tokenizer.eos_token_id,))
    collector = EpisodeCollector(engine, Password, limits, pool, fmt, SamplingParams(max_new_tokens=8, seed=0))
    pipe = build_pipeline(preset="uniform", pool_size=3, group_size=2, batch_prompts=3, total_steps=3, seed=0)
    budget = Budget(6)
    out = collector.collect(pipe, 0, budget, seed=0, version=0)
    assert sorted(out.rollouts) == [0, 2]  # task 1's episodes never reach the sampler
    assert [len(out.rollouts[p]) for p in (0, 2)] == [8, 8]  # 2 episodes x 4 turns each
    m = collector.metrics()
    assert m[f"env/faults_{kind}"] == 2
    assert sum(m[f"env/faults_{k}"] for k in ENV_FAULTS) == 2
    assert (m["env/episodes"], m["env/success"], m["env/turns_mean"]) == (6, 1.0, 4.0)  # faulted ones left out
    turns = 0 if how == "reset_error" else 2  # the faulted episodes' turns: charged, discarded
    assert (out.discarded_rollouts, out.discarded_tokens) == (2 * turns, 2 * 2 * turns)
    assert budget.spent_rollouts == 6
    trained = pipe.finalize(out.obs(), 0)
    assert all(g.prompt != 1 for g in trained.groups)


def test_limits_are_not_faults(tokenizer):
    engine = scripted_sayer(tokenizer, wrong_first=9)
    fmt = PlainFormat(lambda s: tokenizer.encode(s, add_special_tokens=False), (tokenizer.eos_token_id,))
    collector = EpisodeCollector(engine, Password, EnvKnobs(max_turns=2), password_pool(["ok"]), fmt,
                                 SamplingParams(max_new_tokens=8, seed=0))
    pipe = build_pipeline(preset="uniform", pool_size=1, group_size=2, batch_prompts=1, total_steps=3, seed=0)
    out = collector.collect(pipe, 0, Budget(2), seed=0, version=0)
    m = collector.metrics()
    assert len(out.rollouts[0]) == 4 and all(r.reward == 0.0 for r in out.rollouts[0])
    assert m["env/finish_max_turns"] == 1.0 and sum(m[f"env/faults_{k}"] for k in ENV_FAULTS) == 0


@pytest.mark.parametrize("value,expected", [(1, 1.0), (True, 1.0), (np.float32(0.5), 0.5), (0.0, 0.0)])
def test_rewards_that_are_numbers_in_range_pass(value, expected):
    assert check_reward(value, (0.0, 1.0)) == expected


@pytest.mark.parametrize("value,kind", [("1", "not_a_number"), (None, "not_a_number"), ([1.0], "not_a_number"),
                                        (np.float64("nan"), "nan"), (float("-inf"), "inf"),
                                        (1.5, "out_of_range"), (-0.01, "out_of_range")])
def test_bad_rewards_name_their_kind(value, kind):
    with pytest.raises(EnvFault) as err:
        check_reward(value, (0.0, 1.0))
    assert err.value.kind == kind


def _collect_password(tokenizer, words, limits, env=Password, group=2):
    engine = scripted_sayer(tokenizer, wrong_first=3)  # 4 turns: "x", "x", "x", "ok"
    fmt = PlainFormat(lambda s: tokenizer.encode(s, add_special_tokens=False), (tokenizer.eos_token_id,))
    collector = EpisodeCollector(engine, env, limits, password_pool(words), fmt, SamplingParams(max_new_tokens=8,
                                                                                                seed=0))
    pipe = build_pipeline(preset="uniform", pool_size=len(words), group_size=group, batch_prompts=len(words),
                          total_steps=3, seed=0)
    budget = Budget(group * len(words))
    out = collector.collect(pipe, 0, budget, seed=0, version=0)
    return collector, pipe, budget, out


@pytest.mark.parametrize("how,kind", CASES)
def test_retried_faults_are_counted_every_try_and_never_trained(tokenizer, release_hung, how, kind):
    """env.retries = 2: a task whose environment faults on every try is played 3 times per episode, each try's
    fault counted by kind, then dropped; the sampler is charged for the 2 episodes it asked for."""
    collector, pipe, budget, out = _collect_password(tokenizer, ["ok", f"bad:{how}:2", "ok"],
                                                     EnvKnobs(timeout_s=0.05, retries=2))
    assert sorted(out.rollouts) == [0, 2] and [len(out.rollouts[p]) for p in (0, 2)] == [8, 8]
    m = collector.metrics()
    assert m[f"env/faults_{kind}"] == 6 and sum(m[f"env/faults_{k}"] for k in ENV_FAULTS) == 6  # 2 episodes x 3
    assert m["env/retries"] == 4 and (m["env/episodes"], m["env/success"]) == (6, 1.0)
    turns = 0 if how == "reset_error" else 2  # each faulted try's turns ("x" + eos each): charged, discarded
    assert (out.discarded_rollouts, out.discarded_tokens) == (6 * turns, 6 * 2 * turns)
    assert budget.spent_rollouts == 6
    assert all(g.prompt != 1 for g in pipe.finalize(out.obs(), 0).groups)


class FlakyPassword(Password):
    """Password whose 'bad:<kind>:<turn>' tasks fault only while ``FAULTS_LEFT`` is positive (one per try; the
    word to say is then 'ok')."""

    FAULTS_LEFT = [0]

    def reset(self, task):
        if not task.reference.startswith("bad:") or self.FAULTS_LEFT[0] > 0:
            self.FAULTS_LEFT[0] -= task.reference.startswith("bad:")
            return super().reset(task)
        self.word, self.turn = "ok", 0
        return f"say {task.text}:"


@pytest.mark.parametrize("how,kind", [("error", "error"), ("nan", "nan"), ("timeout", "timeout")])
def test_a_transient_fault_is_retried_and_trained(tokenizer, release_hung, how, kind):
    """The first try of each of task 1's 2 episodes faults, the retry plays cleanly: both trained (4 turns each),
    the 2 faults and 2 retries counted, the faulted tries' turns charged as discarded."""
    FlakyPassword.FAULTS_LEFT[0] = 2
    collector, pipe, budget, out = _collect_password(tokenizer, ["ok", f"bad:{how}:2"],
                                                     EnvKnobs(timeout_s=0.05, retries=1), env=FlakyPassword)
    assert [len(out.rollouts[p]) for p in (0, 1)] == [8, 8]
    assert all(r.verify_info["turns"] == 4 and r.verify_info["success"] for r in out.rollouts[1])
    m = collector.metrics()
    assert (m[f"env/faults_{kind}"], m["env/retries"], m["env/episodes"], m["env/success"]) == (2, 2, 4, 1.0)
    assert (out.discarded_rollouts, out.discarded_tokens) == (4, 8) and budget.spent_rollouts == 4
    assert {g.prompt for g in pipe.finalize(out.obs(), 0).groups} <= {0, 1}


def test_retries_knob_is_bounded():
    assert EnvKnobs(retries=16).retries == 16
    with pytest.raises(ValueError, match="retries"):
        EnvKnobs(retries=17)
    with pytest.raises(ValueError, match="retries"):
        EnvKnobs(retries=-1)

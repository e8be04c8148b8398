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

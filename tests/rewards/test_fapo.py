"""FAPO (issue 18): the carries judge on hand-built completions, the reward map, the shaper's marks and
skips, the model-judge interface on a stub, user judges, and the refusals at load."""

from __future__ import annotations

import pytest
import torch

from rollwise.algos import ADVANTAGES, AdvantageContext
from rollwise.config import load_config
from rollwise.data import scratch
from rollwise.rewards import VerifyResult
from rollwise.rewards.fapo import FapoShaper, compute_fapo_reward
from rollwise.rewards.judges import CarriesJudge, ModelJudge, get_judge, split_steps
from rollwise.rewards.shaping import check_reward_shaping
from rollwise.train.setup import build_reward_shaper

judge = CarriesJudge()


@pytest.mark.parametrize("prompt, completion, reference, step", [
    ("57+68=", "11|125", "125", -1),  # true carries 1, 1
    ("57+68=", "#11|125", "125", -1),  # unprompted working
    ("57+68=", "01|125", "125", 0),  # units carry wrong, answer right: flawed at step 0
    ("57+68=", "#10|125", "125", 1),
    ("57+68=", "1|125", "125", 1),  # a missing column: wrong at the first missing step
    ("57+68=", "110|125", "125", 2),  # an extra one
    ("57+68=", "125", "125", -1),  # direct answer: no working, never flawed
    ("57+68=#", "11|125", "125", -1),  # a prompt that asked for the working
    ("52-38=", "+10|14", "14", -1),  # sign, then the borrows of 52-38
    ("52-38=", "-10|14", "14", 0),
    ("52-38=", "+11|14", "14", 2),
    ("38-52=", "-10|-14", "-14", -1),
    ("47*6=", "42|282", "282", -1),  # carries of 7*6=42 and 4*6+4=28
    ("47*6=", "32|282", "282", 0),
    ("47*36=", "42,21|1692", "1692", -1),  # partial products 47*6 then 47*3
    ("47*36=", "42,31|1692", "1692", 3),
    ("47*36=", "4221|1692", "1692", 2),  # the separator is a step too
    ("12+34+56=", "11|102", "102", -1),
    ("12+34+56=", "21|102", "102", 0),
])
def test_carries_judge(prompt, completion, reference, step):
    assert judge(prompt, completion, reference) == step


@pytest.mark.skipif(not hasattr(scratch, "running_totals"), reason="no chain level in this checkout")
def test_carries_judge_on_a_chain_sum():
    assert judge("sum(3,14,7,25)=", "3,17,24,49|49", "49") == -1  # running totals
    assert judge("sum(3,14,7,25)=", "#3,18,24,49|49", "49") == 3


def test_carries_judge_raises_on_a_prompt_it_cannot_read():
    with pytest.raises(ValueError, match="not an arithmetic prompt"):
        judge("what is 2 and 2?", "0|4", "4")


def test_reward_map():
    assert compute_fapo_reward(True, False) == 1.0
    assert compute_fapo_reward(False, False) == 0.0
    assert compute_fapo_reward(True, True) == 0.5  # R = 1 - 1 = 0 on the +-1 scale -> (0 + 1) / 2
    assert compute_fapo_reward(True, True, penalty=0.5) == 0.75
    assert compute_fapo_reward(True, True, penalty=2.0) == 0.0  # as a wrong answer
    assert compute_fapo_reward(True, True, 1.0, (-1.0, 1.0)) == 0.0  # the spec's own scale
    assert compute_fapo_reward(True, True, 1.0, (0.0, 10.0)) == 5.0


def test_grpo_advantages_are_invariant_to_the_map_and_dr_grpo_halved():
    pm1 = torch.tensor([1.0, 0.0, -1.0, -1.0, 1.0, 1.0])  # +-1 scale, one flawed positive (R = 0)
    mapped = (pm1 + 1) / 2
    index = torch.tensor([0, 0, 0, 0, 1, 1])
    ctx = AdvantageContext(2)
    grpo, dr = ADVANTAGES.get("grpo"), ADVANTAGES.get("dr_grpo")
    torch.testing.assert_close(grpo(mapped, index, ctx).advantages, grpo(pm1, index, ctx).advantages,
                               atol=1e-5, rtol=0)  # equal up to eps in the std
    torch.testing.assert_close(dr(mapped, index, ctx).advantages, dr(pm1, index, ctx).advantages / 2)


class Recorder:
    def __init__(self, step: int = -1) -> None:
        self.step, self.calls = step, []

    def __call__(self, prompt: str, completion: str, reference: str) -> int:
        self.calls.append(completion)
        if completion == "boom":
            raise RuntimeError("judge bug\nsecond line")
        return self.step


def test_shaper_judges_correct_rollouts_only_and_marks_each():
    rec = Recorder(step=1)
    shaper = FapoShaper(rec)
    res = [VerifyResult(1.0, True, {"extracted": "125"}), VerifyResult(0.0, True),
           VerifyResult(0.0, False, {"fault": "timeout"}), VerifyResult(1.0, True), VerifyResult(1.0, True)]
    out = shaper.shape(["57+68="] * 5, ["10|125", "124", "11|125", "boom", "125"], ["125"] * 5, res)
    assert rec.calls == ["10|125", "boom", "125"]  # wrong answers and faults are never judged
    assert [r.score for r in out] == [0.5, 0.0, 0.0, 1.0, 0.5]
    assert [r.info["flawed"] for r in out] == [True, None, None, None, True]
    assert out[0].info == {"extracted": "125", "flawed": True, "flawed_step": 1, "unshaped_score": 1.0}
    assert out[3].info["judge_error"] == "RuntimeError: judge bug second line"  # a skip, reward unchanged
    assert res[0].info == {"extracted": "125"}  # the verifier's results are not mutated


def test_shaper_on_another_reward_range():
    out = FapoShaper(CarriesJudge(), reward_range=(-1.0, 1.0)).shape(
        ["57+68="] * 3, ["01|125", "11|125", "124"], ["125"] * 3,
        [VerifyResult(1.0, True), VerifyResult(1.0, True), VerifyResult(-1.0, True)])
    assert [r.score for r in out] == [0.0, 1.0, -1.0]


def test_model_judge_on_a_stub():
    prompts = []

    def genrm(text: str) -> str:
        prompts.append(text)
        return "step 1 adds wrongly. \\boxed{1}"

    j = ModelJudge(genrm)
    assert j("2+2=?", "first 2+2\n\nthen 5\n\nso 4", "4") == 1
    assert "<step_1>\nthen 5\n</step_1>" in prompts[0] and "2+2=?" in prompts[0] and "Reference answer: 4" in prompts[0]
    with pytest.raises(ValueError, match="no \\\\boxed"):
        ModelJudge(lambda t: "looks fine")("p", "a\nb", "1")
    with pytest.raises(ValueError, match="has 2 steps"):
        ModelJudge(lambda t: "\\boxed{2}")("p", "a\nb", "1")
    assert split_steps("a\nb\n\n") == ["a", "b"] and split_steps("a\nb\n\nc") == ["a\nb", "c"]


def test_model_judge_through_the_shaper_by_function_name():
    shaper = FapoShaper("model", judge_model="rollwise_user_judges:stub_genrm")
    out = shaper.shape(["q"] * 2, ["ok\nbad step\nok", "ok\nok"], ["1"] * 2, [VerifyResult(1.0, True)] * 2)
    assert [(r.score, r.info["flawed_step"]) for r in out] == [(0.5, 1), (1.0, -1)]
    with pytest.raises(FileNotFoundError):
        ModelJudge("/no/such/checkpoint")


def test_user_judges():
    assert get_judge("rollwise_user_judges:FirstStep", step=2)("x", "y", "z") == 2
    assert get_judge("rollwise_user_judges:never_flawed")("x", "y", "z") == -1
    with pytest.raises(KeyError, match="did you mean 'carries'"):
        get_judge("carrie")


def test_config_knobs_and_the_builder():
    cfg = load_config(None, ["--task.reward_shaping=fapo"])
    shaper = build_reward_shaper(cfg)
    assert isinstance(shaper, FapoShaper) and isinstance(shaper.judge, CarriesJudge) and shaper.penalty == 1.0
    assert build_reward_shaper(load_config(None, [])) is None
    cfg = load_config(None, ["--task.reward_shaping.type=fapo", "--task.reward_shaping.judge=rollwise_user_judges:"
                             "FirstStep", "--task.reward_shaping.penalty=0.5", "--task.reward_range=[-1, 1]"])
    shaper = build_reward_shaper(cfg)
    assert shaper.reward_range == (-1.0, 1.0) and shaper.penalty == 0.5
    for bad, msg in [("--task.reward_shaping.judge=carrys", "did you mean 'carries'"),
                     ("--task.reward_shaping.judge=model", "needs judge_model"),
                     ("--task.reward_shaping.penalty=2.5", "less than or equal to 2")]:
        with pytest.raises(Exception, match=msg):
            load_config(None, ["--task.reward_shaping.type=fapo", bad])


def test_carries_judge_refused_on_answers_without_working():
    from rollwise.config import TaskConfig

    with pytest.raises(ValueError, match="answers without working"):
        check_reward_shaping(TaskConfig(reward_shaping="fapo", scratchpad="none"))
    with pytest.raises(ValueError, match="answers without working"):
        check_reward_shaping(TaskConfig(reward_shaping="fapo", suite="dataset", dataset="gsm8k:train"))
    with pytest.raises(ValueError, match="answers without working"):  # at load once Config._check calls the check
        build_reward_shaper(load_config(None, ["--task.reward_shaping=fapo", "--task.scratchpad=none"]))
    check_reward_shaping(TaskConfig(reward_shaping="fapo", scratchpad="carries"))
    check_reward_shaping(TaskConfig(reward_shaping={"type": "fapo", "judge": "rollwise_user_judges:FirstStep"},
                                    scratchpad="none"))


def test_model_judge_from_a_local_checkpoint():
    from rollwise.train.warmstart import PACKAGED

    j = ModelJudge(str(PACKAGED / "c587ab2eeaa128fe"), max_new_tokens=4)  # the packaged policy: no GenRM,
    assert j.generate("57+68=") == "125"  # but it shows the local, greedy path (never a download)
    with pytest.raises(ValueError, match="no \\\\boxed"):
        j("57+68=", "11|125", "125")

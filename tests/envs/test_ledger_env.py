"""``ledger``: word problems with a calculator tool. Hand-computed episodes, the functional step check, the safe
calculator, the expert, snapshot/restore, the held-out split, and the plain-text warm-start pairs."""

from __future__ import annotations

import itertools
from fractions import Fraction

import pytest

from rollwise.envs import ENVIRONMENTS
from rollwise.envs.base import StepEnv
from rollwise.envs.ledger import INVALID, CalcError, Ledger, LedgerKnobs, held_out, parse_action, safe_eval, show
from rollwise.types import Prompt


def mix(a: int, b: int, c: int) -> Prompt:
    meta = {"level": "mix2", "op": "mix", "operands": [a, b, c]}
    return Prompt("t", f"What is {a} + {b} - {c}?", str(a + b - c), meta)


def test_registered_with_knobs_and_the_step_extensions():
    assert ENVIRONMENTS.get("ledger") is Ledger and ENVIRONMENTS.config("ledger") is LedgerKnobs
    assert isinstance(Ledger(), StepEnv)
    with pytest.raises(ValueError, match="unknown word-problem level"):
        LedgerKnobs(levels=["mix9"])


def test_expert_episode_hand_computed():
    env = Ledger()
    task = mix(23, 45, 12)
    assert env.reset(task) == "What is 23 + 45 - 12?\n"
    assert env.expert(task) == ["CALC: 23 + 45", "CALC: 68 - 12", "ANSWER: 56"]
    r = env.step("CALC: 23 + 45")
    assert (r.observation, r.reward, r.done, r.info["useful"]) == ("= 68\n", 0.0, False, True)
    r = env.step("CALC: 68 - 12")
    assert (r.observation, r.done, r.info["useful"]) == ("= 56\n", False, True)
    r = env.step("ANSWER: 56")
    assert (r.reward, r.done, r.info["success"]) == (1.0, True, True)


def test_wrong_answer_invalid_action_and_calculator_errors():
    env = Ledger()
    env.reset(mix(23, 45, 12))
    r = env.step("I think it is 56")
    assert (r.observation, r.reward, r.done, r.info["valid"]) == (INVALID, 0.0, False, False)
    assert env.step("CALC: 68 / 0").observation == "= error: division by zero\n"
    assert env.step("CALC: 7 / 2").observation == "= 3.5\n"
    r = env.step("ANSWER: 57")
    assert (r.reward, r.done, r.info["success"]) == (0.0, True, False)


def test_functional_step_check_accepts_any_valid_order():
    env = Ledger()
    env.reset(mix(23, 45, 12))  # orders: (68, 56), (11, 56), (33, 56)
    s0 = env.snapshot()
    for action in ("CALC: 23 + 45", "CALC: 45 + 23", "CALC: 68", "CALC: 23 - 12", "CALC: 45-12",
                   "CALC: 23 + 45 - 12", "ANSWER: 56", "calc: 23+45 = 68"):
        assert env.action_reward(s0, action) == 1.0, action
    for action in ("CALC: 23 * 45", "CALC: 12 + 1", "ANSWER: 68", "CALC: 1/0", "hello", "ANSWER: x"):
        assert env.action_reward(s0, action) == 0.0, action
    env.step("CALC: 45 + 23")  # the order (68, 56) is taken: 11 and 33 are no longer needed
    s1 = env.snapshot()
    assert s1[2] == (68,)
    assert env.action_reward(s1, "CALC: 68 - 12") == 1.0
    assert env.action_reward(s1, "CALC: 23 - 12") == 0.0
    assert env.action_reward(s1, "CALC: 23 + 45") == 0.0  # already computed
    env.step("CALC: 1 + 1")  # not useful: the state keeps only useful values
    assert env.snapshot()[2] == (68,)
    env.restore(s0)
    assert env.snapshot() == s0 and env.step("ANSWER: 56").reward == 1.0


def test_one_step_levels():
    env = Ledger(["mul1"])
    task = Prompt("t", "What is 12 * 4?", "48", {"level": "mul2", "op": "mul", "operands": [12, 4]})
    env.reset(task)
    assert env.expert(task) == ["CALC: 12 * 4", "ANSWER: 48"]
    s = env.snapshot()
    assert [env.action_reward(s, a) for a in ("CALC: 12*4", "CALC: 4 x 12", "CALC: 48", "CALC: 12+4")] == [1, 1, 1, 0]


def test_safe_eval_is_bounded_and_runs_no_code():
    assert safe_eval("12*4") == 48 and safe_eval("(3 + 4) / 2") == Fraction(7, 2)
    assert safe_eval("-3 + 1,234") == 1231 and safe_eval("6 × 7") == 42 and safe_eval("8 ÷ 2") == 4
    assert show(Fraction(1, 3)) == "0.3333" and show(Fraction(-5)) == "-5"
    for bad in ("__import__('os').system('true')", "2**10", "9" * 13, "1/0", "a + b", "", "1+" * 41 + "1",
                "[1, 2]", "True + 1", "lambda: 1"):
        with pytest.raises(CalcError):
            safe_eval(bad)
    assert parse_action("Sure! CALC: 3+4 = 7\nANSWER: 7") == ("calc", "3+4")
    assert parse_action("answer: 7 apples") == ("answer", "7 apples") and parse_action("7") is None


def test_tasks_split_disjoint_by_operands_and_deterministic():
    env = Ledger(["mix2", "mul1"])
    train, heldout = env.tasks("train", 200, 0), env.tasks("eval", 10, 1)
    assert len(train) == 200 and len(heldout) == 20
    assert {t.meta["level"] for t in heldout} == {"mix2", "mul1"}
    assert not any(held_out(tuple(t.meta["operands"])) for t in train)
    assert all(held_out(tuple(t.meta["operands"])) for t in heldout)
    assert [t.text for t in env.tasks("eval", 10, 1)] == [t.text for t in heldout]
    for t in train[:20] + heldout:
        o = t.meta["operands"]
        assert int(t.reference) == (o[0] + o[1] - o[2] if t.meta["op"] == "mix" else o[0] * o[1])


def test_sft_pairs_are_the_expert_in_plain_text():
    pairs = list(itertools.islice(Ledger().sft_pairs(0, 6), 3))
    (c0, a0), (c1, a1), (c2, a2) = pairs
    assert a0.startswith("CALC: ") and a2.startswith("ANSWER: ")
    assert c1 == c0 + a0 + f"= {safe_eval(a0[6:])}\n" and c2.startswith(c1 + a1 + "= ")


def test_step_reward_pays_each_useful_calc_once():
    env = Ledger(step_reward=0.25)
    env.reset(mix(23, 45, 12))
    rewards = [env.step(a).reward for a in ("CALC: 45 + 23", "CALC: 23 + 45", "CALC: 23 - 12", "CALC: 68 - 12",
                                            "ANSWER: 56")]
    assert rewards == [0.25, 0.0, 0.0, 0.25, 1.0]

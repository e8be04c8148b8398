"""Word-problem suite (``task.suite = "words"``): hand-checked phrasings and answers, a held-out split disjoint
from the pool by problem, determinism by seed, and the suite's config wiring (dispatch, levels, verifier)."""

from __future__ import annotations

import random
import re

import pytest

from rollwise.config import ConfigError, load_config
from rollwise.config_models import TASK_SUITES
from rollwise.data.task import SUITE_BUILDERS, build_task
from rollwise.data.word_problems import WORD_LEVELS, build_word_suite, render_problem
from rollwise.rewards import get_verifier


class Pick:
    """A stand-in rng whose ``choice`` returns element ``i`` of every sequence (templates, people, objects)."""

    def __init__(self, i: int) -> None:
        self.i = i

    def choice(self, seq):
        return seq[self.i % len(seq)]


@pytest.mark.parametrize(("op", "operands", "i", "text"), [
    ("add", (23, 45), 0, "What is 23 + 45?"),
    ("add", (23, 45), 1, "What is 23 plus 45?"),
    ("add", (23, 45), 2, "Sam has 23 marbles and gets 45 more. How many marbles does he have now?"),
    ("sub", (68, 25), 2, "Sam has 68 marbles and gives 25 of them to a friend. How many marbles does he have left?"),
    ("mul", (6, 9), 2, "There are 6 boxes with 9 marbles in each box. How many marbles are there in total?"),
    ("div", (56, 7), 1, "What is 56 divided by 7?"),
    ("mix", (40, 12, 30), 1, "Mia has 40 stickers, gets 12 more and then gives 30 away. How many stickers does "
                             "she have now?"),
])
def test_phrasings_hand_checked(op, operands, i, text):
    assert render_problem(op, operands, Pick(i)) == text


@pytest.mark.parametrize(("level", "operands", "answer"), [
    ("add2", (23, 45), 68), ("sub2", (68, 25), 43), ("mul1", (7, 8), 56), ("mul2", (47, 6), 282),
    ("div1", (56, 7), 8), ("mix2", (40, 12, 30), 22), ("add3", (999, 999), 1998),
])
def test_answers_hand_checked(level, operands, answer):
    assert WORD_LEVELS[level].answer(operands) == answer


OPS = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b, "div": lambda a, b: a // b,
       "mix": lambda a, b, c: a + b - c}


def _operands(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"[0-9]+", text))  # templates hold no numbers but the operands


def test_every_prompt_states_its_problem_and_answer():
    s = build_word_suite(list(WORD_LEVELS), train_size=900, eval_size=20, seed=3)
    prompts = [*s.pool, *(p for ps in s.eval_sets.values() for p in ps)]
    for p in prompts:
        lv = WORD_LEVELS[p.meta["level"]]
        nums = _operands(p.text)
        assert int(p.reference) == OPS[lv.op](*nums), p.text
        assert int(p.reference) >= 0, p.text  # sub and mix never go below zero
        if lv.op == "div":
            assert nums[0] % nums[1] == 0, p.text
        digits = {"add1": 1, "add2": 2, "add3": 3, "sub2": 2, "sub3": 3}.get(lv.name)
        if digits is not None:
            assert all(len(str(n)) == digits or (digits == 1 and n < 10) for n in nums), p.text


def test_heldout_split_is_disjoint_by_problem():
    s = build_word_suite(["add2", "sub2", "mul1", "div1", "mix2"], train_size=500, eval_size=40, seed=0)
    for li, name in enumerate(s.level_names):
        held = {_operands(p.text) for p in s.eval_sets[name]}
        train = [_operands(p.text) for i, p in enumerate(s.pool) if s.levels[i] == li]
        assert train and held.isdisjoint(train), name
        assert len(held) == len(s.eval_sets[name])  # distinct problems
    assert len(s.eval_sets["mul1"]) == 32  # 64 one-digit products: at most half held out
    assert len(s.eval_sets["add2"]) == 40
    assert s.heldout == {p.text for ps in s.eval_sets.values() for p in ps}
    assert len({p.text for p in s.pool}) == len(s.pool)


def test_deterministic_by_seed_and_eval_independent_of_pool_size():
    a = build_word_suite(["add2", "mul2"], 100, 10, seed=0)
    b = build_word_suite(["add2", "mul2"], 100, 10, seed=0)
    c = build_word_suite(["add2", "mul2"], 400, 10, seed=0)
    d = build_word_suite(["add2", "mul2"], 100, 10, seed=1)
    assert [p.text for p in a.pool] == [p.text for p in b.pool]
    assert a.eval_sets == c.eval_sets  # growing the pool does not move the held-out split
    assert [p.text for p in a.eval_sets["add2"]] != [p.text for p in d.eval_sets["add2"]]
    rng = random.Random(0)
    assert all(WORD_LEVELS["sub2"].draw(rng)[0] >= 10 for _ in range(200))


def test_suite_from_config_dispatch_and_verifier():
    cfg = load_config(None, ["--task.suite=words", "--task.levels=['add2','mul1']", "--task.train_size=40",
                             "--task.eval_size=5"])
    assert set(SUITE_BUILDERS) == set(TASK_SUITES)  # every suite the config accepts has a builder
    task = build_task(cfg)
    assert task.level_names == ["add2", "mul1"] and sorted(task.eval_sets) == ["add2", "mul1"]
    assert len(task.pool) == 40 and task.levels is not None
    assert cfg.task.verifier_name() == "final_number"
    check = get_verifier(cfg.task.verifier_name())
    p = task.eval_sets["add2"][0]
    assert check(f"The answer is {p.reference}.", p.reference).score == 1.0


def test_unknown_levels_fail_at_load():
    with pytest.raises(ConfigError, match="not word-problem levels.*add1"):
        load_config(None, ["--task.suite=words"])  # the default levels are the arith suite's (sum3, chain...)
    with pytest.raises(ConfigError, match="unknown suite 'word'.*did you mean 'words'"):
        load_config(None, ["--task.suite=word"])
    with pytest.raises(ValueError, match="unknown word-problem level"):
        build_word_suite(["add9"], 10, 2, seed=0)

"""The long-tail testbed: the ``chain`` level's prompts, worked answers (running totals, hand-checked), length
spread, verifier (only the integer after the last '|' counts), and configs/longtail.toml."""

from __future__ import annotations

import itertools
import random
import re
from pathlib import Path

import pytest

from rollwise.config import load_config
from rollwise.data.scratch import carry_scratchpad, running_totals
from rollwise.data.tasks import LEVELS, build_suite, sft_stream
from rollwise.rewards.synthetic import verify_scratch

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("prompt", "value", "want"), [
    ("sum(3,14,7,25)=", 49, "3,17,24,49|49"),
    ("sum(1,2)=", 3, "1,3|3"),
    ("sum(29,29,29)=", 87, "29,58,87|87"),
    ("sum(9,1,5,5,8,2,7,3,6,4)=", 50, "9,10,15,20,28,30,37,40,46,50|50"),
])
def test_chain_worked_answers_by_hand(prompt, value, want):
    assert carry_scratchpad(prompt, value) == want


def test_chain_does_not_collide_with_sum3():
    """A three-term chain is written with sum(...), so the carries of sum3 keep their own form."""
    assert carry_scratchpad("12+34+56=", 102) == "11|102"
    assert carry_scratchpad("sum(12,34,56)=", 102) == "12,46,102|102"
    assert running_totals([5]) == "5"


def test_chain_prompts_values_and_length_spread():
    rng = random.Random(0)
    lengths = []
    for _ in range(2000):
        text, value = LEVELS["chain"].make(rng)
        terms = [int(x) for x in re.fullmatch(r"sum\(([\d,]+)\)=", text)[1].split(",")]
        assert 2 <= len(terms) <= 10 and all(1 <= x <= 29 for x in terms) and sum(terms) == value
        work = carry_scratchpad(text, value)
        assert work.split("|") == [running_totals(terms), str(value)]
        lengths.append(len(work))
    assert min(lengths) <= 6 and max(lengths) >= 38  # 5 to ~40 characters: a long tail
    assert sorted(lengths)[len(lengths) // 2] < 25


@pytest.mark.parametrize(("completion", "score", "parsed"), [
    ("3,17,24,49|49", 1.0, True),
    ("3,17,25,50|49", 1.0, True),  # wrong working, right final integer: only the answer is checked
    ("3,17,24,49|48", 0.0, True),
    ("3,17,24,49", 0.0, False),  # no '|'
    ("49", 0.0, False),
])
def test_verifier_reads_only_the_final_integer(completion, score, parsed):
    res = verify_scratch(completion, "49")
    assert (res.score, res.parsed) == (score, parsed)


def test_suite_and_warm_start_targets():
    suite = build_suite(["add1", "chain"], train_size=40, eval_size=10, seed=0)
    chain = [p for p in suite.pool if p.meta["level"] == "chain"]
    assert len(chain) == 20 and all(p.text.startswith("sum(") for p in chain)
    assert not {p.text for p in chain} & {p.text for p in suite.eval_sets["chain"]}
    pairs = list(itertools.islice(sft_stream({"chain": 1.0}, 0, set(), scratchpad="carries"), 20))
    for text, target in pairs:
        assert target == carry_scratchpad(text, int(target.rsplit("|", 1)[1]))


def test_longtail_config():
    from rollwise.train.warmstart import warmstart_key

    cfg = load_config(ROOT / "configs" / "longtail.toml")
    tiny = load_config(ROOT / "configs" / "tiny.toml")
    assert "chain" in cfg.task.levels and cfg.generation.max_new_tokens >= 42  # the longest answer + eos fits
    assert cfg.task.verifier_name() == "synthetic_scratch" and cfg.task.scratchpad == "carries"
    assert warmstart_key(cfg) != warmstart_key(tiny)

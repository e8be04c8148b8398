import itertools
import random

import pytest

from rollwise.data.scratch import carry_scratchpad
from rollwise.data.tasks import LEVELS, sft_stream


@pytest.mark.parametrize(("prompt", "value", "want"), [
    ("57+68=", 125, "11|125"),      # 7+8=15 carry 1; 5+6+1=12 carry 1
    ("5+7=", 12, "1|12"),
    ("40+51=", 91, "00|91"),
    ("99999+1=", 100000, "11111|100000"),  # operands of unequal length are padded with zeros
    ("12+34+56=", 102, "11|102"),   # 2+4+6=12 carry 1; 1+3+5+1=10 carry 1
    ("52-38=", 14, "+10|14"),       # 2-8 borrows; 5-3-1 does not
    ("38-52=", -14, "-10|-14"),     # sign first, then the borrows of 52-38
    ("50-50=", 0, "+00|0"),
    ("47*6=", 282, "42|282"),       # 7*6=42 carry 4; 4*6+4=28 carry 2
    ("47*36=", 1692, "42,21|1692"), # carries of 47*6, then of 47*3 (28 carry 2, 12+2=14 carry 1)
])
def test_carry_scratchpad_by_hand(prompt, value, want):
    assert carry_scratchpad(prompt, value) == want


def test_carry_scratchpad_carries_reproduce_the_answer():
    """For every level the answer after '|' is the value; for the additions the carries are the column carries."""
    rng = random.Random(0)
    for name, lv in LEVELS.items():
        for _ in range(200):
            text, value = lv.make(rng)
            work, answer = carry_scratchpad(text, value).split("|")
            assert answer == str(value), name
            if "+" in text:
                ops = [int(x) for x in text[:-1].split("+")]
                width, carry = max(len(str(x)) for x in ops), 0
                for i in range(width):
                    carry = (sum(x // 10**i % 10 for x in ops) + carry) // 10
                    assert int(work[i]) == carry, (text, work)


def test_carry_scratchpad_rejects_other_text_and_feeds_the_warm_start():
    with pytest.raises(ValueError, match="not an arithmetic prompt"):
        carry_scratchpad("what is 2+2?", 4)
    text, target = next(sft_stream({"add2": 1.0}, seed=0, exclude=set(), scratchpad="carries"))
    assert target == carry_scratchpad(text, eval(text[:-1]))


def test_mixed_stream_shares_and_formats():
    """'mixed': prompted rows end in '#' and get the bare scratchpad; of the rest, about ``share`` get '#' + the
    scratchpad and the others the direct answer; every target carries the right answer; the draws are seeded."""
    rows = list(itertools.islice(sft_stream({"add2": 1.0, "sub2": 1.0, "mul2": 1.0}, seed=0, exclude=set(),
                                            scratchpad="mixed", share=0.2, prompted=0.5), 4000))
    asked = [(p, t) for p, t in rows if p.endswith("#")]
    rest = [(p, t) for p, t in rows if not p.endswith("#")]
    worked = [(p, t) for p, t in rest if t.startswith("#")]
    assert abs(len(asked) / 4000 - 0.5) < 0.03 and abs(len(worked) / len(rest) - 0.2) < 0.03
    for p, t in asked:
        assert t == carry_scratchpad(p[:-1], eval(p[:-2]))
    for p, t in worked:
        assert t == "#" + carry_scratchpad(p, eval(p[:-1]))
    for p, t in rest:
        if not t.startswith("#"):
            assert t == str(eval(p[:-1]))
    again = list(itertools.islice(sft_stream({"add2": 1.0, "sub2": 1.0, "mul2": 1.0}, seed=0, exclude=set(),
                                             scratchpad="mixed", share=0.2, prompted=0.5), 4000))
    assert again == rows
    # share 0 and prompted 0: the direct stream's answers (the draws differ, the format does not)
    plain = itertools.islice(sft_stream({"add2": 1.0}, seed=0, exclude=set(), scratchpad="mixed", share=0.0,
                                        prompted=0.0), 200)
    assert all(not p.endswith("#") and t == str(eval(p[:-1])) for p, t in plain)

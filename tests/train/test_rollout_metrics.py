"""The step's diversity metric ``rollout/distinct_answers`` (issue 17: tree rollouts claim more distinct final
answers per group), on hand-built groups."""

from __future__ import annotations

from rollwise.train.rollout import StepRollouts
from rollwise.types import Rollout


def _r(prompt: int, answer: str | None, text: str = "t") -> Rollout:
    info = {} if answer is None else {"extracted": answer}
    return Rollout(prompt, [1], [2], [-1.0], text, "stop", parsed=answer is not None, verify_info=info)


def test_distinct_answers_counts_final_answers_not_texts():
    out = StepRollouts()
    # prompt 0: answers 7, 7 (different working), 9, unparsed, unparsed -> {7, 9, none} = 3
    out.rollouts[0] = [_r(0, "7", "3,7|7"), _r(0, "7", "4,7|7"), _r(0, "9"), _r(0, None, "x"), _r(0, None, "y")]
    out.rollouts[1] = [_r(1, "5"), _r(1, "5")]  # one answer
    out.rollouts[2] = [_r(2, "1")]  # a lone rollout has no diversity to measure: left out
    assert out.distinct_answers() == 2.0  # (3 + 1) / 2
    assert out.metrics()["rollout/distinct_answers"] == 2.0


def test_distinct_answers_without_groups_is_zero():
    out = StepRollouts()
    out.rollouts[0] = [_r(0, "1")]
    assert out.distinct_answers() == 0.0

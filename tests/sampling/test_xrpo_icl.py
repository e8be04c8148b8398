"""XRPO's in-context seeding (the ``xrpo_icl`` transform): which prompts are seeded, with which solved
neighbours, and how the trainer renders a context before the prompt."""

from __future__ import annotations

import pickle

import numpy as np

from rollwise.sampling import Budget, GroupObs, PromptStats, SampleContext
from rollwise.sampling.xrpo import XrpoIclSeeding
from rollwise.train.rollout import render_context
from rollwise.types import Prompt

LEVELS = np.array([0, 0, 0, 1, 1, 1])


def _ctx(seed: int = 0) -> SampleContext:
    return SampleContext(0, 10, 4, 2, PromptStats(6), np.random.default_rng(seed), Budget(100), LEVELS)


def _pool(p: int, rewards: list[float], texts: list[str] | None = None) -> GroupObs:
    r = np.asarray(rewards, dtype=np.float64)
    return GroupObs(p, r, np.ones(len(r), dtype=np.int64), texts=texts or [f"t{p}{i}" for i in range(len(r))])


def _seeded() -> XrpoIclSeeding:
    t, ctx = XrpoIclSeeding(k=2, min_failures=4), _ctx()
    # solved: prompts 1 ("12", its last success) and 2 at level 0, prompt 4 at level 1
    t.observe(ctx, [_pool(1, [1, 0, 1], ["11", "x", "12"]), _pool(2, [0, 1], ["y", "34"]), _pool(4, [1], ["44"]),
                    _pool(0, [0, 0, 0, 0])], [])
    return t


def test_all_wrong_prompts_get_solved_neighbours_of_their_level():
    t, ctx = _seeded(), _ctx()
    pools = {0: _pool(0, [0, 0, 0, 0]), 1: _pool(1, [0, 0, 0, 0]), 3: _pool(3, [0, 1, 0, 0]), 5: _pool(5, [0, 0])}
    out = t.contexts(np.array([0, 1, 3, 5]), pools, ctx)
    assert out[0] == ((1, "12"), (2, "34"))  # both solved level-0 neighbours, in index order
    assert out[1] == ((2, "34"),)  # never its own solution
    assert out[2] is None  # prompt 3 has a success this step
    assert out[3] is None  # two failures < min_failures
    assert t.metrics()["corpus"] == 3.0


def test_history_decides_before_the_first_round_and_nothing_without_neighbours():
    t, ctx = _seeded(), _ctx()
    ctx.stats.attempts[[0, 3, 5]] = [8, 8, 2]  # no successes recorded for any of them
    out = t.contexts(np.array([0, 3, 5]), {}, ctx)
    assert out[0] == ((1, "12"), (2, "34"))
    assert out[1] == ((4, "44"),)  # level 1: prompt 4 is the only solved neighbour
    assert out[2] is None
    fresh = XrpoIclSeeding()
    assert fresh.contexts(np.array([0]), {0: _pool(0, [0, 0, 0, 0])}, ctx) is None  # empty corpus: no change


def test_corpus_is_bounded_truncated_and_checkpointed():
    t, ctx = XrpoIclSeeding(capacity=2, max_chars=3), _ctx()
    t.observe(ctx, [_pool(0, [1], ["abcdef"]), _pool(1, [1]), _pool(2, [1])], [])
    assert list(t._corpus[0]) == [1, 2]  # FIFO: prompt 0's solution was evicted
    t.observe(ctx, [_pool(0, [1], ["abcdef"])], [])
    assert t._corpus[0][0] == "abc"
    again = XrpoIclSeeding(capacity=2, max_chars=3)
    again.load_state_dict(pickle.loads(pickle.dumps(t.state_dict())))
    pools = {1: _pool(1, [0, 0, 0, 0])}
    assert again.contexts(np.array([1]), pools, _ctx(3)) == t.contexts(np.array([1]), pools, _ctx(3))


def test_the_trainer_renders_examples_before_the_prompt():
    pool = [Prompt("a", "1+2=", "3"), Prompt("b", "4+4=", "8"), Prompt("c", "5+6=", "11")]
    assert render_context(None, pool, "5+6=") == "5+6="
    assert render_context(((0, "3"), (1, "8")), pool, "5+6=") == "1+2=3\n4+4=8\n5+6="

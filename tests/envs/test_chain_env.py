"""The ``chain`` environment: hand-computed step checks, expert, snapshot/restore, scripted play."""

from __future__ import annotations

import itertools

import pytest

from rollwise.envs import ENVIRONMENTS, StepEnv
from rollwise.envs.chain import ChainKnobs, ChainSum, expert_actions, parse_action, step_target


def test_functional_check_by_hand() -> None:
    terms = (3, 14, 7, 25)  # partial sums 3, 17, 24, 49
    assert step_target(terms, 0, "3,") == 1
    assert step_target(terms, 1, "17,") == 2
    assert step_target(terms, 1, "24,") == 3  # skipped a term: accepted
    assert step_target(terms, 1, "49|") == 4  # skipped to the end with '|'
    assert step_target(terms, 1, "49,") is None  # the whole sum needs '|'
    assert step_target(terms, 1, "24|") is None  # '|' before the end
    assert step_target(terms, 2, "17,") is None  # does not extend the current prefix
    assert step_target(terms, 1, "18,") is None  # not a partial sum
    assert step_target(terms, 0, "x") is None and parse_action("17") is None
    assert parse_action(" 17, ") == (17, ",")


def test_expert_snapshot_restore_and_rewards() -> None:
    env = ChainSum()
    task = env.task("t", [3, 14, 7, 25])
    assert env.reset(task) == "sum(3,14,7,25)="
    assert env.expert(task) == expert_actions([3, 14, 7, 25]) == ["3,", "17,", "24,", "49|"]
    assert isinstance(env, StepEnv)
    r = env.step("3,")
    assert (r.reward, r.done, r.observation) == (0.0, False, " ")  # sep: the next turn's context differs
    s = env.snapshot()
    assert env.action_reward(s, "24,") == 1.0 and env.exact_reward(s, "24,") == 0.0  # functional, not exact
    assert env.action_reward(s, "17,") == 1.0 and env.exact_reward(s, "17,") == 1.0
    assert env.action_reward(s, "18,") == 0.0
    bad = env.step("18,")  # a wrong step ends free-running play
    assert bad.done and bad.info == {"success": False, "valid": False, "k": 1} and bad.reward == 0.0
    env.restore(s)  # the expert's state back
    assert env.step("24,").info["k"] == 3
    end = env.step("49|")
    assert end.done and end.reward == 1.0 and end.info["success"]


def test_tasks_registry_and_scripted_play() -> None:
    assert ENVIRONMENTS.get("chain") is ChainSum
    env = ChainSum(min_terms=2, max_terms=4)
    tasks = env.tasks("train", 50, 0)
    assert tasks == env.tasks("train", 50, 0) and tasks != env.tasks("eval", 50, 0)
    assert all(2 <= len(t.meta["terms"]) <= 4 and t.meta["max_turns"] == len(t.meta["terms"]) for t in tasks)
    pairs = list(itertools.islice(env.sft_pairs(0, 10), 400))
    kinds = {"exact": 0, "skip": 0, "slip": 0}
    for ctx, action in pairs:
        head, _, done = ctx.partition("=")
        terms = [int(x) for x in head[4:-1].split(",")]
        # the prefix reached so far: the last total written (all correct: a slip ends its episode)
        k = [sum(terms[:j]) for j in range(len(terms) + 1)].index(int(done.split(",")[-2])) if done else 0
        j = step_target(terms, k, action)
        kinds["slip" if j is None else "exact" if j == k + 1 else "skip"] += 1
    assert kinds["exact"] > kinds["skip"] > 0 and kinds["slip"] > 0


def test_turn_end_and_next_turn_contexts_differ() -> None:
    """The loop drops an action's stop token, so a turn's context plus its action must not be the next turn's
    context (else one prefix has two targets, stop and the next total); the warm start's contexts are the loop's."""
    env = ChainSum(min_terms=3, max_terms=3, slip=0.0, skip=0.0)
    pairs = list(itertools.islice(env.sft_pairs(0, 10), 3))
    for (c0, a0), (c1, _) in zip(pairs, pairs[1:]):
        assert c1 == c0 + a0 + env.sep != c0 + a0
    env.reset(env.task("t", [3, 14]))
    assert env.step("3,").observation == env.sep == " "


def test_knobs_refuse_bad_terms() -> None:
    with pytest.raises(ValueError):
        ChainKnobs(min_terms=5, max_terms=3)

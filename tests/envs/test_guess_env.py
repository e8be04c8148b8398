"""The embedded multi-turn default ``guess``: its rules, its best policy (binary search) and warm-start player,
checked on hand-worked games; a scripted binary-search engine played through the collector scores exactly the
best policy's success and turns."""

from __future__ import annotations

import random

from env_helpers import binary_search_engine

from rollwise.envs import ENVIRONMENTS
from rollwise.envs.base import EnvKnobs, env_factory
from rollwise.envs.collector import EpisodeCollector
from rollwise.envs.guess import (
    DOWN,
    INVALID,
    UP,
    GuessKnobs,
    GuessNumber,
    best_guess,
    best_policy_stats,
    habit_guess,
    turns_to_solve,
)
from rollwise.envs.loop import AgentLoop, PlainFormat
from rollwise.generation import SamplingParams


def test_registered_with_typed_knobs():
    assert "guess" in ENVIRONMENTS.names()
    assert ENVIRONMENTS.config("guess") is GuessKnobs
    cfg = GuessKnobs(n=7)
    assert issubclass(GuessKnobs, EnvKnobs) and (cfg.max_turns, cfg.turn_decay) == (5, 0.9)


def test_rules():
    env = GuessNumber(n=15, turn_decay=0.5)
    (task,) = [t for t in env.tasks("eval", 0, 0) if t.reference == "9"]
    assert env.reset(task) == "guess 1-15\n"
    for action, obs in [("8", UP), ("abc", INVALID), ("0", INVALID), ("16", INVALID), (" 12 ", DOWN)]:
        got = env.step(action)
        assert (got.observation, got.reward, got.done) == (obs, 0.0, False)
    got = env.step("9")  # turn 6: reward 0.5 ** 5
    assert (got.reward, got.done, got.info["success"]) == (0.5 ** 5, True, True)


def test_best_and_habit_turns_by_hand():
    # n = 7, binary search: 4 first; 2 or 6 second; 1, 3, 5, 7 third
    assert [turns_to_solve(7, s) for s in range(1, 8)] == [3, 2, 3, 1, 3, 2, 3]
    # the habit (a quarter of the way): 2 first; then 1 | 4 (of 3..7); then 3 | 5 (of 5..7), 6 (of 6..7), 7
    habit = habit_guess
    assert [habit(1, 7), habit(3, 7), habit(5, 7), habit(6, 7)] == [2, 4, 5, 6]
    assert [turns_to_solve(7, s, habit) for s in range(1, 8)] == [2, 1, 3, 2, 3, 4, 5]
    assert turns_to_solve(7, 7, habit, max_turns=4) is None
    assert best_guess(1, 15) == 8 and best_guess(9, 15) == 12
    assert best_policy_stats(15, 5) == {"success": 1.0, "turns_mean": 49 / 15, "turns_worst": 4.0}
    assert best_policy_stats(15, 3) == {"success": 7 / 15, "turns_mean": 17 / 7, "turns_worst": 4.0}


def test_tasks_are_procedural_and_seeded():
    env = GuessNumber(n=15)
    assert [t.reference for t in env.tasks("eval", 3, 0)] == [str(s) for s in range(1, 16)]
    train = env.tasks("train", 50, 0)
    assert len(train) == 50 and all(1 <= int(t.reference) <= 15 for t in train)
    assert [t.reference for t in env.tasks("train", 50, 0)] == [t.reference for t in train]
    assert [t.reference for t in env.tasks("train", 50, 1)] != [t.reference for t in train]
    assert len({t.uid for t in train}) == 50


def test_warm_start_player_stays_consistent_with_the_feedback():
    pairs = GuessNumber(n=15, habit=0.5).sft_pairs(seed=0, max_turns=5)
    first = next(pairs)
    assert first[0] == "guess 1-15\n"
    for context, action in (next(pairs) for _ in range(300)):
        lo, hi = feasible(context)
        assert lo <= int(action) <= hi
    # a player whose habit is the midpoint, always: binary search
    pairs = GuessNumber(n=15, habit=1.0, habit_at=0.5).sft_pairs(seed=1, max_turns=5)
    assert all(int(action) == best_guess(*feasible(context)) for context, action in (next(pairs) for _ in range(50)))


def feasible(context: str) -> tuple[int, int]:
    lo, hi = 1, 15
    for line in context.splitlines()[1:]:
        g, word = line.split()
        lo, hi = (int(g) + 1, hi) if word == "up" else (lo, int(g) - 1)
    return lo, hi


def test_binary_search_through_the_loop_scores_the_best_policy(tokenizer):
    cfg = GuessKnobs()
    env = GuessNumber()
    tasks = env.tasks("eval", 0, 0)
    fmt = PlainFormat(lambda s: tokenizer.encode(s, add_special_tokens=False), (tokenizer.eos_token_id,))
    engine = binary_search_engine(tokenizer, 15)
    collector = EpisodeCollector(engine, GuessNumber, cfg, tasks, fmt, SamplingParams(max_new_tokens=4))
    m = collector.evaluate({"guess": tasks}, SamplingParams(temperature=0.0, max_new_tokens=4))
    best = best_policy_stats(15, 5)
    assert m["eval/guess/success"] == m["eval/mean/pass@1"] == best["success"]
    assert m["eval/guess/turns_mean"] == m["eval/guess/solve_turns"] == best["turns_mean"]
    turns = [turns_to_solve(15, s) for s in range(1, 16)]
    assert m["eval/guess/return_mean"] == sum(0.9 ** (t - 1) for t in turns) / 15
    # the transcript of the module docstring: secret 9
    loop = AgentLoop(engine, GuessNumber, fmt, cfg)
    (ep,) = loop.run([tasks[8]], [8], SamplingParams(max_new_tokens=4))
    assert tokenizer.decode(ep.turns[-1].context_ids) == "guess 1-15\n8 up\n12 down\n10 down\n"
    assert [t.text for t in ep.turns] == ["8", "12", "10", "9"]


def test_env_factory_passes_only_the_envs_own_knobs():
    class Cfg(GuessKnobs):
        type: str = "guess"

    env = env_factory(Cfg(n=7, max_turns=2, habit=0.0))()
    assert isinstance(env, GuessNumber) and (env.n, env.habit) == (7, 0.0)
    rng = random.Random(0)
    assert all(1 <= int(t.reference) <= 7 for t in env.tasks("train", 20, rng.randint(0, 9)))

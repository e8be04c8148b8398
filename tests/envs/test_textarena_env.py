"""TextArena single-player games as multi-turn environments (``[env] type = "textarena"``): the game's own prompt,
feedback and reward through the agent loop, its knobs checked at load, and a game that raises or returns a bad
reward counted by kind and dropped."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

pytest.importorskip("textarena", reason="needs the textarena extra (pip install -e '.[textarena]')")

from rollwise.config import ConfigError, load_config  # noqa: E402
from rollwise.envs.base import EnvKnobs  # noqa: E402
from rollwise.envs.collector import EpisodeCollector  # noqa: E402
from rollwise.envs.loop import AgentLoop, PlainFormat  # noqa: E402
from rollwise.envs.textarena_env import TextArenaGame, TextArenaKnobs  # noqa: E402
from rollwise.generation import SamplingParams  # noqa: E402
from rollwise.generation.scripted import ScriptedEngine  # noqa: E402
from rollwise.sampler_tables import build_pipeline  # noqa: E402
from rollwise.sampling import Budget  # noqa: E402
from rollwise.types import Prompt  # noqa: E402

SMOKE = Path(__file__).resolve().parents[2] / "configs" / "smoke.toml"
PARAMS = SamplingParams(max_new_tokens=8, seed=0)
LIMITS = TextArenaKnobs(max_tokens=4096)


def seed_task(seed: int) -> Prompt:
    return Prompt(f"s{seed}", "", str(seed), {"seed": seed})


def fmt(tokenizer) -> PlainFormat:
    return PlainFormat(lambda s: tokenizer.encode(s, add_special_tokens=False), (tokenizer.eos_token_id,))


def engine_from(tokenizer, policy) -> ScriptedEngine:
    """An engine whose action is ``policy(context text)``, followed by EOS."""
    eos = tokenizer.eos_token_id

    def script(ids, j, call):
        toks = tokenizer.encode(policy(tokenizer.decode(ids)), add_special_tokens=False) + [eos]
        return toks, [-0.5] * len(toks), "stop"

    return ScriptedEngine(script, tokenizer=tokenizer)


def binary_search(text: str) -> str:
    """Binary search over 1..20 from the game's feedback; the bare number (the adapter adds the brackets)."""
    lo, hi = 1, 20
    for g, hint in re.findall(r"\[?(\d+)\]?The target number is (higher|lower)", text):
        lo, hi = (int(g) + 1, hi) if hint == "higher" else (lo, int(g) - 1)
    return str((lo + hi) // 2)


def test_guess_the_number_episode_through_the_loop(tokenizer):
    # seed 3's secret is 8: binary search guesses 10 (lower), 5 (higher), 7 (higher), 8
    loop = AgentLoop(engine_from(tokenizer, binary_search), lambda: TextArenaGame("GuessTheNumber-v0"),
                     fmt(tokenizer), LIMITS)
    (ep,) = loop.run([seed_task(3)], [0], PARAMS)
    assert [t.text for t in ep.turns] == ["10", "5", "7", "8"]
    assert [t.reward for t in ep.turns] == [0, 0, 0, 1]
    assert (ep.finish, ep.success, ep.episode_return, ep.fault) == ("done", True, 1.0, None)
    last = tokenizer.decode(ep.turns[-1].context_ids)
    assert last.startswith("You are Player 0. You are playing Guess The Number.\n")
    assert last.endswith("Enter your guess.\n10The target number is lower.\n5The target number is higher.\n"
                         "7The target number is higher.\n")


def test_tower_of_hanoi_solved_in_seven_moves():
    moves = ["A C", "A B", "C B", "A C", "B A", "B C", "A C"]  # the optimal solution for 3 disks
    env = TextArenaGame("TowerOfHanoi-v0")
    first = env.reset(seed_task(0))
    assert first.endswith("Current Board: \nA: [3, 2, 1]\nB: []\nC: []\n.\n")
    results = [env.step(m) for m in moves]
    assert results[0].observation == "You moved disk 1 from A to C.\nCurrent Board: \nA: [3, 2]\nB: []\nC: [1]\n.\n"
    assert [r.done for r in results] == [False] * 6 + [True]
    assert (results[-1].reward, results[-1].info["success"]) == (1, True)


def test_partial_credit_and_the_turn_limit():
    env = TextArenaGame("GuessTheNumber-v0", {"max_turns": 2})
    env.reset(seed_task(3))  # secret 8
    assert [env.step(a).done for a in ("[1]", "[20]")] == [False, False]  # TextArena's limit lets 3 guesses in
    last = env.step("[19]")  # the game's partial credit at its turn limit: 1 - |19 - 8| / (20 - 1)
    assert last.done and last.reward == pytest.approx(1 - 11 / 19) and last.info["success"] is False


def test_the_callers_random_state_is_left_alone():
    random.seed(1234)
    expected = random.random()
    random.seed(1234)
    env = TextArenaGame()
    env.reset(seed_task(3))
    env.step("[10]")
    assert random.random() == expected


def test_tasks_are_seeds_from_a_stream_per_split():
    env = TextArenaGame()
    train, again, held = env.tasks("train", 4, 0), env.tasks("train", 4, 0), env.tasks("eval", 4, 0)
    assert [t.meta["seed"] for t in train] == [t.meta["seed"] for t in again]
    assert not {t.meta["seed"] for t in train} & {t.meta["seed"] for t in held}
    assert [t.uid for t in train] == [f"ta-GuessTheNumber-v0-train-{i}" for i in range(4)]


def test_warm_start_pairs_are_the_games_own_transcript():
    pairs = TextArenaGame().sft_pairs(seed=0, max_turns=3)
    (c0, a0), (c1, _) = next(pairs), next(pairs)  # seed 0: the first guess is wrong
    assert c0.endswith("Enter your guess.\n") and re.fullmatch(r"\[\d+\]", a0)
    assert c1.startswith(c0 + a0) and re.search(r"The target number is (higher|lower)\.\n$", c1)
    with pytest.raises(ValueError, match="no scripted player"):
        next(TextArenaGame("TowerOfHanoi-v0").sft_pairs(0, 3))


@pytest.mark.parametrize("override,message", [
    ("--env.game=GuessTheNumbr-v0", "env.game: unknown textarena game 'GuessTheNumbr-v0'; did you mean "
                                    "'GuessTheNumber-v0'"),
    ("--env.options={max_numbr=5}", "takes no ['max_numbr']"),
    ("--env.timeout_s=1e300", "env.timeout_s"),
])
def test_knobs_are_checked_at_load(override, message):
    assert load_config(SMOKE, ["--env.type=textarena", "--env.options={max_number=9}"]).env.options == \
        {"max_number": 9}
    with pytest.raises(ConfigError) as err:
        load_config(SMOKE, ["--env.type=textarena", override])
    assert message in str(err.value)


class Broken:
    """A TextArena-shaped game whose step or close misbehaves as named."""

    def __init__(self, how: str) -> None:
        self.how = how

    def reset(self, num_players, seed=None):
        pass

    def get_observation(self):
        return 0, [(-1, "go", None)]

    def step(self, action):
        if self.how == "raise":
            raise RuntimeError("game crashed")
        return True, {}

    def close(self):
        rewards = {"nan": {0: float("nan")}, "missing": {}, "none": None, "text": {0: "1"},
                   "too_big": {0: 5}, "inf": {0: float("-inf")}}[self.how]
        return rewards, {0: {}}


@pytest.mark.parametrize("how,kind", [("raise", "error"), ("nan", "nan"), ("missing", "not_a_number"),
                                      ("none", "not_a_number"), ("text", "not_a_number"),
                                      ("too_big", "out_of_range"), ("inf", "inf")])
def test_a_misbehaving_game_is_counted_and_dropped(tokenizer, how, kind):
    def make():
        env = TextArenaGame()
        if how_for[0] == "bad":
            env.env = Broken(how)
        how_for.append(how_for.pop(0))
        return env

    how_for = ["ok", "bad"]  # episodes alternate: a real game, a broken one
    pool = [seed_task(3), seed_task(3)]
    collector = EpisodeCollector(engine_from(tokenizer, binary_search), make, TextArenaKnobs(max_tokens=4096),
                                 pool, fmt(tokenizer), PARAMS)
    pipe = build_pipeline(preset="uniform", pool_size=2, group_size=2, batch_prompts=2, total_steps=2, seed=0)
    out = collector.collect(pipe, 0, Budget(4), seed=0, version=0)
    m = collector.metrics()
    assert (m[f"env/faults_{kind}"], m["env/episodes"], m["env/success"]) == (2, 4, 1.0)
    assert sum(len(v) for v in out.rollouts.values()) == 2 * 4  # the two real episodes' 4 turns each
    assert out.discarded_rollouts == 2


def test_default_limits_are_the_shared_ones_with_room_for_the_games_prompts():
    k = TextArenaKnobs()
    assert isinstance(k, EnvKnobs) and (k.max_turns, k.max_tokens, k.reward_range) == (10, 1024, (-1.0, 1.0))


@pytest.mark.slow
def test_a_textarena_game_trains(smoke_cfg):
    from rollwise.logging import read_metrics
    from rollwise.train.trainer import Trainer

    t = Trainer(smoke_cfg("--env.type=textarena", "--env.max_turns=2", "--task.train_size=4", "--task.eval_size=1",
                          "--warmstart.enabled=false", "--trainer.steps=1", "--trainer.eval_every=0",
                          "--trainer.checkpoint_every=0", "--sampler.batch_prompts=2", "--sampler.group_size=2",
                          "--run.threads=1", "--generation.max_new_tokens=4"))
    try:
        t.train()
    finally:
        t.close()
    (row,) = [r for r in read_metrics(t.run_dir) if "env/episodes" in r]
    assert (row["env/episodes"], sum(row[f"env/faults_{k}"] for k in ("error", "timeout", "malformed"))) == (4, 0)
    assert 1 <= row["env/turns_mean"] <= 2

"""ARRoL (issue 17): balanced survivors from hand-built hidden states with a known head ranking, random pruning to
n before warm-up, the pruned rows' tokens counted, head training lowers BCE on a separable set, state round
trip (head weights and Adam state), CLI smoke."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from rollwise.generation import STRATEGIES, SamplingParams
from rollwise.generation.arrol import ArrolStrategy, QualityHead, compute_auc, select_balanced
from rollwise.generation.scripted import ScriptedEngine
from rollwise.logging import read_metrics

ROOT = Path(__file__).resolve().parents[2]
P = SamplingParams(max_new_tokens=16, seed=3)


def script(prompt, j, call):
    """Row j of prompt p: 6 tokens 100p + j (rows 6 and 7 of a prompt finish early, after 2 tokens)."""
    n = 2 if j >= 6 else 6
    return [100 * prompt[0] + j] * n, [-0.5] * n, "stop"


def quality(tokens, position, k):
    """The hidden state names the row's quality: [j, 1, 0, 0] for row j (top-k and entropy unused)."""
    return [tokens[position]] * k, [0.0] * k, 0.0, [float(tokens[position] % 100), 1.0, 0.0, 0.0]


def ranked(**knobs) -> ArrolStrategy:
    """A strategy whose head scores sigmoid(j - 3.5): the row ranking is j, and warm-up is over."""
    s = ArrolStrategy(**({"every": 3, "warmup": 0} | knobs))
    s.head = QualityHead(4)
    with torch.no_grad():
        s.head.net.weight.copy_(torch.tensor([[1.0, 0.0, 0.0, 0.0]]))
        s.head.net.bias.fill_(-3.5)
    return s


def test_select_balanced_by_hand():
    scores = [0.9, 0.1, 0.5, 0.7, 0.3, 0.6]  # ranking: 0, 3, 5, 2, 4, 1
    assert select_balanced(scores, 4, 0.5) == [0, 1, 3, 4]  # top 2 (0, 3) + bottom 2 (4, 1)
    assert select_balanced(scores, 4, 0.75) == [0, 1, 3, 5]  # top 3 + bottom 1
    assert select_balanced(scores, 3, 0.5) == [0, 1, 3]  # round(1.5) = 2 (half up): top 2 + bottom 1
    assert select_balanced(scores, 2, 0.0) == [1, 4] and select_balanced(scores, 9, 0.5) == list(range(6))
    assert compute_auc([0.9, 0.8, 0.1, 0.8], [True, True, False, False]) == pytest.approx(0.875)


@pytest.mark.parametrize(("rho", "kept"), [(0.5, [0, 1, 6, 7]), (0.75, [0, 5, 6, 7]), (0.25, [0, 1, 2, 7])])
def test_trained_head_keeps_the_top_and_bottom_by_score(rho, kept):
    """n = 4 of N0 = 8 per prompt at the checkpoint after 3 tokens. Rows 6 and 7 finished at 2 tokens: they are
    candidates with their last state's score (the state after token 1). The rest of the live rows are pruned."""
    engine = ScriptedEngine(script, step_fn=quality)
    s = ranked(rho=rho)
    res = s.generate(engine, [0, 1], [[1], [2]], [4, 4], P, step=0)
    for p, cs in zip((1, 2), res.completions):
        assert [c.token_ids[0] - 100 * p for c in cs] == kept
        assert all(c.finish_reason == "stop" and len(c.token_ids) == (2 if c.token_ids[0] % 100 >= 6 else 6)
                   for c in cs)
    assert engine.history[0].counts == [8, 8]
    m = s.metrics()
    live_cut, done_cut = 6 - sum(k < 6 for k in kept), 2 - sum(k >= 6 for k in kept)  # per prompt
    # a live row is cut at 3 tokens; a finished row that is dropped had its 2: both are counted, never returned
    assert (m["arrol_pruned"], m["arrol_pruned_tokens"]) == (8, 2 * (3 * live_cut + 2 * done_cut))
    assert m["arrol_generated"] == 16 and m["arrol_random_prompts"] == 0


def test_before_warmup_prunes_at_random_to_n():
    engine = ScriptedEngine(script, step_fn=quality)
    s = ArrolStrategy(every=3, warmup=10, over_sample=1.5)  # no head yet
    res = s.generate(engine, [0, 1, 2], [[1], [2], [3]], [4, 4, 2], P, step=0)
    assert engine.history[0].counts == [6, 6, 3]
    assert [len(cs) for cs in res.completions] == [4, 4, 2]
    assert all(c.finish_reason == "stop" and len(c.token_ids) == 6 for cs in res.completions for c in cs)
    assert s.metrics()["arrol_random_prompts"] == 3 and s.metrics()["arrol_pruned"] == 2 + 2 + 1
    again = ArrolStrategy(every=3, warmup=10, over_sample=1.5).generate(
        ScriptedEngine(script, step_fn=quality), [0, 1, 2], [[1], [2], [3]], [4, 4, 2], P, step=0)
    assert [[c.token_ids for c in cs] for cs in again.completions] == [[c.token_ids for c in cs]
                                                                        for cs in res.completions]  # seeded


def test_prompts_that_reach_no_checkpoint_are_cut_after_generation():
    engine = ScriptedEngine(script, step_fn=quality)
    s = ranked(every=50)
    (cs,) = s.generate(engine, [0], [[1]], [4], P, step=0).completions
    assert [c.token_ids[0] - 100 for c in cs] == [0, 1, 6, 7]  # scored on their last states: ranking j
    assert s.metrics()["arrol_pruned_tokens"] == 4 * 6  # rows 2..5, generated in full


def test_head_training_reduces_bce_on_a_separable_set():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 8, generator=g)
    y = x[:, 0] + 0.5 * x[:, 1] > 0
    head = QualityHead(8, hidden=0, lr=1e-2)
    before = head.bce(x, y)
    after = head.fit(x, y, steps=100)
    assert after < before * 0.6
    mlp = QualityHead(8, hidden=16, lr=1e-2)
    before = mlp.bce(x, y)
    assert mlp.fit(x, y, steps=100) < before * 0.6


def test_observe_trains_the_head_on_survivors_and_logs_auc():
    """Reward 1 for rows j >= 4: the states [j, 1, 0, 0] separate them; after a few steps the head ranks them."""
    s = ArrolStrategy(every=3, warmup=4, lr=0.05, head_steps=50)
    losses = []
    for step in range(4):
        engine = ScriptedEngine(script, step_fn=quality)
        res = s.generate(engine, [0, 1], [[1], [2]], [4, 4], SamplingParams(max_new_tokens=16, seed=step), step=step)
        flat = [c for cs in res.completions for c in cs]
        s.observe([0] * len(flat), flat, [float(c.token_ids[0] % 100 >= 4) for c in flat])
        losses.append(s.metrics()["arrol_head_loss"])
    m = s.metrics()
    assert m["arrol_head_seen"] == 32 and m["arrol_head_auc"] == 1.0
    assert losses[-1] < losses[0]
    assert m["arrol_survivor_positive_share"] == 0.5  # balanced: 2 of 4 survivors per prompt are positive


def test_state_dict_round_trip_includes_the_head():
    s = ArrolStrategy(every=3, warmup=0)
    engine = ScriptedEngine(script, step_fn=quality)
    res = s.generate(engine, [0], [[1]], [4], P, step=0)
    s.observe([0] * 4, res.completions[0], [1.0, 0.0, 1.0, 0.0])
    state = pickle.loads(pickle.dumps(s.state_dict()))
    restored = ArrolStrategy(every=3, warmup=0)
    restored.load_state_dict(state)
    x = torch.randn(5, 4)
    assert restored.head.score(x) == s.head.score(x) and restored.seen == s.seen == 4
    outs = []
    for strat in (s, restored):
        got = strat.generate(ScriptedEngine(script, step_fn=quality), [0], [[1]], [4], P, step=1)
        strat.observe([0] * 4, got.completions[0], [1.0, 1.0, 0.0, 0.0])
        outs.append(([c.token_ids for c in got.completions[0]], strat.head.score(x)))
    assert outs[0] == outs[1]
    assert STRATEGIES.get("arrol") is ArrolStrategy


def test_cli_train_with_arrol(tmp_path, warm_cache, capsys):
    from rollwise.cli import app

    with pytest.raises(SystemExit) as info:
        app(["train", str(ROOT / "configs" / "smoke.toml"), f"--run.out_dir={tmp_path}", "--run.threads=1",
             f"--warmstart.cache_dir={warm_cache}", "--generation.strategy.type=arrol",
             "--generation.strategy.every=2", "--generation.strategy.warmup=24", "--trainer.steps=3",
             "--warmstart.steps=60"])
    assert int(info.value.code or 0) == 0, capsys.readouterr().err
    rows = [r for r in read_metrics(tmp_path / "smoke") if "generation/arrol_generated" in r]
    assert len(rows) == 3 and all(r["generation/arrol_generated"] == 48 for r in rows)
    assert rows[0]["generation/arrol_random_prompts"] == 6 and rows[-1]["generation/arrol_head_seen"] > 0
    assert all(r["sampler/rollouts_per_prompt_max"] == 4 for r in rows)

"""ROSE rollouts (generation/rose.py): the branch choice at the highest score, epsilon restarts under a fixed seed,
prefixes keeping their stored logprobs, tree meta, the embedding source, the HF engine (groups of n whose every
behaviour logprob is a teacher-forced log pi_T), and a 2-step ``rollwise train`` smoke run with ``rose_segments``."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from rollwise.cli import app
from rollwise.generation import STRATEGIES, SamplingParams
from rollwise.generation.hf import HFEngine
from rollwise.generation.rose import RoseStrategy
from rollwise.generation.scripted import ScriptedEngine
from rollwise.train.model import build_char_tokenizer, build_tiny_model
from rollwise.train.policy import build_seq_batch, compute_logprobs

ROOT = Path(__file__).resolve().parents[2]
PATH = [10, 11, 12, 13, 14, 15]


def engine(peak: int = 3) -> ScriptedEngine:
    """Every row's uninterrupted completion is PATH with logprob -(call + 1) per token; the top-2 at position ``peak``
    are (0.5, 0.5) (the highest entropy), elsewhere (0.9, 0.1)."""
    def script(prompt, j, call):
        return PATH, [-(call + 1.0)] * len(PATH), "length"

    def step_fn(tokens, pos, k):
        p = (0.5, 0.5) if pos == peak else (0.9, 0.1)
        return [tokens[pos], 99] + [-1] * (k - 2), [math.log(p[0]), math.log(p[1])] + [float("-inf")] * (k - 2), \
            0.0, [0.0] * 4

    return ScriptedEngine(script, step_fn=step_fn)


def run(s: RoseStrategy, eng, counts, seed=11):
    return s.generate(eng, list(range(len(counts))), [[1, 2]] * len(counts), counts,
                      SamplingParams(max_new_tokens=8, seed=seed), step=0).completions


def test_branches_at_the_highest_score_and_keeps_the_prefix():
    """epsilon = 0: every later iteration continues the first stored maximum (response 0, position 3): the prefix
    is its first 3 tokens with their stored (call-0) logprobs; the token at 3 is resampled."""
    s = RoseStrategy(epsilon=0.0, branch_metric="entropy")
    eng = engine()
    (group,) = run(s, eng, [3])
    assert [c.meta for c in group] == [
        {"tree": 0, "node": 0, "parent": -1, "branch_pos": 0, "prefix_len": 0},
        {"tree": 0, "node": 1, "parent": 0, "branch_pos": 3, "prefix_len": 3},
        {"tree": 0, "node": 2, "parent": 0, "branch_pos": 3, "prefix_len": 3}]
    assert group[1].logprobs == [-1.0] * 3 + [-2.0] * 3 and group[2].logprobs == [-1.0] * 3 + [-3.0] * 3
    assert [h.counts for h in eng.history] == [[1], [1], [1]]  # one response per prompt and iteration
    assert len({h.params.seed for h in eng.history}) == 3  # fresh noise per iteration
    m = s.metrics()
    assert m["rose_branched_share"] == pytest.approx(2 / 3) and m["rose_restart_share"] == 0.0
    assert m["rose_prefix_share"] == pytest.approx(6 / 18)


def test_epsilon_restarts_follow_the_seeded_draws():
    """epsilon = 0.5 with seed 11: iteration k >= 1 of each prompt restarts from the root iff its draw of
    random.Random(11) (prompts in order within an iteration) is < 0.5."""
    s = RoseStrategy(epsilon=0.5, branch_metric="entropy")
    got = run(s, engine(), [4, 3], seed=11)
    rng = random.Random(11)
    want: list[list[int]] = [[-1], [-1]]
    for it in range(1, 4):
        for i, n in enumerate([4, 3]):
            if n > it:
                want[i].append(-1 if rng.random() < 0.5 else 0)
    assert [[c.meta["parent"] for c in g] for g in got] == want
    assert -1 in want[0][1:] + want[1][1:] and 0 in want[0][1:] + want[1][1:]  # the seed exercises both
    assert got[0][0].meta["tree"] != got[1][0].meta["tree"]
    again = run(RoseStrategy(epsilon=0.5, branch_metric="entropy"), engine(), [4, 3], seed=11)
    assert [[c.meta for c in g] for g in again] == [[c.meta for c in g] for g in got]  # same seed, same tree


def test_best_is_the_first_maximum():
    assert RoseStrategy.best([[0.1, 0.7], [0.7, 0.9, 0.2], [0.9]]) == (1, 1)
    assert RoseStrategy.best([[], []]) is None


def test_cosine_scores_need_embeddings():
    """The scripted engine has no model: cosine metrics need ``strategy.embeddings``; with them, the candidate 99
    has the same direction as the path token at position 3 so F = 2 (0.25) and the peak is penalised."""
    with pytest.raises(ValueError, match="embeddings"):
        run(RoseStrategy(), engine(), [2])
    s = RoseStrategy(epsilon=0.0)
    s.embeddings = torch.eye(100)
    s.embeddings[99] = s.embeddings[13]  # cosine(13, 99) = 1 at the peak; elsewhere 99 vs the path token: 0
    (group,) = run(s, engine(), [2])
    # peak score -F H = -0.5 ln 2 < 0; elsewhere F = 0 so every other position scores 0: the first (0, 0) wins
    assert group[1].meta["parent"] == 0 and group[1].meta["branch_pos"] == 0


def test_registered_with_typed_knobs():
    assert STRATEGIES.get("rose") is RoseStrategy
    knobs = STRATEGIES.config("rose")()
    assert (knobs.epsilon, knobs.branch_metric, knobs.topk) == (0.5, "cosine-entropy", 20)
    with pytest.raises(ValueError):
        STRATEGIES.config("rose")(branch_metric="semantic")


def test_hf_groups_share_prefixes_and_carry_policy_logprobs():
    """On the HF engine (embeddings from its model, cosine-entropy): each branched response starts with its
    parent's first branch_pos tokens, and every behaviour logprob equals a teacher-forced log pi_T."""
    tok = build_char_tokenizer()
    model = build_tiny_model(tok, layers=2, hidden=32, heads=2, kv_heads=1, intermediate=64, seed=0)
    eng = HFEngine(model, tok, batch_size=8)
    prompts = [tok.encode("12+34="), tok.encode("7")]
    s = RoseStrategy(epsilon=0.25)
    got = s.generate(eng, [0, 1], prompts, [4, 3], SamplingParams(temperature=0.8, max_new_tokens=10, seed=2),
                     step=0).completions
    assert [len(g) for g in got] == [4, 3]
    for g in got:
        for c in g:
            p = c.meta["parent"]
            if p >= 0:
                assert c.token_ids[: c.meta["branch_pos"]] == g[p].token_ids[: c.meta["branch_pos"]]
                assert c.logprobs[: c.prefix_len] == g[p].logprobs[: c.prefix_len]
    assert any(c.meta["parent"] >= 0 for g in got for c in g)
    flat = [(p, c) for p, g in zip(prompts, got) for c in g]
    seq = build_seq_batch([p for p, _ in flat], [c.token_ids for _, c in flat], tok.pad_token_id)
    with torch.no_grad():
        lp, _ = compute_logprobs(model, seq, 0.8)
    for i, (_, c) in enumerate(flat):
        torch.testing.assert_close(lp[i, : len(c.token_ids)], torch.tensor(c.logprobs), atol=1e-4, rtol=0)


def test_cli_rose_with_segment_advantages(tmp_path, warm_cache):
    res = CliRunner().invoke(app, ["train", str(ROOT / "configs" / "smoke.toml"), "--trainer.steps=2",
                                   "--run.threads=1", "--trainer.eval_every=0", "--task.eval_size=4",
                                   f"--run.out_dir={tmp_path}", f"--warmstart.cache_dir={warm_cache}",
                                   "--run.name=rose", "--generation.strategy=rose",
                                   '--algo.shaping=["rose_segments"]'])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in (tmp_path / "rose" / "metrics.jsonl").read_text().splitlines()]
    assert all("generation/rose_branched_share" in r and "loss/rose_adv_abs_mean" in r for r in rows[1:])

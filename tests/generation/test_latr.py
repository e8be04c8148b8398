"""LATR rollouts (generation/latr.py): the probability filter and the lookahead-pruning scores on hand-computed
cases, branch / capacity / prune / full-tree decisions on a scripted engine with constructed top-2 probabilities,
the tree share schedule, behaviour logprobs of the tree tokens on the HF engine (log pi_T, teacher-forced), and a
2-step ``rollwise train`` smoke run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from rollwise.cli import app
from rollwise.generation import STRATEGIES, SamplingParams
from rollwise.generation.hf import HFEngine
from rollwise.generation.latr import (
    GREEDY_TOP_P,
    LatrStrategy,
    compute_edit_distance,
    compute_rouge_l,
    compute_suffix_match,
)
from rollwise.generation.scripted import ScriptedEngine
from rollwise.train.model import build_char_tokenizer, build_tiny_model
from rollwise.train.policy import build_seq_batch, compute_logprobs

ROOT = Path(__file__).resolve().parents[2]
PATH = [10, 11, 12, 13, 14, 15, 16, 17]  # the scripted greedy path of every prompt


def engine(branch_at: dict[int, tuple[float, float]]) -> ScriptedEngine:
    """Scripted greedy path PATH; at position t in ``branch_at`` the top-2 are (path token, 90 + t) with the given
    probabilities, elsewhere (path token, 80) with 0.9 / 0.05 (never a branch)."""
    def script(prompt, j, call):
        return PATH, [math.log(0.5)] * len(PATH), "length"

    def step_fn(tokens, pos, k):
        p1, p2 = branch_at.get(pos, (0.9, 0.05))
        ids = [tokens[pos], 90 + pos if pos in branch_at else 80] + [-1] * (k - 2)
        return ids, [math.log(p1), math.log(p2)] + [float("-inf")] * (k - 2), 0.0, [0.0] * 4

    return ScriptedEngine(script, step_fn=step_fn)


def run(strategy: LatrStrategy, eng: ScriptedEngine, counts: list[int], step: int = 0, M: int = 8):
    res = strategy.generate(eng, list(range(len(counts))), [[1, 2]] * len(counts), counts,
                            SamplingParams(temperature=1.0, max_new_tokens=M, seed=3), step=step)
    return res.completions


def test_probability_filter_at_the_thresholds():
    s = LatrStrategy(tau_abs=0.125, tau_rel=0.25)
    assert s.branches_on(0.5, 0.375)  # 0.375 > 0.125 and 0.125 < 0.25
    assert not s.branches_on(0.5, 0.125)  # p2 = tau_abs: strict
    assert not s.branches_on(0.625, 0.375)  # p1 - p2 = 0.25 = tau_rel: strict
    assert not s.branches_on(0.75, 0.125 + 2**-10)  # p2 passes, the gap 0.623 does not
    defaults = LatrStrategy()
    assert (defaults.tau_abs, defaults.tau_rel, defaults.tau_ed, defaults.tau_sm, defaults.tau_rl) == (
        0.15, 0.25, None, 0.2, 0.5)  # LATR's math script


def test_similarity_scores_by_hand():
    assert compute_edit_distance([1, 2, 3, 4], [1, 5, 3, 6]) == 2
    assert compute_edit_distance([1, 2, 3], [2, 3, 4]) == 2  # delete 1, insert 4
    assert compute_suffix_match([5, 1, 2, 3], [6, 1, 2, 3]) == 0.75  # common suffix 1 2 3
    # no common suffix, but b's suffix "9 1 2" occurs inside a (LATR searches both ways, anywhere): 3/5
    assert compute_suffix_match([9, 1, 2, 3, 8], [7, 7, 9, 1, 2]) == 0.6
    assert compute_suffix_match([1, 2, 3], [4, 5, 6]) == 0.0
    assert compute_suffix_match([1, 2, 3, 9], [7, 1, 2, 3]) == 0.75
    assert compute_rouge_l([1, 2, 3, 4], [2, 4, 1, 3]) == 0.5  # LCS 2: precision = recall = 1/2
    assert compute_rouge_l([1, 2], [3, 4]) == 0.0


def test_prune_decisions_on_constructed_windows():
    parent = [11, 12, 13, 14]
    s = LatrStrategy()  # suffix match > 0.2 or ROUGE-L > 0.5
    assert s.prunes([90, 12, 13, 14], parent)  # same continuation after the branch token: suffix 3/4
    assert not s.prunes([90, 40, 41, 42], parent)  # diverged: suffix 0, ROUGE-L 0
    assert s.prunes([90, 40, 41, 14], parent)  # suffix 1/4 = 0.25 > 0.2
    assert not LatrStrategy(tau_sm=0.25).prunes([90, 40, 41, 14], parent)  # 0.25 is not > 0.25; ROUGE-L 0.25
    ed = LatrStrategy(tau_ed=0.4, tau_sm=None, tau_rl=None)
    assert ed.prunes([90, 12, 13, 14], parent)  # edit distance 1 / 4 < 0.4
    assert not ed.prunes([90, 40, 13, 14], parent)  # 2 / 4 = 0.5


def test_spawn_and_capacity_on_constructed_top2():
    """kt_n = 3: position 1 spawns (0.5 / 0.4); at position 4 both branches qualify but one slot is left, so only the
    first branch spawns; position 6 (p2 = 0.1 <= tau_abs) never does."""
    eng = engine({1: (0.5, 0.4), 4: (0.5, 0.4), 6: (0.5, 0.1)})
    s = LatrStrategy(eta=1.0, lookahead=[50], max_tree_tokens=8)  # the tree runs to max_new_tokens
    (group,) = run(s, eng, [3])
    assert [c.token_ids for c in group] == [PATH, [10, 91, *PATH[2:]], [*PATH[:4], 94, *PATH[5:]]]
    assert [(c.meta["parent"], c.meta["branch_pos"], c.meta["latr"]) for c in group] == [
        (-1, 0, "tree"), (0, 1, "tree"), (0, 4, "tree")]
    assert [c.meta["node"] for c in group] == [0, 1, 2] and len({c.meta["tree"] for c in group}) == 1
    m = s.metrics()
    assert m["latr_spawned"] == 2 and m["latr_pruned"] == 0 and m["latr_tree_share"] == 1.0
    assert m["latr_distinct_per_group"] == 3
    tree_calls = [h for h in eng.history if h.params.top_p == GREEDY_TOP_P]
    assert len(tree_calls) == m["latr_tree_calls"] == 3  # restart after each spawning step
    assert all(h.params.temperature == 1.0 for h in eng.history)  # greedy via top-p, logprobs at T
    assert eng.history[-1].params.top_p == 1.0  # the completion samples with the run's top-p


def test_lookahead_prune_frees_capacity():
    """The branch born at position 1 repeats its parent's continuation, so at age 3 (window 91 12 13 vs 11 12 13,
    suffix match 2/3 > 0.2) it is pruned; its slot goes to the branch at position 4, pruned the same way at age 3
    (step 6); the root's slot left empty gets an ordinary sample (its first branch has stopped). A branch at
    position 5 reaches age 3 only at the last token (the row has finished, nothing to prune) and is kept."""
    eng = engine({1: (0.5, 0.4), 4: (0.5, 0.4)})
    s = LatrStrategy(eta=1.0, lookahead=[3], max_tree_tokens=8)
    (group,) = run(s, eng, [2])
    assert [c.token_ids for c in group] == [PATH, PATH] and [c.meta["latr"] for c in group] == ["tree", "sample"]
    m = s.metrics()
    assert m["latr_spawned"] == 2 and m["latr_pruned"] == 2
    s = LatrStrategy(eta=1.0, lookahead=[3], max_tree_tokens=8)
    (group,) = run(s, engine({1: (0.5, 0.4), 5: (0.5, 0.4)}), [2])
    assert [c.token_ids for c in group] == [PATH, [*PATH[:5], 95, *PATH[6:]]]
    m = s.metrics()
    assert m["latr_spawned"] == 2 and m["latr_pruned"] == 1


def test_fill_mix_and_schedule():
    """eta from the schedule: step 150 -> 0.75, so 3 of 4 samples come from the tree (no branch point: the root,
    returned after max_tree_tokens = 4, plus two copies of it completed by sampling) and 1 is an ordinary sample.
    When the root branch has already stopped, its empty slots get ordinary samples instead of copies."""
    s = LatrStrategy(lookahead=[50], max_tree_tokens=4)
    assert [s.eta_at(t) for t in (0, 99, 100, 250, 1000)] == [1.0, 1.0, 0.75, 0.5, 0.25]
    eng = engine({})
    (group,) = run(s, eng, [4], step=150)
    assert [c.meta["latr"] for c in group] == ["tree", "fill", "fill", "sample"]
    assert [(c.meta["parent"], c.meta["branch_pos"], c.prefix_len) for c in group] == [
        (-1, 0, 4), (0, 4, 4), (0, 4, 4), (-1, 0, 0)]
    assert all(c.token_ids == PATH for c in group)
    assert s.metrics()["latr_tree_share"] == 0.75
    s = LatrStrategy(lookahead=[50], max_tree_tokens=8)  # the tree decodes the root to max_new_tokens: stopped
    (group,) = run(s, engine({}), [4], step=150)
    assert [c.meta["latr"] for c in group] == ["tree", "sample", "sample", "sample"]
    assert s.metrics()["latr_tree_share"] == 0.25
    assert LatrStrategy(eta=0.0).eta_at(0) == 0.0


def test_full_tree_stops_early_and_samples_the_rest():
    """kt_n = 2 filled at position 1; with lookahead [2] every branch is older than 2 after step 3, so the tree
    returns at step 4 (5 tree tokens) and the sampling call completes both branches."""
    eng = engine({1: (0.5, 0.4)})
    s = LatrStrategy(eta=1.0, lookahead=[2], tau_sm=None, tau_rl=None, full_threshold_decay=0.0, max_tree_tokens=8)
    (group,) = run(s, eng, [2])
    assert [c.prefix_len for c in group] == [5, 5]
    assert [c.token_ids for c in group] == [PATH, [10, 91, *PATH[2:]]]
    assert [len(c.token_ids) for c in group] == [8, 8] and eng.history[-1].params.top_p == 1.0


def test_registered_with_typed_knobs():
    assert STRATEGIES.get("latr") is LatrStrategy
    with pytest.raises(ValueError):
        STRATEGIES.config("latr")(tau_absolute=0.1)


def test_hf_tree_tokens_carry_policy_logprobs_at_T():
    """On the HF engine at T = 0.7 with branching always on: groups of n, tree tokens greedy or forced, and every
    behaviour logprob (tree and sampled) equals a teacher-forced log pi_T of its token."""
    tok = build_char_tokenizer()
    model = build_tiny_model(tok, layers=2, hidden=32, heads=2, kv_heads=1, intermediate=64, seed=0)
    eng = HFEngine(model, tok, batch_size=8)
    prompts = [tok.encode("12+34="), tok.encode("7")]
    s = LatrStrategy(eta=0.75, tau_abs=0.0, tau_rel=1.0, lookahead=[4], tau_sm=None, tau_rl=None)
    got = s.generate(eng, [0, 1], prompts, [4, 4], SamplingParams(temperature=0.7, max_new_tokens=10, seed=1),
                     step=0).completions
    assert [len(g) for g in got] == [4, 4]
    assert [[c.meta["latr"] for c in g] for g in got] == [["tree"] * 3 + ["sample"]] * 2
    assert s.metrics()["latr_spawned"] == 4
    flat = [(p, c) for p, g in zip(prompts, got) for c in g]
    seq = build_seq_batch([p for p, _ in flat], [c.token_ids for _, c in flat], tok.pad_token_id)
    with torch.no_grad():
        lp, _ = compute_logprobs(model, seq, 0.7)
    for i, (_, c) in enumerate(flat):
        torch.testing.assert_close(lp[i, : len(c.token_ids)], torch.tensor(c.logprobs), atol=1e-4, rtol=0)


def test_cli_latr_two_steps(tmp_path, warm_cache):
    res = CliRunner().invoke(app, ["train", str(ROOT / "configs" / "smoke.toml"), "--trainer.steps=2",
                                   "--run.threads=1", "--trainer.eval_every=0", "--task.eval_size=4",
                                   f"--run.out_dir={tmp_path}", f"--warmstart.cache_dir={warm_cache}",
                                   "--run.name=latr", "--generation.strategy=latr"])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in (tmp_path / "latr" / "metrics.jsonl").read_text().splitlines()]
    assert all(r["generation/latr_eta"] == 1.0 and "generation/latr_spawned" in r for r in rows[1:])

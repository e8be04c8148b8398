"""PivotRL and UI-S1 through the trainer on the ``chain`` environment, acted: a scripted engine plays known
actions (the expert's, a skip, a wrong total), so the pivots chosen, the rewards, the patches applied and the
rows trained are known; the tiny model then trains on them (its parameters move)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rollwise.config import load_config
from rollwise.envs.chain import expert_actions
from rollwise.envs.pivot import PivotCollector
from rollwise.envs.semi_online import SemiOnlineCollector
from rollwise.generation.scripted import ScriptedEngine

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["--model.layers=1", "--model.hidden=32", "--model.heads=2", "--model.kv_heads=1",
         "--model.intermediate=64", "--warmstart.steps=20", "--warmstart.batch_size=16", "--task.train_size=6",
         "--task.eval_size=3", "--env.max_terms=4", "--sampler.batch_prompts=3", "--sampler.group_size=4",
         "--trainer.steps=2", "--trainer.eval_every=0", "--trainer.checkpoint_every=0", "--trainer.plots=false",
         "--trainer.progress=false", "--run.threads=1", "--algo.lr=1e-2", "--trainer.eval_samples=1",
         "--algo.mini_batches=1"]


def state_of(text: str) -> tuple[list[int], int]:
    """(terms, k summed) of a chain context ``sum(a,b,..)=t1, t2, ``."""
    head, _, done = text.partition("=")
    terms = [int(x) for x in head[4:-1].split(",")]
    totals = [int(x) for x in done.split(",") if x.strip()]
    k = [sum(terms[:j]) for j in range(len(terms) + 1)].index(totals[-1]) if totals else 0
    return terms, k


def scripted(tok, kinds: tuple[str, ...], by_row: bool = False) -> ScriptedEngine:
    """Sample j plays ``kinds[j % len(kinds)]`` (``by_row``: the n-th row scripted plays ``kinds[n % len]``):
    'expert' (the next total), 'skip' (two terms at once where possible, else the expert's), 'wrong' (a total
    that is no partial sum)."""
    rows = [0]

    def script(prompt_ids, j, call):
        terms, k = state_of(tok.decode(prompt_ids, skip_special_tokens=True))
        kind = kinds[(rows[0] if by_row else j) % len(kinds)]
        rows[0] += 1
        if kind == "wrong":
            text = "999,"
        elif kind == "skip" and k + 2 < len(terms):
            text = f"{sum(terms[:k + 2])},"
        else:
            text = expert_actions(terms)[k]
        ids = tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        return ids, [-1.0] * len(ids), "stop"
    return ScriptedEngine(script, tokenizer=tok)


def trainer(tmp_path, *overrides: str):
    from rollwise.train.trainer import Trainer

    cfg = load_config(ROOT / "configs" / "chain.toml", [f"--run.out_dir={tmp_path}",
                                                        f"--warmstart.cache_dir={tmp_path.parent / 'ws'}",
                                                        *SMALL, *overrides])
    return Trainer(cfg)


def params_of(t) -> torch.Tensor:
    return torch.cat([p.detach().flatten().clone() for p in t.model.parameters()])


@pytest.mark.parametrize("reward", ["functional", "exact"])
def test_pivotrl_chooses_pivots_and_trains_them(tmp_path, reward):
    t = trainer(tmp_path, "--recipe=pivotrl", f"--agentic.reward={reward}", "--env.min_terms=6",
                "--env.max_terms=6")
    assert isinstance(t.collector, PivotCollector)
    t.collector.engine = scripted(t.tok, ("expert", "wrong", "skip", "wrong"))
    before = params_of(t)
    t.train()
    m = t.collector.metrics()
    t.close()
    cands = sum(len(p.meta["terms"]) for p in t.task.pool)
    # every candidate's K = 8 profiling samples are half right (expert / skip vs two wrong): all kept as pivots
    assert m["pivot/candidates"] == cands and m["pivot/kept"] == cands and m["pivot/profile_turns"] == 8 * cands
    assert m["pivot/groups"] == 3 and m["pivot/zero_var_share"] == 0.0
    assert m["pivot/profile_functional_not_exact"] == 2 * 4 * len(t.task.pool)  # 2 skips at turns 0-3 of 6
    assert m["pivot/run_functional_not_exact"] > 0  # skips were trained
    if reward == "functional":
        assert m["pivot/run_reward_mean"] == 0.5
    else:  # a skip earns nothing from a string match
        assert m["pivot/run_reward_mean"] < 0.5
    assert not torch.equal(before, params_of(t))


def test_pivotrl_filter_drops_uniform_candidates(tmp_path):
    t = trainer(tmp_path, "--recipe=pivotrl")
    t.collector.engine = scripted(t.tok, ("expert",))  # every sample right: no candidate has mixed outcomes
    with pytest.raises(ValueError, match="none of .* candidate turns has mixed outcomes"):
        t.train()
    t.close()
    t = trainer(tmp_path / "nofilter", "--recipe=pivotrl", "--agentic.filter=false")
    t.collector.engine = scripted(t.tok, ("expert",))
    t.train()
    m = t.collector.metrics()
    t.close()
    assert m["pivot/kept"] == m["pivot/candidates"] == m["pivot/all_correct"]
    assert m["pivot/zero_var_share"] == 1.0  # unfiltered: every trained group all-equal (no signal)


def test_uis1_patches_and_trains(tmp_path):
    got = {}
    for budget in (2, 0):
        t = trainer(tmp_path / str(budget), "--recipe=uis1", f"--agentic.patch_threshold={budget}",
                    "--agentic.std_threshold=null")
        assert isinstance(t.collector, SemiOnlineCollector)
        t.collector.engine = scripted(t.tok, ("expert", "wrong"), by_row=True)  # rows alternate right / wrong
        before = params_of(t)
        t.train()
        got[budget] = m = t.collector.metrics()
        t.close()
        assert m["uis1/rollouts"] == 12 and 0 < m["uis1/match_rate"] < 1 and m["uis1/rows_trained"] > 0
        assert not torch.equal(before, params_of(t))
    assert got[0]["uis1/patched_rollouts"] == 0 and got[2]["uis1/patched_rollouts"] > 0
    assert got[2]["uis1/patches_per_rollout"] <= 2
    # with patches a rollout goes on past its mismatches: more trained step samples per rollout
    assert got[2]["uis1/step_samples_per_rollout"] > got[0]["uis1/step_samples_per_rollout"]


def test_uis1_eval_reports_sop_beside_free_running(tmp_path):
    t = trainer(tmp_path, "--recipe=uis1")
    t.collector.engine = scripted(t.tok, ("expert",))
    t.collector.base.loop.engine = t.collector.engine
    got = t.collector.evaluate(t.task.eval_sets, t.collector.params, 2)
    t.close()
    assert got["eval/chain/sop_success"] == 1.0 and got["eval/chain/sop_progress"] == 1.0
    assert got["eval/chain/success"] == 1.0

"""Length thresholds that fit the task (issue 26 item 2) and strategy knobs that cannot crash or do nothing (issue
27): the auto rules on constructed caps, a set threshold the cap never reaches refused at load in one line naming
both knobs, declared ranges, LATR with no tree rollouts in a group, and, with the defaults on configs/smoke.toml,
ARRoL pruning while it decodes and LATR branching and pruning."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from rollwise.config import ConfigError, load_config
from rollwise.generation import SamplingParams
from rollwise.generation.arrol import ArrolStrategy, auto_every
from rollwise.generation.latr import LatrStrategy, auto_lookahead, auto_tree_tokens
from rollwise.generation.scripted import ScriptedEngine
from rollwise.logging import read_metrics
from rollwise.train.trainer import Trainer

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "configs" / "smoke.toml"  # max_new_tokens = 5, group_size = 4


@pytest.mark.parametrize(("cap", "every", "ages", "tree"), [
    (1, 1, [1], 1),
    (5, 1, [1, 2], 3),  # ages round(20 x 5/160 = 0.625) = 1, round(0.94) = 1, round(1.56) = 2; tree ceil(2.5)
    (16, 4, [2, 3, 5], 8),  # the embedded default: the values bench/strategies_default.toml set by hand
    (48, 12, [6, 9, 15], 24),  # the long-tail testbed
    (160, 40, [20, 30, 50], 80),  # LATR's own ages from 160 tokens on
    (8192, 2048, [20, 30, 50], 1024),  # LATR's math script: 1024-token tree
])
def test_auto_thresholds_scale_with_the_cap(cap, every, ages, tree):
    assert auto_every(cap) == every == ArrolStrategy().every_at(cap)
    assert auto_lookahead(cap) == ages and auto_tree_tokens(cap) == tree
    assert LatrStrategy().resolved(cap) == (ages, tree)
    assert LatrStrategy(lookahead=[4, 2], max_tree_tokens=6).resolved(cap) == ([2, 4], min(6, cap))  # set ones win
    assert ArrolStrategy(every=3).every_at(cap) == 3


@pytest.mark.parametrize(("override", "names"), [
    ('{type="arrol",every=5}', ["generation.strategy.every", "generation.max_new_tokens = 5", "auto: 1"]),
    ('{type="latr",max_tree_tokens=1024}', ["generation.strategy.max_tree_tokens", "generation.max_new_tokens"]),
    ('{type="latr",lookahead=[20,30,50]}', ["generation.strategy.lookahead", "age 50", "max_tree_tokens = 3",
                                            "generation.max_new_tokens = 5"]),
    ('{type="latr",lookahead=[2],max_tree_tokens=2}', ["generation.strategy.lookahead", "age 2"]),
    ('{type="april",check_every=5}', ["generation.strategy.check_every", "generation.max_new_tokens = 5"]),
    ('{type="latr",eta=0.1}', ["generation.strategy.eta", "sampler.group_size", "eta > 0.125"]),
    ('{type="latr",eta=0.0}', ["generation.strategy.eta", "never grows a tree"]),
    ('{type="latr",mix_ratio_schedule={0=0.1,50=0.0}}', ["generation.strategy.mix_ratio_schedule"]),
    ('{type="latr",branch_topk=100000}', ["generation.strategy.branch_topk", "less than or equal to 20"]),
    ('{type="latr",lookahead=[-3,0]}', ["generation.strategy.lookahead.0", "greater than or equal to 1"]),
    ('{type="latr",mix_ratio_schedule={0=1.5}}', ["generation.strategy.mix_ratio_schedule"]),
    ('{type="rose",topk=100000}', ["generation.strategy.topk", "less than or equal to 20"]),
    ('{type="arrol",over_sample=inf}', ["generation.strategy.over_sample"]),
    ('{type="arrol",over_sample=1.0}', ["generation.strategy.over_sample", "greater than 1"]),
    ('{type="arrol",over_sample=1e9}', ["generation.strategy.over_sample", "less than or equal to 16"]),
    ('{type="april",over_sample=inf}', ["generation.strategy.over_sample"]),
])
def test_useless_or_crashing_strategy_knobs_are_one_line_errors_at_load(override, names):
    with pytest.raises(ConfigError) as info:
        load_config(SMOKE, [f"--generation.strategy={override}"])
    msg = str(info.value)
    assert all(n in msg for n in names), msg
    assert len(msg.strip().splitlines()) <= 3  # "invalid config:" and one line per offending value


def test_thresholds_the_cap_reaches_load():
    for ok in ('{type="arrol",every=4}', '{type="latr",lookahead=[1,2],max_tree_tokens=3}',
               '{type="april",check_every=4}', '{type="latr",eta=0.2}'):  # round(4 x 0.2) = 1
        load_config(SMOKE, [f"--generation.strategy={ok}"])
    load_config(SMOKE, ["--generation.strategy=latr", "--sampler.group_size=2"])  # eta 1 -> 0.25: a tree till 300


def test_latr_group_without_tree_rollouts_samples_plainly():
    """round(2 x 0.25) = 0 (LATR's schedule after step 300 with groups of 2): no tree, no engine tree call, the
    group is ordinary samples (this divided by zero before)."""
    eng = ScriptedEngine(lambda prompt, j, call: ([7, 8], [-1.0, -1.0], "stop"))
    s = LatrStrategy()
    (group,) = s.generate(eng, [0], [[1]], [2], SamplingParams(max_new_tokens=8), step=301).completions
    assert [c.meta["latr"] for c in group] == ["sample", "sample"] and len(eng.history) == 1
    assert s.metrics()["latr_tree_share"] == 0.0


def test_latr_tree_stops_at_the_auto_cap():
    """Unset max_tree_tokens under max_new_tokens 8: the tree returns after ceil(8 / 2) = 4 greedy tokens and the
    rest is sampled."""
    eng = ScriptedEngine(lambda prompt, j, call: (list(range(10, 18)), [-1.0] * 8, "length"))
    (group,) = LatrStrategy(eta=1.0).generate(eng, [0], [[1]], [1], SamplingParams(max_new_tokens=8),
                                              step=0).completions
    assert group[0].prefix_len == 4 and len(group[0].token_ids) == 8
    assert eng.history[0].params.max_new_tokens == 4


def _counters(smoke_cfg, name: str) -> dict[str, float]:
    cfg = smoke_cfg(f"--run.name=defaults_{name}", f"--generation.strategy={name}", "--trainer.eval_every=0",
                    "--trainer.checkpoint_every=0", "--run.threads=1")
    Trainer(cfg).train()
    rows = [r for r in read_metrics(Path(cfg.run.out_dir) / cfg.run.name) if "ledger/tokens" in r]
    out: dict[str, float] = {}
    for r in rows:
        for k, v in r.items():
            if k.startswith("generation/") and isinstance(v, int | float) and not math.isnan(v):
                out[k] = out.get(k, 0) + v
    return out


def test_arrol_prunes_while_decoding_with_the_defaults_on_smoke(smoke_cfg):
    """every = auto = 1 under max_new_tokens 5: half of N0 = 8 rows per prompt are cut at the first checkpoint,
    while they decode (with every = 256 they were all decoded to the end and cut afterwards)."""
    got = _counters(smoke_cfg, "arrol")
    assert got["generation/arrol_every"] == 4 * 1  # 4 steps
    assert got["generation/arrol_pruned_live"] == got["generation/arrol_pruned"] == 4 * 6 * 4  # steps x prompts x 4


def test_latr_branches_and_prunes_with_the_defaults_on_smoke(smoke_cfg):
    """Ages [1, 2] and a 3-token tree under max_new_tokens 5 (with {20, 30, 50} nothing could ever be pruned)."""
    got = _counters(smoke_cfg, "latr")
    assert got["generation/latr_spawned"] >= 1 and got["generation/latr_pruned"] >= 1

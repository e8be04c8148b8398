"""The ``thrift`` recipe (issue 32): each of its parts acts in a short run, each ablation of bench/combined.toml
switches exactly its part off, and the recipe stacks on a config file that names ``sampler.type``."""

from __future__ import annotations

from pathlib import Path

import pytest

from rollwise.bench import check_grid, load_grid
from rollwise.config import load_config
from rollwise.logging import read_metrics
from rollwise.train.trainer import Trainer

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ["--sampler.batch_prompts=8", "--sampler.group_size=4", "--trainer.steps=4", "--trainer.eval_every=0",
         "--trainer.checkpoint_every=0", "--run.threads=1",
         "--task.train_size=16"]  # prompts come back: a level's pass rate is known, mixed groups get buffered
#: part -> the per-step counter that moves when it acts
COUNTERS = {"selection": "sampler/selector/reference", "replay": "sampler/replay/drawn",
            "tree": "generation/latr_spawned", "skip": "perf/update_rows_skipped"}


def parts(cfg) -> dict[str, bool]:
    """Which of thrift's parts a resolved config has on."""
    return {"selection": cfg.sampler.selector.type == "dots", "replay": bool(cfg.sampler.replay),
            "tree": cfg.generation.strategy.type == "latr", "skip": cfg.algo.skip_zero_rows}


def test_thrift_stacks_on_a_file_that_names_the_sampler_type():
    cfg = load_config(ROOT / "configs" / "tiny.toml", ["--recipe=thrift"])  # the file says sampler.type = uniform
    assert cfg.sampler.type == "uniform" and all(parts(cfg).values())


def test_each_ablation_arm_of_the_grid_turns_off_exactly_its_part():
    grid = load_grid(ROOT / "bench" / "combined.toml")
    cfgs = check_grid(grid)
    seed = grid.seeds[0]
    assert all(parts(cfgs["thrift", seed]).values())
    for part in COUNTERS:
        got = parts(cfgs[f"thrift_no_{part}", seed])
        assert got == {p: p != part for p in COUNTERS}, part
    for base in ("uniform", "dapo"):
        assert not any(parts(cfgs[base, seed])[p] for p in ("selection", "replay", "tree"))


@pytest.mark.parametrize("off", [None, *COUNTERS])
def test_every_part_acts_and_an_ablated_part_does_not(smoke_cfg, off):
    """A 4-step run: each part's counter moves (selection plans from a reference set, groups are replayed, LATR
    branches, the update skips zero-advantage rows); with a part switched off its counter stays at 0."""
    drop = {None: [], "selection": ["--sampler.selector=uniform"], "replay": ["--sampler.replay=false"],
            "tree": ["--generation.strategy=plain"], "skip": ["--algo.skip_zero_rows=false"]}[off]
    t = Trainer(smoke_cfg(*SMOKE, f"--run.name=thrift_{off}", "--recipe=thrift", *drop))
    try:
        t.train()
    finally:
        t.close()
    rows = [r for r in read_metrics(t.run_dir) if "rollout/reward_mean" in r]
    assert len(rows) == 4
    for part, key in COUNTERS.items():
        acted = any(r.get(key, 0) > 0 for r in rows)
        assert acted == (part != off), (part, key, [r.get(key) for r in rows])

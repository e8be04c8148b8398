"""Every shipped benchmark grid (bench/*.toml) and its ``[quick]`` variant still loads, and every arm's
configuration validates (no model is built): a renamed option or knob breaks here, not an hour into a grid."""

from __future__ import annotations

from pathlib import Path

import pytest

from rollwise.bench import check_grid, load_grid, quick_grid

GRIDS = sorted((Path(__file__).parents[1] / "bench").glob("*.toml"))


@pytest.mark.parametrize("path", GRIDS, ids=[p.stem for p in GRIDS])
def test_every_arm_of_the_grid_validates(path):
    grid = load_grid(path)
    variants = [grid, quick_grid(grid)] if grid.quick else [grid]
    for g in variants:
        assert g.arms
        cfgs = check_grid(g)  # the prepare run's and every (arm, seed)'s, as `rollwise bench` checks them
        assert len(cfgs) == len(g.arms) * len(g.seeds) + (g.prepare is not None)

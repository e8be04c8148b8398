"""ETTRL's entropy-based advantage reshaping (arXiv:2508.11356): Y_i = 1 + (H_bar - H_i) / H_bar, by hand."""

from __future__ import annotations

import pytest
import torch

from rollwise.algos.catalog import SHAPERS
from rollwise.algos.ear import compute_ear_scale, shape_ear
from rollwise.algos.shaping import ShapingContext


def test_scale_by_hand():
    # group 0: H = [1, 2] (row 0's padded position is ignored), H_bar = 1.5: Y = 1 + 0.5/1.5, 1 - 0.5/1.5
    # group 1: one row, Y = 1; group 2: H = [0, 0], H_bar = 0: Y = 1 (no information)
    ent = torch.tensor([[1.0, 1.0, 9.0], [2.0, 2.0, 2.0], [3.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    y = compute_ear_scale(ent, mask, torch.tensor([0, 0, 1, 2, 2]))
    assert y.tolist() == pytest.approx([4 / 3, 2 / 3, 1.0, 1.0, 1.0])


def test_formula_as_written_can_flip_and_min_scale_floors_it():
    ent, mask, g = torch.tensor([[0.2], [0.2], [5.6]]), torch.ones(3, 1), torch.zeros(3, dtype=torch.long)
    # H_bar = 2: Y = 1 + (2 - 0.2)/2 = 1.9 (twice), 1 + (2 - 5.6)/2 = -0.8
    assert compute_ear_scale(ent, mask, g).tolist() == pytest.approx([1.9, 1.9, -0.8])
    assert compute_ear_scale(ent, mask, g, min_scale=0.0).tolist() == pytest.approx([1.9, 1.9, 0.0])


def test_shaper_scales_every_token_and_logs_the_group_sum():
    """A label-matching high-entropy rollout's large positive advantage shrinks; confident ones grow."""
    adv = torch.tensor([[1.5, 1.5], [-0.5, -0.5], [-0.5, -0.5]])
    ent = torch.tensor([[3.0, 3.0], [1.0, 1.0], [2.0, 2.0]])  # H_bar = 2: Y = 0.5, 1.5, 1.0
    mask = torch.ones(3, 2)
    ctx = ShapingContext(adv, mask, torch.zeros(3, 2), entropy=ent, group_index=torch.zeros(3, dtype=torch.long))
    out, m = shape_ear(ctx, {})
    assert torch.allclose(out, torch.tensor([[0.75, 0.75], [-0.75, -0.75], [-0.5, -0.5]]))
    assert float(m["loss/ear_group_adv_sum_mean"]) == pytest.approx(0.75 - 0.75 - 0.5)  # no longer sums to 0
    assert float(m["loss/ear_scale_min"]) == 0.5 and float(m["loss/ear_scale_max"]) == 1.5
    assert shape_ear.needs == frozenset({"entropy"}) and "ear" in SHAPERS

"""DART's correction (arXiv:2509.23866): the high-entropy step mask and truncated IS at cap 1, by hand."""

from __future__ import annotations

import math

import torch

from rollwise.algos import CORRECTIONS
from rollwise.algos.corrections import CorrectionBatch
from rollwise.algos.dart import compute_capped_is, compute_step_entropy_keep


def test_step_entropy_mask_by_hand():
    # row means: 0.5, 2.0, 1.0, (no tokens), 1.0; 4 live rows: keep floor(0.5 * 4) = 2, floor(0.8 * 4) = 3
    ent = torch.tensor([[0.4, 0.6, 9.0], [2.0, 2.0, 0.0], [1.0, 0.0, 0.0], [5.0, 5.0, 5.0], [0.5, 1.5, 0.0]])
    mask = torch.tensor([[1.0, 1, 0], [1, 1, 0], [1, 0, 0], [0, 0, 0], [1, 1, 0]])
    assert compute_step_entropy_keep(ent, mask, 0.5).tolist() == [False, True, True, False, False]  # tie: earlier
    assert compute_step_entropy_keep(ent, mask, 0.8).tolist() == [False, True, True, False, True]
    assert compute_step_entropy_keep(ent, mask, 1.0).tolist() == [True, True, True, False, True]


def test_capped_is_by_hand():
    old = torch.log(torch.tensor([[0.5, 0.2], [0.3, 0.3]]))
    beh = torch.stack([torch.log(torch.tensor([0.25, 0.4])), torch.zeros(2)])  # row 1: none recorded
    w, over = compute_capped_is(old, beh, torch.ones(2, 2), 1.0)
    assert torch.allclose(w, torch.tensor([[1.0, 0.5], [1.0, 1.0]]))  # 2 -> capped at 1; 0.5 kept; row 1 -> 1
    assert over.tolist() == [[True, False], [False, False]]


def test_correction_prepare_parts_switch_off():
    B, C = 4, 2
    batch = CorrectionBatch(torch.ones(B, C), torch.full((B, C), -1.0), torch.zeros(B, C, dtype=torch.long), 0,
                            old=torch.full((B, C), -0.5), entropy=torch.arange(B * C, dtype=torch.float).view(B, C))
    both = CORRECTIONS.get("dart")().prepare(batch)
    assert torch.allclose(both.weight, torch.ones(B, C))  # exp(-0.5 + 1) = 1.65 -> cap 1
    assert both.keep[:, 0].tolist() == [0, 1, 1, 1]  # row means 0.5, 2.5, 4.5, 6.5: the top floor(3.2) = 3
    assert math.isclose(both.metrics["offpolicy/is_clip_frac"], 1.0)
    off = CORRECTIONS.get("dart")(is_cap=None, entropy_keep=1.0)
    assert off.needs == frozenset() and off.prepare(batch).weight is None and off.prepare(batch).keep is None

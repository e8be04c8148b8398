"""D3S token mask: exactly ceil(K * valid) valid tokens, the top ones by |A| * entropy, across the batch."""

from __future__ import annotations

import math

import pytest
import torch

from rollwise.algos.d3s import compute_d3s_token_mask

A = torch.tensor([1.0, -2.0])  # [B]
H = torch.tensor([[0.5, 0.1, 0.3], [0.2, 0.4, 0.9]])  # [B, T]
MASK = torch.tensor([[1, 1, 1], [1, 1, 0]])  # [B, T]; scores row 0: .5 .1 .3, row 1: .4 .8 (1.8 padded)


@pytest.mark.parametrize("k,expect", [
    (0.4, [[1, 0, 0], [0, 1, 0]]),  # ceil(.4*5) = 2: .8 and .5
    (0.5, [[1, 0, 0], [1, 1, 0]]),  # ceil(2.5) = 3: + .4
    (0.6, [[1, 0, 0], [1, 1, 0]]),  # ceil(3.0) = 3 (no float round-up to 4)
    (0.8, [[1, 0, 1], [1, 1, 0]]),
    (1.0, [[1, 1, 1], [1, 1, 0]]),
    (0.0, [[0, 0, 0], [0, 0, 0]]),
])
def test_mask_by_hand(k, expect):
    out = compute_d3s_token_mask(A, H, MASK, k)
    assert out.dtype == torch.bool and out.tolist() == [[bool(x) for x in row] for row in expect]


def test_random_counts_and_ordering():
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        b, t = torch.randint(1, 6, (2,), generator=g).tolist()
        adv = torch.randn(b, t, generator=g)
        ent = torch.rand(b, t, generator=g)
        mask = torch.rand(b, t, generator=g) > 0.3
        frac = float(torch.rand(1, generator=g))
        out = compute_d3s_token_mask(adv, ent, mask, frac)
        n_valid = int(mask.sum())
        assert int(out.sum()) == math.ceil(frac * n_valid - 1e-9)
        assert not (out & ~mask).any()
        score = adv.abs() * ent
        dropped = mask & ~out
        if out.any() and dropped.any():
            assert score[out].min() >= score[dropped].max()


def test_sequence_and_token_advantages_agree_and_no_grad():
    ent = H.clone().requires_grad_(True)
    per_seq = compute_d3s_token_mask(A, ent, MASK, 0.5)
    per_tok = compute_d3s_token_mask(A[:, None].expand(2, 3), ent, MASK, 0.5)
    assert torch.equal(per_seq, per_tok) and not per_seq.requires_grad


def test_invalid_inputs():
    with pytest.raises(ValueError):
        compute_d3s_token_mask(A, H, MASK, 1.5)
    with pytest.raises(ValueError):
        compute_d3s_token_mask(A[:1], H, MASK, 0.5)
    with pytest.raises(ValueError):
        compute_d3s_token_mask(A, H, MASK[:, :2], 0.5)

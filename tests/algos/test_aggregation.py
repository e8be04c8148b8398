"""Loss aggregation: hand values per mode, micro-batched == full batch (values and gradients)."""

from __future__ import annotations

import pytest
import torch

from rollwise.algos import AGGREGATIONS, compute_aggregate, count_tokens_and_seqs

MODES = ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm"]

# row 0: 3 tokens [1, 2, 3]; row 1: 1 token [5]; row 2: fully masked (not counted as a sequence)
LOSS = torch.tensor([[1.0, 2, 3, 4], [5, 6, 0, 0], [9, 9, 9, 9]])
MASK = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]], dtype=torch.bool)


@pytest.mark.parametrize(
    "mode, kwargs, expected",
    [
        ("token-mean", {}, 11 / 4),  # (1+2+3+5) / 4 tokens
        ("token-mean", {"num_tokens": 8}, 11 / 8),  # a global total from other micro-batches
        ("seq-mean-token-mean", {}, 3.5),  # (mean[1,2,3]=2 + mean[5]=5) / 2 sequences
        ("seq-mean-token-sum", {}, 5.5),  # (6 + 5) / 2
        ("seq-mean-token-sum-norm", {}, 11 / 8),  # 11 / (2 sequences * padded T=4)
        ("seq-mean-token-sum-norm", {"norm_length": 10}, 0.55),  # 11 / (2 * 10)
        ("seq-mean-token-mean", {"num_seqs": 4}, 7 / 4),
    ],
)
def test_hand_values(mode, kwargs, expected):
    torch.testing.assert_close(compute_aggregate(LOSS, MASK, mode, **kwargs), torch.tensor(expected))


def test_count_tokens_and_seqs():
    assert count_tokens_and_seqs(MASK) == (4.0, 2.0)


def test_nan_in_padding_does_not_leak():
    loss = LOSS.clone()
    loss[2] = float("nan")
    for mode in MODES:
        assert torch.isfinite(compute_aggregate(loss, MASK, mode))


def test_empty_mask_gives_zero():
    for mode in MODES:
        assert compute_aggregate(LOSS, torch.zeros_like(MASK), mode).item() == 0.0


def _random_batch(seed: int):
    gen = torch.Generator().manual_seed(seed)
    B, T = 9, 7
    lengths = torch.randint(0, T + 1, (B,), generator=gen)
    lengths[0] = T  # at least one full row; some rows may be empty
    mask = torch.arange(T)[None, :] < lengths[:, None]  # [B, T] right-padded
    x = torch.randn(B, T, generator=gen, dtype=torch.float64)
    return x, mask


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("seed", range(3))
def test_micro_batches_sum_to_full_batch(mode, seed):
    x, mask = _random_batch(seed)
    T = x.shape[1]
    w_full = torch.tensor(1.3, dtype=torch.float64, requires_grad=True)
    full = compute_aggregate(w_full * x**2, mask, mode, norm_length=T)
    full.backward()

    # 3 micro-batches, each trimmed to its own padded length (as a trainer would pad them)
    chunks = [slice(0, 3), slice(3, 5), slice(5, 9)]
    num_tokens = sum(count_tokens_and_seqs(mask[c])[0] for c in chunks)
    num_seqs = sum(count_tokens_and_seqs(mask[c])[1] for c in chunks)
    w_micro = torch.tensor(1.3, dtype=torch.float64, requires_grad=True)
    total = torch.zeros((), dtype=torch.float64)
    for c in chunks:
        t = max(int(mask[c].sum(-1).max()), 1)
        part = compute_aggregate(w_micro * x[c, :t] ** 2, mask[c, :t], mode, num_tokens=num_tokens,
                                 num_seqs=num_seqs, norm_length=T)
        part.backward()  # gradient accumulation, one backward per micro-batch
        total = total + part.detach()
    torch.testing.assert_close(total, full.detach())
    torch.testing.assert_close(w_micro.grad, w_full.grad)


def test_per_element_gradients_match_under_micro_batching():
    x, mask = _random_batch(7)
    leaf = x.clone().requires_grad_(True)
    compute_aggregate(leaf**2, mask, "seq-mean-token-mean").backward()
    leaf_micro = x.clone().requires_grad_(True)
    _, num_seqs = count_tokens_and_seqs(mask)
    for c in (slice(0, 4), slice(4, 9)):
        compute_aggregate(leaf_micro[c] ** 2, mask[c], "seq-mean-token-mean", num_seqs=num_seqs).backward()
    torch.testing.assert_close(leaf_micro.grad, leaf.grad)


def test_unknown_mode_lists_options():
    with pytest.raises(KeyError, match="token-mean"):
        compute_aggregate(LOSS, MASK, "sum")
    assert AGGREGATIONS.names() == sorted(MODES)

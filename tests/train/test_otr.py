"""One-Token Rollout warm start (issue 18): the loss on hand-derived values, the sampler, the cache key (the
default and SFT keys unchanged) and a seconds-long OTR warm start."""

from __future__ import annotations

import math

import pytest
import torch

from rollwise.config import load_config
from rollwise.train.model import load_model
from rollwise.train.warmstart import (
    PACKAGED,
    compute_otr_loss,
    find_warmstart,
    sample_otr_tokens,
    train_warmstart,
    warmstart_key,
)

LN2 = math.log(2.0)
# two answer positions over 3 tokens: probabilities [1/2, 1/4, 1/4] at both (logits [ln 2, 0, 0])
LOGITS = torch.tensor([[LN2, 0.0, 0.0], [LN2, 0.0, 0.0]])
TARGETS = torch.tensor([0, 1])
SAMPLES = torch.tensor([[0, 2], [1, 1]])  # position 0: one hit, one miss; position 1: two hits


def test_otr_loss_mean_baseline_by_hand():
    # position 0: r = [1, 0], baseline 1/2, A = [1/2, -1/2]: -(1/2 ln 1/2 - 1/2 ln 1/4) / 2 = -ln2 / 4
    # position 1: both hit, A = [0, 0]: 0.  token mean over the two positions: -ln2 / 8
    logits = LOGITS.clone().requires_grad_(True)
    loss, stats = compute_otr_loss(logits, SAMPLES, TARGETS, torch.ones(2))
    assert math.isclose(loss.item(), -LN2 / 8, rel_tol=1e-6)
    assert math.isclose(stats["hit_rate"], 0.75)
    loss.backward()
    # d/dz of -(1/2) sum_k A_k log p(a_k), with d log p(a)/dz = e_a - p: -(1/2)(1/2 (e0 - p) - 1/2 (e2 - p))
    # = (e2 - e0) / 4, halved by the mean over the two positions; position 1 (A = 0) gets none
    torch.testing.assert_close(logits.grad, torch.tensor([[-1 / 8, 0.0, 1 / 8], [0.0, 0.0, 0.0]]))


def test_otr_loss_variants_by_hand():
    # no baseline, miss reward -1: position 0 r = [1, -1]: -(ln 1/2 - ln 1/4) / 2 = -ln2 / 2;
    # position 1 r = [1, 1]: -(2 ln 1/4) / 2 = 2 ln2.  mean: 3/4 ln2
    loss, _ = compute_otr_loss(LOGITS, SAMPLES, TARGETS, torch.ones(2), negative=-1.0, baseline="none")
    assert math.isclose(loss.item(), 0.75 * LN2, rel_tol=1e-6)
    # a masked-out position counts in neither the sum nor the mean
    loss, stats = compute_otr_loss(LOGITS, SAMPLES, TARGETS, torch.tensor([1.0, 0.0]))
    assert math.isclose(loss.item(), -LN2 / 4, rel_tol=1e-6) and stats["hit_rate"] == 0.5
    # temperature: logits [2 ln2, 0, 0] at tau 2 are the same distribution, so the same loss
    loss, _ = compute_otr_loss(2 * LOGITS, SAMPLES, TARGETS, torch.ones(2), temperature=2.0)
    assert math.isclose(loss.item(), -LN2 / 8, rel_tol=1e-6)
    # with the mean baseline the miss reward only rescales the advantages, by (1 - negative)
    loss, _ = compute_otr_loss(LOGITS, SAMPLES, TARGETS, torch.ones(2), negative=-1.0)
    assert math.isclose(loss.item(), -LN2 / 4, rel_tol=1e-6)
    with pytest.raises(ValueError, match="baseline"):
        compute_otr_loss(LOGITS, SAMPLES, TARGETS, torch.ones(2), baseline="ema")


def test_sampler_draws_from_the_tempered_softmax_with_a_fixed_seed():
    logits = torch.tensor([[0.0, 1.0, 2.0], [3.0, 0.0, -1.0]])
    got = sample_otr_tokens(logits, 5, 2.0, torch.Generator().manual_seed(0))
    want = torch.multinomial(torch.softmax(logits / 2.0, -1), 5, replacement=True,
                             generator=torch.Generator().manual_seed(0))
    assert got.shape == (2, 5) and torch.equal(got, want)
    one_hot = torch.tensor([[-math.inf, 0.0, -math.inf]])
    assert sample_otr_tokens(one_hot, 4).tolist() == [[1, 1, 1, 1]]


def test_otr_key_differs_and_the_sft_keys_are_unchanged():
    default = load_config(None, [])
    assert warmstart_key(default) == "c587ab2eeaa128fe"  # the packaged default warm start
    assert find_warmstart(default) == PACKAGED / "c587ab2eeaa128fe"
    # OTR knobs enter no SFT key
    assert warmstart_key(load_config(None, ["--warmstart.otr_samples=4", "--warmstart.otr_negative=-1"])) == \
        "c587ab2eeaa128fe"
    otr = warmstart_key(load_config(None, ["--warmstart.objective=otr"]))
    assert otr != "c587ab2eeaa128fe"
    assert warmstart_key(load_config(None, ["--warmstart.objective=otr", "--warmstart.otr_samples=4"])) != otr
    assert find_warmstart(load_config(None, ["--warmstart.objective=otr", "--warmstart.cache_dir=/nonexistent"])) \
        is None


def test_otr_warm_start_trains_and_reloads(smoke_cfg):
    cfg = smoke_cfg("--warmstart.objective=otr", "--warmstart.steps=10")
    rows = []
    out = train_warmstart(cfg, set(), torch.device("cpu"), log=rows.append)
    assert out.name == warmstart_key(cfg) and find_warmstart(cfg) == out
    assert [r["warmstart/step"] for r in rows] == [0, 9]
    assert rows[-1]["warmstart/hit_rate"] > rows[0]["warmstart/hit_rate"]  # 10 steps at lr 1e-2 already help
    model, _ = load_model(out)
    assert model is not None

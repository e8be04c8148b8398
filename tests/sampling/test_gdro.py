"""GDRO: bin probabilities and weights by hand, pass@k window vs a deque reference, hysteresis, EMA scores,
square-root allocation (exact total, bounds, favours high variance)."""

from __future__ import annotations

import math
from collections import deque

import numpy as np
import pytest

from rollwise.sampling.base import TrainGroup
from rollwise.sampling.gdro import (
    GdroSelector,
    GdroSqrtAllocator,
    PassKClassifier,
    compute_gdro_q,
    compute_gdro_weights,
    compute_sqrt_allocation,
    parse_edges,
)


def test_q_and_weights_by_hand():
    # eta = ln 2, S = (2, 1, 0): softmax = (4, 2, 1)/7; gamma = 0.3: q = 0.7*(4,2,1)/7 + 0.1 = (.5, .3, .2)
    q = compute_gdro_q(np.array([2.0, 1.0, 0.0]), eta=math.log(2), gamma=0.3)
    np.testing.assert_allclose(q, [0.5, 0.3, 0.2])
    # batch bins (0, 1, 2, 2): raw (0.5, 0.3, 0.2, 0.2), mean 0.3 -> (5/3, 1, 2/3, 2/3)
    bins = np.array([0, 1, 2, 2])
    np.testing.assert_allclose(compute_gdro_weights(q, bins, w_max=15), [5 / 3, 1, 2 / 3, 2 / 3])
    np.testing.assert_allclose(compute_gdro_weights(q, bins, w_max=1.5), [1.5, 1, 2 / 3, 2 / 3])
    # an excluded prompt (bin index 3 = B) keeps weight 1 and is left out of the mean
    np.testing.assert_allclose(compute_gdro_weights(q, np.array([0, 1, 3]), 15), [1.25, 0.75, 1.0])
    np.testing.assert_allclose(compute_gdro_q(np.array([5.0, -5.0]), 1.0, 0.0, clip=1.0).sum(), 1.0)


def test_parse_edges():
    assert parse_edges("0.4,0.75").tolist() == [0.4, 0.75]
    assert parse_edges([0.1, 0.2, 0.4, 0.6, 0.8, 0.9]).size == 6  # 7 bins
    with pytest.raises(ValueError):
        parse_edges("0.5,0.4")


def _feed(clf: PassKClassifier, prompt: int, flags: list[int]) -> list[int]:
    out = []
    for f in flags:
        clf.update(np.array([prompt]), np.array([f]), size=4)
        out.append(int(clf.bins(np.array([prompt]))[0]))
    return out


def test_hysteresis_keeps_the_bin_within_delta():
    edges = parse_edges("0.4,0.75")
    clf, plain = PassKClassifier(edges, 0, 0.03, False), PassKClassifier(edges, 0, 0.0, False)
    flags = [0] * 59 + [1] * 41  # cumulative pass@k climbs to 41/100 = 0.41
    assert _feed(clf, 0, flags)[-1] == 0 and _feed(plain, 0, flags)[-1] == 1
    assert _feed(clf, 0, [1, 1])[-1] == 0  # 43/102 = 0.4216 < 0.43: stays
    assert _feed(clf, 0, [1] * 4)[-1] == 1  # 47/106 = 0.443 >= 0.43: moves up
    assert _feed(clf, 0, [0] * 14)[-1] == 1  # 47/120 = 0.392 >= 0.37: stays
    assert _feed(clf, 0, [0] * 8)[-1] == 0  # 47/128 = 0.367 < 0.37: moves down


def test_windowed_pass_at_k_matches_a_deque_reference():
    rng = np.random.default_rng(0)
    h, n = 5, 7
    clf = PassKClassifier(parse_edges("0.4,0.75"), h, 0.0, False)
    ref = {p: deque(maxlen=h) for p in range(n)}
    for _ in range(40):
        prompts = rng.choice(n, size=rng.integers(1, n + 1), replace=False)
        flags = rng.random(len(prompts)) < 0.5
        clf.update(prompts, flags, size=n)
        for p, f in zip(prompts, flags):
            ref[int(p)].append(int(f))
        seen = [p for p in range(n) if ref[p]]
        acc = clf.accuracy(clf._row[seen])
        np.testing.assert_allclose(acc, [np.mean(ref[p]) for p in seen])
        want = np.searchsorted([0.4, 0.75], [np.mean(ref[p]) for p in seen], side="right")
        assert clf.bins(np.array(seen)).tolist() == want.tolist()


def test_unseen_and_extremes():
    clf = PassKClassifier(parse_edges("0.4,0.75"), 50, 0.03, exclude_extremes=True)
    assert clf.bins(np.array([0, 1])).tolist() == [3, 3]  # unseen: accuracy 0, an extreme -> excluded bin
    clf.update(np.array([0, 1]), np.array([1, 0]), size=3)
    clf.update(np.array([1]), np.array([1]), size=3)
    assert clf.bins(np.array([0, 1, 2])).tolist() == [3, 1, 3]  # 1.0 excluded, 0.5 in bin 1, unseen excluded
    assert PassKClassifier(parse_edges("0.4"), 50, 0.0, False).bins(np.array([5])).tolist() == [0]


def test_selector_ema_scores_and_weights(harness):
    sel = GdroSelector(history=10, eta=math.log(2), gamma=0.0, ema=0.5)
    ctx = harness.make_ctx(6)
    # prompt 0: 1/4 correct (difficulty 0.75, pass@k 1 -> bin 2); prompt 1: none (difficulty 1, bin 0)
    sel.observe(ctx, [harness.obs(0, [1, 0, 0, 0]), harness.obs(1, [0, 0, 0, 0])], [])
    np.testing.assert_allclose(sel.scores[[0, 2]], [1.0, 0.75])  # the first observation initialises S
    assert np.isnan(sel.scores[1])  # never observed
    sel.observe(ctx, [harness.obs(0, [1, 1, 1, 1])], [])  # difficulty 0 in bin 2: S = 0.5*0.75 + 0.5*0
    np.testing.assert_allclose(sel.scores[[0, 2]], [1.0, 0.375])
    w = sel.weights(np.array([0, 1, 5]), ctx)  # bins (2, 0, 0 [unseen])
    q = compute_gdro_q(np.array([1.0, (1.0 + 0.375) / 2, 0.375]), math.log(2), 0.0)
    raw = q[[2, 0, 0]]
    np.testing.assert_allclose(w, raw / raw.mean())


def test_loss_signal_and_fallback(harness):
    sel = GdroSelector(signal="loss", ema=1.0)
    ctx = harness.make_ctx(4)
    pools = [harness.obs(0, [0, 0]), harness.obs(1, [1, 0])]
    sel.observe(ctx, pools, [TrainGroup(1, np.arange(2), loss=0.3)])  # only prompt 1 (bin 2) has a loss
    assert sel.scores[2] == pytest.approx(0.3) and np.isnan(sel.scores[0])
    sel.observe(ctx, pools, [TrainGroup(1, np.arange(2))])  # no losses -> difficulty
    assert sel.scores[0] == pytest.approx(1.0) and sel.scores[2] == pytest.approx(0.5)


def test_selection_is_uniform_without_replacement(harness):
    sel, ctx = GdroSelector(), harness.make_ctx(20)
    seen = np.concatenate([sel.select(5, ctx) for _ in range(4)])
    assert sorted(seen.tolist()) == list(range(20))


def test_sqrt_allocation_by_hand(harness):
    # bins v = 0.25 (p = 0.5) and 0.09 (p = 0.1), half the batch each, n_mean = 4:
    # sum_j q_j sqrt(v_j) = 0.5*0.5 + 0.5*0.3 = 0.4 -> n = 4*0.5/0.4 = 5 and 4*0.3/0.4 = 3
    ctx = harness.make_ctx(4)
    ctx.stats.ema_pass[:] = [0.5, 0.1, 0.5, 0.1]
    alloc = GdroSqrtAllocator(n_mean=4, n_min=1, n_max=12)
    assert alloc.initial(np.arange(4), ctx).tolist() == [5, 3, 5, 3]
    assert alloc.metrics()["mu_implied"] == pytest.approx((0.4 / 4) ** 2)
    assert GdroSqrtAllocator(n_mean=4, n_min=1, n_max=4).initial(np.arange(4), ctx).tolist() == [4] * 4
    ctx.stats.ema_pass[:] = np.nan  # unseen: one bin at the prior -> uniform n_mean
    assert GdroSqrtAllocator(n_mean=4).initial(np.arange(4), ctx).tolist() == [4] * 4


def test_sqrt_allocation_rounding_and_bounds():
    np.testing.assert_array_equal(compute_sqrt_allocation(np.array([1.0, 1.0, 0.01]), 12, 2, 5), [5, 5, 2])
    assert compute_sqrt_allocation(np.ones(3), 3, 2, 5).tolist() == [2, 2, 2]  # infeasible -> nearest
    rng = np.random.default_rng(0)
    for _ in range(200):
        p = int(rng.integers(1, 40))
        scale = np.sqrt(np.maximum(rng.random(p) * 0.25, 0.01))
        lo, hi = int(rng.integers(1, 4)), int(rng.integers(4, 20))
        total = int(rng.integers(p * lo, p * hi + 1))
        n = compute_sqrt_allocation(scale, total, lo, hi)
        assert n.sum() == total and n.min() >= lo and n.max() <= hi
        i, j = np.nonzero(scale[:, None] > scale[None, :])
        assert np.all(n[i] >= n[j])  # more variance never gets fewer rollouts


def test_allocator_tracks_the_shadow_price(harness):
    alloc, ctx = GdroSqrtAllocator(n_mean=4, dual_lr=0.5), harness.make_ctx(3)
    alloc.observe(ctx, [harness.obs(0, [1] * 6), harness.obs(1, [0] * 4)], [])  # realised mean 5 vs 4
    assert alloc.mu == pytest.approx(0.5)
    b = GdroSqrtAllocator()
    b.load_state_dict(alloc.state_dict())
    assert b.mu == pytest.approx(0.5)

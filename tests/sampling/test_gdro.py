"""GDRO: bin probabilities and weights by hand, pass@k window vs a deque reference, hysteresis, EMA scores,
Prompt-GDRO weights in a run, Rollout-GDRO's arms game (the DP by hand and against brute force, the score
update by hand, a compute-neutral run, resume), square-root allocation (exact total, bounds, favours high
variance)."""

from __future__ import annotations

import itertools
import math
import pickle
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
from rollwise.sampling.gdro_arms import GdroArmsAllocator, compute_arm_plan, compute_arm_probs


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
    pools = [harness.obs(0, [1, 0, 0, 0]), harness.obs(1, [0, 0, 0, 0])]
    sel.on_generated(ctx, pools)  # reclassified right after generation
    sel.observe(ctx, pools, [])
    np.testing.assert_allclose(sel.scores[[0, 2]], [1.0, 0.75])  # the first observation initialises S
    assert np.isnan(sel.scores[1])  # never observed
    pools = [harness.obs(0, [1, 1, 1, 1])]
    sel.on_generated(ctx, pools)
    sel.observe(ctx, pools, [])  # difficulty 0 in bin 2: S = 0.5*0.75 + 0.5*0
    np.testing.assert_allclose(sel.scores[[0, 2]], [1.0, 0.375])
    pools = [harness.obs(p, [0, 1, 0, 1]) for p in (0, 1, 5)]  # bins (2, 0, 0 [unseen]), not reclassified
    w = sel.weights(pools, [np.arange(4)] * 3, ctx)
    q = compute_gdro_q(np.array([1.0, (1.0 + 0.375) / 2, 0.375]), math.log(2), 0.0)
    raw = q[[2, 0, 0]]
    np.testing.assert_allclose(w, raw / raw.mean())
    w = sel.weights(pools, [np.arange(4), np.arange(2), np.arange(2)], ctx)  # mean 1 per trained rollout
    np.testing.assert_allclose(w, raw * 8 / (raw @ [4, 2, 2]))


def test_loss_signal_and_fallback(harness):
    sel = GdroSelector(signal="loss", ema=1.0)
    ctx = harness.make_ctx(4)
    pools = [harness.obs(0, [0, 0]), harness.obs(1, [1, 0])]
    sel.on_generated(ctx, pools)
    trained = [TrainGroup(1, np.arange(2), np.zeros(2))]
    sel.observe(ctx, pools, trained, np.array([0.3]))  # only prompt 1 (bin 2) has a loss
    assert sel.scores[2] == pytest.approx(0.3) and np.isnan(sel.scores[0])
    sel.observe(ctx, pools, trained)  # no losses -> difficulty
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
    alloc = GdroSqrtAllocator(n_mean=4, n_min=2, n_max=12)
    assert alloc.initial(np.arange(4), ctx).tolist() == [5, 3, 5, 3]
    assert alloc.metrics()["mu_implied"] == pytest.approx((0.4 / 4) ** 2)
    assert GdroSqrtAllocator(n_mean=4, n_min=2, n_max=4).initial(np.arange(4), ctx).tolist() == [4] * 4
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


def test_prompt_gdro_weights_vary_on_a_fresh_pool_and_average_one_per_rollout(harness):
    rates = np.where(np.arange(10_000) % 2 == 0, 0.9, 0.1)
    pipe = harness.make_pipe("gdro", pool=10_000, batch=16)
    sim, seen = harness.RewardSim(rates), set()
    for step in range(3):
        log = harness.play_step(pipe, sim, step)
        prompts = {g.prompt for g in log.groups}
        assert len(prompts) == 16 and prompts.isdisjoint(seen)  # every prompt new
        seen |= prompts
        w = np.array([g.weight for g in log.groups])
        n = np.array([len(g.keep) for g in log.groups])
        assert w @ n / n.sum() == pytest.approx(1.0, abs=1e-12)
        if step == 0:
            np.testing.assert_allclose(w, 1.0)  # no bin scored yet: q uniform
        else:
            assert np.ptp(w) > 0.1  # bins scored: weights differ within the step


def test_arm_probs_by_hand():
    # eta = ln 2, S = (2, 1, 0): softmax = (4, 2, 1)/7; gamma = 0.3: p = 0.7*(4,2,1)/7 + 0.1 = (.5, .3, .2)
    p = compute_arm_probs(np.array([[2.0, 1.0, 0.0], [0.0, 0.0, 0.0]]), eta=math.log(2), gamma=0.3)
    np.testing.assert_allclose(p, [[0.5, 0.3, 0.2], [1 / 3, 1 / 3, 1 / 3]])


# two bins of two prompts each, arms 2..6, n_mean 4: total 16, so n_0 + n_1 = 8
ARMS = np.arange(2, 7)
LOGP = np.array([[-4.0, -3.0, -2.0, -1.0, -0.5],  # bin 0 alone would take 6
                 [-3.0, -1.5, -1.4, -0.2, -2.5]])  # bin 1 alone would take 5


def test_arm_plan_by_hand():
    # feasible pairs: (2,6) -6.5, (3,5) -3.2, (4,4) -3.4, (5,3) -2.5, (6,2) -3.5 -> (5, 3)
    assert ARMS[compute_arm_plan(LOGP, np.array([2, 2]), ARMS, 16)].tolist() == [5, 3]
    # 18 (n_0 + n_1 = 9): (3,6) -5.5, (4,5) -2.2, (5,4) -2.4, (6,3) -2.0 -> (6, 3)
    assert ARMS[compute_arm_plan(LOGP, np.array([2, 2]), ARMS, 18)].tolist() == [6, 3]
    # counts (3, 1), total 16: 3 n_0 + n_1 = 16 has the one solution (4, 4) in arms 2..6
    assert ARMS[compute_arm_plan(LOGP, np.array([3, 1]), ARMS, 16)].tolist() == [4, 4]


def test_arm_plan_infeasible_totals_take_the_closest():
    counts = np.array([2, 2])
    assert ARMS[compute_arm_plan(LOGP, counts, ARMS, 17)].tolist() == [5, 3]  # odd: 16 and 18 tie -> lower
    assert ARMS[compute_arm_plan(LOGP, counts, ARMS, 30)].tolist() == [6, 6]  # above the max (24)
    assert ARMS[compute_arm_plan(LOGP, counts, ARMS, 3)].tolist() == [2, 2]  # below the min (8)
    # counts (3, 2), total 11: 3 n_0 + 2 n_1 reaches 10 and 12, not 11 -> 10 = (2, 2)
    assert ARMS[compute_arm_plan(LOGP, np.array([3, 2]), ARMS, 11)].tolist() == [2, 2]
    assert compute_arm_plan(np.zeros((0, 5)), np.zeros(0, dtype=np.int64), ARMS, 0).size == 0


def test_arm_plan_matches_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(300):
        b, k = int(rng.integers(1, 4)), int(rng.integers(1, 6))
        arms = np.sort(rng.choice(np.arange(1, 10), size=k, replace=False))
        counts = rng.integers(1, 5, size=b)
        logp = np.log(rng.dirichlet(np.ones(k), size=b))
        total = int(rng.integers(0, counts.sum() * arms[-1] + 5))
        best = min(itertools.product(range(k), repeat=b), key=lambda c: (
            abs(counts @ arms[list(c)] - total), counts @ arms[list(c)], -logp[np.arange(b), list(c)].sum()))
        got = compute_arm_plan(logp, counts, arms, total)
        assert counts @ arms[got] == counts @ arms[list(best)]
        assert logp[np.arange(b), got].sum() == pytest.approx(logp[np.arange(b), list(best)].sum(), abs=1e-12)


def test_arms_first_step_is_uniform_and_budget_is_exact(harness):
    ctx = harness.make_ctx(20, group_size=8)
    alloc = GdroArmsAllocator(n_mean=4)
    assert alloc.initial(np.arange(10), ctx).tolist() == [4] * 10
    assert alloc.budget(10, 8) == (40, 40) and alloc.first_round(8) == 4
    assert alloc.arms(8)[1].tolist() == list(range(2, 13))  # n_max = round(3 x 4)
    default = GdroArmsAllocator()
    assert default.initial(np.arange(5), ctx).tolist() == [8] * 5  # n_mean = group_size
    assert default.arms(8)[1].tolist() == list(range(2, 25))
    with pytest.raises(ValueError):
        GdroArmsAllocator(n_mean=4, n_max=3).initial(np.arange(2), ctx)
    ex = GdroArmsAllocator(n_mean=4, exclude_extremes=True)
    ex.initial(np.arange(2), ctx)
    ex.observe(ctx, [harness.obs(0, [1, 1, 1, 1]), harness.obs(1, [1, 0, 0, 0])], [])
    # both prompts solved (pass@k 1, excluded); prompt 2 unseen (accuracy 0, excluded): all n_mean
    assert ex.initial(np.arange(3), ctx).tolist() == [4, 4, 4]


def test_arm_score_update_by_hand():
    alloc = GdroArmsAllocator(n_mean=4, n_max=6, ema=None)
    alloc.arms(8)
    alloc.mu = 0.5
    bins, arm, sig = np.array([0, 0, 2]), np.array([6, 6, 3]), np.array([0.2, 0.4, -0.1])
    alloc.update_scores(bins, arm, sig, 4)
    # bin 0 arm 6: mean(0.2, 0.4) - 0.5 (6 - 4) = -0.7; bin 2 arm 3: -0.1 - 0.5 (3 - 4) = 0.4; nothing else
    want = np.zeros((3, 5))
    want[0, 4], want[2, 1] = -0.7, 0.4
    np.testing.assert_allclose(alloc.scores, want)
    alloc.update_scores(bins, arm, sig, 4)  # additive: doubles
    np.testing.assert_allclose(alloc.scores, 2 * want)
    ema = GdroArmsAllocator(n_mean=4, n_max=6, ema=0.3)
    ema.arms(8)
    ema.mu = 0.5
    ema.update_scores(bins, arm, sig, 4)  # 0.7 * 0 + 0.3 * value
    np.testing.assert_allclose(ema.scores, 0.3 * want)
    ema.update_scores(bins, arm, sig, 4)  # 0.7 * 0.3 value + 0.3 value = 0.51 value
    np.testing.assert_allclose(ema.scores, 0.51 * want)


def test_arm_game_by_hand(harness):
    alloc, ctx = GdroArmsAllocator(n_mean=4, n_max=6, ema=None, dual_lr=0.5), harness.make_ctx(4, group_size=4)
    # step 0: uniform; both prompts unseen (bin 0, arm 4): centred values -0.25, +0.25 -> S unchanged
    assert alloc.initial(np.array([0, 1]), ctx).tolist() == [4, 4]
    alloc.observe(ctx, [harness.obs(0, [1, 1, 0, 0]), harness.obs(1, [0, 0, 0, 0])], [])
    np.testing.assert_allclose(alloc.scores, 0.0)
    assert alloc.classifier.bins(np.array([0, 1])).tolist() == [2, 0]
    # step 1: bins (2, 0), every score 0 -> (4, 4). Pools of 6 and 4 rollouts: realised mean 5, mu += 0.5 * 1
    ctx.step = 1
    assert alloc.initial(np.array([0, 1]), ctx).tolist() == [4, 4]
    alloc.observe(ctx, [harness.obs(0, [1, 1, 1, 0, 0, 0]), harness.obs(1, [0, 0, 0, 1])], [])
    # difficulties 0.5 (bin 2) and 0.75 (bin 0), mean 0.625: S_2[4] = -0.125, S_0[4] = +0.125 (mu was 0)
    assert alloc.scores[2, 2] == pytest.approx(-0.125) and alloc.scores[0, 2] == pytest.approx(0.125)
    assert np.count_nonzero(alloc.scores) == 2 and alloc.mu == pytest.approx(0.5)
    # step 2: prompt 1's pass@k is 0.5 -> bin 1 (untried, all 0). Bin 2 leaves its marked-down arm 4; with
    # n_2 + n_1 = 8 the best ties (3, 5) and (5, 3): the lower arm of the later bin (bin 2) wins
    ctx.step = 2
    assert alloc.initial(np.array([0, 1]), ctx).tolist() == [3, 5]
    m = alloc.metrics()
    assert (m["bin2_arm"], m["bin1_arm"], m["bin0_share"], m["mu"]) == (3, 5, 0.0, 0.5)
    p = compute_arm_probs(alloc.scores, 0.65, 0.01)
    assert m["bin2_p"] == pytest.approx(p[2, 1]) and m["bin1_entropy"] == pytest.approx(math.log(5))


def _bimodal_run(harness, steps: int, **params):
    rates = np.where(np.arange(48) % 2 == 0, 0.9, 0.1)
    pipe = harness.make_pipe("gdro_rollout", pool=48, batch=16, **params)
    sim, out = harness.RewardSim(rates), []
    for step in range(steps):
        log = harness.play_step(pipe, sim, step)
        (prompts, counts), = log.requests
        prompts, counts = np.array(prompts), np.array(counts)
        out.append((counts[rates[prompts] > 0.5].mean(), counts[rates[prompts] < 0.5].mean(), counts.sum(),
                    log.budget.spent_rollouts))
    return pipe, out


def test_rollout_gdro_run_is_compute_neutral_with_unequal_bins(harness):
    pipe, out = _bimodal_run(harness, 10)
    assert all(total == spent == 16 * 8 for _, _, total, spent in out)  # exactly P n_mean every step
    assert out[0][:2] == (8.0, 8.0)  # the first step is uniform
    assert any(easy != hard for easy, hard, _, _ in out)  # easy and hard prompts get different counts
    m = pipe.metrics()
    assert m["sampler/allocator/mu"] == 0.0 and m["sampler/allocator/n_realised"] == 8.0  # the spec's pitfall


def test_uncentred_difficulty_never_leaves_the_uniform_plan(harness):
    # the spec's update with a signal that is never negative only ever rewards the played arm: locked in
    _, out = _bimodal_run(harness, 10, gdro_arms={"center": False})
    assert all(easy == hard == 8.0 for easy, hard, _, _ in out)


def test_rollout_gdro_resume_makes_the_same_next_plans(harness):
    rates = np.where(np.arange(48) % 2 == 0, 0.9, 0.1)
    sim = harness.RewardSim(rates, seed=5)

    def plans(pipe, steps):
        return [harness.play_step(pipe, sim, s).requests for s in steps]

    a = harness.make_pipe("gdro_rollout", pool=48, batch=16)
    plans(a, range(6))
    saved = pickle.dumps(a.state_dict())
    want = plans(a, range(6, 10))
    assert any(len(set(counts)) > 1 for step in want for _, counts in step)  # the game is really playing
    b = harness.make_pipe("gdro_rollout", pool=48, batch=16)
    b.load_state_dict(pickle.loads(saved))
    assert plans(b, range(6, 10)) == want
    # mid-step (planned, not yet observed): the plan travels, so the restored allocator scores the same arms
    ctx = harness.make_ctx(48, step=10, group_size=8)
    a.allocator.initial(np.arange(16), ctx)
    c = GdroArmsAllocator()
    c.load_state_dict(pickle.loads(pickle.dumps(a.allocator.state_dict())))
    pools = [harness.obs(p, [p % 2] * 8) for p in range(16)]
    for alloc in (a.allocator, c):
        alloc.observe(ctx, pools, [])
    np.testing.assert_array_equal(c.scores, a.allocator.scores)
    assert c.steps == a.allocator.steps == 11 and c.mu == a.allocator.mu


def test_gdro_rollout_preset_loads_from_config():
    from rollwise.config import load_config

    cfg = load_config(None, ["--sampler.type=gdro_rollout", "--sampler.allocator.ema=0.2"])
    assert cfg.sampler.allocator.type == "gdro_arms" and cfg.sampler.allocator.ema == 0.2

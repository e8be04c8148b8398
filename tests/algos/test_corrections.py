"""Off-policy corrections (``algo.correction``): hand-computed weights, masks, anchors, ESS and penalties on tiny
tensors; through the update: micro-batched == full batch, the lr restored after a VCPO step, ``none`` as today,
the ratio against mu; config names and errors."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from rollwise.algos.corrections import (
    ArealDecoupled,
    CorrectionBatch,
    MaskedIS,
    TokenInputs,
    TruncatedIS,
    compute_loglinear_alpha,
    compute_staleness_metrics,
)
from rollwise.algos.corrections_policy import (
    MinPro,
    Remix,
    Vcpo,
    compute_ess,
    compute_min_prefix_ratio,
    compute_opob_advantages,
)
from rollwise.config import AlgoConfig, ConfigError, load_config
from rollwise.sampling import GroupObs, TrainGroup, TrainPlan
from rollwise.train.batch import build_train_batch, make_micro_batches
from rollwise.train.policy import compute_logprobs
from rollwise.train.setup import build_estimator
from rollwise.train.update import PolicyUpdate
from rollwise.types import Rollout

L = math.log


def F_pad(t, width):
    return torch.nn.functional.pad(t, (0, width - t.shape[1]))


def _cb(log_ratio, mask, versions=None, version=0):
    """A CorrectionBatch with behaviour 0 and pi_old = the given log ratios."""
    lr = torch.tensor(log_ratio, dtype=torch.float32)
    m = torch.tensor(mask, dtype=torch.float32)
    v = torch.full(m.shape, -1, dtype=torch.long) if versions is None else torch.tensor(versions)
    return CorrectionBatch(m, torch.zeros_like(lr), v, version, old=lr)


# ------------------------------------------------------------------ hand values
def test_tis_token_and_sequence_cap():
    p = TruncatedIS(level="token", cap=2.0).prepare(_cb([[L(3), 0.0, L(0.5)]], [[1, 1, 1]]))
    torch.testing.assert_close(p.weight, torch.tensor([[2.0, 1.0, 0.5]]))
    assert p.metrics["offpolicy/is_clip_frac"] == pytest.approx(1 / 3)
    assert (p.metrics["offpolicy/is_max"], p.metrics["offpolicy/is_min"]) == pytest.approx((3.0, 0.5))
    # sequence: the product over the row's tokens, one weight per rollout (padding stays 0)
    p = TruncatedIS(level="sequence", cap=2.0).prepare(_cb([[L(2), L(2)], [L(0.5), 7.0]], [[1, 1], [1, 0]]))
    torch.testing.assert_close(p.weight, torch.tensor([[2.0, 2.0], [0.5, 0.0]]))
    assert p.metrics["offpolicy/is_mean"] == pytest.approx((4 + 0.5) / 2)


def test_mis_masks_outside_the_bounds():
    cb = _cb([[L(3), 0.0, L(0.25), L(0.5)]], [[1, 1, 1, 1]])
    p = MaskedIS(level="token", upper=2.0).prepare(cb)  # lower = 1 / upper = 0.5
    torch.testing.assert_close(p.keep, torch.tensor([[0.0, 1.0, 0.0, 1.0]]))
    torch.testing.assert_close(p.weight, torch.tensor([[0.0, 1.0, 0.0, 0.5]]))
    assert p.metrics["offpolicy/is_mask_frac"] == pytest.approx(0.5)
    assert MaskedIS(is_weight=False).prepare(cb).weight is None
    # geometric: row 0 has geometric mean 2 (kept), row 1 has 3 (masked); sequence: products 4 and 3, both out
    cb = _cb([[L(4), 0.0], [L(9), 0.0]], [[1, 1], [1, 0]])
    p = MaskedIS(level="geometric", upper=2.0).prepare(cb)
    torch.testing.assert_close(p.keep, torch.tensor([[1.0, 1.0], [0.0, 0.0]]))
    torch.testing.assert_close(p.weight, torch.tensor([[4.0, 1.0], [0.0, 0.0]]))  # kept tokens: token ratios
    p = MaskedIS(level="sequence", upper=5.0, lower=3.5).prepare(cb)
    torch.testing.assert_close(p.keep, torch.tensor([[1.0, 1.0], [0.0, 0.0]]))
    torch.testing.assert_close(p.weight, torch.tensor([[4.0, 4.0], [0.0, 0.0]]))  # the sequence product


def test_areal_decoupled_weight_mask_clamp_and_sequence():
    cb = _cb([[L(6), L(2), L(0.5)]], [[1, 1, 1]])
    torch.testing.assert_close(ArealDecoupled().prepare(cb).weight, torch.tensor([[0.0, 2.0, 0.5]]))  # mask > 5
    p = ArealDecoupled(action="clamp", lower=1.0).prepare(cb)
    torch.testing.assert_close(p.weight, torch.tensor([[5.0, 2.0, 1.0]]))
    assert p.metrics["offpolicy/is_clip_frac"] == pytest.approx(2 / 3)
    # sequence level: the geometric mean of the token weights, sqrt(4 * 9) = 6 > 5 drops the whole row
    cb = _cb([[L(4), L(9)], [L(4), 0.0]], [[1, 1], [1, 0]])
    torch.testing.assert_close(ArealDecoupled(level="sequence").prepare(cb).weight,
                               torch.tensor([[0.0, 0.0], [4.0, 0.0]]))
    assert ArealDecoupled().prox == "always" and ArealDecoupled(prox="loglinear").prox == "never"


def test_areal_loglinear_prox_from_versions():
    versions = torch.tensor([[3, 2, -1, 4]])
    # step version 4: v_prox = 4, v_theta = 5; alpha = (4 - v) / (5 - v)
    torch.testing.assert_close(compute_loglinear_alpha(versions, 4), torch.tensor([[0.5, 2 / 3, 0.0, 0.0]]))
    logp = torch.tensor([[L(0.4), L(0.3), L(0.2), L(0.9)]], requires_grad=True)
    mu = torch.tensor([[L(0.1), L(0.6), L(0.5), L(0.2)]])
    x = TokenInputs(logp, torch.ones(1, 4), mu, versions, 4)
    t = ArealDecoupled(prox="loglinear", action="clamp", upper=100.0).tokens(x)
    alpha = torch.tensor([[0.5, 2 / 3, 0.0, 0.0]])
    expect_prox = mu + alpha * (logp.detach() - mu)
    torch.testing.assert_close(t.anchor, expect_prox)
    # w = pi_prox / mu = (pi_theta / mu)^alpha: 4^0.5 = 2, 0.5^(2/3), 1 (unknown version), 1 (fresh)
    torch.testing.assert_close(t.weight, torch.tensor([[2.0, 0.5 ** (2 / 3), 1.0, 1.0]]))
    assert not t.weight.requires_grad


def test_vcpo_ess_and_lr_scale_by_hand():
    # rows' log w sum to 0 and ln 3 (split over tokens): ESS = (1 + 3)^2 / (1 + 9) = 1.6, rho = 0.8
    cb = _cb([[0.0, 0.0], [L(1.5), L(2)]], [[1, 1], [1, 1]])
    _vcpo = lambda **k: Vcpo(baseline="estimator", **k)  # noqa: E731  the baseline is tested below
    p = _vcpo().prepare(cb)
    assert p.metrics["offpolicy/ess"] == pytest.approx(1.6)
    assert p.metrics["offpolicy/ess_frac"] == pytest.approx(0.8)
    assert p.lr_scale == pytest.approx(math.sqrt(0.8))
    assert _vcpo(rule="linear").prepare(cb).lr_scale == pytest.approx(0.8)
    assert _vcpo(rho_base=0.5).prepare(cb).lr_scale == 1.0  # min(1, rho / rho_base)
    torch.testing.assert_close(p.weight, torch.tensor([[1.0, 1.0], [3.0, 3.0]]))
    p = _vcpo(cap=2.0, use_clipped=True).prepare(cb)  # weights 1 and 2: ESS = 9 / 5
    assert p.metrics["offpolicy/ess"] == pytest.approx(1.8)
    torch.testing.assert_close(p.weight, torch.tensor([[1.0, 1.0], [2.0, 2.0]]))
    assert _vcpo(cap=None).prepare(cb).weight is None
    # scale-free and overflow-free: huge log weights give the ESS of their ratios
    assert float(compute_ess(torch.tensor([500.0, 500.0 + L(3)]))) == pytest.approx(1.6, rel=1e-4)


def test_opob_baseline_by_hand():
    # group 0: R = (1, 0, 0), w = (1, 2, 1), |g|^2 = (1, 1, 4): q = w^2 |g|^2 = (1, 4, 4), b* = 1 / 9; Bessel
    # std of (1, 0, 0) = sqrt(1/3). Group 1: all q = 0 -> its reward mean 0.5. Group 2: one rollout (verl's rule:
    # mean 0, std 1) with q > 0 -> b* = its own reward.
    r = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0, 0.7])
    gi = torch.tensor([0, 0, 0, 1, 1, 2])
    w = torch.tensor([1.0, 2.0, 1.0, 0.0, 0.0, 1.0])
    gsq = torch.tensor([1.0, 1.0, 4.0, 3.0, 3.0, 2.0])
    adv, base, _ = compute_opob_advantages(r, gi, w, gsq, 3)
    torch.testing.assert_close(base, torch.tensor([1 / 9, 0.5, 0.7]))
    s0, s1 = math.sqrt(1 / 3), math.sqrt(0.5)
    expect = [(8 / 9) / (s0 + 1e-6), (-1 / 9) / (s0 + 1e-6), (-1 / 9) / (s0 + 1e-6), 0.5 / (s1 + 1e-6),
              -0.5 / (s1 + 1e-6), 0.0]
    torch.testing.assert_close(adv, torch.tensor(expect))
    adv, _, _ = compute_opob_advantages(r, gi, w, gsq, 3, norm_by_std=False)
    torch.testing.assert_close(adv, torch.tensor([8 / 9, -1 / 9, -1 / 9, 0.5, -0.5, 0.0]))
    # equal weights and norms: b* is the group mean, so OPOB is GRPO
    adv, base, _ = compute_opob_advantages(r[:3], gi[:3], torch.ones(3), torch.ones(3), 1)
    torch.testing.assert_close(base, torch.tensor([1 / 3]))
    # through Vcpo.prepare: w is the truncated sequence weight the loss applies (cap 8 -> rows 1 and 8)
    cb = _cb([[0.0, 0.0], [L(4), L(4)]], [[1, 1], [1, 1]])
    cb.rewards, cb.group_index, cb.grad_sq = torch.tensor([1.0, 0.0]), torch.tensor([0, 0]), torch.tensor([2.0, 1.0])
    p = Vcpo().prepare(cb)  # q = (1 * 2, 64 * 1): b* = 2 / 66
    b = 2 / 66
    std = math.sqrt(0.5)
    torch.testing.assert_close(p.advantages, torch.tensor([(1 - b) / (std + 1e-6), -b / (std + 1e-6)]))
    assert p.metrics["offpolicy/opob_shift"] == pytest.approx(abs(b - 0.5))
    with pytest.raises(ValueError, match="gradient norms"):
        Vcpo().prepare(_cb([[0.0]], [[1]]))


def test_opob_grad_norms_are_each_rollouts_score_gradient(tiny_model):
    """The update's |g_i|^2 is the squared norm of grad sum_t log pi(y_t) of rollout i alone (token-mean), and
    the advantages the loss sees are OPOB's."""
    batch = _batch()
    cfg = AlgoConfig(micro_batch=5, correction="vcpo", aggregation="token-mean")
    o = PolicyUpdate(copy.deepcopy(tiny_model), torch.optim.SGD(tiny_model.parameters(), lr=0.0), cfg,
                     temperature=1.0, norm_length=8)
    micro = make_micro_batches(batch, 5, 0, torch.device("cpu"))
    got = o._grad_sq(micro)
    model = copy.deepcopy(tiny_model)
    for k in (0, 7):
        mb, i = micro[k // 5], k % 5
        model.zero_grad()
        logp, _ = compute_logprobs(model, mb.seq, 1.0)
        (logp[i] * mb.seq.completion_mask[i]).sum().backward()
        want = sum(float((p.grad.double() ** 2).sum()) for p in model.parameters() if p.grad is not None)
        assert float(got[k]) == pytest.approx(want, rel=1e-5)
    o.prepare(micro, batch)
    rewards = torch.tensor([r.reward for r in batch.rollouts])
    old = torch.cat([F_pad(mb.old, 8) for mb in micro])
    beh = torch.cat([F_pad(mb.behaviour, 8) for mb in micro])
    mask = torch.cat([F_pad(mb.seq.completion_mask, 8) for mb in micro])
    w = torch.exp(((old - beh) * mask).sum(-1).clamp(-20, 20)).clamp(max=8.0)
    expect, _, _ = compute_opob_advantages(rewards, batch.group_index, w, got, len(batch.groups))
    torch.testing.assert_close(torch.cat([mb.advantages for mb in micro]), expect)


def test_opob_refuses_shapers():
    with pytest.raises(ConfigError, match=r"algo\.correction: .*replaces the advantages"):
        load_config(None, ["--algo.correction=vcpo", '--algo.shaping=[{type="mssr_entropy"}]'])
    assert load_config(None, ['--algo.correction={type="vcpo", baseline="estimator"}',
                              '--algo.shaping=[{type="mssr_entropy"}]']).algo.correction.baseline == "estimator"


def test_minpro_min_prefix_ratio():
    lr = torch.tensor([[L(2), L(0.5), 0.0, L(4), 0.0]])
    m = torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.0]])  # the last column is padding
    torch.testing.assert_close(compute_min_prefix_ratio(lr, m), torch.tensor([[1.0, 2.0, 0.5, 0.5, 0.0]]))
    torch.testing.assert_close(compute_min_prefix_ratio(lr, m, cap_at_one=True),
                               torch.tensor([[1.0, 1.0, 0.5, 0.5, 0.0]]))
    torch.testing.assert_close(compute_min_prefix_ratio(lr, m, strict=False),
                               torch.tensor([[2.0, 0.5, 0.5, 0.5, 0.0]]))
    logp = lr.clone().requires_grad_(True)
    t = MinPro().tokens(TokenInputs(logp, m, torch.zeros_like(lr), torch.zeros_like(lr, dtype=torch.long), 0))
    torch.testing.assert_close(t.weight, torch.tensor([[1.0, 2.0, 0.5, 0.5, 0.0]]))
    assert not t.weight.requires_grad and torch.equal(t.anchor, torch.zeros_like(lr))  # ratio vs mu


def test_remix_anchor_is_mu_and_kl_convex_penalty():
    logp = torch.tensor([[L(0.5), L(0.5)]], requires_grad=True)
    mu = torch.tensor([[L(0.1), L(0.2)]])
    ref = torch.tensor([[L(0.25), L(0.5)]])
    old = torch.tensor([[L(0.5), L(1.0)]])
    x = TokenInputs(logp, torch.ones(1, 2), mu, torch.zeros(1, 2, dtype=torch.long), 0, old=old, ref=ref)
    t = Remix(kl_coef=0.1, lam=0.25).tokens(x)
    assert torch.equal(t.anchor, mu)
    k3 = lambda q, p: q / p - math.log(q / p) - 1  # noqa: E731  exp(d) - d - 1, d = log q - log p
    expect = [0.1 * (0.25 * k3(0.25, 0.5) + 0.75 * k3(0.5, 0.5)), 0.1 * (0.25 * k3(0.5, 0.5) + 0.75 * k3(1.0, 0.5))]
    torch.testing.assert_close(t.penalty, torch.tensor([expect]))
    assert t.penalty.requires_grad
    r = Remix()
    assert r.needs == {"reference"} and r.prox == "always"
    assert Remix(kl_coef=0.0).needs == frozenset() and Remix(kl_coef=0.0).prox == "never"
    r = Remix(reincarnate_at=3)
    assert [r.reset_reference(v) for v in (1, 3, 4)] == [False, True, False]


def test_staleness_metrics():
    versions = torch.tensor([[4, 3, -1], [0, 9, 9], [-12, 2, 0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    m = compute_staleness_metrics(versions, 5, mask)
    assert m["offpolicy/stale_mean"] == pytest.approx((1 + 2 + 5 + 3) / 4)
    assert m["offpolicy/stale_max"] == 5
    assert m["offpolicy/stale_unknown_frac"] == pytest.approx(1 / 5)
    assert m["trace/stale_hist"] == [0, 1, 1, 1, 0, 1, 0, 0, 0]
    assert compute_staleness_metrics(torch.tensor([[0]]), 30, torch.ones(1, 1))["trace/stale_hist"][-1] == 1  # 8+
    assert compute_staleness_metrics(torch.tensor([[-1]]), 3, torch.ones(1, 1)) == {}


# ------------------------------------------------------------------ through the update
def _batch(version: int = 4, seed: int = 0):
    """12 rollouts in 4 uneven groups with behaviour logprobs away from the policy and mixed token versions."""
    g = torch.Generator().manual_seed(seed)
    groups = []
    for p, k in enumerate([3, 2, 4, 3]):
        rs = []
        for j in range(k):
            plen, clen = int(torch.randint(2, 6, (1,), generator=g)), int(torch.randint(2, 6, (1,), generator=g))
            beh = (-2.0 * torch.rand(clen, generator=g) - 3.0).tolist()
            vers = torch.randint(version - 3, version + 1, (clen,), generator=g).sort().values.tolist()
            rs.append(Rollout(p, torch.randint(3, 90, (plen,), generator=g).tolist(),
                              torch.randint(3, 90, (clen,), generator=g).tolist(), beh, "x", "stop",
                              policy_version=min(vers), reward=float((j + p) % 2), versions=vers))
        groups.append(rs)
    est = build_estimator(load_config(None, []))
    obs = [GroupObs(p, np.array([r.reward for r in rs]), np.array([r.num_tokens for r in rs]))
           for p, rs in enumerate(groups)]
    plan = [TrainGroup(p, np.arange(len(rs)), adv, rs, 1.0)
            for p, (rs, (adv, _)) in enumerate(zip(groups, est(obs, [None] * len(obs))))]
    return build_train_batch(TrainPlan(plan), version=version)


def _run(model, cfg, micro_size, batch=None, opt=None, ref=None):
    batch = batch or _batch()
    opt = opt or torch.optim.SGD(model.parameters(), lr=0.5)
    o = PolicyUpdate(model, opt, cfg, temperature=1.0, norm_length=8, ref_model=ref)
    micro = make_micro_batches(batch, micro_size, 0, torch.device("cpu"))
    o.prepare(micro, batch)
    metrics, rows, ok = o.run(micro, len(batch.rollouts))
    assert ok
    return o, micro, metrics, rows


def _flat(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


@pytest.mark.parametrize("correction", [
    {"type": "tis", "level": "sequence", "cap": 3.0},
    {"type": "mis", "level": "geometric", "upper": 1.5},
    {"type": "areal", "level": "sequence", "action": "clamp"},
    {"type": "areal", "prox": "loglinear"},
    {"type": "vcpo"},
    {"type": "minpro"},
    {"type": "remix", "kl_coef": 0.1},
])
def test_micro_batched_equals_full_batch(tiny_model, correction):
    results = []
    for micro_size in (12, 5):
        model = copy.deepcopy(tiny_model)
        cfg = AlgoConfig(micro_batch=micro_size, grad_clip=1e9, correction=correction, aggregation="token-mean")
        _, _, metrics, rows = _run(model, cfg, micro_size, ref=copy.deepcopy(tiny_model))
        results.append((_flat(model), metrics, rows))
    assert not torch.allclose(results[0][0], _flat(tiny_model))
    params, metrics, rows = results[1]
    torch.testing.assert_close(params, results[0][0], atol=1e-5, rtol=0)
    torch.testing.assert_close(rows, results[0][2], atol=1e-5, rtol=0)
    for k, v in results[0][1].items():  # whole-batch metrics are exact
        if k.startswith(("offpolicy/stale", "offpolicy/ess", "offpolicy/lr_scale", "loss/total")):
            assert metrics[k] == pytest.approx(v, abs=1e-5), k
    assert results[0][1]["offpolicy/stale_max"] == 3 and "trace/stale_hist" in results[0][1]


def test_vcpo_scales_this_step_and_restores_the_lr(tiny_model):
    model = copy.deepcopy(tiny_model)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    seen = []
    step = opt.step
    opt.step = lambda *a, **k: (seen.append(opt.param_groups[0]["lr"]), step(*a, **k))[1]
    _, _, metrics, _ = _run(model, AlgoConfig(micro_batch=5, mini_batches=2, correction="vcpo"), 5, opt=opt)
    scale = metrics["offpolicy/lr_scale"]
    assert 0 < scale < 1 and seen == pytest.approx([0.5 * scale] * 2)
    assert opt.param_groups[0]["lr"] == 0.5


def test_none_is_the_builtin_behaviour_weight(tiny_model):
    """Default ``none``: pi_old recomputed for off-policy rollouts and the loss's own weight capped at
    behaviour_is_cap, which is exactly token TIS with the same cap."""
    assert AlgoConfig().correction.type == "none"
    batch = _batch()
    a, b = copy.deepcopy(tiny_model), copy.deepcopy(tiny_model)
    _, micro, m_none, rows_none = _run(a, AlgoConfig(micro_batch=5, behaviour_is_cap=3.0), 5, batch=batch)
    assert all(mb.old is not None and mb.is_weight is None for mb in micro) and "loss/behaviour_is_mean" in m_none
    _, _, m_tis, rows_tis = _run(b, AlgoConfig(micro_batch=5, behaviour_is_cap=None,
                                               correction={"type": "tis", "cap": 3.0}), 5, batch=batch)
    torch.testing.assert_close(_flat(a), _flat(b), atol=1e-6, rtol=0)
    torch.testing.assert_close(rows_none, rows_tis)
    assert "loss/behaviour_is_mean" not in m_tis  # the loss's own weight is off under a correction
    # on-policy, one pass: no pi_old pass, no weight, as before
    fresh = _batch(version=0)
    for r in fresh.rollouts:
        r.versions, r.policy_version = [], 0
    fresh.off_policy[:] = False
    _, micro, metrics, _ = _run(copy.deepcopy(tiny_model), AlgoConfig(micro_batch=5), 5, batch=fresh)
    assert all(mb.old is None for mb in micro) and "loss/behaviour_is_mean" not in metrics
    assert metrics["offpolicy/stale_max"] == 0  # versions fall back to policy_version


def test_remix_ratio_is_against_mu(tiny_model):
    batch = _batch()
    _, micro, metrics, _ = _run(copy.deepcopy(tiny_model), AlgoConfig(micro_batch=12, lr=1e-9,
                                correction={"type": "remix", "kl_coef": 0.0}), 12, batch=batch,
                                opt=torch.optim.SGD(tiny_model.parameters(), lr=0.0))
    mb = micro[0]
    logp, _ = compute_logprobs(tiny_model, mb.seq, 1.0)
    m = mb.seq.completion_mask
    expect = (torch.exp(logp - mb.behaviour) * m).sum() / m.sum()
    assert metrics["loss/ratio_mean"] == pytest.approx(float(expect.detach()), rel=1e-4)
    assert all(mb.old is None for mb in micro)  # no pi_prox pass without the KL-convex term


def test_mis_mask_leaves_the_denominator(tiny_model):
    _, micro, metrics, _ = _run(copy.deepcopy(tiny_model), AlgoConfig(micro_batch=5, correction={
        "type": "mis", "upper": 2e9, "lower": 1e9}), 5)  # every ratio is below the lower bound
    assert metrics["offpolicy/is_mask_frac"] == 1.0 and all(float(mb.token_mask.sum()) == 0 for mb in micro)


# ------------------------------------------------------------------ config
@pytest.mark.parametrize("name", ["none", "tis", "mis", "areal", "vcpo", "minpro", "remix"])
def test_config_names_load(name):
    assert load_config(None, [f"--algo.correction={name}"]).algo.correction.type == name


def test_config_knobs_and_errors():
    c = load_config(None, ['--algo.correction={type="areal", prox="loglinear", upper=3}']).algo.correction
    assert (c.prox, c.upper, c.level) == ("loglinear", 3.0, "token")
    with pytest.raises(ConfigError, match=r"algo\.correction\.type: unknown off-policy correction 'tiss'; did you"):
        load_config(None, ["--algo.correction=tiss"])
    with pytest.raises(ConfigError, match=r"algo\.correction\.capp: unknown key"):
        load_config(None, ['--algo.correction={type="tis", capp=3}'])


def test_remix_reincarnation_resets_the_reference_and_tells_the_sampler(tiny_model):
    model, ref = copy.deepcopy(tiny_model), copy.deepcopy(tiny_model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)
    cfg = AlgoConfig(micro_batch=12, correction={"type": "remix", "reincarnate_at": 4})
    o = PolicyUpdate(model, torch.optim.SGD(model.parameters(), lr=0.0), cfg, 1.0, 8, ref_model=ref)
    batch = _batch(version=4)
    o.prepare(make_micro_batches(batch, 12, 0, torch.device("cpu")), batch)
    torch.testing.assert_close(_flat(ref), _flat(model))  # reference <- current weights
    assert o.take_events() == {"policy_reset"} and o.take_events() == set()
    o.prepare(make_micro_batches(batch, 12, 0, torch.device("cpu")), batch)
    assert o.take_events() == set()  # once

"""Shapers and the HAPO loss inside the policy update: micro-batched == full batch, the reference built when a
shaper needs it, ACE's scale through the update, and the engine feedback that turns on the behaviour-IS weight."""

from __future__ import annotations

import copy
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from rollwise.config import AlgoConfig, load_config
from rollwise.sampling import GroupObs, TrainGroup, TrainPlan
from rollwise.train.batch import build_train_batch, make_micro_batches
from rollwise.train.setup import build_estimator
from rollwise.train.update import PolicyUpdate, UpdateParts
from rollwise.types import Rollout


def _batch(estimator: str = "grpo", seed: int = 0):
    """12 rollouts in 4 groups of unequal size, through the trainer's estimator callable."""
    g = torch.Generator().manual_seed(seed)
    groups = []
    for p, k in enumerate([3, 2, 4, 3]):
        rs = []
        for j in range(k):
            plen, clen = int(torch.randint(2, 6, (1,), generator=g)), int(torch.randint(1, 6, (1,), generator=g))
            rs.append(Rollout(p, torch.randint(3, 90, (plen,), generator=g).tolist(),
                              torch.randint(3, 90, (clen,), generator=g).tolist(), [-1.0] * clen, "x", "stop",
                              reward=float((j + p) % 2)))
        groups.append(rs)
    est = build_estimator(load_config(None, [f"--algo.advantage={estimator}"]))
    obs = [GroupObs(p, np.array([r.reward for r in rs]), np.array([r.num_tokens for r in rs]))
           for p, rs in enumerate(groups)]
    plan = [TrainGroup(p, np.arange(len(rs)), adv, rs, 1.0)
            for p, (rs, (adv, _)) in enumerate(zip(groups, est(obs, [None] * len(obs))))]
    return build_train_batch(TrainPlan(plan), version=0)


def _run(model, batch, cfg, micro_size, ref=None, engine=None):
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    o = PolicyUpdate(model, opt, cfg, temperature=1.0, norm_length=8, ref_model=ref)
    if engine is not None:
        o.feed(engine)
    micro = make_micro_batches(batch, micro_size, 0, torch.device("cpu"))
    o.prepare(micro, batch)
    metrics, per_row, ok = o.run(micro, len(batch.rollouts))
    assert ok
    return o, micro, metrics, per_row


@pytest.mark.parametrize("setup, epochs", [
    (dict(shaping=["ace", "mssr_entropy"], aggregation="seq-mean-token-mean"), 2),
    (dict(shaping=[{"type": "mssr_entropy", "kappa1": 2.0}], loss="hapo", aggregation="token-mean"), 1),
    (dict(shaping=["ace"], loss="hapo", aggregation="seq-mean-token-sum-norm", dual_clip=3.0), 2),
])
def test_micro_batched_equals_full_batch_with_shapers(tiny_model, setup, epochs):
    batch = _batch("hapo" if setup.get("loss") == "hapo" else "grpo")
    ref = copy.deepcopy(tiny_model)
    with torch.no_grad():  # a reference that differs from the policy, so ACE's shift is not 0
        for p in ref.parameters():
            p.add_(0.05 * torch.randn_like(p))
    results = []
    for micro_size in (12, 5, 2):
        model = copy.deepcopy(tiny_model)
        cfg = AlgoConfig(micro_batch=micro_size, grad_clip=1e9, epochs=epochs, **setup)
        _, _, metrics, rows = _run(model, batch, cfg, micro_size, ref=ref)
        results.append((torch.cat([p.detach().flatten() for p in model.parameters()]), metrics, rows))
    assert not torch.allclose(results[0][0], torch.cat([p.flatten() for p in tiny_model.parameters()]))
    for params, metrics, rows in results[1:]:
        torch.testing.assert_close(params, results[0][0], atol=1e-5, rtol=0)
        torch.testing.assert_close(rows, results[0][2], atol=1e-5, rtol=0)
        for k in ("loss/total", "loss/mssr_entropy_term_mean", "loss/ace_scale_mean"):  # whole-batch metrics
            if k in results[0][1]:
                assert metrics[k] == pytest.approx(results[0][1][k], abs=1e-5), k



def needs_reference(cfg) -> bool:
    """The trainer's rule: a reference model is built when the built update parts ask for one."""
    return UpdateParts.build(cfg.algo).wants_reference(cfg.algo.kl_coef)

def test_ace_through_the_update_with_an_identical_reference(tiny_model):
    """Reference == policy: c_i = 0, so every incorrect rollout's advantage is scaled by 1 + alpha ln 2."""
    batch = _batch()
    cfg = AlgoConfig(micro_batch=5, shaping=[{"type": "ace", "alpha": 0.5}])
    o = PolicyUpdate(tiny_model, torch.optim.SGD(tiny_model.parameters(), lr=0.0), cfg, 1.0, 8,
                     ref_model=copy.deepcopy(tiny_model))
    micro = make_micro_batches(batch, 5, 0, torch.device("cpu"))
    o.prepare(micro, batch)
    for mb in micro:
        a = batch.advantages[mb.rows]
        expect = torch.where(a < 0, a * (1 + 0.5 * math.log(2)), a)[:, None] * mb.seq.completion_mask
        torch.testing.assert_close(mb.advantages, expect, atol=1e-5, rtol=0)


def test_reference_is_built_when_a_component_needs_it(tiny_model):
    assert not needs_reference(load_config(None, []))
    assert needs_reference(load_config(None, ["--algo.kl_coef=0.01"]))
    assert needs_reference(load_config(None, ['--algo.shaping=["ace"]']))
    assert not needs_reference(load_config(None, ['--algo.shaping=["mssr_entropy"]', "--algo.loss=hapo"]))
    with pytest.raises(ValueError, match="reference"):
        PolicyUpdate(tiny_model, torch.optim.SGD(tiny_model.parameters(), lr=0.1), AlgoConfig(shaping=["ace"]),
                     1.0, 8)


def test_hapo_feedback_reaches_the_engine_and_turns_on_behaviour_is(tiny_model):
    class Engine:
        samples_off_policy = False

        def observe_update(self, feedback):
            self.seen = feedback
            self.samples_off_policy = True

    batch = _batch("hapo")
    cfg = AlgoConfig(micro_batch=5, loss="hapo", behaviour_is_cap=5.0)
    engine = Engine()
    o, micro, metrics, _ = _run(copy.deepcopy(tiny_model), batch, cfg, 5)
    assert all(mb.old is None for mb in micro) and "loss/behaviour_is_mean" not in metrics  # on-policy step
    norm = o.feedback["entropy_norm"]
    assert norm.std > 0 and norm.scale_pos > 0 and norm.scale_neg > 0
    o.feed(engine)
    assert engine.seen["entropy_norm"] == norm and o.engine_off_policy
    micro = make_micro_batches(batch, 5, 0, torch.device("cpu"))
    o.prepare(micro, batch)
    assert all(mb.old is not None for mb in micro)  # pi_old recomputed: the rollouts get the IS weight
    metrics, _, ok = o.run(micro, len(batch.rollouts))
    assert ok and "loss/behaviour_is_mean" in metrics


def test_engine_without_feedback_methods_is_fine(tiny_model):
    o = PolicyUpdate(tiny_model, torch.optim.SGD(tiny_model.parameters(), lr=0.1), AlgoConfig(), 1.0, 8)
    o.feed(SimpleNamespace())
    assert not o.engine_off_policy

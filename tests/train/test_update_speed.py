"""The update's speed knobs change no result: AdamW's loop, foreach and fused implementations
(``algo.optimizer_impl``) and the compiled forward (``algo.compile``) give the same parameters and optimiser
state as the plain update, to float rounding."""

import copy

import pytest
import torch

from rollwise.config import AlgoConfig, load_config
from rollwise.train import update as update_mod
from rollwise.train.batch import make_micro_batches
from rollwise.train.setup import OPTIMIZER_IMPLS, build_optimizer
from rollwise.train.update import PolicyUpdate
from tests.train.test_policy_and_batch import _batch, _rollouts


def _updates(tiny_model, algo: dict, steps: int = 2):
    """``steps`` updates of the same batch with the optimiser ``build_optimizer`` makes for ``algo``: the flat
    parameters and AdamW's two moments."""
    groups, pools = _rollouts(5, seed=1)
    batch = _batch(groups, pools, "grpo")
    model = copy.deepcopy(tiny_model)
    cfg = load_config(None, [f"--algo.{k}={v}" for k, v in algo.items()] + ["--algo.lr=1e-2",
                                                                            "--algo.weight_decay=0.1"])
    opt, _ = build_optimizer(cfg, model)
    upd = PolicyUpdate(model, opt, cfg.algo, temperature=1.0, norm_length=8)
    for _ in range(steps):
        micro = make_micro_batches(batch, 4, 0, torch.device("cpu"))
        upd.prepare(micro, batch)
        _, _, ok = upd.run(micro, len(batch.rollouts))
        assert ok
    flat = torch.cat([p.detach().flatten() for p in model.parameters()])
    moments = [torch.cat([s[k].flatten() for s in opt.state.values()]) for k in ("exp_avg", "exp_avg_sq")]
    return flat, moments, opt


def test_optimizer_impls_are_the_same_update(tiny_model):
    base = torch.cat([p.detach().flatten() for p in tiny_model.parameters()])
    ref, (m_ref, v_ref), opt = _updates(tiny_model, {"optimizer_impl": "loop"})
    assert opt.defaults["foreach"] is False and opt.defaults["fused"] is False
    assert (ref - base).abs().max() > 1e-3  # two steps at lr 1e-2 moved the weights
    for impl in ("foreach", "fused"):
        got, (m, v), opt = _updates(tiny_model, {"optimizer_impl": impl})
        assert all(opt.defaults[k] == val for k, val in OPTIMIZER_IMPLS[impl].items())
        # Adam divides by sqrt(v): where a gradient is near 0 a rounding difference is magnified, so the bound is
        # one thousandth of a step (lr 1e-2), not float epsilon
        torch.testing.assert_close(got, ref, atol=1e-5, rtol=0)
        torch.testing.assert_close(m, m_ref, atol=1e-5 * float(m_ref.abs().max()), rtol=0)
        torch.testing.assert_close(v, v_ref, atol=1e-5 * float(v_ref.abs().max()), rtol=0)


def test_default_optimizer_is_fused():
    assert AlgoConfig().optimizer_impl == "fused" and AlgoConfig().compile is False


def test_unknown_optimizer_impl_is_a_one_line_error():
    with pytest.raises(Exception, match="optimizer_impl"):
        load_config(None, ["--algo.optimizer_impl=turbo"])


def test_compiled_forward_is_the_same_update(tiny_model, monkeypatch):
    """``algo.compile`` routes the trainer's forwards through ``torch.compile`` of the same module (shared
    weights). The graph is traced by dynamo and run by its eager backend here (inductor's C++ build takes
    minutes on these CPUs; bench/profile_update.py times it): same parameters as the uncompiled update."""
    torch._dynamo.reset()
    monkeypatch.setattr(update_mod, "COMPILE_OPTIONS", {"dynamic": True, "backend": "eager"})
    ref, (m_ref, _), _ = _updates(tiny_model, {"optimizer_impl": "fused"}, steps=1)
    got, (m, _), _ = _updates(tiny_model, {"optimizer_impl": "fused", "compile": "true"}, steps=1)
    torch.testing.assert_close(got, ref, atol=1e-6, rtol=0)
    torch.testing.assert_close(m, m_ref, atol=1e-5 * float(m_ref.abs().max()), rtol=0)
    torch._dynamo.reset()

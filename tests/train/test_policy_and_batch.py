import copy
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from rollwise.config import AlgoConfig, load_config
from rollwise.sampling import GroupObs, TrainGroup, TrainPlan
from rollwise.train import policy
from rollwise.train.batch import build_train_batch, make_micro_batches
from rollwise.train.policy import build_seq_batch, compute_logprobs, length_buckets_of
from rollwise.train.setup import build_estimator
from rollwise.train.update import PolicyUpdate as Optimiser
from rollwise.types import Rollout


def test_seq_batch_layout():
    b = build_seq_batch([[5, 6, 7], [8]], [[9, 1], [10, 11, 1]], pad_id=0)
    assert b.input_ids.tolist() == [[5, 6, 7, 9, 1, 0], [0, 0, 8, 10, 11, 1]]
    assert b.attention_mask.tolist() == [[1, 1, 1, 1, 1, 0], [0, 0, 1, 1, 1, 1]]
    assert b.position_ids[1].tolist()[2:] == [0, 1, 2, 3]
    assert b.completion_mask.tolist() == [[1, 1, 0], [1, 1, 1]]


def test_logprobs_match_unpadded_forward(tiny_model):
    tiny_model.eval()
    prompts, comps = [[5, 6, 7, 8], [9, 10]], [[11, 12, 1], [13, 1]]
    b = build_seq_batch(prompts, comps, 0)
    lp, ent = compute_logprobs(tiny_model, b, temperature=0.7, with_entropy=True)
    for i, (p, c) in enumerate(zip(prompts, comps)):
        ids = torch.tensor([p + c])
        logits = tiny_model(ids).logits[0, len(p) - 1 : -1] / 0.7
        ref = torch.log_softmax(logits, -1).gather(-1, torch.tensor(c)[:, None]).squeeze(-1)
        assert torch.allclose(lp[i, : len(c)], ref, atol=1e-5)
        assert (ent[i, : len(c)] > 0).all()
    assert lp[1, 2] == 0  # padding masked


def _rollouts(n: int, seed: int = 0) -> tuple[list[TrainGroup], dict[int, list[Rollout]]]:
    g = torch.Generator().manual_seed(seed)
    pools, groups = {}, []
    sizes = [3, 1, 5, 2, 4]  # unequal groups, one singleton
    for p, k in enumerate(sizes[:n]):
        rs = []
        for _ in range(k):
            plen, clen = int(torch.randint(2, 6, (1,), generator=g)), int(torch.randint(1, 5, (1,), generator=g))
            rs.append(Rollout(p, torch.randint(3, 90, (plen,), generator=g).tolist(),
                              torch.randint(3, 90, (clen,), generator=g).tolist(), [-1.0] * clen, "x", "stop",
                              reward=float(torch.rand(1, generator=g) > 0.5)))
        pools[p] = rs
        groups.append(SimpleNamespace(prompt=p, keep=np.arange(k), weight=1.0))
    return groups, pools


def _batch(groups, pools, estimator: str = "grpo"):
    """The sampler's path to a train batch: the configured estimator over each whole pool (through the
    trainer's injected callable), then the kept rows with their advantages times the group weight."""
    est = build_estimator(load_config(None, [f"--algo.advantage={estimator}"]))
    obs = [GroupObs(g.prompt, np.array([r.reward for r in pools[g.prompt]]), np.ones(len(pools[g.prompt])))
           for g in groups]
    plan = []
    for g, (adv, ok) in zip(groups, est(obs, [None] * len(obs))):
        k = g.keep[ok[g.keep]]
        plan.append(TrainGroup(g.prompt, k, adv[k] * g.weight, [pools[g.prompt][i] for i in k], g.weight))
    return build_train_batch(TrainPlan(plan), version=0)


@pytest.mark.parametrize("aggregation", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"])
@pytest.mark.parametrize("loss", ["ppo", "gspo"])
def test_micro_batched_equals_full_batch(tiny_model, aggregation, loss):
    groups, pools = _rollouts(5)
    batch = _batch(groups, pools, "grpo")
    assert len(batch.rollouts) == 15
    results = []
    for micro_size in (15, 4, 1):
        model = copy.deepcopy(tiny_model)
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
        cfg = AlgoConfig(loss=loss, aggregation=aggregation, micro_batch=micro_size, grad_clip=1e9, epochs=2)
        o = Optimiser(model, opt, cfg, temperature=1.0, norm_length=8)
        micro = make_micro_batches(batch, micro_size, 0, torch.device("cpu"))
        o.prepare(micro, batch)
        metrics, per_row, ok = o.run(micro, len(batch.rollouts))
        assert ok
        results.append((torch.cat([p.detach().flatten() for p in model.parameters()]), metrics["loss/total"],
                        per_row))
    base = torch.cat([p.detach().flatten() for p in tiny_model.parameters()])
    assert not torch.allclose(results[0][0], base)  # it learned something
    for params, total, rows in results[1:]:
        assert torch.allclose(params, results[0][0], atol=1e-5)
        assert total == pytest.approx(results[0][1], abs=1e-5)
        assert torch.allclose(rows, results[0][2], atol=1e-5)


def test_advantages_over_unequal_groups_and_weights():
    groups, pools = _rollouts(5)
    groups[2].weight = 2.0
    batch = _batch(groups, pools, "dr_grpo")
    for gi, g in enumerate(groups):
        rows = (batch.group_index == gi).nonzero().squeeze(-1)
        r = torch.tensor([pools[g.prompt][i].reward for i in range(len(rows))])
        expect = (r - r.mean()) if len(r) > 1 else r  # verl convention: a singleton keeps A = r
        assert torch.allclose(batch.advantages[rows], expect * g.weight)


def test_mc_grpo_drops_pivots():
    groups, pools = _rollouts(5)
    batch = _batch(groups, pools, "mc_grpo")
    assert len(batch.rollouts) == 15 - 5  # one pivot per group


def test_advantages_use_the_whole_pool_then_keep_selected():
    rs = [Rollout(0, [5], [6, 1], [-1.0, -1.0], "x", "stop", reward=r) for r in [1.0, 0.0, 0.0, 0.0]]
    # the sampler keeps rollouts 0 and 1 only: the advantages still use the pool mean 0.25 (D3S, Reinforce-Ada)
    batch = _batch([SimpleNamespace(prompt=0, keep=np.array([0, 1]), weight=1.0)], {0: rs}, "dr_grpo")
    assert torch.allclose(batch.advantages, torch.tensor([0.75, -0.25]))
    assert [r is rs[0] or r is rs[1] for r in batch.rollouts] == [True, True]


def test_seq_batch_maps_rows_to_distinct_prompts():
    b = build_seq_batch([[5, 6], [7], [5, 6], [5, 6], [7, 8]], [[9]] * 5, pad_id=0)
    assert b.prefix_rows.tolist() == [0, 1, 4]
    assert b.prefix_index.tolist() == [0, 1, 0, 0, 2]
    assert b.num_distinct_prompts == 3


def _grouped(sizes: list[int], seed: int = 0) -> tuple[list[list[int]], list[list[int]]]:
    """Rows of GRPO groups: every row of group k has prompt k; prompts and completions of ragged lengths."""
    g = torch.Generator().manual_seed(seed)
    prompts, comps = [], []
    for k in sizes:
        p = torch.randint(3, 90, (int(torch.randint(2, 7, (1,), generator=g)),), generator=g).tolist()
        for _ in range(k):
            prompts.append(p)
            comps.append(torch.randint(3, 90, (int(torch.randint(1, 6, (1,), generator=g)),), generator=g).tolist())
    return prompts, comps


@pytest.mark.parametrize("T", [1.0, 0.7])
@pytest.mark.parametrize("share,buckets", [(True, 1), (False, 3), (True, 3)])
def test_shared_prefix_and_length_buckets_equal_full_rows(tiny_model, T, share, buckets, monkeypatch):
    """One prompt forward per group + completion forwards on the gathered cache, and/or the completion part
    split into length buckets, is the same function: log-probs, entropies and parameter gradients equal those
    of the full [B, P + C] rows in one forward."""
    monkeypatch.setattr(policy, "BUCKET_OVERHEAD_TOKENS", 0)  # split even this small batch
    prompts, comps = _grouped([3, 1, 5, 2])
    comps[0] = comps[0][:1]
    comps[4] = (comps[4] * 8)[:12]  # one long completion: most rows would be padding without buckets
    b = build_seq_batch(prompts, comps, 0)
    assert b.num_distinct_prompts == 4
    assert len(length_buckets_of(b.completion_mask.sum(-1).long().tolist(), buckets)) == buckets
    w = torch.randn(b.completion_mask.shape, generator=torch.Generator().manual_seed(1))  # [B, C] weights
    out = {}
    for key, kw in (("full", {}), ("fast", {"share_prefix": share, "length_buckets": buckets})):
        tiny_model.zero_grad(set_to_none=True)
        lp, ent = compute_logprobs(tiny_model, b, temperature=T, with_entropy=True, **kw)
        (lp * w).sum().backward()
        out[key] = lp.detach(), ent.detach() * b.completion_mask, [p.grad.clone() for p in tiny_model.parameters()]
    torch.testing.assert_close(out["fast"][0], out["full"][0], atol=1e-5, rtol=0)
    torch.testing.assert_close(out["fast"][1], out["full"][1], atol=1e-5, rtol=0)
    for g_fast, g_full in zip(out["fast"][2], out["full"][2]):
        torch.testing.assert_close(g_fast, g_full, atol=1e-6, rtol=1e-4)
    assert out["fast"][0][1, 0] != 0 and out["fast"][0][0, 1] == 0  # real tokens scored, padding masked


def test_length_buckets_cut_where_padding_costs_most():
    """Hand-computed: lengths 1 x 200 and 9 x 56. One bucket pads to 256 x 9 = 2304 cells; two buckets
    cost 200 x 1 + 56 x 9 = 704 cells + 128 for the extra forward. A third bucket has nothing to save."""
    lengths = [1] * 100 + [9] * 56 + [1] * 100
    buckets = length_buckets_of(lengths, 3)
    assert [(len(r), c) for r, c in buckets] == [(200, 1), (56, 9)]
    assert sorted(torch.cat([r for r, _ in buckets]).tolist()) == list(range(256))
    assert set(buckets[1][0].tolist()) == set(range(100, 156))
    # a small batch: splitting saves fewer cells than one more forward costs, so one bucket in row order
    assert [(r.tolist(), c) for r, c in length_buckets_of([1, 5, 2], 3)] == [([0, 1, 2], 5)]
    assert length_buckets_of([4] * 300, 3)[0][1] == 4 and len(length_buckets_of([4] * 300, 3)) == 1
    assert len(length_buckets_of(lengths, 1)) == 1


def test_shared_prefix_under_gradient_checkpointing(tiny_model):
    """A model that keeps no KV cache in training (gradient checkpointing) is forwarded on full rows instead."""
    model = copy.deepcopy(tiny_model)
    model.gradient_checkpointing_enable()
    model.train()
    prompts, comps = _grouped([4, 2], seed=2)
    b = build_seq_batch(prompts, comps, 0)
    lp_shared, _ = compute_logprobs(model, b, share_prefix=True)
    lp_full, _ = compute_logprobs(model, b, share_prefix=False)
    torch.testing.assert_close(lp_shared, lp_full, atol=1e-5, rtol=0)


@pytest.mark.parametrize("micro_size", [11, 4])
def test_optimiser_step_with_shared_prefix_equals_full_rows(tiny_model, micro_size, monkeypatch):
    """Two passes of the optimiser with shared prompts and length buckets land on the same parameters as with
    full rows in one forward per micro-batch."""
    monkeypatch.setattr(policy, "BUCKET_OVERHEAD_TOKENS", 0)

    prompts, comps = _grouped([3, 1, 5, 2], seed=3)
    pools, groups, row = {}, [], 0
    for k, size in enumerate([3, 1, 5, 2]):
        pools[k] = [Rollout(k, prompts[row + j], comps[row + j], [-1.0] * len(comps[row + j]), "x", "stop",
                            reward=float((row + j) % 3 == 0)) for j in range(size)]
        groups.append(SimpleNamespace(prompt=k, keep=np.arange(size), weight=1.0))
        row += size
    batch = _batch(groups, pools, "grpo")
    params = {}
    for share in (False, True):
        model = copy.deepcopy(tiny_model)
        cfg = AlgoConfig(micro_batch=micro_size, share_prefix=share, length_buckets=3 if share else 1,
                         grad_clip=1e9, epochs=2)
        o = Optimiser(model, torch.optim.SGD(model.parameters(), lr=0.5), cfg, temperature=1.0, norm_length=8)
        micro = make_micro_batches(batch, micro_size, 0, torch.device("cpu"))
        o.prepare(micro, batch)
        assert o.run(micro, len(batch.rollouts))[2]
        params[share] = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert not torch.allclose(params[True], torch.cat([p.detach().flatten() for p in tiny_model.parameters()]))
    torch.testing.assert_close(params[True], params[False], atol=1e-5, rtol=0)


@pytest.mark.parametrize("aggregation", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"])
@pytest.mark.parametrize("loss", ["ppo", "gspo"])
@pytest.mark.parametrize("micro_size", [15, 4])
def test_skipping_zero_advantage_rows_is_exact(tiny_model, aggregation, loss, micro_size):
    """Rows whose advantage is 0 everywhere are not run, yet the update is the full one, with every normaliser
    unchanged: over 2 epochs x 2 mini-batches (later passes see ratios != 1) the parameters and per-row losses
    match to float rounding (SGD, as the micro-batched == full-batch test), and one AdamW step leaves the same
    moments (relative to their scale)."""
    groups, pools = _rollouts(5, seed=3)
    for p in (0, 2):  # two groups with equal rewards: GRPO advantages 0
        for r in pools[p]:
            r.reward = 1.0
    batch = _batch(groups, pools, "grpo")
    zero = int((batch.advantages == 0).sum())
    assert zero == 3 + 5  # groups 0 and 2 (GRPO gives the singleton A = r)

    def update(skip: bool, adam: bool):
        model = copy.deepcopy(tiny_model)
        opt = (torch.optim.AdamW(model.parameters(), lr=1e-3) if adam
               else torch.optim.SGD(model.parameters(), lr=0.5))
        passes = {"epochs": 1, "mini_batches": 1} if adam else {"epochs": 2, "mini_batches": 2}
        cfg = AlgoConfig(loss=loss, aggregation=aggregation, micro_batch=micro_size, grad_clip=1e9,
                         skip_zero_rows=skip, **passes)
        o = Optimiser(model, opt, cfg, temperature=1.0, norm_length=8)
        micro = make_micro_batches(batch, micro_size, 0, torch.device("cpu"))
        o.prepare(micro, batch)
        metrics, per_row, ok = o.run(micro, len(batch.rollouts))
        assert ok
        params = torch.cat([p.detach().flatten() for p in model.parameters()])
        state = [torch.cat([s[k].flatten() for s in opt.state.values()]) for k in ("exp_avg", "exp_avg_sq")] \
            if adam else []
        return params, per_row, metrics, state

    (p0, r0, m0, _), (p1, r1, m1, _) = update(False, False), update(True, False)
    assert m0["perf/update_rows_skipped"] == 0 and m1["perf/update_rows_skipped"] == zero
    assert torch.allclose(p1, p0, atol=1e-5)
    assert torch.allclose(r1, r0, atol=1e-5) and (r1[batch.advantages == 0] == 0).all()
    assert m1["loss/total"] == pytest.approx(m0["loss/total"], abs=1e-6)
    assert not torch.allclose(p0, torch.cat([p.detach().flatten() for p in tiny_model.parameters()]))
    (_, _, _, (a0, v0)), (_, _, _, (a1, v1)) = update(False, True), update(True, True)
    assert torch.allclose(a1, a0, rtol=0, atol=1e-5 * float(a0.abs().max()))
    assert torch.allclose(v1, v0, rtol=0, atol=1e-5 * float(v0.abs().max()))


def test_a_step_whose_rows_are_all_skipped_still_steps_adamw(tiny_model):
    """Every advantage 0: the full update backpropagates zeros and AdamW still applies its weight decay; the
    skipped one must do the same (a parameter without a gradient would be left out of the step)."""
    groups, pools = _rollouts(5, seed=3)
    for rs in pools.values():
        for r in rs:
            r.reward = 0.0
    batch = _batch(groups, pools, "dr_grpo")  # dr_grpo: a singleton's advantage is r = 0 too
    assert not bool(batch.advantages.any())
    out = []
    for skip in (False, True):
        model = copy.deepcopy(tiny_model)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
        o = Optimiser(model, opt, AlgoConfig(micro_batch=4, skip_zero_rows=skip), 1.0, 8)
        micro = make_micro_batches(batch, 4, 0, torch.device("cpu"))
        o.prepare(micro, batch)
        metrics, _, ok = o.run(micro, len(batch.rollouts))
        assert ok and metrics["perf/update_rows_skipped"] == (len(batch.rollouts) if skip else 0)
        out.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.equal(out[0], out[1])
    assert not torch.equal(out[0], torch.cat([p.detach().flatten() for p in tiny_model.parameters()]))  # decayed


def test_zero_rows_run_when_a_kl_or_correction_penalty_reads_them(tiny_model):
    groups, pools = _rollouts(5, seed=3)
    for r in pools[0]:
        r.reward = 1.0
    batch = _batch(groups, pools, "grpo")
    for extra in ({"kl_coef": 0.1}, {"correction": {"type": "remix", "kl_coef": 0.1, "lam": 0.0}}):
        cfg = AlgoConfig(micro_batch=4, **extra)
        ref = copy.deepcopy(tiny_model) if "kl_coef" in extra else None
        o = Optimiser(copy.deepcopy(tiny_model), torch.optim.SGD(tiny_model.parameters(), lr=0.0), cfg, 1.0, 8,
                      ref_model=ref)
        micro = make_micro_batches(batch, 4, 0, torch.device("cpu"))
        o.prepare(micro, batch)
        assert o.run(micro, len(batch.rollouts))[0]["perf/update_rows_skipped"] == 0

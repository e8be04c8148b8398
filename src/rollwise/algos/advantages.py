"""Outcome advantage estimators for grouped rollouts (GRPO family), behind one registry.

Every estimator has the same signature, so the trainer never branches on the method::

    fn(rewards [N] float, group_index [N] long, ctx: AdvantageContext) -> AdvantageOutput

``group_index[i]`` in ``0..G-1`` names the prompt group of row ``i``. Groups may have unequal sizes and
rows of a group need not be contiguous. Everything is vectorised with ``index_add``/``bincount``/sorts: there
is no Python loop over groups (a loop reference lives in the tests only). Advantages are per sequence; the
loss broadcasts them over tokens.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from rollwise.algos.catalog import GrpoKnobs, HapoAdvantageKnobs, McGrpoKnobs, PoolBaselineKnobs, XrpoKnobs


@dataclass
class AdvantageContext:
    """Per-batch inputs beyond rewards; estimator knobs go in ``params`` (unknown keys raise)."""

    num_groups: int
    baseline: Tensor | None = None  # [G] external per-group baseline (Reinforce-Ada pool mean, V0.5 prior)
    seq_logprob: Tensor | None = None  # [N] length-normalised log-likelihood of each response (XRPO)
    lengths: Tensor | None = None  # [N] completion length in tokens of each response (HAPO)
    eps: float = 1e-6  # added to the std in the denominator
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class AdvantageOutput:
    advantages: Tensor  # [N] one scalar per response
    keep: Tensor | None = None  # [N] bool, rows to train on (None = all)


AdvantageFn = Callable[[Tensor, Tensor, AdvantageContext], AdvantageOutput]


def group_sizes(group_index: Tensor, num_groups: int) -> Tensor:
    """Number of rows in each group, ``[G]`` long (empty groups count 0)."""
    return torch.bincount(group_index, minlength=num_groups)[:num_groups]


def _check_inputs(rewards: Tensor, group_index: Tensor, ctx: AdvantageContext) -> Tensor:
    """Validate shapes/range and return the rewards as a float tensor."""
    if rewards.dim() != 1 or group_index.shape != rewards.shape:
        raise ValueError(f"rewards and group_index must both be [N]; got {tuple(rewards.shape)} and "
                         f"{tuple(group_index.shape)}")
    if group_index.dtype != torch.long:
        raise TypeError(f"group_index must be a LongTensor, got {group_index.dtype}")
    if group_index.numel() and (int(group_index.min()) < 0 or int(group_index.max()) >= ctx.num_groups):
        raise ValueError(f"group_index values must lie in [0, {ctx.num_groups - 1}]")
    return rewards if rewards.is_floating_point() else rewards.float()


def _params(ctx: AdvantageContext, estimator: str, knobs: type | None = None) -> Any:
    """``ctx.params`` as the estimator's knobs dataclass (``rollwise.algos.catalog``); a typo in a knob name
    raises instead of being ignored."""
    if knobs is None:
        if ctx.params:
            raise ValueError(f"advantage estimator {estimator!r} has no params, got {sorted(ctx.params)}")
        return None
    valid = {f.name for f in dataclasses.fields(knobs)}
    unknown = set(ctx.params) - valid
    if unknown:
        raise ValueError(f"unknown params {sorted(unknown)} for advantage estimator {estimator!r}; "
                         f"valid: {sorted(valid)}")
    return knobs(**ctx.params)


def _group_sum(values: Tensor, group_index: Tensor, num_groups: int) -> Tensor:
    """Sum of ``values`` [N] per group -> [G]."""
    out = torch.zeros(num_groups, dtype=values.dtype, device=values.device)
    return out.index_add_(0, group_index, values)


def compute_group_mean_std(rewards: Tensor, group_index: Tensor, num_groups: int, *,
                           unbiased: bool = True) -> tuple[Tensor, Tensor]:
    """Per-group mean and std, each ``[G]``.

    Like verl, a group of size 1 (or 0) gets mean 0 and std 1, so its advantage is its raw reward.
    ``unbiased`` selects Bessel's n-1 (torch.std, verl's choice) or the population n.
    """
    sizes = group_sizes(group_index, num_groups).to(rewards.dtype)  # [G]
    mean = _group_sum(rewards, group_index, num_groups) / sizes.clamp(min=1)  # [G]
    sq_dev = _group_sum((rewards - mean[group_index]) ** 2, group_index, num_groups)  # [G]
    denom = (sizes - 1) if unbiased else sizes
    std = (sq_dev / denom.clamp(min=1)).sqrt()
    single = sizes <= 1
    return mean.masked_fill(single, 0.0), std.masked_fill(single, 1.0)


def _group_lower_median(values: Tensor, group_index: Tensor, num_groups: int) -> tuple[Tensor, Tensor]:
    """Per-group lower median ``[G]`` and the row index ``[G]`` of one element equal to it (-1 if empty).

    Rows are stably sorted by (group, value); the pivot is the row at position (n-1)//2 of its group, which is
    the element ``torch.median`` returns in value (torch leaves the index among ties unspecified).
    """
    sizes = group_sizes(group_index, num_groups)  # [G]
    if values.numel() == 0:
        return values.new_zeros(num_groups), torch.full_like(sizes, -1)
    by_value = torch.argsort(values, stable=True)
    order = by_value[torch.argsort(group_index[by_value], stable=True)]  # [N] rows sorted by (group, value)
    starts = torch.cumsum(sizes, 0) - sizes  # [G]
    pos = (starts + (sizes - 1).clamp(min=0) // 2).clamp(max=values.numel() - 1)
    arg = order[pos]  # [G]
    empty = sizes == 0
    return values[arg].masked_fill(empty, 0.0), arg.masked_fill(empty, -1)


def compute_grpo_advantages(rewards: Tensor, group_index: Tensor,
                            ctx: AdvantageContext) -> AdvantageOutput:
    """GRPO: A = (r - mean_g) / (std_g + eps); a size-1 group uses mean 0, std 1 (verl).

    params: std_unbiased (default True, Bessel like verl's torch.std).
    """
    r = _check_inputs(rewards, group_index, ctx)
    p = _params(ctx, "grpo", GrpoKnobs)
    mean, std = compute_group_mean_std(r, group_index, ctx.num_groups, unbiased=p.std_unbiased)
    return AdvantageOutput((r - mean[group_index]) / (std[group_index] + ctx.eps))


def compute_dr_grpo_advantages(rewards: Tensor, group_index: Tensor,
                               ctx: AdvantageContext) -> AdvantageOutput:
    """Dr.GRPO: A = r - mean_g, no std division (removes the difficulty bias).

    A size-1 group uses mean 0, as verl's GRPO with ``norm_adv_by_std_in_grpo=False`` does, so A = r there.
    """
    r = _check_inputs(rewards, group_index, ctx)
    _params(ctx, "dr_grpo")
    mean, _ = compute_group_mean_std(r, group_index, ctx.num_groups)
    return AdvantageOutput(r - mean[group_index])


def compute_rloo_advantages(rewards: Tensor, group_index: Tensor,
                            ctx: AdvantageContext) -> AdvantageOutput:
    """RLOO: A_i = r_i - mean of the other rows of the group = n/(n-1) * (r_i - mean_g).

    A size-1 group has no other rows, hence no baseline and no learning signal: A = 0. (verl keeps A = r
    there; we choose 0 so a lone response is not pushed by its raw reward.)
    """
    r = _check_inputs(rewards, group_index, ctx)
    _params(ctx, "rloo")
    sizes = group_sizes(group_index, ctx.num_groups).to(r.dtype)[group_index]  # [N]
    total = _group_sum(r, group_index, ctx.num_groups)[group_index]  # [N]
    loo_mean = (total - r) / (sizes - 1).clamp(min=1)
    return AdvantageOutput(torch.where(sizes > 1, r - loo_mean, torch.zeros_like(r)))


def compute_mc_grpo_advantages(rewards: Tensor, group_index: Tensor,
                               ctx: AdvantageContext) -> AdvantageOutput:
    """MC-GRPO (median-centred GRPO): median baseline, one pivot per group dropped,
    then the nonzero rows rescaled.

    Per group (sampled with G+1 rows): m = lower median; the pivot row (equal to m) gets keep=False.
    ``scale="mad"`` is the authors' code: A = (r - m) / (median|r - m| + eps_mad), eps_mad = 1e-3. With binary
    rewards the MAD is always 0, so that gives A = +-1/eps_mad (= +-1000) and only minority-outcome rows are
    nonzero - a flaw the spec flags. The default ``scale="auto"`` implements the intended behaviour: divide by
    the MAD where it is > 0 (graded rewards), else use r - m unscaled (binary rewards: A = +-1 on the minority
    rows). ``scale="none"`` is always r - m. Finally the nonzero advantages of a group are multiplied by
    group_size / #nonzero, keeping the group's total |signal| comparable. A size-1 group is its own pivot
    and trains nothing.
    """
    r = _check_inputs(rewards, group_index, ctx)
    p = _params(ctx, "mc_grpo", McGrpoKnobs)
    if p.scale not in ("auto", "mad", "none"):
        raise ValueError(f"mc_grpo scale must be 'auto', 'mad' or 'none', got {p.scale!r}")
    G = ctx.num_groups
    median, pivot = _group_lower_median(r, group_index, G)  # [G], [G]
    adv = r - median[group_index]  # [N]
    if p.scale != "none":
        mad, _ = _group_lower_median(adv.abs(), group_index, G)  # [G], includes the pivot's 0
        denom = mad + p.eps_mad if p.scale == "mad" else torch.where(mad > 0, mad, torch.ones_like(mad))
        adv = adv / denom[group_index]
    keep = torch.ones_like(r, dtype=torch.bool)
    keep[pivot[pivot >= 0]] = False
    adv = adv.masked_fill(~keep, 0.0)
    n_nonzero = _group_sum((adv != 0).to(r.dtype), group_index, G)  # [G]
    factor = group_sizes(group_index, G).to(r.dtype) / n_nonzero.clamp(min=1)  # [G]
    return AdvantageOutput(adv * factor[group_index], keep=keep)


def compute_pool_baseline_advantages(rewards: Tensor, group_index: Tensor,
                                     ctx: AdvantageContext) -> AdvantageOutput:
    """External baseline: A = r - ctx.baseline[g] (Reinforce-Ada pool mean, V0.5 fused prior).

    params: norm_by_std (default False, as Reinforce-Ada's script) divides by the std of the group's rows here
    (not the whole pool, which this function does not see) plus eps; std_unbiased. batch_norm (default False;
    MSSR) then normalises over every row of the call: (A - mean) / (std + eps), the std with Bessel's n-1 when
    std_unbiased; a call with one row gives A = 0.
    """
    r = _check_inputs(rewards, group_index, ctx)
    p = _params(ctx, "pool_baseline", PoolBaselineKnobs)
    if ctx.baseline is None:
        raise ValueError("advantage estimator 'pool_baseline' needs ctx.baseline, a [G] per-group baseline")
    if ctx.baseline.shape != (ctx.num_groups,):
        raise ValueError(f"ctx.baseline must have shape [{ctx.num_groups}], got {tuple(ctx.baseline.shape)}")
    adv = r - ctx.baseline.to(r)[group_index]
    if p.norm_by_std:
        _, std = compute_group_mean_std(r, group_index, ctx.num_groups, unbiased=p.std_unbiased)
        adv = adv / (std[group_index] + ctx.eps)
    if p.batch_norm:
        n = adv.numel()
        std = adv.std(correction=1 if p.std_unbiased else 0) if n > 1 else adv.new_tensor(1.0)
        adv = (adv - adv.mean()) / (std + ctx.eps) if n else adv
    return AdvantageOutput(adv)


def compute_xrpo_advantages(rewards: Tensor, group_index: Tensor,
                            ctx: AdvantageContext) -> AdvantageOutput:
    """XRPO novelty sharpening on top of GRPO: rare correct answers get a bounded boost.

    eta_i = exp(s_i - mean_g s) with s = ctx.seq_logprob. For A_i > 0:
    A_i += min(max(lam*(1-eta_i), 0), kappa*A_i), so only below-average-likelihood positives gain, by at most
    kappa*A_i. params: lam=2.5, kappa=0.5, std_unbiased.
    """
    r = _check_inputs(rewards, group_index, ctx)
    p = _params(ctx, "xrpo", XrpoKnobs)
    if ctx.seq_logprob is None:
        raise ValueError("advantage estimator 'xrpo' needs ctx.seq_logprob, the [N] mean token logprob")
    if ctx.seq_logprob.shape != r.shape:
        raise ValueError(f"ctx.seq_logprob must have shape {tuple(r.shape)}, "
                         f"got {tuple(ctx.seq_logprob.shape)}")
    mean, std = compute_group_mean_std(r, group_index, ctx.num_groups, unbiased=p.std_unbiased)
    adv = (r - mean[group_index]) / (std[group_index] + ctx.eps)  # [N] GRPO
    s = ctx.seq_logprob.detach().to(r)
    sizes = group_sizes(group_index, ctx.num_groups).to(r.dtype)
    s_mean = _group_sum(s, group_index, ctx.num_groups) / sizes.clamp(min=1)  # [G]
    eta = torch.exp(s - s_mean[group_index])  # [N]
    bonus = torch.minimum((p.lam * (1 - eta)).clamp(min=0), p.kappa * adv)
    return AdvantageOutput(torch.where(adv > 0, adv + bonus, adv))




def compute_hapo_advantages(rewards: Tensor, group_index: Tensor,
                            ctx: AdvantageContext) -> AdvantageOutput:
    """HAPO token-level group average (Liu et al., arXiv:2509.16591; starriver030515/HAPO).

    Every token of a response carries its reward, so per group mu = sum_i L_i r_i / sum_i L_i and sigma is the
    population std of those token rewards: sigma^2 = sum_i L_i (r_i - mu)^2 / sum_i L_i, with L = ctx.lengths.
    A_i = (r_i - mu) / (sigma + eps). A group with any |A_i| >= fallback_abs (5), or with no tokens at all,
    takes the GRPO advantage instead. Deviation: the released code tests |A| >= 5 over the padded [G, T]
    tensor, so a padding position (reward 0) can trigger the fallback by itself (-mu/sigma); here only the real
    rows count. A size-1 group gets A = 0 (mu = r).
    """
    r = _check_inputs(rewards, group_index, ctx)
    p = _params(ctx, "hapo", HapoAdvantageKnobs)
    if ctx.lengths is None or ctx.lengths.shape != r.shape:
        raise ValueError("advantage estimator 'hapo' needs ctx.lengths, the [N] completion lengths")
    G = ctx.num_groups
    w = ctx.lengths.to(r.dtype).clamp(min=0)  # [N] tokens per response
    tokens = _group_sum(w, group_index, G)  # [G]
    mu = _group_sum(w * r, group_index, G) / tokens.clamp(min=1e-12)  # [G]
    var = _group_sum(w * (r - mu[group_index]) ** 2, group_index, G) / tokens.clamp(min=1e-12)  # [G]
    adv = (r - mu[group_index]) / (var.sqrt()[group_index] + ctx.eps)  # [N]
    worst = r.new_zeros(G).scatter_reduce(0, group_index, adv.abs(), reduce="amax")  # [G] max |A| per group
    fallback = (worst >= p.fallback_abs) | (tokens <= 0)  # [G]
    mean, std = compute_group_mean_std(r, group_index, G, unbiased=p.std_unbiased)
    grpo = (r - mean[group_index]) / (std[group_index] + ctx.eps)
    return AdvantageOutput(torch.where(fallback[group_index], grpo, adv))

"""Advantage estimators: hand-derived values, loop reference == vectorised, error messages."""

from __future__ import annotations

import math

import pytest
import torch

from rollwise.algos import ADVANTAGES, AdvantageContext, group_sizes
from rollwise.algos.advantages import compute_group_mean_std

# Shared hand example: 3 groups of unequal size, rows interleaved (not contiguous).
#   g0 = rows 0, 2, 5 -> r = [1, 0, 2];  g1 = rows 1, 4 -> r = [3, 5];  g2 = row 3 -> r = [7] (size 1)
REWARDS = torch.tensor([1.0, 3.0, 0.0, 7.0, 5.0, 2.0], dtype=torch.float64)
GROUPS = torch.tensor([0, 1, 0, 2, 1, 0])
EPS = 1e-6
S2 = math.sqrt(2.0)


def run(name: str, rewards=REWARDS, groups=GROUPS, num_groups: int = 3, **ctx_kwargs):
    return ADVANTAGES.get(name)(rewards, groups, AdvantageContext(num_groups=num_groups, **ctx_kwargs))


def test_group_sizes_counts_empty_groups():
    assert group_sizes(GROUPS, 4).tolist() == [3, 2, 1, 0]


def test_grpo_hand_values():
    # g0: mean 1, unbiased var (0 + 1 + 1)/2 = 1 -> A = [0, -1, 1] / (1 + eps)
    # g1: mean 4, unbiased var (1 + 1)/1 = 2 -> A = [-1, 1] / (sqrt2 + eps)
    # g2: size 1 -> mean 0, std 1 (verl) -> A = 7 / (1 + eps)
    expected = [0.0, -1 / (S2 + EPS), -1 / (1 + EPS), 7 / (1 + EPS), 1 / (S2 + EPS), 1 / (1 + EPS)]
    out = run("grpo")
    assert out.keep is None
    torch.testing.assert_close(out.advantages, torch.tensor(expected, dtype=torch.float64))


def test_grpo_population_std():
    # g0: population var 2/3 -> std sqrt(2/3) = 0.81650; g1: var 1 -> std 1; g2 unchanged (size-1 rule)
    sd = math.sqrt(2 / 3)
    expected = [0.0, -1 / (1 + EPS), -1 / (sd + EPS), 7 / (1 + EPS), 1 / (1 + EPS), 1 / (sd + EPS)]
    out = run("grpo", params={"std_unbiased": False})
    torch.testing.assert_close(out.advantages, torch.tensor(expected, dtype=torch.float64))


def test_dr_grpo_hand_values():
    # r - mean: g0 [1-1, 0-1, 2-1]; g1 [3-4, 5-4]; g2 size 1 -> mean 0 -> A = 7
    out = run("dr_grpo")
    torch.testing.assert_close(out.advantages, torch.tensor([0.0, -1, -1, 7, 1, 1], dtype=torch.float64))


def test_rloo_hand_values():
    # g0: 1 - (0+2)/2 = 0;  0 - (1+2)/2 = -1.5;  2 - (1+0)/2 = 1.5
    # g1: 3 - 5 = -2;  5 - 3 = 2;   g2: size 1 -> no other row -> 0
    out = run("rloo")
    torch.testing.assert_close(out.advantages, torch.tensor([0.0, -2, -1.5, 0, 2, 1.5], dtype=torch.float64))


def test_pool_baseline_hand_values():
    baseline = torch.tensor([0.5, 4.5, 6.0], dtype=torch.float64)
    # r - b[g]: [1-.5, 3-4.5, 0-.5, 7-6, 5-4.5, 2-.5]
    out = run("pool_baseline", baseline=baseline)
    torch.testing.assert_close(out.advantages,
                               torch.tensor([0.5, -1.5, -0.5, 1.0, 0.5, 1.5], dtype=torch.float64))
    # divided by the group std + eps: g0 std 1, g1 std sqrt2, g2 size 1 -> std 1
    out = run("pool_baseline", baseline=baseline, params={"norm_by_std": True})
    expected = [0.5 / (1 + EPS), -1.5 / (S2 + EPS), -0.5 / (1 + EPS), 1 / (1 + EPS), 0.5 / (S2 + EPS),
                1.5 / (1 + EPS)]
    torch.testing.assert_close(out.advantages, torch.tensor(expected, dtype=torch.float64))


def test_mc_grpo_binary_rewards_mad_and_none():
    # Three groups of G+1 = 3, interleaved. Pivot = position (n-1)//2 of a stable sort by value.
    #   g0 rows 0,2,4 r=[1,0,0]: sorted rows [2,4,0] -> m=0, pivot row 4; MAD = median[0,0,1] = 0
    #       A(row 0) = 1/(0+1e-3) = 1000, one nonzero -> x 3/1 -> 3000
    #   g1 rows 1,3,5 r=[1,1,0]: sorted rows [5,1,3] -> m=1, pivot row 1; row 3 ties the median (A=0, kept)
    #       A(row 5) = -1/1e-3 x 3 = -3000
    #   g2 rows 6,7,8 all 1: pivot row 7, all A = 0 (no signal, as the spec warns)
    rewards = torch.tensor([1.0, 1, 0, 1, 0, 0, 1, 1, 1])
    groups = torch.tensor([0, 1, 0, 1, 0, 1, 2, 2, 2])
    out = run("mc_grpo", rewards, groups, params={"scale": "mad"})  # the authors' code
    keep = [True, False, True, True, False, True, True, False, True]
    assert out.keep.tolist() == keep
    expected = torch.tensor([3000.0, 0, 0, 0, 0, -3000, 0, 0, 0])
    torch.testing.assert_close(out.advantages, expected, rtol=1e-5, atol=1e-3)
    # scale="none": |r - m| = 1 unscaled, times 3/1 -> +-3
    out = run("mc_grpo", rewards, groups, params={"scale": "none"})
    assert out.keep.tolist() == keep
    torch.testing.assert_close(out.advantages, torch.tensor([3.0, 0, 0, 0, 0, -3, 0, 0, 0]))
    # the default "auto" (the intended behaviour): MAD = 0 on binary rewards -> unscaled, the same +-3
    out = run("mc_grpo", rewards, groups)
    torch.testing.assert_close(out.advantages, torch.tensor([3.0, 0, 0, 0, 0, -3, 0, 0, 0]))


def test_mc_grpo_continuous_unequal_groups():
    # g0 (rows 0..4) r=[.1,.9,.5,.3,.7]: m=.5 (pivot row 2); |r-m|=[.4,.4,0,.2,.2] -> MAD=.2
    #     A = [-.4,.4,0,-.2,.2]/.201, 4 nonzero -> x 5/4
    # g1 (rows 5..8) r=[4,1,3,2]: lower median 2 (pivot row 8); |r-m|=[2,1,1,0] -> MAD=1
    #     A = [2,-1,1,0]/1.001, 3 nonzero -> x 4/3
    # g2 (row 9) size 1: its own pivot, dropped, A=0
    rewards = torch.tensor([0.1, 0.9, 0.5, 0.3, 0.7, 4, 1, 3, 2, 6], dtype=torch.float64)
    groups = torch.tensor([0, 0, 0, 0, 0, 1, 1, 1, 1, 2])
    out = run("mc_grpo", rewards, groups, params={"scale": "mad"})
    a0 = [x / 0.201 * 5 / 4 for x in (-0.4, 0.4, 0.0, -0.2, 0.2)]
    a1 = [x / 1.001 * 4 / 3 for x in (2.0, -1.0, 1.0, 0.0)]
    torch.testing.assert_close(out.advantages, torch.tensor(a0 + a1 + [0.0], dtype=torch.float64))
    assert out.keep.tolist() == [True, True, False, True, True, True, True, True, False, False]
    # default "auto": the MAD (.2 and 1) is > 0 here, so it divides by it without the 1e-3 floor
    out = run("mc_grpo", rewards, groups)
    a0 = [x / 0.2 * 5 / 4 for x in (-0.4, 0.4, 0.0, -0.2, 0.2)]
    a1 = [x / 1.0 * 4 / 3 for x in (2.0, -1.0, 1.0, 0.0)]
    torch.testing.assert_close(out.advantages, torch.tensor(a0 + a1 + [0.0], dtype=torch.float64))


def test_xrpo_novelty_hand_values():
    # Three groups of 2, each r=[1,0]: GRPO A = +-0.5/(sqrt(.5)+eps) = +-0.707106
    # g0 s=[-2,-1]: mean -1.5, eta=exp(-.5)=.60653, lam(1-eta)=.98367 > kappa*A=.35355 -> bonus .35355
    # g1 s=[-1,-1.2]: mean -1.1, eta=exp(.1)>1 -> lam(1-eta)<0 -> bonus 0
    # g2 s=[-1.02,-1]: mean -1.01, eta=exp(-.01)=.990050, lam(1-eta)=.024875 < .35355 -> bonus .024875
    rewards = torch.tensor([1.0, 0, 1, 0, 1, 0], dtype=torch.float64)
    groups = torch.tensor([0, 0, 1, 1, 2, 2])
    s = torch.tensor([-2.0, -1, -1, -1.2, -1.02, -1], dtype=torch.float64)
    a = 0.5 / (math.sqrt(0.5) + EPS)
    out = run("xrpo", rewards, groups, seq_logprob=s)
    expected = [1.5 * a, -a, a, -a, a + 2.5 * (1 - math.exp(-0.01)), -a]
    torch.testing.assert_close(out.advantages, torch.tensor(expected, dtype=torch.float64))


# ---------------------------------------------------------------- loop references (tests only)

def _groups(g: torch.Tensor, num_groups: int):
    for k in range(num_groups):
        idx = (g == k).nonzero().flatten().tolist()
        if idx:
            yield idx


def _mean_std(x: list[float], unbiased: bool = True) -> tuple[float, float]:
    if len(x) == 1:
        return 0.0, 1.0
    m = sum(x) / len(x)
    var = sum((v - m) ** 2 for v in x) / (len(x) - 1 if unbiased else len(x))
    return m, math.sqrt(var)


def _lower_median(x: list[float]) -> tuple[float, int]:
    order = sorted(range(len(x)), key=lambda j: x[j])  # Python's sort is stable
    j = order[(len(x) - 1) // 2]
    return x[j], j


def loop_reference(name, r, g, ctx):  # one branch per estimator, on purpose
    out = [0.0] * len(r)
    keep = [True] * len(r)
    p = ctx.params
    for idx in _groups(g, ctx.num_groups):
        x = [float(r[i]) for i in idx]
        n = len(x)
        if name == "grpo":
            m, sd = _mean_std(x, p.get("std_unbiased", True))
            a = [(v - m) / (sd + ctx.eps) for v in x]
        elif name == "dr_grpo":
            m, _ = _mean_std(x)
            a = [v - m for v in x]
        elif name == "rloo":
            a = [0.0] * n if n == 1 else [v - (sum(x) - v) / (n - 1) for v in x]
        elif name == "pool_baseline":
            b = float(ctx.baseline[int(g[idx[0]])])
            a = [v - b for v in x]
        elif name == "xrpo":
            m, sd = _mean_std(x)
            s = [float(ctx.seq_logprob[i]) for i in idx]
            sm = sum(s) / n
            a = []
            for v, si in zip(x, s):
                adv = (v - m) / (sd + ctx.eps)
                if adv > 0:
                    adv += min(max(2.5 * (1 - math.exp(si - sm)), 0.0), 0.5 * adv)
                a.append(adv)
        elif name == "mc_grpo":
            m, piv = _lower_median(x)
            mad, _ = _lower_median([abs(v - m) for v in x])
            a = [(v - m) / (mad if mad > 0 else 1.0) for v in x]  # the default scale "auto"
            a[piv] = 0.0
            keep[idx[piv]] = False
            nz = sum(1 for v in a if v != 0)
            a = [v * n / max(nz, 1) for v in a]
        for i, v in zip(idx, a):
            out[i] = v
    return torch.tensor(out, dtype=r.dtype), torch.tensor(keep)


def random_batch(seed: int, binary: bool):
    gen = torch.Generator().manual_seed(seed)
    num_groups = 7  # group 6 stays empty
    sizes = [1, 2, 3, 5, 8, 4, 0]
    g = torch.cat([torch.full((s,), k) for k, s in enumerate(sizes)])
    g = g[torch.randperm(len(g), generator=gen)]  # non-contiguous rows
    if binary:
        r = torch.randint(0, 2, (len(g),), generator=gen).double()
    else:
        r = torch.randn(len(g), generator=gen, dtype=torch.float64)
    ctx = AdvantageContext(num_groups=num_groups,
                           baseline=torch.rand(num_groups, generator=gen, dtype=torch.float64),
                           seq_logprob=-torch.rand(len(g), generator=gen, dtype=torch.float64) * 3)
    return r, g, ctx


@pytest.mark.parametrize("name", ["grpo", "dr_grpo", "rloo", "pool_baseline", "xrpo", "mc_grpo"])
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("binary", [False, True])
def test_vectorised_matches_loop_reference(name, seed, binary):
    r, g, ctx = random_batch(seed, binary)
    out = ADVANTAGES.get(name)(r, g, ctx)
    ref_adv, ref_keep = loop_reference(name, r, g, ctx)
    torch.testing.assert_close(out.advantages, ref_adv)
    if name == "mc_grpo":
        assert out.keep.tolist() == ref_keep.tolist()
    else:
        assert out.keep is None


def test_grpo_std_unbiased_false_matches_loop():
    r, g, ctx = random_batch(0, binary=False)
    ctx.params = {"std_unbiased": False}
    out = ADVANTAGES.get("grpo")(r, g, ctx)
    torch.testing.assert_close(out.advantages, loop_reference("grpo", r, g, ctx)[0])


def test_group_mean_std_matches_torch():
    r, g, ctx = random_batch(1, binary=False)
    mean, std = compute_group_mean_std(r, g, ctx.num_groups)
    for k in range(ctx.num_groups):
        x = r[g == k]
        if len(x) > 1:
            torch.testing.assert_close(mean[k], x.mean())
            torch.testing.assert_close(std[k], x.std())
        else:
            assert (mean[k].item(), std[k].item()) == (0.0, 1.0)


def test_integer_rewards_are_accepted():
    out = run("grpo", rewards=torch.tensor([1, 0, 1, 1, 0, 0]))
    assert out.advantages.dtype == torch.float32


@pytest.mark.parametrize(
    "name, kwargs, match",
    [
        ("pool_baseline", {}, "needs ctx.baseline"),
        ("pool_baseline", {"baseline": torch.zeros(2)}, r"shape \[3\]"),
        ("xrpo", {}, "needs ctx.seq_logprob"),
        ("grpo", {"params": {"std_unbiasd": False}}, "unknown params"),
        ("mc_grpo", {"params": {"scale": "std"}}, "scale must be"),
    ],
)
def test_clear_errors(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        run(name, **kwargs)


def test_bad_group_index():
    with pytest.raises(ValueError, match="group_index values"):
        run("grpo", num_groups=2)
    with pytest.raises(TypeError, match="LongTensor"):
        run("grpo", groups=GROUPS.int())
    with pytest.raises(ValueError, match=r"\[N\]"):
        run("grpo", groups=GROUPS[:3])

"""Step-level agentic methods' math (pure torch): PivotRL's pivot filter and UI-S1's returns and advantages.

**PivotRL** (arXiv 2603.21383): a candidate state s (an assistant turn of an expert trajectory) is profiled with K
actions of the frozen start policy, scored by a functional verifier: ``mu(s)`` and ``var(s)`` (population
variance of the K 0/1 rewards). A *pivot* is kept iff ``var(s) > 0`` and ``mu(s) < lambda_diff``. lambda_diff is
not given by the paper or NVIDIA's code (0.75 is our choice, untested against the paper's runs).

**UI-S1** (arXiv 2509.11543; X-PLUG MobileAgent ``uis1/core_uis1.py``): over one semi-online rollout's steps,
walking backwards, ``G_t = r_t + gamma G_{t+1}`` if step t matched the expert, else ``G_t = r_t`` and the running
return restarts, so an earlier step never sees a return from a step that left the expert or beyond it. The
advantage is ``A = w_ep A_ep + w_step A_step``:

* ``A_step``: G_t normalised within its *step group* (task, step index), ``mean_norm`` (G - mean) or
  ``mean_std_norm`` ((G - mean) / (std + eps)); a group of one row gives 0.
* ``A_ep``, reading ``immediate`` (what the authors' code computes): the step's *immediate* score r_t normalised
  over all steps of all rollouts of the task; a group of one row keeps the raw score. Reading ``return`` (the
  textbook "episode-level" term): the rollout's return ``sum_t r_t`` normalised over the task's rollouts, the
  same value on each of its steps; a task with one rollout keeps the raw return.

Std is the population std (``unbiased=False``, as numpy's in the authors' code; unverified for torch.std calls
elsewhere in verl). The group filter keeps a task iff the std of its rollouts' ``G_0`` exceeds ``std_threshold``
(0.3) or it has a single rollout (DAPO-style, ``dapo_ray_trainer.py``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from rollwise.algos.advantages import AdvantageContext, AdvantageOutput


def pivot_stats(rewards: Tensor) -> tuple[Tensor, Tensor]:
    """``[C, K]`` profiling rewards -> (mean ``[C]``, population variance ``[C]``)."""
    r = rewards.float()
    return r.mean(-1), r.var(-1, unbiased=False)


def pivot_keep(rewards: Tensor, lambda_diff: float = 0.75) -> Tensor:
    """``[C, K]`` -> ``[C]`` bool: the candidates PivotRL keeps (mixed outcomes, mean below ``lambda_diff``)."""
    mu, var = pivot_stats(rewards)
    return (var > 0) & (mu < lambda_diff)


def step_returns(rewards: Tensor, matched: Tensor, gamma: float) -> Tensor:
    """``[T]`` step rewards and ``[T]`` bool matches of one rollout -> ``[T]`` discounted returns with the break."""
    out = torch.zeros_like(rewards, dtype=torch.float32)
    acc = 0.0
    for t in reversed(range(rewards.shape[0])):
        r = float(rewards[t])
        acc = r + gamma * acc if bool(matched[t]) else r
        out[t] = acc
    return out


def _normalise(values: Tensor, groups: Tensor, mode: str, eps: float, single: str) -> Tensor:
    """``values`` [N] normalised within ``groups`` [N] (long ids): mode ``mean_norm`` / ``mean_std_norm``; a group
    of one row gives 0 (``single = "zero"``) or keeps its value (``single = "raw"``)."""
    if mode not in ("mean_norm", "mean_std_norm"):
        raise ValueError(f"unknown normalisation {mode!r}; choose 'mean_norm' or 'mean_std_norm'")
    v = values.float()
    _, inv = torch.unique(groups, return_inverse=True)
    G = int(inv.max()) + 1 if inv.numel() else 0
    n = torch.bincount(inv, minlength=G).float()  # [G]
    mean = torch.zeros(G).index_add_(0, inv, v) / n  # [G]
    var = torch.zeros(G).index_add_(0, inv, (v - mean[inv]) ** 2) / n  # [G] population variance
    out = v - mean[inv]
    if mode == "mean_std_norm":
        out = out / (var.sqrt()[inv] + eps)
    one = n[inv] == 1  # [N]
    return torch.where(one, v if single == "raw" else torch.zeros_like(v), out)


def uis1_advantages(returns: Tensor, step_rewards: Tensor, rollout_index: Tensor, task_index: Tensor,
                    step_index: Tensor, *, episode: str = "immediate", mode: str = "mean_std_norm",
                    w_ep: float = 1.0, w_step: float = 1.0, eps: float = 1e-6) -> Tensor:
    """UI-S1's advantage of every step sample ``[N]`` (module docstring). ``returns`` [N] the G_t of each sample,
    ``step_rewards`` [N] its r_t, ``rollout_index`` / ``task_index`` / ``step_index`` [N] long ids. ``episode``:
    ``immediate`` (the code's reading) or ``return`` (the episode return's)."""
    max_step = int(step_index.max()) + 1 if step_index.numel() else 1
    a_step = _normalise(returns, task_index * max_step + step_index, mode, eps, "zero")
    if episode == "immediate":
        a_ep = _normalise(step_rewards, task_index, mode, eps, "raw")
    elif episode == "return":
        _, roll = torch.unique(rollout_index, return_inverse=True)
        R = int(roll.max()) + 1 if roll.numel() else 0
        ret = torch.zeros(R).index_add_(0, roll, step_rewards.float())  # [R] each rollout's return
        task_of = torch.zeros(R, dtype=torch.long).index_copy_(0, roll, task_index)  # [R]
        a_ep = _normalise(ret, task_of, mode, eps, "raw")[roll]
    else:
        raise ValueError(f"unknown episode reading {episode!r}; choose 'immediate' or 'return'")
    return w_ep * a_ep + w_step * a_step


def uis1_keep_tasks(g0: Tensor, task_index: Tensor, std_threshold: float = 0.3) -> Tensor:
    """``[R]`` G_0 of each rollout and ``[R]`` its task -> ``[R]`` bool: the rollout's task passes the group filter
    (std of its rollouts' G_0 > ``std_threshold``, or a single rollout)."""
    _, inv = torch.unique(task_index, return_inverse=True)
    G = int(inv.max()) + 1 if inv.numel() else 0
    n = torch.bincount(inv, minlength=G).float()
    v = g0.float()
    mean = torch.zeros(G).index_add_(0, inv, v) / n
    std = (torch.zeros(G).index_add_(0, inv, (v - mean[inv]) ** 2) / n).sqrt()
    return ((std > std_threshold) | (n == 1))[inv]


def compute_precomputed_advantages(rewards: Tensor, group_index: Tensor, ctx: AdvantageContext) -> AdvantageOutput:
    """``A = r``: the rows' rewards already are advantages (UI-S1's collector computes them over step groups the
    estimator cannot see)."""
    return AdvantageOutput(rewards.float().clone())

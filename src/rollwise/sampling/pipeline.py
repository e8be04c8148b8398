"""Composes the sampler components into the object the trainer talks to, and keeps the step's books.

The trainer only ever calls ``begin_step`` -> ``next_request`` (until None) -> ``finalize`` -> ``observe``;
every published method is a combination of registered components chosen in config (see ``presets.py``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rollwise.sampling.base import (
    Allocator,
    Baseline,
    Budget,
    Component,
    Downsampler,
    Gate,
    GroupObs,
    Replayed,
    Request,
    SampleContext,
    Selector,
    TrainGroup,
)
from rollwise.sampling.replay import Replay
from rollwise.sampling.stats import PromptStats


def fit_to_budget(prompts: np.ndarray, counts: np.ndarray, left: int) -> Request:
    """Trim a request so its total fits in ``left`` rollouts (earlier prompts keep priority)."""
    counts = np.asarray(counts, dtype=np.int64).copy()
    prompts = np.asarray(prompts, dtype=np.int64)
    over = np.cumsum(counts) - left
    if over.size and over[-1] > 0:
        counts = np.maximum(counts - np.maximum(over, 0), 0)
        # a prompt cut to zero is dropped; cumsum monotone so only a tail is affected
    keep = counts > 0
    return Request(prompts[keep], counts[keep])


class SamplingPipeline:
    """Selector + allocator + gates + downsampler + baseline (+ replay), with a shared stats store and RNG."""

    def __init__(
        self,
        *,
        selector: Selector,
        allocator: Allocator,
        gates: list[Gate],
        downsampler: Downsampler,
        baseline: Baseline,
        replay: Replay | None,
        pool_size: int,
        group_size: int,
        batch_prompts: int,
        total_steps: int,
        seed: int,
        levels: np.ndarray | None = None,
        positive_threshold: float = 0.5,
        ema_decay: float = 0.5,
    ) -> None:
        self.selector, self.allocator, self.gates = selector, allocator, gates
        self.downsampler, self.baseline, self.replay = downsampler, baseline, replay
        self.group_size, self.batch_prompts, self.total_steps = group_size, batch_prompts, total_steps
        self.levels = levels
        self.stats = PromptStats(pool_size, ema_decay=ema_decay, positive_threshold=positive_threshold)
        self.rng = np.random.default_rng(seed)
        self._metrics: dict[str, Any] = {}
        self._ctx: SampleContext | None = None

    # ------------------------------------------------------------------ components
    @property
    def components(self) -> dict[str, Component]:
        comps: dict[str, Component] = {"selector": self.selector, "allocator": self.allocator}
        comps |= {f"gate{i}": g for i, g in enumerate(self.gates)}
        comps |= {"downsampler": self.downsampler, "baseline": self.baseline}
        if self.replay is not None:
            comps["replay"] = self.replay
        return comps

    def _context(self, step: int, budget: Budget) -> SampleContext:
        return SampleContext(step, self.total_steps, self.group_size, self.batch_prompts, self.stats, self.rng,
                             budget, self.levels)

    # ------------------------------------------------------------------ one step
    def begin_step(self, step: int, budget: Budget) -> Request:
        """Plan the first generation round of ``step``."""
        ctx = self._ctx = self._context(step, budget)
        self._round, self._refills = 1, 0
        k = self.batch_prompts
        if self.replay is not None and len(self.replay):
            k = max(int(round(k * self.replay.fresh_fraction)), 1)
        prompts = self.selector.select(k, ctx)
        req = fit_to_budget(prompts, self.allocator.initial(prompts, ctx), budget.left())
        self._used = req.prompts.copy()
        self._active = req.prompts.copy()
        return req

    def next_request(self, pools: dict[int, GroupObs]) -> Request | None:
        """Another round for still-active prompts (successive sampling), else a refill (gates), else None."""
        ctx = self._ctx
        assert ctx is not None, "begin_step first"
        if self._round < self.allocator.max_rounds and len(self._active) and ctx.budget.left() > 0:
            active = [pools[int(p)] for p in self._active]
            extra = np.asarray(self.allocator.extend(self._round, active, ctx), dtype=np.int64)
            self._round += 1
            req = fit_to_budget(self._active[extra > 0], extra[extra > 0], ctx.budget.left())
            if len(req):
                if not self.allocator.revisit:
                    self._active = req.prompts
                return req
        return self._refill(pools, ctx)

    def _refill(self, pools: dict[int, GroupObs], ctx: SampleContext) -> Request | None:
        refill_gates = [g for g in self.gates if g.refill]
        if not refill_gates or self._refills >= min(g.max_refills for g in refill_gates):
            return None
        passing = int(self._gate_mask(list(pools.values()), ctx)[1].sum())
        need = self.batch_prompts - passing
        if need <= 0 or ctx.budget.left() <= 0:
            return None
        self._refills += 1
        ctx.exclude = self._used
        # ask for the shortfall scaled by the observed pass rate of the gate, at least the shortfall
        pass_rate = max(passing / max(len(pools), 1), 0.1)
        k = int(min(np.ceil(need / pass_rate), self.batch_prompts * 3))
        prompts = self.selector.select(k, ctx)
        ctx.exclude = None
        req = fit_to_budget(prompts, self.allocator.initial(prompts, ctx), ctx.budget.left())
        if not len(req):
            return None
        self._used = np.concatenate([self._used, req.prompts])
        self._active, self._round = req.prompts, 1
        return req

    def _gate_mask(self, pools: list[GroupObs], ctx: SampleContext) -> tuple[list[np.ndarray], np.ndarray]:
        kept = self.downsampler.select(pools, ctx)
        mask = np.ones(len(pools), dtype=bool)
        for gate in self.gates:
            mask &= np.asarray(gate.keep(pools, kept, ctx), dtype=bool)
        mask &= np.array([len(k) > 0 for k in kept], dtype=bool)
        return kept, mask

    def finalize(self, pools: dict[int, GroupObs]) -> list[TrainGroup]:
        """Choose the rollouts and groups to train, their baselines and weights; record step metrics."""
        ctx = self._ctx
        assert ctx is not None, "begin_step first"
        obs = list(pools.values())
        kept, mask = self._gate_mask(obs, ctx)
        bases = self.baseline.compute(obs, ctx)
        weights = self.selector.weights(np.array([p.prompt for p in obs], dtype=np.int64), ctx)
        groups = [
            TrainGroup(p.prompt, k, b, float(w))
            for p, k, b, w, m in zip(obs, kept, bases, weights, mask)
            if m
        ]
        if any(g.refill for g in self.gates) and len(groups) > self.batch_prompts:
            groups = groups[: self.batch_prompts]  # DAPO trims to exactly the train batch
        self._record(obs, kept, groups, ctx)
        return groups

    def observe(self, pools: dict[int, GroupObs], trained: list[TrainGroup]) -> None:
        """Update the stats store and every component after the optimiser step."""
        ctx = self._ctx
        assert ctx is not None, "begin_step first"
        obs = list(pools.values())
        self.stats.update(np.array([p.prompt for p in obs], dtype=np.int64), [p.rewards for p in obs], ctx.step)
        for comp in self.components.values():
            comp.observe(ctx, obs, trained)

    def token_fraction(self) -> float | None:
        assert self._ctx is not None
        return self.downsampler.token_fraction(self._ctx)

    # ------------------------------------------------------------------ replay
    def replay_draw(self) -> list[Replayed]:
        """Stored groups to mix into this step's batch (DOTS rollout replay); empty without replay."""
        if self.replay is None or self._ctx is None:
            return []
        k = self.batch_prompts - int(round(self.batch_prompts * self.replay.fresh_fraction))
        return self.replay.draw(k, self._ctx) if len(self.replay) else []

    def replay_push(self, groups: list[Replayed]) -> None:
        if self.replay is not None:
            self.replay.push(groups)

    # ------------------------------------------------------------------ books
    def _record(self, obs: list[GroupObs], kept: list[np.ndarray], groups: list[TrainGroup],
                ctx: SampleContext) -> None:
        n = np.array([p.n for p in obs], dtype=np.int64)
        trained_prompts = {g.prompt for g in groups}
        by_prompt = {p.prompt: (p, k) for p, k in zip(obs, kept)}
        mixed = [by_prompt[g.prompt][0].is_mixed(g.keep) for g in groups]
        wasted = sum(p.n for p, k in zip(obs, kept) if p.prompt not in trained_prompts or not p.is_mixed(k))
        est = self.stats.pass_rate(np.array([p.prompt for p in obs], dtype=np.int64))
        self._metrics = {
            "sampler/prompts_generated": len(obs),
            "sampler/groups_trained": len(groups),
            "sampler/rollouts_trained": int(sum(len(g.keep) for g in groups)),
            "sampler/mixed_share": float(np.mean(mixed)) if mixed else 0.0,
            "sampler/budget": ctx.budget.rollouts,
            "sampler/budget_spent": ctx.budget.spent_rollouts,
            "sampler/wasted_rollouts": int(wasted),
            "sampler/rounds": self._round,
            "sampler/refills": self._refills,
            "sampler/rollouts_per_prompt_min": int(n.min()) if n.size else 0,
            "sampler/rollouts_per_prompt_mean": float(n.mean()) if n.size else 0.0,
            "sampler/rollouts_per_prompt_max": int(n.max()) if n.size else 0,
            # (estimated pass rate before this step, rollouts generated) per prompt: the allocation plot
            "trace/alloc": [[round(float(e), 4), int(c)] for e, c in zip(est, n)],
        }

    def metrics(self) -> dict[str, Any]:
        out = dict(self._metrics)
        seen = self.stats.ema_pass[~np.isnan(self.stats.ema_pass)]
        out["sampler/pool_seen"] = int(seen.size)
        if seen.size:
            hist, _ = np.histogram(seen, bins=[0, 1e-9, 0.2, 0.4, 0.6, 0.8, 1 - 1e-9, 1.0 + 1e-9])
            out["trace/pool_pass_hist"] = (hist / seen.size).round(4).tolist()
            out["sampler/pool_pass_mean"] = float(seen.mean())
        for name, comp in self.components.items():
            out |= {f"sampler/{name}/{k}" if not k.startswith("sampler/") else k: v
                    for k, v in comp.metrics().items()}
        return out

    def state_dict(self) -> dict[str, Any]:
        return {
            "rng": self.rng.bit_generator.state,
            "stats": self.stats.state_dict(),
            "components": {k: (type(c).__name__, c.state_dict()) for k, c in self.components.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.stats.load_state_dict(state["stats"])
        comps = self.components
        if set(state["components"]) != set(comps):
            raise ValueError(f"sampler checkpoint has components {sorted(state['components'])}, "
                             f"config builds {sorted(comps)}")
        for key, (cls_name, sub) in state["components"].items():
            if type(comps[key]).__name__ != cls_name:
                raise ValueError(f"sampler checkpoint {key} is a {cls_name}, config builds "
                                 f"{type(comps[key]).__name__}")
            comps[key].load_state_dict(sub)

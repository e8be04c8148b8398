"""Composes the sampler components into the object the trainer talks to, and keeps the step's books.

The trainer only ever calls ``begin_step`` -> ``next_request`` (until None) -> ``finalize`` -> ``observe``;
in asynchronous mode several steps are in flight at once, each call names its ``step``, and ``begin_step`` is
told which prompts other steps are rolling out (``in_flight``) so none is picked twice;
every published method is a combination of registered components chosen in config (see ``presets.py``).
The pipeline owns everything a method may change about a step: which prompts and contexts, how many
rollouts, which groups and rollouts are trained, their advantages (through the injected estimator, over each
whole pool), their weights, replayed groups and the token fraction. The trainer receives plain data.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from rollwise.sampling.base import (
    Allocator,
    Baseline,
    Budget,
    Component,
    Downsampler,
    Estimator,
    Gate,
    GroupObs,
    Request,
    SampleContext,
    Selector,
    TrainGroup,
    Transform,
    estimate_grpo,
)
from rollwise.sampling.replay import Replay
from rollwise.sampling.stats import PromptStats

MIN_GROUP = 2  # a group of one rollout has no contrast: never trained (unless the baseline is external)


@dataclass
class _StepState:
    """One step's planning state, from ``begin_step`` to ``observe`` (several coexist in async mode)."""

    ctx: SampleContext
    fresh: int  # prompts selected fresh; the rest of the batch is replayed
    used: np.ndarray  # every prompt generated this step (refills must not repeat them)
    active: np.ndarray  # prompts a further round may extend
    round: int = 1
    refills: int = 0
    dropped_small: int = 0


@dataclass
class TrainPlan:
    """What one step trains: fresh groups first, replayed groups after, and the token fraction to keep."""

    groups: list[TrainGroup]
    token_fraction: float | None = None  # D3S token level: share of tokens kept by |A|*entropy (None = all)


def fit_to_budget(prompts: np.ndarray, counts: np.ndarray, left: int, min_count: int = 1) -> Request:
    """Trim a request so its total fits in ``left`` rollouts (earlier prompts keep priority); a prompt cut
    below ``min_count`` rollouts is dropped rather than sampled as a group too small to train."""
    counts = np.asarray(counts, dtype=np.int64).copy()
    prompts = np.asarray(prompts, dtype=np.int64)
    over = np.cumsum(counts) - left
    if over.size and over[-1] > 0:
        cut = np.maximum(counts - np.maximum(over, 0), 0)  # cumsum is monotone: only a tail is affected
        counts = np.where(cut < np.minimum(counts, min_count), 0, cut)
    keep = counts > 0
    return Request(prompts[keep], counts[keep])


class SamplingPipeline:
    """Selector + allocator + transform + gates + downsampler + baseline (+ replay), with a shared stats store,
    RNG and the advantage estimator."""

    def __init__(
        self,
        *,
        selector: Selector,
        allocator: Allocator,
        gates: list[Gate],
        downsampler: Downsampler,
        baseline: Baseline,
        transform: Transform,
        replay: Replay | None,
        pool_size: int,
        group_size: int,
        batch_prompts: int,
        total_steps: int,
        seed: int,
        levels: np.ndarray | None = None,
        positive_threshold: float = 0.5,
        ema_decay: float = 0.5,
        estimate: Estimator = estimate_grpo,
    ) -> None:
        self.selector, self.allocator, self.gates = selector, allocator, gates
        self.downsampler, self.baseline, self.transform, self.replay = downsampler, baseline, transform, replay
        self.group_size, self.batch_prompts, self.total_steps = group_size, batch_prompts, total_steps
        self.levels, self.estimate = levels, estimate
        # a pool of one rollout is trained only against an external baseline that contrasts it (MSSR)
        self.min_group = 1 if baseline.single_rollout else MIN_GROUP
        self.stats = PromptStats(pool_size, ema_decay=ema_decay, positive_threshold=positive_threshold)
        self.rng = np.random.default_rng(seed)
        self._metrics: dict[str, Any] = {}
        self._steps: dict[int, _StepState] = {}  # steps begun and not yet observed

    # ------------------------------------------------------------------ components and budget
    @property
    def components(self) -> dict[str, Component]:
        comps: dict[str, Component] = {"selector": self.selector, "allocator": self.allocator}
        comps |= {f"gate{i}": g for i, g in enumerate(self.gates)}
        comps |= {"downsampler": self.downsampler, "baseline": self.baseline, "transform": self.transform}
        if self.replay is not None:
            comps["replay"] = self.replay
        return comps

    def budget(self) -> tuple[int, int]:
        """(need, minimum) rollouts per step: the most this composition may spend, and the least that lets
        every component act (past the allocator's first round; one refill prompt for a refilling gate)."""
        return compute_budget(self.allocator, self.gates, self.batch_prompts, self.group_size)

    def _context(self, step: int, budget: Budget) -> SampleContext:
        return SampleContext(step, self.total_steps, self.group_size, self.batch_prompts, self.stats, self.rng,
                             budget, self.levels, estimate=self.estimate)

    def _with_contexts(self, req: Request, pools: dict[int, GroupObs], ctx: SampleContext) -> Request:
        req.contexts = self.transform.contexts(req.prompts, pools, ctx) if len(req) else None
        return req

    # ------------------------------------------------------------------ one step
    def _state(self, step: int | None) -> _StepState:
        """The state of ``step`` (default: the latest step begun)."""
        assert self._steps, "begin_step first"
        return self._steps[max(self._steps) if step is None else step]

    def begin_step(self, step: int, budget: Budget, in_flight: np.ndarray | None = None) -> Request:
        """Plan the first generation round of ``step``. Prompts in ``in_flight`` (being rolled out for other
        steps) are not picked unless the selector says it may repeat them: a selector that skips ``ctx.exclude``
        is asked for k with them excluded (uniform: its permutation passes over no prompt); any other is asked
        for that many more and the in-flight ones are dropped, so its own rule still orders what is left."""
        ctx = self._context(step, budget)
        k = self.batch_prompts
        if self.replay is not None and len(self.replay):
            k = max(int(round(k * self.replay.fresh_fraction)), 1)
        busy = np.zeros(0, dtype=np.int64) if in_flight is None else np.asarray(in_flight, dtype=np.int64)
        ctx.in_flight = busy
        if len(busy) and self.selector.skips_excluded and not self.selector.repeat_in_flight:
            ctx.exclude = busy  # it passes over them itself: no prompt is drawn and dropped
            prompts = self.selector.select(k, ctx)
            ctx.exclude = None
        elif len(busy) and not self.selector.repeat_in_flight:
            prompts = self.selector.select(k + len(busy), ctx)
            prompts = prompts[~np.isin(prompts, busy)][:k]
        else:
            prompts = self.selector.select(k, ctx)
        req = fit_to_budget(prompts, self.allocator.initial(prompts, ctx), budget.left(), self.min_group)
        self._steps[step] = _StepState(ctx, k, req.prompts.copy(), req.prompts.copy())
        return self._with_contexts(req, {}, ctx)

    def next_request(self, pools: dict[int, GroupObs], step: int | None = None) -> Request | None:
        """Another round for still-active prompts (successive sampling), else a refill (gates), else None."""
        st = self._state(step)
        ctx = st.ctx
        # a prompt the rollout strategy left without completions (APRIL aborted it) takes no further round
        st.active = st.active[np.isin(st.active, np.fromiter(pools, dtype=np.int64, count=len(pools)))]
        if st.round < self.allocator.max_rounds and len(st.active) and ctx.budget.left() > 0:
            active = [pools[int(p)] for p in st.active]
            extra = np.asarray(self.allocator.extend(st.round, active, ctx), dtype=np.int64)
            st.round += 1
            req = fit_to_budget(st.active[extra > 0], extra[extra > 0], ctx.budget.left())
            if len(req):
                if not self.allocator.revisit:
                    st.active = req.prompts
                return self._with_contexts(req, pools, ctx)
        return self._refill(pools, st)

    def _refill(self, pools: dict[int, GroupObs], st: _StepState) -> Request | None:
        ctx = st.ctx
        refill_gates = [g for g in self.gates if g.refill]
        if not refill_gates or st.refills >= min(g.max_refills for g in refill_gates):
            return None
        passing = int(self._gate(list(pools.values()), ctx)[1].sum())
        need = self.batch_prompts - passing
        if need <= 0 or ctx.budget.left() <= 0:
            return None
        st.refills += 1
        ctx.exclude = st.used if ctx.in_flight is None else np.concatenate([st.used, ctx.in_flight])
        # ask for the shortfall scaled by the observed pass rate of the gate, at least the shortfall
        pass_rate = max(passing / max(len(pools), 1), 0.1)
        cap = min(g.refill_prompts(self.batch_prompts) // max(g.max_refills, 1) for g in refill_gates)
        k = int(min(np.ceil(need / pass_rate), max(cap, need)))
        prompts = self.selector.select(k, ctx)
        ctx.exclude = None
        req = fit_to_budget(prompts, self.allocator.initial(prompts, ctx), ctx.budget.left(), self.min_group)
        if not len(req):
            return None
        st.used = np.concatenate([st.used, req.prompts])
        st.active, st.round = req.prompts, 1
        return self._with_contexts(req, pools, ctx)

    def _gate(self, pools: list[GroupObs], ctx: SampleContext) -> tuple[list[np.ndarray], np.ndarray]:
        """Kept rollouts per pool (down-sampler, then the estimator's own exclusions) and the gate mask."""
        bases = self.baseline.compute(pools, ctx)
        est = self.estimate(pools, bases)
        ctx.advantages = [a for a, _ in est]
        kept = self.downsampler.select(pools, ctx)
        kept = [k[ek[k]] for k, (_, ek) in zip(kept, est)]
        if self.downsampler.estimate_on_kept:  # the kept rows are the group (MC-GRPO's control)
            sub = [dataclasses.replace(p, rewards=p.rewards[k], lengths=p.lengths[k], mean_logprob=None,
                                       payload=None, texts=None) for p, k in zip(pools, kept)]
            for i, (k, (a, _)) in enumerate(zip(kept, self.estimate(sub, [None] * len(sub)))):
                ctx.advantages[i] = np.zeros(pools[i].n)
                ctx.advantages[i][k] = a
        mask = np.ones(len(pools), dtype=bool)
        for gate in self.gates:
            mask &= np.asarray(gate.keep(pools, kept, ctx), dtype=bool)
        return kept, mask

    def finalize(self, pools: dict[int, GroupObs], step: int | None = None) -> TrainPlan:
        """Choose the groups and rollouts to train with their (weighted) advantages, add replayed groups,
        and record the step's metrics."""
        st = self._state(step)
        ctx = st.ctx
        obs = list(pools.values())
        for comp in self.components.values():
            comp.on_generated(ctx, obs)
        kept, mask = self._gate(obs, ctx)
        small = np.array([len(k) < self.min_group for k in kept], dtype=bool)
        st.dropped_small = int((mask & small).sum())
        mask &= ~small
        sel = np.flatnonzero(mask)
        if any(g.refill for g in self.gates):
            sel = sel[: self.batch_prompts]  # DAPO trims to exactly the train batch (before weights normalise)
        chosen = [obs[i] for i in sel]
        weights = self.selector.weights(chosen, [kept[i] for i in sel], ctx) if len(sel) else np.zeros(0)
        groups = []
        for i, w in zip(sel, weights):
            p, k = obs[i], kept[i]
            adv = ctx.advantages[i][k] * float(w)
            rollouts = [p.payload[j] for j in k] if p.payload is not None else []
            groups.append(TrainGroup(p.prompt, k, adv, rollouts, float(w), step=ctx.step))
        self._record(obs, kept, groups, st)
        replayed = self._replay_draw(st)
        return TrainPlan(groups + replayed, self.downsampler.token_fraction(ctx))

    def observe(self, pools: dict[int, GroupObs], trained: list[TrainGroup],
                losses: np.ndarray | None = None, step: int | None = None) -> None:
        """After the optimiser step: update the stats store and every component (``losses`` [len(trained)]:
        each trained group's mean surrogate loss), and buffer the fresh groups for replay. Ends the step."""
        st = self._state(step)
        ctx = st.ctx
        for old in [s for s in self._steps if s < ctx.step]:  # steps never observed (a failed step) end too
            del self._steps[old]
        obs = list(pools.values())
        own = [p.rewards if p.own_rewards is None else p.own_rewards for p in obs]  # the policy's, not a splice's
        self.stats.update(np.array([p.prompt for p in obs], dtype=np.int64), own, ctx.step)
        for comp in self.components.values():
            comp.observe(ctx, obs, trained, losses)
        if self.replay is not None:
            self.replay.push(trained)
        del self._steps[ctx.step]

    def observe_update(self, events: set[str]) -> None:
        """Events of the policy update that components react to: ``policy_reset`` (ReMix's reincarnation)."""
        if "policy_reset" in events:
            for comp in self.components.values():
                comp.on_policy_reset()

    def _replay_draw(self, st: _StepState) -> list[TrainGroup]:
        if self.replay is None:
            return []
        return self.replay.draw(self.batch_prompts - st.fresh, st.ctx)  # an empty buffer draws (and counts) 0

    # ------------------------------------------------------------------ books
    def _record(self, obs: list[GroupObs], kept: list[np.ndarray], groups: list[TrainGroup],
                st: _StepState) -> None:
        ctx = st.ctx
        n = np.array([p.n for p in obs], dtype=np.int64)
        trained_prompts = {g.prompt for g in groups}
        by_prompt = {p.prompt: p for p in obs}
        single = self.min_group == 1  # lone rollouts against an external baseline: informative = A != 0
        mixed = [bool(np.any(g.advantages != 0)) if single else by_prompt[g.prompt].is_mixed(g.keep) for g in groups]
        wasted = sum(p.n for i, (p, k) in enumerate(zip(obs, kept)) if p.prompt not in trained_prompts
                     or not (np.any(ctx.advantages[i][k] != 0) if single else p.is_mixed(k)))
        est = self.stats.pass_rate(np.array([p.prompt for p in obs], dtype=np.int64))
        self._metrics = {
            "sampler/prompts_generated": len(obs),
            "sampler/groups_trained": len(groups),
            "sampler/rollouts_trained": int(sum(len(g.keep) for g in groups)),
            "sampler/mixed_share": float(np.mean(mixed)) if mixed else 0.0,
            "sampler/budget": ctx.budget.rollouts,
            "sampler/budget_spent": ctx.budget.spent_rollouts,
            "sampler/wasted_rollouts": int(wasted),
            "sampler/dropped_small": st.dropped_small,
            "sampler/rounds": st.round,
            "sampler/refills": st.refills,
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


def compute_budget(allocator: Allocator, gates: list[Gate], prompts: int, group_size: int) -> tuple[int, int]:
    """(need, minimum) rollouts per step of an allocator and gates at ``prompts`` x ``group_size``: a
    refilling gate adds its refill prompts at the allocator's per-prompt maximum to the need, and needs the
    first round plus one refill prompt to act."""
    need, minimum = allocator.budget(prompts, group_size)
    refill = sum(g.refill_prompts(prompts) for g in gates)
    if refill:
        need += refill * allocator.budget(1, group_size)[0]
        minimum = max(minimum, (prompts + 1) * allocator.first_round(group_size))
    return need, minimum

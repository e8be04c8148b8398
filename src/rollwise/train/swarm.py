"""A swarm node's side of SAPO (Swarm sAmpling Policy Optimization, arXiv:2509.08721): publish this step's
question groups as text, and train I local + J external groups.

:class:`SwarmPipeline` wraps the sampler pipeline and keeps its interface, so the trainer loop does not know a
swarm is there. At ``finalize`` it

1. publishes every local pool (question text, reference, completions, whether each stopped, rewards, behaviour
   logprobs) to the board (``rollwise.swarm.board``);
2. reads the other nodes' newest publications and draws J whole question groups ("trees") uniformly over
   (agent, question) pairs; only groups of exactly ``sampler.group_size`` completions qualify (rl-swarm's
   ``transplant_trees``);
3. re-templates each question with this node's prompt template, re-tokenises each completion with this node's
   tokenizer (plus this node's stop token when the completion had stopped), re-scores it with this node's
   verifier, and computes its logprobs under this node's current policy. Those are the rollouts' behaviour
   logprobs, so the ratio is 1 and no behaviour importance weight applies: SAPO trains external text with a plain
   policy gradient (``num_iterations`` 1). The group's advantages come from the configured estimator over the
   group (GRPO: (r - mean) / (std + eps));
4. appends them to the plan after the local groups.

At ``observe`` the external groups are stripped: they are not in this node's pool, so the sampler never learns
from them (its statistics, replay buffer and curricula stay the node's own). Board faults (a dead Ray actor, an
unreadable file) are counted (``swarm/board_errors``) and the node trains alone that step; a malformed payload
is skipped and counted (``swarm/skipped``). The draw is seeded by (run seed, step): a resumed node draws what an
uninterrupted one would have from the same board.

``swarm/log_ratio_source``: mean over external tokens of log pi_node - log mu_source, where the publisher's
tokens are this node's (same tokenizer and token count): how off-policy the external text is; SAPO ignores it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from rollwise.sampling import TrainGroup
from rollwise.sampling.base import GroupObs
from rollwise.sampling.pipeline import TrainPlan
from rollwise.swarm.board import BOARDS, SharedGroup
from rollwise.train.policy import build_seq_batch, compute_logprobs
from rollwise.types import Prompt, Rollout

log = logging.getLogger(__name__)


class SwarmPipeline:
    """The sampler pipeline plus a swarm board (module docstring); every other call goes to the inner pipeline."""

    def __init__(self, inner: Any, board: Any, *, agent: str, external: int, publish: bool, max_age: int | None,
                 pool: list[Prompt], encode: Callable[[str], list[int]], encode_raw: Callable[[str], list[int]],
                 stop_id: int, verifier: Any, model: torch.nn.Module, pad_id: int, temperature: float,
                 max_new_tokens: int, seed: int) -> None:
        self.inner, self.board, self.agent, self.external = inner, board, agent, external
        self.publish, self.max_age, self.pool = publish, max_age, pool
        self.encode, self.encode_raw, self.stop_id, self.verifier = encode, encode_raw, stop_id, verifier
        self.model, self.pad_id, self.temperature, self.max_new_tokens = model, pad_id, temperature, max_new_tokens
        self.seed = seed
        self._metrics: dict[str, float] = {}
        self._ratio: list[float] = []  # this step's external-token log pi_node - log mu_source

    def __getattr__(self, name: str) -> Any:  # begin_step, next_request, state_dict, budget, ...
        return getattr(self.inner, name)

    # ------------------------------------------------------------------ the two calls the swarm changes
    def finalize(self, pools: dict[int, GroupObs], step: int | None = None) -> TrainPlan:
        plan = self.inner.finalize(pools, step)
        step = int(step if step is not None else 0)
        self._metrics = {"swarm/board_errors": 0, "swarm/skipped": 0, "swarm/available": 0, "swarm/agents_seen": 0,
                         "swarm/truncated": 0}  # every key every step, whether or not the board answered
        if self.publish:
            self._publish(pools, step)
        external = self._draw(step) if self.external else []
        groups = self._adopt_all(external, step)
        self._record(groups)
        return TrainPlan(plan.groups + groups, plan.token_fraction)

    def observe(self, pools: dict[int, GroupObs], trained: list[TrainGroup], losses: np.ndarray | None = None,
                step: int | None = None) -> None:
        """The inner pipeline observes its own groups only (external ones carry negative ids)."""
        own = [i for i, g in enumerate(trained) if g.prompt >= 0]
        self.inner.observe(pools, [trained[i] for i in own], None if losses is None else np.asarray(losses)[own],
                           step)

    def metrics(self) -> dict[str, Any]:
        return self.inner.metrics() | self._metrics

    # ------------------------------------------------------------------ board
    def _publish(self, pools: dict[int, GroupObs], step: int) -> None:
        groups = []
        for p, obs in pools.items():
            rs = obs.payload or []
            task = self.pool[p]
            groups.append(SharedGroup(self.agent, step, task.text, str(task.reference), [r.text for r in rs],
                                      [r.finish_reason == "stop" for r in rs], [float(r.reward) for r in rs],
                                      [list(map(float, r.behaviour_logprobs)) for r in rs],
                                      {"level": task.meta.get("level", "")} if isinstance(task.meta, dict) else {}))
        try:
            self.board.publish(self.agent, step, groups)
        except Exception as exc:  # noqa: BLE001 - the swarm is best effort: the node trains alone
            self._metrics["swarm/board_errors"] += 1
            log.warning("swarm: publishing to the board failed (%s: %s); training alone", type(exc).__name__, exc)

    def _draw(self, step: int) -> list[SharedGroup]:
        """J groups drawn uniformly without replacement over (agent, question) pairs of qualifying groups."""
        try:
            groups, skipped = self.board.read(self.agent)
        except Exception as exc:  # noqa: BLE001
            self._metrics["swarm/board_errors"] += 1
            log.warning("swarm: reading the board failed (%s: %s); training alone", type(exc).__name__, exc)
            return []
        G = self.inner.group_size
        ok = [g for g in groups if g.agent != self.agent and len(g.completions) == G
              and (self.max_age is None or step - g.round <= self.max_age)]
        self._metrics["swarm/skipped"] += skipped
        self._metrics["swarm/available"] = len(ok)
        self._metrics["swarm/agents_seen"] = len({g.agent for g in ok})
        if not ok:
            return []
        ok.sort(key=lambda g: (g.agent, g.round, g.question))  # the board's order is not the draw's
        rng = np.random.default_rng([self.seed, step, 0x5A90])
        pick = rng.choice(len(ok), size=min(self.external, len(ok)), replace=False)
        return [ok[i] for i in sorted(pick)]

    # ------------------------------------------------------------------ re-template, re-tokenise, re-score
    def _adopt_all(self, groups: list[SharedGroup], step: int) -> list[TrainGroup]:
        """Every drawn group re-templated, re-tokenised, verified and scored under this node's policy (one
        verifier batch and one forward for all of them); external group k gets prompt id -1 - k."""
        prompts, comps, texts, refs, truncated = [], [], [], [], 0
        for g in groups:
            pid = self.encode(g.question)
            for text, stopped in zip(g.completions, g.finished):
                ids = self.encode_raw(text) + ([self.stop_id] if stopped else [])
                truncated += len(ids) > self.max_new_tokens
                prompts.append(pid)
                comps.append(ids[: self.max_new_tokens] or [self.stop_id])
                texts.append(text)
                refs.append(g.reference)
        if not comps:
            return []
        results = self.verifier.score_batch(texts, refs)
        logp = self._logprobs(prompts, comps)
        self._metrics["swarm/truncated"] = truncated
        out, at = [], 0
        for k, g in enumerate(groups):
            n = len(g.completions)
            rollouts = [Rollout(-1 - k, prompts[i], comps[i], logp[i], texts[i],
                                "stop" if comps[i][-1] == self.stop_id else "length", step, float(results[i].score),
                                bool(results[i].parsed), dict(results[i].info), versions=[step] * len(comps[i]),
                                meta={"swarm_agent": g.agent, "swarm_round": g.round}) for i in range(at, at + n)]
            at += n
            self._log_ratio(g, rollouts)
            obs = GroupObs(-1 - k, np.array([r.reward for r in rollouts], dtype=np.float64),
                           np.array([r.num_tokens for r in rollouts], dtype=np.int64), payload=rollouts)
            adv, keep = self.inner.estimate([obs], [None])[0]
            kept = np.flatnonzero(keep)
            out.append(TrainGroup(-1 - k, kept, np.asarray(adv, dtype=np.float64)[kept],
                                  [rollouts[i] for i in kept], step=step))
        return out

    @torch.no_grad()
    def _logprobs(self, prompts: list[list[int]], comps: list[list[int]]) -> list[list[float]]:
        """log pi(y_t | x, y_<t) of each completion under this node's current policy ([N] lists of [T_i])."""
        batch = build_seq_batch(prompts, comps, self.pad_id)
        device = next(self.model.parameters()).device
        was_training = self.model.training
        self.model.eval()
        try:
            lp, _ = compute_logprobs(self.model, batch.to(device), self.temperature)  # [G, C]
        finally:
            self.model.train(was_training)
        return [lp[i, : len(c)].tolist() for i, c in enumerate(comps)]

    def _log_ratio(self, g: SharedGroup, rollouts: list[Rollout]) -> None:
        diffs = [a - b for r, src in zip(rollouts, g.logprobs or [])
                 if len(src) == r.num_tokens for a, b in zip(r.behaviour_logprobs, src)]
        self._ratio += diffs

    def _record(self, groups: list[TrainGroup]) -> None:
        m = self._metrics
        rs = [r for g in groups for r in g.rollouts]
        m["swarm/external_groups"] = len(groups)
        m["swarm/external_rollouts"] = len(rs)
        m["swarm/external_mixed"] = sum(bool(np.any(g.advantages != 0)) for g in groups)
        m["swarm/external_reward_mean"] = float(np.mean([r.reward for r in rs])) if rs else 0.0
        if self._ratio:
            m["swarm/log_ratio_source"] = float(np.mean(self._ratio))
        self._ratio = []


def wrap_swarm(cfg: Any, inner: Any, *, pool: list[Prompt], encode: Callable[[str], list[int]], tok: Any,
               verifier: Any, model: torch.nn.Module) -> Any:
    """``inner`` as a swarm node when the config has a ``[swarm]`` section, else ``inner`` unchanged."""
    s = cfg.swarm
    if s is None:
        return inner
    board = BOARDS.get(s.board)(s.name)
    return SwarmPipeline(inner, board, agent=s.agent or cfg.run.name, external=s.external, publish=s.publish,
                         max_age=s.max_age, pool=pool, encode=encode,
                         encode_raw=lambda t: tok(t, add_special_tokens=False)["input_ids"],
                         stop_id=tok.eos_token_id, verifier=verifier, model=model, pad_id=tok.pad_token_id,
                         temperature=cfg.generation.temperature, max_new_tokens=cfg.generation.max_new_tokens,
                         seed=cfg.run.seed)

"""ETMR: entropy-fork tree majority rollout (ETTRL, Liu et al., arXiv:2508.11356), for label-free test-time RL.

Each prompt asking for n leaves grows M = ceil(n / (1 + B N_f)) trees. A tree starts from one full sample (the
root, decoded with full-vocabulary entropies); its top-N_f entropy positions are the fork points; at each fork
B branches continue from the root's prefix up to the fork and run to the end. Every leaf (roots and branches)
votes, so n leaves cost the roots plus each branch's tokens after its fork: with forks uniform over the length,
(1 + B N_f / 2) / (1 + B N_f) of parallel sampling's tokens, 0.6 at B = N_f = 2 (the paper's "60% of the tokens").

Choices where the paper (read through notes; no code found) is silent:

- forks are taken on the root only, not recursively on branches;
- the forked token is resampled: a branch continues from ``root[:t]`` (t = the fork position), as ROSE does;
- fork positions: the N_f highest root entropies (ties: earliest), distinct; a root shorter than N_f tokens
  forks at all its positions and the remaining forks restart at position 0 (ordinary samples);
- the leaf budget is exact: branches are handed out root by root, fork by fork, B at a time, until the n - M
  leaves beyond the roots are placed (so the last tree may be smaller);
- which leaves are trained is the sampler's: the ``ettrl`` recipe trains a seeded random M of them
  (``vote_split``, ``pick = "random"``).

Completions come back tree by tree (root, then its branches), with ``Completion.meta`` as ROSE's: ``tree``,
``node`` (index in the prompt's list), ``parent`` (the root's node, or -1), ``branch_pos`` and ``prefix_len``.
A branch keeps the root's behaviour logprobs and versions on its prefix, so every leaf is an ordinary sample
of pi_T after its fork: no correction is needed.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from pydantic import Field

from rollwise.generation.base import Completion, Engine, OutputSpec, Prefix, SamplingParams
from rollwise.generation.strategy import RolloutStrategy, StrategyResult


def compute_fork_positions(entropies: list[float], forks: int) -> list[int]:
    """The ``forks`` fork positions of a root: its highest-entropy positions (earliest first on ties), sorted,
    padded with 0 (a restart from the root) when the root has fewer positions."""
    ranked = sorted(range(len(entropies)), key=lambda t: (-entropies[t], t))[:forks]
    return sorted(ranked) + [0] * (forks - len(ranked))


def compute_branch_plan(leaves: int, trees: int, forks: int, branches: int) -> list[list[int]]:
    """Branches per (tree, fork): ``leaves - trees`` handed out tree by tree, fork by fork, ``branches`` at a time."""
    left = max(leaves - trees, 0)
    plan = []
    for _ in range(trees):
        row = []
        for _ in range(forks):
            b = min(branches, left)
            row.append(b)
            left -= b
        plan.append(row)
    return plan


class EtmrStrategy(RolloutStrategy):
    """ETMR: trees forked at the root's highest-entropy tokens (arXiv:2508.11356; module docstring)."""

    class Config(RolloutStrategy.Config):
        forks: int = Field(2, ge=1, le=64, description="fork points per tree, the root's top-N_f entropy positions "
                           "(ETTRL N_f = 2)")
        branches: int = Field(2, ge=1, le=64, description="branches per fork point (ETTRL B = 2)")

    def setup(self) -> None:
        self._trees = 0
        self._stats: dict[str, float] = {}

    def generate(self, engine: Engine, keys: list[int], prompts: list[list[int]], counts: list[int],
                 params: SamplingParams, *, step: int) -> StrategyResult:
        per_tree = 1 + self.branches * self.forks
        trees = [math.ceil(n / per_tree) if n > 0 else 0 for n in counts]
        roots = engine.generate(prompts, trees, params, outputs=OutputSpec(entropy=True))
        req_prompts: list[list[int]] = []
        req_counts: list[int] = []
        req_prefix: list[Prefix | None] = []
        where: list[tuple[int, int, int]] = []  # (prompt, tree, fork position) of each branch request
        for i, rs in enumerate(roots):
            plan = compute_branch_plan(counts[i], trees[i], self.forks, self.branches)
            for j, (root, row) in enumerate(zip(rs, plan)):
                if len(root.entropies) != len(root.token_ids):
                    raise ValueError("generation.strategy 'etmr' needs the engine's per-token entropies "
                                     "(OutputSpec.entropy); this engine returned none")
                for t, b in zip(compute_fork_positions(root.entropies, self.forks), row):
                    if b == 0:
                        continue
                    req_prompts.append(prompts[i])
                    req_counts.append(b)
                    req_prefix.append(Prefix(root.token_ids[:t], root.logprobs[:t], root.versions[:t] or None)
                                      if t > 0 else None)
                    where.append((i, j, t))
        got = engine.generate(req_prompts, req_counts, replace(params, seed=None if params.seed is None else
                                                               params.seed + 1_000_033), prefixes=req_prefix) \
            if req_prompts else []
        by_tree: dict[tuple[int, int], list[tuple[int, Completion]]] = {}
        for (i, j, t), cs in zip(where, got):
            by_tree.setdefault((i, j), []).extend((t, c) for c in cs)
        out: list[list[Completion]] = [[] for _ in prompts]
        for i, rs in enumerate(roots):
            for j, root in enumerate(rs):
                uid, node = self._trees + j, len(out[i])
                root.meta = {"tree": uid, "node": node, "parent": -1, "branch_pos": 0, "prefix_len": 0}
                out[i].append(root)
                for t, c in by_tree.get((i, j), []):
                    c.meta = {"tree": uid, "node": len(out[i]), "parent": node, "branch_pos": t, "prefix_len": t}
                    out[i].append(c)
            self._trees += len(rs)
        self._count(out)
        return StrategyResult(out)

    def _count(self, out: list[list[Completion]]) -> None:
        leaves = [c for cs in out for c in cs]
        for key, v in {"leaves": len(leaves), "roots": sum(c.meta["parent"] < 0 for c in leaves),
                       "prefix_tokens": sum(c.prefix_len for c in leaves),
                       "tokens": sum(len(c.token_ids) for c in leaves)}.items():
            self._stats[key] = self._stats.get(key, 0) + v

    def metrics(self) -> dict[str, float]:
        """Since the last call: leaves per tree, and the share of leaf tokens copied from a root (not decoded)."""
        s, self._stats = self._stats, {}
        if not s.get("leaves"):
            return {}
        return {"etmr_leaves_per_tree": s["leaves"] / max(s["roots"], 1),
                "etmr_prefix_share": s["prefix_tokens"] / max(s["tokens"], 1)}

    def state_dict(self) -> dict[str, Any]:
        return {"trees": self._trees}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._trees = int(state.get("trees", 0))

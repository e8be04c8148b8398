"""ROSE rollouts: semantic-entropy branching with epsilon restarts (Zhao et al., arXiv:2601.05053;
ZiqiZhao1/ROSE-rl @2142dc7, ``generate_sequences_loop_entropy`` in verl/workers/rollout/vllm_rollout_spmd.py).

Each prompt with n samples gets n iterations, one new response each, all prompts of a request batched per
iteration (n sequential engine calls). Iteration 0 samples from the root. Later, with probability ``epsilon``
(or when no stored position has a score) the response is sampled from the root again; otherwise it continues from
``traj[:pos]``, the argmax of the branch score over all the prompt's stored responses and positions (first
maximum in storage order, as ROSE's strict ``>``): the high-score token itself is resampled. The prefix keeps its
stored behaviour logprobs and versions, and its positions keep the parent's scores (so the same point can win
again: ROSE does not exclude used points). Scores (``algos/rose.py:compute_branch_scores``, default
``cosine-entropy``) come from the engine's top-k (k = 20) at the sampling temperature, and the input-embedding
rows of the candidates (``engine.model.get_input_embeddings().weight``, or ``embeddings`` set on the strategy).

Every response is an ordinary sample of pi_T after its prefix, and the prefix tokens are the parent's samples, so
the group is a valid plain GRPO group too: ``rose_segments`` (algo.shaping) adds ROSE's tree advantages but is
not required. The epsilon draws use ``random.Random(params.seed)`` per call (ROSE: the global ``random``).

``Completion.meta``: ``tree`` (id), ``node`` (iteration), ``parent`` (node or -1), ``branch_pos`` (the resampled
position; 0 from the root, where ROSE writes -1 for iteration 0: the same for its estimator) and ``prefix_len``.
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any, Literal

from pydantic import Field

from rollwise.generation.base import Completion, Engine, OutputSpec, Prefix, SamplingParams
from rollwise.generation.strategy import RolloutStrategy, StrategyResult


class RoseStrategy(RolloutStrategy):
    """ROSE: sequential branching at the highest semantic-entropy position, epsilon restarts from the root
    (arXiv:2601.05053)."""

    class Config(RolloutStrategy.Config):
        epsilon: float = Field(0.5, ge=0, le=1, description="probability of sampling from the root instead of "
                               "branching (ROSE entropy_branching_epsilon, example script 0.5)")
        branch_metric: Literal["cosine-entropy", "entropy", "cosine"] = Field(
            "cosine-entropy", description="branch score: -F H, H (top-k entropy) or -F (pairwise cosine mass)")
        topk: int = Field(20, ge=2, le=20, description="candidates per position for the score (ROSE: 20, i.e. "
                          "min(20, logprobs); at most 20, vLLM's max_logprobs)")

    def setup(self) -> None:
        self.embeddings: Any = None  # [V, d] input embeddings; None = take them from engine.model
        self._trees = 0
        self._stats: dict[str, float] = {}

    def _embeddings(self, engine: Engine) -> Any:
        if self.branch_metric == "entropy":
            return None
        if self.embeddings is None:
            model = getattr(engine, "model", None)
            if model is None:
                raise ValueError(f"rose branch_metric {self.branch_metric!r} needs input embeddings: the engine has "
                                 "no .model; set strategy.embeddings or use branch_metric = 'entropy'")
            return model.get_input_embeddings().weight.detach()
        return self.embeddings

    def scores(self, c: Completion, emb: Any) -> list[float]:
        """Branch scores of a completion's new positions (after its prefix)."""
        import torch

        from rollwise.algos.rose import compute_branch_scores

        ids, lps = c.topk_ids[c.prefix_len :], c.topk_logprobs[c.prefix_len :]
        if not ids:
            return []
        ids_t = torch.tensor(ids, dtype=torch.long)
        dev = emb.device if emb is not None else ids_t.device
        return compute_branch_scores(ids_t.to(dev), torch.tensor(lps, device=dev), emb,
                                     self.branch_metric).tolist()

    def generate(self, engine: Engine, keys: list[int], prompts: list[list[int]], counts: list[int],
                 params: SamplingParams, *, step: int) -> StrategyResult:
        rng = random.Random(params.seed)
        emb = self._embeddings(engine)
        out: list[list[Completion]] = [[] for _ in prompts]
        score: list[list[list[float]]] = [[] for _ in prompts]  # prompt -> response -> per-position score
        uids = list(range(self._trees, self._trees + len(prompts)))
        self._trees += len(prompts)
        restarts = branched = 0
        for it in range(max(counts, default=0)):
            todo = [i for i, n in enumerate(counts) if n > it]
            pre: list[Prefix | None] = []
            metas = []
            for i in todo:
                root = it == 0 or (self.epsilon > 0 and rng.random() < self.epsilon)
                best = None if root else self.best(score[i])
                if best is None:
                    restarts += it > 0
                    pre.append(None)
                    metas.append({"tree": uids[i], "node": it, "parent": -1, "branch_pos": 0, "prefix_len": 0})
                    continue
                r, pos = best
                par = out[i][r]
                pre.append(Prefix(par.token_ids[:pos], par.logprobs[:pos], par.versions[:pos] or None))
                metas.append({"tree": uids[i], "node": it, "parent": r, "branch_pos": pos, "prefix_len": pos})
                branched += 1
            # a distinct seed per iteration: the engine's noise is indexed by row and position
            got = engine.generate([prompts[i] for i in todo], [1] * len(todo), replace(params, seed=(
                None if params.seed is None else params.seed + 104729 * it)), prefixes=pre,
                outputs=OutputSpec(topk=self.topk))
            for i, meta, (c,) in zip(todo, metas, got):
                parent = meta["parent"]
                inherited = score[i][parent][: c.prefix_len] if parent >= 0 else []
                score[i].append(inherited + self.scores(c, emb))
                c.meta = meta
                out[i].append(c)
        for key, v in {"rollouts": sum(counts), "branched": branched, "restarts": restarts,
                       "prefix_tokens": sum(c.prefix_len for cs in out for c in cs),
                       "tokens": sum(len(c.token_ids) for cs in out for c in cs)}.items():
            self._stats[key] = self._stats.get(key, 0) + v
        return StrategyResult(out)

    @staticmethod
    def best(scores: list[list[float]]) -> tuple[int, int] | None:
        """(response, position) of the highest score, first in storage order; None when nothing is stored."""
        best, where = float("-inf"), None
        for r, s in enumerate(scores):
            for pos, v in enumerate(s):
                if v > best:
                    best, where = v, (r, pos)
        return where

    def metrics(self) -> dict[str, float]:
        """Since the last call: the share of responses branched from a stored one, of root restarts after
        iteration 0, and of tokens copied from a parent (prefixes)."""
        s, self._stats = self._stats, {}
        if not s.get("rollouts"):
            return {}
        n = s["rollouts"]
        return {"rose_branched_share": s["branched"] / n, "rose_restart_share": s["restarts"] / n,
                "rose_prefix_share": s["prefix_tokens"] / max(s["tokens"], 1)}

    def state_dict(self) -> dict[str, Any]:
        return {"trees": self._trees}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._trees = int(state.get("trees", 0))

"""LATR: lookahead tree-based rollouts (Xing et al., arXiv:2510.24302; starreeze/latr @2adb0ed: model/generation.py,
model/sample_filter.py, model/metrics.py, verl/workers/rollout/kt_rollout.py).

Per prompt with ``n`` samples, ``kt_n = round(n * eta)`` come from a tree and ``n - kt_n`` are ordinary samples
(``eta`` from ``mix_ratio_schedule`` at the step, or the fixed ``eta`` knob). The tree decodes greedily; after
each step, a live branch whose top-2 candidates (p1 >= p2) have p2 > tau_abs and p1 - p2 < tau_rel spawns a
branch on the 2nd candidate, within the per-root capacity kt_n (all branches of the root, finished ones
included, count; candidates are admitted rank-major, then in branch order, as LATR's capacity rule). A branch
whose age (tokens since and including its branch token) is in ``lookahead`` is compared with its parent over the
same window (skipped when the parent finished in it) and pruned, with its descendants, when edit distance / age <
tau_ed, suffix match > tau_sm or ROUGE-L > tau_rl. The tree phase stops when it is "full" (LATR's
``return_on_full``: branch count >= round(sum kt_n * (full_threshold - full_threshold_decay * t / M)), a root
whose branches all finished counting as full, and every branch older than max(lookahead)), or after
``max_tree_tokens``; then roots with fewer than kt_n branches are padded with copies of their first branch and
every branch is completed by ordinary sampling (the run's temperature and top-p) up to ``max_new_tokens``.

How it runs on the engine API (generation/base.py): no second decode loop. A tree call decodes the live branches
in lockstep (one engine call, one batch: roots are split so that sum kt_n <= ``engine.batch_size``) at the run's
temperature T with top-p 1e-9, i.e. greedy tokens whose behaviour logprobs are log pi_T (base.py: logprobs are
taken before top-p truncation), and a step callback (top-2 in the view) prunes rows and, at a step where a
branch may spawn or the tree is full, aborts the call. The spawn is then decided from the rows' top-2 outputs
at that step, the new branch continues from the prefix ``parent[:t] + [c2]`` (fork emulated by prefix
continuation: one re-prefill per spawning step) and all live branches resume together.

Choices the paper leaves open or that differ from the reference, each deliberate:
- Defaults are the math script's (scripts/grpo-kt-math.sh): tau_abs 0.15, tau_rel 0.25, tau_sm 0.2, tau_rl 0.5,
  no tau_ed, eta schedule {0: 1, 100: .75, 200: .5, 300: .25}, threshold decay 0.05. The code defaults
  (countdown) are tau_abs 0.25, tau_rel 0.15, tau_ed 0.4 and no suffix / ROUGE-L pruning.
- Length thresholds scale with ``max_new_tokens`` (M) unless set: LATR's ages {20, 30, 50} (a sentence or two of a
  1k-8k-token math answer) are kept from M = 160 and shrunk in proportion below (round(a x M / 160), at least 1:
  M = 16 -> [2, 3, 5], 48 -> [6, 9, 15]); the force-return step is half the cap, at most LATR's 1024 (countdown:
  512 of 1024). Ages past the answer length would never prune and never let the tree be "full", and a tree cap at
  the answer length would decode every branch greedily to its end, so set values the cap can never reach are
  refused at load (``check_config``). Our choice, untuned; configs/longtail.toml's ``chain`` level (6-41 answer
  tokens) was benchmarked with [3, 5, 8], one to three running totals.
- Branch decisions use the top-2 probabilities at the sampling temperature T (the engine reports top-k at T);
  LATR uses raw (T = 1) probabilities, so the two agree at T = 1 (verl's default rollout temperature).
- Behaviour logprobs: tree tokens are greedy or forced, not samples from pi, yet each carries log pi_T of its
  token under the weights that chose it. LATR recomputes old logprobs and applies no IS correction; rollwise
  does the same: the update's pi_old is the current policy (recomputed when epochs / mini-batches > 1) and the
  decoupled weight pi_old / mu is exactly 1 on these tokens, since mu here is pi_T itself.
- A root's empty slots are filled with copies of its first branch only while that branch is unfinished (LATR
  copies it anyway; with short answers the tree often finishes, and a copy would be the identical response, so
  the slots get ordinary samples instead). ``latr_tree_share`` counts the tree and fill rollouts.
- Cost: the ledger charges what the engine decodes (strategy.py, ``CountingEngine``): every tree call's new
  tokens, pruned branches included, and each completion's tokens after its tree prefix; a spawned branch's token
  is its parent's 2nd candidate at the same step, read from the top-2, not decoded again.
- Not implemented: LATR's ``keep_math_symbols`` exemption (no pruning when the parent's branch token is a math
  symbol; needs the tokenizer), the stop-word / model / cumulative-probability filters (off in both scripts), the
  parameter scheduler (off), and branching at the step a branch stops (the engine's view omits rows that just
  finished, so a spawn at a stop token is only considered when the abort comes at that same step).

Completion meta (``Completion.meta``, tree format shared with ROSE, read by the ``rose_segments`` shaper):
``tree`` (id), ``node`` (index in the prompt's group), ``parent`` (node or -1), ``branch_pos`` (the completion
position where it left its parent), ``prefix_len`` and ``latr`` ("tree", "fill" or "sample").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Annotated, Any

from pydantic import Field

from rollwise.generation.base import Completion, Decision, Engine, OutputSpec, Prefix, SamplingParams, StepControl
from rollwise.generation.strategy import KEY, RolloutStrategy, StrategyResult, round_half_up

GREEDY_TOP_P = 1e-9  # top-p that keeps only the argmax; the logprob stays log pi_T (taken before truncation)
LATR_AGES = (20, 30, 50)  # LATR's lookahead ages (both scripts), for answers of 1k-8k tokens
FULL_AGES_AT = 160  # the cap from which the auto ages are LATR's own: 20 = 160 / 8
LATR_TREE_TOKENS = 1024  # LATR's force-return step (math script)


def auto_lookahead(max_new_tokens: int) -> list[int]:
    """LATR's ages scaled to the cap: round(a x min(1, M / 160)) for a in {20, 30, 50}, at least 1, distinct
    (M = 16 -> [2, 3, 5], 48 -> [6, 9, 15], >= 160 -> [20, 30, 50])."""
    scale = min(1.0, max_new_tokens / FULL_AGES_AT)
    return sorted({max(1, round_half_up(a * scale)) for a in LATR_AGES})


def auto_tree_tokens(max_new_tokens: int) -> int:
    """Half the cap, at most LATR's 1024 (countdown: 512 of 1024; math: 1024 of 8192)."""
    return min(LATR_TREE_TOKENS, math.ceil(max_new_tokens / 2))


def compute_edit_distance(a: list[int], b: list[int]) -> int:
    """Levenshtein distance between two token lists."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def _longest_prefix_in(pattern: list[int], text: list[int]) -> int:
    """Largest L such that pattern[:L] occurs contiguously in text."""
    best = 0
    for s in range(len(text)):
        n = 0
        while n < len(pattern) and s + n < len(text) and text[s + n] == pattern[n]:
            n += 1
        best = max(best, n)
    return best


def compute_suffix_match(a: list[int], b: list[int]) -> float:
    """LATR's suffix match: the longest suffix of either window found anywhere in the other, over the length."""
    ra, rb = a[::-1], b[::-1]
    return max(_longest_prefix_in(ra, rb), _longest_prefix_in(rb, ra)) / len(a)


def compute_rouge_l(a: list[int], b: list[int]) -> float:
    """ROUGE-L F1 from the longest common subsequence."""
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    lcs = prev[-1]
    if lcs == 0:
        return 0.0
    p, r = lcs / len(a), lcs / len(b)
    return 2 * p * r / (p + r)


@dataclass(eq=False)  # compared by identity: two branches may hold the same tokens
class _Branch:
    root: int  # index of its prompt in the tree batch
    parent: _Branch | None  # None for the root's first branch
    birth: int  # completion position of the token at which it left its parent (0 for a root branch)
    tokens: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    versions: list[int] = field(default_factory=list)
    done: bool = False  # stopped (stop token) or reached max_new_tokens
    removed: bool = False  # pruned, or a descendant of a pruned branch
    last_topk: tuple[list[int], list[float]] = ((), ())  # top-k ids / logprobs at its last position

    def prefix(self) -> Prefix | None:
        versions = list(self.versions) if len(self.versions) == len(self.tokens) else None
        return Prefix(list(self.tokens), list(self.logprobs), versions) if self.tokens else None


class LatrStrategy(RolloutStrategy):
    """LATR: greedy lookahead tree with forced branches at uncertain tokens, then stochastic completion
    (arXiv:2510.24302)."""

    class Config(RolloutStrategy.Config):
        mix_ratio_schedule: dict[Annotated[int, Field(ge=0)], Annotated[float, Field(ge=0, le=1)]] = Field(
            {0: 1.0, 100: 0.75, 200: 0.5, 300: 0.25}, min_length=1,
            description="step -> eta, the share of each group grown as a tree (kt_n = round(n eta)); the last "
                        "entry at or before the step applies (LATR math script)")
        eta: float | None = Field(None, ge=0, le=1, description="fixed tree share; overrides the schedule when set")
        branch_topk: int = Field(2, ge=2, le=20, description="candidates considered per step, m (LATR: 2; at most "
                                 "20, vLLM's max_logprobs)")
        tau_abs: float = Field(0.15, description="spawn on candidate j iff p_j > tau_abs ... (math 0.15, code 0.25)")
        tau_rel: float = Field(0.25, description="... and p_1 - p_j < tau_rel (math 0.25, code 0.15)")
        tau_ed: float | None = Field(None, description="prune if edit distance / age < tau_ed (math: off, code 0.4)")
        tau_sm: float | None = Field(0.2, description="prune if suffix match > tau_sm (math 0.2; None = off)")
        tau_rl: float | None = Field(0.5, description="prune if ROUGE-L > tau_rl (math 0.5; None = off)")
        lookahead: list[Annotated[int, Field(ge=1)]] | None = Field(None, min_length=1, description=(
            "branch ages (tokens since the branch token) at which pruning compares a branch with its parent; None = "
            "auto: LATR's {20,30,50} x min(1, max_new_tokens / 160), rounded, at least 1 (16 -> [2,3,5]); set "
            "ages must stay below the tree cap"))
        max_tree_tokens: int | None = Field(None, ge=1, description=(
            "force-return step: tree tokens at most, then the branches are completed by sampling; None = auto: "
            "min(1024, ceil(max_new_tokens / 2)) (LATR: math 1024, countdown 512 of 1024); set, below max_new_tokens"))
        full_threshold: float = Field(0.98, description="the tree is full at round(sum kt_n * thr) branches, "
                                      "thr = full_threshold - full_threshold_decay * t / max_new_tokens (LATR 0.98)")
        full_threshold_decay: float = Field(0.05, description="see full_threshold (math script 0.05, code 0)")
        fill: bool = Field(True, description="pad roots with fewer than kt_n branches with copies of the first, "
                           "completed by sampling (LATR); if it already stopped, ordinary samples fill instead")

    def setup(self) -> None:
        self._trees = 0  # tree ids handed out (meta["tree"])
        self._stats: dict[str, float] = {}

    @classmethod
    def check_config(cls, knobs: Any, cfg: Any) -> None:
        """A set ``max_tree_tokens`` at or past the cap never forces a return, and a set lookahead age at or past the
        tree cap is never reached (a branch is at most tree-cap - 1 tokens old while it decodes); a tree share
        with round(group_size x eta) = 0 at every step never grows a tree."""
        M = cfg.generation.max_new_tokens
        cap_key = "generation.max_new_tokens"
        if knobs.max_tree_tokens is not None and knobs.max_tree_tokens >= M:
            raise ValueError(f"{KEY}.max_tree_tokens: {knobs.max_tree_tokens} never forces a return under {cap_key} "
                             f"= {M} (the tree stops at the cap anyway); set it below {M} or leave it unset (auto: "
                             f"{auto_tree_tokens(M)})")
        tree = knobs.max_tree_tokens or auto_tree_tokens(M)
        if knobs.lookahead is not None and max(knobs.lookahead) >= tree:
            raise ValueError(f"{KEY}.lookahead: age {max(knobs.lookahead)} is never reached under {cap_key} = {M} "
                             f"(tree tokens at most {KEY}.max_tree_tokens = {tree}, so ages up to {tree - 1}); lower "
                             f"the ages, raise max_tree_tokens, or leave lookahead unset (auto: {auto_lookahead(M)})")
        G = cfg.sampler.group_size
        shares = [knobs.eta] if knobs.eta is not None else list(knobs.mix_ratio_schedule.values())
        if all(round(G * v) == 0 for v in shares):
            what = "eta" if knobs.eta is not None else "mix_ratio_schedule"
            raise ValueError(f"{KEY}.{what}: round(sampler.group_size x eta) = 0 tree rollouts per group at every "
                             f"step (group_size {G}, eta {max(shares):g}), so LATR never grows a tree; use eta > "
                             f"{0.5 / G:g} or a larger sampler.group_size")

    def resolved(self, max_new_tokens: int) -> tuple[list[int], int]:
        """The lookahead ages and the tree cap under ``max_new_tokens`` (the auto rules where unset)."""
        ages = self.lookahead if self.lookahead is not None else auto_lookahead(max_new_tokens)
        tree = self.max_tree_tokens if self.max_tree_tokens is not None else auto_tree_tokens(max_new_tokens)
        return sorted(ages), min(tree, max_new_tokens)

    def eta_at(self, step: int) -> float:
        """The tree share at ``step``: the fixed ``eta``, else the schedule's last entry at or before it."""
        if self.eta is not None:
            return self.eta
        items = sorted(self.mix_ratio_schedule.items())
        return next((v for k, v in reversed(items) if k <= step), items[0][1] if items else 0.0)

    def branches_on(self, p1: float, pj: float) -> bool:
        """LATR's probability filter for a candidate of probability ``pj`` when the argmax has ``p1``."""
        return pj > self.tau_abs and p1 - pj < self.tau_rel

    def prunes(self, a: list[int], b: list[int]) -> bool:
        """Lookahead pruning: is branch window ``a`` too similar to its parent's window ``b`` (same length)?"""
        if self.tau_ed is not None and compute_edit_distance(a, b) / len(a) < self.tau_ed:
            return True
        if self.tau_sm is not None and compute_suffix_match(a, b) > self.tau_sm:
            return True
        return self.tau_rl is not None and compute_rouge_l(a, b) > self.tau_rl

    def generate(self, engine: Engine, keys: list[int], prompts: list[list[int]], counts: list[int],
                 params: SamplingParams, *, step: int) -> StrategyResult:
        eta = self.eta_at(step)
        kt = [round(n * eta) for n in counts]
        trees: list[list[_Branch]] = [[] for _ in prompts]
        roots = [i for i, k in enumerate(kt) if k > 0]
        # roots per tree call (kt_n rows each); round(n eta) may be 0 for every root (small groups, low eta): no tree
        per_call = max(1, int(getattr(engine, "batch_size", 0) or sum(kt)) // max([*kt, 1]))
        for s in range(0, len(roots), per_call):  # one engine batch per tree call keeps decoding in lockstep
            part = roots[s : s + per_call]
            tree = _Tree(self, engine, [prompts[i] for i in part], [kt[i] for i in part], params)
            for i, grown in zip(part, tree.grow()):
                trees[i] = grown
            self._add("latr_spawned", tree.spawned)
            self._add("latr_pruned", tree.pruned)
            self._add("latr_tree_calls", tree.calls)
        out = self._complete(engine, prompts, counts, kt, trees, params)
        self._add("latr_rollouts", sum(counts))
        self._add("latr_groups", sum(n > 0 for n in counts))
        self._add("latr_distinct", sum(len({c.text or tuple(c.token_ids) for c in cs}) for cs in out))
        self._stats["latr_eta"] = eta
        return StrategyResult(out)

    def _complete(self, engine: Engine, prompts: list[list[int]], counts: list[int], kt: list[int],
                  trees: list[list[_Branch]], params: SamplingParams) -> list[list[Completion]]:
        """One sampling call: every tree branch (plus fill copies) continues from its tree tokens, and each prompt
        gets its remaining samples from the root."""
        req: list[tuple[int, Prefix | None, int, dict[str, Any]]] = []  # (prompt, prefix, count, meta)
        for i, (n, k) in enumerate(zip(counts, kt)):
            uid, self._trees = self._trees, self._trees + 1
            live = [b for b in trees[i] if not b.removed]
            node = {id(b): j for j, b in enumerate(live)}
            rows = [(b, -1 if b.parent is None else node[id(b.parent)], b.birth, "tree") for b in live]
            if self.fill and live and not live[0].done:  # a copy of a stopped branch would be the same response
                rows += [(live[0], 0, len(live[0].tokens), "fill")] * (k - len(live))
            self._add("latr_tree_rollouts", len(rows))
            for j, (b, parent, pos, kind) in enumerate(rows):
                req.append((i, b.prefix(), 1, {"tree": uid, "node": j, "parent": parent, "branch_pos": pos,
                                               "prefix_len": len(b.tokens), "latr": kind}))
            if n > len(rows):
                req.append((i, None, n - len(rows), {"tree": uid, "node": len(rows), "parent": -1, "branch_pos": 0,
                                                     "prefix_len": 0, "latr": "sample"}))
        got = engine.generate([prompts[i] for i, *_ in req], [c for *_, c, _ in req], params,
                              prefixes=[p for _, p, *_ in req]) if req else []
        out: list[list[Completion]] = [[] for _ in prompts]
        for (i, _, _, meta), cs in zip(req, got):
            for j, c in enumerate(cs):
                c.meta = dict(meta, node=meta["node"] + j)
                out[i].append(c)
        return out

    def _add(self, key: str, value: float) -> None:
        self._stats[key] = self._stats.get(key, 0) + value

    def metrics(self) -> dict[str, float]:
        """Since the last call: branches spawned and pruned, tree engine calls, the tree share of the rollouts,
        distinct completion texts per group (LATR's diversity; our tasks' completions are their answers)."""
        s, self._stats = self._stats, {}
        if not s.get("latr_rollouts"):
            return {}
        return {"latr_spawned": s.get("latr_spawned", 0.0),
                "latr_pruned": s.get("latr_pruned", 0.0), "latr_tree_calls": s.get("latr_tree_calls", 0.0),
                "latr_tree_share": s["latr_tree_rollouts"] / s["latr_rollouts"],
                "latr_distinct_per_group": s["latr_distinct"] / max(s["latr_groups"], 1),
                "latr_eta": s["latr_eta"]}

    def state_dict(self) -> dict[str, Any]:
        return {"trees": self._trees}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._trees = int(state.get("trees", 0))


class _Tree:
    """The tree phase of one batch of roots: lockstep greedy calls, spawns and prunes (see the module doc)."""

    def __init__(self, k: LatrStrategy, engine: Engine, prompts: list[list[int]], kt: list[int],
                 params: SamplingParams) -> None:
        self.k, self.engine, self.prompts, self.kt = k, engine, prompts, kt
        self.M = params.max_new_tokens
        self.ages, self.cap = k.resolved(self.M)
        self.params = replace(params, top_p=GREEDY_TOP_P, max_new_tokens=self.cap)
        eos = getattr(getattr(engine, "tokenizer", None), "eos_token_id", None)
        self.stop = {*params.stop_token_ids, *([eos] if eos is not None else [])}
        self.branches = [_Branch(i, None, 0) for i in range(len(prompts))]
        self.spawned = self.pruned = self.calls = 0
        self.over = False

    def grow(self) -> list[list[_Branch]]:
        """Run tree calls until no branch is live or the tree is full; the branches of each root, in order."""
        while not self.over:
            live = [b for b in self.branches if not (b.removed or b.done) and len(b.tokens) < self.cap]
            if not live:
                break
            self._call(live)
        out: list[list[_Branch]] = [[] for _ in self.prompts]
        for b in self.branches:
            out[b.root].append(b)
        return out

    def _call(self, live: list[_Branch]) -> None:
        self.live, self.row = live, {id(b): r for r, b in enumerate(live)}
        self.seen: set[int] = set()
        self.aborted = False
        m = self.k.branch_topk
        got = self.engine.generate([self.prompts[b.root] for b in live], [1] * len(live), self.params,
                                   prefixes=[b.prefix() for b in live], outputs=OutputSpec(topk=m),
                                   control=StepControl(self._callback, every=1, topk=m))
        self.calls += 1
        for b, (c,) in zip(live, got):
            b.tokens, b.logprobs, b.versions = list(c.token_ids), list(c.logprobs), list(c.versions)
            if len(c.token_ids) > c.prefix_len:
                b.last_topk = (list(c.topk_ids[-1]), list(c.topk_logprobs[-1]))
            b.done = b.done or c.finish_reason == "stop" or len(c.token_ids) >= self.M
        kept = [b for b in live if not b.removed]
        if not kept:
            return
        t = max(len(b.tokens) for b in kept) - 1  # the last step of this call
        self._spawn(t, [b for b in kept if len(b.tokens) == t + 1 and b.last_topk[0]])
        if self.aborted and self._full(t):
            self.over = True

    def _count(self, root: int) -> int:
        return sum(1 for b in self.branches if b.root == root and not b.removed)

    def _candidates(self, ids: list[int], lps: list[float]) -> list[int]:
        """Ranks j >= 1 of the top-k that pass the probability filter."""
        p1 = math.exp(lps[0]) if lps else 0.0
        return [j for j in range(1, len(ids)) if ids[j] >= 0 and self.k.branches_on(p1, math.exp(lps[j]))]

    def _spawn(self, t: int, rows: list[_Branch]) -> None:
        """Spawn the branches of step ``t``: rank-major, then branch order, within each root's capacity."""
        for j in range(1, self.k.branch_topk):
            for b in rows:
                ids, lps = b.last_topk
                if j not in self._candidates(ids, lps) or self._count(b.root) >= self.kt[b.root]:
                    continue
                child = _Branch(b.root, b, t, b.tokens[:t] + [ids[j]],
                                b.logprobs[:t] + [lps[j]], b.versions[:t] + b.versions[t : t + 1])
                child.done = ids[j] in self.stop or t + 1 >= self.M
                self.branches.append(child)
                self.spawned += 1

    def _remove(self, branch: _Branch) -> list[_Branch]:
        """Mark ``branch`` and its descendants removed; return them."""
        out = [branch]
        for x in out:
            x.removed = True
            out += [b for b in self.branches if b.parent is x and not b.removed]
        return out

    def _callback(self, view: Any) -> dict[int, Decision] | None:
        t = len(view.tokens[0]) - 1
        at = {r: j for j, r in enumerate(view.rows)}
        decide: dict[int, Decision] = {}
        for j, r in enumerate(view.rows):  # lookahead pruning against the parent's window
            b = self.live[r]
            if b.parent is None or b.removed or t + 1 - b.birth not in self.ages:
                continue
            pr = self.row.get(id(b.parent))
            if pr is None or pr not in at:  # the parent is not live: it stopped inside the window
                continue
            if self.k.prunes(view.tokens[j][b.birth :], view.tokens[at[pr]][b.birth : t + 1]):
                self.pruned += 1
                for x in self._remove(b):
                    if (rr := self.row.get(id(x))) in at:
                        decide[rr] = Decision.PRUNE
        event = False
        for j, r in enumerate(view.rows):  # a branch may spawn at this step
            b = self.live[r]
            if not b.removed and self._count(b.root) < self.kt[b.root]:
                ids, lps = view.topk_ids[j].tolist(), view.topk_logprobs[j].tolist()
                event = event or bool(self._candidates(ids, lps))
        for r, why in view.finished.items():  # a branch stopped at this step: its top-k is in its completion
            if r not in self.seen:
                self.seen.add(r)
                b = self.live[r]
                event = event or (why == "stop" and not b.removed and self._count(b.root) < self.kt[b.root])
        if event or self._full(t):
            self.aborted = True
            return {r: decide.get(r, Decision.ABORT) for r in view.rows}
        return decide or None

    def _full(self, t: int) -> bool:
        """LATR's return-on-full rule after step ``t``."""
        kept = [b for b in self.branches if not b.removed]
        eff = 0
        for root, k in enumerate(self.kt):
            mine = [b for b in kept if b.root == root]
            eff += k if mine and all(b.done for b in mine) else len(mine)
        thr = self.k.full_threshold - self.k.full_threshold_decay * t / self.M
        if eff < round(sum(self.kt) * thr):
            return False
        return all(b.birth + max(self.ages) < t for b in kept)

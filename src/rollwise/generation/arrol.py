"""ARRoL: online rollout pruning with a quality head (Xu et al., "Prune as You Generate", arXiv 2603.24840;
Hsu1023/ARRoL, no code released).

Sample ``N0 = ceil(n * over_sample)`` rollouts per prompt; while they decode, a small head q_phi on the policy's
last-layer hidden state predicts P(correct) of each partial rollout, and at a prune checkpoint each prompt keeps
``n`` survivors whose predicted positive share is about ``rho``: the top ``round(rho n)`` and the bottom
``n - round(rho n)`` by score; the rest are cut (``Decision.PRUNE``, finish reason "pruned"). The survivors
finish and are returned as the prompt's group; the head learns online from their verified rewards.

Choices (every concrete one is unverified, spec section 3):
- Checkpoints are every ``every`` new tokens, by default a quarter of the cap (``max(1, round(max_new_tokens /
  4))``: 16 -> 4, 48 -> 12; the spec's 256-512 are for multi-thousand-token reasoning, where they come early too).
  A set ``every`` at or past the cap is never reached (refused at load). A prompt is pruned to ``n`` at the first
  checkpoint at which all its rows have started (so later checkpoints only collect training states). A prompt
  that reaches no checkpoint (every row finished first) is cut to ``n`` after generation by the same rule, so
  ``n`` always come back.
- A rollout that already finished has no reward inside generation: it is scored by the head like a live one, on
  the latest state the step callback saw while it was live. A rollout that finished before the callback saw any
  state (a one-token completion) gets the neutral score 0.5 and no training state.
- The head's input is the state at the current position (no mean pooling), detached from the policy (float32
  CPU copies). Linear by default, or a one-hidden-layer MLP (``head_hidden``), with its own Adam.
- Training: after verification, BCE on (state at each checkpoint the survivor was live at, or its last state if
  it was live at none; label reward > 0.5), ``head_steps`` full-batch Adam steps per call. Pruned rollouts are
  unlabelled. Before ``warmup`` labelled rollouts the head is untrained: prune uniformly at random to ``n``
  (seeded by the call's seed), since a balanced choice needs a trained head.
- Metrics: the head's AUC on each step's survivors at their decision states, before it trains on them; the
  realised positive share of the survivors beside the head's predicted share over all ``N0`` candidates (the
  unpruned share is not observable: pruned rollouts are never verified) and over the survivors; pruned rollouts
  (``arrol_pruned_live`` of them cut while decoding, the rest dropped after they finished) and tokens; the
  checkpoint spacing in use (``arrol_every``).
- Pruned rollouts are not returned; their tokens were decoded, so the engine's count charges them to the budget
  and ``ledger/tokens`` like any other (strategy.py), and ``generation/arrol_pruned_tokens`` says how many.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import Field

from rollwise.components import Knobs
from rollwise.generation.base import Completion, Decision, Engine, SamplingParams, StepControl, StepView
from rollwise.generation.strategy import KEY, RolloutStrategy, StrategyResult, round_half_up

if TYPE_CHECKING:
    import torch

NEUTRAL = 0.5  # score of a rollout the head has no state for


def auto_every(max_new_tokens: int) -> int:
    """The default checkpoint spacing: a quarter of the cap, at least 1 (16 -> 4, 48 -> 12, 5 -> 1)."""
    return max(1, round_half_up(max_new_tokens / 4))


def select_balanced(scores: list[float], n: int, rho: float) -> list[int]:
    """Indices (ascending) of the ``n`` kept candidates: the ``round(rho n)`` best and ``n - round(rho n)``
    worst by score (ties: the earlier candidate ranks higher). Keeps all when there are at most ``n``."""
    if len(scores) <= n:
        return list(range(len(scores)))
    order = sorted(range(len(scores)), key=lambda j: (-scores[j], j))
    k = min(int(math.floor(rho * n + 0.5)), n)  # round half up (Python's round() rounds half to even)
    return sorted(order[:k] + order[len(order) - (n - k):])


def compute_auc(scores: list[float], labels: list[bool]) -> float:
    """Area under the ROC curve (Mann-Whitney, ties count half); nan without both classes."""
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    if not pos or not neg:
        return float("nan")
    wins = sum((p > q) + 0.5 * (p == q) for p in pos for q in neg)
    return wins / (len(pos) * len(neg))


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


class QualityHead:
    """q_phi: hidden state [d] -> P(correct), a linear layer or a one-hidden-layer MLP with its own Adam."""

    def __init__(self, dim: int, hidden: int = 0, lr: float = 1e-3, seed: int = 0) -> None:
        import torch

        self.dim, self.hidden = dim, hidden
        with torch.random.fork_rng(devices=[]):  # a fixed init that leaves the global RNG alone
            torch.manual_seed(seed)
            self.net = (torch.nn.Linear(dim, 1) if hidden == 0 else
                        torch.nn.Sequential(torch.nn.Linear(dim, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 1)))
        self.opt = torch.optim.Adam(self.net.parameters(), lr=lr)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.float()).squeeze(-1)  # [N]

    def score(self, x: torch.Tensor) -> list[float]:
        """P(correct) of each state [N, d]."""
        import torch

        with torch.no_grad():
            return torch.sigmoid(self.logits(x)).tolist()

    def bce(self, x: torch.Tensor, y: torch.Tensor) -> float:
        import torch
        import torch.nn.functional as F

        with torch.no_grad():
            return float(F.binary_cross_entropy_with_logits(self.logits(x), y.float()))

    def fit(self, x: torch.Tensor, y: torch.Tensor, steps: int) -> float:
        """``steps`` full-batch Adam steps of BCE on states [N, d] and labels [N]; return the final loss."""
        import torch.nn.functional as F

        for _ in range(steps):
            self.opt.zero_grad()
            loss = F.binary_cross_entropy_with_logits(self.logits(x), y.float())
            loss.backward()
            self.opt.step()
        return self.bce(x, y)

    def state_dict(self) -> dict[str, Any]:
        return {"dim": self.dim, "hidden": self.hidden, "net": self.net.state_dict(), "opt": self.opt.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        self.opt.load_state_dict(state["opt"])


@dataclass
class _Call:
    """The per-call bookkeeping of the step callback."""

    groups: list[int]  # [R] prompt index of each row
    keep: list[int]  # [P] survivors wanted per prompt (n)
    last: dict[int, Any] = field(default_factory=dict)  # row -> latest state seen [d]
    feats: dict[int, list[Any]] = field(default_factory=dict)  # row -> states at checkpoints it was live at
    at_decision: dict[int, Any] = field(default_factory=dict)  # row -> state its prompt was decided on
    scores: dict[int, float] = field(default_factory=dict)  # row -> head score at the decision (trained head)
    removed: set[int] = field(default_factory=set)  # rows pruned (live) or dropped (already finished)
    decided: set[int] = field(default_factory=set)  # prompts cut to n


@dataclass
class _Stats:
    step: int = -1
    generated: int = 0  # rollouts sampled (N0 per prompt)
    pruned: int = 0  # rollouts not returned: cut while decoding (pruned_live) or dropped after they finished
    pruned_live: int = 0  # cut at a checkpoint while decoding (the saving ARRoL is for)
    pruned_tokens: int = 0
    every: int = 0  # the checkpoint spacing of the step's calls
    random: int = 0  # prompts pruned at random (head in warm-up)
    predicted_all: list[float] = field(default_factory=list)  # head scores of every candidate at decisions
    predicted_kept: list[float] = field(default_factory=list)
    auc_scores: list[float] = field(default_factory=list)
    labels: list[bool] = field(default_factory=list)  # of the rows in auc_scores
    survivors: list[bool] = field(default_factory=list)  # label of every returned rollout
    head_loss: float = float("nan")


class ArrolStrategy(RolloutStrategy):
    """Over-sample, prune each prompt's rollouts to a correctness-balanced ``n`` with an online quality head."""

    class Config(Knobs):
        over_sample: float = Field(2.0, gt=1.0, le=16.0, allow_inf_nan=False, description=(
            "rollouts sampled per kept rollout: N0 = ceil(n x over_sample) per prompt, in (1, 16] (spec: e.g. 2n) "
            "[unverified]"))
        every: int | None = Field(None, ge=1, description=(
            "prune checkpoint every this many new tokens; None = auto: max(1, round(max_new_tokens / 4)) (16 -> 4; "
            "spec: 256-512 of long CoT) [unverified]; set, below max_new_tokens; a prompt is cut to n at the first"))
        rho: float = Field(0.5, ge=0.0, le=1.0, description="target positive share of the survivors: keep the "
                           "top round(rho n) and bottom n - round(rho n) by head score (ARRoL: 0.5)")
        warmup: int = Field(64, ge=0, description="labelled rollouts the head must have seen before it prunes; "
                            "until then prune at random [unverified]")
        lr: float = Field(1e-3, gt=0, le=1.0, description="Adam learning rate of the quality head [unverified]")
        head_steps: int = Field(8, ge=1, description="full-batch Adam steps on each call's labelled states")
        head_hidden: int = Field(0, ge=0, description="hidden units of the head's MLP (0 = linear head)")
        seed: int = Field(0, description="seed of the head's initial weights")

    over_sample: float
    every: int | None
    rho: float
    warmup: int
    lr: float
    head_steps: int
    head_hidden: int
    seed: int

    def setup(self) -> None:
        self.head: QualityHead | None = None  # built at the first state seen (its width is the model's)
        self.seen = 0  # labelled rollouts the head has trained on
        self._pending: dict[int, tuple[Completion, list[Any], Any]] = {}  # id(c) -> (c, states, decision state)
        self._stats = _Stats()

    @classmethod
    def check_config(cls, knobs: Any, cfg: Any) -> None:
        """A set checkpoint at or past the cap is never reached: ARRoL would decode N0 and cut to n afterwards."""
        M = cfg.generation.max_new_tokens
        if knobs.every is not None and knobs.every >= M:
            raise ValueError(f"{KEY}.every: the prune checkpoint at {knobs.every} new tokens is never reached under "
                             f"generation.max_new_tokens = {M} (ARRoL would decode {knobs.over_sample:g}x and prune "
                             f"only after the fact); set every below {M} or leave it unset (auto: {auto_every(M)})")

    def every_at(self, max_new_tokens: int) -> int:
        """The checkpoint spacing under ``max_new_tokens`` (``every``, or the auto rule)."""
        return self.every if self.every is not None else auto_every(max_new_tokens)

    @property
    def trained(self) -> bool:
        return self.head is not None and self.seen >= self.warmup

    # ------------------------------------------------------------------ one call
    def generate(self, engine: Engine, keys: list[int], prompts: list[list[int]], counts: list[int],
                 params: SamplingParams, *, step: int) -> StrategyResult:
        if self._stats.step != step:
            self._stats = _Stats(step=step)
        big = [math.ceil(n * self.over_sample) if n > 0 else 0 for n in counts]  # N0 per prompt
        call = _Call([i for i, m in enumerate(big) for _ in range(m)], list(counts))
        rng = random.Random(params.seed)
        every = self.every_at(params.max_new_tokens)
        self._stats.every = every
        ctl = StepControl(lambda view: self._checkpoint(view, call, rng, every), every=1, hidden=True)
        out = engine.generate(prompts, big, params, control=ctl)
        flat = [c for cs in out for c in cs]
        for i in range(len(prompts)):  # prompts that reached no checkpoint: cut to n now (all rows finished)
            if i not in call.decided:
                self._decide(i, call, set(), rng)
        res = StrategyResult([[] for _ in prompts])
        for r, c in enumerate(flat):
            if r in call.removed:
                self._stats.pruned += 1
                self._stats.pruned_tokens += len(c.token_ids)
                res.discarded_rollouts += 1
                res.discarded_tokens += len(c.token_ids) - c.prefix_len
                continue
            feats = call.feats.get(r) or ([call.last[r]] if r in call.last else [])
            self._pending[id(c)] = (c, feats, call.at_decision.get(r, call.last.get(r)))
            res.completions[call.groups[r]].append(c)
        self._stats.generated += len(flat)
        return res

    def _checkpoint(self, view: StepView, call: _Call, rng: random.Random,
                    every: int) -> dict[int, Decision] | None:
        """Step callback: remember each live row's state; at a checkpoint, cut the prompts that are due."""
        hidden = view.hidden.detach().float().cpu()  # [b, d]
        for j, r in enumerate(view.rows):
            call.last[r] = hidden[j].clone()
        if view.step % every:
            return None
        for r in view.rows:
            call.feats.setdefault(r, []).append(call.last[r])
        live = set(view.rows)
        started = live | set(view.finished)
        decisions: dict[int, Decision] = {}
        for i in sorted({call.groups[r] for r in view.rows} - call.decided):
            if all(r in started for r, g in enumerate(call.groups) if g == i):
                decisions |= self._decide(i, call, live, rng)
        self._stats.pruned_live += len(decisions)
        return decisions

    def _decide(self, i: int, call: _Call, live: set[int], rng: random.Random) -> dict[int, Decision]:
        """Keep ``n`` of prompt ``i``'s candidate rows (live or finished, not yet removed); PRUNE the live rest."""
        call.decided.add(i)
        cands = [r for r, g in enumerate(call.groups) if g == i and r not in call.removed]
        for r in cands:
            if r in call.last:
                call.at_decision[r] = call.last[r]
        n = call.keep[i]
        if len(cands) <= n:
            return {}
        if self.trained:
            scores = self._score([call.last.get(r) for r in cands])
            kept = [cands[j] for j in select_balanced(scores, n, self.rho)]
            call.scores |= dict(zip(cands, scores))
            self._stats.predicted_all += scores
            self._stats.predicted_kept += [call.scores[r] for r in kept]
        else:
            kept = sorted(rng.sample(cands, n))
            self._stats.random += 1
        cut = [r for r in cands if r not in kept]
        call.removed.update(cut)
        return {r: Decision.PRUNE for r in cut if r in live}

    def _score(self, states: list[Any]) -> list[float]:
        """Head scores of the states (``NEUTRAL`` where there is none)."""
        import torch

        have = [j for j, s in enumerate(states) if s is not None]
        out = [NEUTRAL] * len(states)
        if have and self.head is not None:
            for j, p in zip(have, self.head.score(torch.stack([states[j] for j in have]))):
                out[j] = p
        return out

    # ------------------------------------------------------------------ learning
    def observe(self, keys: list[int], completions: list[Completion], rewards: list[float]) -> None:
        """Score the survivors with the head as it is (AUC), then train it on their states and labels."""
        import torch

        xs, ys, dec, lab = [], [], [], []
        for c, reward in zip(completions, rewards):
            got = self._pending.pop(id(c), None)
            if got is None:
                continue
            _, feats, at = got
            y = reward > 0.5
            self._stats.survivors.append(y)
            xs += feats
            ys += [y] * len(feats)
            if at is not None:
                dec.append(at)
                lab.append(y)
            self.seen += bool(feats)
        self._pending.clear()
        if not xs:
            return
        if self.head is None:
            self.head = QualityHead(int(xs[0].shape[-1]), self.head_hidden, self.lr, self.seed)
        if dec:
            self._stats.auc_scores += self.head.score(torch.stack(dec))
            self._stats.labels += lab
        self._stats.head_loss = self.head.fit(torch.stack(xs), torch.tensor(ys), self.head_steps)

    # ------------------------------------------------------------------ books
    def metrics(self) -> dict[str, float]:
        """Counters of the current step; the head's AUC and the shares only where they are defined."""
        s = self._stats
        out = {"arrol_generated": s.generated, "arrol_pruned": s.pruned, "arrol_pruned_live": s.pruned_live,
               "arrol_pruned_tokens": s.pruned_tokens, "arrol_random_prompts": s.random, "arrol_head_seen": self.seen,
               "arrol_every": s.every}
        maybe = {
            "arrol_head_auc": compute_auc(s.auc_scores, s.labels),
            "arrol_survivor_positive_share": _mean([float(y) for y in s.survivors]),
            "arrol_predicted_positive_share": _mean(s.predicted_all),
            "arrol_predicted_survivor_share": _mean(s.predicted_kept),
            "arrol_head_loss": s.head_loss,
        }
        return out | {k: v for k, v in maybe.items() if not math.isnan(v)}

    def state_dict(self) -> dict[str, Any]:
        return {"seen": self.seen, "head": self.head.state_dict() if self.head is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.seen = int(state.get("seen", 0))
        head = state.get("head")
        self.head = None
        if head is not None:
            self.head = QualityHead(head["dim"], head["hidden"], self.lr, self.seed)
            self.head.load_state_dict(head)
        self._pending.clear()
        self._stats = _Stats()

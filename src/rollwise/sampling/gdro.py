"""GDRO over online pass@k bins (spec §5; arXiv:2601.19280): Prompt-GDRO advantage weights and a
square-root rollout allocator.

* ``PassKClassifier``: per prompt, c_t = 1 iff any rollout of the step's pool is correct; pass@k = mean of
  the last ``history`` flags (ring buffer rows allocated only for prompts seen) or of all flags
  (``history=0``); bins from ``edges`` with hysteresis; unseen prompts have accuracy 0. With
  ``exclude_extremes`` pass@k exactly 0 or 1 goes to a separate excluded bin (weight 1, not in the game).
* ``GdroSelector`` (Prompt-GDRO): selection stays uniform (the paper acts through weights, not resampling).
  As the authors order it, prompts are reclassified with this step's any-correct flags right after
  generation (``on_generated``), then ``weights`` gives each trained group min(q_b, w_max), renormalised so
  the mean weight over the trained *rollouts* is 1, clamped at w_max, with q = (1-gamma) softmax(eta clip(S))
  + gamma/B and S an EMA of the bin step score (updated after the update, in ``observe``).
* Rollout-GDRO's arms game is ``gdro_arms.py`` (it shares ``PassKClassifier``).
* ``GdroSqrtAllocator``: the Neyman plug-in n_b = n_mean sqrt(v_b) / sum_j qbar_j sqrt(v_j), v_b = p_b(1-p_b)
  from the stats store's EMA pass rates, made integer in [n_min, n_max] with the batch total n_mean * P exact.

Choices (the spec marks k, C and the Table-1 edges [unverified]):
* k = the step's pool size (the authors' code), not the paper's k = 8.
* Score signal ``difficulty`` (1 - pool pass rate) by default: with GRPO's zero-mean advantages the mean
  clipped-surrogate loss is ~0. ``loss`` reads the ``losses`` handed to ``observe`` (each trained group's mean
  surrogate loss; falls back to difficulty when there are none).
* A bin never observed scores the mean of the observed bins.
* ``norm_by_share`` (the code's ``loss_norm_by_class``) is off by default: it would favour rare bins twice
  with the difficulty signal.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
from pydantic import AfterValidator, Field, model_validator

from rollwise.components import Knobs
from rollwise.knobs import MAX_ROLLOUTS_PER_PROMPT
from rollwise.sampling.base import Allocator, GroupObs, SampleContext, Selector, TrainGroup
from rollwise.sampling.uniform import UniformSelector


def parse_edges(edges: str | list[float]) -> np.ndarray:
    """'0.4,0.75' or [0.4, 0.75] -> sorted float array; B = len(edges) + 1 bins. Edges are pass rates strictly
    inside (0, 1), strictly increasing (an edge outside would leave a bin no prompt can fall in)."""
    try:
        vals = [float(x) for x in edges.split(",") if x.strip()] if isinstance(edges, str) else list(edges)
    except ValueError:
        raise ValueError(f"bin edges must be numbers, as '0.4,0.75' or [0.4, 0.75], got {edges!r}") from None
    arr = np.asarray(vals, dtype=np.float64)
    if not all(0 < v < 1 for v in vals):
        raise ValueError(f"bin edges must be pass rates strictly between 0 and 1, got {vals}")
    if arr.size and np.any(np.diff(arr) <= 0):
        raise ValueError(f"bin edges must be strictly increasing, got {vals}")
    return arr


def _check_edges(edges: str | list[float]) -> str | list[float]:
    parse_edges(edges)
    return edges


#: a knob of pass-rate bin edges, checked at load
Edges = Annotated[str | list[float], AfterValidator(_check_edges)]


def check_rollout_range(n_min: int, n_mean: float | None, n_max: int | None, from_group_size: bool = False) -> None:
    """The relations of a per-prompt rollout range: n_min <= n_mean <= n_max, for those that are set (an unset
    n_mean is the group size, checked again with ``from_group_size`` once it is known; an unset n_max is
    3 x n_mean)."""
    if n_max is not None and n_min > n_max:
        raise ValueError(f"n_min ({n_min}) must be at most n_max ({n_max})")
    if n_mean is not None and not n_min <= n_mean <= (n_max if n_max is not None else 3 * n_mean):
        shown = f"{n_mean:g}" + (", unset: sampler.group_size" if from_group_size else "")
        raise ValueError(f"n_mean ({shown}) must lie in [n_min, n_max] = [{n_min}, {n_max or '3 x n_mean'}]")


def compute_gdro_q(scores: np.ndarray, eta: float, gamma: float, clip: float | None = None) -> np.ndarray:
    """Bin probabilities q [B] = (1-gamma) softmax(eta * clip(S, -C, C)) + gamma / B."""
    s = scores if clip is None else np.clip(scores, -clip, clip)
    z = eta * s
    w = np.exp(z - z.max())
    return (1 - gamma) * w / w.sum() + gamma / len(scores)


def compute_gdro_weights(q: np.ndarray, bins: np.ndarray, w_max: float,
                         sizes: np.ndarray | None = None) -> np.ndarray:
    """Advantage multipliers [P]: min(q_bin, w_max) renormalised to mean 1 over the in-game *rollouts*
    (``sizes`` [P] rollouts trained per group; None = one each), then clamped at w_max. Prompts with
    ``bins >= len(q)`` (the excluded bin) get weight 1."""
    w = np.ones(len(bins), dtype=np.float64)
    m = bins < len(q)
    if m.any():
        n = np.ones(m.sum()) if sizes is None else np.asarray(sizes, dtype=np.float64)[m]
        raw = np.minimum(q[bins[m]], w_max)
        w[m] = np.minimum(raw * n.sum() / (raw * n).sum(), w_max)
    return w


def compute_sqrt_allocation(scale: np.ndarray, total: int, n_min: int, n_max: int) -> np.ndarray:
    """Integer rollouts [P] proportional to ``scale`` [P] (sqrt of the variance), clipped to [n_min, n_max]
    by water-filling, summing exactly to ``total`` (largest-remainder rounding, ties to the lower index).
    An infeasible total gives the nearest feasible one (all n_min or all n_max)."""
    p = len(scale)
    if p == 0:
        return np.zeros(0, dtype=np.int64)
    if total <= p * n_min or total >= p * n_max:
        return np.full(p, n_min if total <= p * n_min else n_max, dtype=np.int64)
    lo, hi = 0.0, n_max / float(scale.min())
    for _ in range(100):  # sum(clip(lam * scale)) is monotone in lam: bisect for the total
        lam = 0.5 * (lo + hi)
        lo, hi = (lam, hi) if np.clip(lam * scale, n_min, n_max).sum() < total else (lo, lam)
    x = np.clip(hi * scale, n_min, n_max)
    base = np.floor(x).astype(np.int64)  # sum(x) >= total after bisection, so 0 <= left <= #fractional
    left = int(total - base.sum())
    frac = np.where(base < n_max, x - base, -np.inf)
    order = np.lexsort((np.arange(p), -frac))
    base[order[:left]] += 1
    return base


class PassKClassifier:
    """Online pass@k per prompt with windowed (ring buffer) or cumulative memory, and hysteretic bins."""

    def __init__(self, edges: np.ndarray, history: int, hysteresis: float, exclude_extremes: bool) -> None:
        self.edges, self.history, self.hysteresis = edges, history, hysteresis
        self.exclude_extremes = exclude_extremes
        self.n_bins = len(edges) + 1  # in-game bins; index n_bins is the excluded bin
        self._bounds = np.concatenate([[-np.inf], edges, [np.inf]])
        self._row = np.zeros(0, dtype=np.int64)  # [N] row of each prompt, -1 unseen (allocated on first use)
        self.ids = np.zeros(0, dtype=np.int64)  # [R] prompt of each row
        self.win = np.zeros((0, max(history, 1)), dtype=np.int8)  # [R, H] ring buffer of any-correct flags
        self.count = np.zeros(0, dtype=np.int64)  # [R] flags observed, all time
        self.hits = np.zeros(0, dtype=np.int64)  # [R] correct flags inside the window (all time if H = 0)
        self.bin = np.zeros(0, dtype=np.int64)  # [R] current bin
        self.rows = 0  # rows in use (the tables above have spare capacity)

    def raw_bin(self, acc: np.ndarray) -> np.ndarray:
        b = np.searchsorted(self.edges, acc, side="right")
        if self.exclude_extremes:
            b = np.where((acc <= 0) | (acc >= 1), self.n_bins, b)
        return b

    def bins(self, prompts: np.ndarray) -> np.ndarray:
        """Current bin per prompt [P]; unseen prompts take the bin of accuracy 0."""
        unseen = int(self.raw_bin(np.zeros(1))[0])
        if self._row.size == 0:
            return np.full(len(prompts), unseen, dtype=np.int64)
        rows = self._row[prompts]
        return np.where(rows >= 0, self.bin[np.maximum(rows, 0)], unseen)

    def accuracy(self, rows: np.ndarray) -> np.ndarray:
        seen = self.count[rows] if self.history <= 0 else np.minimum(self.count[rows], self.history)
        return self.hits[rows] / np.maximum(seen, 1)

    def _rows(self, prompts: np.ndarray, size: int) -> np.ndarray:
        if self._row.size == 0:
            self._row = np.full(size, -1, dtype=np.int64)
        new = prompts[self._row[prompts] < 0]
        if new.size:
            r0 = self.rows
            if r0 + new.size > self.ids.size:  # grow the row tables geometrically (amortised O(1) per prompt)
                cap = max(2 * self.ids.size, r0 + new.size, 1024)
                for name in ("ids", "win", "count", "hits", "bin"):
                    old = getattr(self, name)
                    grown = np.zeros((cap, *old.shape[1:]), dtype=old.dtype)
                    grown[:r0] = old[:r0]
                    setattr(self, name, grown)
            self._row[new] = np.arange(r0, r0 + new.size)
            self.ids[r0 : r0 + new.size] = new
            self.bin[r0 : r0 + new.size] = -1
            self.rows = r0 + new.size
        return self._row[prompts]

    def update(self, prompts: np.ndarray, flags: np.ndarray, size: int) -> None:
        """Fold one any-correct flag per (distinct) prompt, then re-bin those prompts with hysteresis."""
        rows = self._rows(np.asarray(prompts, dtype=np.int64), size)
        f = np.asarray(flags, dtype=np.int64)
        if self.history > 0:
            slot = self.count[rows] % self.history
            full = self.count[rows] >= self.history
            self.hits[rows] -= np.where(full, self.win[rows, slot], 0)
            self.win[rows, slot] = f
        self.hits[rows] += f
        self.count[rows] += 1
        acc = self.accuracy(rows)
        raw, cur = self.raw_bin(acc), self.bin[rows]
        in_game = (cur >= 0) & (cur < self.n_bins)
        c = np.clip(cur, 0, self.n_bins - 1)
        d = self.hysteresis
        stay = in_game & (raw < self.n_bins) & (acc >= self._bounds[c] - d) & (acc < self._bounds[c + 1] + d)
        self.bin[rows] = np.where(stay, cur, raw)

    def state_dict(self) -> dict[str, Any]:
        r = self.rows
        return {"size": self._row.size, "ids": self.ids[:r].copy(), "win": self.win[:r].copy(),
                "count": self.count[:r].copy(), "hits": self.hits[:r].copy(), "bin": self.bin[:r].copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.ids, self.win = np.array(state["ids"], dtype=np.int64), np.array(state["win"], dtype=np.int8)
        self.count = np.array(state["count"], dtype=np.int64)
        self.hits = np.array(state["hits"], dtype=np.int64)
        self.bin, self.rows = np.array(state["bin"], dtype=np.int64), len(state["ids"])
        self._row = np.full(int(state["size"]), -1, dtype=np.int64)
        self._row[self.ids] = np.arange(self.rows)


class PassKKnobs(Knobs):
    """The online pass@k classifier's knobs, shared by both GDRO games."""

    edges: Edges = Field("0.4,0.75", description="pass@k bin edges (B = len + 1 bins)")
    history: int = Field(50, ge=0, le=10_000, description="pass@k window of any-correct flags (0 = all time)")
    hysteresis: float = Field(0.03, ge=0, description="a prompt changes bin only past an edge by this")
    exclude_extremes: bool = Field(False, description="pass@k exactly 0 or 1 -> an excluded bin, outside the "
                                   "game (weight 1, n_mean rollouts)")


class GdroSelector(Selector):
    """Prompt-GDRO: uniform prompts, advantage weights from an EXP3-style game over online pass@k bins."""

    needs_revisits = True  # acts on what earlier visits of a prompt taught it

    class Config(PassKKnobs):
        signal: Literal["difficulty", "loss"] = Field("difficulty", description="bin score: 1 - pool pass "
                                                      "rate, or the groups' mean surrogate loss (the code)")
        eta: float = Field(0.65, ge=0, description="EXP3 step size eta_q")
        gamma: float = Field(0.01, ge=0, le=1, description="uniform exploration mixed into q")
        ema: float = Field(0.12, gt=0, le=1, description="EMA rate beta of the bin scores")
        w_max: float = Field(15.0, gt=0, description="cap on a group's weight")
        score_clip: float | None = Field(None, gt=0, description="clip bin scores to [-C, C] (None = off)")
        norm_by_share: bool = Field(False, description="divide a bin's score by its batch share "
                                    "(loss_norm_by_class)")

    def setup(self) -> None:
        self.classifier = PassKClassifier(parse_edges(self.edges), self.history, self.hysteresis,
                                          self.exclude_extremes)
        self.scores = np.full(self.classifier.n_bins, np.nan)  # [B] EMA bin score S; NaN until observed
        self._uniform = UniformSelector()
        self._metrics: dict[str, float] = {}

    def select(self, k: int, ctx: SampleContext) -> np.ndarray:
        return self._uniform.select(k, ctx)

    def q(self) -> np.ndarray:
        """Current bin probabilities [B]; never-observed bins score the mean of the observed ones."""
        seen = ~np.isnan(self.scores)
        s = np.where(seen, self.scores, self.scores[seen].mean() if seen.any() else 0.0)
        return compute_gdro_q(s, self.eta, self.gamma, self.score_clip)

    def on_generated(self, ctx: SampleContext, pools: list[GroupObs]) -> None:
        """Reclassify this step's prompts with their any-correct flags before the weights are computed."""
        if pools:
            thr = ctx.stats.positive_threshold
            prompts = np.array([p.prompt for p in pools], dtype=np.int64)  # [P]
            self.classifier.update(prompts, np.array([bool((p.rewards > thr).any()) for p in pools]),
                                   ctx.stats.size)

    def weights(self, pools: list[GroupObs], kept: list[np.ndarray], ctx: SampleContext) -> np.ndarray:
        bins = self.classifier.bins(np.array([p.prompt for p in pools], dtype=np.int64))
        w = compute_gdro_weights(self.q(), bins, self.w_max, np.array([len(k) for k in kept]))
        if w.size:
            self._metrics |= {"weight_min": float(w.min()), "weight_max": float(w.max())}
        return w

    def observe(self, ctx: SampleContext, pools: list[GroupObs], trained: list[TrainGroup],
                losses: np.ndarray | None = None) -> None:
        if not pools:
            return
        thr = ctx.stats.positive_threshold
        prompts = np.array([p.prompt for p in pools], dtype=np.int64)  # [P]
        rates = np.array([float((p.rewards > thr).mean()) if p.n else 0.0 for p in pools])  # [P]
        signal = 1.0 - rates
        fresh = [(g.prompt, float(x)) for g, x in zip(trained, losses if losses is not None else [])
                 if not g.replayed]
        if self.signal == "loss" and fresh:
            prompts = np.array([p for p, _ in fresh], dtype=np.int64)
            signal = np.array([x for _, x in fresh], dtype=np.float64)
        bins = self.classifier.bins(prompts)
        nb = self.classifier.n_bins
        m = bins < nb
        cnt = np.bincount(bins[m], minlength=nb)[:nb]
        step = np.bincount(bins[m], weights=signal[m], minlength=nb)[:nb] / np.maximum(cnt, 1)  # [B]
        if self.norm_by_share and m.any():
            step = step / np.maximum(cnt / m.sum(), 1e-12)
        obs = cnt > 0
        old = self.scores[obs]
        self.scores[obs] = np.where(np.isnan(old), step[obs], (1 - self.ema) * old + self.ema * step[obs])
        q = self.q()
        for b in range(nb):
            self._metrics |= {f"bin{b}_share": float(cnt[b] / max(len(bins), 1)), f"bin{b}_q": float(q[b]),
                              f"bin{b}_score": float(np.nan_to_num(self.scores[b]))}
        self._metrics["excluded_share"] = float((~m).mean())

    def metrics(self) -> dict[str, float]:
        return {**self._metrics, "epoch": self._uniform.epoch}

    def state_dict(self) -> dict[str, Any]:
        return {"uniform": self._uniform.state_dict(), "classifier": self.classifier.state_dict(),
                "scores": self.scores.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._uniform.load_state_dict(state["uniform"])
        self.classifier.load_state_dict(state["classifier"])
        self.scores = np.asarray(state["scores"], dtype=np.float64).copy()


class GdroSqrtAllocator(Allocator):
    """Square-root (Neyman) rollout allocation over pass-rate bins: more rollouts where outcomes vary more,
    the batch total fixed at n_mean * P (compute-neutral). The shadow price mu is tracked as a metric."""

    class Config(Knobs):
        n_mean: float | None = Field(None, gt=0, le=MAX_ROLLOUTS_PER_PROMPT,
                                     description="mean rollouts per prompt (None = group_size)")
        n_min: int = Field(2, ge=2, le=MAX_ROLLOUTS_PER_PROMPT, description="fewest rollouts for one prompt")
        n_max: int | None = Field(None, ge=2, le=MAX_ROLLOUTS_PER_PROMPT,
                                  description="most rollouts for one prompt (None = 3 x n_mean)")
        edges: Edges = Field("0.4,0.75", description="pass-rate bin edges")
        var_floor: float = Field(0.01, gt=0, description="floor of a bin's variance p(1-p)")
        unseen_prior: float = Field(0.5, ge=0, le=1, description="pass rate assumed for never-seen prompts")
        dual_lr: float = Field(0.05, ge=0, description="dual ascent rate of the shadow price mu")

        @model_validator(mode="after")
        def _rollout_range(self) -> GdroSqrtAllocator.Config:
            check_rollout_range(self.n_min, self.n_mean, self.n_max)
            return self

    def setup(self) -> None:
        self.edges = parse_edges(self.edges)
        self.mu = 0.0
        self._metrics: dict[str, float] = {}

    def first_round(self, group_size: int) -> int:
        check_rollout_range(self.n_min, self.n_mean or group_size, self.n_max, from_group_size=self.n_mean is None)
        return int(round(self._bounds_g(group_size)[0]))

    def budget(self, prompts: int, group_size: int) -> tuple[int, int]:
        n = int(round(self._bounds_g(group_size)[0] * prompts))
        return n, n

    def _bounds_g(self, group_size: int) -> tuple[float, int, int]:
        n_mean = float(self.n_mean or group_size)
        return n_mean, self.n_min, self.n_max if self.n_max is not None else int(round(3 * n_mean))

    def _bounds(self, ctx: SampleContext) -> tuple[float, int, int]:
        return self._bounds_g(ctx.group_size)

    def initial(self, prompts: np.ndarray, ctx: SampleContext) -> np.ndarray:
        n_mean, n_min, n_max = self._bounds(ctx)
        if len(prompts) == 0:
            return np.zeros(0, dtype=np.int64)
        p = ctx.stats.pass_rate(np.asarray(prompts, dtype=np.int64), prior=self.unseen_prior)  # [P]
        nb = len(self.edges) + 1
        bins = np.searchsorted(self.edges, p, side="right")  # [P]
        cnt = np.bincount(bins, minlength=nb)
        pb = np.bincount(bins, weights=p, minlength=nb) / np.maximum(cnt, 1)  # [B] bin pass rate
        var = np.maximum(pb * (1 - pb), self.var_floor)  # [B]
        counts = compute_sqrt_allocation(np.sqrt(var)[bins], int(round(n_mean * len(prompts))), n_min, n_max)
        share = cnt / len(prompts)
        self._metrics = {"mu_implied": float((share @ np.sqrt(var) / n_mean) ** 2), "mu": self.mu}
        for b in range(nb):
            sel = bins == b
            self._metrics |= {f"bin{b}_share": float(share[b]), f"bin{b}_var": float(var[b]),
                              f"bin{b}_n": float(counts[sel].mean()) if sel.any() else 0.0}
        return counts

    def observe(self, ctx: SampleContext, pools: list[GroupObs], trained: list[TrainGroup],
                losses: np.ndarray | None = None) -> None:
        if pools:
            n_mean, _, _ = self._bounds(ctx)
            realised = float(np.mean([p.n for p in pools]))
            self.mu += self.dual_lr * (realised - n_mean)  # dual ascent on the mean-budget constraint
            self._metrics |= {"mu": self.mu, "n_realised": realised}

    def metrics(self) -> dict[str, float]:
        return dict(self._metrics)

    def state_dict(self) -> dict[str, Any]:
        return {"mu": self.mu}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.mu = float(state["mu"])

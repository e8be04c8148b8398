"""HiLL (Xia et al., "Learning to Hint for Reinforcement Learning", arXiv:2604.00698; code Andree-9/HiLL):
a learned hinter shows stuck prompts a hint, rewarded for hints that make the group informative *and* that
the correct answers do not lean on.

Spec: ``shared/methods/generation.md`` section 12 (read in the authors' code). Kept from HiLL:

- the reasoner re-rolls a hard prompt x as x + "\\n" + h and is trained on the hinted prompt;
- hinter reward (``transfer_weighted_non_deg``), n rollouts of the hinted prompt, p = their pass rate:

      R_h = (1 - p^n - (1 - p)^n) * exp(min(Delta_bar, 0) / T),   T = 0.3,

  0 when p is 0 or 1 (a degenerate group gives GRPO nothing); Delta(y) = mean_t log pi(y|x) - mean_t
  log pi(y|x+h), teacher-forced under the current policy before its update, Delta_bar its mean over the
  CORRECT hinted rollouts (hint reliance: negative when the answer needs the hint);
- the gates: a hint containing the reference answer string (leakage; a numeric answer must stand alone: "12"
  leaks in "get 12." but not in "120 apples"), one that cannot be written or parsed (empty; an LM hint is the
  text inside ``<hint>...</hint>`` when the tags are there, else the whole reply), or an LM hint cut at the
  token cap (overlong) scores -0.2 and is not shown.

Two hinters, chosen by the ``hinter`` knob (dispatched once, in ``setup``):

- ``hinter = "lm"`` (**the paper's design**): a language model (a copy of the policy at the start of RL, or
  the checkpoint at ``hinter_path``) with its own engine and optimiser, built in ``train/hinter.py`` and lent
  through ``RescueSources.hinter``. It reads the question, ONE failed rollout of the prompt's latest all-wrong
  plain pool and the reference answer, and writes ``tries`` (HiLL's M = 4) hints in one engine call for all of
  a step's stuck prompts; every draft goes through the gates (empty / unparsable, overlong = it hit
  ``hinter_max_new_tokens``, leaking), a gated draft is a hinter sample at -0.2, the first draft that passes is
  shown and gets R_h; later passing drafts are neither shown nor trained (no reward is known for them). The
  hinter is trained after the policy's update by one policy-gradient step on the step's samples:
  loss = -mean_i A_i * mean_t log pi_h(h_i,t | prompt_i), A_i = R_i - b (b as below). HiLL trains it by PPO
  with one epoch over fresh samples, whose ratio is 1 at the one update, so the clipped surrogate's gradient
  is this one.
- ``hinter = "generators"`` (the cheap variant, the default): a softmax policy per difficulty level over a
  library of hint generators the trainer lends (``RescueSources.hints``; for the arithmetic task: the carries,
  the first half of the carries, the number of answer digits, the last digit, the units-column sub-problem, a
  rounded estimate, none of which is the full answer; the leakage gate checks anyway), trained by REINFORCE:
  logits += lr * mean_i (R_i - b) (onehot(g_i) - pi). It conditions on the level only: on a 4-layer char
  model the policy cannot write hints.

Both use the baseline b = the mean reward of the step's hinter samples (per level for the generators) when
there are at least two (HiLL's group of M hints), else a running mean of earlier rewards. What else differs:
- **One valid hint per stuck prompt per step**, not M = 4 hints each re-rolled n times with the best one
  trained: the pipeline keys a step's pool by prompt, so a prompt's pool is one context (the advantage group
  is per (x, hint)). The generators variant draws up to ``tries`` hints (without replacement) until one passes
  the gates; each rejected draw is a hinter sample with reward -0.2. The hinter learns across steps and
  prompts.
- The reference is the reference *answer* (the tasks here carry no worked solution for the words suite).
- A prompt is hard when *stuck* (its latest plain pool all wrong, ``rescue.py``), decided from history at its
  first request of the step (HiLL re-rolls a group found all wrong in the same step); ``plain_share`` of the
  stuck prompts stay plain, which measures transfer to the no-hint prompt (``rescued``).
- Without a scorer (``RescueSources.reliance`` unset, e.g. sampler unit tests) Delta_bar is taken as 0: no
  reliance penalty (``reliance_scored`` counts the pools that were scored).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
from pydantic import Field

from rollwise.sampling.base import GroupObs, PromptContext, SampleContext, TrainGroup
from rollwise.sampling.rescue import RescueTransform

_PENDING = PromptContext(tag="hint:pending")  # an LM hint not written yet (the step's stuck prompts share a call)


def compute_hint_reward(pass_rate: float, n: int, reliance: float | None, temperature: float = 0.3) -> float:
    """R_h = (1 - p^n - (1-p)^n) * exp(min(Delta_bar, 0) / T); ``reliance`` None (unscored) counts as 0."""
    informative = 1.0 - pass_rate**n - (1.0 - pass_rate) ** n
    weight = math.exp(min(reliance or 0.0, 0.0) / temperature)
    return float(informative * weight)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max())
    return z / z.sum()


def compute_hinter_step(logits: np.ndarray, actions: np.ndarray, rewards: np.ndarray, baseline: float,
                        lr: float) -> np.ndarray:
    """One REINFORCE step of a softmax policy: logits + lr * mean_i (R_i - b) (onehot(a_i) - pi); [A] logits,
    [M] actions and rewards."""
    pi = softmax(logits)  # [A]
    onehot = np.eye(len(logits))[actions]  # [M, A]
    grad = ((rewards - baseline)[:, None] * (onehot - pi[None, :])).mean(axis=0)  # [A]
    return logits + lr * grad


def leaks(answer: str, text: str) -> bool:
    """Whether ``text`` gives away ``answer``: a numeric answer as a number of its own (not inside a longer
    one), any other answer as a substring."""
    if re.fullmatch(r"-?\d+(\.\d+)?", answer):
        return re.search(rf"(?<![\d.]){re.escape(answer.lstrip('-'))}(?![\d]|\.\d)", text) is not None
    return answer in text


@dataclass(frozen=True)
class HintDraft:
    """One hint an LM hinter wrote: the parsed text, whether it was cut at the token cap (overlong), and what
    the hinter needs to learn from it (opaque here: prompt and hint token ids)."""

    text: str
    truncated: bool = False
    payload: Any = None


class HinterModel(Protocol):
    """The LM hinter the trainer side lends (``train/hinter.py``)."""

    def write(self, queries: list[tuple[int, str]], m: int, seed: int) -> list[list[HintDraft]]:
        """``m`` hints for each (pool prompt, one failed rollout's text)."""
        ...

    def learn(self, payloads: list[Any], advantages: np.ndarray) -> dict[str, float]:
        """One policy-gradient step on the drafts' payloads with [M] advantages; returns its metrics."""
        ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class GeneratorHinter:
    """``hinter = "generators"``: per level, a softmax over the task's hint generators (the cheap variant)."""

    def __init__(self, t: HillHints) -> None:
        self.t = t
        self.logits: dict[int, np.ndarray] = {}  # level -> [A] hinter logits
        self.baseline: dict[int, float] = {}  # level -> running mean hint reward
        self.samples: list[tuple[int, int, float]] = []  # this step's rejected draws (level, generator, reward)

    def probs(self, level: int) -> np.ndarray:
        return softmax(self.logits.get(level, np.zeros(len(self.t.sources.hint_names))))

    def help(self, prompt: int, ctx: SampleContext) -> tuple[PromptContext | None, Any]:
        names, hints = self.t.sources.hint_names, self.t.sources.hints
        if not names or hints is None:
            return None, None
        level = int(ctx.levels[prompt]) if ctx.levels is not None else 0
        texts = hints(prompt)
        left = np.ones(len(names), dtype=bool)
        for _ in range(min(self.t.tries, len(names))):
            pi = self.probs(level) * left
            g = int(ctx.rng.choice(len(names), p=pi / pi.sum()))
            left[g] = False
            text = texts.get(names[g]) or ""
            if self.t.gate(prompt, text) is not None:
                self.samples.append((level, g, self.t.gate_reward))
                continue
            return self.t.show(text, f"hint:{names[g]}"), (level, g)
        return None, None

    def flush(self, ctx: SampleContext) -> dict[int, tuple[PromptContext | None, Any]]:
        return {}

    def learn(self, shown: list[tuple[Any, float]]) -> None:
        samples = self.samples + [(*key, r) for key, r in shown]
        self.samples = []
        for level in sorted({s[0] for s in samples}):
            acts = np.array([g for lv, g, _ in samples if lv == level], dtype=np.int64)
            rew = np.array([r for lv, _, r in samples if lv == level], dtype=np.float64)
            run = self.baseline.get(level, 0.0)
            base = float(rew.mean()) if len(rew) >= 2 else run
            logits = self.logits.get(level, np.zeros(len(self.t.sources.hint_names)))
            self.logits[level] = compute_hinter_step(logits, acts, rew, base, self.t.lr)
            self.baseline[level] = self.t.baseline_decay * run + (1 - self.t.baseline_decay) * float(rew.mean())

    def metrics(self) -> dict[str, float]:
        names = self.t.sources.hint_names
        if not names:
            return {}
        mean_pi = np.mean([self.probs(lv) for lv in sorted(self.logits) or [0]], axis=0)
        return {f"p_{name}": float(p) for name, p in zip(names, mean_pi)}

    def state_dict(self) -> dict[str, Any]:
        return {"logits": {lv: v.tolist() for lv, v in self.logits.items()}, "baseline": dict(self.baseline)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.logits = {int(lv): np.array(v, dtype=np.float64) for lv, v in state["logits"].items()}
        self.baseline = {int(lv): float(b) for lv, b in state["baseline"].items()}


class LMHinter:
    """``hinter = "lm"`` (HiLL's design): a language model reads the question, one failed rollout and the
    reference answer and writes the hint; the model is the trainer side's (``RescueSources.hinter``)."""

    def __init__(self, t: HillHints) -> None:
        self.t = t
        self.model: HinterModel | None = None  # built on first use (the policy is warm-started by then)
        self.pending: list[int] = []  # this request's stuck prompts waiting for their hint
        self.samples: list[tuple[Any, float]] = []  # this step's gated drafts (payload, reward)
        self.baseline = 0.0  # running mean of the hinter's rewards
        self.counts = Counter({"drafts": 0, "updates": 0})
        self.last: dict[str, float] = {}  # the last update's metrics

    def lm(self) -> HinterModel:
        if self.model is None:
            if self.t.sources.hinter is None:
                raise ValueError("sampler.transform.hinter='lm' needs the trainer's LM hinter (RescueSources.hinter)")
            t = self.t
            self.model = t.sources.hinter(path=t.hinter_path, lr=t.hinter_lr, max_new_tokens=t.hinter_max_new_tokens,
                                          temperature=t.hinter_temperature)
        return self.model

    def help(self, prompt: int, ctx: SampleContext) -> tuple[PromptContext | None, Any]:
        self.pending.append(prompt)
        return _PENDING, None

    def flush(self, ctx: SampleContext) -> dict[int, tuple[PromptContext | None, Any]]:
        """Write the pending prompts' hints in one call; gate every draft, show each prompt's first valid one."""
        if not self.pending:
            return {}
        prompts, self.pending = self.pending, []
        drafts = self.lm().write([(p, self.t.failed(p)) for p in prompts], self.t.tries,
                                 int(ctx.rng.integers(2**31)))
        out: dict[int, tuple[PromptContext | None, Any]] = {}
        for p, ds in zip(prompts, drafts):
            out[p] = (None, None)
            self.counts["drafts"] += len(ds)
            for d in ds:
                if self.t.gate(p, d.text, d.truncated) is not None:
                    self.samples.append((d.payload, self.t.gate_reward))
                elif out[p][0] is None:
                    out[p] = (self.t.show(d.text, "hint:lm"), d.payload)
        return out

    def learn(self, shown: list[tuple[Any, float]]) -> None:
        samples = self.samples + shown
        self.samples = []
        if not samples:
            return
        rew = np.array([r for _, r in samples], dtype=np.float64)  # [M]
        base = float(rew.mean()) if len(rew) >= 2 else self.baseline
        adv = rew - base  # [M]
        if np.any(adv != 0):
            self.last = self.lm().learn([pl for pl, _ in samples], adv)
            self.counts["updates"] += 1
        self.baseline = self.t.baseline_decay * self.baseline + (1 - self.t.baseline_decay) * float(rew.mean())

    def metrics(self) -> dict[str, float]:
        return {"hinter_drafts": float(self.counts["drafts"]), "hinter_updates": float(self.counts["updates"]),
                **{f"hinter_{k}": float(v) for k, v in self.last.items()}}

    def state_dict(self) -> dict[str, Any]:
        return {"baseline": self.baseline, "counts": dict(self.counts),
                "model": self.model.state_dict() if self.model is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.baseline, self.counts = float(state["baseline"]), Counter(state["counts"])
        if state["model"] is not None:
            self.lm().load_state_dict(state["model"])


HINTERS = {"generators": GeneratorHinter, "lm": LMHinter}


class HillHints(RescueTransform):
    """Stuck prompts get one hint per step from a learned hinter (an LM, or a per-level softmax over hint
    generators) trained on HiLL's transfer-weighted hinter reward."""

    needs = ("hints",)  # the generators variant's; setup() names the LM variant's

    class Config(RescueTransform.Config):
        hinter: Literal["generators", "lm"] = Field("generators", description="who writes the hints: 'lm' (HiLL's "
                                                    "design: a language model reading the question, a failed "
                                                    "rollout and the reference) or 'generators' (cheap: a softmax "
                                                    "over the task's hint generators)")
        tries: int = Field(4, ge=1, description="hints drawn per stuck prompt: the LM writes this many, the "
                           "generators are drawn until one passes the gates (HiLL's M = 4)")
        temperature: float = Field(0.3, gt=0, description="T of the reliance weight exp(min(Delta_bar, 0) / T)")
        gate_reward: float = Field(-0.2, description="hinter reward of a leaking, unwritable or overlong hint "
                                   "(not shown)")
        lr: float = Field(0.5, gt=0, description="generators hinter: step size on its logits (REINFORCE)")
        baseline_decay: float = Field(0.9, ge=0, lt=1, description="running mean of the hint rewards, the "
                                      "baseline when a step has one hinter sample (per level for generators)")
        position: Literal["after", "before"] = Field("after", description="hint after the prompt (HiLL: x + "
                                                     "'\\n' + h) or before it")
        hinter_path: str | None = Field(None, description="LM hinter: a local HF checkpoint; None = a copy of the "
                                        "policy as RL starts")
        hinter_lr: float = Field(1e-5, gt=0, description="LM hinter: AdamW learning rate of its policy-gradient "
                                 "step (HiLL: 1e-6 at 4B)")
        hinter_max_new_tokens: int = Field(48, ge=1, description="LM hinter: token cap of a hint; a hint cut "
                                           "there is overlong and gated")
        hinter_temperature: float = Field(1.0, gt=0, description="LM hinter: sampling temperature of its hints")

    def setup(self) -> None:
        super().setup()
        self.needs = ("hinter", "references") if self.hinter == "lm" else ("hints",)
        self._hinter: GeneratorHinter | LMHinter = HINTERS[self.hinter](self)
        self._hint: dict[int, Any] = {}  # this step: prompt -> the shown hint's key (generator / LM draft)
        self._scored: dict[int, tuple[float, bool, float | None]] = {}  # prompt -> (R_h, solved, Delta_bar)
        self._shown = np.zeros(2, dtype=np.int64)  # this step's hinted rollouts, and how many were correct
        self._ever_hinted: set[int] = set()  # prompts shown a hint at least once
        self._failed: dict[int, str] = {}  # stuck prompt -> one failed rollout of its latest plain pool
        self._rejected: Counter[str] = Counter()  # this step's gated hints by reason
        self._report = self._step_report()  # the last observed step's hint metrics

    # ------------------------------------------------------------------ what both hinters use
    def gate(self, prompt: int, text: str, truncated: bool = False) -> str | None:
        """Why a hint may not be shown ("unwritable", "overlong", "leak"; counted), or None when it may."""
        refs = self.sources.references
        answer = refs[prompt].strip() if refs is not None else ""
        why = "unwritable" if not text else "overlong" if truncated else "leak" if answer and leaks(answer, text) \
            else None
        if why is not None:
            self._rejected[why] += 1
        return why

    def show(self, text: str, tag: str) -> PromptContext:
        if self.position == "after":
            return PromptContext(after="\n" + text, tag=tag)
        return PromptContext(before=text + "\n", tag=tag)

    def failed(self, prompt: int) -> str:
        """One failed rollout of ``prompt``'s latest all-wrong plain pool ('' when none was kept)."""
        return self._failed.get(prompt, "")

    def probs(self, level: int) -> np.ndarray:
        """The generators hinter's [A] distribution over the hint generators at ``level``."""
        assert isinstance(self._hinter, GeneratorHinter), "probs() is the generators hinter's"
        return self._hinter.probs(level)

    # ------------------------------------------------------------------ transform
    def contexts(self, prompts: np.ndarray, pools: dict[int, GroupObs], ctx: SampleContext) -> list[Any] | None:
        if ctx.step != self._step:
            self._hint, self._scored, self._rejected = {}, {}, Counter()
            self._shown = np.zeros(2, dtype=np.int64)
        out = super().contexts(prompts, pools, ctx)
        written = self._hinter.flush(ctx)
        for p, (given, key) in written.items():
            self._given[p] = given
            if given is None:
                self._helped.discard(p)
            else:
                self._hint[p] = key
        if not written or out is None:
            return out
        out = [self._given.get(int(p)) for p in prompts]
        return out if any(c is not None for c in out) else None

    def help(self, prompt: int, ctx: SampleContext) -> PromptContext | None:
        given, key = self._hinter.help(prompt, ctx)
        if given is not None and given is not _PENDING:
            self._hint[prompt] = key
        return given

    def on_generated(self, ctx: SampleContext, pools: list[GroupObs]) -> None:
        """Score each hinted pool before the update (Delta uses the policy that sampled it)."""
        thr = ctx.stats.positive_threshold
        for pool in pools:
            if pool.prompt not in self._hint or pool.prompt in self._scored or not pool.n:
                continue
            wins = np.flatnonzero(pool.rewards > thr)
            reliance = None
            if wins.size and self.sources.reliance is not None and pool.payload is not None:
                reliance = float(np.mean(self.sources.reliance(pool.prompt, [pool.payload[j] for j in wins])))
            reward = compute_hint_reward(wins.size / pool.n, pool.n, reliance, self.temperature)
            self._scored[pool.prompt] = (reward, bool(wins.size), reliance)
            self._shown += (pool.n, wins.size)
            self._ever_hinted.add(pool.prompt)

    def observe(self, ctx: SampleContext, pools: list[GroupObs], trained: list[TrainGroup],
                losses: np.ndarray | None = None) -> None:
        super().observe(ctx, pools, trained, losses)
        thr = ctx.stats.positive_threshold
        for pool in pools:
            if self.given(pool.prompt) is not None:
                continue
            if pool.prompt in self._stuck and pool.texts and not bool((pool.rewards > thr).any()):
                self._failed[pool.prompt] = pool.texts[0]
            elif pool.prompt not in self._stuck:
                self._failed.pop(pool.prompt, None)
        self._hinter.learn([(self._hint[p], r) for p, (r, _, _) in self._scored.items()])
        self._report = self._step_report()
        self._scored = {}  # learnt once: a later step without requests must not replay them

    def _step_report(self) -> dict[str, float]:
        scored = list(self._scored.values())
        deltas = [d for _, _, d in scored if d is not None]
        return {
            "hinted": float(len(self._hint)),
            "hinted_rollouts": float(self._shown[0]),
            "hinted_correct": float(self._shown[1]),
            "ever_hinted": float(len(self._ever_hinted)),
            "hint_success_rate": float(np.mean([s for _, s, _ in scored])) if scored else 0.0,
            "hinter_reward_mean": float(np.mean([r for r, _, _ in scored])) if scored else 0.0,
            "leak_rejections": float(self._rejected["leak"]),
            "unwritable": float(self._rejected["unwritable"]),
            "overlong": float(self._rejected["overlong"]),
            "reliance_scored": float(len(deltas)),
            "reliance_mean": float(np.mean(deltas)) if deltas else 0.0,
        }

    def metrics(self) -> dict[str, float]:
        return super().metrics() | self._report | self._hinter.metrics()

    def state_dict(self) -> dict[str, Any]:
        return super().state_dict() | {"hinter": self._hinter.state_dict(), "failed": dict(self._failed),
                                       "ever_hinted": sorted(self._ever_hinted)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._failed = {int(p): str(t) for p, t in state.get("failed", {}).items()}
        self._ever_hinted = {int(p) for p in state.get("ever_hinted", [])}
        if "hinter" in state:
            self._hinter.load_state_dict(state["hinter"])
        else:  # a checkpoint from before the LM hinter: the generators' state at the top level
            self._hinter.load_state_dict({"logits": state["logits"], "baseline": state["baseline"]})

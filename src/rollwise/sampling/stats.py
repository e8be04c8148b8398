"""Per-prompt statistics as flat numpy arrays, so a pool of 10^6 prompts costs a few tens of MB and every
update is vectorised (no per-prompt Python objects on the hot path)."""

from __future__ import annotations

import numpy as np

_FIELDS = {
    "attempts": np.int64,  # rollouts generated, all steps
    "successes": np.float64,  # positive rollouts (reward > threshold), all steps
    "reward_sum": np.float64,  # sum of raw rewards, all steps
    "alpha": np.float64,  # decayed success count (VADE Beta posterior is Beta(alpha+1, beta+1))
    "beta": np.float64,  # decayed failure count
    "ema_pass": np.float64,  # EMA of the per-step pass rate; NaN until first seen
    "last_var": np.float64,  # reward variance of the most recent group; NaN until first seen
    "last_step": np.int64,  # step the prompt was last rolled out; -1 if never
    "times_seen": np.int64,  # steps in which the prompt was rolled out
}


class PromptStats:
    """Attempts, successes, Beta counts, EMA pass rate, last step seen and last group variance per prompt."""

    def __init__(self, size: int, ema_decay: float = 0.5, positive_threshold: float = 0.5) -> None:
        self.size = int(size)
        self.ema_decay = ema_decay
        self.positive_threshold = positive_threshold
        for name, dtype in _FIELDS.items():
            setattr(self, name, np.zeros(self.size, dtype=dtype))
        self.ema_pass[:] = np.nan
        self.last_var[:] = np.nan
        self.last_step[:] = -1

    def update(self, prompts: np.ndarray, rewards: list[np.ndarray], step: int) -> None:
        """Fold one step's pools (all rollouts generated for each prompt) into the store."""
        if len(prompts) == 0:
            return
        prompts = np.asarray(prompts, dtype=np.int64)  # [P]
        n = np.array([len(r) for r in rewards], dtype=np.int64)  # [P]
        pos = np.array([(r > self.positive_threshold).sum() for r in rewards], dtype=np.float64)  # [P]
        rsum = np.array([r.sum() for r in rewards], dtype=np.float64)  # [P]
        var = np.array([r.var() if len(r) else np.nan for r in rewards], dtype=np.float64)  # [P]
        np.add.at(self.attempts, prompts, n)
        np.add.at(self.successes, prompts, pos)
        np.add.at(self.reward_sum, prompts, rsum)
        rate = pos / np.maximum(n, 1)
        old = self.ema_pass[prompts]
        d = self.ema_decay
        self.ema_pass[prompts] = np.where(np.isnan(old), rate, d * old + (1 - d) * rate)
        self.last_var[prompts] = var
        self.last_step[prompts] = step
        self.times_seen[prompts] += 1

    def pass_rate(self, prompts: np.ndarray | None = None, prior: float = 0.5) -> np.ndarray:
        """Best current estimate of each prompt's pass rate: the EMA, or ``prior`` if never seen."""
        ema = self.ema_pass if prompts is None else self.ema_pass[prompts]
        return np.where(np.isnan(ema), prior, ema)

    def state_dict(self) -> dict:
        return {name: getattr(self, name).copy() for name in _FIELDS} | {"size": self.size}

    def load_state_dict(self, state: dict) -> None:
        if int(state["size"]) != self.size:
            raise ValueError(f"prompt stats were saved for a pool of {state['size']}, this pool has {self.size}")
        for name in _FIELDS:
            getattr(self, name)[:] = state[name]

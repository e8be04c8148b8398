"""The generation-engine protocol: every backend (HF transformers, vLLM, scripted fake) implements it.

Behaviour logprobs are log-softmax(logits / temperature) of the token actually sampled, before top-p
truncation, so they equal a teacher-forced forward of the same tokens at the same temperature (the trainer's
convention, as in verl). Greedy decoding (temperature 0) reports logprobs at temperature 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from rollwise.registry import Registry


@dataclass(frozen=True)
class SamplingParams:
    """How to decode."""

    temperature: float = 1.0  # 0 = greedy
    top_p: float = 1.0
    max_new_tokens: int = 16
    stop_token_ids: tuple[int, ...] = ()  # finish (and keep the token) when one is sampled; eos is always one
    seed: int | None = None  # per-call seed; engines derive per-request streams from it for determinism


@dataclass
class Completion:
    """One sampled continuation."""

    token_ids: list[int]  # completion tokens, including the final eos/stop token when finish_reason == "stop"
    logprobs: list[float]  # behaviour logprob per completion token
    finish_reason: str  # "stop" | "length" | "abort"
    text: str = ""  # decoded completion without special tokens


@dataclass
class GenerateStats:
    """Counters of one generate call (the trainer's ledger reads them)."""

    sequences: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Engine(Protocol):
    """Generates ``counts[i]`` completions for each tokenised prompt ``prompts[i]``."""

    def generate(
        self, prompts: list[list[int]], counts: list[int], params: SamplingParams
    ) -> list[list[Completion]]:
        """Return, for each prompt, its ``counts[i]`` completions (order matches the input)."""
        ...

    def sync_weights(self, model: Any, version: int) -> None:
        """Load the learner's current weights (a no-op when the engine shares the learner's module)."""
        ...

    @property
    def last_stats(self) -> GenerateStats: ...


def check_request(prompts: list[list[int]], counts: list[int], params: SamplingParams) -> None:
    """Reject a malformed generate call the same way in every engine."""
    if len(prompts) != len(counts):
        raise ValueError(f"{len(prompts)} prompts but {len(counts)} counts")
    if any(c < 0 for c in counts) or any(c > 0 and not p for p, c in zip(prompts, counts)):
        raise ValueError("counts must be >= 0 and sampled prompts non-empty")
    if params.temperature < 0 or not 0 < params.top_p <= 1:
        raise ValueError(f"need temperature >= 0 and 0 < top_p <= 1, got {params}")


ENGINES: Registry[Any] = Registry("generation engine", knobs_from_entry=False)


def distinct_rows(prompts: list[list[int]]) -> tuple[list[list[int]], list[int]]:
    """The distinct prompts in first-seen order ([U]) and each row's index into them ([B])."""
    slot: dict[tuple[int, ...], int] = {}
    heads: list[list[int]] = []
    index = []
    for p in prompts:
        if (k := tuple(p)) not in slot:
            slot[k] = len(heads)
            heads.append(p)
        index.append(slot[k])
    return heads, index

"""Named containers passed between the layers. Plain Python (no torch), so every layer can share them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Prompt:
    """One verifiable prompt of a pool: text to complete, reference answer, stable id, metadata."""

    uid: str
    text: str
    reference: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Rollout:
    """One generated completion with what the loss needs: tokens, behaviour logprobs, reward, version."""

    prompt_index: int  # index of the prompt in the training pool
    prompt_ids: list[int]
    completion_ids: list[int]
    behaviour_logprobs: list[float]  # log mu(y_t | s_t) of the engine that sampled it, one per completion token
    text: str
    finish_reason: str  # "stop" | "length" | "abort" | "pruned"
    policy_version: int = 0  # trainer step whose weights generated it
    reward: float = 0.0
    parsed: bool = False
    verify_info: dict[str, Any] = field(default_factory=dict)
    versions: list[int] = field(default_factory=list)  # engine weight version per completion token (-1 unknown)
    meta: dict[str, Any] = field(default_factory=dict)  # rollout-strategy metadata (tree position, resume, ...)
    #: per completion token, True where the token is not the policy's own sample (SCOPE's spliced suffix); empty =
    #: every token on-policy. A loss that declares ``needs = {"off_policy_mask"}`` treats these tokens apart
    off_policy_mask: list[bool] = field(default_factory=list)

    @property
    def num_tokens(self) -> int:
        return len(self.completion_ids)

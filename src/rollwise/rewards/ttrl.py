"""Label-free rewards: the majority answer of a group is the pseudo-label (TTRL, Zuo et al., arXiv:2504.16084).

With ``task.labels = "none"`` the trained reward never reads a reference answer. For each prompt of a generation
round the N rollouts vote with their extracted answers; the most common answer is the pseudo-label, and

    reward_i = high if key_i == label else low          (``task.reward_range`` = [low, high])

Rules, as TTRL's reward manager (``verl/.../reward_manager/ttrl.py``, ``ttt_metrics.py``):

- **vote key**: the verifier's ``info["extracted"]`` answer. The arith / ``final_number`` verifiers write the
  parsed *value* (``str(int(...))``), so keys compare integers, not strings (spec adaptation for arith); the
  ``math`` verifier writes the answer string, so there ``0.5`` and ``1/2`` are separate votes, as in TTRL.
- **empty votes** (``task.empty_vote``): a rollout whose answer did not parse votes ``""``. ``vote`` (TTRL's code:
  ``""`` is a valid vote and can win, then the unparsed rollouts are rewarded) or ``abstain`` (it does not vote;
  a group where nobody voted has no label and every reward is ``low``). A check that *faulted* (verifier error,
  timeout) never votes: TTRL drops ``None``.
- **ties**: ``Counter.most_common(1)``, i.e. the tied answer seen first in generation order.
- **reward**: key equality with the label. TTRL re-checks each response against the label with its math
  verifier; for the integer verifiers key equality is that check, for ``math`` it is exact-string (a choice).

What is logged and never trained on: each rollout's ``info`` keeps the verifier's true score (``true_score``)
and gets ``pseudo_label``; :func:`pseudo_label_metrics` turns them into ``label/*`` metrics (pseudo-label
accuracy against the hidden references, reward accuracy, majority ratio, empty-vote and empty-win rates).
A label is right when a rollout carrying it scored ``high`` under the true reference (the verifier's own check).
Votes are taken per generation round; with the ``fixed`` allocator (the ``ttrl`` recipe) a round is the group.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from rollwise.rewards.core import VerifyResult

__all__ = ["PseudoLabelShaper", "compute_majority_label", "pseudo_label_metrics", "vote_key"]

EMPTY = ""  # the vote of a rollout whose answer did not parse


def vote_key(res: VerifyResult, empty_vote: str = "vote") -> str | None:
    """A rollout's vote: its extracted answer, ``""`` when unparsed (``empty_vote = "vote"``), None when it does not
    vote (a faulted check, or an unparsed one with ``empty_vote = "abstain"``)."""
    if res.info.get("fault"):
        return None
    if res.parsed and res.info.get("extracted") is not None:
        return str(res.info["extracted"])
    return EMPTY if empty_vote == "vote" else None


def compute_majority_label(keys: Sequence[str | None]) -> tuple[str | None, int]:
    """(label, its votes): the most common non-None key, the first seen on ties; (None, 0) when nobody voted."""
    votes = Counter(k for k in keys if k is not None)
    if not votes:
        return None, 0
    label, count = votes.most_common(1)[0]  # most_common sorts stably: ties keep first-insertion order
    return label, count


class PseudoLabelShaper:
    """Replace each verified reward by agreement with its group's majority answer (module docstring).

    Built by ``rollout_parts.build_reward_shaper`` when ``task.labels = "none"``; ``then`` is a further shaper
    (``task.reward_shaping``) applied to the pseudo-labelled results."""

    def __init__(self, empty_vote: str = "vote", *, reward_range: tuple[float, float] = (0.0, 1.0),
                 then: Any = None) -> None:
        if empty_vote not in ("vote", "abstain"):
            raise ValueError(f"empty_vote must be 'vote' or 'abstain', got {empty_vote!r}")
        self.empty_vote, self.reward_range, self.then = empty_vote, reward_range, then

    def shape(self, prompts: Sequence[str], completions: Sequence[str], references: Sequence[Any],
              results: Sequence[VerifyResult]) -> list[VerifyResult]:
        low, high = self.reward_range
        keys = [vote_key(r, self.empty_vote) for r in results]
        groups: dict[str, list[int]] = {}
        for i, p in enumerate(prompts):
            groups.setdefault(p, []).append(i)
        out: list[VerifyResult] = list(results)
        for rows in groups.values():
            label, count = compute_majority_label([keys[i] for i in rows])
            voters = sum(keys[i] is not None for i in rows)
            right = label is not None and any(keys[i] == label and results[i].score >= high for i in rows)
            for i in rows:
                res = results[i]
                score = high if label is not None and keys[i] == label else low
                out[i] = replace(res, score=score, info={
                    **res.info, "true_score": float(res.score), "true_correct": res.score >= high,
                    "pseudo_label": label, "vote": keys[i], "label_correct": right,
                    "majority_ratio": count / max(voters, 1)})
        if self.then is not None:
            out = self.then.shape(prompts, completions, references, out)
        return out


def pseudo_label_metrics(groups: Sequence[Sequence[dict[str, Any]]]) -> dict[str, float]:
    """``label/*`` metrics of a step's pseudo-labelled rollouts (``groups``: each prompt's rollout ``info`` dicts;
    ``{}`` when none is labelled): per prompt, the share whose pseudo-label is right (``pseudo_accuracy``), has
    no label (``no_label``) or is the empty answer (``empty_win_rate``), and the mean majority ratio; per
    rollout, the share of empty votes and the share whose pseudo reward equals its true reward
    (``reward_accuracy``), and the true reward (never trained on)."""
    groups = [[i for i in g if "pseudo_label" in i] for g in groups]
    heads = [g[0] for g in groups if g]  # a prompt's first round decides its row (one round: the group)
    rows = [i for g in groups for i in g]
    if not rows:
        return {}
    labelled = [h for h in heads if h["pseudo_label"] is not None]
    return {
        "label/pseudo_accuracy": sum(h["label_correct"] for h in heads) / len(heads),
        "label/no_label": sum(h["pseudo_label"] is None for h in heads) / len(heads),
        "label/empty_win_rate": sum(h["pseudo_label"] == EMPTY for h in heads) / len(heads),
        "label/majority_ratio": sum(h["majority_ratio"] for h in labelled) / max(len(labelled), 1),
        "label/empty_vote_rate": sum(i["vote"] == EMPTY for i in rows) / len(rows),
        "label/reward_accuracy": sum((i["pseudo_label"] is not None and i["vote"] == i["pseudo_label"])
                                     == i["true_correct"] for i in rows) / len(rows),
        "label/true_reward_mean": sum(i["true_score"] for i in rows) / len(rows),
    }

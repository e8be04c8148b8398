"""What SCOPE's transform (``sampling/scope.py``, arXiv:2602.24110) borrows from the trainer side: the PRM slot
(``judge``) and the reference splice (``splice``), both needing the task's texts, the tokenizer and the verifier.

The splice of a failed rollout y at its first wrong step k (character offset ``char`` in y):

- the prefix keeps the policy's own tokens: the longest run of y's completion tokens whose decoded text lies
  within y[:char] (one token per character for the char tokenizer; a cut at a token boundary otherwise), with their
  stored behaviour logprobs and versions, so they stay on-policy;
- the suffix is y[cut:char] + the reference's steps from k on (the expert trace segmented by the same PRM),
  tokenised, plus the end-of-sequence token; its tokens are marked ``off_policy_mask`` and carry behaviour
  logprob 0 (the reference splice is a deterministic teacher, mu = 1) and the rollout's version;
- y' is verified; the transform keeps it only if it is correct.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from rollwise.registry import import_object
from rollwise.rewards.base import get_verifier
from rollwise.rewards.prm import PRMS
from rollwise.types import Rollout


def build_prm(name: str) -> Callable[[str, str, str], Any]:
    """The PRM named ``name`` (a registered factory, or ``package.module:attr``: a factory or the callable)."""
    obj = PRMS.get(name) if name in PRMS else import_object(name)
    return obj() if isinstance(obj, type) else obj


def token_cut(tok: Any, ids: list[int], char: int) -> int:
    """The most leading tokens of ``ids`` whose decoded text has at most ``char`` characters."""
    cut = 0
    for j in range(1, len(ids) + 1):
        if len(tok.decode(ids[:j])) > char:
            break
        cut = j
    return cut


def splice_rollout(r: Rollout, cut: int, suffix_ids: list[int], text: str, reward: float,
                   info: dict[str, Any], k: int) -> Rollout:
    """``r`` with its completion cut after ``cut`` tokens and ``suffix_ids`` appended off-policy."""
    n = len(suffix_ids)
    versions = list(r.versions[:cut]) + [r.policy_version] * n if r.versions else []
    return dataclasses.replace(
        r, completion_ids=list(r.completion_ids[:cut]) + list(suffix_ids),
        behaviour_logprobs=list(r.behaviour_logprobs[:cut]) + [0.0] * n, text=text, finish_reason="stop",
        reward=float(reward), parsed=True, verify_info=dict(info), versions=versions,
        meta=dict(r.meta) | {"scope": {"first_error": k, "prefix_tokens": cut, "suffix_tokens": n}},
        off_policy_mask=[False] * cut + [True] * n)


def build_rectifier(cfg: Any, texts: Sequence[str], refs: Sequence[str], traces: Sequence[str | None],
                    tok: Any) -> Callable[[str], tuple[Callable, Callable]]:
    """``RescueSources.rectifier``: (PRM name) -> (judge, splice) over the task's pool (module docstring)."""
    def make(prm_name: str) -> tuple[Callable, Callable]:
        if prm_name == "arith" and cfg.task.scratchpad != "carries":
            raise ValueError(f"sampler.transform.prm = 'arith' checks carry scratchpads; task.scratchpad is "
                             f"{cfg.task.scratchpad!r}: set it to 'carries'")
        return _rectifier(build_prm(prm_name), get_verifier(cfg.task.verifier_name()), texts, refs, traces, tok)

    return make


def _rectifier(prm: Any, verifier: Any, texts: Sequence[str], refs: Sequence[str], traces: Sequence[str | None],
               tok: Any) -> tuple[Callable, Callable]:
    eos = getattr(tok, "eos_token_id", None)

    def judge(p: int, completion: str) -> tuple[list[int], list[float]]:
        got = prm(texts[p], refs[p], completion)
        return list(got.starts), list(got.scores)

    def splice(p: int, r: Rollout, k: int, char: int) -> tuple[Rollout, float, str, int, float] | None:
        trace = traces[p]
        if trace is None:
            return None
        starts = prm(texts[p], refs[p], trace).starts
        if k >= len(starts):
            return None  # the reference has no step k: nothing to splice from
        cut = token_cut(tok, list(r.completion_ids), char)
        kept = tok.decode(list(r.completion_ids[:cut]))
        suffix = r.text[len(kept):char] + trace[starts[k]:]
        ids = tok(suffix, add_special_tokens=False)["input_ids"] + ([eos] if eos is not None else [])
        text = kept + suffix
        res = verifier(text, refs[p])
        out = splice_rollout(r, cut, ids, text, float(res.score), res.info, k)
        lp = out.behaviour_logprobs
        return out, float(res.score), text, out.num_tokens, sum(lp) / max(len(lp), 1)

    return judge, splice

"""Verifiable rewards: verifiers looked up by name (``get_verifier``), bounded in time by default (checks of a
verifier that is not ``safe_inline`` run in a shared worker pool), and the ``VerifierPool`` behind them."""

from rollwise.rewards.base import (
    VERIFIERS,
    BoundedVerifier,
    Verifier,
    VerifyResult,
    as_verifier,
    get_verifier,
    inline_safe,
    raw_verifier,
)
from rollwise.rewards.pool import VerifierPool

__all__ = [
    "VERIFIERS",
    "BoundedVerifier",
    "Verifier",
    "VerifierPool",
    "VerifyResult",
    "as_verifier",
    "get_verifier",
    "inline_safe",
    "raw_verifier",
]

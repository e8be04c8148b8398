"""Verifiable rewards: verifiers looked up by name (``get_verifier``) and a bounded ``VerifierPool``."""

from rollwise.rewards.base import VERIFIERS, Verifier, VerifyResult, as_verifier, get_verifier, inline_safe
from rollwise.rewards.pool import VerifierPool

__all__ = [
    "VERIFIERS",
    "Verifier",
    "VerifierPool",
    "VerifyResult",
    "as_verifier",
    "get_verifier",
    "inline_safe",
]

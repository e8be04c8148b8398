"""User-code verifiers for the registry and pool tests (imported by ``module:function`` name)."""

from __future__ import annotations

import os
import signal
import time

from rollwise.rewards.base import VerifyResult


def half(completion: str, reference: str) -> float:
    return 0.5


def same(completion: str, reference: str) -> bool:
    return completion == reference


def typed(completion: str, reference: str) -> VerifyResult:
    return VerifyResult(1.0, True, {"user": True})


def bad_type(completion: str, reference: str) -> str:
    return "yes"


def misbehave(completion: str, reference: str) -> float:
    """Does what the completion says: a sleep, a crash, an exception, a huge allocation, or a pass."""
    if completion == "sleep":
        time.sleep(60)
    elif completion == "segv":
        os.kill(os.getpid(), signal.SIGSEGV)
    elif completion == "exit":
        os._exit(3)
    elif completion == "raise":
        raise RuntimeError("verifier bug")
    elif completion == "alloc":
        return float(len(bytearray(16 * 2**30)))  # 16 GiB: must fail under the worker's memory cap
    return 1.0

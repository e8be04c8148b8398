"""Shared fixtures: a tiny random-init model and tokenizer, and the smoke config with a per-session cache."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rollwise.config import load_config
from rollwise.train.model import build_char_tokenizer, build_tiny_model

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tokenizer():
    return build_char_tokenizer()


@pytest.fixture()
def tiny_model(tokenizer):
    torch.manual_seed(0)
    return build_tiny_model(tokenizer, layers=2, hidden=32, heads=2, kv_heads=1, intermediate=64, seed=0)


@pytest.fixture(scope="session")
def warm_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("warmstart")


@pytest.fixture()
def smoke_cfg(tmp_path, warm_cache):
    def make(*overrides: str):
        return load_config(ROOT / "configs" / "smoke.toml",
                           [f"--run.out_dir={tmp_path}", f"--warmstart.cache_dir={warm_cache}", *overrides])

    return make


@pytest.fixture(scope="session")
def train_until_sigkill():
    """``fn(cfg_args, at_step)``: see :func:`_train_until_sigkill`."""
    return _train_until_sigkill


def _train_until_sigkill(cfg_args: list[str], at_step: int) -> subprocess.CompletedProcess:
    """Train the smoke config with ``cfg_args`` in a subprocess that SIGKILLs itself right after the checkpoint
    of step ``at_step`` (a trainer hook); the caller checks the return code (-9) and resumes."""
    script = (
        "import os, signal\n"
        "from rollwise.config import load_config\n"
        "from rollwise.train.trainer import Trainer\n"
        f"cfg = load_config({str(ROOT / 'configs' / 'smoke.toml')!r}, {cfg_args!r})\n"
        f"kill = lambda step: os.kill(os.getpid(), signal.SIGKILL) if step == {at_step} else None\n"
        "Trainer(cfg, on_checkpoint=kill).train()\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)

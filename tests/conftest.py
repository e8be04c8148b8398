"""Shared fixtures: a tiny random-init model and tokenizer, and the smoke config with a per-session cache."""

from __future__ import annotations

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

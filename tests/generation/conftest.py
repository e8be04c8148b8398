"""Fixtures of the HF-engine tests: the character tokenizer and one tiny random-init Qwen2 per module."""

import pytest

from rollwise.train.model import build_char_tokenizer, build_tiny_model


@pytest.fixture(scope="module")
def tok():
    return build_char_tokenizer()


@pytest.fixture(scope="module")
def model(tok):
    return build_tiny_model(tok, layers=2, hidden=32, heads=2, kv_heads=1, intermediate=64, seed=0)

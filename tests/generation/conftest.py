"""Fixtures of the HF-engine tests: the character tokenizer and one tiny random-init Qwen2 per module."""

import pytest

from rollwise.train.model import build_char_tokenizer, build_tiny_model


@pytest.fixture(scope="module")
def tok():
    return build_char_tokenizer()


@pytest.fixture(scope="module")
def model(tok):
    return build_tiny_model(tok, layers=2, hidden=32, heads=2, kv_heads=1, intermediate=64, seed=0)


# ---- vLLM: one tiny model and one engine of each kind per run (building one takes tens of seconds)
@pytest.fixture(scope="session")
def vllm_tok():
    return build_char_tokenizer()


@pytest.fixture(scope="session")
def vllm_model(vllm_tok):
    # head_dim 32: vLLM's CPU attention supports head sizes >= 32
    return build_tiny_model(vllm_tok, layers=2, hidden=64, heads=2, kv_heads=1, intermediate=64, seed=0).eval()


VLLM_ENGINE_KWARGS = dict(batch_size=32, enforce_eager=True, max_model_len=192, gpu_memory_utilization=0.2)


def _build_vllm(name: str, model, tok):
    """Build a vLLM engine, then undo what vLLM's CPU platform does to the whole test process: it puts its
    tcmalloc and torch's libgomp in ``LD_PRELOAD`` (inherited by every later subprocess) and replaces
    ``torch.set_num_threads`` with a no-op (the in-process worker binds threads)."""
    pytest.importorskip("vllm")
    import os

    import torch

    from rollwise.generation import ENGINES

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB of KV cache on the CPU backend
    preload, set_threads, threads = os.environ.get("LD_PRELOAD"), torch.set_num_threads, torch.get_num_threads()
    try:
        return ENGINES.get(name)(model, tok, **VLLM_ENGINE_KWARGS)
    finally:
        if preload is None:
            os.environ.pop("LD_PRELOAD", None)
        else:
            os.environ["LD_PRELOAD"] = preload
        torch.set_num_threads = set_threads
        torch.set_num_threads(threads)


# Package scope (this folder's __init__.py): the engines are closed when the run leaves tests/generation, while
# the in-process engine's torch.distributed groups still exist (the collective weight sync keeps a group of its own
# and no longer tears torch.distributed down, but an engine left open would still hold its workers to the end).
@pytest.fixture(scope="package")
def vllm_engine(vllm_model, vllm_tok):
    """The offline engine (``vllm.LLM`` in this process); tests that change its weights restore them. The two
    engines may be built in either order (generation/vllm_async.py's docstring: the envs cache an in-process
    ``LLM`` freezes); tests that take both name this one first, so the async engine is built after it."""
    engine = _build_vllm("vllm", vllm_model, vllm_tok)
    yield engine
    engine.close()


@pytest.fixture(scope="package")
def vllm_async_engine(vllm_model, vllm_tok):
    """The async engine (``vllm.AsyncLLM``, engine core in a child process)."""
    engine = _build_vllm("vllm_async", vllm_model, vllm_tok)
    yield engine
    engine.close()

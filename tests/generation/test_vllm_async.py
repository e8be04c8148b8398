"""AsyncVLLMEngine (skipped without vllm): the offline engine's tokens for the same call, abort / prune with
partials and their resume, APRIL on vLLM, completions streamed in finish order with an abort from the consumer,
weight sync; an async engine built after an in-process offline one (the offline engine's fixture comes first);
vLLM's envs cache and a dead output handler. One engine of each kind serves the session
(tests/generation/conftest.py).

How far a row got before an abort depends on timing (the engine core runs in its own process), so the tests
assert what holds whatever the timing: every partial is a prefix of the row's uninterrupted (seeded) tokens, and
what finished equals the uninterrupted call."""

from __future__ import annotations

import asyncio
import copy
import os
from types import SimpleNamespace

import pytest
import torch

pytest.importorskip("vllm")

from rollwise.generation import (  # noqa: E402
    Completion,
    Decision,
    OutputSpec,
    Prefix,
    SamplingParams,
    StepControl,
)
from rollwise.generation.april import AprilStrategy  # noqa: E402
from rollwise.generation.hf import HFEngine  # noqa: E402
from rollwise.generation.vllm_async import DEAD_HANDLER, AsyncVLLMEngine, _vllm_env  # noqa: E402

TEXTS = ["7", "12+34=", "hello world, x", "ab"]
LONG = 40  # the cap of the abort / prune / stream tests


@pytest.fixture(scope="module")
def prompts(vllm_tok):
    return [vllm_tok.encode(t) for t in TEXTS]


@pytest.fixture(scope="module")
def stops(vllm_tok):
    return tuple(vllm_tok.convert_tokens_to_ids(list("0123")))


def flat(res: list[list[Completion]]) -> list[Completion]:
    return [c for g in res for c in g]


def test_vllm_env_reads_through_the_cache_an_in_process_engine_froze():
    """The cause of the old hang: an in-process EngineCore freezes vllm.envs, so a later os.environ change was not
    seen by this process (while a spawned engine core saw it). ``_vllm_env`` reads through, then re-freezes."""
    from vllm import envs

    keys = ("VLLM_ALLOW_INSECURE_SERIALIZATION", "VLLM_ENABLE_V1_MULTIPROCESSING")
    saved, was_cached = {k: os.environ.get(k) for k in keys}, envs._is_envs_cache_enabled()
    try:
        os.environ.pop(keys[0], None)
        os.environ[keys[1]] = "0"  # as the offline engine leaves it
        envs.disable_envs_cache()
        envs.enable_envs_cache()  # what an in-process EngineCore does on start
        os.environ[keys[0]] = "1"  # what the async engine sets for sync_weights
        assert not envs.VLLM_ALLOW_INSECURE_SERIALIZATION  # frozen: the child reads 1, this process read 0
        with _vllm_env(VLLM_ENABLE_V1_MULTIPROCESSING="1"):
            assert envs.VLLM_ALLOW_INSECURE_SERIALIZATION and envs.VLLM_ENABLE_V1_MULTIPROCESSING
        assert envs._is_envs_cache_enabled() and os.environ[keys[1]] == "0"  # restored, cache on again
        assert envs.VLLM_ALLOW_INSECURE_SERIALIZATION and not envs.VLLM_ENABLE_V1_MULTIPROCESSING
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        envs.disable_envs_cache()
        if was_cached:
            envs.enable_envs_cache()


def test_a_dead_output_handler_raises_instead_of_waiting(monkeypatch):
    """AsyncLLM's output handler logs its error and fails only the requests registered then; a later request (or
    one awaiting a utility call) would wait forever: ``_next`` raises once the handler is done."""
    import rollwise.generation.vllm_async as vllm_async

    monkeypatch.setattr(vllm_async, "HANDLER_POLL_S", 0.01)
    engine = object.__new__(AsyncVLLMEngine)

    async def run(handler_done: bool, items: list) -> tuple:
        handler = asyncio.get_running_loop().create_future()
        if handler_done:
            handler.set_result(None)
        engine.llm = SimpleNamespace(output_handler=handler)
        queue: asyncio.Queue = asyncio.Queue()
        for it in items:
            queue.put_nowait(it)
        return await engine._next(queue)

    assert asyncio.run(run(True, [(3, "out")])) == (3, "out")  # what was streamed is still read
    with pytest.raises(RuntimeError, match="output handler has stopped") as err:
        asyncio.run(run(True, []))
    assert str(err.value) == DEAD_HANDLER


def test_same_tokens_as_the_offline_engine(vllm_engine, vllm_async_engine, prompts):
    """The offline engine's fixture first: in a session the async engine is built after an in-process LLM (the
    order that hung before ``_vllm_env``)."""
    counts = [3, 0, 2, 1]
    for params in [SamplingParams(1.0, max_new_tokens=12, seed=4), SamplingParams(0.0, max_new_tokens=10)]:
        got = vllm_async_engine.generate(prompts, counts, params)
        want = vllm_engine.generate(prompts, counts, params)
        assert [len(g) for g in got] == counts
        for g, w in zip(flat(got), flat(want)):
            assert g.token_ids == w.token_ids and g.finish_reason == w.finish_reason
            assert set(g.versions) == {vllm_async_engine.version}  # each engine's own weight version
            torch.testing.assert_close(torch.tensor(g.logprobs), torch.tensor(w.logprobs), atol=1e-4, rtol=0)
    st = vllm_async_engine.last_stats
    assert st.sequences == 6 and st.completion_tokens == sum(len(c.token_ids) for c in flat(got))
    top = vllm_async_engine.generate(prompts[:2], [1, 1], SamplingParams(1.0, max_new_tokens=6, seed=1),
                                     outputs=OutputSpec(topk=3))
    assert all(len(ids) == 3 for c in flat(top) for ids in c.topk_ids)


def test_abort_keeps_partials_and_they_resume(vllm_async_engine, prompts):
    params = SamplingParams(0.0, max_new_tokens=LONG)
    full = flat(vllm_async_engine.generate(prompts, [1] * 4, params))
    views = []

    def stop_at_3(view):
        views.append(view)
        return Decision.ABORT if view.step >= 3 else None

    cut = flat(vllm_async_engine.generate(prompts, [1] * 4, params, control=StepControl(stop_at_3)))
    assert views and views[0].total_rows == 4 and views[0].groups == [0, 1, 2, 3]
    for c, f in zip(cut, full):
        assert c.finish_reason == "abort" and 0 < len(c.token_ids) < LONG
        assert c.token_ids == f.token_ids[: len(c.token_ids)] and len(c.logprobs) == len(c.versions) == len(c.token_ids)
    # resume each partial as a prefix: greedy, so the result is the uninterrupted row
    pre = [Prefix(c.token_ids, c.logprobs, c.versions) for c in cut]
    again = flat(vllm_async_engine.generate(prompts, [1] * 4, params, prefixes=pre))
    for a, c, f in zip(again, cut, full):
        assert a.token_ids == f.token_ids and a.prefix_len == len(c.token_ids)
        assert a.logprobs[: a.prefix_len] == c.logprobs


def test_prune_one_row_the_others_finish(vllm_async_engine, prompts, stops):
    params = SamplingParams(1.0, max_new_tokens=LONG, stop_token_ids=stops, seed=2)
    full = flat(vllm_async_engine.generate(prompts, [2] * 4, params))
    ctl = StepControl(lambda view: {0: Decision.PRUNE} if 0 in view.rows else None, every=2)
    res = flat(vllm_async_engine.generate(prompts, [2] * 4, params, control=ctl))
    assert res[0].finish_reason == "pruned" and res[0].token_ids == full[0].token_ids[: len(res[0].token_ids)]
    for c, f in zip(res[1:], full[1:]):  # the same seeded rows, untouched
        assert c.token_ids == f.token_ids and c.finish_reason == f.finish_reason


def test_april_on_vllm(vllm_async_engine, prompts, stops):
    """Two of four groups finished stop the call; the rest wait in the buffer as partials and resume next step."""
    params = SamplingParams(1.0, max_new_tokens=150, stop_token_ids=stops, seed=0)
    full = vllm_async_engine.generate(prompts, [2] * 4, params)  # the uninterrupted call: same entries, seeds
    lengths = sorted(max(len(c.token_ids) for c in g) for g in full)
    # seed chosen so: the second group is done after 30 tokens, the last needs 79, so the stop (after the second
    # group) reaches the engine dozens of decode steps before the last group could finish
    assert lengths[1] == 30 and lengths[-1] == 79
    april = AprilStrategy(over_sample=2.0, check_every=1)
    out = april.generate(vllm_async_engine, [0, 1, 2, 3], prompts, [2] * 4, params, step=0)
    m = april.metrics()
    assert m["april_finished_groups"] >= 2 and m["april_buffer_groups"] >= 1 and m["april_aborted"] >= 1
    for i, cs in enumerate(out.completions):
        if cs:  # returned only whole, and as the uninterrupted call drew them
            assert [c.token_ids for c in cs] == [c.token_ids for c in full[i]]
    for grp in april.buffer:  # partial rows are prefixes of their uninterrupted tokens
        for c, f in zip(grp.members, full[grp.key]):
            assert f.token_ids[: len(c.token_ids)] == c.token_ids
            assert c.finish_reason != "abort" or c.versions == [0] * len(c.token_ids)
    buffered = {g.key for g in april.buffer}
    nxt = april.generate(vllm_async_engine, [], [], [], params, step=1)  # nothing new asked: the buffer resumes
    assert set(nxt.extra) <= buffered and april.metrics()["april_resumed"] >= 1
    for _key, (_p, cs) in nxt.extra.items():
        assert all(c.finish_reason in ("stop", "length") and len(c.token_ids) <= 150 for c in cs)


def test_stream_in_finish_order_and_abort_from_the_consumer(vllm_async_engine, prompts, stops):
    params = SamplingParams(1.0, max_new_tokens=LONG, stop_token_ids=stops, seed=0)
    full = vllm_async_engine.generate(prompts, [2] * 4, params)
    order = [len(c.token_ids) for _, _, c in vllm_async_engine.stream(prompts, [2] * 4, params)]
    assert order == sorted(order)  # all rows start together and gain one token per step: shortest first
    got: list[tuple[int, int, Completion]] = []
    aborted = 0
    for i, j, c in vllm_async_engine.stream(prompts, [2] * 4, params):
        got.append((i, j, c))
        if len(got) == 2:
            aborted = vllm_async_engine.abort()  # enough: the rest come back as partials
    assert len(got) == 8 and aborted >= 1
    assert sum(c.finish_reason == "abort" for _, _, c in got) == aborted
    for i, j, c in got:
        assert c.token_ids == full[i][j].token_ids[: len(c.token_ids)]
        if c.finish_reason != "abort":
            assert c.token_ids == full[i][j].token_ids
    assert vllm_async_engine.last_stats.sequences == 8


def test_sync_weights(vllm_async_engine, vllm_model, vllm_tok, prompts):
    params = SamplingParams(0.0, max_new_tokens=10)
    before = [c.token_ids for c in flat(vllm_async_engine.generate(prompts, [1] * 4, params))]
    other = copy.deepcopy(vllm_model)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(1)) * 0.5)
    vllm_async_engine.sync_weights(other, 1)
    after = flat(vllm_async_engine.generate(prompts, [1] * 4, params))
    assert [c.token_ids for c in after] != before and {v for c in after for v in c.versions} == {1}
    want = flat(HFEngine(other, vllm_tok).generate(prompts, [1] * 4, params))
    assert [c.token_ids for c in after] == [c.token_ids for c in want]
    vllm_async_engine.sync_weights(vllm_model, 2)
    assert [c.token_ids for c in flat(vllm_async_engine.generate(prompts, [1] * 4, params))] == before

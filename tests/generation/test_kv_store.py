"""The HF engine's cross-call KV cache (``kv_cache_mb``): the same greedy tokens and logprobs as without it for
APRIL-style resumes, LATR-style branches and a conversation's next turn, with hits counted; the store's lookup,
eviction and weight-sync clearing on hand-built entries."""

import pytest
import torch

from rollwise.generation.base import Decision, Prefix, SamplingParams, StepControl
from rollwise.generation.hf import HFEngine
from rollwise.generation.kv_store import KVStore

GREEDY = SamplingParams(temperature=0.0, max_new_tokens=12)


def _kv(n: int, fill: float) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(torch.full((1, 2, n, 4), fill), torch.full((1, 2, n, 4), -fill)) for _ in range(3)]  # 3 layers


def test_lookup_is_the_longest_common_prefix_and_leaves_one_token():
    store = KVStore(1 << 20)
    store.put(list(range(20)), _kv(20, 1.0))
    kv, m = store.lookup(list(range(13)) + [99, 98])  # shares 13 tokens: block hit at 8, extended to 13
    assert m == 13 and kv[0][0].shape == (1, 2, 13, 4)
    _, m = store.lookup(list(range(21)))  # all 20 kept tokens, the 21st is fed
    assert m == 20
    _, m = store.lookup(list(range(20)))  # the same tokens: one is left to feed
    assert m == 19
    kv, m = store.lookup([5, 6, 7])
    assert kv is None and m == 0
    assert store.counters == {"hits": 3, "misses": 1, "hit_tokens": 52, "evictions": 0, "clears": 0}


def test_short_entries_are_found_by_their_full_length():
    store = KVStore(1 << 20)
    store.put([4, 5, 6], _kv(3, 1.0))  # shorter than a block
    _, m = store.lookup([4, 5, 6, 7])
    assert m == 3


def test_lru_eviction_keeps_memory_bounded():
    one = sum(k.numel() * 4 + v.numel() * 4 for k, v in _kv(10, 1.0))
    store = KVStore(2 * one)
    store.put(list(range(10)), _kv(10, 1.0))
    store.put(list(range(100, 110)), _kv(10, 2.0))
    store.lookup(list(range(11)))  # touch the first: the second is now least recently used
    store.put(list(range(200, 210)), _kv(10, 3.0))
    assert store.bytes <= 2 * one and store.counters["evictions"] == 1
    assert store.lookup(list(range(11)))[1] == 10
    assert store.lookup(list(range(100, 111)))[1] == 0


def _pair(tok, model, mb: float = 64.0):
    return HFEngine(model, tok, batch_size=64), HFEngine(model, tok, batch_size=64, kv_cache_mb=mb)


def _same(a, b):
    for ca, cb in zip(a, b):
        for x, y in zip(ca, cb):
            assert x.token_ids == y.token_ids and x.finish_reason == y.finish_reason
            torch.testing.assert_close(torch.tensor(x.logprobs), torch.tensor(y.logprobs), atol=1e-5, rtol=0)


def _prompts(tok):
    return [tok(s, add_special_tokens=False)["input_ids"] for s in ("12+34=", "7*8=", "123+456+789=")]


def test_april_resume_and_latr_branch_reuse_kept_rows(tok, model):
    plain, cached = _pair(tok, model)
    prompts = _prompts(tok)
    stop_at_5 = StepControl(lambda v: Decision.ABORT if v.step >= 5 else None)
    parts = [e.generate(prompts, [2, 1, 2], GREEDY, control=stop_at_5) for e in (plain, cached)]
    _same(*parts)
    assert all(c.finish_reason == "abort" for cs in parts[1] for c in cs)
    # APRIL: resume every partial from its tokens (all but the last sampled token are kept)
    pre = [Prefix(list(cs[0].token_ids), list(cs[0].logprobs)) for cs in parts[1]]
    before = dict(cached.kv_store.counters)
    resumed = [e.generate(prompts, [1, 1, 1], GREEDY, prefixes=pre) for e in (plain, cached)]
    _same(*resumed)
    got = cached.kv_store.counters
    assert got["hits"] - before["hits"] == 3 and got["misses"] == before["misses"]
    assert got["hit_tokens"] - before["hit_tokens"] == sum(len(p) + 4 for p in prompts)
    # LATR: branch at t = 2 with another token than the parent's
    full = resumed[1]
    branch = [Prefix(list(cs[0].token_ids[:2]) + [tok.eos_token_id + 7], [0.0] * 3) for cs in full]
    before = dict(cached.kv_store.counters)
    _same(*[e.generate(prompts, [1, 1, 1], GREEDY, prefixes=branch) for e in (plain, cached)])
    assert cached.kv_store.counters["hits"] - before["hits"] == 3
    assert cached.metrics()["kv_cache/hits"] == cached.kv_store.counters["hits"]


def test_a_conversation_turn_prefills_only_the_reply(tok, model):
    plain, cached = _pair(tok, model)
    prompts = _prompts(tok)
    first = [e.generate(prompts, [1, 1, 1], GREEDY) for e in (plain, cached)]
    _same(*first)
    reply = tok(" ok, again:", add_special_tokens=False)["input_ids"]
    turn2 = [p + cs[0].token_ids + reply for p, cs in zip(prompts, first[1])]
    before = dict(cached.kv_store.counters)
    _same(*[e.generate(turn2, [1, 1, 1], GREEDY) for e in (plain, cached)])
    assert cached.kv_store.counters["hits"] - before["hits"] == 3
    assert cached.kv_store.counters["hit_tokens"] - before["hit_tokens"] >= sum(len(p) for p in prompts)


def test_a_weight_sync_clears_the_store(tok, model):
    _, cached = _pair(tok, model)
    cached.generate(_prompts(tok), [1, 1, 1], GREEDY)
    assert len(cached.kv_store) > 0
    cached.sync_weights(model, 0)  # same version: kept
    assert len(cached.kv_store) > 0
    cached.sync_weights(model, 1)
    assert len(cached.kv_store) == 0 and cached.kv_store.counters["clears"] == 1


def test_knob_is_checked():
    with pytest.raises(ValueError, match="kv_cache_mb"):
        HFEngine(None, type("T", (), {"pad_token_id": 0, "eos_token_id": 1})(), kv_cache_mb=-1)


def test_the_trainer_wires_the_knob_and_logs_hits(tmp_path, warm_cache):
    """``generation.engine.kv_cache_mb`` reaches the engine built from config; a LATR step (its repeated calls
    continue live branches) hits the cache, and the counters reach the collector's metrics."""
    from pathlib import Path

    from rollwise.config import load_config
    from rollwise.train.trainer import Trainer

    smoke = Path(__file__).parents[2] / "configs" / "smoke.toml"
    cfg = load_config(smoke, [f"--run.out_dir={tmp_path}", f"--warmstart.cache_dir={warm_cache}",
                              "--trainer.progress=false", '--generation.engine={type="hf",kv_cache_mb=64}',
                              '--generation.strategy={type="latr",lookahead=[2,3]}', "--generation.max_new_tokens=12"])
    tr = Trainer(cfg)
    try:
        tr.rollouts.collect(tr.pipeline, 0, version=0)
        metrics = tr.collector.metrics()
    finally:
        tr.close()
    assert metrics["generation/kv_cache/hits"] > 0 and metrics["generation/kv_cache/hit_tokens"] > 0

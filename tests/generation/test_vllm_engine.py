"""VLLMEngine (skipped without vllm): counts and order, greedy == the HF engine, behaviour logprobs == a
teacher-forced forward, stop / length finish reasons, seeded determinism, prefix continuation and per-token
versions, weight sync (outputs follow the weights, after an optimiser update too). One engine serves the session
(tests/generation/conftest.py: building one takes tens of seconds); the weight-sync tests restore the weights."""

from __future__ import annotations

import copy

import pytest
import torch

pytest.importorskip("vllm")

from rollwise.generation import Completion, Engine, Prefix, SamplingParams  # noqa: E402
from rollwise.generation.hf import HFEngine  # noqa: E402
from rollwise.train.policy import build_seq_batch, compute_logprobs  # noqa: E402

TEXTS = ["7", "12+34=", "hello world, x", "ab"]


@pytest.fixture(scope="module")
def tok(vllm_tok):
    return vllm_tok


@pytest.fixture(scope="module")
def model(vllm_model):
    return vllm_model


@pytest.fixture(scope="module")
def engine(vllm_engine):
    return vllm_engine


@pytest.fixture(scope="module")
def prompts(tok):
    return [tok.encode(t) for t in TEXTS]


def flat(res: list[list[Completion]]) -> list[Completion]:
    return [c for g in res for c in g]


def teacher_forced(model, prompts, counts, res, T: float) -> list[list[float]]:
    ps = [p for p, n in zip(prompts, counts) for _ in range(n)]
    cs = flat(res)
    with torch.no_grad():
        lp, _ = compute_logprobs(model, build_seq_batch(ps, [c.token_ids for c in cs], 0), T)  # [B, C]
    return [lp[b, : len(c.token_ids)].tolist() for b, c in enumerate(cs)]


def test_counts_order_stats_and_seeding(engine, prompts):
    assert isinstance(engine, Engine)
    counts = [3, 0, 2, 1]
    params = SamplingParams(1.0, max_new_tokens=6, seed=4)
    res = engine.generate(prompts, counts, params)
    assert [len(g) for g in res] == counts
    st = engine.last_stats
    assert st.sequences == 6 and st.prompt_tokens == 3 * len(prompts[0]) + 2 * len(prompts[2]) + len(prompts[3])
    assert st.completion_tokens == sum(len(c.token_ids) for c in flat(res)) and st.seconds > 0
    for c in flat(res):
        assert len(c.logprobs) == len(c.token_ids) > 0 and all(lp <= 0 for lp in c.logprobs)
    again = engine.generate(prompts, counts, params)
    assert [c.token_ids for c in flat(again)] == [c.token_ids for c in flat(res)]
    other = engine.generate(prompts, counts, SamplingParams(1.0, max_new_tokens=6, seed=5))
    assert [c.token_ids for c in flat(other)] != [c.token_ids for c in flat(res)]
    # a prompt's samples depend on (seed, its index), not on the rest of the batch
    mixed = engine.generate(prompts, [1, 2, 2, 0], params)
    assert [c.token_ids for c in mixed[2]] == [c.token_ids for c in res[2]]
    assert engine.generate([], [], SamplingParams(seed=0)) == []
    assert engine.generate(prompts[:1], [2], SamplingParams(max_new_tokens=0))[0][0].token_ids == []
    for bad_counts, bad_params in [([1], SamplingParams()), ([1] * 4, SamplingParams(top_p=0.0)),
                                   ([1] * 4, SamplingParams(temperature=-1.0)),
                                   ([1] * 4, SamplingParams(temperature=1.0, top_p=0.9))]:
        with pytest.raises(ValueError):
            engine.generate(prompts, bad_counts, bad_params)


def test_greedy_equals_hf_engine(engine, model, tok, prompts):
    params = SamplingParams(0.0, max_new_tokens=10)
    got = flat(engine.generate(prompts, [1] * 4, params))
    want = flat(HFEngine(model, tok).generate(prompts, [1] * 4, params))
    for g, w in zip(got, want):
        assert g.token_ids == w.token_ids and g.finish_reason == w.finish_reason and g.text == w.text
        torch.testing.assert_close(torch.tensor(g.logprobs), torch.tensor(w.logprobs), atol=1e-3, rtol=0)


@pytest.mark.parametrize("T", [1.0, 0.7])
def test_behaviour_logprobs_equal_teacher_forced(engine, model, prompts, T):
    counts = [3, 2, 2, 1]
    res = engine.generate(prompts, counts, SamplingParams(T, max_new_tokens=12, seed=3))
    ref = teacher_forced(model, prompts, counts, res, T)
    for c, r in zip(flat(res), ref):
        torch.testing.assert_close(torch.tensor(c.logprobs), torch.tensor(r), atol=1e-3, rtol=0)


def test_stop_token_kept_and_length(engine, tok, prompts):
    (g,), = engine.generate(prompts[1:2], [1], SamplingParams(0.0, max_new_tokens=8))
    assert g.finish_reason == "length" and len(g.token_ids) == 8
    stop = g.token_ids[2]
    k = g.token_ids.index(stop)
    (s,), = engine.generate(prompts[1:2], [1], SamplingParams(0.0, max_new_tokens=8, stop_token_ids=(stop,)))
    assert s.token_ids == g.token_ids[: k + 1] and s.finish_reason == "stop"
    assert s.logprobs == pytest.approx(g.logprobs[: k + 1], abs=1e-4)
    # sampled: rows end on a stop token (kept, nothing after it) or run to the length limit
    stops = tuple(tok.convert_tokens_to_ids(list("0123")))
    res = engine.generate(prompts, [8] * 4, SamplingParams(1.0, max_new_tokens=16, stop_token_ids=stops, seed=0))
    enders, reasons = {tok.eos_token_id, *stops}, set()
    for c in flat(res):
        reasons.add(c.finish_reason)
        assert not enders & set(c.token_ids[:-1])
        if c.finish_reason == "stop":
            assert c.token_ids[-1] in enders
        else:
            assert c.finish_reason == "length" and len(c.token_ids) == 16
        assert c.text == tok.decode(c.token_ids, skip_special_tokens=True)
    assert reasons == {"stop", "length"}


def test_sync_weights_changes_outputs(engine, model, tok, prompts):
    # longer than one KV block (16 tokens on GPU, 128 on CPU), so its prefix is cached across calls
    prompts = prompts + [tok.encode("+".join(str(i) for i in range(50)) + "=")]
    params = SamplingParams(0.0, max_new_tokens=10)
    before = [c.token_ids for c in flat(engine.generate(prompts, [1] * 5, params))]
    other = copy.deepcopy(model)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    engine.sync_weights(other, 1)
    assert engine.version == 1
    after = flat(engine.generate(prompts, [1] * 5, params))
    assert [c.token_ids for c in after] != before
    want = flat(HFEngine(other, tok).generate(prompts, [1] * 5, params))
    assert [c.token_ids for c in after] == [c.token_ids for c in want]  # the new weights, not stale KV
    engine.sync_weights(model, 2)
    assert [c.token_ids for c in flat(engine.generate(prompts, [1] * 5, params))] == before
    assert engine.last_stats.extra["policy_version"] == 2


def test_prefix_continuation_and_versions(engine, tok, prompts):
    params = SamplingParams(0.0, max_new_tokens=12)
    full = flat(engine.generate(prompts, [1] * 4, params))
    k = 5
    pre = [Prefix(c.token_ids[:k], c.logprobs[:k], [7] * k) for c in full]
    res = flat(engine.generate(prompts, [2] * 4, params, prefixes=pre))
    for i, c in enumerate(res):
        f = full[i // 2]
        assert c.token_ids == f.token_ids and c.prefix_len == k and c.finish_reason == f.finish_reason
        assert c.logprobs[:k] == f.logprobs[:k]  # the stored prefix logprobs, as they were
        torch.testing.assert_close(torch.tensor(c.logprobs[k:]), torch.tensor(f.logprobs[k:]), atol=1e-3, rtol=0)
        assert c.versions == [7] * k + [engine.version] * (len(c.token_ids) - k)
    assert engine.last_stats.completion_tokens == sum(len(c.token_ids) - k for c in res)  # the prefix is not decoded
    # a prefix that already reached the budget comes back as it is, without decoding; one without versions: unknown
    (done,), = engine.generate(prompts[:1], [1], SamplingParams(0.0, max_new_tokens=k),
                               prefixes=[Prefix(full[0].token_ids[:k], full[0].logprobs[:k])])
    assert done.token_ids == full[0].token_ids[:k] and done.finish_reason == "length" and done.versions == [-1] * k


def test_sync_after_an_optimiser_update(engine, model, tok, prompts):
    """One real update (AdamW on the NLL of the engine's own greedy completions) moves the engine with it."""
    params = SamplingParams(0.0, max_new_tokens=10)
    res = engine.generate(prompts, [1] * 4, params)
    updated = copy.deepcopy(model).train()
    opt = torch.optim.AdamW(updated.parameters(), lr=0.05)
    lp, _ = compute_logprobs(updated, build_seq_batch(prompts, [c.token_ids for c in flat(res)], 0), 1.0)
    (-lp.sum()).backward()
    opt.step()
    updated.eval()
    engine.sync_weights(updated, 3)
    after = engine.generate(prompts, [1] * 4, params)
    want = HFEngine(updated, tok).generate(prompts, [1] * 4, params)
    moved = 0.0
    for g, w, b in zip(flat(after), flat(want), flat(res)):
        assert g.token_ids == w.token_ids and set(g.versions) == {3}
        torch.testing.assert_close(torch.tensor(g.logprobs), torch.tensor(w.logprobs), atol=1e-3, rtol=0)
        moved += sum(abs(x - y) for x, y in zip(g.logprobs, b.logprobs)) + (g.token_ids != b.token_ids)
    assert moved > 0.1  # the outputs moved with the weights
    engine.sync_weights(model, 4)
    assert [c.token_ids for c in flat(engine.generate(prompts, [1] * 4, params))] == [c.token_ids for c in flat(res)]

"""HFEngine: behaviour logprobs == teacher-forced logprobs, greedy == argmax, stops and counts, seeded
determinism independent of chunking and compaction, top-p, and a Llama loaded through the Auto classes."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from rollwise.generation import ENGINES, Completion, Engine, SamplingParams
from rollwise.generation.hf import HFEngine, compute_sample

TEXTS = ["7", "12+34=", "hello world, x", "ab"]  # different lengths -> left padding within one chunk


@pytest.fixture(scope="module")
def prompts(tok):
    return [tok.encode(t) for t in TEXTS]


def flat(res: list[list[Completion]]) -> list[tuple[list[int], list[float], str]]:
    return [(c.token_ids, c.logprobs, c.finish_reason) for cs in res for c in cs]


def teacher_forced(model, prompts: list[list[int]], completions: list[list[int]],
                   T: float) -> list[list[float]]:
    """Reference: one full forward of [pad.. prompt | completion pad..], position ids from the mask."""
    P, C = max(map(len, prompts)), max(map(len, completions))
    ids = torch.zeros((len(prompts), P + C), dtype=torch.long)  # [B, P + C]
    attn = torch.zeros_like(ids)
    for b, (p, c) in enumerate(zip(prompts, completions)):
        ids[b, P - len(p) : P + len(c)] = torch.tensor(p + c)
        attn[b, P - len(p) : P + len(c)] = 1
    pos = (attn.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        logits = model(ids, attention_mask=attn, position_ids=pos).logits[:, P - 1 : -1].float()  # [B, C, V]
    logp = F.log_softmax(logits / T, dim=-1).gather(-1, ids[:, P:, None]).squeeze(-1)  # [B, C]
    return [logp[b, : len(c)].tolist() for b, c in enumerate(completions)]


def assert_logprobs_match(model, prompts, counts, res, T: float) -> None:
    ps = [p for p, n in zip(prompts, counts) for _ in range(n)]
    cs = [c for group in res for c in group]
    ref = teacher_forced(model, ps, [c.token_ids for c in cs], T)
    for c, r in zip(cs, ref):
        assert len(c.logprobs) == len(c.token_ids) > 0
        torch.testing.assert_close(torch.tensor(c.logprobs), torch.tensor(r), atol=1e-4, rtol=0)


@pytest.mark.parametrize("T", [1.0, 0.7])
def test_behaviour_logprobs_equal_teacher_forced(model, tok, prompts, T):
    counts = [3, 2, 2, 1]
    engine = HFEngine(model, tok, batch_size=8)
    res = engine.generate(prompts, counts, SamplingParams(temperature=T, max_new_tokens=12, seed=3))
    assert_logprobs_match(model, prompts, counts, res, T)
    # top-p changes which tokens are drawn, never how their logprob is reported; stop tokens make rows finish
    # at different steps, so the batch is compacted mid-decode
    stops = tuple(tok.convert_tokens_to_ids(list("01234")))
    params = SamplingParams(temperature=T, top_p=0.8, max_new_tokens=12, stop_token_ids=stops, seed=3)
    res = engine.generate(prompts, counts, params)
    assert len({len(c.token_ids) for g in res for c in g}) > 1
    assert_logprobs_match(model, prompts, counts, res, T)


def test_matches_trainer_logprobs(model, tok, prompts):
    from rollwise.train.policy import build_seq_batch, compute_logprobs

    res = HFEngine(model, tok).generate(prompts, [2] * 4, SamplingParams(0.7, max_new_tokens=10, seed=1))
    ps, cs = [p for p in prompts for _ in range(2)], [c for g in res for c in g]
    with torch.no_grad():
        lp, _ = compute_logprobs(model, build_seq_batch(ps, [c.token_ids for c in cs], tok.pad_token_id), 0.7)
    for b, c in enumerate(cs):
        torch.testing.assert_close(lp[b, : len(c.logprobs)], torch.tensor(c.logprobs), atol=1e-4, rtol=0)


def test_greedy_equals_argmax_continuation(model, tok, prompts):
    res = HFEngine(model, tok, batch_size=3).generate(prompts, [1] * 4, SamplingParams(0.0, max_new_tokens=8))
    for p, (c,) in zip(prompts, res):
        seq, want, lps = list(p), [], []
        with torch.no_grad():
            for _ in range(8):  # unpadded, uncached reference
                logits = model(torch.tensor([seq])).logits[0, -1]
                nxt = int(logits.argmax())
                want.append(nxt), lps.append(float(F.log_softmax(logits, -1)[nxt])), seq.append(nxt)
                if nxt == tok.eos_token_id:
                    break
        assert c.token_ids == want
        torch.testing.assert_close(torch.tensor(c.logprobs), torch.tensor(lps), atol=1e-4, rtol=0)


def test_stop_token_ends_row_and_is_kept(model, tok, prompts):
    engine = HFEngine(model, tok)
    (g,), = engine.generate(prompts[1:2], [1], SamplingParams(0.0, max_new_tokens=8))
    stop = g.token_ids[2]
    k = g.token_ids.index(stop)  # first occurrence
    (s,), = engine.generate(prompts[1:2], [1], SamplingParams(0.0, max_new_tokens=8, stop_token_ids=(stop,)))
    assert s.token_ids == g.token_ids[: k + 1] and s.finish_reason == "stop"
    assert s.logprobs == pytest.approx(g.logprobs[: k + 1], abs=1e-6)
    assert g.finish_reason == "length" and len(g.token_ids) == 8


def test_eos_and_stop_tokens_finish_rows(model, tok, prompts):
    stops = tuple(tok.convert_tokens_to_ids(list("0123")))
    counts = [16, 0, 16, 8]
    res = HFEngine(model, tok, batch_size=16).generate(prompts, counts,
                                                       SamplingParams(1.0, max_new_tokens=16,
                                                                      stop_token_ids=stops, seed=0))
    assert [len(g) for g in res] == counts
    enders = {tok.eos_token_id, *stops}
    reasons = set()
    for c in (c for g in res for c in g):
        reasons.add(c.finish_reason)
        assert not enders & set(c.token_ids[:-1])  # nothing is generated after a stop token
        if c.finish_reason == "stop":
            assert c.token_ids[-1] in enders
        else:
            assert c.finish_reason == "length" and len(c.token_ids) == 16 and c.token_ids[-1] not in enders
        assert c.text == tok.decode(c.token_ids, skip_special_tokens=True)
    assert reasons == {"stop", "length"}


def test_seeded_output_independent_of_chunking_compaction_and_shared_prefill(model, tok, prompts):
    counts = [5, 3, 4, 2]
    stops = tuple(tok.convert_tokens_to_ids(list("01234")))  # ragged lengths, so compaction kicks in
    params = SamplingParams(1.0, top_p=0.95, max_new_tokens=12, stop_token_ids=stops, seed=11)
    ref = flat(HFEngine(model, tok, batch_size=64).generate(prompts, counts, params))
    # a group's rows share one prefill (the default) or each row prefills its own copy of the prompt
    for bs, compact, share in [(64, False, True), (3, True, True), (3, False, True), (1, True, True),
                               (64, True, False), (3, True, False)]:
        engine = HFEngine(model, tok, batch_size=bs, compact=compact, share_prefill=share)
        got = flat(engine.generate(prompts, counts, params))
        assert [(t, r) for t, _, r in got] == [(t, r) for t, _, r in ref]
        for (_, lg, _), (_, lr, _) in zip(got, ref):
            assert lg == pytest.approx(lr, abs=1e-5)
    assert len({r for _, _, r in ref}) == 2  # some rows stopped early, some ran to the length limit
    other = flat(HFEngine(model, tok, batch_size=3).generate(prompts, counts,
                                                              SamplingParams(1.0, 0.95, 12, stops, seed=12)))
    assert [t for t, _, _ in other] != [t for t, _, _ in ref]


def test_tiny_top_p_is_greedy(model, tok, prompts):
    engine = HFEngine(model, tok)
    greedy = flat(engine.generate(prompts, [2] * 4, SamplingParams(0.0, max_new_tokens=10)))
    params = SamplingParams(1.0, top_p=1e-6, max_new_tokens=10, seed=5)
    nucleus = flat(engine.generate(prompts, [2] * 4, params))
    assert [t for t, _, _ in nucleus] == [t for t, _, _ in greedy]
    for (_, a, _), (_, b, _) in zip(nucleus, greedy):  # both report logprobs at T = 1
        assert a == pytest.approx(b, abs=1e-5)


def test_compute_sample_hand_values():
    logits = torch.tensor([[math.log(0.5), math.log(0.3), math.log(0.2)]]).repeat(4, 1)  # [4, 3]
    u = torch.tensor([0.1, 0.6, 0.85, 0.999])
    tok, lp = compute_sample(logits, u, 1.0, 1.0)
    assert tok.tolist() == [0, 1, 2, 2]  # inverse CDF: cdf = [.5, .8, 1]
    torch.testing.assert_close(lp, torch.log(torch.tensor([0.5, 0.3, 0.2, 0.2])))
    # top-p 0.6 keeps {0, 1} (mass before token 1 is .5 < .6), renormalised cdf = [.625, 1]
    tok, lp = compute_sample(logits, u, 1.0, 0.6)
    assert tok.tolist() == [0, 0, 1, 1]
    torch.testing.assert_close(lp, torch.log(torch.tensor([0.5, 0.5, 0.3, 0.3])))  # before truncation
    # stratified uniforms reproduce the distribution exactly: 1000 draws -> 500 / 300 / 200
    strat = (torch.arange(1000) + 0.5) / 1000
    tok, _ = compute_sample(logits[:1].repeat(1000, 1), strat, 1.0, 1.0)
    assert torch.bincount(tok, minlength=3).tolist() == [500, 300, 200]
    tok, lp = compute_sample(logits[:2] * 2, u[:2], 0.0, 1.0)  # greedy: argmax, logprob at T = 1
    assert tok.tolist() == [0, 0]
    torch.testing.assert_close(lp, F.log_softmax(logits[:2] * 2, -1)[:, 0])


def test_engine_protocol_stats_and_train_mode(model, tok, prompts):
    engine = ENGINES.get("hf")(model, tok, batch_size=2)
    assert isinstance(engine, Engine)
    model.train()
    res = engine.generate(prompts, [1, 2, 0, 1], SamplingParams(1.0, max_new_tokens=5, seed=0))
    assert model.training  # restored
    st = engine.last_stats
    assert st.sequences == 4 and st.prompt_tokens == len(prompts[0]) + 2 * len(prompts[1]) + len(prompts[3])
    assert st.completion_tokens == sum(len(c.token_ids) for g in res for c in g) and st.seconds > 0
    engine.sync_weights(model, 7)
    assert engine.version == 7
    assert engine.generate([], [], SamplingParams(seed=0)) == []
    assert engine.generate(prompts[:1], [2], SamplingParams(max_new_tokens=0))[0][0].token_ids == []
    for bad_counts, bad_params in [([1], SamplingParams()), ([1] * 4, SamplingParams(top_p=0.0)),
                                   ([1] * 4, SamplingParams(temperature=-1.0))]:
        with pytest.raises(ValueError):
            engine.generate(prompts, bad_counts, bad_params)
    model.eval()


def test_llama_from_pretrained_generates_exact_logprobs(tok, prompts, tmp_path):
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                      bos_token_id=tok.bos_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(tmp_path)
    llama = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert isinstance(llama, LlamaForCausalLM)
    counts = [2, 1, 2, 1]
    params = SamplingParams(0.7, max_new_tokens=10, seed=2)
    res = HFEngine(llama, tok, batch_size=4).generate(prompts, counts, params)
    assert [len(g) for g in res] == counts
    assert_logprobs_match(llama, prompts, counts, res, 0.7)

"""The engine API beyond ``generate(prompts, counts, params)`` (generation/base.py), on the HF engine and the
scripted fake: continue from a prefix, abort / prune from a step callback, the callback's view, top-k /
entropy / hidden states against a teacher-forced forward, per-token weight versions, and determinism."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rollwise.generation import Decision, OutputSpec, Prefix, SamplingParams, StepControl
from rollwise.generation.hf import HFEngine
from rollwise.generation.scripted import ScriptedEngine
from rollwise.train.policy import build_seq_batch, compute_logprobs

TEXTS = ["7", "12+34=", "hello world, x", "ab"]
M = 12


@pytest.fixture(scope="module")
def prompts(tok):
    return [tok.encode(t) for t in TEXTS]


@pytest.fixture(scope="module")
def base(model, tok, prompts):
    """The uninterrupted reference: 2 samples per prompt, no eos stop so every row runs M tokens."""
    res = HFEngine(model, tok, batch_size=8).generate(prompts, [2] * 4, params())
    return [c for g in res for c in g]


def params(seed: int = 5, T: float = 1.0) -> SamplingParams:
    return SamplingParams(temperature=T, max_new_tokens=M, seed=seed)


def full_forward(model, prompt: list[int], completion: list[int]):
    """Logits [C, V] predicting each completion token and the last layer's states [C, d] at each of them."""
    with torch.no_grad():
        out = model(torch.tensor([prompt + completion]), output_hidden_states=True)
    P = len(prompt)
    return out.logits[0, P - 1 : -1].float(), out.hidden_states[-1][0, P:].float()


def flat(res):
    return [c for g in res for c in g]


def test_prefix_continuation_equals_uninterrupted(model, tok, prompts, base):
    """Cut each row at k, continue from the cut with its stored logprobs: the prefix keeps its logprobs and
    versions, the continuation redraws the same tokens (noise indexed by position) with fresh logprobs that
    equal a teacher-forced forward."""
    engine = HFEngine(model, tok, batch_size=3)
    engine.sync_weights(model, 7)
    rows = [(i, j) for i in range(4) for j in range(2)]
    cuts = [1, 4, 7, 11, 2, 5, 9, 3]
    # one request per row (count 1), rows kept in the original row order so each draws its own noise row
    assert all(base[r].finish_reason == "length" for r in range(8))
    pre = [Prefix(base[r].token_ids[:k], base[r].logprobs[:k], [3] * k) for r, k in enumerate(cuts)]
    engine_rows = HFEngine(model, tok, batch_size=3)
    ref = flat(engine_rows.generate([prompts[i] for i, _ in rows], [1] * 8, params()))
    engine.sync_weights(model, 7)
    res = flat(engine.generate([prompts[i] for i, _ in rows], [1] * 8, params(), prefixes=pre))
    for c, r, k, p in zip(res, ref, cuts, pre):
        assert c.token_ids == r.token_ids and c.finish_reason == "length" and c.prefix_len == k
        assert c.logprobs[:k] == p.logprobs  # stored, not recomputed
        assert c.versions == [3] * k + [7] * (M - k)
        torch.testing.assert_close(torch.tensor(c.logprobs[k:]), torch.tensor(r.logprobs[k:]), atol=1e-4, rtol=0)
    ps = [prompts[i] for i, _ in rows]
    with torch.no_grad():
        lp, _ = compute_logprobs(model, build_seq_batch(ps, [c.token_ids for c in res], tok.pad_token_id), 1.0)
    for b, (c, k) in enumerate(zip(res, cuts)):
        torch.testing.assert_close(lp[b, k:M], torch.tensor(c.logprobs[k:]), atol=1e-4, rtol=0)


def test_prefix_that_is_already_finished_is_not_decoded(model, tok, prompts):
    engine = HFEngine(model, tok)
    long = Prefix([5] * (M + 3), [-0.5] * (M + 3))
    ends = Prefix([5, 6, tok.eos_token_id], [-1.0, -2.0, -3.0], [1, 1, 2])
    res = engine.generate(prompts[:2], [2, 1], params(), prefixes=[long, ends], outputs=OutputSpec(2, True))
    (a, b), (c,) = res
    assert a.finish_reason == b.finish_reason == "length" and a.token_ids == [5] * M and a.versions == [-1] * M
    assert c.finish_reason == "stop" and c.token_ids == ends.token_ids and c.versions == [1, 1, 2]
    assert c.topk_ids == [[], [], []] and len(c.entropies) == 3
    assert engine.last_stats.completion_tokens == 0


def test_abort_all_returns_partials_and_unstarted_rows(model, tok, prompts, base):
    """APRIL's stop: the callback aborts everything at step 4. The running chunk returns 4-token partials equal
    to the uninterrupted rows' first tokens; rows of later chunks were never started (empty, "abort")."""
    seen = []

    def cb(view):
        seen.append(view.step)
        return Decision.ABORT if view.step == 4 else None

    engine = HFEngine(model, tok, batch_size=5)
    res = flat(engine.generate(prompts, [2] * 4, params(), control=StepControl(cb, every=2)))
    assert seen == [2, 4]
    started = [c for c in res if c.token_ids]
    assert len(started) == 5 and all(c.finish_reason == "abort" for c in res)
    for c, r in zip(res, base):
        if c.token_ids:
            assert c.token_ids == r.token_ids[:4] and c.logprobs == pytest.approx(r.logprobs[:4], abs=1e-5)


def test_prune_rows_and_determinism_with_callback_on(model, tok, prompts, base):
    """Pruning rows 1 and 6 at step 3 cuts only them; every other row is the uninterrupted one, token for
    token (the callback and the outputs do not change the random stream)."""
    views = []

    def cb(view):
        views.append(view)
        return {1: Decision.PRUNE, 6: Decision.PRUNE} if view.step == 3 else Decision.CONTINUE

    ctl = StepControl(cb, every=3, topk=2, entropy=True, hidden=True)
    res = flat(HFEngine(model, tok, batch_size=8).generate(prompts, [2] * 4, params(), control=ctl,
                                                           outputs=OutputSpec(topk=3, entropy=True, hidden_every=2)))
    for r, (c, ref) in enumerate(zip(res, base)):
        if r in (1, 6):
            assert c.finish_reason == "pruned" and c.token_ids == ref.token_ids[:3]
        else:
            assert c.finish_reason == "length" and c.token_ids == ref.token_ids
    assert [v.step for v in views] == [3, 6, 9]
    first, second = views[0], views[1]
    assert first.rows == list(range(8)) and first.groups == [0, 0, 1, 1, 2, 2, 3, 3] and first.total_rows == 8
    assert first.tokens == [ref.token_ids[:3] for ref in base]
    assert second.rows == [0, 2, 3, 4, 5, 7] and second.finished == {1: "pruned", 6: "pruned"}
    assert first.topk_ids.shape == (8, 2) and first.entropy.shape == (8,) and first.hidden.shape == (8, 32)


def test_view_values_equal_a_teacher_forced_forward(model, tok, prompts, base):
    views = []
    ctl = StepControl(lambda v: views.append(v), every=5, topk=2, entropy=True, hidden=True)
    HFEngine(model, tok).generate(prompts, [2] * 4, params(), control=ctl)
    (view,) = [v for v in views if v.step == 5]
    for j, r in enumerate(view.rows):
        logits, hidden = full_forward(model, prompts[r // 2], base[r].token_ids)
        logp = F.log_softmax(logits[4], -1)  # the distribution of the 5th token
        torch.testing.assert_close(view.topk_logprobs[j], logp.topk(2).values, atol=1e-4, rtol=0)
        assert view.topk_ids[j].tolist() == logp.topk(2).indices.tolist()
        torch.testing.assert_close(view.entropy[j], -(logp.exp() * logp).sum(), atol=1e-4, rtol=0)
        torch.testing.assert_close(view.hidden[j].float(), hidden[3], atol=1e-4, rtol=0)  # state at token 4


@pytest.mark.parametrize("T", [1.0, 0.7])
def test_topk_entropy_hidden_equal_teacher_forced(model, tok, prompts, T):
    engine = HFEngine(model, tok, batch_size=3)
    plain = flat(engine.generate(prompts, [2] * 4, params(T=T)))
    k = 3
    pre = [None, Prefix(plain[2].token_ids[:4], plain[2].logprobs[:4]), None, None]
    counts = [2, 1, 1, 2]
    res = engine.generate(prompts, counts, params(T=T), prefixes=pre, outputs=OutputSpec(k, True, hidden_every=3))
    assert [c.token_ids for c in res[0]] == [c.token_ids for c in plain[:2]]  # outputs on: same tokens
    for i, g in enumerate(res):
        for c in g:
            logits, hidden = full_forward(model, prompts[i], c.token_ids)
            logp = F.log_softmax(logits / T, -1)  # [C, V]
            n0 = c.prefix_len
            assert len(c.topk_ids) == len(c.entropies) == len(c.token_ids)
            assert all(x == [] for x in c.topk_ids[:n0])
            assert all(e != e for e in c.entropies[:n0])  # nan placeholders for the forced tokens
            top = logp[n0:].topk(k)
            torch.testing.assert_close(torch.tensor(c.topk_logprobs[n0:]), top.values, atol=1e-4, rtol=0)
            assert c.topk_ids[n0:] == top.indices.tolist()
            ent = -(logp.exp() * logp).sum(-1)[n0:]
            torch.testing.assert_close(torch.tensor(c.entropies[n0:]), ent, atol=1e-4, rtol=0)
            assert sorted(c.hidden) == list(range(2, len(c.token_ids) - 1, 3))  # prefix positions included
            for t, h in c.hidden.items():
                assert h.shape == (32,)
                torch.testing.assert_close(h, hidden[t], atol=1e-4, rtol=0)


def test_versions_follow_sync_weights(model, tok, prompts):
    engine = HFEngine(model, tok)
    (c,), = engine.generate(prompts[:1], [1], params())
    assert c.versions == [0] * len(c.token_ids)
    engine.sync_weights(model, 4)
    (d,), = engine.generate(prompts[:1], [1], params(), prefixes=[Prefix(c.token_ids[:2], c.logprobs[:2], [0, 0])])
    assert d.versions == [0, 0] + [4] * (len(d.token_ids) - 2)


# ---- the scripted engine mirrors the API -------------------------------------------------------------------


def script(prompt, j, call):
    n = 3 + 2 * j  # rows of different lengths
    return [10 + t for t in range(n)], [-0.1 * (t + 1) for t in range(n)], "stop"


def test_scripted_prefix_versions_and_outputs():
    engine = ScriptedEngine(script)
    engine.sync_weights(None, 2)
    pre = Prefix([10, 11], [-9.0, -9.0], [1, 1])
    (a, b), = engine.generate([[1]], [2], SamplingParams(max_new_tokens=6), prefixes=[pre],
                              outputs=OutputSpec(topk=2, entropy=True, hidden_every=2))
    assert a.token_ids == [10, 11, 12] and a.logprobs == [-9.0, -9.0, pytest.approx(-0.3)]
    assert a.versions == [1, 1, 2] and a.prefix_len == 2 and a.finish_reason == "stop"
    assert b.token_ids == [10, 11, 12, 13, 14] and b.versions == [1, 1, 2, 2, 2]
    assert b.topk_ids == [[], [], [12, -1], [13, -1], [14, -1]] and b.entropies[2:] == [0.0] * 3
    assert sorted(b.hidden) == [1, 3] and b.hidden[3].tolist() == [3.0] * 4
    (c,), = engine.generate([[1]], [1], SamplingParams(max_new_tokens=2), prefixes=[pre])
    assert c.finish_reason == "length" and c.token_ids == [10, 11]


def test_scripted_callback_prune_and_abort():
    engine = ScriptedEngine(script)
    views = []

    def cb(view):
        views.append(view)
        return {1: Decision.PRUNE} if view.step == 2 else Decision.ABORT

    res = engine.generate([[1], [2]], [2, 2], SamplingParams(max_new_tokens=8),
                          control=StepControl(cb, every=2, topk=2, hidden=True))
    (a, b), (c, d) = res
    assert [v.step for v in views] == [2, 4]
    assert views[0].rows == [0, 1, 2, 3] and views[0].groups == [0, 0, 1, 1]
    assert views[0].tokens[1] == [10, 11] and views[0].topk_ids.shape == (4, 2) and views[0].hidden.shape == (4, 4)
    assert views[1].rows == [3] and views[1].finished == {0: "stop", 1: "pruned", 2: "stop"}
    assert a.finish_reason == "stop" and a.token_ids == [10, 11, 12]
    assert b.finish_reason == "pruned" and b.token_ids == [10, 11] and b.logprobs == pytest.approx([-0.1, -0.2])
    assert d.finish_reason == "abort" and d.token_ids == [10, 11, 12, 13] and d.versions == [0] * 4


def test_vllm_refuses_what_offline_generate_cannot_do():
    """Checked before vLLM is touched, so it runs without vllm installed."""
    from rollwise.generation.vllm import VLLMEngine

    engine = object.__new__(VLLMEngine)  # no LLM built: the refusal comes first
    p = SamplingParams(max_new_tokens=4)
    with pytest.raises(NotImplementedError, match="step callback"):
        engine.generate([[1]], [1], p, control=StepControl(lambda v: None))
    with pytest.raises(NotImplementedError, match="entropies or hidden"):
        engine.generate([[1]], [1], p, outputs=OutputSpec(entropy=True))

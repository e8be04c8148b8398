"""Sol-RL for LLMs (arXiv:2604.06916, adapted): per-row noise, the int8 explore copy, the best/worst subset of
the cheap pool, and full-precision regeneration with the same noise, on the HF engine and a tiny model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rollwise.generation import STRATEGIES, SamplingParams
from rollwise.generation.hf import HFEngine
from rollwise.generation.solrl import SolrlStrategy, derive_row_seeds, quantize_int8
from rollwise.generation.strategy import CountingEngine
from rollwise.sampling.subsets import compute_contrastive_keep
from rollwise.train.model import build_char_tokenizer, build_tiny_model

TOK = build_char_tokenizer()


def model():
    return build_tiny_model(TOK, layers=2, hidden=32, heads=2, kv_heads=1, intermediate=64, seed=0)


def test_row_seeds_make_a_rows_noise_independent_of_its_place():
    eng = HFEngine(model(), TOK, batch_size=8)
    p = [TOK.encode("12+34="), TOK.encode("7+8=")]
    params = SamplingParams(temperature=1.0, max_new_tokens=8, seed=5)
    full = eng.generate(p, [3, 2], SamplingParams(1.0, 1.0, 8, (), 5, row_seeds=(11, 12, 13, 14, 15)))
    sub = eng.generate([p[1], p[0]], [1, 1], SamplingParams(1.0, 1.0, 8, (), 99, row_seeds=(15, 12)))
    assert sub[0][0].token_ids == full[1][1].token_ids and sub[1][0].token_ids == full[0][1].token_ids
    assert eng.generate(p, [3, 2], params)[0][1].token_ids == eng.generate(p, [3, 2], params)[0][1].token_ids
    with pytest.raises(ValueError, match="row_seeds"):
        eng.generate(p, [3, 2], SamplingParams(row_seeds=(1, 2)))


def test_int8_copy_quantises_every_linear_but_the_head_and_leaves_the_policy_alone():
    m = model()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    q = quantize_int8(m)
    qlinear = torch.ao.nn.quantized.dynamic.Linear
    kinds = {type(mod) for name, mod in q.named_modules() if name.endswith("proj")}
    assert kinds == {qlinear} and type(q.get_output_embeddings()) is torch.nn.Linear
    assert type(quantize_int8(m, include_head=True).get_output_embeddings()) is qlinear
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    ids = torch.tensor([TOK.encode("12+34=")])
    with torch.no_grad():
        a, b = m(ids).logits, q(ids).logits
    assert not torch.equal(a, b) and torch.allclose(a, b, atol=0.2)  # close, not equal: a cheap copy


def test_seeds_are_distinct_and_reproducible():
    s = derive_row_seeds(3, [4, 2])
    assert [len(r) for r in s] == [4, 2] and len({x for r in s for x in r}) == 6 and s == derive_row_seeds(3, [4, 2])


def _run(mode: str, counts=(4, 4), pool_factor=4):
    eng = CountingEngine(HFEngine(model(), TOK, batch_size=64))
    s = SolrlStrategy(pool_factor=pool_factor, mode=mode)
    scored: list[tuple[int, list[int]]] = []

    def scorer(rows, cs):  # reward 1 when the completion's first token id is even: known per candidate
        scored.extend((r, c.token_ids) for r, c in zip(rows, cs))
        return [float(c.token_ids[0] % 2 == 0) for c in cs]

    s.bind_scorer(scorer)
    prompts = [TOK.encode("12+34="), TOK.encode("7+8=")]
    got = s.generate(eng, [0, 1], prompts, list(counts), SamplingParams(1.0, 1.0, 6, (), 7), step=0)
    return s, eng, scored, got


def test_pool_is_explored_cheaply_and_the_contrastive_subset_is_returned():
    s, eng, scored, got = _run("rescore_is")
    assert len(scored) == 32 and [len(cs) for cs in got.completions] == [4, 4]
    rng = np.random.default_rng(7)  # the strategy's selection, redone by hand from the scored pool
    for i, cs in enumerate(got.completions):
        pool = [t for r, t in scored if r == i]
        keep = compute_contrastive_keep(np.array([float(t[0] % 2 == 0) for t in pool]), 4, rng)
        assert [c.token_ids for c in cs] == [pool[k] for k in keep]  # the int8 drafts themselves
        assert all(c.meta["draft_agrees"] for c in cs)
    m = s.metrics()
    assert m["solrl_pool"] == 32 and m["solrl_requantized"] == 1
    assert eng.decoded == m["solrl_draft_tokens"] == sum(len(t) for _, t in scored)  # drafts charged
    assert got.discarded_rollouts == 24


def test_same_noise_regeneration_at_full_precision():
    s, eng, scored, got = _run("resample_same_noise")
    m = s.metrics()
    assert eng.calls == 1 and got.discarded_rollouts == 32  # one full-precision call; every draft dropped
    assert eng.decoded == m["solrl_draft_tokens"] + sum(len(c.token_ids) for cs in got.completions for c in cs)
    assert m["solrl_regen_agreement"] > 0.5  # the same uniforms: most rows repeat their draft
    assert all(c.meta["draft_reward"] in (0.0, 1.0) for cs in got.completions for c in cs)
    s.observe([0] * 8, [c for cs in got.completions for c in cs],
              [float(c.token_ids[0] % 2 == 0) for cs in got.completions for c in cs])
    assert 0.0 <= s.metrics()["solrl_reward_flip_rate"] <= 1.0


def test_requantises_only_when_the_weights_moved():
    eng = HFEngine(model(), TOK, batch_size=64)
    s = SolrlStrategy()
    first = s.explorer(eng)
    assert s.explorer(eng) is first
    eng.sync_weights(eng.model, 1)
    assert s.explorer(eng) is not first and s.explorer(eng).version == 1
    assert STRATEGIES.get("solrl") is SolrlStrategy
    with pytest.raises(ValueError, match="collector"):
        SolrlStrategy().generate(eng, [0], [TOK.encode("1")], [2], SamplingParams(seed=0), step=0)


def test_refused_at_load_without_labels_or_hf(tmp_path):
    from pathlib import Path

    from rollwise.config import ConfigError, load_config

    smoke = Path(__file__).resolve().parents[2] / "configs" / "smoke.toml"
    base = [f"--run.out_dir={tmp_path}", "--recipe=solrl"]
    with pytest.raises(ConfigError, match="task.labels"):
        load_config(smoke, [*base, "--task.labels=none"])
    with pytest.raises(ConfigError, match="hf"):
        load_config(smoke, [*base, "--generation.engine=scripted"])

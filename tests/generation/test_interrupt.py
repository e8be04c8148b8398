"""Interruptible generation: a weight update mid-call aborts the live rows, which resume from their partial
completions; under unchanged weights the result equals an uninterrupted call, and the tokens after the update
carry the new version."""

import torch

from rollwise.generation.base import Decision, SamplingParams, StepControl
from rollwise.generation.hf import HFEngine
from rollwise.generation.interrupt import InterruptibleEngine

TEXTS = ["7", "12+34=", "hello world, x", "ab"]
M = 12


def _engine(model, tok, fire_at: int):
    """An interruptible HF engine whose weights 'arrive' after ``fire_at`` pending checks; applying them
    changes nothing but the version (2)."""
    base = HFEngine(model, tok, batch_size=8)
    base.sync_weights(model, 1)
    calls = {"n": 0, "pending": False}

    def pending():
        calls["n"] += 1
        if calls["n"] == fire_at:
            calls["pending"] = True
        return calls["pending"]

    def apply():
        calls["pending"] = False
        base.sync_weights(model, 2)

    return InterruptibleEngine(base, pending, apply)


def test_resumed_generation_equals_uninterrupted_under_same_weights(model, tok):
    prompts = [tok.encode(t) for t in TEXTS]
    params = SamplingParams(temperature=1.0, max_new_tokens=M, seed=3)
    ref = HFEngine(model, tok, batch_size=8)
    ref.sync_weights(model, 1)
    base = [c for g in ref.generate(prompts, [2] * 4, params) for c in g]
    eng = _engine(model, tok, fire_at=5)  # the wrapper's own check, then one after each step: fires after step 4
    got = [c for g in eng.generate(prompts, [2] * 4, params) for c in g]
    assert eng.interrupts == 1 and eng.resumed_rows == sum(len(c.token_ids) > 4 for c in base)
    for b, c in zip(base, got):
        assert c.token_ids == b.token_ids and c.finish_reason == b.finish_reason and c.prefix_len == 0
        torch.testing.assert_close(torch.tensor(c.logprobs), torch.tensor(b.logprobs), atol=1e-4, rtol=0)
        cut = min(4, len(b.token_ids))  # tokens sampled under version 1 before the update landed
        assert c.versions == [1] * cut + [2] * (len(b.token_ids) - cut)


def test_no_update_means_no_interrupt_and_a_strategy_control_is_never_interrupted(model, tok):
    prompts = [tok.encode(t) for t in TEXTS]
    params = SamplingParams(temperature=1.0, max_new_tokens=M, seed=3)
    eng = _engine(model, tok, fire_at=10**9)
    eng.generate(prompts, [1] * 4, params)
    assert eng.interrupts == 0
    eng = _engine(model, tok, fire_at=2)  # the weights arrive after the first call started
    seen = []
    ctl = StepControl(lambda v: seen.append(v.step) or Decision.CONTINUE)
    out = eng.generate(prompts, [1] * 4, params, control=ctl)
    assert eng.interrupts == 0 and all(c.finish_reason != "abort" for g in out for c in g)
    assert eng.version == 1 and seen  # the strategy steered every step; the update waits for the next call
    eng.generate(prompts, [1] * 4, params, control=ctl)
    assert eng.version == 2

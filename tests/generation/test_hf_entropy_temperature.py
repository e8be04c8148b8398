"""HAPO's adaptive sampling temperature in the HF engine: the per-token temperature on constructed logits,
behaviour logprobs at the temperature actually used, tau = 0 (or no statistics yet) == the plain engine, and
vLLM's refusal."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from rollwise.algos.hapo import EntropyNorm, apply_entropy_norm
from rollwise.generation import SamplingParams
from rollwise.generation.hf import HFEngine, compute_entropy_temperature, compute_sample

UNIT = EntropyNorm(pivot=0.0, std=1.0, scale_pos=1.0, scale_neg=1.0)  # h = clamp(log H, -1, 1)


def test_per_token_temperature_on_constructed_logits():
    inf = float("inf")
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, -inf, -inf], [5.0, 0.0, 0.0, 0.0]])
    # uniform over 4 (H = ln 4 at any T), uniform over 2 (H = ln 2), and a peaked row
    T, tau = 0.7, 0.05
    got = compute_entropy_temperature(logits, T, tau, UNIT)
    p = F.softmax(logits[2] / T, -1)
    h_peaked = max(math.log(float(-(p * p.log()).sum())), -1.0)
    expected = [T * (1 + tau * math.log(math.log(4))), T * (1 + tau * math.log(math.log(2))),
                T * (1 + tau * h_peaked)]
    torch.testing.assert_close(got, torch.tensor(expected))
    assert got[0] > T > got[1]  # high entropy samples hotter, low entropy colder
    hot = compute_entropy_temperature(logits[:1], T, tau, EntropyNorm(0.0, 1.0, 10.0, 1.0))
    torch.testing.assert_close(hot, torch.tensor([T * (1 + tau)]))  # h clamped to 1


def test_compute_sample_with_per_row_temperature_reports_that_temperature():
    logits = torch.tensor([[1.0, 0.5, -1.0], [0.2, 0.1, 0.0]])
    temps = torch.tensor([0.5, 2.0])
    tok, lp = compute_sample(logits, torch.tensor([0.3, 0.9]), temps, top_p=1.0)
    expected = F.log_softmax(logits / temps[:, None], -1).gather(-1, tok[:, None]).squeeze(-1)
    torch.testing.assert_close(lp, expected)


def _generate(engine: HFEngine, prompts: list[list[int]]) -> list:
    res = engine.generate(prompts, [3] * len(prompts), SamplingParams(temperature=1.0, max_new_tokens=6, seed=7))
    return [(c.token_ids, c.logprobs) for cs in res for c in cs]


def test_tau_zero_or_no_statistics_is_the_plain_engine(model, tok):
    prompts = [tok.encode("12+34="), tok.encode("7")]
    plain = _generate(HFEngine(model, tok), prompts)
    off = HFEngine(model, tok, entropy_temperature_tau=0.0)
    off.observe_update({"entropy_norm": UNIT})  # ignored when tau = 0
    assert not off.samples_off_policy and _generate(off, prompts) == plain
    waiting = HFEngine(model, tok, entropy_temperature_tau=0.05)  # no training batch yet: base temperature
    assert not waiting.samples_off_policy and _generate(waiting, prompts) == plain


def test_behaviour_logprobs_are_those_of_the_adaptive_temperature(model, tok):
    prompts = [tok.encode("12+34="), tok.encode("hello")]
    engine = HFEngine(model, tok, entropy_temperature_tau=0.5)
    engine.observe_update({"entropy_norm": EntropyNorm(pivot=0.5, std=0.5, scale_pos=1.0, scale_neg=1.0)})
    assert engine.samples_off_policy
    res = engine.generate(prompts, [2, 2], SamplingParams(temperature=0.8, max_new_tokens=5, seed=3))
    model.eval()
    moved = 0.0
    for p, cs in zip(prompts, res):
        for c in cs:
            with torch.no_grad():
                logits = model(torch.tensor([p + c.token_ids])).logits[0, len(p) - 1 : -1].float()  # [C, V]
            base = F.log_softmax(logits / 0.8, -1)
            h = apply_entropy_norm(-(base.exp() * base).sum(-1), engine.entropy_norm)
            temp = 0.8 * (1 + 0.5 * h)  # [C]
            ids = torch.tensor(c.token_ids)[:, None]
            expected = F.log_softmax(logits / temp[:, None], -1).gather(-1, ids).squeeze(-1)
            torch.testing.assert_close(torch.tensor(c.logprobs), expected, atol=1e-4, rtol=0)
            moved += float((expected - base.gather(-1, ids).squeeze(-1)).abs().sum())
    assert moved > 1e-3  # the temperature really changed what was reported
    assert engine.last_stats.extra["temperature_mean"] != pytest.approx(0.8)


def test_vllm_refuses_the_knob():
    from rollwise.generation.vllm import VLLMEngine

    with pytest.raises(ValueError, match="vLLM's sampler"):
        VLLMEngine(None, None, entropy_temperature_tau=0.05)

"""PROPS (arXiv:2311.08290): the behaviour objective and its early stop by hand, the round split, and the
strategy on a tiny model: phi moves away from what was sampled, theta does not move, and the returned
completions carry theta's logprobs (the target update sees an on-policy group)."""

import math

import pytest
import torch

from rollwise.algos.props import compute_approx_kl, compute_first_token_tv, compute_props_loss
from rollwise.generation.base import SamplingParams
from rollwise.generation.hf import HFEngine
from rollwise.generation.props import PropsStrategy, split_rounds
from rollwise.generation.strategy import CountingEngine


def test_split_rounds():
    assert split_rounds(8, 4) == [2, 2, 2, 2]
    assert split_rounds(8, 3) == [3, 3, 2]
    assert split_rounds(2, 4) == [1, 1, 0, 0]


def test_props_loss_by_hand():
    # r = [0.5, 1.0, 1.5] with eps 0.3: max(r, clip(r, 0.7, 1.3)) = [0.7, 1.0, 1.5], mean 3.2 / 3
    logp_theta = torch.zeros(1, 3)
    logp_phi = torch.log(torch.tensor([[0.5, 1.0, 1.5]])).requires_grad_()
    mask = torch.ones(1, 3)
    loss = compute_props_loss(logp_phi, logp_theta, mask, clip=0.3)
    assert loss.item() == pytest.approx(3.2 / 3)
    loss.backward()
    # d/dlogp of r/3 is r/3 where the raw ratio is chosen; 0 below 1 - eps (the clipped branch is a constant)
    assert logp_phi.grad.tolist()[0] == pytest.approx([0.0, 1 / 3, 0.5])


def test_props_loss_masks_padding_and_adds_kl():
    logp_phi, logp_theta = torch.tensor([[math.log(1.2), 5.0]]), torch.zeros(1, 2)
    mask = torch.tensor([[1.0, 0.0]])
    kl = torch.tensor([[0.25, 9.0]])
    assert compute_props_loss(logp_phi, logp_theta, mask, 0.3).item() == pytest.approx(1.2)
    assert compute_props_loss(logp_phi, logp_theta, mask, 0.3, kl, lam=0.1).item() == pytest.approx(1.2 + 0.025)


def test_approx_kl_by_hand():
    log_r = torch.tensor([[math.log(2.0), math.log(0.5)]])
    # (2 - 1 - ln 2 + 0.5 - 1 + ln 2) / 2 = 0.25
    assert compute_approx_kl(log_r, torch.zeros(1, 2), torch.ones(1, 2)).item() == pytest.approx(0.25)


def test_first_token_tv_by_hand():
    # frequencies (0.75, 0.25, 0) against pi (0.5, 0.3, 0.2): 0.5 (0.25 + 0.05 + 0.2) = 0.25
    assert compute_first_token_tv([0, 0, 1, 0], torch.tensor([0.5, 0.3, 0.2])) == pytest.approx(0.25)


def test_rounds_push_phi_off_what_was_sampled_and_return_theta_logprobs(tiny_model, tokenizer):
    tiny_model.eval()
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    engine = CountingEngine(HFEngine(tiny_model, tokenizer, batch_size=32))
    s = PropsStrategy(rounds=2, epochs=3, lr=1e-2, target_kl=10.0)
    prompt = tokenizer("12+3=", add_special_tokens=False)["input_ids"]
    params = SamplingParams(temperature=1.0, top_p=1.0, max_new_tokens=3, stop_token_ids=(tokenizer.eos_token_id,),
                            seed=3)
    got = s.generate(engine, [0], [prompt], [8], params, step=0)
    cs = got.completions[0]
    assert len(cs) == 8 and [c.meta["props_round"] for c in cs] == [0] * 4 + [1] * 4
    for k, v in tiny_model.state_dict().items():  # theta never moves
        assert torch.equal(v, before[k]), k
    m = s.metrics()
    assert m["props_updates"] == 3 and m["props_early_stops"] == 0 and m["props_approx_kl"] > 0
    # phi lowered the probability of round 0's first tokens relative to theta
    first = [c.token_ids[0] for c in cs[:4]]
    with torch.no_grad():
        ids = torch.tensor([prompt])
        p_theta = torch.softmax(tiny_model(input_ids=ids).logits[0, -1], -1)
        p_phi = torch.softmax(s._phi(input_ids=ids).logits[0, -1], -1)
    assert sum(p_phi[t] for t in set(first)) < sum(p_theta[t] for t in set(first))
    # behaviour logprobs are theta's (teacher-forced); phi's are kept aside for round 1
    for c in cs:
        with torch.no_grad():
            full = torch.tensor([prompt + c.token_ids])
            lp = torch.log_softmax(tiny_model(input_ids=full).logits[0, len(prompt) - 1 : -1], -1)
            want = lp.gather(-1, torch.tensor(c.token_ids).unsqueeze(-1)).squeeze(-1)
        assert c.logprobs == pytest.approx(want.tolist(), abs=1e-5)
    assert all("props_phi_logprobs" in c.meta for c in cs)
    assert engine.decoded == sum(len(c.token_ids) for c in cs)  # phi's decoding is charged too


def test_early_stop_before_a_step_past_the_target(tiny_model, tokenizer):
    engine = HFEngine(tiny_model, tokenizer, batch_size=32)
    s = PropsStrategy(rounds=2, epochs=50, lr=0.5, target_kl=1e-3)
    prompt = tokenizer("7+8=", add_special_tokens=False)["input_ids"]
    params = SamplingParams(1.0, 1.0, 3, (tokenizer.eos_token_id,), 0)
    s.generate(engine, [0], [prompt], [4], params, step=0)
    m = s.metrics()
    assert m["props_early_stops"] == 1 and 1 <= m["props_updates"] < 50


def test_one_round_is_plain_sampling(tiny_model, tokenizer):
    engine = HFEngine(tiny_model, tokenizer, batch_size=32)
    params = SamplingParams(1.0, 1.0, 3, (tokenizer.eos_token_id,), 5)
    prompt = tokenizer("1+1=", add_special_tokens=False)["input_ids"]
    got = PropsStrategy(rounds=1).generate(engine, [0], [prompt], [4], params, step=0).completions[0]
    plain = engine.generate([prompt], [4], params)[0]
    assert [c.token_ids for c in got] == [c.token_ids for c in plain]

"""HiLL (the ``hill`` transform): the hinter reward by hand (degenerate groups, the reliance weight), the
leakage gate, the softmax hinter's update direction, resume, the arithmetic hint generators, the teacher-forced
reliance scorer, and the preset through the CLI."""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from rollwise.sampling import Budget, GroupObs, PromptContext, PromptStats, RescueSources, SampleContext
from rollwise.sampling.hill import HillHints, HintDraft, compute_hint_reward, compute_hinter_step, leaks, softmax
from rollwise.train.policy import build_seq_batch, compute_logprobs
from rollwise.train.rescue import HINT_NAMES, arith_hints
from rollwise.train.scoring import compute_mean_logprobs

ROOT = Path(__file__).resolve().parents[2]
NAMES = ("a", "b", "c")
HINTS = {"a": "leaks 42", "b": "", "c": "fine"}  # a: contains the answer; b: cannot be written; c: valid


def _ctx(step: int = 0, seed: int = 0) -> SampleContext:
    return SampleContext(step, 10, 4, 2, PromptStats(4), np.random.default_rng(seed), Budget(100),
                         levels=np.array([0, 0, 1, 1]))


def _pool(p: int, rewards: list[float]) -> GroupObs:
    r = np.asarray(rewards, dtype=np.float64)
    return GroupObs(p, r, np.ones(len(r), dtype=np.int64), payload=[SimpleNamespace(i=i) for i in range(len(r))])


def _hill(reliance=None, **knobs) -> HillHints:
    t = HillHints(**({"plain_share": 0.0} | knobs))
    t.bind(RescueSources(references=["42"] * 4, hint_names=NAMES, hints=lambda p: HINTS, reliance=reliance))
    t.observe(_ctx(), [_pool(p, [0, 0, 0, 0]) for p in range(4)], [])  # every prompt stuck
    return t


def test_hint_reward_by_hand():
    assert compute_hint_reward(0.5, 4, None) == pytest.approx(1 - 1 / 16 - 1 / 16)
    assert compute_hint_reward(0.25, 4, -0.3, 0.3) == pytest.approx((1 - 0.25**4 - 0.75**4) * math.exp(-1))
    assert compute_hint_reward(0.25, 4, 0.2) == pytest.approx(1 - 0.25**4 - 0.75**4)  # Delta > 0: no penalty
    assert compute_hint_reward(0.0, 8, None) == 0.0 and compute_hint_reward(1.0, 8, -1.0) == 0.0  # degenerate


def test_leaking_and_unwritable_hints_are_rejected_and_penalised():
    t = _hill()
    out = t.contexts(np.array([0]), {}, _ctx(1))
    assert out == [PromptContext(after="\nfine", tag="hint:c")]  # the only hint that passes the gates
    # the draws before it were rejected, each a hinter sample at -0.2
    rejected = [(lv, g, r) for lv, g, r in t._hinter.samples]
    assert all(r == -0.2 and NAMES[g] in ("a", "b") for _, g, r in rejected)
    t.observe(_ctx(1), [], [])
    m = t.metrics()
    assert m["leak_rejections"] + m["unwritable"] == len(rejected) and m["hinted"] == 1
    before = HillHints(position="before", plain_share=0.0, tries=3)
    before.bind(RescueSources(references=["42"] * 4, hint_names=NAMES, hints=lambda p: {"a": "x", "b": "y",
                                                                                       "c": "z"}))
    before.observe(_ctx(), [_pool(1, [0, 0, 0, 0])], [])
    assert before.contexts(np.array([1]), {}, _ctx(1))[0].before in ("x\n", "y\n", "z\n")


def test_all_hints_leaking_leaves_the_prompt_plain():
    t = HillHints(plain_share=0.0)
    t.bind(RescueSources(references=["42"] * 4, hint_names=NAMES, hints=lambda p: dict.fromkeys(NAMES, "42!")))
    t.observe(_ctx(), [_pool(0, [0, 0, 0, 0])], [])
    assert t.contexts(np.array([0]), {}, _ctx(1)) is None
    t.observe(_ctx(1), [], [])
    assert t.metrics()["leak_rejections"] == 3 and t.probs(0)[0] == pytest.approx(1 / 3)  # equal penalties


def test_reliance_weights_the_reward_over_correct_rollouts_only():
    calls = []

    def reliance(prompt, rollouts):
        calls.append((prompt, [r.i for r in rollouts]))
        return np.array([-0.2, -0.4])

    t = _hill(reliance)
    t.contexts(np.array([0, 1]), {}, _ctx(1))
    pools = [_pool(0, [0, 1, 0, 1]), _pool(1, [0, 0, 0, 0])]
    t.on_generated(_ctx(1), pools)
    assert calls == [(0, [1, 3])]  # scored on the correct hinted rollouts; an all-wrong pool is not scored
    t.observe(_ctx(1), pools, [])
    m = t.metrics()
    want = (1 - 0.5**4 - 0.5**4) * math.exp(-0.3 / 0.3)
    assert m["hinter_reward_mean"] == pytest.approx(want / 2)  # prompt 1's all-wrong pool scores 0
    assert m["hint_success_rate"] == 0.5 and m["reliance_mean"] == pytest.approx(-0.3)


def test_hinter_update_direction():
    logits = np.zeros(3)
    up = compute_hinter_step(logits, np.array([0]), np.array([1.0]), 0.0, 1.0)
    assert softmax(up)[0] > 1 / 3 and up[1] == up[2] < 0
    down = compute_hinter_step(logits, np.array([0, 1]), np.array([-0.2, 0.8]), 0.3, 1.0)
    assert softmax(down)[0] < 1 / 3 < softmax(down)[1]
    # through the transform: the rejected generators lose probability at that level, the other level is untouched
    t = _hill()
    t.contexts(np.array([0]), {}, _ctx(1))
    t.on_generated(_ctx(1), [_pool(0, [0, 1, 0, 0])])
    t.observe(_ctx(1), [_pool(0, [0, 1, 0, 0])], [])
    assert t.probs(0)[NAMES.index("c")] > 1 / 3 and np.allclose(t.probs(1), 1 / 3)
    learnt = t.probs(0)
    t.observe(_ctx(2), [], [])  # a step with nothing generated learns nothing
    assert np.array_equal(t.probs(0), learnt)


def test_restored_hinter_makes_the_same_choices():
    t = _hill()
    for step in (1, 2):
        t.contexts(np.arange(4), {}, _ctx(step))
        pools = [_pool(p, [0, 1, 0, 0]) for p in range(4)]
        t.on_generated(_ctx(step), pools)
        t.observe(_ctx(step), pools, [])
    again = HillHints(plain_share=0.0)
    again.bind(t.sources)
    again.load_state_dict(pickle.loads(pickle.dumps(t.state_dict())))
    for seed in range(4):
        assert again.contexts(np.arange(4), {}, _ctx(3, seed)) == t.contexts(np.arange(4), {}, _ctx(3, seed))
    assert np.array_equal(again.probs(1), t.probs(1))


def test_arithmetic_hints_never_write_the_answer():
    h = arith_hints("57+68=")
    assert tuple(h) == HINT_NAMES
    assert h["carries"] == "carries 11" and h["digits"] == "3 digits" and h["last_digit"] == "ends in 5"
    assert h["units"] == "units 7+8=15" and h["estimate"] == "about 60+70=130"
    assert arith_hints("47*36=")["units"] == "units 47*6=282"  # a partial product of 1692
    for text, answer in (("57+68=", "125"), ("47*36=", "1692"), ("12+34+56=", "102"), ("38-52=", "-14"),
                         ("4567+8901=", "13468")):
        assert not any(answer in v for v in arith_hints(text).values())
    assert "282" in arith_hints("47*6=")["units"]  # mul1: the sub-problem is the problem (the gate rejects it)
    assert arith_hints("not arithmetic") == {}


def test_reliance_scorer_matches_a_direct_forward(tiny_model):
    prompts_a, prompts_b, comps = [[3, 4, 5], [3, 4, 5]], [[3, 4, 5], [6, 3, 4, 5, 7]], [[8, 9], [10]]
    a, b = compute_mean_logprobs(tiny_model, prompts_a, prompts_b, comps, pad_id=0)
    assert a[0] == pytest.approx(b[0], abs=1e-5)  # the same prompt: Delta = 0
    with torch.no_grad():
        lp, _ = compute_logprobs(tiny_model.eval(), build_seq_batch([prompts_b[1]], [comps[1]], 0))
    assert b[1] == pytest.approx(float(lp[0, 0]), abs=1e-5)
    assert compute_mean_logprobs(tiny_model, [], [], [], 0)[0].size == 0


def test_cli_smoke(warm_cache, tmp_path):
    from rollwise.cli import app

    with pytest.raises(SystemExit) as done:  # 12 prompts, 6 a step: each prompt comes back every other step
        app(["train", str(ROOT / "configs" / "smoke.toml"), "--sampler.type=hill", "--trainer.steps=4",
             "--task.train_size=12", "--run.threads=1", "--trainer.eval_every=0", f"--run.out_dir={tmp_path}",
             "--run.name=hill", f"--warmstart.cache_dir={warm_cache}"])
    assert not done.value.code
    rows = [json.loads(r) for r in (tmp_path / "hill" / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "sampler/budget" in r]
    assert len(rows) == 4 and any(r["sampler/transform/hinted"] > 0 for r in rows[2:])
    assert sum(rows[-1][f"sampler/transform/p_{n}"] for n in HINT_NAMES) == pytest.approx(1.0)


def test_build_sampler_lends_a_scorer_that_reads_the_trainers_rollouts(smoke_cfg):
    from rollwise.train import setup
    from rollwise.train.trainer import Trainer

    t = Trainer(smoke_cfg("--sampler.type=hill", "--run.threads=1"))
    pipe = setup.build_sampler(t.cfg, t.task, t.model, t.tok)
    got = t.collector.collect(pipe, 0, Budget(8), seed=0, version=0)
    prompt, rollouts = next(iter(got.rollouts.items()))
    hinted = PromptContext(after="\nends in 5")
    rollouts += [SimpleNamespace(prompt_ids=t.collector.prompt_ids(prompt, hinted), completion_ids=r.completion_ids)
                 for r in rollouts]
    delta = pipe.transform.sources.reliance(prompt, rollouts)
    n = len(rollouts) // 2
    assert np.allclose(delta[:n], 0.0, atol=1e-5) and np.all(np.isfinite(delta)) and np.any(delta[n:] != 0)
    t.close()


# ---------------------------------------------------------------------- the LM hinter (hinter = "lm")
class FakeHinter:
    """A scripted ``HinterModel``: fixed drafts per call, records what it was asked and what it learnt."""

    def __init__(self, drafts):
        self.drafts, self.queries, self.learnt, self.loaded = drafts, [], [], None

    def write(self, queries, m, seed):
        self.queries.append((list(queries), m))
        return [[HintDraft(text, cut, (p, i)) for i, (text, cut) in enumerate(self.drafts[:m])] for p, _ in queries]

    def learn(self, payloads, advantages):
        self.learnt.append((list(payloads), np.asarray(advantages)))
        return {"loss": 0.5}

    def state_dict(self):
        return {"learnt": len(self.learnt)}

    def load_state_dict(self, state):
        self.loaded = state


def _lm_hill(drafts, reliance=None, built=None, **knobs):
    fake = FakeHinter(drafts)

    def factory(**kn):
        (built if built is not None else []).append(kn)
        return fake

    t = HillHints(**({"plain_share": 0.0, "hinter": "lm"} | knobs))
    t.bind(RescueSources(references=["42"] * 4, reliance=reliance, hinter=factory))
    pools = [GroupObs(p, np.zeros(4), np.ones(4, dtype=np.int64), texts=[f"wrong{p}", "x", "y", "z"])
             for p in range(4)]
    t.observe(_ctx(), pools, [])  # every prompt stuck, its first failed rollout kept
    return t, fake


def test_lm_hinter_reads_each_stuck_prompts_failed_rollout_in_one_call():
    built = []
    t, fake = _lm_hill([("a hint", False)], built=built, tries=3, hinter_max_new_tokens=20)
    assert t.needs == ("hinter", "references") and not built  # nothing built before the first stuck prompt
    out = t.contexts(np.array([0, 2]), {}, _ctx(1))
    assert out == [PromptContext(after="\na hint", tag="hint:lm")] * 2
    assert fake.queries == [([(0, "wrong0"), (2, "wrong2")], 3)]  # one call, M = tries hints each
    assert built == [{"path": None, "lr": 1e-5, "max_new_tokens": 20, "temperature": 1.0}]
    assert t.contexts(np.array([0]), {}, _ctx(1)) == out[:1] and len(fake.queries) == 1  # repeated, not rewritten


def test_lm_hinter_reward_and_advantages_by_hand():
    # drafts: a leak, an overlong one, the shown hint, a valid one never shown (no reward known: not trained)
    drafts = [("it is 42.", False), ("a long one", True), ("try tens", False), ("also fine", False)]
    t, fake = _lm_hill(drafts, reliance=lambda p, rs: np.array([-0.2, -0.4]))
    assert t.contexts(np.array([1]), {}, _ctx(1)) == [PromptContext(after="\ntry tens", tag="hint:lm")]
    pools = [_pool(1, [0, 1, 0, 1])]
    t.on_generated(_ctx(1), pools)
    t.observe(_ctx(1), pools, [])
    r_h = (1 - 0.5**4 - 0.5**4) * math.exp(-0.3 / 0.3)  # p = 1/2, n = 4, Delta_bar = -0.3, T = 0.3
    rewards = np.array([-0.2, -0.2, r_h])  # the two gated drafts, then the shown one
    (payloads, adv), = fake.learnt
    assert payloads == [(1, 0), (1, 1), (1, 2)]
    assert np.allclose(adv, rewards - rewards.mean())  # baseline: the step's mean over >= 2 samples
    m = t.metrics()
    assert m["leak_rejections"] == 1 and m["overlong"] == 1 and m["hinted"] == 1 and m["hinter_drafts"] == 4
    assert m["hinter_reward_mean"] == pytest.approx(r_h) and m["hinter_updates"] == 1 and m["hinter_loss"] == 0.5
    assert (m["hinted_rollouts"], m["hinted_correct"], m["ever_hinted"]) == (4, 2, 1)


def test_lm_hinter_all_drafts_gated_leaves_the_prompt_plain_and_equal_rewards_learn_nothing():
    t, fake = _lm_hill([("42", False), ("", False)], tries=2)
    assert t.contexts(np.array([0]), {}, _ctx(1)) is None and t.given(0) is None
    t.observe(_ctx(1), [], [])
    assert fake.learnt == [] and t.metrics()["unwritable"] == 1  # two rewards of -0.2: zero advantages
    # a lone shown hint is contrasted with the running baseline (0 at first): a positive reward is learnt
    t2, fake2 = _lm_hill([("try tens", False)], tries=1)
    t2.contexts(np.array([0]), {}, _ctx(1))
    t2.on_generated(_ctx(1), [_pool(0, [0, 1, 0, 0])])
    t2.observe(_ctx(1), [_pool(0, [0, 1, 0, 0])], [])
    (_, adv), = fake2.learnt
    assert adv.tolist() == [pytest.approx(1 - 0.75**4 - 0.25**4)]


def test_lm_hinter_state_round_trips():
    t, fake = _lm_hill([("try tens", False)], tries=1)
    t.contexts(np.array([0]), {}, _ctx(1))
    t.on_generated(_ctx(1), [_pool(0, [0, 1, 0, 0])])
    t.observe(_ctx(1), [_pool(0, [0, 1, 0, 0])], [])
    state = pickle.loads(pickle.dumps(t.state_dict()))
    again, fake2 = _lm_hill([("try tens", False)], tries=1)
    again.load_state_dict(state)
    assert fake2.loaded == {"learnt": 1} and again.failed(2) == "wrong2" and again.metrics()["ever_hinted"] == 0
    assert again.state_dict()["ever_hinted"] == [0]
    assert again._hinter.baseline == t._hinter.baseline and again.metrics()["hinter_updates"] == 1


def test_leak_gate_reads_numbers_whole():
    assert leaks("12", "add them to get 12.") and leaks("12", "12 apples") and leaks("-14", "it is -14")
    assert not leaks("12", "she has 120 apples") and not leaks("12", "1.12 m") and not leaks("5", "25 cents")
    assert leaks("abc", "xabcx")

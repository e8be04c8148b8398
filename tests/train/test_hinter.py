"""HiLL's LM hinter (``train/hinter.py``): what it reads, that a rewarded step moves its weights, that its
state restores, and a short run through the CLI in which hints are written and the hinter trained."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from rollwise.generation.scripted import ScriptedEngine
from rollwise.train.hinter import HinterPolicy, build_hinter_prompt, parse_hint
from rollwise.train.model import build_tiny_model

ROOT = Path(__file__).resolve().parents[2]
QUESTIONS, REFS = ["57+68=", "12+30="], ["125", "42"]


def _hinter(tokenizer, seed=0, **kw) -> HinterPolicy:
    model = build_tiny_model(tokenizer, layers=2, hidden=32, heads=2, kv_heads=1, intermediate=64, seed=seed)
    return HinterPolicy(model, tokenizer, questions=QUESTIONS, references=REFS, **({"lr": 1e-2, "max_new_tokens": 8,
                        "temperature": 1.0} | kw))


def test_the_hinter_reads_question_failed_rollout_and_reference(tokenizer):
    h = _hinter(tokenizer)
    text = h.prompt_text(0, "115")
    assert "Problem: 57+68=" in text and "Wrong attempt: 115" in text and "Correct answer: 125" in text
    assert tokenizer.decode(h.prompt_ids(0, "115")) == text  # what the engine is given
    assert "(none kept)" in build_hinter_prompt("1+1=", "", "2")
    assert parse_hint("<analysis>x</analysis><hint> add the\ntens </hint> rest") == "add the tens"
    assert parse_hint("<hint>cut off") == "cut off" and parse_hint(" no tags ") == "no tags"


def test_hints_come_through_the_engine_api(tokenizer):
    eos = tokenizer.eos_token_id
    script = {0: "<hint>tens</hint>", 1: "add the units first"}  # sample 1 never stops: overlong

    def fn(prompt_ids, j, call):
        ids = tokenizer(script[j % 2], add_special_tokens=False)["input_ids"]
        return (ids + [eos], [-1.0] * (len(ids) + 1), "stop") if j % 2 == 0 else (ids[:12], [-1.0] * 12, "length")

    h = _hinter(tokenizer, engine=ScriptedEngine(fn, tokenizer=tokenizer), max_new_tokens=24)
    (a, b), = h.write([(1, "40")], 2, seed=0)
    assert (a.text, a.truncated) == ("tens", False) and b.truncated
    assert a.payload[0] == h.prompt_ids(1, "40") and a.payload[1][-1] == eos


def test_a_positive_reward_moves_the_hinter_and_its_state_restores(tokenizer):
    torch.manual_seed(0)
    h = _hinter(tokenizer)
    drafts = h.write([(0, "115"), (1, "40")], 2, seed=1)
    payloads = [d.payload for ds in drafts for d in ds]
    before = {k: v.clone() for k, v in h.model.state_dict().items()}
    h.model.eval()  # the learn step must leave the mode as it was
    out = h.learn(payloads[:1], np.array([1.0]))
    assert out["grad_norm"] > 0 and h.updates == 1 and not h.model.training
    moved = [k for k, v in h.model.state_dict().items() if not torch.equal(v, before[k])]
    assert moved  # the parameters changed
    state = pickle.loads(pickle.dumps(h.state_dict()))
    again = _hinter(tokenizer, seed=1)  # another init: everything comes from the state
    again.load_state_dict(state)
    assert all(torch.equal(v, h.model.state_dict()[k]) for k, v in again.model.state_dict().items())
    adv = np.array([0.5, -0.5, 0.2, -0.2])
    h.learn(payloads, adv)
    again.learn(payloads, adv)  # same weights and Adam moments: the same next step
    assert all(torch.allclose(v, h.model.state_dict()[k]) for k, v in again.model.state_dict().items())
    assert again.updates == 2


def test_lm_hinter_trains_end_to_end(warm_cache, tmp_path):
    from rollwise.cli import app

    with pytest.raises(SystemExit) as done:  # 12 prompts, 6 a step: stuck prompts come back and get hints
        app(["train", str(ROOT / "configs" / "smoke.toml"), "--sampler.type=hill", "--sampler.transform.hinter=lm",
             "--trainer.steps=3", "--task.train_size=12", "--run.threads=1", "--trainer.eval_every=0",
             f"--run.out_dir={tmp_path}", "--run.name=hill_lm", f"--warmstart.cache_dir={warm_cache}"])
    assert not done.value.code
    rows = [json.loads(r) for r in (tmp_path / "hill_lm" / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in rows if "sampler/budget" in r][-1]
    assert last["sampler/transform/hinter_drafts"] > 0 and last["sampler/transform/hinter_updates"] > 0
    ckpt = tmp_path / "hill_lm" / "checkpoints" / "step_000003" / "trainer_state.pkl"
    hinter = pickle.loads(ckpt.read_bytes())["sampler"]["components"]["transform"][1]["hinter"]
    assert hinter["model"]["updates"] == last["sampler/transform/hinter_updates"]
    assert hinter["model"]["optimizer"]["state"]  # Adam moments are saved with the weights

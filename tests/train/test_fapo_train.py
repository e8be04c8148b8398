"""FAPO in the loop (issue 18): a scripted collector step with hand-counted flawed positives and judge skips,
and a seconds-long ``rollwise train --task.reward_shaping=fapo`` run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rollwise.generation import SamplingParams
from rollwise.generation.scripted import ScriptedEngine
from rollwise.logging import read_metrics
from rollwise.rewards import VerifierPool
from rollwise.rewards.fapo import FapoShaper
from rollwise.sampler_tables import build_pipeline
from rollwise.sampling import Budget, PromptContext, Request
from rollwise.train.rollout import RolloutCollector
from rollwise.types import Prompt

ROOT = Path(__file__).resolve().parents[2]
POOL = [Prompt("a", "57+68=", "125"), Prompt("b", "hello", "7")]  # b is no arithmetic: the carries judge raises


def collect(tokenizer, script, shaper: FapoShaper | None = None):
    engine = ScriptedEngine(script, tokenizer=tokenizer)
    collector = RolloutCollector(engine, VerifierPool("synthetic_mixed"), POOL, tokenizer.encode,
                                 SamplingParams(max_new_tokens=16), reward_shaper=shaper)
    pipe = build_pipeline(preset="uniform", pool_size=2, group_size=4, batch_prompts=2, total_steps=3, seed=0)
    return collector.collect(pipe, 0, Budget(8), seed=0, version=0)


def test_flawed_share_and_judge_skips_are_counted(tokenizer, caplog):
    script = {"57+68=": ["11|125", "#10|125", "125", "124"], "hello": ["1|7", "7", "#1|7", "8"]}
    with caplog.at_level("WARNING", logger="rollwise.rewards.fapo"):
        out = collect(tokenizer, script, FapoShaper())
    assert [r.reward for r in out.rollouts[0]] == [1.0, 0.5, 1.0, 0.0]  # one flawed positive, scored 0.5
    assert [r.reward for r in out.rollouts[1]] == [1.0, 1.0, 1.0, 0.0]  # judge errors: rewards as verified
    assert [r.verify_info["flawed"] for r in out.rollouts[0]] == [False, True, False, None]
    assert out.rollouts[0][1].verify_info["flawed_step"] == 1
    assert ["judge_error" in r.verify_info for r in out.rollouts[1]] == [True, False, True, False]
    m = out.metrics()
    assert m["rollout/flawed_positive_share"] == 1 / 6  # 6 correct rollouts, 1 flawed
    assert m["rollout/judge_errors"] == 2
    assert m["rollout/reward_mean"] == 5.5 / 8
    assert m["rollout/verify_failures"] == 0  # a judge skip is not a verifier fault
    assert "fapo: the judge failed on 2 of 6 correct rollouts" in caplog.text


def test_no_shaper_no_fapo_metrics(tokenizer):
    out = collect(tokenizer, {"57+68=": "10|125", "hello": "7"}, shaper=None)
    assert {r.reward for rs in out.rollouts.values() for r in rs} == {1.0}
    assert "rollout/flawed_positive_share" not in out.metrics()


def test_judge_sees_the_forced_prefix_with_the_completion(tokenizer):
    seen = []

    def judge(prompt: str, completion: str, reference: str) -> int:
        seen.append((prompt, completion))
        return -1

    engine = ScriptedEngine({"57+68=#1": "1|125"}, tokenizer=tokenizer)  # the prompt ids end in the prefix
    collector = RolloutCollector(engine, VerifierPool("synthetic_mixed"), POOL, tokenizer.encode,
                                 SamplingParams(max_new_tokens=16), reward_shaper=FapoShaper(judge))

    class Pipe:  # one request: prompt 0 with a forced answer prefix '#1'
        def begin_step(self, step, budget):
            return Request(np.array([0]), np.array([1]), [PromptContext(answer_prefix="#1")])

        def next_request(self, obs):
            return None

    collector.collect(Pipe(), 0, Budget(1), seed=0, version=0)
    assert seen == [("57+68=", "#11|125")]


def test_cli_train_with_fapo(tmp_path, warm_cache, capsys):
    from rollwise.cli import app

    with pytest.raises(SystemExit) as info:
        app(["train", str(ROOT / "configs" / "smoke.toml"), f"--run.out_dir={tmp_path}", "--run.threads=1",
             f"--warmstart.cache_dir={warm_cache}", "--task.scratchpad=carries", "--task.reward_shaping=fapo",
             "--generation.max_new_tokens=8", "--warmstart.steps=60", "--trainer.steps=2"])
    assert int(info.value.code or 0) == 0, capsys.readouterr().err
    rows = [r for r in read_metrics(tmp_path / "smoke") if "rollout/reward_mean" in r]
    assert len(rows) == 2
    assert all(0 <= r["rollout/flawed_positive_share"] <= 1 and r["rollout/judge_errors"] == 0 for r in rows)

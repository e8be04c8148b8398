"""An ``[env]`` run through the trainer: the config section chooses the environment and its knobs, the warm
start plays the environment's scripted player, episodes come through the collector chosen in setup (the trainer
names no environment), and the step and eval rows carry ``env/`` and ``eval/<env>/`` metrics."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rollwise.config import ConfigError, load_config
from rollwise.envs.collector import EpisodeCollector
from rollwise.logging import read_metrics
from rollwise.train.rollout import RolloutCollector
from rollwise.train.warmstart import warmstart_key, warmstart_pairs

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["--model.layers=1", "--model.hidden=32", "--model.heads=2", "--model.kv_heads=1",
         "--model.intermediate=64", "--warmstart.steps=60", "--warmstart.batch_size=32", "--warmstart.lr=1e-2",
         "--task.train_size=32", "--env.n=3",
         "--sampler.batch_prompts=2", "--sampler.group_size=4", "--trainer.steps=2", "--trainer.eval_every=0",
         "--trainer.checkpoint_every=0", "--trainer.plots=false", "--trainer.progress=false", "--run.threads=1",
         "--algo.lr=1e-2", "--trainer.eval_samples=1", "--algo.mini_batches=1"]


def guess_cfg(tmp_path, *overrides: str):
    return load_config(ROOT / "configs" / "guess.toml", [f"--run.out_dir={tmp_path}",
                                                         f"--warmstart.cache_dir={tmp_path / 'ws'}", *overrides])


def test_env_section_is_typed(tmp_path):
    cfg = guess_cfg(tmp_path, "--env.n=7")
    assert (cfg.env.type, cfg.env.n, cfg.env.max_turns) == ("guess", 7, 5)
    assert load_config(ROOT / "configs" / "tiny.toml").env is None
    with pytest.raises(ConfigError, match="env.nn: unknown key; did you mean 'n'"):
        guess_cfg(tmp_path, "--env.nn=7")
    with pytest.raises(ConfigError, match="env.type: unknown environment 'gues'; did you mean 'guess'"):
        guess_cfg(tmp_path, "--env.type=gues")
    with pytest.raises(ConfigError, match="env.max_turns"):
        guess_cfg(tmp_path, "--env.max_turns=0")


def test_warm_start_plays_the_environment(tmp_path):
    cfg = guess_cfg(tmp_path)
    context, action = next(warmstart_pairs(cfg, set()))
    assert context == "guess 1-15\n" and 1 <= int(action) <= 15
    assert warmstart_key(cfg) != warmstart_key(guess_cfg(tmp_path, "--env.habit=0.9"))
    assert warmstart_key(cfg) != warmstart_key(load_config(ROOT / "configs" / "tiny.toml"))


def test_env_run_trains_on_episodes(tmp_path):
    from rollwise.train.trainer import Trainer

    t = Trainer(guess_cfg(tmp_path, *SMALL))
    assert isinstance(t.collector, EpisodeCollector)
    assert [p.reference for p in t.task.eval_sets["guess"]] == ["1", "2", "3"]
    before = torch.cat([p.detach().flatten().clone() for p in t.model.parameters()])
    t.train()
    t.close()
    assert not torch.allclose(before, torch.cat([p.detach().flatten() for p in t.model.parameters()]))
    rows = read_metrics(t.run_dir)
    steps = [r for r in rows if "env/success" in r]
    assert [r["step"] for r in steps] == [1, 2]
    assert all(r["env/episodes"] == 8 and r["env/faults_error"] == 0 for r in steps)
    assert all(r["env/turns_mean"] >= 1 for r in steps)
    evals = [r for r in rows if "eval/guess/success" in r]
    assert [r["step"] for r in evals] == [0, 2]
    assert evals[0]["eval/guess/episodes"] == 3 and evals[0]["eval/mean/pass@1"] == evals[0]["eval/guess/success"]
    # every turn is a rollout of the ledger: 8 episodes a step, each at least one turn
    assert steps[-1]["ledger/rollouts"] == sum(r["env/turns_mean"] * r["env/episodes"] for r in steps)


def test_single_turn_runs_keep_their_collector(smoke_cfg):
    from rollwise.train import setup

    cfg = smoke_cfg()
    task = setup.build_task(cfg)
    got = setup.build_collector(cfg, None, None, task, _Tok(), lambda s: [1])
    assert isinstance(got, RolloutCollector)


def test_what_episodes_do_not_support_yet_is_refused(tmp_path):
    from rollwise.envs.collector import build_episode_collector
    from rollwise.generation import SamplingParams

    cfg = guess_cfg(tmp_path, "--generation.strategy=april")
    with pytest.raises(ValueError, match="generation.strategy = 'april'"):
        build_episode_collector(cfg, None, [], _Tok(), SamplingParams())


class _Tok:
    eos_token_id = 1
    chat_template = None

    def __call__(self, s, add_special_tokens=False):
        return {"input_ids": [1] * len(s)}

"""Environment workers through the trainer (``[env] workers``), sync and async (``run.mode = "async"``): every
episode a step asked for is handed to the trainer exactly once, also when an environment worker dies under its
episodes (the in-process Ray stand-in ``fake_ray``, and one SIGKILL on a real local Ray), and an episode in flight
at a checkpoint is generated again after the resume, never lost (``async/replanned_*``)."""

from __future__ import annotations

import os
import signal
from collections import Counter
from pathlib import Path

import fake_ray
import pytest

from rollwise.config import load_config
from rollwise.logging import read_metrics
from rollwise.train.trainer import Trainer

ROOT = Path(__file__).resolve().parents[2]
EPISODES = 8  # batch_prompts x group_size below
SMALL = ["--model.layers=1", "--model.hidden=32", "--model.heads=2", "--model.kv_heads=1",
         "--model.intermediate=64", "--warmstart.steps=60", "--warmstart.batch_size=32", "--warmstart.lr=1e-2",
         "--task.train_size=32", "--env.n=3", "--sampler.batch_prompts=2", "--sampler.group_size=4",
         "--trainer.eval_every=0", "--trainer.checkpoint_every=0", "--trainer.plots=false",
         "--trainer.progress=false", "--run.threads=1", "--algo.lr=1e-2", "--trainer.eval_samples=1",
         "--algo.mini_batches=1"]
ASYNC = ["--run.mode=async", "--async.max_staleness=1"]


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    return tmp_path_factory.mktemp("ws")


def guess_cfg(tmp_path, ws, *overrides: str):
    return load_config(ROOT / "configs" / "guess.toml", [f"--run.out_dir={tmp_path}", f"--warmstart.cache_dir={ws}",
                                                         *SMALL, *overrides])


def train(cfg, handed: list, resume: bool = False, **kw):
    """Train ``cfg``; every step's handed-over turns go to ``handed`` as ``[(episode id, turn index), ...]``."""
    t = Trainer(cfg, **kw)
    collect = t.rollouts.collect

    def spy(*a, **k):
        got = collect(*a, **k)
        handed.append([(r.verify_info["episode"], r.verify_info["turn"]) for rs in got.rollouts.values() for r in rs])
        return got

    t.rollouts.collect = spy
    try:
        t.train(resume=resume)
    finally:
        t.close()
    return t, [r for r in read_metrics(t.run_dir) if "env/success" in r]


def assert_each_episode_once(handed: list, steps: int) -> None:
    """Each step hands over EPISODES episodes; no episode in two steps; each turn of an episode once, in order."""
    eps = [sorted({u for u, _ in step}) for step in handed]
    assert [len(e) for e in eps] == [EPISODES] * steps
    every = [u for e in eps for u in e]
    assert len(every) == len(set(every))
    for step in handed:
        turns = Counter(u for u, _ in step)
        for u, n in turns.items():
            assert sorted(t for v, t in step if v == u) == list(range(n))


@pytest.mark.parametrize("mode", [[], ASYNC], ids=["sync", "async"])
def test_a_killed_env_worker_loses_no_episode_and_doubles_none(tmp_path, ws, monkeypatch, mode):
    ray = fake_ray.install(monkeypatch)
    ray.kill_on_call = {30}  # an environment call in the first steps: its worker dies under it
    handed: list = []
    t, rows = train(guess_cfg(tmp_path, ws, "--run.name=kill", "--env.workers=2", "--trainer.steps=3", *mode), handed)
    assert sum(a.incarnation for a in ray.actors) == 1  # one death
    assert rows[-1]["env/worker_restarts"] == 1 and rows[-1]["env/replayed_episodes"] >= 1
    assert rows[-1]["env/replayed_tokens"] >= 0 and rows[-1]["env/faults_error"] == 0
    assert rows[-1]["env/worker_busy_seconds"] > 0 and rows[-1]["env/generate_seconds"] > 0
    assert [r["env/episodes"] for r in rows] == [EPISODES] * 3
    assert_each_episode_once(handed, 3)


def test_async_without_env_workers_plays_in_the_rollout_worker(tmp_path, ws, monkeypatch):
    fake_ray.install(monkeypatch)
    handed: list = []
    t, rows = train(guess_cfg(tmp_path, ws, "--run.name=async0", "--trainer.steps=3", *ASYNC), handed)
    assert [r["step"] for r in rows] == [1, 2, 3] and all(r["env/turns_mean"] >= 1 for r in rows)
    assert all(r["offpolicy/stale_max"] <= 1 for r in rows)
    assert_each_episode_once(handed, 3)


class Crash(Exception):
    pass


def test_episodes_in_flight_at_a_checkpoint_are_generated_again(tmp_path, ws, monkeypatch):
    """eta = 1, generation fast: when step 2's checkpoint is written, steps 3 and 4 are in flight (their episodes
    played, not trained). The run dies there; the resumed run plans and plays steps 3 and 4 again: none of their
    episodes is lost (each step hands over all it asked for), none trained twice, and the row says so."""
    fake_ray.install(monkeypatch)
    args = ["--run.name=inflight", "--env.workers=1", "--trainer.steps=4", "--trainer.checkpoint_every=2", *ASYNC]
    handed: list = []

    def crash(step):
        if step == 2:
            raise Crash

    with pytest.raises(Crash):
        train(guess_cfg(tmp_path, ws, *args), handed, on_checkpoint=crash)
    assert len(handed) == 2
    t, rows = train(guess_cfg(tmp_path, ws, *args), handed, resume=True)
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert rows[2]["async/replanned_steps"] == 2 and rows[2]["async/replanned_prompts"] == 4
    assert [r["env/episodes"] for r in rows] == [EPISODES] * 4
    assert_each_episode_once(handed, 4)


def test_real_ray_sigkill_of_an_env_worker(tmp_path, ws, monkeypatch):
    """A local Ray (started by the environment pool itself): worker 0's process is SIGKILLed while it holds
    episodes; Ray restarts it, its episodes are played again, every step hands over each episode once."""
    pytest.importorskip("ray")
    from rollwise.envs.worker import EnvPool

    submit, killed = EnvPool.submit_step, []

    def submit_then_kill(self, key, action):
        submit(self, key, action)
        if not killed and len(self.pending) >= 4 and self.where[key] == 0:
            os.kill(self._pids[0], signal.SIGKILL)
            killed.append(self._pids[0])

    monkeypatch.setattr(EnvPool, "submit_step", submit_then_kill)
    handed: list = []
    t, rows = train(guess_cfg(tmp_path, ws, "--run.name=realkill", "--env.workers=2", "--trainer.steps=2"), handed)
    assert killed and rows[-1]["env/worker_restarts"] == 1 and rows[-1]["env/replayed_episodes"] >= 1
    assert [r["env/episodes"] for r in rows] == [EPISODES] * 2
    assert_each_episode_once(handed, 2)

"""No step trains nothing silently. An async run whose prompt pool cannot hold the staleness window is refused at
load; a step that would start short of prompts (a refill took them) waits for prompts to come back; and a step
that trains nothing, in either mode, is counted in ``ledger/empty_steps`` and stops the run after
``trainer.max_empty_steps`` in a row. Async runs here use the in-process stand-in for Ray (``fake_ray``)."""

import fake_ray
import pytest

from rollwise.config import ConfigError
from rollwise.generation.scripted import ScriptedEngine
from rollwise.logging import read_metrics
from rollwise.train import rollout_parts, setup, trainer
from rollwise.train.sources import check_staleness_window
from rollwise.train.trainer import Trainer, TrainingError

QUIET = ["--run.threads=1", "--trainer.eval_every=0", "--trainer.checkpoint_every=0"]


def scripted_engine(cfg, model, tok):
    return ScriptedEngine({}, tokenizer=tok, default="7")  # every rollout of a prompt alike: no group varies


def steps(t):
    return [r for r in read_metrics(t.run_dir) if "rollout/reward_mean" in r]


def test_an_async_pool_that_cannot_hold_the_staleness_window_is_refused_at_load(smoke_cfg, monkeypatch):
    """The issue's run: 9 steps in flight x 6 prompts = 54 > a pool of 30; it trained 12 of 30 steps on nothing."""
    monkeypatch.setattr(setup, "build_policy", lambda *a, **k: pytest.fail("a model was built before the check"))
    cfg = smoke_cfg("--run.mode=async", "--trainer.steps=30", "--task.train_size=30", "--async.max_staleness=8",
                    *QUIET)
    with pytest.raises(ConfigError) as err:
        Trainer(cfg)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("async.max_staleness: ")
    assert "(8 + 1) x 6" in msg and "(30, task.train_size)" in msg
    assert "async.max_staleness <= 4" in msg and "sampler.batch_prompts" in msg  # 5 x 6 = 30 fits
    check_staleness_window(smoke_cfg("--run.mode=async", "--async.max_staleness=4"), 30)  # 30 prompts hold 5 steps
    check_staleness_window(smoke_cfg("--async.max_staleness=8"), 30)  # sync mode has one step in flight


def test_an_async_step_waits_for_free_prompts_instead_of_starting_short(smoke_cfg, monkeypatch):
    """A pool of 12 holds two steps of 6: with the load check out of the way (as when refills take prompts it
    cannot foresee) a third step at eta = 2 would start with none; it waits until a step hands its prompts back."""
    fake_ray.install(monkeypatch, eager=True)
    monkeypatch.setattr(rollout_parts, "build_engine", scripted_engine)
    monkeypatch.setattr(trainer, "check_staleness_window", lambda cfg, pool: None)
    t = Trainer(smoke_cfg("--run.name=wait", "--run.mode=async", "--task.train_size=12", "--async.max_staleness=2",
                          "--trainer.steps=5", *QUIET))
    try:
        t.train()
    finally:
        t.close()
    rows = steps(t)
    assert [r["sampler/prompts_generated"] for r in rows] == [6] * 5
    assert [r["ledger/empty_steps"] for r in rows] == [0] * 5
    assert all(r["async/in_flight_steps"] <= 2 for r in rows)  # 12 prompts hold two steps, not eta + 1 = 3


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_steps_that_train_nothing_are_counted_and_stop_the_run(smoke_cfg, monkeypatch, mode):
    """DAPO drops every all-equal group and the scripted engine makes every group all-equal: each step trains
    nothing. Steps 1 and 2 are counted, the third in a row (over max_empty_steps = 2) stops the run."""
    monkeypatch.setattr(setup, "build_engine", scripted_engine)  # the trainer's engine (sync mode, evals)
    if mode == "async":
        fake_ray.install(monkeypatch, eager=True)
        monkeypatch.setattr(rollout_parts, "build_engine", scripted_engine)
    t = Trainer(smoke_cfg(f"--run.name=empty_{mode}", f"--run.mode={mode}", "--sampler.type=dapo",
                          "--trainer.max_empty_steps=2", "--trainer.steps=6", *QUIET))
    try:
        with pytest.raises(TrainingError) as err:
            t.train()
    finally:
        t.close()
    assert str(err.value).startswith("3 consecutive steps trained nothing (step 3: ")
    assert "trainer.max_empty_steps = 2" in str(err.value) and "\n" not in str(err.value)
    rows = steps(t)
    assert [r["ledger/empty_steps"] for r in rows] == [1, 2]
    assert all(r["ledger/rollouts_trained"] == 0 and r["ledger/rollouts"] > 0 for r in rows)

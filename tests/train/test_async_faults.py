"""Worker deaths in async mode, on the in-process stand-in for Ray (``fake_ray``): deterministic, no processes.
One death can cost several rounds (every round queued on the dead process fails); each is sent again and
booked once, and ``async/worker_restarts`` counts the death once."""

import fake_ray

from rollwise.generation.scripted import ScriptedEngine
from rollwise.logging import read_metrics
from rollwise.train import rollout_parts
from rollwise.train.trainer import Trainer

BATCH, GROUP = 6, 4  # smoke.toml


def test_one_death_that_costs_two_rounds_is_one_restart(smoke_cfg, monkeypatch):
    """eta = 1, rounds run when the trainer waits for them: when step 3's round (the third sent) kills its worker,
    step 4's round is already queued on the dead process and fails too. Before, the counter read 2."""
    ray = fake_ray.install(monkeypatch, eager=False)
    monkeypatch.setattr(rollout_parts, "build_engine",
                        lambda cfg, model, tok: ScriptedEngine({}, tokenizer=tok, default="7"))
    ray.kill_on_round = {2}
    t = Trainer(smoke_cfg("--run.name=one_death", "--run.mode=async", "--run.threads=1", "--trainer.steps=4",
                          "--trainer.eval_every=0", "--trainer.checkpoint_every=0", "--async.max_staleness=1"))
    try:
        t.train()
    finally:
        t.close()
    rows = [r for r in read_metrics(t.run_dir) if "rollout/reward_mean" in r]
    assert ray.actors[0].incarnation == 1  # one death
    assert [r["async/worker_restarts"] for r in rows] == [0, 0, 1, 1]
    assert rows[-1]["async/requeued_prompts"] == 2 * BATCH  # two rounds lost, both sent again
    assert [r["sampler/prompts_generated"] for r in rows] == [BATCH] * 4  # each booked once
    assert rows[-1]["ledger/rollouts"] == 4 * BATCH * GROUP

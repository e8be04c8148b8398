"""The async scheduler's staleness schedule, by hand (AReaL's bound with a step as the unit), on an in-process
stand-in for Ray (``fake_ray``) and the scripted engine in the rollout worker: no Ray, no timing.

Step k (0-based) may start generating once the trainer's weights are at version k - eta; the trainer publishes
version k + 1 after training step k. So the schedule is fixed: step k starts at version max(0, k - eta).
When generation is fast (a round finishes before newer weights arrive) step k's tokens are sampled by that
version and trained at version k: staleness min(k, eta), the bound itself from step eta on. When generation is
slow (rounds run only when the trainer waits for them) the same schedule yields staleness 0: the old check
``stale_max <= eta`` holds in both cases, these do not.
"""

import fake_ray
import pytest

from rollwise.generation.scripted import ScriptedEngine
from rollwise.logging import read_metrics
from rollwise.train import rollout_parts
from rollwise.train.async_rollouts import AsyncRollouts
from rollwise.train.trainer import Trainer

STEPS = 5
ASYNC = ["--run.mode=async", "--run.threads=1", "--trainer.eval_every=0", "--trainer.checkpoint_every=0",
         f"--trainer.steps={STEPS}"]


def scripted_engine(cfg, model, tok):
    return ScriptedEngine({}, tokenizer=tok, default="7")  # every rollout: "7" + eos


def run_async(smoke_cfg, monkeypatch, eta, eager, *extra):
    """Train STEPS steps at staleness ``eta``; return (metrics rows, [(step, version) at each step's start],
    the fake Ray)."""
    ray = fake_ray.install(monkeypatch, eager=eager)
    monkeypatch.setattr(rollout_parts, "build_engine", scripted_engine)  # the workers' engine
    starts, start = [], AsyncRollouts._start

    def record(self, step):
        starts.append((step, self.version))
        start(self, step)

    monkeypatch.setattr(AsyncRollouts, "_start", record)
    t = Trainer(smoke_cfg(f"--run.name=sched{eta}{eager}", *ASYNC, f"--async.max_staleness={eta}", *extra))
    try:
        t.train()
    finally:
        t.close()
    return [r for r in read_metrics(t.run_dir) if "rollout/reward_mean" in r], starts, ray


@pytest.mark.parametrize("eta", [0, 1, 2])
def test_step_k_starts_at_version_k_minus_eta_and_fast_workers_run_eta_ahead(smoke_cfg, monkeypatch, eta):
    rows, starts, ray = run_async(smoke_cfg, monkeypatch, eta, eager=True)
    # eta=2: steps 0, 1, 2 start at version 0 (before any update), step 3 at 1, step 4 at 2
    assert starts == [(k, max(0, k - eta)) for k in range(STEPS)]
    assert [(v_job, v_worker) for _, v_job, v_worker in ray.rounds] == [(v, v) for _, v in starts]
    stale = [min(k, eta) for k in range(STEPS)]  # eta=2: [0, 1, 2, 2, 2]
    assert [r["offpolicy/stale_max"] for r in rows] == stale
    for r, s in zip(rows, stale):  # every token of step k is exactly min(k, eta) versions old
        hist = r["trace/stale_hist"]
        assert hist[s] == sum(hist) > 0
    # logged after step k published version k + 1, which started step k + 1 + eta: steps k + 1 .. k + 1 + eta fly
    assert [r["async/in_flight_steps"] for r in rows] == [min(eta + 1, STEPS - 1 - k) for k in range(STEPS)]


def test_slow_workers_keep_the_schedule_and_sample_with_the_newest_weights(smoke_cfg, monkeypatch):
    eta = 2
    rows, starts, ray = run_async(smoke_cfg, monkeypatch, eta, eager=False)
    assert starts == [(k, max(0, k - eta)) for k in range(STEPS)]  # the schedule does not depend on speed
    assert [v_worker for _, _, v_worker in ray.rounds] == list(range(STEPS))  # step k ran under version k
    assert all(r["offpolicy/stale_max"] == 0 for r in rows)  # within the bound, yet never ahead

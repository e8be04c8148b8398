"""DART's curation end to end (arXiv:2509.23866) on the guess environment (smoke model): episodes' turns grouped
per task, stored successes injected into all-failed groups (stale rows, so the capped IS acts), fewer rollouts for
solved tasks, the entropy mask trains 80% of the step samples; the store survives a resume."""

from __future__ import annotations

import pickle

from rollwise.logging import read_metrics
from rollwise.train.trainer import Trainer

ARGS = ["--env=guess", "--recipe=dart", "--task.train_size=16", "--sampler.allocator.threshold=0.5",
        "--sampler.batch_prompts=8", "--sampler.group_size=4", "--trainer.eval_every=0", "--run.threads=1"]


def test_curation_counters_move(smoke_cfg):
    t = Trainer(smoke_cfg(*ARGS, "--trainer.steps=6", "--trainer.checkpoint_every=6", "--run.name=dart"))
    try:
        t.train()
        state = pickle.loads(pickle.dumps(t.pipeline.state_dict()))
    finally:
        t.close()
    rows = [r for r in read_metrics(t.run_dir) if "rollout/reward_mean" in r]
    assert rows[-1]["sampler/transform/injected_total"] > 0  # all-failed groups got a stored success
    assert any(r["sampler/transform/injected_staleness"] > 0 for r in rows)
    assert any(r["offpolicy/is_min"] < 1 for r in rows)  # stale injected rows: pi_old/mu below 1 kept, above cut
    assert all(r["offpolicy/is_max"] <= 1.0 for r in rows)  # the cap is 1
    assert any(r["sampler/allocator/reduced"] > 0 for r in rows)  # solved tasks got fewer rollouts
    assert any(r["sampler/rollouts_per_prompt_min"] < r["sampler/rollouts_per_prompt_max"] for r in rows)
    assert all(0.7 <= r["offpolicy/dart_entropy_kept_share"] <= 0.8 for r in rows)
    assert rows[-1]["sampler/transform/store_size"] > 0 and rows[-1]["sampler/transform/store_versions"] > 1
    store = state["components"]["transform"][1]["store"]["by_task"]
    assert all(e.used in (True, False) and e.version <= 5 for v in store.values() for e in v)
    # resume: the store and the success windows come back as saved
    t2 = Trainer(smoke_cfg(*ARGS, "--trainer.steps=7", "--trainer.checkpoint_every=6", "--run.name=dart"))
    try:
        t2._start(resume=True, overwrite=False)
        assert len(t2.pipeline.transform.store) == rows[-1]["sampler/transform/store_size"]
        assert t2.pipeline.allocator.state_dict() == state["components"]["allocator"][1]
    finally:
        t2.close()


def test_trajectory_ids_follow_the_episode():
    from rollwise.train.rollout import trajectory_ids
    from rollwise.types import Rollout

    def r(meta, episode=None):
        return Rollout(0, [], [], [], "", "stop", verify_info={} if episode is None else {"episode": episode},
                       meta=meta)

    # environment workers hand turns over interleaved: the episode id keeps them apart
    assert trajectory_ids([r({"turn": 0}, "a"), r({"turn": 0}, "b"), r({"turn": 1}, "a")]).tolist() == [0, 1, 0]
    # without ids: consecutive turns 0, 1, ... are one episode; single-turn rollouts and one-turn samples are their own
    got = trajectory_ids([r({"turn": 0}), r({"turn": 1}), r({"turn": 0}), r({}), r({"turn": 3}), r({"turn": 3})])
    assert got.tolist() == [0, 0, 1, 2, 3, 4]


def test_runs_on_environment_workers(smoke_cfg, monkeypatch):
    """The curation is sampler- and update-side: on environment workers (``[env] workers``, the in-process Ray
    stand-in) the episodes' turns come back interleaved and are grouped by episode id, and the parts act."""
    import fake_ray

    fake_ray.install(monkeypatch)
    t = Trainer(smoke_cfg(*ARGS, "--env.workers=2", "--trainer.steps=6", "--trainer.checkpoint_every=0",
                          "--run.name=dart_workers"))
    try:
        t.train()
    finally:
        t.close()
    rows = [r for r in read_metrics(t.run_dir) if "rollout/reward_mean" in r]
    assert rows[-1]["sampler/transform/store_size"] > 0 and any(r["sampler/allocator/reduced"] > 0 for r in rows)
    assert all(r["offpolicy/dart_entropy_kept_share"] <= 0.8 for r in rows)

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

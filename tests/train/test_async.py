"""Async mode on a local Ray: eta = 0 reproduces the sync run (same tokens, floats to rounding) with either weight
sync (object store, gloo broadcast), the staleness bound holds, every prompt is generated and trained once per
step, a SIGKILLed rollout worker is restarted and its round re-queued (the broadcast group re-formed), one killed
during a weight broadcast too, and a run killed with SIGKILL resumes from its checkpoint in async mode."""

import os
import signal
from pathlib import Path

import pytest
import torch

from rollwise.logging import read_metrics
from rollwise.train.trainer import Trainer

ray = pytest.importorskip("ray")
ROOT = Path(__file__).resolve().parents[2]
ASYNC = ["--run.mode=async", "--run.threads=1", "--trainer.eval_every=0", "--trainer.checkpoint_every=0"]
BATCH, GROUP = 6, 4  # smoke.toml


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    os.environ.setdefault("RAY_worker_niceness", "0")  # as AsyncRollouts does for the Ray it starts
    ray.init(num_cpus=2, _node_ip_address="127.0.0.1", include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    yield
    ray.shutdown()


def _steps(rows):
    return [r for r in rows if "rollout/reward_mean" in r]


def _run(cfg, **kw):
    t = Trainer(cfg, **kw)
    try:
        t.train()
    finally:
        t.close()
    return t, _steps(read_metrics(t.run_dir))


def test_eta_0_is_the_synchronous_run_exactly(smoke_cfg):
    """Same weights, seeds, prompts and engine code in the worker: at eta = 0 (one worker, one thread each, no
    weight update ever lands mid-round) async reproduces the sync run's rollouts token for token, and its updates
    and evals to float32 rounding; only timings, the async/ counters and the engine's work counters differ."""
    common = ["--run.threads=1", "--trainer.steps=3", "--trainer.eval_every=3", "--trainer.checkpoint_every=0"]
    sync_t, sync_rows = _run(smoke_cfg("--run.name=sync", *common))
    async_t, async_rows = _run(smoke_cfg("--run.name=async0", *common, "--run.mode=async", "--async.max_staleness=0"))
    coll_t, coll_rows = _run(smoke_cfg("--run.name=async0c", *common, "--run.mode=async", "--async.max_staleness=0",
                                       "--async.weight_sync=collective"))  # weights by gloo broadcast

    # The engine's work counters (prefill tokens, decode steps, decode row-steps) describe how the rows were batched
    # into engine calls, like perf/: the async worker's rounds may group a step's rows differently from the sync
    # call (CI's full suite saw prefill 191 vs 88 for token-identical rollouts), so they are not compared.
    work = {f"ledger/{k}" for k in ("prefill_tokens", "decode_steps", "decode_row_steps")}

    def same(rows):
        return [{k: v for k, v in r.items()
                 if not k.startswith(("perf/", "async/")) and "seconds" not in k and k not in work} for r in rows]

    # Tokens, rewards, counts and sampler decisions match exactly. Floats match to float32 rounding: the worker is
    # another process, and a BLAS may pick a kernel by the address of its buffers (bit for bit on the dev machine,
    # last-bit differences in a logprob on CI's), which must not change a single sampled token.
    a_rows, s_rows = same(async_rows) + same(coll_rows), same(sync_rows) * 2
    assert [r.keys() for r in a_rows] == [r.keys() for r in s_rows]
    for s, a in zip(s_rows, a_rows):
        assert {k: v for k, v in s.items() if not isinstance(v, float)} == \
            {k: v for k, v in a.items() if not isinstance(v, float)}
        assert {k: v for k, v in a.items() if isinstance(v, float)} == \
            pytest.approx({k: v for k, v in s.items() if isinstance(v, float)}, rel=1e-6, abs=1e-7)
    assert all(r["offpolicy/stale_max"] == 0 for r in async_rows + coll_rows)
    for t in (async_t, coll_t):
        for a, b in zip(sync_t.model.parameters(), t.model.parameters()):
            assert torch.allclose(a, b, rtol=1e-5, atol=1e-7)


def test_staleness_is_bounded_and_every_step_books_its_prompts_once(smoke_cfg):
    eta = 2  # two workers: each round is split between them
    t, rows = _run(smoke_cfg("--run.name=eta2", *ASYNC, f"--async.max_staleness={eta}", "--async.workers=2",
                             "--trainer.steps=5"))
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5]
    assert all(r["offpolicy/stale_max"] <= eta for r in rows)  # how far ahead the workers get depends on timing
    assert all(r["sampler/prompts_generated"] == BATCH and r["sampler/rollouts_per_prompt_min"] == GROUP
               and r["sampler/rollouts_per_prompt_max"] == GROUP for r in rows)
    assert rows[-1]["ledger/rollouts"] == 5 * BATCH * GROUP
    assert rows[-1]["async/in_flight_steps"] == 0  # nothing generated past the last step


@pytest.mark.parametrize("weight_sync", ["object_store", "collective"])
def test_a_killed_worker_is_restarted_and_its_round_requeued(smoke_cfg, monkeypatch, weight_sync):
    """Under the collective sync the restarted worker is outside the broadcast group: the group is re-formed
    and the newest weights sent again before the round is re-sent."""
    from rollwise.train.async_rollouts import AsyncRollouts

    send, killed = AsyncRollouts._send, []

    def send_then_kill(self, step, job, worker, tries):
        send(self, step, job, worker, tries)
        if step == 2 and not killed:  # the round is submitted: kill the worker's process under it
            pid = ray.get(self.workers[worker].pid.options(concurrency_group="control").remote())
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    monkeypatch.setattr(AsyncRollouts, "_send", send_then_kill)
    steps = 4 if weight_sync == "object_store" else 3  # the kill is at step 2 (the third)
    t, rows = _run(smoke_cfg(f"--run.name=kill_{weight_sync}", *ASYNC, "--async.max_staleness=1",
                             f"--trainer.steps={steps}", f"--async.weight_sync={weight_sync}"))
    assert killed and rows[-1]["async/worker_restarts"] == 1  # one death, however many rounds it cost
    assert rows[-1]["async/weight_sync_reforms"] == (1 if weight_sync == "collective" else 0)
    # the killed round, and the next step's if it was already queued on the dead process; none when Ray had not
    # handed the round to the process yet (it then waits for the restart), as under a loaded machine
    assert rows[-1]["async/requeued_prompts"] in (0, BATCH, 2 * BATCH)
    assert [r["step"] for r in rows] == list(range(1, steps + 1))
    assert all(r["sampler/prompts_generated"] == BATCH and r["sampler/rollouts_per_prompt_max"] == GROUP
               for r in rows)  # the lost round was not booked, the re-sent one once
    assert rows[-1]["ledger/rollouts"] == steps * BATCH * GROUP


def test_a_worker_killed_during_a_weight_broadcast_is_restarted(smoke_cfg, monkeypatch):
    """The collective sync: worker 0's process is SIGKILLed after the trainer asked it to receive version 2 and
    before the trainer sends the buffers. The broadcast fails (the trainer's send, or the member's call); the
    trainer waits out the restart, re-forms the group and sends version 2 again; the run goes on."""
    from rollwise.train.weight_sync import CollectiveSync

    broadcast, killed = CollectiveSync._broadcast, []

    class KillFirst:  # the broadcast group whose next broadcast first kills worker 0
        def __init__(self, group, pid):
            self.group, self.pid = group, pid

        def broadcast(self, *args, **kwargs):
            if not killed:
                os.kill(self.pid, signal.SIGKILL)
                killed.append(self.pid)
            return self.group.broadcast(*args, **kwargs)

        def __getattr__(self, name):
            return getattr(self.group, name)

    def broadcast_with_kill(self, bufs, meta, version):
        if version != 2 or killed:
            return broadcast(self, bufs, meta, version)
        real, self.group = self.group, KillFirst(self.group, int(self.ask("pid")[0]))
        try:
            return broadcast(self, bufs, meta, version)
        finally:
            if isinstance(self.group, KillFirst):  # not re-formed meanwhile
                self.group = real

    monkeypatch.setattr(CollectiveSync, "_broadcast", broadcast_with_kill)
    steps = 3
    t, rows = _run(smoke_cfg("--run.name=kill_broadcast", *ASYNC, "--async.max_staleness=1",
                             f"--trainer.steps={steps}", "--async.weight_sync=collective"))
    assert killed
    assert rows[-1]["async/weight_sync_failed_broadcasts"] == 1
    assert rows[-1]["async/weight_sync_reforms"] == 1 and rows[-1]["async/worker_restarts"] == 1
    assert [r["step"] for r in rows] == list(range(1, steps + 1))
    assert all(r["sampler/prompts_generated"] == BATCH and r["sampler/rollouts_per_prompt_max"] == GROUP
               for r in rows)
    assert rows[-1]["ledger/rollouts"] == steps * BATCH * GROUP


def test_sigkill_of_the_whole_run_then_resume_in_async_mode(smoke_cfg, tmp_path, warm_cache, train_until_sigkill):
    overrides = [*ASYNC[:3], "--trainer.checkpoint_every=2", "--trainer.steps=4", "--async.max_staleness=1"]
    cfg_args = [f"--run.out_dir={tmp_path}", f"--warmstart.cache_dir={warm_cache}", "--run.name=killed", *overrides]
    proc = train_until_sigkill(cfg_args, at_step=2)
    assert proc.returncode == -9, proc.stderr[-2000:]
    run_dir = tmp_path / "killed"
    assert (run_dir / "checkpoints" / "step_000002" / "COMPLETE").is_file()
    t = Trainer(smoke_cfg("--run.name=killed", *overrides))
    try:
        t.train(resume=True)
    finally:
        t.close()
    rows = _steps(read_metrics(run_dir))
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert rows[-1]["ledger/rollouts"] == 4 * BATCH * GROUP
    assert (run_dir / "checkpoints" / "step_000004" / "COMPLETE").is_file()

"""SAPO nodes as real Ray actors sharing a Ray-actor board: a node SIGKILLed mid-run is restarted by Ray, resumes
from its checkpoint and rejoins (publishes again), while the other node goes on; each finishes every step once."""

import os
import signal
import time
import uuid

import pytest

ray = pytest.importorskip("ray")

from rollwise.logging import read_metrics  # noqa: E402
from rollwise.swarm.board import RayBoard  # noqa: E402
from rollwise.train.swarm_nodes import node_configs, start_nodes  # noqa: E402
from rollwise.train.trainer import Trainer  # noqa: E402
from rollwise.train.warmstart import find_warmstart  # noqa: E402

STEPS = 12  # node1 is killed at step 2: ten steps after it leave a wide window for the kill


def _steps(run_dir) -> int:
    """The last step a run has logged (0 before its first)."""
    if not (run_dir / "metrics.jsonl").exists():
        return 0
    return max((r.get("step", 0) for r in read_metrics(run_dir) if "rollout/reward_mean" in r), default=0)


def _wait(runs, ready, what: str, root, timeout_s: float = 420.0) -> None:
    """Poll ``ready()`` until it holds; one of ``runs`` ending first fails at once with its error and each node's
    progress."""
    deadline = time.time() + timeout_s
    while not ready():
        done, _ = ray.wait(runs, timeout=0.2)
        if done and not ready():  # (ready may have come true during the wait)
            ray.get(done)
            pytest.fail(f"{what}: a node's train() ended first; {_progress(root)}")
        if time.time() > deadline:
            pytest.fail(f"{what} within {timeout_s:.0f} s; {_progress(root)}")


def _progress(root) -> str:
    """Each node's last logged step and checkpoints (what a failure message needs to be diagnosed)."""
    out = []
    for name in ("sw-node0", "sw-node1"):
        steps = [r.get("step") for r in read_metrics(root / name)] if (root / name / "metrics.jsonl").exists() else []
        ckpts = sorted(p.name for p in (root / name / "checkpoints").glob("step_*"))
        out.append(f"{name}: last step {steps[-1] if steps else None}, checkpoints {ckpts}")
    return "; ".join(out)


def test_a_killed_node_restarts_resumes_and_rejoins(smoke_cfg, tmp_path):
    board = f"t-{uuid.uuid4().hex[:8]}"
    cfg = smoke_cfg("--run.name=sw", f"--trainer.steps={STEPS}", "--trainer.checkpoint_every=2",
                    "--trainer.keep_checkpoints=100", "--trainer.eval_every=0", "--swarm.board=ray",
                    f"--swarm.name={board}", "--swarm.external=2", "--run.threads=1")
    nodes = node_configs(cfg, 2)
    assert [c.swarm.agent for c in nodes] == ["node0", "node1"] and [c.run.seed for c in nodes] == [0, 1]
    assert node_configs(smoke_cfg("--swarm.external=1"), 1)[0].swarm.board == "ray"  # memory cannot cross processes
    if find_warmstart(nodes[0]) is None:  # both nodes share one warm start: train it once, here
        Trainer(nodes[0]).close()
    try:
        actors = start_nodes(nodes)
        pid = ray.get(actors[1].pid.remote())
        # node0 first, until it has trained a step (a node's process may start much later than the other's: CI saw
        # node1 finish every step before node0 logged one), then node1, killed once its step-2 checkpoint is on disk
        # (every checkpoint is kept: the old test waited for a step-2 checkpoint already pruned by step 6's)
        runs = [actors[0].train.remote()]
        _wait(runs, lambda: _steps(tmp_path / "sw-node0") >= 1, "node0 never trained a step", tmp_path)
        runs.append(actors[1].train.remote())
        ckpt = tmp_path / "sw-node1" / "checkpoints" / "step_000002" / "COMPLETE"
        _wait(runs[1:], ckpt.exists, "node1 never reached its step-2 checkpoint", tmp_path)
        assert _steps(tmp_path / "sw-node1") < STEPS, f"node1 ended before the kill: {_progress(tmp_path)}"
        os.kill(pid, signal.SIGKILL)
        finals = ray.get(runs, timeout=600)
        assert [f["steps"] for f in finals] == [STEPS, STEPS]
        assert ray.get(actors[1].pid.remote()) != pid  # a new process: Ray restarted the node
        for name in ("sw-node0", "sw-node1"):
            rows = [r for r in read_metrics(tmp_path / name) if "rollout/reward_mean" in r]
            assert [r["step"] for r in rows] == list(range(1, STEPS + 1))  # every step once: resumed, not redone
        rows1 = [r for r in read_metrics(tmp_path / "sw-node1") if "rollout/reward_mean" in r]
        assert any(r["swarm/external_groups"] == 2 for r in rows1[2:])  # after the restart it reads the swarm again
        got, _ = RayBoard(board).read(exclude="node0")
        assert {g.agent for g in got} == {"node1"} and max(g.round for g in got) == STEPS - 1  # it rejoined
    finally:
        try:
            ray.kill(ray.get_actor(f"rollwise-swarm-{board}"))
        except Exception:  # noqa: BLE001
            pass
        ray.shutdown()

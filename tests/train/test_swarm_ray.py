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

STEPS = 6


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
                    "--trainer.eval_every=0", "--swarm.board=ray", f"--swarm.name={board}", "--swarm.external=2",
                    "--run.threads=1")
    nodes = node_configs(cfg, 2)
    assert [c.swarm.agent for c in nodes] == ["node0", "node1"] and [c.run.seed for c in nodes] == [0, 1]
    assert node_configs(smoke_cfg("--swarm.external=1"), 1)[0].swarm.board == "ray"  # memory cannot cross processes
    if find_warmstart(nodes[0]) is None:  # both nodes share one warm start: train it once, here
        Trainer(nodes[0]).close()
    try:
        actors = start_nodes(nodes)
        pid = ray.get(actors[1].pid.remote())
        runs = [a.train.remote() for a in actors]
        ckpt = tmp_path / "sw-node1" / "checkpoints" / "step_000002" / "COMPLETE"
        deadline = time.time() + 420
        while not ckpt.exists() and time.time() < deadline:
            done, _ = ray.wait(runs, timeout=0.2)
            if done:  # a node's train() ended before node1's checkpoint: surface its error now, not at the deadline
                ray.get(done)
                pytest.fail(f"a node finished before node1's step-2 checkpoint: {_progress(tmp_path)}")
        assert ckpt.exists(), f"node1 never reached its step-2 checkpoint: {_progress(tmp_path)}"
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

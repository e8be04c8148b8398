"""Swarm nodes as Ray actors (SAPO, arXiv:2509.08721): ``rollwise swarm CONFIG --nodes N``.

Each node is a whole trainer (its own policy, optimiser, sampler, data and verifier) in a Ray actor of its own,
sharing rollouts through the board named in ``[swarm]`` (``ray`` by default here: a named actor). Nodes never
wait for each other: a node reads whatever the others last published, and trains alone when the swarm is silent.
The same code runs on a Ray cluster (``ray.address``).

Node ``k``'s config is the base config plus ``swarm.nodes[k]`` (dotted overrides; models, levels and seeds may
differ) or, without that list, ``run.seed + k``; its run directory is ``<run.name>-node<k>`` and its agent name
``node<k>``; a ``memory`` board becomes a ``ray`` board of the same name (a dict cannot cross processes). A node
that dies (SIGKILL, OOM) is restarted by Ray and its ``train`` call retried (``max_task_retries``): it resumes
from its last checkpoint and rejoins the swarm, while the others go on.
"""

from __future__ import annotations

import copy
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from rollwise.config import Config, apply_override
from rollwise.swarm.board import RayBoard

log = logging.getLogger(__name__)


def node_configs(cfg: Config, nodes: int | None = None) -> list[Config]:
    """One config per node (module docstring); ``nodes`` defaults to ``len(swarm.nodes)``."""
    if cfg.swarm is None:
        raise ValueError("swarm: the config has no [swarm] section")
    tables = list(cfg.swarm.nodes)
    n = nodes if nodes is not None else len(tables)
    if n < 1:
        raise ValueError("swarm: no nodes (give --nodes N or [[swarm.nodes]] tables)")
    if tables and len(tables) != n:
        raise ValueError(f"swarm: {len(tables)} [[swarm.nodes]] tables but --nodes {n}")
    base = cfg.model_dump(mode="json", by_alias=True)
    base["swarm"]["nodes"] = []
    if base["swarm"]["board"] == "memory":  # a dict cannot cross the nodes' processes: a Ray board of that name
        base["swarm"]["board"] = "ray"
    out = []
    for k in range(n):
        data = copy.deepcopy(base)
        for key, value in (tables[k] if tables else {"run.seed": cfg.run.seed + k}).items():
            apply_override(data, key, value)
        apply_override(data, "run.name", f"{cfg.run.name}-node{k}")
        apply_override(data, "swarm.agent", f"node{k}")
        out.append(Config.model_validate(data))
    return out


class SwarmNode:
    """One node: a trainer in a Ray actor. ``train`` resumes from the node's last checkpoint if it has one."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def train(self) -> dict[str, Any]:
        from rollwise.train.trainer import Trainer

        trainer = Trainer(Config.model_validate(self.data))
        try:
            final = trainer.train(resume=True)
        finally:
            trainer.close()
        return {k: v for k, v in final.items() if isinstance(v, (int, float))} | {"steps": trainer.step_index}

    def pid(self) -> int:
        return os.getpid()


def start_nodes(cfgs: list[Config], threads: int = 1) -> list[Any]:
    """Start one actor per config (Ray started on loopback if this process has none)."""
    import ray  # lazy: optional dependency

    if not ray.is_initialized():
        a = cfgs[0].ray
        kw: dict[str, Any] = ({"address": a.address} if a.address else
                              {"address": "local", "num_cpus": a.num_cpus or max(os.cpu_count() or 1, len(cfgs)),
                               "_node_ip_address": "127.0.0.1", "include_dashboard": False})
        os.environ.setdefault("RAY_worker_niceness", "0")
        ray.init(**kw, log_to_driver=False, configure_logging=False)
    for name in {c.swarm.name for c in cfgs if c.swarm is not None and c.swarm.board == "ray"}:
        RayBoard(name)  # the shared board exists before any node asks for it (nodes then only look it up)
    need, have = len(cfgs) * threads, ray.cluster_resources().get("CPU", 0)
    if need > have:  # a node that cannot be placed waits for ever (a local Ray never grows): say so now
        log.warning("swarm: %d nodes x %d CPUs need %d CPUs, the Ray cluster has %g; the rest wait for CPUs",
                    len(cfgs), threads, need, have)
    actor = ray.remote(SwarmNode).options(max_restarts=3, max_task_retries=3, num_cpus=threads)
    return [actor.remote(c.model_dump(mode="json", by_alias=True)) for c in cfgs]


def run_swarm(cfg: Config, nodes: int | None = None, overwrite: bool = False) -> list[dict[str, Any]]:
    """Train every node to the end; return each node's final eval (``steps``: the steps it reached)."""
    import ray

    cfgs = node_configs(cfg, nodes)
    if overwrite:
        for c in cfgs:
            shutil.rmtree(Path(c.run.out_dir) / c.run.name, ignore_errors=True)
    actors = start_nodes(cfgs, cfg.run.threads or 1)
    return ray.get([a.train.remote() for a in actors])

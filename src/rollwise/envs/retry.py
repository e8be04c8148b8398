"""Retries of faulted episodes (``env.retries``): an episode whose environment faulted (``envs/base.py``'s
:data:`~rollwise.envs.base.ENV_FAULTS`: it raised, hung, or returned a malformed step or a reward that is not a
finite number in range) is played again from its start, at most ``retries`` times, before it is dropped.

A transient fault (a server that dropped one connection, a worker that timed out once under load) then costs one
episode's tokens rather than a sample of its task's group. A faulted try is never trained on: it rides along in the
final episode's ``earlier`` list, so the collector charges its tokens as discarded and counts its fault by kind
(``env/faults_<kind>``) and the retry (``env/retries``). A retry samples with a seed of its own, so a policy that
drove the environment into the fault may take another path; an environment that faults on every try is dropped
after ``retries + 1`` tries.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from rollwise.envs.loop import Episode
from rollwise.generation.base import SamplingParams
from rollwise.types import Prompt

RETRY_SEED_STRIDE = 104_729  # a retry's seed: the call's seed + stride * try (no clash with the loop's per-turn seeds)


def play_with_retries(loop: Any, tasks: list[Prompt], task_index: list[int], params: SamplingParams,
                      version: int = 0, retries: int = 0) -> list[Episode]:
    """``loop.run(tasks, task_index, params, version)``, then the faulted episodes played again (only those, in
    one ``run`` call per try) up to ``retries`` times; each slot keeps its last try, the faulted tries before it
    in its ``earlier`` list (oldest first). Returns one episode per task, in order."""
    episodes = loop.run(tasks, task_index, params, version)
    for attempt in range(1, retries + 1):
        bad = [i for i, e in enumerate(episodes) if e.fault is not None]
        if not bad:
            break
        seed = None if params.seed is None else params.seed + RETRY_SEED_STRIDE * attempt
        again = loop.run([tasks[i] for i in bad], [task_index[i] for i in bad], replace(params, seed=seed), version)
        for i, ep in zip(bad, again):
            old = episodes[i]
            ep.earlier = [*old.earlier, replace(old, earlier=[])]
            episodes[i] = ep
    return episodes


def all_tries(episodes: list[Episode]) -> list[Episode]:
    """Every try played: each episode's faulted earlier tries, then the episode."""
    return [t for e in episodes for t in (*e.earlier, e)]

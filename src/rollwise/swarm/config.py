"""The ``[swarm]`` section: which board a node shares rollouts through and how many external groups it trains."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class SwarmConfig(BaseModel):
    """SAPO (arXiv:2509.08721): each step the node trains its I local groups (``sampler.batch_prompts``) plus J
    external groups (``external``) drawn from the other nodes' newest publications on the board."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, validate_default=True)

    board: Literal["memory", "dir", "ray"] = Field("memory", description="where rollouts are shared: memory (one "
                                                   "process), dir (a directory of JSON files), ray (a named Ray actor)")
    name: str = Field("swarm", min_length=1, description="the board's name: the dict name (memory), the directory "
                      "(dir) or the Ray actor's name (ray)")
    agent: str | None = Field(None, description="this node's name on the board (None = run.name)")
    external: int = Field(4, ge=0, description="J: external question groups trained per step, drawn uniformly over "
                          "(agent, question) pairs of the other nodes' newest publications (SAPO 4/4: "
                          "batch_prompts 4, external 4)")
    publish: bool = Field(True, description="publish this node's groups each step (False: only read)")
    max_age: int | None = Field(None, ge=0, description="skip a publication more than this many steps behind this "
                                "node's step (None = any age: a node alone or far ahead still learns from others)")
    nodes: list[dict[str, Any]] = Field([], description="`rollwise swarm`: one table of dotted overrides per node "
                                        "(e.g. {'run.seed' = 1, 'task.levels' = ['add3']}); empty = --nodes copies "
                                        "with seeds run.seed + k")

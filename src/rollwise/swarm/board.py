"""The swarm's shared board (SAPO, arXiv:2509.08721): where nodes publish decoded rollouts and read others'.

A node publishes, each step, its question groups as *text* (:class:`SharedGroup`: the question, its reference
answer, the G completions and how each ended); another node re-templates, re-tokenises and re-scores them under
its own policy and verifier (``train/swarm.py``). Nothing on the board is trusted: a payload that does not parse
is skipped and counted, never trained on.

Boards (``[swarm] board``):

- ``memory``: a dict in this process, shared by name (tests; several trainers in one process);
- ``dir``: one JSON file per agent in a directory (nodes as processes on one machine or a shared filesystem),
  written atomically (temporary file + rename), so a reader sees a whole publication or the previous one;
- ``ray``: a named Ray actor (nodes as Ray actors, on one machine or a cluster); created by the first node that
  asks, found by name by the others.

Each agent's newest publication replaces its previous one (rl-swarm keeps the current round per agent). A reader
gets every *other* agent's newest publication, at most ``max_age`` rounds behind its own step when set.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from rollwise.registry import Registry


@dataclass
class SharedGroup:
    """One question with all its completions, as text (an rl-swarm "tree")."""

    agent: str  # who published it
    round: int  # the publisher's step
    question: str  # the prompt text, before any template (the reader applies its own)
    reference: str  # the reference answer (the reader verifies with its own verifier)
    completions: list[str]  # [G] decoded completions
    finished: list[bool]  # [G] the completion ended on a stop token (the reader appends its own)
    rewards: list[float] = field(default_factory=list)  # [G] the publisher's rewards (informational)
    logprobs: list[list[float]] = field(default_factory=list)  # [G][T] publisher's behaviour logprobs (optional)
    meta: dict[str, Any] = field(default_factory=dict)  # e.g. the task level


def parse_group(obj: Any) -> SharedGroup:
    """A board payload as a :class:`SharedGroup`, or ``ValueError`` saying what is wrong with it."""
    if not isinstance(obj, dict):
        raise ValueError(f"a group is a JSON object, got {type(obj).__name__}")
    try:
        g = SharedGroup(str(obj["agent"]), int(obj["round"]), obj["question"], str(obj["reference"]),
                        list(obj["completions"]), [bool(x) for x in obj["finished"]],
                        [float(x) for x in obj.get("rewards", [])],
                        [list(map(float, lp)) for lp in obj.get("logprobs", [])],
                        dict(obj.get("meta", {})))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"malformed group: {type(exc).__name__}: {exc}") from None
    if not isinstance(g.question, str) or not all(isinstance(c, str) for c in g.completions):
        raise ValueError("malformed group: question and completions must be strings")
    if len(g.finished) != len(g.completions) or (g.rewards and len(g.rewards) != len(g.completions)):
        raise ValueError("malformed group: completions, finished and rewards differ in length")
    if g.logprobs and (len(g.logprobs) != len(g.completions)
                       or not all(math.isfinite(x) for lp in g.logprobs for x in lp)):
        raise ValueError("malformed group: logprobs are not one finite list per completion")
    return g


class Board(Protocol):
    """Publish this agent's groups; read the others'."""

    def publish(self, agent: str, round: int, groups: list[SharedGroup]) -> None: ...

    def read(self, exclude: str) -> tuple[list[SharedGroup], int]: ...  # (groups, malformed payloads skipped)


def _parse_all(payloads: list[Any]) -> tuple[list[SharedGroup], int]:
    out, bad = [], 0
    for obj in payloads:
        try:
            out.append(parse_group(obj))
        except ValueError:
            bad += 1
    return out, bad


class MemoryBoard:
    """In-process board, shared by ``name`` (every node of one process that names it sees the same one)."""

    _boards: ClassVar[dict[str, dict[str, dict[str, Any]]]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, name: str = "default") -> None:
        with self._lock:
            self._data = self._boards.setdefault(name, {})

    @classmethod
    def clear(cls, name: str) -> None:
        with cls._lock:
            cls._boards.pop(name, None)

    def publish(self, agent: str, round: int, groups: list[SharedGroup]) -> None:
        with self._lock:
            self._data[agent] = {"round": round, "groups": [asdict(g) for g in groups]}

    def read(self, exclude: str) -> tuple[list[SharedGroup], int]:
        with self._lock:
            payloads = [g for a, pub in self._data.items() if a != exclude for g in pub["groups"]]
        return _parse_all(payloads)


class DirBoard:
    """One ``<agent>.json`` per agent in directory ``name``; atomic writes, unreadable files counted as skipped."""

    def __init__(self, name: str) -> None:
        self.path = Path(name)
        self.path.mkdir(parents=True, exist_ok=True)

    def publish(self, agent: str, round: int, groups: list[SharedGroup]) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.path, prefix=f".{agent}.", suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump({"round": round, "groups": [asdict(g) for g in groups]}, f)
        os.replace(tmp, self.path / f"{agent}.json")

    def read(self, exclude: str) -> tuple[list[SharedGroup], int]:
        payloads: list[Any] = []
        bad = 0
        for file in sorted(self.path.glob("*.json")):
            if file.stem == exclude:
                continue
            try:
                payloads += list(json.loads(file.read_text())["groups"])
            except (OSError, ValueError, KeyError, TypeError):
                bad += 1
        groups, malformed = _parse_all(payloads)
        return groups, bad + malformed


class _BoardActor:
    """The Ray actor behind :class:`RayBoard` (an in-memory board in its own process)."""

    def __init__(self) -> None:
        self.data: dict[str, dict[str, Any]] = {}

    def publish(self, agent: str, round: int, groups: list[dict[str, Any]]) -> None:
        self.data[agent] = {"round": round, "groups": groups}

    def read(self, exclude: str) -> list[dict[str, Any]]:
        return [g for a, pub in self.data.items() if a != exclude for g in pub["groups"]]


class RayBoard:
    """A named Ray actor shared by every node of the Ray cluster (created by the first that asks)."""

    def __init__(self, name: str, timeout_s: float = 30.0) -> None:
        import ray  # lazy: optional dependency

        if not ray.is_initialized():  # a node run alone: a local Ray on loopback (the swarm's nodes share one)
            ray.init(address="local", _node_ip_address="127.0.0.1", include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
        self.ray, self.timeout_s = ray, timeout_s
        self.actor = _board_actor(ray, f"rollwise-swarm-{name}")

    def publish(self, agent: str, round: int, groups: list[SharedGroup]) -> None:
        self.ray.get(self.actor.publish.remote(agent, round, [asdict(g) for g in groups]), timeout=self.timeout_s)

    def read(self, exclude: str) -> tuple[list[SharedGroup], int]:
        return _parse_all(self.ray.get(self.actor.read.remote(exclude), timeout=self.timeout_s))


def _board_actor(ray: Any, name: str, tries: int = 5) -> Any:
    """The named board actor, created if no node has yet. Nodes that start together race to create it; a lookup
    first, then ``get_if_exists``, then a lookup again (the name taken between the two) settles the race."""
    for attempt in range(tries):
        try:
            return ray.get_actor(name)
        except ValueError:  # no actor of that name (yet)
            pass
        try:
            return ray.remote(num_cpus=0, max_restarts=-1)(_BoardActor).options(
                name=name, get_if_exists=True, lifetime="detached").remote()
        except ValueError:  # another node took the name between the lookup and the creation
            time.sleep(0.1 * (attempt + 1))
    return ray.get_actor(name)


BOARDS: Registry[Any] = Registry("swarm board")
"""Board name -> class called with the board's ``name`` (a dict name, a directory, a Ray actor name)."""
BOARDS.register("memory", MemoryBoard, doc="a dict in this process, shared by name (tests, one-process swarms)")
BOARDS.register("dir", DirBoard, doc="one JSON file per agent in a directory (processes on one machine or NFS)")
BOARDS.register("ray", RayBoard, doc="a named Ray actor (nodes as Ray actors, one machine or a cluster)")

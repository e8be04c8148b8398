"""``openenv``: a client of an OpenEnv environment server (``pip install -e ".[openenv]"``), over OpenEnv's own
WebSocket protocol (its ``GenericEnvClient``: ``{"type": "reset" | "step", "data": ...}``, one session per
connection, so one connection per episode).

``[env] type = "openenv"``, ``url = "http://127.0.0.1:8000"`` (a server you started: ``openenv serve``, a
container, or :func:`openenv.core.env_server.http_server.create_app` behind uvicorn), ``action_field`` (the
field of the server's action that carries the policy's text, e.g. ``message``) and ``observation_field`` (the
field of its observation shown to the policy, e.g. ``prompt``). A task is a seed passed to ``reset(seed=...)``;
``tasks`` draws ``train`` and ``eval`` seeds from separate streams.

Rewards are the server's, unchanged: OpenEnv's ``None`` ("no reward this step") counts as 0 before the last step
and is a ``not_a_number`` fault on it (OpenEnv's server writes a NaN or infinite reward as JSON ``null``, so a
NaN on the last step arrives as ``None``: never trained on as 0; one before the last step is indistinguishable
from "no reward"); anything else that is not a finite number in ``reward_range`` is a fault the loop counts and
drops (OpenEnv#1199: NaN rewards passed through); an observation without ``observation_field`` is
``malformed``; a server that is unreachable, answers with an error or raises is an ``error`` fault, one that
hangs a ``timeout``. ``info["success"]``: the episode ended with a reward of at least ``success_reward``.

Registered as ``[env] type = "openenv"``. It has no scripted player, so a run on the embedded model sets
``warmstart.enabled = false`` (or ``model.path``); the CPU component tests load its knobs but do not train it
(they need a server): ``tests/envs/test_openenv_env.py`` trains it through a loopback server.

The environment protocol has no ``close``: the adapter closes its connection when the episode ends, and a
finalizer closes one left open (an episode cut by a turn or token limit, or abandoned after a timeout) when the
loop drops the environment.
"""

from __future__ import annotations

import numbers
import random
import threading
import weakref
from typing import Any

from pydantic import Field

from rollwise.envs.base import EnvKnobs, StepResult
from rollwise.types import Prompt


class OpenEnvKnobs(EnvKnobs):
    """Knobs of ``openenv``."""

    url: str = Field("http://127.0.0.1:8000", min_length=1, description="base URL of the OpenEnv server "
                     "(http:// or ws://; the client talks to its /ws endpoint)")
    action_field: str = Field("message", min_length=1, description="the action field that carries the policy's text")
    observation_field: str = Field("prompt", min_length=1, description="the observation field shown to the policy")
    success_reward: float = Field(1.0, allow_inf_nan=False, description="an episode that ends with at least this "
                                  "reward counts as solved (env/success)")
    connect_timeout_s: float = Field(5.0, gt=0, le=600, description="seconds to open the connection")
    timeout_s: float = Field(10.0, gt=0, le=3600, description="seconds one reset or step may take; longer is a "
                             "'timeout' fault and the episode is dropped")


def _close(client: Any) -> None:
    try:
        client.close()
    except Exception:  # noqa: BLE001 - best effort: the server may be gone
        pass


def _close_soon(client: Any) -> None:
    """Close in a thread of its own: a finalizer may run in any thread (the cyclic collector's), one serving the
    other end of this connection included, and a close waits for the server's reply."""
    threading.Thread(target=_close, args=(client,), daemon=True, name="rollwise-openenv-close").start()


class OpenEnvClient:
    """One episode against an OpenEnv server (module docstring)."""

    Config = OpenEnvKnobs

    def __init__(self, url: str = "http://127.0.0.1:8000", action_field: str = "message",
                 observation_field: str = "prompt", success_reward: float = 1.0,
                 connect_timeout_s: float = 5.0) -> None:
        self.url, self.action_field, self.observation_field = url, action_field, observation_field
        self.success_reward, self.connect_timeout_s = success_reward, connect_timeout_s
        self.client: Any = None

    def tasks(self, split: str, size: int, seed: int) -> list[Prompt]:
        """``size`` reset seeds drawn with ``seed``, from a stream of their own per split."""
        rng = random.Random(f"openenv:{split}:{seed}")
        seeds = [rng.randrange(2**31) for _ in range(size)]
        return [Prompt(f"openenv-{split}-{i}", f"openenv seed {s}", str(s), {"seed": s}) for i, s in enumerate(seeds)]

    def _connect(self) -> Any:
        try:
            from openenv.core import GenericEnvClient  # lazy: optional dependency (rollwise[openenv])
        except ImportError:
            raise RuntimeError("the openenv environment needs 'openenv-core' (pip install -e '.[openenv]')") from None
        client = GenericEnvClient(base_url=self.url, connect_timeout_s=self.connect_timeout_s).sync()
        weakref.finalize(self, _close_soon, client)  # the protocol has no close: when the loop drops the episode
        return client

    def _observation(self, obs: Any) -> Any:
        """The observation field as text; the whole observation (malformed) when it lacks the field."""
        if isinstance(obs, dict) and isinstance(obs.get(self.observation_field), str):
            return obs[self.observation_field]
        return obs

    def reset(self, task: Prompt) -> Any:
        self.client = self._connect()
        got = self.client.reset(seed=int(task.meta.get("seed", task.reference)))
        return self._observation(got.observation)

    def step(self, action: str) -> StepResult:
        try:
            got = self.client.step({self.action_field: action})
        except BaseException:  # the episode is dropped: end its session now
            _close_soon(self.client)
            raise
        done = bool(got.done)
        # OpenEnv: None = no reward this step; but an episode ends with one (its JSON writes NaN and inf as null)
        reward = 0.0 if got.reward is None and not done else got.reward
        if done:
            _close(self.client)
        success = done and isinstance(reward, numbers.Real) and reward >= self.success_reward
        return StepResult(None if done else self._observation(got.observation), reward, done, {"success": success})

"""The environment protocol: what a multi-turn episode is, how its limits are set, and how an untrusted
environment's faults are named.

An environment instance plays one episode at a time::

    env = ENVIRONMENTS.get(name)(**knobs)          # knobs: the env's own plus the shared limits (EnvKnobs)
    messages = env.reset(task)                     # first observation: chat messages [{"role", "content"}]
    result = env.step(action_text)                 # StepResult(observation, reward, done, info)

and lists its procedural tasks (``env.tasks(split, size, seed)``, each a :class:`rollwise.types.Prompt` whose
``uid`` plays the prompt id). The agent loop (``envs/loop.py``) makes a fresh instance per episode, so an
environment keeps its episode state in ``self``.

Environments are untrusted (OpenEnv#1199: rewards an agent can tamper with, NaN passed through). Every call into
one goes through :func:`guarded_call` and every reward through :func:`check_reward`; a failure is a *fault* of
one of the kinds in :data:`ENV_FAULTS`, and its episode is dropped (after ``retries`` tries played again from the
start, ``envs/retry.py``), never trained on. A turn or token limit is not
a fault: it ends the episode cleanly with what it earned.
"""

from __future__ import annotations

import math
import numbers
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

from pydantic import Field, model_validator

from rollwise.components import Knobs, knobs
from rollwise.registry import Registry
from rollwise.types import Prompt

Message = dict[str, str]  # {"role": "user" | "assistant" | "system", "content": text}

ENV_FAULTS = ("error", "timeout", "malformed", "not_a_number", "nan", "inf", "out_of_range")
"""Kinds of environment fault (metrics ``env/faults_<kind>``): reset/step raised; ran past ``timeout_s``;
returned something that is not a StepResult / message list; a reward that is not a real number, is NaN, is
infinite, or lies outside ``reward_range``."""


@dataclass
class StepResult:
    """What one ``step`` returns: the next observation (messages shown to the policy; ignored once done), the
    step's reward, whether the episode ended, and free-form info (``info["success"]``: the task was solved)."""

    observation: list[Message] | str | None
    reward: float
    done: bool
    info: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Env(Protocol):
    """One episode's environment (a fresh instance per episode)."""

    def reset(self, task: Prompt) -> list[Message] | str: ...

    def step(self, action: str) -> StepResult: ...


@runtime_checkable
class StepEnv(Env, Protocol):
    """Optional extensions the step-level methods use (PivotRL arXiv 2603.21383, UI-S1 arXiv 2509.11543): the
    episode state copied and put back (branch at turn t, or restore the expert's), the expert's actions of a task
    (None: unknown), and a functional per-step check of an action from a state (1 = a correct step, also one
    that differs from the expert's string). ``envs/chain.py`` implements them."""

    def snapshot(self) -> Any: ...

    def restore(self, state: Any) -> None: ...

    def expert(self, task: Prompt) -> list[str] | None: ...

    def action_reward(self, state: Any, action: str) -> float: ...


class EnvKnobs(Knobs):
    """Knobs every environment shares (limits and fault handling); an environment's ``Config`` extends them."""

    max_turns: int = Field(8, ge=1, description="turns (policy actions) per episode; an episode still running "
                           "after them ends cleanly with finish 'max_turns'")
    max_tokens: int = Field(256, ge=2, description="tokens per episode, context and actions together (the model's "
                            "window); an episode with no room left for an action ends with finish 'max_tokens'")
    timeout_s: float = Field(10.0, gt=0, le=86400, description="seconds one reset or step may take; longer is a "
                             "'timeout' fault and the episode is dropped")
    reward_range: tuple[float, float] = Field((0.0, 1.0), description="step rewards allowed [low, high]; one "
                                              "outside is an 'out_of_range' fault")
    credit: Literal["return", "to_go"] = Field("return", description="what each turn is trained with: 'return' "
                                               "(its episode's return, on every turn) or 'to_go' (the discounted "
                                               "rewards from that turn on: sum_k gamma^(k-t) r_k)")
    gamma: float = Field(1.0, ge=0, le=1, description="credit 'to_go': discount per turn")
    retries: int = Field(0, ge=0, le=16, description="times an episode whose environment faulted is played again "
                         "(from its start, counted in env/retries) before it is dropped; 0 = dropped at once")
    workers: int = Field(0, ge=0, le=256, description="environment workers: 0 = environments in the rollout "
                         "process, turn by turn; N = N Ray actors of their own, stepped while the engine generates "
                         "(envs/worker.py)")

    @model_validator(mode="after")
    def _check(self) -> EnvKnobs:
        lo, hi = self.reward_range
        if not lo <= hi:
            raise ValueError(f"reward_range needs low <= high, got {self.reward_range}")
        return self


class EnvFault(Exception):
    """An environment call failed; ``kind`` is one of :data:`ENV_FAULTS`."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind, self.detail = kind, detail


def check_reward(value: Any, reward_range: tuple[float, float]) -> float:
    """The reward as a float, or :class:`EnvFault` naming why it cannot be trained on (a bool counts as 0/1)."""
    if not isinstance(value, numbers.Real):
        raise EnvFault("not_a_number", f"reward {value!r} of type {type(value).__name__}")
    x = float(value)
    if math.isnan(x):
        raise EnvFault("nan", "reward is NaN")
    if math.isinf(x):
        raise EnvFault("inf", f"reward is {x}")
    lo, hi = reward_range
    if not lo <= x <= hi:
        raise EnvFault("out_of_range", f"reward {x} outside [{lo}, {hi}]")
    return x


def check_messages(obs: Any) -> list[Message]:
    """An observation as chat messages: a plain string is one user message; None is none."""
    if obs is None:
        return []
    if isinstance(obs, str):
        return [{"role": "user", "content": obs}]
    if isinstance(obs, list) and all(isinstance(m, dict) and isinstance(m.get("content"), str)
                                     and isinstance(m.get("role", "user"), str) for m in obs):
        return [{"role": m.get("role", "user"), "content": m["content"]} for m in obs]
    raise EnvFault("malformed", f"observation {obs!r:.80} is not a string or a list of messages")


def check_step(got: Any, reward_range: tuple[float, float]) -> tuple[list[Message], float, bool, dict[str, Any]]:
    """A ``step`` result checked: (observation messages, reward, done, info), else :class:`EnvFault`."""
    if isinstance(got, tuple) and len(got) == 4:  # gym-style (obs, reward, done, info)
        got = StepResult(*got)
    if not isinstance(got, StepResult):
        raise EnvFault("malformed", f"step returned {type(got).__name__}, not a StepResult")
    reward = check_reward(got.reward, reward_range)
    done = bool(got.done)
    info = got.info if isinstance(got.info, dict) else {}
    return ([] if done else check_messages(got.observation)), reward, done, info


T = TypeVar("T")


def guarded_call(fn: Callable[..., T], *args: Any, timeout_s: float) -> T:
    """``fn(*args)`` with any exception turned into an 'error' fault and a run past ``timeout_s`` into a
    'timeout' fault. The call runs in a daemon thread: a hung environment cannot be killed from Python, so it is
    abandoned (its episode dropped) and the loop goes on."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - an environment may raise anything
            box["error"] = exc

    t = threading.Thread(target=run, daemon=True, name="rollwise-env-call")
    t.start()
    t.join(timeout_s)
    if t.is_alive():
        raise EnvFault("timeout", f"no answer within {timeout_s:g} s")
    if "error" in box:
        exc = box["error"]
        raise EnvFault("error", f"{type(exc).__name__}: {exc}")
    return box["value"]


ENVIRONMENTS: Registry[Any] = Registry("environment", knobs_from_entry=False)
"""Environment name -> class (called with its knobs, one instance per episode); knobs from ``config=``."""


def env_factory(env_cfg: Any) -> Callable[[], Any]:
    """A new environment of ``env_cfg.type`` with its own knobs (the shared limits stay with the loop)."""
    cls = ENVIRONMENTS.get(env_cfg.type)
    own = {k: v for k, v in knobs(env_cfg).items() if k not in EnvKnobs.model_fields}
    return lambda: cls(**own)

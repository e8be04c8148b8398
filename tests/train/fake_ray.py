"""An in-process stand-in for the few Ray calls ``AsyncRollouts`` makes, so its scheduler runs deterministically
without Ray (and without its processes or timing): actors are plain objects in this process.

- ``eager=True`` ("generation is fast"): a round runs the moment it is sent, so it finishes before the trainer
  publishes anything newer;
- ``eager=False`` ("generation is slow"): a round runs only when the trainer waits for it, so every weight
  version published meanwhile has landed first.

Control calls (weights, stats, pids) always run at once, as the workers' own concurrency group does. A round
numbered in ``kill_on_round`` (in sending order) dies with its worker: the actor is rebuilt, as Ray's
``max_restarts`` does, and every round sent to the dead incarnation fails with ``ActorDiedError`` (rounds queued
behind the killed one included, as Ray fails the tasks of a dead actor with ``max_task_retries=0``). Other calls
(an environment worker's ``reset`` / ``step``) run when their result is asked for; the one numbered in
``kill_on_call`` (in sending order; calls to other methods than ``kill_methods`` are not numbered) kills its actor
the same way, and every call sent to a dead incarnation fails.
"""

from __future__ import annotations

import sys
import types
from typing import Any


class RayActorError(Exception):
    pass


class ActorDiedError(RayActorError):
    pass


class ActorUnavailableError(RayActorError):
    pass


class GetTimeoutError(Exception):
    pass


class RayTaskError(Exception):
    def __init__(self, cause: BaseException) -> None:
        super().__init__(repr(cause))
        self.cause = cause


class Ref:
    def __init__(self, fn: Any = None, value: Any = None) -> None:
        self.fn, self.value, self.error = fn, value, None

    def resolve(self) -> Any:
        if self.fn is not None:
            fn, self.fn = self.fn, None
            try:
                self.value = fn()
            except RayActorError as exc:
                self.error = exc
            except Exception as exc:  # the actor's own code raised
                self.error = RayTaskError(exc)
        if self.error is not None:
            raise self.error
        return self.value


class _Method:
    def __init__(self, actor: Actor, name: str, group: str | None = None) -> None:
        self.actor, self.name, self.group = actor, name, group

    def options(self, concurrency_group: str | None = None, **_: Any) -> _Method:
        return _Method(self.actor, self.name, concurrency_group)

    def remote(self, *args: Any) -> Ref:
        return self.actor.ray.call(self.actor, self.name, self.group, args)


class Actor:
    def __init__(self, ray: FakeRay, cls: type, args: tuple) -> None:
        self.ray, self.cls, self.args = ray, cls, args
        self.instance = cls(*args)
        self.incarnation = 0

    def restart(self) -> None:
        self.instance = self.cls(*self.args)
        self.incarnation += 1

    def __getattr__(self, name: str) -> _Method:
        return _Method(self, name)


class _ActorClass:
    def __init__(self, ray: FakeRay, cls: type) -> None:
        self.ray, self.cls = ray, cls

    def options(self, **_: Any) -> _ActorClass:
        return self

    def remote(self, *args: Any) -> Actor:
        actor = Actor(self.ray, self.cls, args)
        self.ray.actors.append(actor)
        return actor


class FakeRay(types.ModuleType):
    def __init__(self, eager: bool = True) -> None:
        super().__init__("ray")
        self.eager = eager
        self.actors: list[Actor] = []
        self.rounds: list[tuple[int, int, int]] = []  # (actor index, job version, worker weights when it ran)
        self.kill_on_round: set[int] = set()  # rounds (in sending order) whose worker dies under them
        self.sent = 0
        self.kill_on_call: set[int] = set()  # other non-control calls (in sending order) whose actor dies under them
        self.calls = 0
        self.kill_methods = ("reset", "step")  # the calls kill_on_call numbers (a fire-and-forget close never runs)

    def is_initialized(self) -> bool:
        return True

    def remote(self, **_: Any) -> Any:
        return lambda cls: _ActorClass(self, cls)

    def put(self, value: Any) -> Ref:
        return Ref(value=value)

    def call(self, actor: Actor, name: str, group: str | None, args: tuple) -> Ref:
        args = tuple(a.resolve() if isinstance(a, Ref) else a for a in args)  # as Ray resolves top-level refs
        if name == "pid":  # one process per incarnation of each actor
            return Ref(value=1000 * (self.actors.index(actor) + 1) + actor.incarnation)
        if name != "run" and group is not None:  # control calls land at once
            ref = Ref(lambda: getattr(actor.instance, name)(*args))
            ref.resolve()
            return ref
        if name != "run":
            index, incarnation = (self.calls if name in self.kill_methods else -1), actor.incarnation
            self.calls += name in self.kill_methods

            def call() -> Any:
                if index in self.kill_on_call and actor.incarnation == incarnation:
                    actor.restart()
                if actor.incarnation != incarnation:
                    raise ActorDiedError(f"the actor died under call {index}")
                return getattr(actor.instance, name)(*args)

            return Ref(call)
        index, self.sent = self.sent, self.sent + 1
        incarnation = actor.incarnation

        def run() -> Any:
            if index in self.kill_on_round and actor.incarnation == incarnation:  # dies under the round
                actor.restart()
            if actor.incarnation != incarnation:
                raise ActorDiedError(f"the actor died under round {index}")
            out = actor.instance.run(*args)
            self.rounds.append((self.actors.index(actor), args[0].version, actor.instance.version))
            return out

        ref = Ref(run)
        if self.eager:
            try:
                ref.resolve()
            except Exception:
                pass  # kept on the reference, raised by get
        return ref

    def wait(self, refs: list[Ref], num_returns: int = 1, **_: Any) -> tuple[list[Ref], list[Ref]]:
        return refs[:num_returns], refs[num_returns:]  # oldest first, as a single worker finishes them

    def get(self, ref: Any, timeout: float | None = None) -> Any:
        if isinstance(ref, list):
            return [self.get(r) for r in ref]
        return ref.resolve()

    def kill(self, actor: Actor) -> None:
        pass

    def shutdown(self) -> None:
        pass


def install(monkeypatch: Any, eager: bool = True) -> FakeRay:
    """Put a :class:`FakeRay` where ``import ray`` finds it (and its ``ray.exceptions``) for one test."""
    fake = FakeRay(eager)
    exc = types.ModuleType("ray.exceptions")
    for cls in (RayActorError, ActorDiedError, ActorUnavailableError, GetTimeoutError, RayTaskError):
        setattr(exc, cls.__name__, cls)
    fake.exceptions = exc  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ray", fake)
    monkeypatch.setitem(sys.modules, "ray.exceptions", exc)
    return fake

"""The agent loop: roll out a batch of episodes through the engine API, one turn of every live episode per
``generate`` call.

Each episode's context is a growing list of token ids: the first observation, then per turn the action tokens
*as sampled* (never re-tokenised text, so the trainer scores exactly what the engine sampled) and the
environment's next observation. The context is the prompt of the next turn, so environment text is context
(never in a loss) and each action keeps its behaviour logprobs and weight versions. A :class:`TurnFormat` says
how messages become tokens: :class:`PlainFormat` (a model without a chat template: message texts back to back,
an action's stop token dropped from the context) or :class:`rollwise.envs.chat.ChatFormat` (the tokenizer's chat
template across turns).

Limits end an episode cleanly: ``max_turns`` actions (fewer for a task whose ``meta["max_turns"]`` says so), or
``max_tokens`` of context and action together (an action is given at most the room left, so every turn fits the
model's window). An environment fault (see
``envs/base.py``) ends the episode with ``fault`` set; the caller drops it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from rollwise.envs.base import EnvFault, EnvKnobs, Message, check_messages, check_step, guarded_call
from rollwise.generation.base import Engine, SamplingParams
from rollwise.types import Prompt

FINISHES = ("done", "max_turns", "max_tokens", "fault")


@dataclass
class Turn:
    """One policy action with the context it was sampled from."""

    context_ids: list[int]  # [S] the conversation before the action (observations and earlier actions)
    action_ids: list[int]  # [A] sampled tokens (with the stop token when it stopped)
    logprobs: list[float]  # [A] behaviour logprobs
    versions: list[int]  # [A] weight version of each token
    finish_reason: str  # the engine's: "stop" | "length"
    text: str  # the action text the environment saw
    reward: float = 0.0  # the environment's reward for this step


@dataclass
class Episode:
    """One task's episode: its turns, return and how it ended."""

    task_index: int  # pool index of the task (plays the prompt id)
    turns: list[Turn] = field(default_factory=list)
    finish: str = ""  # one of FINISHES
    fault: str | None = None  # the fault kind when finish == "fault"
    fault_detail: str = ""
    success: bool = False  # the environment said the task was solved (``info["success"]``)
    tokens: int = 0  # context + actions at the end (the episode's length)
    info: dict[str, Any] = field(default_factory=dict)  # the last step's info
    earlier: list[Episode] = field(default_factory=list)  # faulted tries played again (env.retries), never trained
    uid: str = ""  # the episode's id in its run (set by the collector: which request, which of its episodes)

    @property
    def episode_return(self) -> float:
        return float(sum(t.reward for t in self.turns))

    @property
    def num_turns(self) -> int:
        return len(self.turns)


class TurnFormat(Protocol):
    """How messages and actions become context tokens."""

    def first(self, messages: list[Message]) -> list[int]: ...  # the first observation

    def after(self, action_ids: list[int], messages: list[Message]) -> list[int]: ...  # an action + observation


class PlainFormat:
    """No chat template: message texts back to back; an action's stop token is not kept in the context (the
    model never sees it mid-conversation, as in its warm start)."""

    def __init__(self, encode: Callable[[str], list[int]], stop_ids: tuple[int, ...]) -> None:
        self.encode, self.stop_ids = encode, set(stop_ids)

    def first(self, messages: list[Message]) -> list[int]:
        return self.encode("".join(m["content"] for m in messages))

    def after(self, action_ids: list[int], messages: list[Message]) -> list[int]:
        ids = action_ids[:-1] if action_ids and action_ids[-1] in self.stop_ids else action_ids
        return list(ids) + self.first(messages)


@dataclass
class _Live:
    episode: Episode
    env: Any
    context: list[int]
    max_turns: int = 0  # this task's turn limit


class AgentLoop:
    """Drives an environment class and an engine: :meth:`run` plays one episode per task given."""

    def __init__(self, engine: Engine, make_env: Callable[[], Any], fmt: TurnFormat, limits: EnvKnobs) -> None:
        self.engine, self.make_env, self.fmt, self.limits = engine, make_env, fmt, limits

    def run(self, tasks: list[Prompt], task_index: list[int], params: SamplingParams,
            version: int = 0) -> list[Episode]:
        """Play ``tasks[i]`` once each (its pool index ``task_index[i]``); every turn of every live episode is
        sampled in one ``generate`` call per room size (all alike unless an episode nears ``max_tokens``)."""
        lim = self.limits
        # the format's own stop tokens too (a chat template's end-of-turn token may not be the model's eos)
        stops = tuple(dict.fromkeys((*params.stop_token_ids, *sorted(getattr(self.fmt, "stop_ids", ())))))
        live = [self._reset(t, i) for t, i in zip(tasks, task_index)]
        episodes = [x.episode for x in live]
        active = [x for x in live if not x.episode.finish]
        for turn in range(max([x.max_turns for x in active], default=0) + 1):
            rooms: dict[int, list[_Live]] = {}
            for x in active:
                room = lim.max_tokens - len(x.context)
                if turn >= x.max_turns:
                    self._finish(x, "max_turns")
                elif room < 1:
                    self._finish(x, "max_tokens")
                else:
                    rooms.setdefault(min(room, params.max_new_tokens), []).append(x)
            for k, (room, batch) in enumerate(sorted(rooms.items())):
                p = SamplingParams(params.temperature, params.top_p, room, stops,
                                   None if params.seed is None else params.seed + 1_000_003 * turn + 7919 * k)
                got = self.engine.generate([x.context for x in batch], [1] * len(batch), p)
                for x, (c,) in zip(batch, got):
                    self._step(x, Turn(list(x.context), list(c.token_ids), list(c.logprobs),
                                       list(c.versions) or [version] * len(c.token_ids), c.finish_reason, c.text))
            active = [x for x in active if not x.episode.finish]
            if not active:
                break
        return episodes

    def _reset(self, task: Prompt, index: int) -> _Live:
        ep = Episode(index)
        x = _Live(ep, None, [], min(self.limits.max_turns, int(task.meta.get("max_turns", self.limits.max_turns))))
        try:
            x.env = guarded_call(self.make_env, timeout_s=self.limits.timeout_s)
            first = check_messages(guarded_call(x.env.reset, task, timeout_s=self.limits.timeout_s))
        except EnvFault as f:
            self._fault(x, f)
            return x
        x.context = self.fmt.first(first)
        return x

    def _step(self, x: _Live, turn: Turn) -> None:
        x.episode.turns.append(turn)
        try:
            obs, reward, done, info = check_step(guarded_call(x.env.step, turn.text, timeout_s=self.limits.timeout_s),
                                                 self.limits.reward_range)
        except EnvFault as f:
            self._fault(x, f)
            return
        turn.reward = reward
        x.episode.info = info
        if done:
            x.episode.success = bool(info.get("success", False))
            x.context = x.context + turn.action_ids
            self._finish(x, "done")
        else:
            x.context = x.context + self.fmt.after(turn.action_ids, obs)

    def _fault(self, x: _Live, f: EnvFault) -> None:
        x.episode.fault, x.episode.fault_detail = f.kind, f.detail
        self._finish(x, "fault")

    @staticmethod
    def _finish(x: _Live, how: str) -> None:
        x.episode.finish = how
        last = x.episode.turns[-1] if x.episode.turns else None
        x.episode.tokens = max(len(x.context), len(last.context_ids) + len(last.action_ids) if last else 0)

"""``textarena``: TextArena's single-player games as multi-turn environments (``pip install -e ".[textarena]"``).

``[env] type = "textarena"``, ``game = "GuessTheNumber-v0"`` (any TextArena id: ``TowerOfHanoi-v0``,
``Mastermind-v0``, ``Minesweeper-v0-small``, ``FrozenLake-v0``, ...; an unknown id is a one-line error at load
naming the closest ones) and ``options`` (the game's own constructor arguments over the id's, e.g.
``{max_number = 15}``; checked at load against its signature). A task is a game seed: ``tasks`` draws
``train`` and ``eval`` seeds from separate streams.

The game is built without TextArena's wrappers (its observation wrapper re-sends the whole history each turn;
the agent loop keeps the conversation itself): the first observation is the game's prompt (and board), each
step's observation the messages the game sent after the action (not its echo of the action), one per line.
``bracket`` does what TextArena's action-formatting wrapper does: an action with no ``[`` or ``]`` is sent as
``[action]``. The reward is the game's own, given when it ends (``close()``: 1 for a win, the game's partial
credit or a penalty otherwise, hence ``reward_range = (-1, 1)``); ``info["success"]`` is a reward of 1. A reward
that is missing, NaN, infinite or not a number is passed on unchanged, so the loop counts it as a fault and
drops the episode; a game that raises is an ``error`` fault. TextArena seeds Python's global ``random`` in
``reset``: the adapter restores the caller's state after every call into the game.

Wordle needs NLTK's ``words`` corpus, which is not shipped (NLTK downloads it): offline, building the game
faults (``error``) and every episode is dropped. The warm start of the embedded model plays
:func:`scripted_guess_the_number` on ``GuessTheNumber`` (other games have no scripted player: warm-start a real
model, ``model.path``).
"""

from __future__ import annotations

import difflib
import inspect
import numbers
import random
import re
from collections.abc import Callable, Iterator
from typing import Any

from pydantic import Field, field_validator, model_validator

from rollwise.envs.base import EnvKnobs, StepResult
from rollwise.types import Prompt

PLAYER = 0


def _registry() -> dict[str, Any]:
    try:
        from textarena.envs.registration import ENV_REGISTRY  # lazy: optional dependency (rollwise[textarena])
    except ImportError:
        raise ValueError("textarena games need the 'textarena' package (pip install -e '.[textarena]')") from None
    return ENV_REGISTRY


def game_class(game: str) -> tuple[Callable[..., Any], dict[str, Any]]:
    """The game's class (its entry point, no wrappers) and the id's constructor arguments."""
    from rollwise.registry import import_object

    spec = _registry()[game]
    return import_object(spec.entry_point), dict(spec.kwargs or {})


class TextArenaKnobs(EnvKnobs):
    """Knobs of ``textarena``."""

    game: str = Field("GuessTheNumber-v0", description="TextArena game id (single-player), e.g. GuessTheNumber-v0, "
                      "TowerOfHanoi-v0, Mastermind-v0")
    options: dict[str, Any] = Field({}, description="the game's constructor arguments over the id's (e.g. "
                                    "{max_number = 15}; checked against its signature)")
    bracket: bool = Field(True, description="send an action with no [ or ] as [action] (TextArena's action "
                          "formatting)")
    max_turns: int = Field(10, ge=1, description="turns (actions) per episode; the game may end it sooner")
    max_tokens: int = Field(1024, ge=2, description="tokens per episode, context and actions together (TextArena's "
                            "prompts run to several hundred characters)")
    timeout_s: float = Field(10.0, gt=0, le=3600, description="seconds one reset or step may take; longer is a "
                             "'timeout' fault and the episode is dropped")
    reward_range: tuple[float, float] = Field((-1.0, 1.0), description="game rewards allowed [low, high] "
                                              "(TextArena: 1 a win, partial credit or a penalty otherwise)")

    @field_validator("game")
    @classmethod
    def _known_game(cls, v: str) -> str:
        names = sorted(_registry())
        if v not in names:
            close = difflib.get_close_matches(v, names, n=3, cutoff=0.6)
            raise ValueError(f"unknown textarena game {v!r}; " + ("did you mean " + " or ".join(map(repr, close))
                                                                  + "?" if close else "see textarena's registry"))
        return v

    @model_validator(mode="after")
    def _known_options(self) -> TextArenaKnobs:
        cls, _ = game_class(self.game)
        params = inspect.signature(cls.__init__).parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        unknown = sorted(k for k in self.options if k not in params or k == "self")
        if unknown and not takes_any:
            raise ValueError(f"options: {self.game} takes no {unknown}; it takes "
                             f"{sorted(k for k in params if k != 'self')}")
        return self


class TextArenaGame:
    """One TextArena single-player game episode through the Env protocol (module docstring)."""

    Config = TextArenaKnobs

    def __init__(self, game: str = "GuessTheNumber-v0", options: dict[str, Any] | None = None,
                 bracket: bool = True) -> None:
        cls, kwargs = game_class(game)
        self.game, self.bracket = game, bracket
        self.env = cls(**(kwargs | dict(options or {})))

    def tasks(self, split: str, size: int, seed: int) -> list[Prompt]:
        """``size`` game seeds drawn with ``seed``, from a stream of their own per split."""
        rng = random.Random(f"textarena:{self.game}:{split}:{seed}")
        seeds = [rng.randrange(2**31) for _ in range(size)]
        return [Prompt(f"ta-{self.game}-{split}-{i}", f"{self.game} seed {s}", str(s), {"seed": s, "level": self.game})
                for i, s in enumerate(seeds)]

    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        state = random.getstate()  # TextArena seeds the global random in reset: leave the caller's as it was
        try:
            return fn(*args, **kwargs)
        finally:
            random.setstate(state)

    def _observation(self) -> str:
        _, messages = self._call(self.env.get_observation)
        # the action's echo (some games send it from the game, id -1) is already in the context as sampled
        return "".join(f"{text}\n" for _, text, kind in messages if getattr(kind, "name", "") != "PLAYER_ACTION")

    def reset(self, task: Prompt) -> str:
        self._call(self.env.reset, num_players=1, seed=int(task.meta.get("seed", task.reference)))
        return self._observation()

    def step(self, action: str) -> StepResult:
        text = action.strip()
        if self.bracket and "[" not in text and "]" not in text:
            text = f"[{text}]"
        done, _ = self._call(self.env.step, action=text)
        if not done:
            return StepResult(self._observation(), 0.0, False, {})
        rewards, info = self._call(self.env.close)
        reward = rewards.get(PLAYER) if isinstance(rewards, dict) else None  # missing: a not_a_number fault
        success = isinstance(reward, numbers.Real) and reward >= 1
        game_info = info.get(PLAYER, {}) if isinstance(info, dict) else {}
        return StepResult(None, reward, True, {"success": success, "reason": str(game_info.get("reason", ""))})

    def sft_pairs(self, seed: int, max_turns: int) -> Iterator[tuple[str, str]]:
        """Endless (context, action) pairs of :func:`scripted_guess_the_number` playing this game (GuessTheNumber
        only): the embedded model's warm start, in the game's own words."""
        if not hasattr(self.env, "min_number"):
            raise ValueError(f"textarena game {self.game!r} has no scripted player to warm-start the embedded model; "
                             "set warmstart.enabled = false or model.path")
        rng = random.Random(f"textarena-sft:{self.game}:{seed}")
        while True:
            context = self.reset(Prompt("sft", "", "", {"seed": rng.randrange(2**31)}))
            lo, hi = self.env.min_number, self.env.max_number
            for _ in range(max_turns):
                g = scripted_guess_the_number(lo, hi, rng)
                yield context, f"[{g}]"
                res = self.step(f"[{g}]")
                if res.done:
                    break
                obs = str(res.observation)
                hint = parse_hint(obs)
                lo, hi = (g + 1, hi) if hint == "higher" else (lo, g - 1) if hint == "lower" else (lo, hi)
                context += f"[{g}]" + obs


def scripted_guess_the_number(lo: int, hi: int, rng: random.Random, habit: float = 0.5) -> int:
    """An imperfect player: binary search's guess with probability ``habit``, else a uniform one in ``lo..hi``."""
    return (lo + hi) // 2 if rng.random() < habit else rng.randint(lo, max(lo, hi))


def parse_hint(observation: str) -> str | None:
    """``higher`` / ``lower`` from a GuessTheNumber observation (None: no hint)."""
    m = re.search(r"target number is (higher|lower)", observation)
    return m.group(1) if m else None

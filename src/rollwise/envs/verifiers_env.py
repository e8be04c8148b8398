"""``verifiers``: Prime Intellect's environments (``pip install -e ".[verifiers]"``; its classic API,
``import verifiers as vf``: ``SingleTurnEnv``, ``MultiTurnEnv``, ``ToolEnv``, ... with a dataset and a rubric),
played by their *own* rollout loop.

A verifiers environment drives its episodes itself: it asks an OpenAI-compatible client for each turn
(``env.rollout(input, client, model, sampling_args)``), builds the next prompt from its ``env_response``, and
scores the finished episode with its rubric. rollwise hands it a client backed by the run's engine
(:class:`rollwise.envs.openai_shim.EngineChatServer`, the way prime-rl and SkyRL serve verifiers rollouts from
their own inference engines): every turn's prompt token ids, sampled token ids, behaviour logprobs and weight
versions are recorded, and verifiers' trajectory (one step per model call, with those tokens, as vLLM returns
them) becomes a rollwise :class:`~rollwise.envs.loop.Episode` whose turns go to the trainer as the task's group
of turns, so every estimator, sampler and correction works unchanged.

``[env] type = "verifiers"``, ``environment = "module:function"`` (a function returning a ``vf.Environment``) or
an installed verifiers environment id (``vf.load_environment``), ``env_args`` its keyword arguments. The default,
:func:`guess_environment`, is guess-the-number as a ``vf.MultiTurnEnv`` on an in-memory dataset (no download),
in ``guess``'s own words, so its warm start is ``guess``'s scripted player. A task is a dataset row (``train``:
``dataset``, ``eval``: ``eval_dataset``, else the train rows).

Rewards: the rubric's episode reward on the last turn (0 before), so ``credit = "return"`` and ``to_go`` give it
to every turn; ``info["success"]``: reward >= ``success_reward``. Faults (``envs/base.py``): an episode verifiers
ended with an error (its ``env_response`` raised, the model call failed) or whose rubric function raised (verifiers
logs it and scores 0: never trained on as 0 here) is an ``error``; a rubric still scoring after ``timeout_s`` a
``timeout``; a reward that is not a finite number in ``reward_range`` its own kind. ``max_turns`` and
``max_tokens`` end an episode cleanly (the client answers a request past them with vLLM's context-length error,
which verifiers treats as a prompt too long). A hung ``env_response`` is not interrupted (verifiers' own
``timeout_seconds`` does that). Episodes are played in the rollout process: ``run.mode = "sync"`` and
``env.workers = 0`` only (refused otherwise, before any rollout).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

from pydantic import Field

from rollwise.envs.base import EnvFault, EnvKnobs, check_reward
from rollwise.envs.loop import Episode, Turn, TurnFormat
from rollwise.envs.openai_shim import EngineChatServer
from rollwise.generation.base import Engine, SamplingParams
from rollwise.types import Prompt


class VerifiersKnobs(EnvKnobs):
    """Knobs of ``verifiers``."""

    environment: str = Field("rollwise.envs.verifiers_env:guess_environment", min_length=1, description="the "
                             "verifiers environment: 'module:function' returning a vf.Environment, or an installed "
                             "environment id (vf.load_environment)")
    env_args: dict[str, int | float | str | bool] = Field({}, description="keyword arguments of the environment's "
                                                          "loader (the default's: n, max_turns, turn_decay)")
    success_reward: float | None = Field(None, allow_inf_nan=False, description="an episode whose rubric reward "
                                         "is at least this counts as solved (env/success); default: the "
                                         "environment's pass_threshold (verifiers' default 0.5)")
    model_name: str = Field("rollwise", min_length=1, description="the model name the environment's requests carry")


def _vf() -> Any:
    try:
        import verifiers  # lazy: optional dependency (rollwise[verifiers])
    except ImportError:
        raise RuntimeError("the verifiers environment needs 'verifiers' (pip install -e '.[verifiers]')") from None
    return verifiers


def load_vf_environment(environment: str, env_args: dict[str, Any]) -> Any:
    """``module:function`` called with ``env_args``, else ``vf.load_environment(environment, **env_args)``."""
    vf = _vf()
    if ":" in environment:
        module, attr = environment.split(":", 1)
        return getattr(importlib.import_module(module), attr)(**env_args)
    return vf.load_environment(environment, **env_args)


def guess_environment(n: int = 15, max_turns: int = 5, turn_decay: float = 0.9) -> Any:
    """Guess-the-number as a verifiers ``MultiTurnEnv`` on an in-memory dataset (every secret in ``1..n``, twice
    for train, once for eval), with ``guess``'s texts: opening ``guess 1-n``, replies `` up`` / `` down`` / `` ?``;
    the rubric scores ``turn_decay ** (turns - 1)`` for a solve."""
    from datasets import Dataset

    from rollwise.envs.guess import DOWN, INVALID, UP

    vf = _vf()

    def rows(reps: int) -> Any:
        return Dataset.from_list([{"question": f"guess 1-{n}\n", "answer": str(s)} for s in range(1, n + 1)] * reps)

    class Guess(vf.MultiTurnEnv):
        async def env_response(self, messages: Any, state: Any, **kwargs: Any) -> Any:
            said = messages[-1]["content"] if isinstance(messages[-1], dict) else messages[-1].content
            text = (said or "").strip()
            if text == state["answer"]:  # verifiers' own ending: a final reply, no further model call
                state["solved_on"] = len(state["trajectory"])
                state["final_env_response"] = [vf.UserMessage(content="")]
                return state["final_env_response"]
            if not text.isdigit() or not 1 <= int(text) <= n:
                return [vf.UserMessage(content=INVALID)]
            return [vf.UserMessage(content=UP if int(state["answer"]) > int(text) else DOWN)]

    def solved_reward(state: Any, **kwargs: Any) -> float:
        # the last action is checked here too: the loop stops at max_turns before an env_response reads it
        last = state["trajectory"][-1]["completion"][-1] if state["trajectory"] else None
        said = (last["content"] if isinstance(last, dict) else getattr(last, "content", "")) or ""
        turn = state.get("solved_on") or (len(state["trajectory"]) if said.strip() == state["answer"] else 0)
        return turn_decay ** (turn - 1) if turn else 0.0

    env = Guess(dataset=rows(2), eval_dataset=rows(1), rubric=vf.Rubric(funcs=[solved_reward]), max_turns=max_turns,
                pass_threshold=1e-9)  # any solve is a success (a later one scores less)
    env.rollwise_sft = (n, turn_decay)  # the warm start plays guess's scripted player in these words
    return env


class _RubricErrors(logging.Handler):
    """Counts verifiers' 'Error calling reward function' log records (it scores such a function 0)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += "reward function" in record.getMessage()


class VerifiersEnv:
    """A verifiers environment behind the registry (module docstring). It has no ``reset``/``step``: verifiers
    plays the episodes, through :meth:`agent_loop`."""

    Config = VerifiersKnobs

    def __init__(self, environment: str = "rollwise.envs.verifiers_env:guess_environment",
                 env_args: dict[str, Any] | None = None, success_reward: float | None = None,
                 model_name: str = "rollwise") -> None:
        self.vf_env = load_vf_environment(environment, dict(env_args or {}))
        self.model_name = model_name
        self.success_reward = float(getattr(self.vf_env, "pass_threshold", 0.5) if success_reward is None
                                    else success_reward)

    def tasks(self, split: str, size: int, seed: int) -> list[Prompt]:
        """``size`` rows (cycled) of the dataset, shuffled with ``seed``; ``eval``: the eval rows, each once."""
        rows = self.vf_env.get_eval_dataset() if split == "eval" else self.vf_env.get_dataset(seed=seed)
        count = len(rows) if split == "eval" else size
        out = []
        for i in range(count):
            row = rows[i % len(rows)]
            prompt = row["prompt"]
            text = "".join(m["content"] for m in prompt if isinstance(m.get("content"), str))
            out.append(Prompt(f"vf-{split}-{i}", text, str(row.get("answer", "")),
                              {"vf_row": {k: row[k] for k in ("prompt", "answer", "info", "task", "example_id")
                                          if k in row}}))
        return out

    def sft_pairs(self, seed: int, max_turns: int) -> Iterator[tuple[str, str]]:
        """The warm start's (context, action) pairs: an environment that says it plays like ``guess``
        (``rollwise_sft = (n, turn_decay)``) gets ``guess``'s scripted player; any other has none."""
        sft = getattr(self.vf_env, "rollwise_sft", None)
        if sft is None:
            raise ValueError("this verifiers environment has no scripted player to warm-start the embedded model; "
                             "set warmstart.enabled = false or model.path")
        from rollwise.envs.guess import GuessNumber

        return GuessNumber(n=sft[0], turn_decay=sft[1]).sft_pairs(seed, max_turns)

    def reset(self, task: Prompt) -> Any:
        raise NotImplementedError("a verifiers environment plays its own episodes (VerifiersLoop)")

    def step(self, action: str) -> Any:
        raise NotImplementedError("a verifiers environment plays its own episodes (VerifiersLoop)")

    @staticmethod
    def agent_loop(engine: Engine, make_env: Callable[[], Any], fmt: TurnFormat, limits: EnvKnobs) -> VerifiersLoop:
        """The collector's loop for this environment (``build_episode_collector`` asks every environment class)."""
        if getattr(limits, "workers", 0):
            raise ValueError("env.workers: a verifiers environment plays its own episodes in the rollout process; "
                             "set env.workers = 0")
        return VerifiersLoop(engine, make_env(), fmt, limits)


class VerifiersLoop:
    """The agent loop of a verifiers run: ``run`` has :class:`rollwise.envs.loop.AgentLoop`'s signature."""

    def __init__(self, engine: Engine, env: VerifiersEnv, fmt: TurnFormat, limits: EnvKnobs) -> None:
        self.engine, self.env, self.fmt, self.limits = engine, env, fmt, limits

    def run(self, tasks: list[Prompt], task_index: list[int], params: SamplingParams,
            version: int = 0) -> list[Episode]:
        """Play ``tasks[i]`` once each through the environment's own ``rollout``, all at once on one event loop."""
        server = EngineChatServer(self.engine, self.fmt, params, self.limits.max_tokens, self.limits.max_turns,
                                  version, self.env.model_name)
        box: dict[str, Any] = {}

        def play() -> None:
            try:
                box["states"] = asyncio.run(self._play(server, tasks, params))
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                box["error"] = exc

        thread = threading.Thread(target=play, name="rollwise-verifiers")  # its own event loop, whatever the caller's
        thread.start()
        thread.join()
        if "error" in box:
            raise box["error"]
        return [self._episode(i, st, server) for i, st in zip(task_index, box["states"])]

    async def _play(self, server: EngineChatServer, tasks: list[Prompt], params: SamplingParams) -> list[Any]:
        vf_env = self.env.vf_env
        client = _vf().clients.OpenAIChatCompletionsClient(server.client())
        args = {"temperature": params.temperature, "top_p": params.top_p, "max_tokens": params.max_new_tokens,
                "logprobs": True}
        inputs = [dict(t.meta["vf_row"], example_id=t.meta["vf_row"].get("example_id", i))
                  for i, t in enumerate(tasks)]

        async def one(inp: dict[str, Any]) -> Any:
            try:
                return await vf_env.rollout(inp, client, self.env.model_name, dict(args))
            except Exception as exc:  # noqa: BLE001 - the environment's own failure: this episode's fault
                return {"error": exc, "trajectory": []}
            finally:
                server.live -= 1  # a batch no longer waits for this episode

        server.live = len(inputs)

        states = await asyncio.gather(*(one(inp) for inp in inputs))
        for st in states:  # one at a time: a rubric error logged while scoring belongs to this state
            st["rollwise_fault"] = await self._score(vf_env, st) if st.get("error") is None else None
        return list(states)

    async def _score(self, vf_env: Any, state: Any) -> EnvFault | None:
        handler = _RubricErrors()
        logger = logging.getLogger("verifiers")
        logger.addHandler(handler)
        try:
            await asyncio.wait_for(vf_env.rubric.score_rollout(state), self.limits.timeout_s)
        except TimeoutError:
            return EnvFault("timeout", f"rubric still scoring after {self.limits.timeout_s:g} s")
        except Exception as exc:  # noqa: BLE001 - an untrusted rubric may raise anything
            return EnvFault("error", f"rubric raised {type(exc).__name__}: {exc}")
        finally:
            logger.removeHandler(handler)
        if handler.count:
            return EnvFault("error", f"{handler.count} reward function(s) raised (verifiers scored them 0)")
        return None

    def _episode(self, index: int, state: Any, server: EngineChatServer) -> Episode:
        """verifiers' trajectory as an Episode: one turn per model call, the reward on the last."""
        ep = Episode(index)
        for step in state.get("trajectory") or []:
            rec = server.records.get(getattr(step.get("response"), "id", None) or "")
            tokens = step.get("tokens")
            if rec is None or tokens is None:  # not answered by this server: nothing a trainer can score
                ep.fault, ep.fault_detail, ep.finish = "malformed", "a turn without recorded tokens", "fault"
                return ep
            ep.turns.append(Turn(list(tokens["prompt_ids"]), list(tokens["completion_ids"]),
                                 list(tokens["completion_logprobs"]), rec.versions, rec.finish_reason, rec.text))
        last = ep.turns[-1] if ep.turns else None
        ep.tokens = len(last.context_ids) + len(last.action_ids) if last else 0
        fault = state.get("rollwise_fault")
        if state.get("error") is not None:
            fault = EnvFault("error", f"{type(state['error']).__name__}: {state['error']}")
        if fault is None:
            try:
                reward = check_reward(state.get("reward"), self.limits.reward_range)
            except EnvFault as f:
                fault = f
        if fault is not None:
            ep.fault, ep.fault_detail, ep.finish = fault.kind, fault.detail, "fault"
            return ep
        if last is not None:
            last.reward = reward
        ep.success = reward >= self.env.success_reward
        ep.info = {"stop_condition": state.get("stop_condition"), "reward": reward}
        out_of_turns = ep.num_turns >= self.limits.max_turns or state.get("stop_condition") == "max_turns_reached"
        ep.finish = ("max_turns" if out_of_turns and not ep.success  # rollwise's limit or the environment's own
                     else "max_tokens" if state.get("prompt_too_long") else "done")
        return ep

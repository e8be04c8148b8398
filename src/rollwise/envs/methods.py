"""Step-level agentic methods on an environment with an expert (``[agentic]``, one registry): each is a collector
that replaces the episode collector of an ``[env]`` run and hands the trainer groups of turns, so the trainer,
samplers and losses stay as they are.

- ``pivotrl`` (PivotRL, arXiv 2603.21383): ``envs/pivot.py``.
- ``uis1`` (UI-S1 semi-online RL, arXiv 2509.11543): ``envs/semi_online.py``.

Both need an environment with the step extensions of ``envs/base.py`` (:class:`rollwise.envs.base.StepEnv`:
``expert``, ``action_reward``, ``snapshot``/``restore``), e.g. ``chain`` or ``ledger``. Contexts are token ids built
with the run's turn format (the episode collector's: plain text, or the tokenizer's chat template opened by the
system prompt, :class:`rollwise.envs.chat.ChatFormat`), so a step sample sees exactly what a free-running episode
sees at that turn. An environment may define ``canonical_action(text) -> str | None`` (the action parsed out of a
reply, as UI-S1's ``extract_match``): the string matches (UI-S1's match, PivotRL's exact-match reward) compare
those; without it, the stripped texts.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from rollwise.components import Knobs, knobs
from rollwise.registry import Registry


class PivotKnobs(Knobs):
    """Knobs of ``pivotrl``."""

    samples: int = Field(8, ge=2, le=64, description="K actions of the frozen start policy per candidate turn "
                         "when profiling (NVIDIA: K >= 8)")
    lambda_diff: float = Field(0.75, gt=0, le=1, description="keep a candidate iff its mean functional reward is "
                               "below this (and its variance above 0); unverified in the paper, 0.75 our choice")
    filter: bool = Field(True, description="keep only pivots (mixed outcomes under lambda_diff); false = every "
                         "candidate turn (the 'no filter' ablation)")
    reward: Literal["functional", "exact"] = Field("functional", description="training reward: the environment's "
                                                   "functional step check, or a string match with the expert's "
                                                   "action (the exact-match ablation); profiling is always "
                                                   "functional")
    profile_tasks: int = Field(0, ge=0, description="tasks of the pool whose expert turns are profiled (0 = all); "
                               "a request for an unprofiled task trains one of the pivots instead")

    @model_validator(mode="after")
    def _reachable(self) -> PivotKnobs:
        if self.filter and self.lambda_diff <= 1 / self.samples:
            raise ValueError(f"lambda_diff {self.lambda_diff:g} <= 1/samples: no candidate with mixed outcomes "
                             f"(mean >= 1/{self.samples}) can be kept")
        return self


class Uis1Knobs(Knobs):
    """Knobs of ``uis1``."""

    patch_threshold: int = Field(2, ge=-1, description="patches per rollout: a mismatch within the budget puts "
                                 "the expert's action into the history and goes on; after it the rollout ends "
                                 "(-1 = unlimited, 0 = stop at the first mismatch; UI-S1 script: 2)")
    gamma: float = Field(0.5, ge=0, le=1, description="discount of the step returns (UI-S1 script: 0.5)")
    episode: Literal["immediate", "return"] = Field("immediate", description="the 'episode-level' advantage: "
                                                    "'immediate' (the authors' code: each step's own score "
                                                    "normalised over all steps of the task) or 'return' (the "
                                                    "rollout's summed score normalised over the task's rollouts)")
    mode: Literal["mean_norm", "mean_std_norm"] = Field("mean_std_norm", description="normalisation of both "
                                                        "terms (UI-S1 script: mean_std_norm; code default "
                                                        "mean_norm)")
    w_ep: float = Field(1.0, ge=0, description="weight of the episode-level term")
    w_step: float = Field(1.0, ge=0, description="weight of the step-level term")
    std_threshold: float | None = Field(0.3, ge=0, description="group filter: keep a task iff the std of its "
                                        "rollouts' G_0 exceeds this (or it has one rollout); None = off")


AGENTIC: Registry[Any] = Registry("agentic method", knobs_from_entry=False)
"""Method name -> builder ``(cfg, engine, pool, tok, params, **knobs) -> collector``."""
AGENTIC.register("pivotrl", "rollwise.envs.pivot:build_pivot_collector", config=PivotKnobs,
                 doc="PivotRL: one-turn GRPO on pivot turns of expert trajectories, functional reward")
AGENTIC.register("uis1", "rollwise.envs.semi_online:build_uis1_collector", config=Uis1Knobs,
                 doc="UI-S1: semi-online rollouts over expert trajectories with patches; step + episode advantages")


def build_agentic_collector(cfg: Any, engine: Any, pool: list[Any], tok: Any, params: Any) -> Any:
    """The collector of ``cfg.agentic`` on the run's ``[env]``."""
    if cfg.env is None:
        raise ValueError("agentic: a step-level method needs an [env] section (e.g. type = 'chain')")
    return AGENTIC.get(cfg.agentic.type)(cfg, engine, pool, tok, params, **knobs(cfg.agentic))


class StepCollectorBase:
    """What both methods share: the environment factory, one-turn generation from text contexts, free-running
    evaluation through the episode collector (``evaluate``), and the collector interface the trainer reads."""

    def __init__(self, cfg: Any, engine: Any, pool: list[Any], tok: Any, params: Any) -> None:
        from rollwise.envs.base import StepEnv, env_factory
        from rollwise.envs.collector import build_episode_collector
        from rollwise.generation.strategy import PlainStrategy

        self.base = build_episode_collector(cfg, engine, pool, tok, params)
        self.engine, self.pool, self.params, self.limits = engine, pool, params, cfg.env
        self.make_env = env_factory(cfg.env)
        probe = self.make_env()
        if not isinstance(probe, StepEnv):
            raise ValueError(f"agentic {cfg.agentic.type!r}: environment {cfg.env.type!r} lacks the step "
                             "extensions (expert, action_reward, snapshot, restore); use e.g. env.type = 'chain'")
        self.checker = probe  # scores actions from snapshots (action_reward reads only the state it is given)
        self.canon = getattr(probe, "canonical_action", None) or str.strip
        self.encode = lambda s: tok(s, add_special_tokens=False)["input_ids"]
        self.fmt = self.base.fmt
        # the format's own stop tokens too (a chat template's end-of-turn token), as the episode loop does
        self.stops = tuple(dict.fromkeys((*params.stop_token_ids, *sorted(getattr(self.fmt, "stop_ids", ())))))
        self.strategy = PlainStrategy()
        self.last: dict[str, float] = {}

    def matches(self, text: str, expert: str) -> bool:
        """A string match of an action with the expert's (through ``canonical_action`` where the env has it)."""
        got = self.canon(text)
        return got is not None and got == self.canon(expert)

    def after(self, action_ids: list[int] | None, action: str, obs: list[Any]) -> list[int]:
        """What follows a context when ``action`` is played and ``obs`` comes back: the sampled tokens
        (``action_ids``) or, for an action the policy did not sample (the expert's), its encoding."""
        return self.fmt.after(list(action_ids) if action_ids is not None else self.encode(action), obs)

    def generate(self, contexts: list[list[int]], counts: list[int], params: Any,
                 seed: int | None) -> list[list[Any]]:
        """``counts[i]`` one-turn completions from each context (token ids; one engine call)."""
        from rollwise.generation.base import SamplingParams

        p = SamplingParams(params.temperature, params.top_p, params.max_new_tokens, self.stops, seed)
        return self.engine.generate([list(c) for c in contexts], counts, p)

    def metrics(self) -> dict[str, float]:
        return dict(self.last)

    def evaluate(self, eval_sets: dict[str, list[Any]], params: Any, n: int = 1, prefix: str = "eval") -> dict:
        """Free-running episodes (success, turns, ...) as any ``[env]`` run reports them."""
        return self.base.evaluate(eval_sets, params, n, prefix)

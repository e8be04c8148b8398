"""The typed config models: one pydantic model per section, one doc line per field, every pluggable part a
discriminated union chosen by ``type`` (``rollwise.components``). Loading, overrides, error messages and docs
live in ``rollwise.config``, which re-exports these models."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from rollwise.algos.catalog import (
    ADVANTAGES,
    AGGREGATIONS,
    CORRECTIONS,
    GROUP_RELATIVE,
    KL_ESTIMATORS,
    POLICY_LOSSES,
    SHAPERS,
)
from rollwise.components import component_union
from rollwise.config_checks import ARITH_VERIFIERS, check_cross_sections, check_verifier_spec
from rollwise.config_sections import AsyncConfig, ModelConfig, RayConfig, RunConfig, _Section
from rollwise.envs import ENVIRONMENTS
from rollwise.envs.methods import AGENTIC
from rollwise.generation.base import ENGINES
from rollwise.generation.strategy import STRATEGIES
from rollwise.logging import check_loggers
from rollwise.recipes import apply_recipe
from rollwise.registry import Registry
from rollwise.rewards.shaping import REWARD_SHAPERS
from rollwise.sampling import ALLOCATORS, BASELINES, DOWNSAMPLERS, GATES, SELECTORS, TRANSFORMS
from rollwise.sampling import presets as sampler_presets
from rollwise.sampling.replay import Replay
from rollwise.swarm.config import SwarmConfig

SelectorCfg = component_union(SELECTORS)
AllocatorCfg = component_union(ALLOCATORS)
GateCfg = component_union(GATES)
DownsamplerCfg = component_union(DOWNSAMPLERS)
BaselineCfg = component_union(BASELINES)
TransformCfg = component_union(TRANSFORMS)
AdvantageCfg = component_union(ADVANTAGES)
LossCfg = component_union(POLICY_LOSSES)
AggregationCfg = component_union(AGGREGATIONS)
KlCfg = component_union(KL_ESTIMATORS)
ShaperCfg = component_union(SHAPERS)
CorrectionCfg = component_union(CORRECTIONS)
RewardShapingCfg = component_union(REWARD_SHAPERS)
EngineCfg = component_union(ENGINES)
StrategyCfg = component_union(STRATEGIES)
EnvCfg = component_union(ENVIRONMENTS)
AgenticCfg = component_union(AGENTIC)
#: dotted config key of each typed component -> its registry (for docs and error messages)
COMPONENT_KEYS: dict[str, Registry] = {
    "sampler.selector": SELECTORS, "sampler.allocator": ALLOCATORS, "sampler.gates": GATES,
    "sampler.downsampler": DOWNSAMPLERS, "sampler.baseline": BASELINES, "sampler.transform": TRANSFORMS,
    "algo.advantage": ADVANTAGES, "algo.loss": POLICY_LOSSES, "algo.aggregation": AGGREGATIONS,
    "algo.kl_estimator": KL_ESTIMATORS, "algo.shaping": SHAPERS, "algo.correction": CORRECTIONS,
    "task.reward_shaping": REWARD_SHAPERS,
    "generation.engine": ENGINES, "generation.strategy": STRATEGIES, "env": ENVIRONMENTS, "agentic": AGENTIC,
}
TASK_SUITES = ("arith", "words", "dataset")

# verifier 'auto': the arith suite's by task.scratchpad, a dataset preset's by its family (else math)
DATASET_VERIFIERS = {"gsm8k": "gsm8k", "math500": "math", "aime24": "math", "amc23": "math",
                     "reasoning_gym": "reasoning_gym"}


def dataset_verifier(dataset: str | None) -> str:
    """The verifier of a dataset preset's family (``gsm8k:test`` -> ``gsm8k``); ``math`` for anything else."""
    return DATASET_VERIFIERS.get((dataset or "").split(":")[0], "math")


class TaskConfig(_Section):
    suite: Literal[TASK_SUITES] = Field("arith", description="procedural arithmetic suite (embedded default), "
                                        "'words' (arithmetic word problems for chat models) or 'dataset'")
    seed: int = Field(0, description="seed of the procedural pool and eval sets (fixed across RL seeds)")
    levels: list[str] = Field(
        ["add1", "add2", "sub2", "add3", "mul1", "add4", "sum3", "mul2"],
        description="task levels in the train pool and eval (suites 'arith' and 'words', each its own levels)",
    )
    answer_order: Literal["msb", "lsb"] = Field(
        "msb", description="arith answers written most- or least-significant digit first (lsb: use verifier exact)")
    scratchpad: Literal["none", "carries", "mixed"] = Field(
        "mixed", description="arith warm-start targets: direct answers, carry scratchpads ('<carries>|<answer>'), "
                             "or a mix ('#' starts an unprompted scratchpad; see docs/benchmarks.md section 1)")
    scratchpad_share: float = Field(
        0.2, ge=0, le=1, description="scratchpad 'mixed': share of unprompted warm-start targets with a scratchpad")
    scratchpad_prompted: float = Field(
        0.5, ge=0, le=1, description="scratchpad 'mixed': share of warm-start prompts ending in '#' (asking for one)")
    train_size: int = Field(20000, ge=1, description="prompts in the train pool (spread evenly over levels)")
    eval_size: int = Field(200, ge=1, description="held-out eval prompts per level")
    dataset: str | None = Field(None, description="dataset preset or path for suite='dataset' (e.g. gsm8k:train)")
    eval_dataset: str | None = Field(None, description="held-out dataset for suite='dataset' (e.g. gsm8k:test)")
    template: str = Field("plain", description="prompt template preset or a string with {prompt}")
    system_prompt: str | None = Field(None, description="system prompt when a chat template is used")
    chat: bool | None = Field(None, description="wrap prompts in the tokenizer's chat template (None = if it has one)")
    train_limit: int | None = Field(None, ge=1, description="use at most this many dataset rows for training")
    eval_limit: int | None = Field(None, ge=1, description="use at most this many dataset rows for eval")
    group_by: str = Field("level", description="dataset meta field that defines eval groups / sampler levels")
    on_error: Literal["raise", "skip"] = Field("raise", description="malformed dataset rows: error or counted skip")
    max_prompt_chars: int = Field(8192, ge=1, description="longest prompt accepted at load (file:line on a longer one)")
    max_reference_chars: int = Field(4096, ge=1, description="longest reference answer accepted at load")
    verify_timeout: float = Field(2.0, gt=0, description="seconds one verifier check may take (then it scores 0 "
                                  "and counts as a timeout)")
    reward_range: tuple[float, float] = Field((0.0, 1.0), description="rewards a verifier may return [low, high]")
    out_of_range: Literal["error", "clamp"] = Field("error", description="a reward outside reward_range: stop "
                                                    "with an error, or clamp it and count it")
    max_verify_failures: float = Field(0.5, ge=0, le=1, description="stop when more than this share of a step's "
                                       "checks fail (error, timeout, crash, out of range)")
    verifier: str = Field("auto", description="verifier name or package.module:function; 'auto' = the arith "
                          "format's own (by scratchpad), final_number for words, or the dataset family's")
    reward_shaping: RewardShapingCfg | None = Field(None, description="shaping of verified rewards, e.g. fapo "
                                                    "(None = the verifier's reward as is)")
    labels: Literal["given", "none"] = Field("given", description="none: train without reference answers, the "
                                             "group's majority answer is the pseudo-label (TTRL); references are "
                                             "read only for logged label accuracy and eval")
    empty_vote: Literal["vote", "abstain"] = Field("vote", description="labels 'none': an unparsed answer votes "
                                                   "'' and can win (TTRL's code) or abstains")

    @field_validator("verifier")
    @classmethod
    def _check_verifier(cls, v: str) -> str:  # a name or import path that fails now, not after the warm start
        return check_verifier_spec(v)

    @model_validator(mode="after")
    def _check_word_levels(self) -> TaskConfig:
        if self.suite == "words":  # caught at load: the default levels are the arith suite's
            from rollwise.data.word_problems import WORD_LEVELS

            unknown = [n for n in self.levels if n not in WORD_LEVELS]
            if unknown:
                raise ValueError(f"task.levels: {unknown} are not word-problem levels (task.suite = 'words'); "
                                 f"choose from {list(WORD_LEVELS)}")
        return self

    def verifier_name(self) -> str:
        """The verifier to use: ``verifier``, or for 'auto' the one that reads this task's answers."""
        if self.verifier != "auto":
            return self.verifier
        if self.suite == "arith":
            return "exact" if self.answer_order == "lsb" else ARITH_VERIFIERS[self.scratchpad]
        if self.suite == "words":
            return "final_number"
        return dataset_verifier(self.dataset)


class WarmStartConfig(_Section):
    enabled: bool = Field(True, description="supervised warm start before RL (embedded model only)")
    objective: Literal["sft", "otr"] = Field("sft", description="warm-start objective: sft (cross-entropy on the "
                                             "answer) or otr (One-Token Rollout policy gradient)")
    seed: int = Field(0, description="seed of the warm start (fixed across RL seeds, so arms share it)")
    steps: int = Field(1500, ge=0, description="warm-start optimiser steps (either objective)")
    batch_size: int = Field(256, ge=1, description="warm-start sequences per step")
    lr: float = Field(5e-3, gt=0, description="warm-start peak learning rate (cosine decay, linear warm-up)")
    final_lr_ratio: float = Field(0.0, ge=0, le=1, description="warm-start cosine decays to lr x this (1 = constant)")
    weight_decay: float = Field(0.01, ge=0, description="warm-start AdamW weight decay")
    level_weights: dict[str, float] = Field(
        {"add1": 0.2, "add2": 1.0, "sub2": 1.0, "add3": 1.0, "mul1": 1.0, "add4": 0.5, "sum3": 1.0, "mul2": 0.5},
        description="relative warm-start sampling weight per level (levels absent get none)",
    )
    otr_samples: int = Field(8, ge=1, description="otr: tokens K sampled at every answer position")
    otr_temperature: float = Field(1.0, gt=0, description="otr: temperature of the K samples and of their logprobs")
    otr_negative: float = Field(0.0, le=1, description="otr: reward of a sampled token that is not the target "
                                "(the target's is 1); with baseline 'mean' it only rescales the advantages")
    otr_baseline: Literal["mean", "none"] = Field("mean", description="otr: per-position baseline, the mean reward "
                                                  "of its K samples (GRPO-like), or none")
    cache_dir: str = Field(".cache/warmstart", description="where warm starts are cached by config hash")
    checkpoint: str | None = Field(None, description="use this saved warm start instead of training one")


ReplayConfig = Replay.Config  # ``sampler.replay``'s knobs: declared once, by the component


class SamplerConfig(_Section):
    """A preset fills every component slot; a slot given here replaces it (another ``type``) or tunes it (a
    table without ``type``). After loading every slot is resolved, so ``config.toml`` shows what ran."""

    type: str = Field("uniform", description="sampler preset (see `rollwise samplers`)")
    selector: SelectorCfg = Field(None, description="prompt selector (default: the preset's)")
    allocator: AllocatorCfg = Field(None, description="rollout allocator (default: the preset's)")
    gates: list[GateCfg] = Field(None, description="group gates (default: the preset's)")
    downsampler: DownsamplerCfg = Field(None, description="rollout/token down-sampler (default: the preset's)")
    baseline: BaselineCfg = Field(None, description="external baseline (default: the preset's)")
    transform: TransformCfg = Field(None, description="prompt transform, e.g. in-context seeding (default: "
                                    "the preset's)")
    replay: ReplayConfig | Literal[False] = Field(False, description="rollout replay: true, false or a table (default: "
                                        "the preset's)")
    batch_prompts: int = Field(32, ge=1, description="prompts per step (nominal; samplers may change it)")
    group_size: int = Field(8, ge=1, description="nominal rollouts per prompt G")
    rollout_budget: int | None = Field(None, ge=1, description="max rollouts generated per step (None = what "
                                       "the preset needs, see `rollwise samplers`)")
    token_budget: int | None = Field(None, ge=1, description="max generated tokens per step (None = no cap)")
    positive_threshold: float = Field(0.5, description="a reward above this counts as a success (sampler stats, "
                                      "exit rules, baselines)")
    ema_decay: float = Field(0.5, ge=0, le=1, description="decay of each prompt's EMA pass rate (stats store)")

    @model_validator(mode="before")
    @classmethod
    def _fill_from_preset(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        name = str(data.get("type", "uniform"))
        if name not in sampler_presets.PRESETS:
            raise ValueError(f"unknown sampler preset {name!r}; {sampler_presets.PRESETS.suggest(name)}")
        return sampler_presets.resolve(data)


class GenerationConfig(_Section):
    engine: EngineCfg = Field("hf", description="generation engine: hf | vllm | vllm_async | scripted | "
                            "package.module:Class")
    strategy: StrategyCfg = Field("plain", description="rollout strategy: how completions come out of the engine "
                                  "(plain; partial, pruned or tree rollouts)")
    temperature: float = Field(1.0, gt=0, description="sampling temperature (also used for training logprobs)")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling mass")
    max_new_tokens: int = Field(16, ge=1, description="max completion tokens")
    batch_size: int = Field(256, ge=1, description="sequences decoded together")
    eval_temperature: float = Field(0.0, ge=0, description="eval sampling temperature (0 = greedy)")


class AlgoConfig(_Section):
    advantage: AdvantageCfg | None = Field(None, description="advantage estimator and its knobs (None = the "
                                           "sampler's, else grpo)")
    loss: LossCfg = Field("ppo", description="policy loss: ppo | gspo | package.module:function")
    clip_low: float = Field(0.2, ge=0, description="lower clip epsilon")
    clip_high: float = Field(0.28, ge=0, description="upper clip epsilon (clip-higher)")
    dual_clip: float | None = Field(None, description="dual-clip constant c for negative advantages (None = off)")
    behaviour_is_cap: float | None = Field(5.0, description="cap of the decoupled pi_old/mu weight (replay; "
                                           "used by algo.correction = 'none' only)")
    correction: CorrectionCfg = Field("none", description="off-policy correction for stale or replayed rollouts: "
                                      "none | tis | mis | areal | vcpo | minpro | remix")
    aggregation: AggregationCfg = Field("token-mean", description="loss aggregation mode")
    kl_coef: float = Field(0.0, ge=0, description="k3 KL penalty to the frozen reference (0 = no reference)")
    kl_estimator: KlCfg = Field("k3", description="KL estimator: k1 | k2 | k3")
    shaping: list[ShaperCfg] = Field([], description="advantage shapers applied in order inside the update "
                                     "(e.g. ace)")
    epochs: int = Field(1, ge=1, description="optimisation passes over each batch (old logprobs kept)")
    mini_batches: int = Field(1, ge=1, description="optimiser steps per pass (batch split in this many)")
    micro_batch: int = Field(256, ge=1, description="sequences per forward/backward (gradient accumulation; "
                             "lower it for large models)")
    share_prefix: bool = Field(True, description="forward each distinct prompt once per micro-batch (exact)")
    skip_zero_rows: bool = Field(True, description="skip the forward and backward of rows whose advantage is 0 at "
                                 "every token when no other per-token term applies (no KL, no correction penalty): "
                                 "their gradient is exactly 0 and every normaliser is kept (exact)")
    length_buckets: int = Field(3, ge=1, description="split each micro-batch's forward into up to N groups of "
                                "similar completion length, cutting padding (exact)")
    lr: float = Field(3e-5, gt=0, description="learning rate, constant after warm-up (see docs/benchmarks.md)")
    warmup_steps: int = Field(0, ge=0, description="linear learning-rate warm-up steps")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    grad_clip: float = Field(1.0, gt=0, description="max gradient norm")
    optimizer_impl: Literal["loop", "foreach", "fused"] = Field("fused", description="AdamW implementation: "
                                                              "loop | foreach | fused (same update to float rounding; "
                                                              "bench/profile_update.py)")
    compile: bool = Field(False, description="torch.compile the update's log-prob/loss math (off: it does not pay "
                          "on CPU at these shapes, docs/benchmarks.md)")


class TrainerConfig(_Section):
    steps: int = Field(150, ge=0, description="RL steps")
    max_tokens: int | None = Field(None, ge=1, description="stop once this many rollout tokens are generated")
    eval_every: int = Field(25, ge=0, description="held-out eval every K steps (0 = only at start and end)")
    eval_samples: int = Field(1, ge=1, description="completions per eval prompt; pass@1 is their mean (sampled eval)")
    train_eval_size: int = Field(0, ge=0, description="also evaluate this many train-pool prompts per level "
                                 "(train_eval/...; 0 = off): how well RL fits the prompts it trains on")
    checkpoint_every: int = Field(50, ge=0, description="checkpoint every K steps (0 = only at the end)")
    keep_checkpoints: int = Field(2, ge=1, description="checkpoints kept on disk")
    plots: bool = Field(True, description="write PNG plots at the end")
    progress: bool = Field(True, description="show a rich progress bar")
    loggers: list[str] = Field(["jsonl"], description="metric sinks: jsonl | tensorboard | wandb (jsonl is always "
                               "on: reports, plots and resume read it; [] = jsonl only)")
    max_nan_skips: int = Field(3, ge=0, description="consecutive non-finite losses skipped before stopping")
    max_empty_steps: int = Field(3, ge=0, description="consecutive steps that train nothing (no prompt to roll "
                                 "out, or every group filtered out) before the run stops; each is counted in "
                                 "ledger/empty_steps")

    @field_validator("loggers")
    @classmethod
    def _check_loggers(cls, v: list[str]) -> list[str]:  # names and packages at load; jsonl always kept
        return check_loggers(v)


def _tune(preset: Any, given: Any) -> Any:
    """A knob table without ``type`` tunes the preset's table, or its one entry of a list (MSSR's shaper)."""
    if not isinstance(given, dict) or "type" in given:
        return given
    if isinstance(preset, dict):
        return preset | given
    if isinstance(preset, list) and len(preset) == 1:
        entry = preset[0]
        return [({"type": entry} if isinstance(entry, str) else dict(entry)) | given]
    return given


class Config(_Section):
    recipe: str | None = Field(None, description="a paper's settings across sections, applied under this config "
                               "(see `rollwise recipes`); a key set here wins over the recipe's")
    run: RunConfig = RunConfig()
    model: ModelConfig = ModelConfig()
    task: TaskConfig = TaskConfig()
    warmstart: WarmStartConfig = WarmStartConfig()
    sampler: SamplerConfig = SamplerConfig()
    generation: GenerationConfig = GenerationConfig()
    algo: AlgoConfig = AlgoConfig()
    trainer: TrainerConfig = TrainerConfig()
    async_: AsyncConfig = Field(AsyncConfig(), alias="async", description="asynchronous mode (run.mode = async)")
    ray: RayConfig = RayConfig()
    env: EnvCfg | None = Field(None, description="multi-turn environment and its knobs (`rollwise envs`): each "
                               "task is played as an episode, its turns trained as the task's group (None = "
                               "single-turn prompts)")
    agentic: AgenticCfg | None = Field(None, description="a step-level method on the [env]'s expert trajectories "
                                       "(pivotrl, uis1) instead of whole episodes (None = episodes)")
    swarm: SwarmConfig | None = Field(None, description="share decoded rollouts with other nodes (SAPO): train I "
                                      "local + J external groups per step (None = alone)")

    model_config = ConfigDict(extra="forbid", validate_assignment=True, validate_default=True,
                              validate_by_name=True, validate_by_alias=True, serialize_by_alias=True)

    @model_validator(mode="before")
    @classmethod
    def _recipe_and_preset_defaults(cls, data: Any) -> Any:
        """The recipe's settings under the config, then a preset's defaults for other sections (DARS-B: 2
        epochs), where the config leaves them unset."""
        if isinstance(data, dict):
            data = apply_recipe(data)
        if not isinstance(data, dict) or not isinstance(data.get("sampler", {}), dict):
            return data
        name = str(data.get("sampler", {}).get("type", "uniform"))
        if name not in sampler_presets.PRESETS:
            return data
        preset = sampler_presets.PRESETS.get(name)
        algo = data.get("algo", {})
        if isinstance(algo, dict):  # a knob table without ``type`` tunes the preset's own table (MSSR's estimator)
            algo = preset.algo | {k: _tune(preset.algo.get(k), v) for k, v in algo.items()}
            adv = algo.get("advantage")
            if isinstance(adv, dict) and "type" not in adv:  # knobs for the estimator the sampler runs
                algo["advantage"] = {"type": preset.advantage or "grpo"} | adv
            data = dict(data) | {"algo": algo}
        return data

    @model_validator(mode="after")
    def _check_sampler(self) -> Config:
        """Resolve the estimator the sampler needs and check that the step budget lets the method act."""
        s = self.sampler
        chosen = self.algo.advantage.type if self.algo.advantage is not None else None
        need = sampler_presets.required_advantage(s, chosen)
        if self.algo.advantage is None:
            self.algo.advantage = {"type": need}
        try:  # a knob's relation to the sampler's own settings (group_size) surfaces as the components are built
            parts = sampler_presets.build_components(s)
        except ValueError as exc:
            raise ValueError(f"sampler: {exc}") from None
        try:
            first = parts["allocator"].first_round(s.group_size)
        except ValueError as exc:
            raise ValueError(f"sampler.allocator: {exc}") from None
        if first < 2 and self.algo.advantage.type in GROUP_RELATIVE:
            raise ValueError(f"sampler.group_size: {s.group_size} rollout(s) per prompt give the group-relative "
                             f"estimator {self.algo.advantage.type!r} no contrast (every advantage 0); use >= 2")
        budget, minimum = sampler_presets.step_budget(s, parts)
        if s.rollout_budget is not None and s.rollout_budget < minimum:
            raise ValueError(f"sampler.rollout_budget: {s.rollout_budget} rollouts per step cannot let preset "
                             f"{s.type!r} act (it needs at least {minimum}, and spends up to {budget}); raise it "
                             "or leave it unset")
        return self

    @model_validator(mode="after")
    def _check(self) -> Config:
        check_cross_sections(self)
        return self

    def rollout_budget(self) -> int:
        """Rollouts one step may generate: ``sampler.rollout_budget``, else what the sampler needs."""
        return self.sampler.rollout_budget or sampler_presets.step_budget(self.sampler)[0]



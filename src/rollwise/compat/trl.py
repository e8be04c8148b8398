"""Bridges to TRL's ``GRPOTrainer`` (``pip install rollwise[trl]``): a rollwise verifier as a TRL reward
function, a rollwise prompt pool as a ``datasets.Dataset``, and the ``GRPOConfig`` fields that reproduce a
rollwise config.

TRL itself is never imported here (``datasets`` only, lazily), so this module loads without it. The mapping
between the two libraries' conventions lives in one place, :func:`grpo_config_kwargs`; what it cannot map it
refuses with a message instead of silently changing the algorithm. ``tests/algos/test_trl_crosscheck.py``
checks the advantage and loss mappings against the installed TRL. To let rollwise's samplers choose the prompts
TRL trains on, see :mod:`rollwise.integrations.trl` (which re-exports the reward and dataset bridges).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rollwise.config import Config, load_config
from rollwise.data.templates import render_prompt
from rollwise.rewards.pool import VerifierPool, VerifierSpec
from rollwise.types import Prompt

__all__ = ["TRL_LOSS_TYPES", "TRL_SCALE_REWARDS", "TRLReward", "build_trl_dataset", "build_trl_reward",
           "grpo_config_kwargs"]

# rollwise aggregation -> TRL loss_type with the same normaliser over one optimiser step
TRL_LOSS_TYPES: dict[str, str] = {
    "token-mean": "dapo",  # sum / tokens of the whole generation batch
    "seq-mean-token-mean": "grpo",  # mean over sequences of each one's token mean
    "seq-mean-token-sum-norm": "dr_grpo",  # sum / (sequences * max_completion_length)
}
# rollwise advantage estimator -> TRL scale_rewards (TRL: (r - group mean) / (Bessel group std + 1e-4))
TRL_SCALE_REWARDS: dict[str, str] = {"grpo": "group", "dr_grpo": "none"}


def _completion_text(completion: Any) -> str:
    """TRL passes a string, or for conversational data a list of messages whose last one is the answer."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        content = completion[-1].get("content", "")
        return content if isinstance(content, str) else "".join(p.get("text", "") for p in content)
    raise TypeError(f"cannot read a completion of type {type(completion).__name__}")


class TRLReward:
    """A TRL reward function backed by a rollwise verifier, run through a bounded :class:`VerifierPool`.

    TRL calls it as ``reward(prompts=..., completions=..., completion_ids=..., **dataset_columns)``; the
    reference answer is read from the ``reference_column`` dataset column. Returns one score per completion.
    """

    def __init__(self, verifier: VerifierSpec = "synthetic_int", reference_column: str = "reference",
                 **pool_kwargs: Any) -> None:
        self.pool = VerifierPool(verifier, **pool_kwargs)
        self.reference_column = reference_column
        name = verifier if isinstance(verifier, str) else getattr(verifier, "__name__", "verifier")
        self.__name__ = f"rollwise_{name}"  # TRL logs rewards under the callable's name

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float]:
        if self.reference_column not in kwargs:
            raise KeyError(f"the dataset has no {self.reference_column!r} column; columns passed: {sorted(kwargs)}")
        refs = [str(r) for r in kwargs[self.reference_column]]
        results = self.pool.score_batch([_completion_text(c) for c in completions], refs)
        return [r.score for r in results]

    def close(self) -> None:
        self.pool.close()


def build_trl_reward(verifier: VerifierSpec = "synthetic_int", reference_column: str = "reference",
                     **pool_kwargs: Any) -> TRLReward:
    """A TRL reward function from a verifier name, ``package.module:function`` or callable."""
    return TRLReward(verifier, reference_column, **pool_kwargs)


def build_trl_dataset(prompts: Sequence[Prompt], render: Callable[[str], str] | None = None,
                      meta: Sequence[str] = ("level",)) -> Any:
    """A ``datasets.Dataset`` with columns ``prompt`` (rendered text), ``reference``, ``uid`` and the ``meta``
    keys present in every prompt (``level`` for the arithmetic pool).

    ``render`` maps a prompt's text to what the model sees; pass the same template rollwise uses (see
    :func:`trl_prompt_renderer`) so both libraries tokenize identical strings.
    """
    from datasets import Dataset

    render = render or (lambda s: s)
    cols: dict[str, list[Any]] = {"prompt": [render(p.text) for p in prompts],
                                  "reference": [p.reference for p in prompts], "uid": [p.uid for p in prompts]}
    for key in meta:
        if prompts and all(key in p.meta for p in prompts):
            cols[key] = [p.meta[key] for p in prompts]
    return Dataset.from_dict(cols)


def trl_prompt_renderer(cfg: Config, tokenizer: Any) -> Callable[[str], str]:
    """rollwise's prompt rendering (template, optional chat template) as a text -> text function: the string
    that :func:`rollwise.data.templates.encode_prompt` tokenizes for rollwise's own trainer, left to TRL to
    tokenize."""
    return lambda text: render_prompt(text, cfg.task, tokenizer)


def grpo_config_kwargs(cfg: Config, *, micro_batch: int | None = None) -> dict[str, Any]:
    """``GRPOConfig`` keyword arguments that reproduce ``cfg``'s GRPO step: G rollouts for each of
    ``batch_prompts`` prompts, one optimiser step per generation batch (gradient accumulation over micro-batches
    of ``algo.micro_batch`` rows), the same clip range, aggregation, estimator, temperature, optimiser
    hyper-parameters and lengths; fp32, no gradient checkpointing. Output/logging fields are left to the caller.

    Raises ``ValueError`` for what TRL's GRPOTrainer has no equivalent of (adaptive samplers, other estimators,
    dual clip, mini-batches, losses other than ppo).
    """
    s, a, g = cfg.sampler, cfg.algo, cfg.generation
    problems = []
    plain = load_config(None, ["--sampler.type=uniform"]).sampler
    slots = ("selector", "allocator", "gates", "downsampler", "baseline", "transform", "replay")
    if s.type != "uniform" or any(getattr(s, k) != getattr(plain, k) for k in slots):
        problems.append("sampler: TRL samples prompts uniformly with a fixed group (sampler.type='uniform' only)")
    if s.rollout_budget is not None or s.token_budget is not None:
        problems.append("sampler budgets have no TRL equivalent")
    adv = a.advantage.type
    if adv not in TRL_SCALE_REWARDS or getattr(a.advantage, "std_unbiased", True) is False:
        problems.append(f"algo.advantage={adv!r}: TRL offers grpo (Bessel std) and dr_grpo (scale_rewards='none')")
    if a.aggregation.type not in TRL_LOSS_TYPES:
        problems.append(f"algo.aggregation={a.aggregation.type!r}: TRL matches {sorted(TRL_LOSS_TYPES)}")
    if a.loss.type != "ppo":
        problems.append(f"algo.loss={a.loss.type!r}: only the ppo token-ratio loss is cross-checked against TRL")
    if a.kl_coef > 0 and a.kl_estimator.type != "k3":
        problems.append(f"algo.kl_estimator={a.kl_estimator.type!r}: TRL's KL penalty is k3")
    if a.dual_clip is not None or a.mini_batches != 1:
        problems.append("algo.dual_clip and algo.mini_batches > 1 have no TRL equivalent")
    if problems:
        raise ValueError("cannot express this config in TRL's GRPOTrainer:\n  " + "\n  ".join(problems))
    rows = s.batch_prompts * s.group_size
    per_device = min(micro_batch or a.micro_batch, rows)
    if rows % per_device:
        raise ValueError(f"batch_prompts * group_size = {rows} must be a multiple of the micro-batch {per_device}")
    accum = rows // per_device
    return {
        "num_generations": s.group_size,
        "per_device_train_batch_size": per_device,
        "gradient_accumulation_steps": accum,  # one optimiser step per generation batch ...
        "steps_per_generation": accum,  # ... of accum * per_device = batch_prompts * G completions
        "num_iterations": a.epochs,
        "max_completion_length": g.max_new_tokens,
        "temperature": g.temperature,
        "top_p": g.top_p,
        "top_k": 0,
        "learning_rate": a.lr,
        "lr_scheduler_type": "constant_with_warmup" if a.warmup_steps else "constant",
        "warmup_steps": a.warmup_steps,
        "weight_decay": a.weight_decay,
        "adam_beta1": 0.9,
        "adam_beta2": 0.99,  # rollwise's AdamW betas
        "max_grad_norm": a.grad_clip,
        "epsilon": a.clip_low,
        "epsilon_high": a.clip_high,
        "beta": a.kl_coef,
        "loss_type": TRL_LOSS_TYPES[a.aggregation.type],
        "scale_rewards": TRL_SCALE_REWARDS[adv],
        "importance_sampling_level": "token",
        "seed": cfg.run.seed,
        "bf16": False,
        "fp16": False,
        "gradient_checkpointing": False,
        "use_vllm": False,
    }

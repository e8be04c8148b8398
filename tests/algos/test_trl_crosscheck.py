"""Cross-check against the installed TRL: on identical inputs, rollwise's GRPO advantages and its PPO-clip loss
with the matching aggregation equal TRL GRPOTrainer's, in value and in gradient.

TRL keeps both computations inside ``GRPOTrainer`` methods, so they are called on the smallest real trainer
(a 1-layer, 16-wide random Qwen2 and the char tokenizer): ``_generate_and_score_completions`` with a reward
function that returns fixed rewards gives TRL's advantages; ``_compute_loss`` on fixed inputs gives its loss.

Conventions found in TRL (checked here, relied on by ``bench/bench_trl.py`` and ``rollwise.compat.trl``):
- advantages: (r - group mean) / (Bessel group std + 1e-4) ("group"), r - group mean ("none"); rollwise's grpo
  defaults to Bessel too but adds eps 1e-6 (equal to 1e-4 relative), and has a population-std variant.
- loss_type "grpo" = seq-mean-token-mean, "bnpo"/"dapo" = token-mean (dapo over the whole generation batch
  under gradient accumulation), "dr_grpo" = seq-mean-token-sum-norm with norm_length = max_completion_length.
  TRL's "grpo"/"dr_grpo" divide by all rows, rollwise by rows with >= 1 token: equal when none is empty.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

pytest.importorskip("trl")
from datasets import Dataset  # noqa: E402  (datasets is a TRL dependency)
from trl import GRPOConfig, GRPOTrainer  # noqa: E402

from rollwise.algos import ADVANTAGES, POLICY_LOSSES, AdvantageContext, LossParams, compute_aggregate  # noqa: E402
from rollwise.compat.trl import (  # noqa: E402
    TRL_LOSS_TYPES,
    TRL_SCALE_REWARDS,
    build_trl_dataset,
    build_trl_reward,
    grpo_config_kwargs,
)
from rollwise.config import load_config  # noqa: E402
from rollwise.data.tasks import build_suite  # noqa: E402
from rollwise.train.model import build_char_tokenizer, build_tiny_model  # noqa: E402
from rollwise.train.policy import build_seq_batch, compute_logprobs  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
G = 4
MAX_LEN = 6
PROMPTS = ["1+2=", "12+34=", "7*8=", "99-5="]
REWARDS = [0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.25, 0.5, 1.0, 0.0]  # 4 groups of G
COMPLETIONS = [[4, 5, 1], [6, 1], [7, 8, 9, 10, 11, 12], [5], [9, 9, 1], [4, 1], [3, 3, 3, 1], [8, 1]]


@pytest.fixture(scope="module")
def tok():
    return build_char_tokenizer()


def make_trainer(tok, tmp_path, **overrides) -> GRPOTrainer:
    model = build_tiny_model(tok, layers=1, hidden=16, heads=2, kv_heads=1, intermediate=32, seed=0)
    kw = dict(output_dir=str(tmp_path), bf16=False, gradient_checkpointing=False, use_cpu=True, report_to="none",
              num_generations=G, per_device_train_batch_size=8, max_completion_length=MAX_LEN, beta=0.0,
              epsilon=0.2, epsilon_high=0.28, loss_type="dapo", save_strategy="no", seed=0)
    args = GRPOConfig(**(kw | overrides))

    def fixed_reward(prompts, completions, target, **_):
        return list(target)

    ds = Dataset.from_dict({"prompt": PROMPTS, "target": [0.0] * len(PROMPTS)})
    trainer = GRPOTrainer(model=model, reward_funcs=fixed_reward, args=args, train_dataset=ds, processing_class=tok)
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = args.gradient_accumulation_steps  # set by Trainer.train()
    return trainer


def trl_advantages(trainer: GRPOTrainer, rewards: list[float]) -> torch.Tensor:
    """TRL's own advantage computation: rows come in consecutive groups of G, as TRL's RepeatSampler lays out."""
    inputs = [{"prompt": PROMPTS[i // G], "target": r} for i, r in enumerate(rewards)]
    return trainer._generate_and_score_completions(inputs)["advantages"]


def rollwise_advantages(rewards: list[float], estimator: str = "grpo", eps: float = 1e-6, **params) -> torch.Tensor:
    r = torch.tensor(rewards)
    gidx = torch.arange(len(rewards)) // G
    ctx = AdvantageContext(num_groups=len(rewards) // G, eps=eps, params=params)
    return ADVANTAGES.get(estimator)(r, gidx, ctx).advantages


# ---------------------------------------------------------------------------------------------- advantages
def test_grpo_advantages_equal_trl_group_scaling(tok, tmp_path):
    trainer = make_trainer(tok, tmp_path, per_device_train_batch_size=16, scale_rewards="group")
    assert TRL_SCALE_REWARDS["grpo"] == "group"
    trl = trl_advantages(trainer, REWARDS)
    ours = rollwise_advantages(REWARDS, "grpo", eps=1e-4)  # TRL's eps; Bessel std is rollwise's default
    torch.testing.assert_close(ours, trl, rtol=0, atol=1e-6)
    # the default eps (1e-6) differs from TRL's 1e-4 by about 1e-4 / std relative
    torch.testing.assert_close(rollwise_advantages(REWARDS, "grpo"), trl, rtol=1e-3, atol=1e-6)
    assert torch.all(trl[8:12] == 0)  # an all-equal group has no signal in either library


def test_population_std_is_not_trl_convention(tok, tmp_path):
    """TRL normalises by the Bessel (n-1) std; rollwise's std_unbiased=False (population) differs by sqrt(n/(n-1))."""
    trainer = make_trainer(tok, tmp_path, per_device_train_batch_size=16, scale_rewards="group")
    trl = trl_advantages(trainer, REWARDS)
    pop = rollwise_advantages(REWARDS, "grpo", eps=1e-12, std_unbiased=False)
    bessel = rollwise_advantages(REWARDS, "grpo", eps=1e-12, std_unbiased=True)
    torch.testing.assert_close(pop, bessel * math.sqrt(G / (G - 1)))
    assert not torch.allclose(pop, trl, atol=1e-2)
    torch.testing.assert_close(bessel, trl, rtol=1e-3, atol=1e-6)


def test_dr_grpo_advantages_equal_trl_no_scaling(tok, tmp_path):
    trainer = make_trainer(tok, tmp_path, per_device_train_batch_size=16, scale_rewards="none")
    assert TRL_SCALE_REWARDS["dr_grpo"] == "none"
    torch.testing.assert_close(rollwise_advantages(REWARDS, "dr_grpo"), trl_advantages(trainer, REWARDS),
                               rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------------------------- loss
def loss_inputs(tok, seed: int = 0) -> dict[str, torch.Tensor]:
    """TRL's batch layout for 8 rows (left-padded prompts, right-padded completions) with perturbed old logprobs."""
    prompts = [tok(PROMPTS[i % len(PROMPTS)], add_special_tokens=False)["input_ids"] for i in range(len(COMPLETIONS))]
    seq = build_seq_batch(prompts, COMPLETIONS, tok.pad_token_id)
    P = seq.input_ids.shape[1] - seq.completion_ids.shape[1]
    g = torch.Generator().manual_seed(seed)
    return {
        "prompt_ids": seq.input_ids[:, :P], "prompt_mask": seq.attention_mask[:, :P],
        "completion_ids": seq.completion_ids, "completion_mask": seq.completion_mask.long(),
        "advantages": torch.tensor([1.2, -0.7, 0.4, -1.5, 0.9, 0.0, -0.3, 2.0]),
        "old_noise": 0.4 * torch.randn(seq.completion_ids.shape, generator=g),  # ratios well outside 1 +- eps
        "num_items_in_batch": seq.completion_mask.sum(),
    }


def trl_loss_and_grads(trainer: GRPOTrainer, inputs: dict, rows: slice = slice(None)) -> tuple[float, list]:
    model = trainer.model
    model.zero_grad(set_to_none=True)
    batch = {k: (v[rows] if v.dim() and k != "num_items_in_batch" else v) for k, v in inputs.items()
             if k != "old_noise"}
    with torch.no_grad():
        ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], 1)
        attn = torch.cat([batch["prompt_mask"], batch["completion_mask"]], 1)
        cur, _, _ = trainer._get_per_token_logps_and_entropies(model, ids, attn, ids.shape[1] - batch[
            "prompt_ids"].shape[1])
    batch["old_per_token_logps"] = (cur + inputs["old_noise"][rows]) * batch["completion_mask"]
    loss = trainer._compute_loss(model, batch)
    loss.backward()
    return loss.item(), [p.grad.clone() for p in model.parameters()]


def rollwise_loss_and_grads(model, tok, inputs: dict, aggregation: str, norm_length: int | None = None):
    """The rollwise path: its own teacher-forced logprobs, the ppo token loss and compute_aggregate."""
    model.zero_grad(set_to_none=True)
    prompts = [[t for t, m in zip(p.tolist(), pm.tolist()) if m] for p, pm in zip(inputs["prompt_ids"],
                                                                                inputs["prompt_mask"])]
    seq = build_seq_batch(prompts, COMPLETIONS, tok.pad_token_id)
    logp, _ = compute_logprobs(model, seq)
    mask = seq.completion_mask
    with torch.no_grad():
        old = (logp + inputs["old_noise"]) * mask
    loss_tok, _ = POLICY_LOSSES.get("ppo")(logp, old, inputs["advantages"], mask, LossParams(0.2, 0.28))
    loss = compute_aggregate(loss_tok, mask, aggregation, norm_length=norm_length)
    loss.backward()
    return loss.item(), [p.grad.clone() for p in model.parameters()], logp.detach()


@pytest.mark.parametrize("loss_type,aggregation", [("grpo", "seq-mean-token-mean"), ("bnpo", "token-mean"),
                                                   ("dapo", "token-mean"), ("dr_grpo", "seq-mean-token-sum-norm")])
def test_ppo_loss_equals_trl(tok, tmp_path, loss_type, aggregation):
    if loss_type != "bnpo":
        assert TRL_LOSS_TYPES[aggregation] == loss_type
    trainer = make_trainer(tok, tmp_path, loss_type=loss_type)
    inputs = loss_inputs(tok)
    trl_loss, trl_grads = trl_loss_and_grads(trainer, inputs)
    ours, grads, logp = rollwise_loss_and_grads(trainer.model, tok, inputs, aggregation, norm_length=MAX_LEN)
    # identical token logprobs: TRL's positions count the pads, rollwise's do not; RoPE only sees differences
    ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], 1)
    attn = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], 1)
    with torch.no_grad():
        trl_logp, _, _ = trainer._get_per_token_logps_and_entropies(trainer.model, ids, attn, ids.shape[1] - inputs[
            "prompt_ids"].shape[1])
    torch.testing.assert_close(logp, trl_logp * inputs["completion_mask"], rtol=0, atol=1e-5)
    assert abs(ours - trl_loss) < 1e-6 * max(1.0, abs(trl_loss))
    for a, b in zip(grads, trl_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_dapo_grad_accumulation_equals_global_token_mean(tok, tmp_path):
    """TRL's DAPO normaliser spans the generation batch: two accumulated halves == one rollwise token-mean."""
    trainer = make_trainer(tok, tmp_path, loss_type="dapo", per_device_train_batch_size=4,
                           gradient_accumulation_steps=2, steps_per_generation=2)
    inputs = loss_inputs(tok)
    l1, g1 = trl_loss_and_grads(trainer, inputs, slice(0, 4))
    l2, g2 = trl_loss_and_grads(trainer, inputs, slice(4, 8))
    ours, grads, _ = rollwise_loss_and_grads(trainer.model, tok, inputs, "token-mean")
    assert abs(ours - (l1 + l2)) < 1e-6
    for a, b, c in zip(grads, g1, g2):
        torch.testing.assert_close(a, b + c, rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------------------------------------- compat helpers
def test_trl_reward_scores_with_the_rollwise_verifier():
    reward = build_trl_reward("synthetic_int")
    try:
        got = reward(prompts=["1+2="] * 4, completions=["3", " 4 x", "no", [{"role": "assistant", "content": "7"}]],
                     completion_ids=[[]] * 4, reference=["3", "4", "5", "7"], trainer_state=None)
    finally:
        reward.close()
    assert got == [1.0, 1.0, 0.0, 1.0]
    assert reward.__name__ == "rollwise_synthetic_int"


def test_trl_dataset_and_config_from_a_rollwise_config(tmp_path):
    cfg = load_config(ROOT / "configs" / "smoke.toml")
    suite = build_suite(cfg.task.levels, 12, 2, cfg.task.seed)
    ds = build_trl_dataset(suite.pool, lambda s: f"Q {s}")
    assert ds.column_names[:3] == ["prompt", "reference", "uid"] and "level" in ds.column_names
    assert ds[0]["prompt"] == f"Q {suite.pool[0].text}" and ds[0]["reference"] == suite.pool[0].reference
    # every mapped field exists in the installed GRPOConfig, and one generation batch is one optimiser step
    args = GRPOConfig(**grpo_config_kwargs(cfg), output_dir=str(tmp_path), use_cpu=True, report_to="none")
    s = cfg.sampler
    assert args.generation_batch_size == s.batch_prompts * s.group_size
    assert args.per_device_train_batch_size * args.gradient_accumulation_steps == args.generation_batch_size
    assert (args.loss_type, args.scale_rewards, args.beta) == ("dapo", "group", 0.0)
    with pytest.raises(ValueError, match="sampler"):
        grpo_config_kwargs(load_config(ROOT / "configs" / "smoke.toml", ["--sampler.type=dapo"]))

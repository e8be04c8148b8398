"""The RL loop. One step reads top to bottom:

    plan (sampler) -> generate (engine) -> verify (rewards) -> gate/down-sample (sampler)
    -> advantages (algos, variable-size groups) -> loss, micro-batched (algos) -> optimiser step
    -> sync weights -> observe (sampler) -> log -> eval -> checkpoint

Algorithmic choices (estimator, loss, aggregation, clip, KL, sampler composition) are looked up by name in
registries, so this file never branches on a method.
"""

from __future__ import annotations

import copy
import math
import os
import signal
import time
from pathlib import Path
from typing import Any

import torch

from rollwise.config import Config, dump_toml
from rollwise.data.templates import render_prompt
from rollwise.logging import MultiLogger, build_logger, truncate_metrics
from rollwise.sampling import Budget, Replayed
from rollwise.train import checkpoint as ckpt
from rollwise.train import setup
from rollwise.train.batch import Optimiser, build_train_batch, make_micro_batches
from rollwise.train.evaluate import evaluate
from rollwise.train.rollout import RolloutCollector


class TrainingError(RuntimeError):
    """Training cannot continue (e.g. repeated non-finite losses); the last checkpoint is kept."""


class Trainer:
    def __init__(self, cfg: Config, run_dir: Path | None = None, logger: MultiLogger | None = None,
                 console: Any = None) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir or Path(cfg.run.out_dir) / cfg.run.name)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.toml").write_text(dump_toml(cfg))
        self.console = console
        setup.set_threads(cfg)
        torch.manual_seed(cfg.run.seed)
        self.task = setup.build_task(cfg)
        self.model, self.tok, self.device = setup.build_policy(cfg, self.task, log=self._print)
        self.ref_model = copy.deepcopy(self.model).eval() if cfg.algo.kl_coef > 0 else None
        self.engine = setup.build_engine(cfg, self.model, self.tok)
        self.verifier = setup.build_verifier(cfg)
        self.train_eval_sets = setup.train_eval_sets(self.task, cfg.trainer.train_eval_size)
        self.pipeline, self.estimator = setup.build_sampler(cfg, self.task)
        self.optimizer, self.scheduler = setup.build_optimizer(cfg, self.model)
        self.optimiser = Optimiser(self.model, self.optimizer, cfg.algo, cfg.generation.temperature,
                                   cfg.generation.max_new_tokens, self.ref_model)
        self.collector = RolloutCollector(self.engine, self.verifier, self.task.pool, self.encode,
                                          setup.sampling_params(cfg, self.tok))
        self.logger = logger or build_logger(cfg.trainer.loggers, self.run_dir)
        self.step_index = 0
        self.ledger = {"ledger/rollouts": 0, "ledger/tokens": 0, "ledger/seconds": 0.0, "ledger/rollouts_trained": 0}
        self.nan_streak = 0

    def encode(self, text: str) -> list[int]:
        """Prompt text -> token ids, through the configured template (and chat template, if any)."""
        return self.tok(render_prompt(text, self.cfg.task, self.tok), add_special_tokens=False)["input_ids"]

    def _print(self, row: dict) -> None:
        if self.console is not None:
            self.console(row)

    # ------------------------------------------------------------------ the loop
    def train(self, resume: bool = False) -> dict[str, Any]:
        """Run (or resume) training to ``trainer.steps``; return the final eval."""
        if resume and self._resume():
            pass
        else:
            truncate_metrics(self.run_dir, -1)
            self.logger.log({"step": 0, **self.ledger, **self.evaluate()})
        steps = self.cfg.trainer
        final: dict[str, Any] = {}
        while not self._done():
            t = time.perf_counter()
            row = self.train_step(self.step_index)
            self.step_index += 1
            self.ledger["ledger/seconds"] += time.perf_counter() - t
            row |= {"step": self.step_index, **self.ledger}
            last = self._done()
            if last or (steps.eval_every and self.step_index % steps.eval_every == 0):
                final = self.evaluate()
                row |= final
            self.logger.log(row)
            self._print(row)
            if last or (steps.checkpoint_every and self.step_index % steps.checkpoint_every == 0):
                self.save()
                if os.environ.get("ROLLWISE_KILL_AFTER_STEP") == str(self.step_index):
                    os.kill(os.getpid(), signal.SIGKILL)  # fault injection for the resume test
        return final

    def _done(self) -> bool:
        """Stop at ``trainer.steps`` or once the rollout-token budget ``trainer.max_tokens`` is spent."""
        cap = self.cfg.trainer.max_tokens
        return self.step_index >= self.cfg.trainer.steps or (cap is not None and self.ledger["ledger/tokens"] >= cap)

    def train_step(self, step: int) -> dict[str, Any]:
        cfg = self.cfg
        # 1. plan + generate + verify, in as many rounds/refills as the sampler asks for, within the budget
        budget = Budget(cfg.rollout_budget(), cfg.sampler.token_budget)
        got = self.collector.collect(self.pipeline, step, budget, seed=cfg.run.seed * 1_000_003 + step,
                                     version=step)
        pools = got.obs()
        # 2. the sampler chooses which groups and rollouts are trained (gates, down-sampling, baselines)
        groups = self.pipeline.finalize(pools)
        replayed = self.pipeline.replay_draw()
        # 3. advantages over variable-size groups
        batch = build_train_batch(groups, got.rollouts, replayed, self.estimator, cfg.algo.advantage_params,
                                  version=step)
        # 4. loss and optimiser step(s), micro-batched with global normalisers
        t0 = time.perf_counter()
        metrics: dict[str, float] = {}
        if batch.rollouts:
            micro = make_micro_batches(batch, cfg.algo.micro_batch, self.tok.pad_token_id, self.device)
            self.optimiser.prepare(micro, batch, self.pipeline.token_fraction())
            self.model.train()
            metrics, per_row, ok = self.optimiser.run(micro, len(batch.rollouts))
            self._check_finite(ok, step)
            self.scheduler.step()
            for gi, g in enumerate(batch.groups[: len(groups)]):
                rows = (batch.group_index == gi).nonzero().squeeze(-1)
                g.loss = float(per_row[rows].mean()) if len(rows) else None
        train_seconds = time.perf_counter() - t0
        # 5. the engine sees the new weights; the sampler learns from this step's outcomes
        self.engine.sync_weights(self.model, step + 1)
        self.pipeline.observe(pools, groups)
        self.pipeline.replay_push([Replayed(g.prompt, [got.rollouts[g.prompt][int(i)] for i in g.keep], step)
                                   for g in groups])
        # 6. books
        self.ledger["ledger/rollouts"] += got.num_rollouts
        self.ledger["ledger/tokens"] += got.num_tokens
        self.ledger["ledger/rollouts_trained"] += len(batch.rollouts)
        rewards = [r.reward for rs in got.rollouts.values() for r in rs]
        return {
            "rollout/reward_mean": sum(rewards) / max(len(rewards), 1),
            "rollout/parsed_share": sum(r.parsed for rs in got.rollouts.values() for r in rs) / max(len(rewards), 1),
            "rollout/length_mean": got.num_tokens / max(got.num_rollouts, 1),
            "rollout/truncated_share": sum(r.finish_reason == "length" for rs in got.rollouts.values() for r in rs)
            / max(len(rewards), 1),
            "rollout/verify_failures": got.verify_failures,
            "rollout/advantage_abs_mean": float(batch.advantages.abs().mean()) if batch.rollouts else 0.0,
            **metrics,
            **self.pipeline.metrics(),
            "perf/generate_seconds": got.gen_seconds,
            "perf/verify_seconds": got.verify_seconds,
            "perf/train_seconds": train_seconds,
            "perf/generate_calls": got.calls,
            "perf/lr": self.scheduler.get_last_lr()[0],
        }

    def _check_finite(self, ok: bool, step: int) -> None:
        if ok:
            self.nan_streak = 0
            return
        self.nan_streak += 1
        self.logger.log({"step": step + 1, "loss/nonfinite_skip": 1})
        if self.nan_streak > self.cfg.trainer.max_nan_skips:
            raise TrainingError(f"{self.nan_streak} consecutive non-finite losses at step {step + 1}; "
                                f"last checkpoint kept in {self.run_dir / 'checkpoints'}")

    def evaluate(self) -> dict[str, Any]:
        self.model.eval()
        params, n = setup.sampling_params(self.cfg, self.tok, eval_mode=True), self.cfg.trainer.eval_samples
        out = evaluate(self.engine, self.verifier, self.task.eval_sets, self.encode, params, n=n)
        out |= evaluate(self.engine, self.verifier, self.train_eval_sets, self.encode, params, n=n,
                        prefix="train_eval")
        return out | {"eval/ledger_tokens": self.ledger["ledger/tokens"]}

    # ------------------------------------------------------------------ checkpoints
    def save(self) -> Path:
        state = {"ledger": dict(self.ledger), "sampler": self.pipeline.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "nan_streak": self.nan_streak}
        return ckpt.save_checkpoint(self.run_dir, self.step_index, model=self.model, tokenizer=self.tok,
                                    optimizer=self.optimizer, trainer_state=state,
                                    keep=self.cfg.trainer.keep_checkpoints)

    def _resume(self) -> bool:
        path = ckpt.latest_checkpoint(self.run_dir)
        if path is None:
            return False
        from safetensors.torch import load_file

        if (path / "adapter_model.safetensors").is_file():  # LoRA: the checkpoint holds the adapter only
            from peft import set_peft_model_state_dict

            set_peft_model_state_dict(self.model, load_file(str(path / "adapter_model.safetensors")))
        else:
            weights = load_file(str(path / "model.safetensors"))
            missing, unexpected = self.model.load_state_dict(weights, strict=False)
            if unexpected or [k for k in missing if "lm_head" not in k]:
                raise RuntimeError(f"checkpoint {path} does not match the model: missing {missing}, "
                                   f"unexpected {unexpected}")
        self.optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=False))
        state = ckpt.load_trainer_state(path)
        self.scheduler.load_state_dict(state["scheduler"])
        self.pipeline.load_state_dict(state["sampler"])
        self.ledger = state["ledger"]
        self.nan_streak = state["nan_streak"]
        self.step_index = state["step"]
        ckpt.set_rng_state(state["rng"])
        self.engine.sync_weights(self.model, self.step_index)
        truncate_metrics(self.run_dir, self.step_index)
        self._print({"resumed_from": str(path), "step": self.step_index})
        return True

    def close(self) -> None:
        self.logger.close()
        close = getattr(self.verifier, "close", None)
        if close is not None:
            close()


def is_finite(x: float) -> bool:
    return math.isfinite(x)

"""The RL loop. One step reads top to bottom:

    plan + generate + verify (sampler, engine, rewards; as many rounds and refills as the sampler asks; in async
    mode rollout workers have been generating this step, and the next ones, while the trainer trained)
    -> train plan (sampler: groups, advantages over whole pools, weights, replay, token fraction)
    -> update, micro-batched (algos) -> sync weights -> observe (sampler) -> log -> eval -> checkpoint

Algorithmic choices (estimator, loss, aggregation, clip, KL, sampler composition) are looked up by name in
registries and reach this file as data, so it never branches on a method.
"""

from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from rollwise.config import Config
from rollwise.config_checks import ConfigWarning, precondition_warnings
from rollwise.data.sources import skip_metrics
from rollwise.data.templates import encode_prompt
from rollwise.generation.base import WORK_KEYS
from rollwise.logging import MultiLogger, build_logger, truncate_metrics
from rollwise.sampling import Budget
from rollwise.train import checkpoint as ckpt
from rollwise.train import setup
from rollwise.train.batch import TrainBatch, build_train_batch, group_losses, make_micro_batches
from rollwise.train.evaluate import evaluate
from rollwise.train.rollout import StepRollouts
from rollwise.train.rundir import RunDir
from rollwise.train.sources import check_staleness_window
from rollwise.train.update import PolicyUpdate, UpdateParts


class TrainingError(RuntimeError):
    """Training cannot continue (e.g. repeated non-finite losses); the last checkpoint is kept."""


class TrainingInterrupted(Exception):
    """Training stopped on request (Ctrl-C) between steps; the message says what the last checkpoint holds."""


class Trainer:
    def __init__(self, cfg: Config, run_dir: Path | None = None, logger: MultiLogger | None = None,
                 console: Any = None, on_checkpoint: Callable[[int], None] | None = None,
                 rundir: RunDir | None = None) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir or Path(cfg.run.out_dir) / cfg.run.name)
        self.rundir = rundir or RunDir(self.run_dir)  # locked and written only while training
        self.console = console
        self.on_checkpoint = on_checkpoint  # called with the step after each checkpoint (tests inject faults)
        setup.set_threads(cfg)
        torch.manual_seed(cfg.run.seed)
        self.task = setup.build_task(cfg)
        check_staleness_window(cfg, len(self.task.pool))  # before any model is built
        for line in precondition_warnings(cfg, len(self.task.pool)):  # before any model is built
            warnings.warn(line, ConfigWarning, stacklevel=2)
        self.model, self.tok, self.device = setup.build_policy(cfg, self.task, log=self._print)
        parts = UpdateParts.build(cfg.algo)  # loss, shapers, correction: built once; their needs read from them
        self.ref_model = copy.deepcopy(self.model).eval() if parts.wants_reference(cfg.algo.kl_coef) else None
        self.engine = setup.build_engine(cfg, self.model, self.tok)
        self.verifier = setup.build_verifier(cfg)
        self.train_eval_sets = setup.train_eval_sets(self.task, cfg.trainer.train_eval_size)
        self.pipeline = setup.build_sampler(cfg, self.task, self.model, self.tok, self.verifier, self.encode)
        self.step_rollouts = cfg.rollout_budget()  # per-step rollout budget, resolved once (builds components)
        self.optimizer, self.scheduler = setup.build_optimizer(cfg, self.model)
        self.update = PolicyUpdate(self.model, self.optimizer, cfg.algo, cfg.generation.temperature,
                                   cfg.generation.max_new_tokens, self.ref_model, parts)
        # single-turn prompts, or the episodes of an [env] section, chosen once; eval sets are scored alike
        self.collector = setup.build_collector(cfg, self.engine, self.verifier, self.task, self.tok, self.encode)
        self.score_sets = setup.build_scorer(self.collector, self._score_single_turn)
        # where each step's rollouts come from: this process's engine (sync) or Ray rollout workers (async)
        self.rollouts = setup.build_rollouts(cfg, self.collector, self._budget, self._seed, self._may_start)
        self.logger = logger
        self.step_index = 0
        # generated and trained rollouts and tokens, kept apart: comparisons are at equal *generated* tokens
        self.ledger = {"ledger/rollouts": 0, "ledger/tokens": 0, "ledger/seconds": 0.0, "ledger/rollouts_trained": 0,
                       "ledger/tokens_trained": 0, "ledger/empty_steps": 0,  # steps that trained nothing
                       # the engine's forwards for training rollouts (prefill tokens, decode steps, row-steps)
                       **{f"ledger/{k}": 0 for k in WORK_KEYS}}
        self.nan_streak = 0
        self.empty_streak = 0
        self.resume_changes: list[str] = []
        self.stop_requested = False  # set by request_stop (Ctrl-C): stop between steps, checkpoint the last one
        self.saved: tuple[int, Path] | None = None  # (step, path) of the checkpoint written or resumed last

    def encode(self, text: str) -> list[int]:
        """Prompt text -> token ids, through the configured template (and chat template, if any)."""
        return encode_prompt(text, self.cfg.task, self.tok)

    def _budget(self) -> Budget:
        return Budget(self.step_rollouts, self.cfg.sampler.token_budget)

    def _seed(self, step: int) -> int:
        return self.cfg.run.seed * 1_000_003 + step

    def _may_start(self, step: int) -> bool:
        """Whether step ``step`` may still be generated: within ``trainer.steps``, and the token budget not
        spent by the tokens trained plus those generated for steps in flight."""
        cap = self.cfg.trainer.max_tokens
        spent = self.ledger["ledger/tokens"] + self.rollouts.in_flight_tokens()
        return step < self.cfg.trainer.steps and (cap is None or spent < cap)

    def _print(self, row: dict) -> None:
        if self.console is not None:
            self.console(row)

    # ------------------------------------------------------------------ the loop
    def train(self, resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
        """Run (or resume) training to ``trainer.steps``; return the final eval. The run directory is locked
        for the whole call; a directory holding another run needs ``resume`` or ``overwrite``."""
        owner = not self.rundir.locked
        if owner:
            self.rundir.acquire()
        try:
            self._start(resume, overwrite)
            return self._loop()
        finally:
            if owner:
                self.rundir.release()

    def _start(self, resume: bool, overwrite: bool) -> None:
        changes = self.rundir.prepare(self.cfg, resume=resume, overwrite=overwrite)
        resumed = resume and self._resume(changes)
        if not resumed:
            truncate_metrics(self.run_dir, -1)
            self.rollouts.publish(self.model, self.step_index)
        self.logger = self.logger or build_logger(self.cfg.trainer.loggers, self.run_dir)
        if not resumed:
            self.logger.log({"step": 0, **self.ledger, **skip_metrics(self.task), **self.evaluate()})

    def _loop(self) -> dict[str, Any]:
        steps = self.cfg.trainer
        final: dict[str, Any] = {}
        while not self._done():
            if self.stop_requested:
                raise self._interrupted()
            t = time.perf_counter()
            row = self.train_step(self.step_index)
            self.step_index += 1
            self.ledger["ledger/seconds"] += time.perf_counter() - t
            row |= {"step": self.step_index, **self.ledger}
            if self.resume_changes:  # the first row after a resume records what the resume changed
                row["run/resume_changes"], self.resume_changes = self.resume_changes, []
            last = self._done()
            if last or (steps.eval_every and self.step_index % steps.eval_every == 0):
                final = self.evaluate()
                row |= final
            self.logger.log(row)
            self._print(row)
            if self.nan_streak == 0 and (last or (steps.checkpoint_every
                                                  and self.step_index % steps.checkpoint_every == 0)):
                self.save()  # never while the latest step was non-finite
                if self.on_checkpoint is not None:
                    self.on_checkpoint(self.step_index)
        return final

    def _done(self) -> bool:
        """Stop at ``trainer.steps`` or once the rollout-token budget ``trainer.max_tokens`` is spent."""
        cap = self.cfg.trainer.max_tokens
        return self.step_index >= self.cfg.trainer.steps or (cap is not None and self.ledger["ledger/tokens"] >= cap)

    def train_step(self, step: int) -> dict[str, Any]:
        # 1. plan + generate + verify, in as many rounds/refills as the sampler asks for, within the budget
        got = self.rollouts.collect(self.pipeline, step, version=step)
        pools = got.obs()
        # 2. the sampler's train plan: groups, advantages over whole pools, weights, replay, token fraction
        batch = build_train_batch(self.pipeline.finalize(pools, step), version=step)
        self._check_empty(batch, pools, step)
        # 3. loss and optimiser step(s), micro-batched with global normalisers
        t0 = time.perf_counter()
        metrics, losses = self._update(batch, step)
        train_seconds = time.perf_counter() - t0
        # 4. the engine sees the new weights; the sampler learns from this step's outcomes
        self.rollouts.publish(self.model, step + 1)
        self.update.feed(self.engine)  # what the update measured that the engine uses (HAPO entropy statistics)
        self.pipeline.observe(pools, batch.groups, losses, step)
        self.pipeline.observe_update(self.update.take_events())  # e.g. ReMix's policy reset empties the replay buffer
        # 5. books
        self._charge(got, batch)
        adv = float(batch.advantages.abs().mean()) if batch.rollouts else 0.0
        return {**got.metrics(), **self.rollouts.metrics(), "rollout/advantage_abs_mean": adv, **metrics,
                **self.pipeline.metrics(), "perf/train_seconds": train_seconds,
                "perf/lr": self.scheduler.get_last_lr()[0]}

    def _update(self, batch: TrainBatch, step: int) -> tuple[dict[str, float], Any]:
        """Optimise on the batch; return the loss metrics and each group's mean surrogate loss."""
        if not batch.rollouts:
            return {}, None
        micro = make_micro_batches(batch, self.cfg.algo.micro_batch, self.tok.pad_token_id, self.device)
        self.update.prepare(micro, batch)
        self.model.train()
        metrics, per_row, ok = self.update.run(micro, len(batch.rollouts))
        self._check_finite(ok, step)
        self.scheduler.step()
        return metrics | {"loss/nonfinite_skip": int(not ok)}, group_losses(batch, per_row)

    def _charge(self, got: StepRollouts, batch: TrainBatch) -> None:
        self.ledger["ledger/rollouts"] += got.num_rollouts + got.discarded_rollouts  # pruned ones were generated too
        self.ledger["ledger/tokens"] += got.decoded_tokens  # the engine's own count (pruned, tree, partial, resumed)
        for k, v in got.work.items():  # what a projected GPU cost prices (cost.py)
            self.ledger[f"ledger/{k}"] += v
        self.ledger["ledger/rollouts_trained"] += len(batch.rollouts)
        self.ledger["ledger/tokens_trained"] += batch.num_tokens

    def _check_empty(self, batch: TrainBatch, pools: dict, step: int) -> None:
        """Count a step that trains nothing (no prompt to roll out, or every group gated out): never silent;
        stop after ``max_empty_steps`` in a row, the run is not learning."""
        if batch.rollouts:
            self.empty_streak = 0
            return
        self.ledger["ledger/empty_steps"] += 1
        self.empty_streak += 1
        if self.empty_streak > self.cfg.trainer.max_empty_steps:
            own = ckpt.own_checkpoints(self.run_dir, self.rundir.run_id)
            raise TrainingError(f"{self.empty_streak} consecutive steps trained nothing (step {step + 1}: "
                                f"{len(pools)} prompts rolled out, no group kept; trainer.max_empty_steps = "
                                f"{self.cfg.trainer.max_empty_steps}); the last checkpoint is "
                                f"{own[-1] if own else 'none (no checkpoint was written yet)'}")

    def _check_finite(self, ok: bool, step: int) -> None:
        """Count a skipped non-finite step (its update was not applied); stop after ``max_nan_skips`` in a row,
        or at once if the weights themselves became non-finite. No checkpoint is written meanwhile."""
        if ok and all(bool(torch.isfinite(p).all()) for p in self.model.parameters()):
            self.nan_streak = 0
            return
        self.nan_streak += 1
        weights_bad = ok  # the loss and gradient were finite, yet the update made the weights non-finite
        if weights_bad or self.nan_streak > self.cfg.trainer.max_nan_skips:
            own = ckpt.own_checkpoints(self.run_dir, self.rundir.run_id)
            last = own[-1] if own else None
            what = "non-finite weights" if weights_bad else f"{self.nan_streak} consecutive non-finite losses"
            raise TrainingError(f"{what} at step {step + 1}; the last good checkpoint is "
                                f"{last if last is not None else 'none (no checkpoint was written yet)'}")

    def evaluate(self) -> dict[str, Any]:
        self.model.eval()
        params, n = setup.sampling_params(self.cfg, self.tok, eval_mode=True), self.cfg.trainer.eval_samples
        out = self.score_sets(self.task.eval_sets, params, n=n, prefix="eval")
        out |= self.score_sets(self.train_eval_sets, params, n=n, prefix="train_eval")
        return out | {"eval/ledger_tokens": self.ledger["ledger/tokens"]}

    def _score_single_turn(self, sets: dict[str, Any], params: Any, n: int, prefix: str) -> dict[str, Any]:
        return evaluate(self.engine, self.verifier, sets, self.encode, params, n=n, prefix=prefix)

    # ------------------------------------------------------------------ checkpoints
    def save(self) -> Path:
        state = {"ledger": dict(self.ledger), "sampler": self.pipeline.state_dict(),
                 "strategy": self.rollouts.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "nan_streak": self.nan_streak}
        path = ckpt.save_checkpoint(self.run_dir, self.step_index, model=self.model, tokenizer=self.tok,
                                    optimizer=self.optimizer, trainer_state=state,
                                    keep=self.cfg.trainer.keep_checkpoints, run_id=self.rundir.run_id)
        self.saved = (self.step_index, path)
        return path

    def request_stop(self) -> None:
        """Stop before the next step (Ctrl-C): the step in progress finishes, is checkpointed, and ``train``
        raises :class:`TrainingInterrupted`. Safe to call from a signal handler: it only sets a flag."""
        self.stop_requested = True

    def _interrupted(self) -> TrainingInterrupted:
        """Checkpoint the last finished step, unless it is on disk already, none ran, or it was non-finite."""
        n = self.step_index
        if self.saved is not None and self.saved[0] == n:
            return TrainingInterrupted(f"interrupted after step {n}: checkpoint {self.saved[1]} (continue with "
                                       "--resume)")
        if n == 0:
            return TrainingInterrupted("interrupted before the first step finished: no checkpoint written")
        if self.nan_streak:
            return TrainingInterrupted(f"interrupted after step {n}: not checkpointed, its loss was non-finite; "
                                       f"the last good checkpoint is {self.last_checkpoint()}")
        return TrainingInterrupted(f"interrupted after step {n}: checkpoint {self.save()} (continue with --resume)")

    def last_checkpoint(self) -> str:
        """This run's newest checkpoint on disk, for messages ('none' before the first)."""
        own = ckpt.own_checkpoints(self.run_dir, self.rundir.run_id)
        return str(own[-1]) if own else "none (no checkpoint was written yet)"

    def _resume(self, changes: dict[str, tuple[Any, Any]]) -> bool:
        """Restore the newest readable checkpoint and apply the allowed config ``changes`` (logged)."""
        got = ckpt.load_latest(self.run_dir, model=self.model, optimizer=self.optimizer, run_id=self.rundir.run_id)
        if got is None:
            return False
        path, state = got
        self.saved = (state["step"], path)
        self.scheduler.load_state_dict(state["scheduler"])
        if "algo.lr" in changes:  # the saved scheduler holds the old base lr
            self.scheduler.base_lrs = [self.cfg.algo.lr] * len(self.scheduler.base_lrs)
            for g, f in zip(self.optimizer.param_groups, self.scheduler.lr_lambdas):
                g["lr"] = self.cfg.algo.lr * f(self.scheduler.last_epoch)
        self.pipeline.load_state_dict(state["sampler"])
        self.rollouts.load_state_dict(state.get("strategy", {}))
        self.ledger = self.ledger | state["ledger"]
        self.nan_streak = state["nan_streak"]
        self.step_index = state["step"]
        self.rollouts.publish(self.model, self.step_index)
        truncate_metrics(self.run_dir, self.step_index)
        self.resume_changes = [f"{k}: {old!r} -> {new!r}" for k, (old, new) in changes.items()]
        self._print({"resumed_from": str(path), "step": self.step_index, "changed": self.resume_changes})
        return True

    def close(self) -> None:
        self.rollouts.close()
        if self.logger is not None:
            self.logger.close()
        close = getattr(self.verifier, "close", None)
        if close is not None:
            close()


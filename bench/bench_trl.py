"""rollwise vs TRL's GRPOTrainer: seconds per step, rollout tokens/s and held-out accuracy after the same steps.

Both libraries start from the SAME weights (the rollwise warm start of ``configs/direct.toml``, or of
``configs/smoke.toml`` with ``--quick``), use the same char tokenizer, the same arithmetic pool rendered by the
same template, the same verifier (the config's, e.g. ``synthetic_int``, through
``rollwise.compat.trl.TRLReward``) and seed, and
the matched GRPO settings of ``rollwise.compat.trl.grpo_config_kwargs``: G rollouts for each of
``batch_prompts`` prompts per step (uniform prompt sampling), one optimiser step per batch (gradient
accumulation over micro-batches of ``algo.micro_batch`` rows), the PPO clip 0.2 / 0.28 (TRL ``epsilon`` /
``epsilon_high``), token-mean aggregation (TRL ``loss_type="dapo"``, normalised over the whole generation batch),
group-std advantages (TRL ``scale_rewards="group"``, Bessel std in both), no KL (``beta=0``), one pass
(``num_iterations=1``), max 8 new tokens (or the ``--config``'s), temperature 1, top-p 1, fp32, no bf16, no
gradient checkpointing, and
the same AdamW + constant-LR scheduler objects (rollwise's ``build_optimizer``, handed to TRL), grad clip 1.
Both final models are evaluated by the same code: ``rollwise.train.evaluate.evaluate`` with the HF engine,
greedy. ``tests/algos/test_trl_crosscheck.py`` checks that the advantage and loss formulas agree.

Settings that could not be matched exactly:
- Randomness: both walk a seeded permutation of the same pool (uniform, without replacement), but the
  permutations differ, and so do the sampling streams (rollwise: per-step seeded generator, inverse-CDF
  sampling; TRL: ``model.generate`` on torch's global RNG). Accuracy therefore differs by sampling noise
  even with identical algorithms; compare it with that in mind (eval_size prompts per level).
- Advantage epsilon: TRL divides by std + 1e-4, rollwise's trainer by std + 1e-6 (about 1e-4/std relative).
- Position ids: TRL's training forward counts left pads in the positions, rollwise (and both generators)
  do not; with RoPE this is the same function up to float rounding (checked to 1e-5 in the test).
- Log-probs: TRL uses its fused LM head and also computes per-token entropies on every training forward
  (for logging); rollwise gathers the log-softmax and skips entropies. Both are charged to s/step.
- Generation: TRL calls HF ``model.generate`` on the whole generation batch (finished rows keep decoding
  pads until all rows stop); rollwise uses its KV-cached engine with batch compaction. Both stop at EOS.
- rollwise clamps the log-ratio to +-20 before exp (TRL does not): no effect on-policy, where the ratio is 1.
- s/step is wall time of one training step (generate, score, loss, backward, optimiser step): rollwise's
  ``train_step`` and, for TRL, ``on_step_begin`` to ``on_step_end`` (which includes TRL's metric
  bookkeeping, ``logging_steps=1``). Evaluations are outside it. The median skips the first step.
- Rollout tokens/s is completion tokens (EOS included) over generation seconds: rollwise's engine calls, and
  TRL's ``_generate_single_turn`` (padding the prompts, ``model.generate``, cutting at EOS).
- The two runs execute one after the other in one process on the same (possibly shared) CPU threads; with
  ``--interleave`` they run step by step in turn instead (rollwise's step k right after TRL's step k, inside TRL's
  ``on_step_end`` once TRL's step timer has stopped), so a load that changes during the run meets both alike.

    PYTHONPATH=src python bench/bench_trl.py --steps 30 --out bench/results/trl.json
    PYTHONPATH=src python bench/bench_trl.py --steps 5 --quick --out /tmp/trl_quick.json
    PYTHONPATH=src python bench/bench_trl.py --steps 100 --algo.lr=1e-4 --out /tmp/trl_lr1e-4.json  # + overrides
    PYTHONPATH=src python bench/bench_trl.py --config configs/tiny.toml --steps 150 --out bench/results/trl_default.json
    python bench/bench_trl.py --interleave --steps 3 --config configs/smollm2_arith.toml --task.eval_size=8
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from rollwise.compat.trl import build_trl_dataset, build_trl_reward, grpo_config_kwargs, trl_prompt_renderer
from rollwise.config import Config, load_config
from rollwise.data.templates import encode_prompt
from rollwise.train import setup
from rollwise.train.evaluate import evaluate
from rollwise.train.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]


def make_config(quick: bool, steps: int, out_dir: Path, overrides: list[str] = (),
                config: str | None = None) -> Config:
    """The matched settings on ``config`` (default: the direct-answer suite, or smoke with ``quick``, at 8 new
    tokens; a given config keeps its own ``generation.max_new_tokens``)."""
    path = Path(config) if config else ROOT / "configs" / ("smoke.toml" if quick else "direct.toml")
    return load_config(path, [
        f"--run.out_dir={out_dir}", "--run.device=cpu", f"--warmstart.cache_dir={ROOT / '.cache' / 'warmstart'}",
        f"--trainer.steps={steps}", "--trainer.eval_every=0", "--trainer.checkpoint_every=0",
        "--trainer.progress=false", "--trainer.plots=false", "--trainer.loggers=['jsonl']",
        "--sampler.type=uniform", "--algo.aggregation=token-mean", "--algo.kl_coef=0.0",
        "--algo.clip_low=0.2", "--algo.clip_high=0.28", *([] if config else ["--generation.max_new_tokens=8"]),
        "--generation.temperature=1.0", "--model.dtype=float32", *overrides,
    ])


def per_level(ev: dict[str, Any], levels: list[str]) -> dict[str, float]:
    return {lv: ev[f"eval/{lv}/pass@1"] for lv in levels if f"eval/{lv}/pass@1" in ev}


def run_rollwise(cfg: Config, warm: torch.nn.Module, run_dir: Path,
                 levels: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train with rollwise's Trainer; return its results and the step-0 (warm start) eval."""
    trainer = Trainer(cfg, run_dir=run_dir)
    if not same_weights(trainer.model, warm):
        raise RuntimeError("rollwise's Trainer did not load the warm start the TRL run gets")
    try:
        final = trainer.train()
    finally:
        trainer.close()
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    start = next(r for r in rows if r.get("step") == 0 and "eval/mean/pass@1" in r)
    steps = [r for r in rows if "rollout/reward_mean" in r]
    secs, toks, prev_s, prev_t = [], [], 0.0, 0
    for r in steps:
        secs.append(r["ledger/seconds"] - prev_s)
        toks.append(r["ledger/tokens"] - prev_t)
        prev_s, prev_t = r["ledger/seconds"], r["ledger/tokens"]
    return rollwise_result(steps, secs, sum(toks), final, trainer.model, warm, levels), start


def rollwise_result(steps: list[dict[str, Any]], secs: list[float], tokens: int, final: dict[str, Any],
                    model: torch.nn.Module, warm: torch.nn.Module, levels: list[str]) -> dict[str, Any]:
    """rollwise's result from its step rows, step seconds and generated tokens."""
    gen_s = sum(r["perf/generate_seconds"] for r in steps)
    result = summarise("rollwise", secs, tokens / gen_s if gen_s else None, final, levels,
                       [r["rollout/reward_mean"] for r in steps])
    result["weight_change_norm"] = weight_distance(model, warm)
    result["generate_calls"] = int(sum(r["perf/generate_calls"] for r in steps))
    return result


def build_trl_trainer(cfg: Config, model: torch.nn.Module, tok: Any, task: Any, out_dir: Path) -> Any:
    """TRL's GRPOTrainer with the matched config, timed per step and per generation call."""
    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback
    from trl import GRPOConfig, GRPOTrainer

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.seconds: list[float] = []
            self._t = 0.0

        def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self._t = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.seconds.append(time.perf_counter() - self._t)

    class TimedGRPOTrainer(GRPOTrainer):
        """Counts completion tokens and seconds of each generation call (TRL reports neither on CPU)."""

        def _generate_single_turn(self, *args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            completion_ids, logprobs = super()._generate_single_turn(*args, **kwargs)
            self.gen_seconds.append(time.perf_counter() - t)
            self.gen_tokens.append(sum(len(c) for c in completion_ids))
            return completion_ids, logprobs

    sample = trl_prompt_renderer(cfg, tok)(task.pool[0].text)
    if tok(sample)["input_ids"] != tok(sample, add_special_tokens=False)["input_ids"]:
        raise RuntimeError("TRL tokenizes prompts with special tokens, rollwise without: the prompts would differ")
    args = GRPOConfig(**grpo_config_kwargs(cfg), output_dir=str(out_dir), max_steps=cfg.trainer.steps,
                      logging_steps=1, report_to="none", save_strategy="no", use_cpu=True, disable_tqdm=True,
                      dataloader_num_workers=0, shuffle_dataset=True)
    timer = StepTimer()
    trainer = TimedGRPOTrainer(
        model=model, reward_funcs=build_trl_reward(cfg.task.verifier_name()), args=args,
        train_dataset=build_trl_dataset(task.pool, trl_prompt_renderer(cfg, tok)), processing_class=tok,
        callbacks=[timer], optimizers=setup.build_optimizer(cfg, model))
    trainer.remove_callback(PrinterCallback)  # no per-step log dicts on stdout
    trainer.step_timer, trainer.gen_seconds, trainer.gen_tokens = timer, [], []
    return trainer


def run_trl(cfg: Config, warm: torch.nn.Module, tok: Any, task: Any, out_dir: Path,
            levels: list[str]) -> dict[str, Any]:
    model = copy.deepcopy(warm)  # TRL patches the module's forward (fused LM head); keep the warm start intact
    torch.manual_seed(cfg.run.seed)
    trainer = build_trl_trainer(cfg, model, tok, task, out_dir)
    try:
        trainer.train()
    finally:
        close_rewards(trainer)
    return trl_result(cfg, trainer, model, warm, tok, task, levels)


def close_rewards(trainer: Any) -> None:
    for fn in trainer.reward_funcs:
        getattr(fn, "close", lambda: None)()


def trl_result(cfg: Config, trainer: Any, model: torch.nn.Module, warm: torch.nn.Module, tok: Any, task: Any,
               levels: list[str]) -> dict[str, Any]:
    """TRL's result: its timed steps and generation calls, and the trained model's eval by rollwise's code."""
    model.eval()
    final = evaluate_model(cfg, model, tok, task)
    rewards = [h["reward"] for h in trainer.state.log_history if "reward" in h]
    gen_s = sum(trainer.gen_seconds)
    result = summarise("trl", trainer.step_timer.seconds, sum(trainer.gen_tokens) / gen_s if gen_s else None,
                       final, levels, rewards)
    result["weight_change_norm"] = weight_distance(model, warm)
    result["generate_calls"] = len(trainer.gen_seconds)
    return result


def run_interleaved(cfg: Config, warm: torch.nn.Module, tok: Any, task: Any, out_dir: Path,
                    levels: list[str]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Both libraries step by step in turn: TRL's step k, then (in TRL's ``on_step_end``, after its step timer)
    rollwise's step k. Returns rollwise's result, its step-0 eval and TRL's result."""
    from transformers import TrainerCallback

    rw = Trainer(cfg, run_dir=out_dir / "rollwise")
    if not same_weights(rw.model, warm):
        raise RuntimeError("rollwise's Trainer did not load the warm start the TRL run gets")
    rw.rundir.acquire()  # as train() begins: lock the run directory, then prepare it and evaluate step 0
    rw._start(resume=False, overwrite=False)
    start = next(json.loads(line) for line in (out_dir / "rollwise" / "metrics.jsonl").read_text().splitlines()
                 if '"eval/mean/pass@1"' in line)
    secs: list[float] = []
    steps: list[dict[str, Any]] = []

    class RollwiseStep(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            t = time.perf_counter()
            steps.append(rw.train_step(rw.step_index))
            rw.step_index += 1
            secs.append(time.perf_counter() - t)

    model = copy.deepcopy(warm)
    torch.manual_seed(cfg.run.seed)
    trainer = build_trl_trainer(cfg, model, tok, task, out_dir / "trl")
    trainer.add_callback(RollwiseStep())  # after the step timer: TRL's step is timed without rollwise's
    try:
        trainer.train()
        final = rw.evaluate()
    finally:
        rw.rundir.release()
        rw.close()
        close_rewards(trainer)
    result = rollwise_result(steps, secs, int(rw.ledger["ledger/tokens"]), final, rw.model, warm, levels)
    return result, start, trl_result(cfg, trainer, model, warm, tok, task, levels)


def evaluate_model(cfg: Config, model: torch.nn.Module, tok: Any, task: Any) -> dict[str, Any]:
    """rollwise's held-out evaluation (HF engine, greedy) of any model."""
    engine = setup.build_engine(cfg, model, tok)
    verifier = setup.build_verifier(cfg)
    try:
        return evaluate(engine, verifier, task.eval_sets, lambda text: encode_prompt(text, cfg.task, tok),
                        setup.sampling_params(cfg, tok, eval_mode=True))
    finally:
        verifier.close()


def summarise(name: str, secs: list[float], tok_per_s: float | None, ev: dict[str, Any], levels: list[str],
              rewards: list[float]) -> dict[str, Any]:
    timed = secs[1:] if len(secs) > 1 else secs
    return {
        "framework": name, "steps": len(secs),
        "seconds_per_step_median": statistics.median(timed) if timed else None,
        "seconds_per_step": secs, "rollout_tokens_per_s": tok_per_s,
        "final_mean_pass@1": ev.get("eval/mean/pass@1"), "final_pass@1": per_level(ev, levels),
        "reward_mean_per_step": rewards,
    }


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def weight_distance(a: torch.nn.Module, b: torch.nn.Module) -> float:
    """L2 norm of the parameter change from ``b`` to ``a`` (how far training moved the model)."""
    pb = dict(b.named_parameters())
    return float(sum(((p.detach() - pb[n].detach()) ** 2).sum() for n, p in a.named_parameters()) ** 0.5)


def markdown(rows: list[dict[str, Any]], levels: list[str]) -> str:
    def f(x: Any, spec: str) -> str:
        return "-" if x is None else format(x, spec)

    head = "| framework | s/step (median) | rollout tok/s | final mean pass@1 | " + " | ".join(levels) + " |"
    out = [head, "|" + "---|" * (4 + len(levels))]
    for r in rows:
        lv = " | ".join(f(r["final_pass@1"].get(level), ".3f") for level in levels)
        out.append(f"| {r['framework']} | {f(r['seconds_per_step_median'], '.3f')} | "
                   f"{f(r['rollout_tokens_per_s'], '.0f')} | {f(r['final_mean_pass@1'], '.3f')} | {lv} |")
    return "\n".join(out)


def machine_info() -> dict[str, Any]:
    import transformers
    import trl

    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "nproc": len(os.sched_getaffinity(0)), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "load_average": list(os.getloadavg()), "python": platform.python_version(), "machine": platform.machine(),
        "processor": platform.processor(), "torch": torch.__version__, "transformers": transformers.__version__,
        "trl": trl.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "trl.json")
    ap.add_argument("--quick", action="store_true", help="smoke-size model and batch (a fast check)")
    ap.add_argument("--config", default=None, help="base config (default: configs/direct.toml at 8 new tokens)")
    ap.add_argument("--interleave", action="store_true",
                    help="run the two step by step in turn (rollwise's step after each TRL step), not one after "
                         "the other")
    a, overrides = ap.parse_known_args(argv)  # the rest: config overrides such as --algo.lr=1e-4
    try:
        import trl  # noqa: F401
    except ImportError:
        print("TRL is not installed: pip install -e '.[trl]'", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bench_trl_") as tmp:
        cfg = make_config(a.quick, a.steps, Path(tmp), overrides, a.config)
        setup.set_threads(cfg)
        task = setup.build_task(cfg)
        t0 = time.perf_counter()
        warm, tok, _ = setup.build_policy(cfg, task, log=lambda row: print(row, file=sys.stderr))
        print(f"warm start ready in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
        levels = list(task.level_names)
        meta = machine_info() | {"quick": a.quick, "steps": a.steps, "overrides": overrides,
                                 "config": a.config or ("smoke" if a.quick else "direct"),
                                 "settings": grpo_config_kwargs(cfg),
                                 "eval_prompts_per_level": cfg.task.eval_size, "cpu_shared_note":
                                 "the CPU may be shared with other work; see load_average"}
        meta["interleave"] = a.interleave
        if a.interleave:
            rw, start, tr = run_interleaved(cfg, warm, tok, task, Path(tmp), levels)
        else:
            rw, start = run_rollwise(cfg, warm, Path(tmp) / "rollwise", levels)
            print(f"rollwise done: {rw['seconds_per_step_median']:.3f} s/step", file=sys.stderr)
            tr = run_trl(cfg, warm, tok, task, Path(tmp) / "trl", levels)
        print(f"rollwise {rw['seconds_per_step_median']:.3f} s/step, trl {tr['seconds_per_step_median']:.3f} s/step, "
              f"ratio {rw['seconds_per_step_median'] / tr['seconds_per_step_median']:.3f}", file=sys.stderr)
    warm_row = summarise("warm start (step 0)", [], None, start, levels, [])
    meta["load_average_end"] = list(os.getloadavg())
    print(markdown([warm_row, rw, tr], levels))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"meta": meta, "results": [warm_row, rw, tr]}, indent=2) + "\n")
    print(f"wrote {a.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

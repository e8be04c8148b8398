"""Chaos test of a run directory: SIGKILL a default run at random moments, resume it, and check that it ends
bit-identical to an uninterrupted run (weights, optimiser, sampler state, RNG-driven metrics rows).

    python bench/chaos.py --kills 20 [--steps 40] [--seed 0] [--out bench/results/chaos]

Each trial starts the run (``rollwise train configs/tiny.toml``, shortened to ``--steps`` with a checkpoint
every 2 steps and an eval every 10) in a fresh directory and kills it once with SIGKILL: at a random time
(anywhere from start-up to near the end, so some kills land in model loading), or right after metrics.jsonl
grows (a metric write); a draw that comes after the run finished is drawn again, so every trial is killed.
With probability ``--double`` the resumed process is killed again during its own start-up/resume. Then
``--resume`` runs to the end and the final state is compared with the reference. A trial is identical when
every weight and optimiser tensor is equal, the pickled sampler state is equal, and the metrics rows (timing
keys removed) are equal. Results go to ``OUT/chaos.json``.

``--mode async`` runs the smoke config in async mode on a private local Ray (``--run.mode=async``, staleness
``--eta``, a checkpoint every 2 steps) and kills, at a random moment while it trains, in turn
the trainer (SIGKILL to the trainer and every process it started: its Ray, its rollout workers; then
``--resume``) or one rollout worker (SIGKILL to its process; Ray restarts it and the run goes on). Async runs
are not bit-identical (which weights sample a token depends on timing), so a trial is compared with an
uninterrupted async run on what must not change: the run completes (every step logged once, the last
checkpoint at the last step), every step generated and trained its batch_prompts x group_size rollouts (no
prompt lost from a step), and the final sampler statistics count each prompt's rollouts once (no prompt trained
twice; the same total as the reference). Results go to ``OUT/chaos_async.json``.

    python bench/chaos.py --mode async --kills 5 --steps 12 [--eta 2]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]


def command(out: Path, name: str, steps: int, resume: bool) -> list[str]:
    return [sys.executable, "-m", "rollwise.cli", "train", str(ROOT / "configs" / "tiny.toml"),
            f"--run.out_dir={out}", f"--run.name={name}", f"--trainer.steps={steps}",
            "--trainer.checkpoint_every=2", "--trainer.eval_every=10", "--trainer.progress=false",
            "--trainer.plots=false", *(["--resume"] if resume else [])]


def run(cmd: list[str], kill_after: float | None = None, on_write: bool = False,
        metrics: Path | None = None) -> int:
    """Run ``cmd``; SIGKILL it after ``kill_after`` seconds, or (``on_write``) as soon as ``metrics`` grows
    after that time. Returns the exit code (-9 when killed)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if kill_after is None:
        return proc.wait()
    t0 = time.monotonic()
    size = -1
    while proc.poll() is None:
        elapsed = time.monotonic() - t0
        if on_write and metrics is not None:
            now = metrics.stat().st_size if metrics.is_file() else 0
            if elapsed >= kill_after and size >= 0 and now != size:
                proc.send_signal(signal.SIGKILL)
                break
            size = now
        elif elapsed >= kill_after:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.002)
    return proc.wait()


def final_state(run_dir: Path) -> dict[str, Any]:
    ckpts = sorted(p for p in (run_dir / "checkpoints").glob("step_*") if (p / "COMPLETE").is_file())
    last = ckpts[-1]
    with open(last / "trainer_state.pkl", "rb") as f:
        state = pickle.load(f)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    rows = [{k: v for k, v in r.items() if not k.startswith("perf/") and "seconds" not in k} for r in rows]
    return {"step": last.name, "weights": load_file(str(last / "model.safetensors")),
            "optimizer": torch.load(last / "optimizer.pt", weights_only=False), "sampler": state["sampler"],
            "rows": rows}


def same(a: Any, b: Any) -> bool:
    """Exact structural equality of nested dicts/lists/tuples of tensors, arrays and plain values."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape \
            and bool(torch.equal(a, b))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if hasattr(a, "__dict__") and hasattr(b, "__dict__") and type(a) is type(b):
        return same(vars(a), vars(b))
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True
    return a == b


def compare(ref: dict[str, Any], got: dict[str, Any]) -> list[str]:
    bad = [k for k in ("step", "weights", "optimizer", "sampler", "rows") if not same(ref[k], got[k])]
    return bad


# ------------------------------------------------------------------ async mode
BATCH, GROUP = 6, 4  # configs/smoke.toml


def async_command(out: Path, name: str, steps: int, eta: int, resume: bool) -> list[str]:
    return [sys.executable, "-m", "rollwise.cli", "train", str(ROOT / "configs" / "smoke.toml"),
            f"--run.out_dir={out}", f"--run.name={name}", f"--trainer.steps={steps}", "--run.mode=async",
            f"--async.max_staleness={eta}", "--run.threads=1", "--ray.num_cpus=2", "--trainer.checkpoint_every=2",
            "--trainer.eval_every=0", "--trainer.progress=false", "--trainer.plots=false",
            *(["--resume"] if resume else [])]


def _tree(proc: subprocess.Popen) -> list[Any]:
    """The processes ``proc`` started (its Ray daemons and rollout workers), found while they still hang off it."""
    import psutil

    try:
        return psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _kill_all(procs: list[Any]) -> None:
    for p in procs:
        try:
            p.send_signal(signal.SIGKILL)
        except Exception:  # gone already
            pass


def _workers(proc: subprocess.Popen) -> list[Any]:
    out = []
    for p in _tree(proc):
        try:
            if "RolloutWorker" in " ".join(p.cmdline()) or "RolloutWorker" in p.name():
                out.append(p)
        except Exception:
            pass
    return out


def run_async(cmd: list[str], log: Path, kind: str | None = None, rows: int = 0, delay: float = 0.0,
              on_write: bool = False, metrics: Path | None = None) -> tuple[int, bool]:
    """Run ``cmd``; ``delay`` seconds after ``metrics`` holds ``rows`` rows (``on_write``: at the first metric
    write after that) SIGKILL the trainer and every process it started (``kind = "trainer"``), or one rollout
    worker (``"worker"``, the run goes on). The moment follows the run's own progress, not the clock, so a
    loaded or an idle machine kills at the same place. Returns (exit code, whether the kill happened);
    whatever the run leaves behind is killed at the end."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as err:  # the run's stderr, kept with a trial that fails
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
    size, done, seen, reached = -1, kind is None, [], None
    while proc.poll() is None:
        seen = _tree(proc) or seen
        if not done and reached is None and metrics is not None and metrics.is_file() and \
                len(metrics.read_text().splitlines()) >= rows:
            reached = time.monotonic()
        if not done and reached is not None and time.monotonic() - reached >= delay:
            now = metrics.stat().st_size if (on_write and metrics is not None and metrics.is_file()) else 0
            due = not on_write or (size >= 0 and now != size)
            size = now
            if due and kind == "trainer":
                seen = _tree(proc) or seen
                _kill_all([psutil_proc(proc.pid), *seen])
                done = True
            elif due and kind == "worker" and (ws := _workers(proc)):
                _kill_all(ws[:1])
                done = True
        time.sleep(0.02)
    code = proc.wait()
    _kill_all(seen)  # a killed trainer's Ray would outlive it
    return code, done


def psutil_proc(pid: int) -> Any:
    import psutil

    return psutil.Process(pid)


def async_state(run_dir: Path) -> dict[str, Any]:
    """What an async run must agree on with the reference: its steps, each step's counts, the final sampler
    statistics (rollouts per prompt) and how many prompts the selector passed over without training them."""
    ckpts = sorted(p for p in (run_dir / "checkpoints").glob("step_*") if (p / "COMPLETE").is_file())
    with open(ckpts[-1] / "trainer_state.pkl", "rb") as f:
        sampler = pickle.load(f)["sampler"]
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "rollout/reward_mean" in r]
    attempts = np.asarray(sampler["stats"]["attempts"])
    sel = sampler["components"]["selector"][1]
    passed = np.asarray(sel["order"])[: sel["cursor"]] if sel.get("order") is not None else np.zeros(0, int)
    return {"checkpoint": ckpts[-1].name, "steps": [r["step"] for r in rows],
            "per_step": [(r["sampler/prompts_generated"], r["sampler/rollouts_per_prompt_min"],
                          r["sampler/rollouts_per_prompt_max"], r["sampler/rollouts_trained"]) for r in rows],
            "rollouts_trained": rows[-1]["ledger/rollouts_trained"] if rows else 0,
            "attempts_total": int(attempts.sum()), "attempts_max": int(attempts.max()),
            "prompts_trained": int((attempts > 0).sum()), "passed_untrained": int((attempts[passed] == 0).sum()),
            "restarts": rows[-1].get("async/worker_restarts", 0) if rows else 0,
            "accuracy": rows[-1].get("eval/mean/pass@1") if rows else None}


def compare_async(ref: dict[str, Any], got: dict[str, Any], steps: int) -> list[str]:
    bad = []
    if got["steps"] != list(range(1, steps + 1)) or got["checkpoint"] != ref["checkpoint"]:
        bad.append("incomplete")
    full = (BATCH, GROUP, GROUP, BATCH * GROUP)
    if any(s != full for s in got["per_step"]) or got["rollouts_trained"] != ref["rollouts_trained"]:
        bad.append("prompt lost from a step")
    if got["attempts_max"] > GROUP or got["attempts_total"] != ref["attempts_total"]:
        bad.append("prompt trained twice")
    return bad


def main_async(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    work = args.out / "runs_async"
    shutil.rmtree(work, ignore_errors=True)
    t0 = time.monotonic()
    code, _ = run_async(async_command(work, "ref", args.steps, args.eta, False), work / "ref.log")
    assert code == 0, "the uninterrupted async reference run failed"
    ref_seconds = time.monotonic() - t0
    ref = async_state(work / "ref")
    assert not compare_async(ref, ref, args.steps), f"the reference itself is not whole: {ref}"
    trials = []
    for i in range(args.kills):
        name, kind = f"trial{i:02d}", ("trainer", "worker")[i % 2]
        metrics = work / name / "metrics.jsonl"
        killed, tries = False, 0
        log = work / f"{name}.log"
        while not killed:  # a kill that came too late (the run had finished) is drawn again
            shutil.rmtree(work / name, ignore_errors=True)
            log.unlink(missing_ok=True)
            on_write = kind == "trainer" and rng.random() < 0.5
            # while it trains: once step `after` is logged (rows: the step-0 eval row, then one per step), up to
            # 50 ms later (a smoke step takes ~30 ms on an idle core); not before step 1 (start-up: Ray, the
            # worker being built; a kill there loses no step) nor after the last (a resume from the end)
            after, delay = rng.randint(1, args.steps - 1), rng.uniform(0.0, 0.05)
            at = f"step {after} + {1000 * delay:.0f} ms"
            code, killed = run_async(async_command(work, name, args.steps, args.eta, False), log, kind, after + 1,
                                     delay, on_write, metrics)
            tries += 1
        resumed = kind == "trainer"
        ckpts = sorted(p.name for p in (work / name / "checkpoints").glob("step_*") if (p / "COMPLETE").is_file())
        resume_from = (ckpts[-1] if ckpts else "start") if resumed else None
        if resumed:
            code, _ = run_async(async_command(work, name, args.steps, args.eta, True), log)
        got = async_state(work / name) if code == 0 else None
        bad = compare_async(ref, got, args.steps) if got is not None else ["run failed"]
        trials.append({"trial": i, "kill": kind, "kill_at": at, "on_write": on_write, "tries": tries,
                       "resumed": resumed, "resume_from": resume_from, "final_exit": code, "whole": not bad,
                       "differs": bad, "state": got})
        then = f" -> resume from {resume_from}" if resumed else " (run went on)"
        seen = "" if got is None else f", restarts {got['restarts']}, passed over {got['passed_untrained']}"
        print(f"{name}: kill {kind} {'on the first write after' if on_write else 'at'} {at}{then} -> "
              f"{'whole' if not bad else bad}{seen}", flush=True)
        if not bad:  # a failed trial keeps its run directory and log
            shutil.rmtree(work / name, ignore_errors=True)
            log.unlink(missing_ok=True)
    ok = sum(t["whole"] for t in trials)
    result = {"mode": "async", "kills": args.kills, "whole": ok, "steps": args.steps, "eta": args.eta,
              "seed": args.seed, "reference_seconds": round(ref_seconds, 1), "reference": ref, "trials": trials,
              "load": os.getloadavg()[0], "date": time.strftime("%Y-%m-%d %H:%M")}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "chaos_async.json").write_text(json.dumps(result, indent=2))
    print(f"{ok}/{args.kills} whole (complete, no prompt lost from a step or trained twice); the reference "
          f"passed over {ref['passed_untrained']} prompts untrained")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mode", choices=["sync", "async"], default="sync")
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--eta", type=int, default=2, help="async.max_staleness of the async variant")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--double", type=float, default=0.3, help="probability of a second kill during the resume")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "chaos")
    args = ap.parse_args()
    if args.mode == "async":
        return main_async(args)
    rng = random.Random(args.seed)
    work = args.out / "runs"
    shutil.rmtree(work, ignore_errors=True)
    t0 = time.monotonic()
    assert run(command(work, "ref", args.steps, False)) == 0, "the uninterrupted reference run failed"
    ref_seconds = time.monotonic() - t0
    ref = final_state(work / "ref")
    trials = []
    for i in range(args.kills):
        name = f"trial{i:02d}"
        metrics = work / name / "metrics.jsonl"
        code, tries = 0, 0
        while code != -signal.SIGKILL:  # a kill that came too late (the run had finished) is drawn again
            shutil.rmtree(work / name, ignore_errors=True)
            on_write = rng.random() < 0.5
            at = rng.uniform(0.5, 0.9 * ref_seconds)
            code = run(command(work, name, args.steps, False), at, on_write, metrics)
            tries += 1
        second = None
        if rng.random() < args.double:  # kill the resume itself, before or while it restores
            second = rng.uniform(0.2, 8.0)
            run(command(work, name, args.steps, True), second)
        final = run(command(work, name, args.steps, True))
        bad = compare(ref, final_state(work / name)) if final == 0 else ["resume failed"]
        trials.append({"trial": i, "kill_at_s": round(at, 2), "kind": "metric write" if on_write else "random",
                       "first_exit": code, "tries": tries, "second_kill_at_s": second and round(second, 2),
                       "identical": not bad, "differs": bad})
        print(f"{name}: kill {'on write' if on_write else 'at'} {at:5.2f}s (exit {code})"
              f"{f', resume killed at {second:.2f}s' if second else ''} -> {'identical' if not bad else bad}",
              flush=True)
        shutil.rmtree(work / name, ignore_errors=True)
    ok = sum(t["identical"] for t in trials)
    result = {"kills": args.kills, "identical": ok, "steps": args.steps, "seed": args.seed,
              "reference_seconds": round(ref_seconds, 1), "trials": trials, "load": os.getloadavg()[0],
              "date": time.strftime("%Y-%m-%d")}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "chaos.json").write_text(json.dumps(result, indent=2))
    print(f"{ok}/{args.kills} identical to the uninterrupted run")


if __name__ == "__main__":
    main()

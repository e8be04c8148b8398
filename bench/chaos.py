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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--double", type=float, default=0.3, help="probability of a second kill during the resume")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "chaos")
    args = ap.parse_args()
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

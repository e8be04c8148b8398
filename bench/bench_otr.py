"""Issue-18 benchmark: One-Token Rollout (OTR) vs SFT as the warm start, at equal compute.

Both warm starts use the default data stream, steps (1500), batch (256) and learning-rate schedule; only the
loss differs (``warmstart.objective``). The SFT arm is the packaged default warm start (bit-identical to one
trained from scratch, docs/benchmarks.md section 1; ``--sft-from-scratch`` retrains and times it); the OTR arm is
trained from scratch into ``<out>/warmstart_cache``. For each arm: held-out greedy pass@1 per level right after
the warm start (the step-0 eval of its RL runs), then the default RL (``rollwise train``) from it for each seed,
and the RL gain. Results: ``<out>/results.json`` (written after every run, so a cut-short run keeps what it did)
and ``<out>/results.md``.

    python bench/bench_otr.py --seeds 0 1 2 --out bench/results/otr -- --run.threads=1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

import rollwise.generation.hf  # noqa: F401 - imported now, not mid-run (the engine is a lazy registry entry)
from rollwise.config import load_config
from rollwise.logging import read_metrics
from rollwise.train import setup, warmstart
from rollwise.train.trainer import Trainer

ARMS = {"sft": [], "otr": ["--warmstart.objective=otr"]}


def train_arm_warmstart(arm: str, out: Path, overrides: list[str]) -> dict:
    """Train one arm's warm start from scratch into ``out/warmstart_cache``; its wall time and path."""
    cfg = load_config(None, [f"--warmstart.cache_dir={out / 'warmstart_cache'}", *ARMS[arm], *overrides])
    task = setup.build_task(cfg)
    setup.set_threads(cfg)
    t0 = time.perf_counter()
    path = warmstart.train_warmstart(cfg, task.heldout, torch.device("cpu"), log=lambda row: print(arm, row))
    return {"path": str(path), "key": path.name, "seconds": time.perf_counter() - t0}


def run_rl(arm: str, seed: int, out: Path, overrides: list[str]) -> dict:
    cfg = load_config(None, [f"--warmstart.cache_dir={out / 'warmstart_cache'}", *ARMS[arm], f"--run.seed={seed}",
                             f"--run.out_dir={out / arm}", f"--run.name=seed{seed}", "--trainer.progress=false",
                             *overrides])
    path = warmstart.find_warmstart(cfg)
    t0 = time.perf_counter()
    tr = Trainer(cfg, rundir=None)
    tr.train(overwrite=True)
    tr.close()
    wall = time.perf_counter() - t0
    ev = [r for r in read_metrics(tr.run_dir) if "eval/mean/pass@1" in r]
    levels = [k.split("/")[1] for k in ev[0] if k.endswith("/pass@1") and k != "eval/mean/pass@1"]
    start = {lv: ev[0][f"eval/{lv}/pass@1"] for lv in levels}
    end = {lv: ev[-1][f"eval/{lv}/pass@1"] for lv in levels}
    return {"seed": seed, "warmstart": str(path), "rl_wall_seconds": wall, "start": start, "end": end,
            "start_mean": ev[0]["eval/mean/pass@1"], "end_mean": ev[-1]["eval/mean/pass@1"],
            "gain_mean": ev[-1]["eval/mean/pass@1"] - ev[0]["eval/mean/pass@1"], "tokens": ev[-1]["ledger/tokens"]}


def table(result: dict) -> str:
    arms = [a for a in ARMS if result["arms"].get(a, {}).get("runs")]
    if not arms:
        return ""
    levels = list(result["arms"][arms[0]]["runs"][0]["start"])
    head = " | ".join(f"{a} warm start | {a} after RL" for a in arms)
    lines = [f"| level | {head} |", "|---" * (1 + 2 * len(arms)) + "|"]
    for lv in [*levels, "mean"]:
        cells = []
        for a in arms:
            runs = result["arms"][a]["runs"]
            s = runs[0]["start_mean"] if lv == "mean" else runs[0]["start"][lv]  # greedy: seed-independent
            e = np.mean([r["end_mean"] if lv == "mean" else r["end"][lv] for r in runs])
            cells.append(f"{s:.3f} | {e:.3f}")
        lines.append(f"| {lv} | " + " | ".join(cells) + " |")
    for a in arms:
        gains = [r["gain_mean"] for r in result["arms"][a]["runs"]]
        sd = float(np.std(gains, ddof=1)) if len(gains) > 1 else 0.0
        ws = result["arms"][a].get("warmstart_seconds")
        lines.append(f"\n{a}: RL gain in mean held-out pass@1 {np.mean(gains):+.3f} ± {sd:.3f} over seeds "
                     f"{[r['seed'] for r in result['arms'][a]['runs']]} (per seed "
                     + " / ".join(f"{g:+.3f}" for g in gains) + ")"
                     + (f"; warm start {ws:.0f} s" if ws else ""))
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    ap.add_argument("--out", default="bench/results/otr")
    ap.add_argument("--sft-from-scratch", action="store_true", help="retrain and time the SFT warm start too")
    ap.add_argument("--reuse-warmstart", action="store_true", help="reuse a warm start this script trained into "
                    "<out>/warmstart_cache (e.g. to rerun only the RL part)")
    ap.add_argument("overrides", nargs="*", help="extra --key=value config overrides (e.g. --run.threads=1)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result: dict = {"machine": {"nproc": os.cpu_count(), "cpu": platform.processor() or platform.machine(),
                                "torch": torch.__version__, "load_avg_start": os.getloadavg()},
                    "date": str(date.today()), "overrides": args.overrides, "arms": {}}
    save = lambda: (out / "results.json").write_text(json.dumps(result, indent=2))  # noqa: E731
    for arm in args.arms:  # warm starts first, then RL seed by seed, arms interleaved (a cut-short run stays paired)
        entry = result["arms"].setdefault(arm, {"runs": []})
        cached = out / "warmstart_cache"
        done = [p for p in cached.glob("*/warmstart.json") if json.loads(p.read_text()).get("objective") == arm]
        if args.reuse_warmstart and done:  # a warm start this script trained before (its time as measured then)
            meta = json.loads(done[0].read_text())
            entry |= {"warmstart_seconds": meta["seconds"], "warmstart_key": meta["key"], "warmstart_reused": True}
        elif arm != "sft" or args.sft_from_scratch:
            ws = train_arm_warmstart(arm, out, args.overrides)
            entry |= {"warmstart_seconds": ws["seconds"], "warmstart_key": ws["key"]}
            print(f"{arm} warm start: {ws['seconds']:.0f} s -> {ws['path']}")
            save()
    for seed in args.seeds:
        for arm in args.arms:
            run = run_rl(arm, seed, out, args.overrides)
            result["arms"][arm]["runs"].append(run)
            print(f"{arm} seed {seed}: warm start {run['start_mean']:.3f} -> RL {run['end_mean']:.3f} "
                  f"({run['rl_wall_seconds']:.0f} s)")
            save()
            (out / "results.md").write_text(table(result))
    md = table(result)
    (out / "results.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()

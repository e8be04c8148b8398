"""Issue-2 benchmark: the embedded default end to end.

1. Time the warm start from scratch (a fresh cache directory, so nothing is reused).
2. Run RL with the default config for several seeds (same warm start, same eval sets).
3. Report per-level held-out pass@1 before and after RL, the mean gain over the levels whose warm-start
   pass@1 lies in [10%, 60%], and wall times. Results: JSON + a markdown table.

    python bench/bench_default.py --seeds 0 1 2 --out bench/results/default
    python bench/bench_default.py --config configs/direct.toml --out bench/results/default_direct  # the old default
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

from rollwise.config import load_config
from rollwise.logging import read_metrics
from rollwise.train.trainer import Trainer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--config", default=None, help="base config (default: the embedded default)")
    ap.add_argument("--out", default="bench/results/default")
    ap.add_argument("--skip-warmstart-timing", action="store_true", help="reuse the packaged/cached warm start")
    ap.add_argument("overrides", nargs="*", help="extra --key=value config overrides")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result: dict = {"machine": {"nproc": os.cpu_count(), "cpu": platform.processor() or platform.machine(),
                                "torch": torch.__version__, "load_avg_start": os.getloadavg()},
              "date": str(date.today()), "config": args.config or "default", "runs": []}
    if not args.skip_warmstart_timing:
        cache = out / "warmstart_cache"
        shutil.rmtree(cache, ignore_errors=True)
        cfg = load_config(args.config, [f"--warmstart.cache_dir={cache}", "--trainer.steps=0",
                                 f"--run.out_dir={out}", "--run.name=warmstart", *args.overrides])
        from rollwise.train import setup, warmstart

        task = setup.build_task(cfg)
        setup.set_threads(cfg)
        t0 = time.perf_counter()
        path = warmstart.train_warmstart(cfg, task.heldout, torch.device("cpu"))  # never the packaged copy
        result["warmstart_seconds"] = time.perf_counter() - t0
        packaged = warmstart.PACKAGED / path.name / "model.safetensors"
        if packaged.is_file():  # is the shipped checkpoint what this command makes?
            from safetensors.torch import load_file

            a, b = load_file(str(path / "model.safetensors")), load_file(str(packaged))
            result["warmstart_max_abs_diff_vs_packaged"] = max(float((a[k] - b[k]).abs().max()) for k in a)
        print(f"warm start from scratch: {result['warmstart_seconds']:.0f} s")
    for seed in args.seeds:
        cfg = load_config(args.config, [f"--run.seed={seed}", f"--run.out_dir={out}", f"--run.name=seed{seed}",
                                 "--trainer.progress=false", *args.overrides])
        t0 = time.perf_counter()
        tr = Trainer(cfg)
        tr.train()
        tr.close()
        wall = time.perf_counter() - t0
        ev = [r for r in read_metrics(tr.run_dir) if "eval/mean/pass@1" in r]
        levels = [k.split("/")[1] for k in ev[0] if k.endswith("/pass@1") and k != "eval/mean/pass@1"]
        start = {lv: ev[0][f"eval/{lv}/pass@1"] for lv in levels}
        end = {lv: ev[-1][f"eval/{lv}/pass@1"] for lv in levels}
        mid = [lv for lv in levels if 0.10 <= start[lv] <= 0.60]
        gain = float(np.mean([end[lv] - start[lv] for lv in mid])) if mid else float("nan")
        length = {lv: [ev[0][f"eval/{lv}/length"], ev[-1][f"eval/{lv}/length"]] for lv in levels}
        result["runs"].append({"seed": seed, "rl_wall_seconds": wall, "start": start, "end": end, "length": length,
                               "mid_levels": mid, "mid_gain": gain, "tokens": ev[-1]["ledger/tokens"]})
        print(f"seed {seed}: RL {wall:.0f} s, gain over {mid}: {gain:+.3f}")
    gains = [r["mid_gain"] for r in result["runs"]]
    result["mid_gain_mean"] = float(np.mean(gains))
    result["mid_gain_std"] = float(np.std(gains, ddof=1)) if len(gains) > 1 else 0.0
    (out / "results.json").write_text(json.dumps(result, indent=2))
    levels = list(result["runs"][0]["start"])
    lines = ["| level | warm start | after RL (mean over seeds) | change | greedy completion tokens, start -> end |",
             "|---|---|---|---|---|"]
    for lv in levels:
        s = np.mean([r["start"][lv] for r in result["runs"]])
        e = np.mean([r["end"][lv] for r in result["runs"]])
        n0, n1 = (np.mean([r["length"][lv][i] for r in result["runs"]]) for i in (0, 1))
        lines.append(f"| {lv} | {s:.3f} | {e:.3f} | {e - s:+.3f} | {n0:.1f} -> {n1:.1f} |")
    lines.append(f"\nmean gain over levels with warm start in [10%, 60%]: {result['mid_gain_mean']:+.3f} "
                 f"± {result['mid_gain_std']:.3f} (seeds {args.seeds})")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

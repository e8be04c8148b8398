"""Issue 3 check: every registered sampler preset completes a full run (``--config``, default the embedded default
``configs/tiny.toml``, 150 steps).

Records, per preset: completed or the error, wall seconds, final held-out mean pass@1, mean share of mixed
groups, rollouts and tokens generated. Results: JSON + a markdown table.

    python bench/run_presets.py --out bench/results/presets_mixed
    python bench/run_presets.py --config configs/direct.toml --out bench/results/presets   # the 2026-11 record
"""

from __future__ import annotations

import argparse
import json
import os
import time
import traceback
from datetime import date
from pathlib import Path

import numpy as np

from rollwise.config import load_config
from rollwise.logging import read_metrics
from rollwise.sampling.presets import PRESETS
from rollwise.train.trainer import Trainer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="bench/results/presets_mixed")
    ap.add_argument("--config", default="configs/tiny.toml", help="base config")
    ap.add_argument("--presets", nargs="*", default=None, help="default: every registered preset")
    ap.add_argument("overrides", nargs="*", help="extra --key=value config overrides")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.presets or sorted(PRESETS.names()):
        cfg = load_config(args.config, [f"--sampler.type={name}", f"--run.out_dir={out}", f"--run.name={name}",
                                 "--trainer.eval_every=0", "--trainer.checkpoint_every=0", *args.overrides])
        t0 = time.perf_counter()
        row: dict = {"preset": name}
        try:
            tr = Trainer(cfg)
            final = tr.train()
            tr.close()
            m = [r for r in read_metrics(tr.run_dir) if "sampler/mixed_share" in r]
            row |= {"status": "completed", "steps": tr.step_index, "final_mean_pass@1": final["eval/mean/pass@1"],
                    "mixed_share": float(np.mean([r["sampler/mixed_share"] for r in m])),
                    "rollouts": tr.ledger["ledger/rollouts"], "tokens": tr.ledger["ledger/tokens"]}
        except Exception as exc:  # report and go on: the point is to see which presets fail
            row |= {"status": f"error: {exc!r}", "traceback": traceback.format_exc()}
        row["seconds"] = time.perf_counter() - t0
        rows.append(row)
        print(name, row["status"], f"{row['seconds']:.0f} s", flush=True)
    meta = {"date": str(date.today()), "config": args.config, "nproc": os.cpu_count(),
            "load_average_end": os.getloadavg()}
    (out / "results.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    lines = ["| preset | status | steps | final mean pass@1 | mixed share | rollouts | tokens | seconds |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["status"] == "completed":
            lines.append(f"| {r['preset']} | completed | {r['steps']} | {r['final_mean_pass@1']:.3f} | "
                         f"{r['mixed_share']:.2f} | {r['rollouts']} | {r['tokens']} | {r['seconds']:.0f} |")
        else:
            lines.append(f"| {r['preset']} | {r['status'][:60]} | - | - | - | - | - | {r['seconds']:.0f} |")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

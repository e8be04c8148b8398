"""What skipping zero-advantage rows saves in the update (``algo.skip_zero_rows``): the same step batches of a
config, updated with the skip on and off from the same weights, interleaved and repeated; prints the share of
rows skipped, the median update seconds of each and their ratio, and checks the two updates agree.

    python bench/bench_update_skip.py                        # the embedded default (configs/tiny.toml)
    python bench/bench_update_skip.py --steps 4 --reps 5 --config configs/tiny.toml --out bench/results/x.json

Batches come from the warm-started model's own rollouts at steps 0..steps-1 (a real share of all-equal groups),
generated once; each timed update starts from a copy of the same weights and optimiser state.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from rollwise.config import load_config
from rollwise.train.batch import build_train_batch, make_micro_batches
from rollwise.train.trainer import Trainer
from rollwise.train.update import PolicyUpdate

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "tiny.toml"))
    ap.add_argument("--steps", type=int, default=4, help="step batches to time")
    ap.add_argument("--reps", type=int, default=5, help="timed updates per batch and setting")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None, help="write the result JSON here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(args.config, [f"--run.out_dir={tmp}", "--trainer.progress=false",
                                        f"--run.threads={args.threads}"])
        tr = Trainer(cfg)
        batches = []
        for step in range(args.steps):
            got = tr.rollouts.collect(tr.pipeline, step, version=step)
            batches.append(build_train_batch(tr.pipeline.finalize(got.obs(), step), version=step))
            tr.pipeline.observe(got.obs(), batches[-1].groups, None, step)
        times: dict[bool, list[float]] = {False: [], True: []}
        skipped, rows, max_diff = 0, 0, 0.0
        for batch in batches:
            rows += len(batch.rollouts)
            params = {}
            for _ in range(args.reps):
                for skip in (False, True):
                    model = copy.deepcopy(tr.model)
                    opt = torch.optim.AdamW(model.parameters(), lr=cfg.algo.lr, betas=(0.9, 0.99))
                    algo = cfg.algo.model_copy(update={"skip_zero_rows": skip})
                    upd = PolicyUpdate(model, opt, algo, cfg.generation.temperature, cfg.generation.max_new_tokens)
                    micro = make_micro_batches(batch, cfg.algo.micro_batch, tr.tok.pad_token_id, tr.device)
                    model.train()
                    t0 = time.perf_counter()
                    upd.prepare(micro, batch)
                    metrics, _, _ = upd.run(micro, len(batch.rollouts))
                    times[skip].append(time.perf_counter() - t0)
                    params[skip] = torch.cat([p.detach().flatten() for p in model.parameters()])
                    if skip:
                        skipped_now = metrics["perf/update_rows_skipped"]
            skipped += skipped_now
            max_diff = max(max_diff, float((params[True] - params[False]).abs().max()))
        tr.close()
    off, on = statistics.median(times[False]), statistics.median(times[True])
    out = {"config": args.config, "steps": args.steps, "reps": args.reps, "threads": args.threads,
           "rows": rows, "rows_skipped": skipped, "skipped_share": skipped / max(rows, 1),
           "update_seconds_full": off, "update_seconds_skip": on, "ratio": on / off,
           "max_param_diff": max_diff, "load_avg": os.getloadavg()[0],
           "date": time.strftime("%Y-%m-%d %H:%M")}
    print(json.dumps(out, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()

"""How skewed is a training pool under the start model? Samples ``k`` completions (the run's own temperature and
token cap) for every prompt of the pool a config trains on, verifies them, and reports the share of prompts the
start model solves never (pass rate 0), always (1) and in between, overall and per level, plus the histogram of
per-prompt pass rates. Beside each pass rate: the share of samples the verifier parsed an answer from (format)
and the share cut by the token cap (``cut``), so a cap that cuts answers or a format the model misses shows
apart from accuracy. The proving-ground pools (``bench/proving.toml``) are reported with this.

    python bench/pool_skew.py configs/tiny.toml --task.train_size=1024 --out bench/results/pool_skew/all.json
    python bench/pool_skew.py configs/tiny.toml -k 16 --task.levels="['add3','add4']"   # any config overrides
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from collections import Counter
from datetime import date
from pathlib import Path

import numpy as np

from rollwise.config import load_config
from rollwise.data.task import build_task
from rollwise.data.templates import encode_prompt
from rollwise.train import setup


def pass_rates(cfg_path: str, overrides: list[str], k: int) -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray]:
    """Per-prompt pass rate over ``k`` samples [N], each prompt's level name, and the per-prompt parsed and cut
    shares [N]."""
    cfg = load_config(cfg_path, overrides)
    setup.set_threads(cfg)
    task = build_task(cfg)
    model, tok, _ = setup.build_policy(cfg, task)
    model.eval()
    engine, verifier = setup.build_engine(cfg, model, tok), setup.build_verifier(cfg)
    params = setup.sampling_params(cfg, tok)
    try:
        comps = engine.generate([encode_prompt(p.text, cfg.task, tok) for p in task.pool], [k] * len(task.pool),
                                params)
        texts = [c.text for cs in comps for c in cs]
        refs = [p.reference for p in task.pool for _ in range(k)]
        results = verifier.score_batch(texts, refs)
        scores = np.array([r.score > 0.5 for r in results], dtype=np.float64)
        parsed = np.array([bool(r.parsed) for r in results], dtype=np.float64)
        cut = np.array([c.finish_reason == "length" for cs in comps for c in cs], dtype=np.float64)
    finally:
        verifier.close()
    names = ([task.level_names[int(i)] for i in task.levels] if task.levels is not None
             else ["all"] * len(task.pool))
    n = len(task.pool)
    return (scores.reshape(n, k).mean(axis=1), names, parsed.reshape(n, k).mean(axis=1),
            cut.reshape(n, k).mean(axis=1))


def summary(rates: np.ndarray, parsed: np.ndarray, cut: np.ndarray) -> dict[str, float]:
    return {"prompts": int(len(rates)), "at_0": float(np.mean(rates == 0)), "at_1": float(np.mean(rates == 1)),
            "between": float(np.mean((rates > 0) & (rates < 1))), "mean": float(rates.mean()),
            "parsed": float(parsed.mean()), "cut": float(cut.mean())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("config")
    ap.add_argument("-k", type=int, default=8, help="samples per prompt")
    ap.add_argument("--out", default=None, help="write the JSON here")
    args, overrides = ap.parse_known_args()
    rates, names, parsed, cut = pass_rates(args.config, overrides, args.k)
    per_level = {}
    for n in dict.fromkeys(names):
        sel = np.array([m == n for m in names])
        per_level[n] = summary(rates[sel], parsed[sel], cut[sel])
    hist = Counter(round(float(r) * args.k) for r in rates)
    out = {"config": args.config, "overrides": overrides, "k": args.k, "all": summary(rates, parsed, cut),
           "levels": per_level,
           "hist": {f"{c}/{args.k}": hist.get(c, 0) for c in range(args.k + 1)},
           "machine": f"{platform.machine()}, {os.cpu_count()} cpus", "date": date.today().isoformat()}
    text = json.dumps(out, indent=1)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()

"""Training curves of a bench grid's arms (mean over seeds) against generated rollout tokens, one panel per
metric: e.g. response length and FAPO's flawed-positive share for the shaping grid.

    python bench/plot_curves.py bench/shaping.toml rollout/length_mean rollout/flawed_positive_share \
        --out bench/results/shaping/curves.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from rollwise.bench import load_grid
from rollwise.logging import read_metrics


def curve(rows: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    pts = [(r["ledger/tokens"], r[key]) for r in rows if isinstance(r.get(key), int | float) and "ledger/tokens" in r]
    return (np.array([p[0] for p in pts], float), np.array([p[1] for p in pts], float)) if pts else (np.zeros(0),) * 2


def smooth(y: np.ndarray, k: int) -> np.ndarray:
    """Centred moving average of width ``k``, edges padded with the end values (no dip at the ends)."""
    return np.convolve(np.pad(y, (k // 2, k - 1 - k // 2), mode="edge"), np.ones(k) / k, mode="valid")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("grid")
    ap.add_argument("keys", nargs="+")
    ap.add_argument("--out", required=True)
    ap.add_argument("--smooth", type=int, default=9, help="moving-average window over logged steps")
    args = ap.parse_args()
    from rollwise.plots import plt, save_figure

    grid = load_grid(args.grid)
    fig, axes = plt.subplots(1, len(args.keys), figsize=(5 * len(args.keys), 4), squeeze=False)
    for ax, key in zip(axes[0], args.keys):
        for arm in grid.arms:
            runs = [curve(read_metrics(d), key) for s in grid.seeds
                    if ((d := grid.out / arm.name / f"seed{s}") / "metrics.jsonl").is_file()]
            runs = [(x, y) for x, y in runs if len(y)]
            if not runs:
                continue
            xs = np.linspace(0, min(x[-1] for x, _ in runs), 100)
            k = max(min(args.smooth, min(len(y) for _, y in runs)), 1)
            ys = np.mean([np.interp(xs, x, smooth(y, k)) for x, y in runs], axis=0)
            ax.plot(xs, ys, label=arm.name)
        ax.set(xlabel="rollout tokens generated", title=key)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    print(save_figure(fig, Path(args.out)))


if __name__ == "__main__":
    main()

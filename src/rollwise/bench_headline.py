"""The proving-ground summary of a bench grid: per arm, the cost (generated rollout tokens and training-loop
seconds) to reach 90% and 100% of the reference arm's final held-out gain, the final gain with a 95% interval
over seeds, the share of trained groups with mixed rewards, the planning overhead per step and the rollouts-per-
prompt distribution; written as ``headline.md`` / ``headline.json`` beside the grid's ``results.md``, with the
plots a reader wants (accuracy vs tokens and vs seconds with seed bands, mixed share, allocation vs pass rate).
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from rollwise.bench import Grid, _curve, _tokens_to_reach, arm_style, load_runs, plot_grid

# two-sided 95% Student t quantiles by degrees of freedom (the interval of a mean over a handful of seeds)
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


def ci95(x: np.ndarray) -> float:
    """Half-width of the 95% t-interval of the mean of ``x`` (NaN for fewer than 2 values)."""
    if len(x) < 2:
        return float("nan")
    return T975.get(len(x) - 1, 1.96) * float(np.std(x, ddof=1)) / math.sqrt(len(x))


def _overhead(run: list[dict[str, Any]]) -> float:
    """Mean seconds per step outside generation, verification and the update: planning and bookkeeping."""
    out, last = [], 0.0
    for r in run:
        if "ledger/seconds" not in r or "perf/train_seconds" not in r:
            continue
        dt, last = r["ledger/seconds"] - last, r["ledger/seconds"]
        out.append(dt - r.get("perf/generate_seconds", 0.0) - r.get("perf/verify_seconds", 0.0)
                   - r["perf/train_seconds"])
    return float(np.mean(out)) if out else float("nan")


def _alloc(runs: list[list[dict[str, Any]]]) -> np.ndarray:
    """Every (estimated pass rate, rollouts generated) pair of every step of every run [K, 2]."""
    pairs = [p for run in runs for r in run for p in r.get("trace/alloc", [])]
    return np.array(pairs, dtype=float).reshape(-1, 2)


def headline(grid: Grid) -> list[dict[str, Any]]:
    """One row per arm over its finished runs (the reference first)."""
    runs = load_runs(grid, finished=True)
    ref = runs[grid.reference]
    start = float(np.mean([_curve(r, grid.metric)[1][0] for r in ref]))
    final = float(np.mean([_curve(r, grid.metric)[1][-1] for r in ref]))
    gain = final - start
    out = []
    ref_cost: dict[str, float] = {}
    for name in [grid.reference, *[a for a in runs if a != grid.reference]]:
        rs = runs[name]
        row: dict[str, Any] = {"arm": name, "seeds": len(rs)}
        gains = np.array([_curve(r, grid.metric)[1][-1] - _curve(r, grid.metric)[1][0] for r in rs])
        row |= {"gain": float(gains.mean()), "gain_ci95": ci95(gains), "ref_gain": gain}
        for x, unit in (("ledger/tokens", "tokens"), ("ledger/seconds", "seconds")):
            for frac in (0.9, 1.0):
                key = f"{unit}_to_{round(frac * 100)}"
                hits = np.array([_tokens_to_reach(*_curve(r, grid.metric, x), start + frac * gain, True)
                                 for r in rs])
                mean = float(np.nanmean(hits)) if np.isfinite(hits).any() else float("nan")
                if name == grid.reference:  # the reference's cost: its own first crossing, measured alike (at
                    ref_cost[key] = mean    # 100% only the seeds ending above their mean final get there)
                row |= {key: mean, f"{key}_reached": int(np.isfinite(hits).sum()),
                        f"{key}_ratio": mean / ref_cost[key] if ref_cost.get(key) else float("nan")}
        steps = [r for run in rs for r in run if "sampler/mixed_share" in r]
        alloc = _alloc(rs)
        n = alloc[:, 1] if len(alloc) else np.zeros(1)
        row |= {"mixed_share": float(np.mean([r["sampler/mixed_share"] for r in steps])) if steps else float("nan"),
                "overhead_s_per_step": float(np.mean([_overhead(run) for run in rs])),
                "steps": float(np.mean([run[-1]["step"] for run in rs])),
                "rpp_p10": float(np.percentile(n, 10)), "rpp_median": float(np.median(n)),
                "rpp_p90": float(np.percentile(n, 90)), "rpp_max": float(n.max())}
        out.append(row)
    return out


def _fmt(v: float, reached: int, seeds: int, digits: int = 0) -> str:
    if not np.isfinite(v):
        return f"not reached (0/{seeds})"
    tail = "" if reached == seeds else f" ({reached}/{seeds})"
    return f"{v:,.{digits}f}{tail}"


def write_headline(grid: Grid, rows: list[dict[str, Any]]) -> Path:
    """headline.md / headline.json and the three plots in the grid's out dir."""
    (grid.out / "headline.json").write_text(json.dumps(rows, indent=2))
    lines = ["| arm | seeds | final gain (95% CI) | tokens to 90% (x ref) | tokens to 100% (x ref) | "
             "seconds to 90% (x ref) | seconds to 100% (x ref) | mixed share | overhead s/step | "
             "rollouts/prompt p10 / median / p90 / max |", "|" + "---|" * 10]
    for r in rows:
        s = r["seeds"]

        def cost(k: str, digits: int = 0, r: dict[str, Any] = r) -> str:
            return f"{_fmt(r[k], r[k + '_reached'], r['seeds'], digits)} ({r[k + '_ratio']:.2f}x)"

        lines.append(f"| {r['arm']} | {s} | {r['gain']:+.3f} ± {r['gain_ci95']:.3f} | {cost('tokens_to_90')} | "
                     f"{cost('tokens_to_100')} | {cost('seconds_to_90', 1)} | {cost('seconds_to_100', 1)} | "
                     f"{r['mixed_share']:.2f} | {r['overhead_s_per_step']:.3f} | {r['rpp_p10']:.0f} / "
                     f"{r['rpp_median']:.0f} / {r['rpp_p90']:.0f} / {r['rpp_max']:.0f} |")
    md = grid.out / "headline.md"
    md.write_text("\n".join(lines) + "\n")
    plot_headline(grid)
    return md


def plot_headline(grid: Grid) -> None:
    """accuracy_seconds.png (held-out vs training-loop seconds), mixed.png (share of trained groups with mixed
    rewards vs tokens) and alloc.png (mean rollouts per prompt by estimated pass rate), one line per arm."""
    from rollwise.plots import plt, save_figure  # Agg backend set there

    plot_grid(replace(grid, x="ledger/seconds"), "accuracy_seconds.png")
    runs = load_runs(grid, finished=True)
    fig, ax = plt.subplots(figsize=(8, 5))
    for i, (name, rs) in enumerate(runs.items()):
        curves = []
        for run in rs:
            st = [r for r in run if "sampler/mixed_share" in r]
            x = np.array([r["ledger/tokens"] for r in st], float)
            c = np.cumsum([0.0] + [r["sampler/mixed_share"] for r in st])
            lo = np.maximum(np.arange(1, len(c)) - 10, 0)
            y = (c[1:] - c[lo]) / (np.arange(1, len(c)) - lo)  # trailing 10-step mean
            curves.append((x, y))
        xs = np.linspace(0, min(c[0][-1] for c in curves), 50)
        ax.plot(xs, np.mean([np.interp(xs, x, y) for x, y in curves], 0), label=name, **arm_style(plt, i))
    ax.set(xlabel="rollout tokens generated", ylabel="share of trained groups with mixed rewards",
           title="Effective groups (10-step moving mean, mean over seeds)", ylim=(0, 1.02))
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    save_figure(fig, grid.out / "mixed.png")

    fig, ax = plt.subplots(figsize=(8, 5))
    bins = np.linspace(0, 1, 11)
    for i, (name, rs) in enumerate(runs.items()):
        a = _alloc(rs)
        if not len(a):
            continue
        idx = np.clip(np.digitize(a[:, 0], bins) - 1, 0, 9)
        m = [a[idx == b, 1].mean() if np.any(idx == b) else np.nan for b in range(10)]
        ax.plot((bins[:-1] + bins[1:]) / 2, m, marker="o", label=name, **arm_style(plt, i))
    ax.set(xlabel="estimated pass rate of the prompt before the step", ylabel="rollouts generated per prompt",
           title="Allocation vs pass rate (mean over prompts and steps)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    save_figure(fig, grid.out / "alloc.png")

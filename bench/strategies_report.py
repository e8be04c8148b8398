"""What each rollout strategy of bench/strategies.toml bought, per arm (mean ± sd over seeds):

- rollout throughput: tokens decoded per second of generation (``ledger/tokens`` / sum ``perf/generate_seconds``)
  and trained tokens per second of generation (a tree's shared prefix is trained in every branch that shares it,
  so for LATR / ROSE trained tokens exceed decoded ones);
- step wall-clock (``ledger/seconds`` per step: generation + verification + update, evals excluded);
- the share of decoded tokens that are trained (``ledger/tokens_trained`` / ``ledger/tokens``; the ledger is the
  engine's count, so APRIL's tokens left in its buffer at the end are in it: decoded, never trained);
- held-out accuracy (``eval/mean/pass@1``, greedy) interpolated at equal generated tokens and at equal seconds:
  at the budget every run reached (the smallest final x over all runs) and at half of it;
- group diversity: distinct final answers per group and the share of mixed-reward groups, mean over steps;
- optionally (``--at-step``) the accuracy at equal optimiser steps, and (``--level``) one level's accuracy.

    python bench/strategies_report.py [bench/strategies.toml] [--level chain] [--at-step 59]
                                      [--out bench/results/strategies/strategies.md]
                                      [--plot bench/results/strategies/strategies.png]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from rollwise.bench import _curve, load_grid, load_runs

METRIC = "eval/mean/pass@1"


def at(run: list[dict[str, Any]], x: str, where: float, metric: str = METRIC) -> float:
    """The run's ``metric`` at ``x == where``, linear between its evals (NaN past its last eval)."""
    xs, ys = _curve(run, metric, x)
    return float(np.interp(where, xs, ys)) if len(xs) and where <= xs[-1] + 1e-9 else float("nan")


def run_stats(run: list[dict[str, Any]]) -> dict[str, float]:
    steps = [r for r in run if "rollout/length_mean" in r]
    last = [r for r in run if "ledger/tokens" in r][-1]
    gen_s = sum(float(r.get("perf/generate_seconds", 0.0)) for r in steps)
    n = max(len(steps), 1)
    return {
        "steps": float(len(steps)),
        "tokens": float(last["ledger/tokens"]),
        "seconds": float(last["ledger/seconds"]),
        "decoded_per_s": last["ledger/tokens"] / max(gen_s, 1e-9),
        "trained_per_s": last["ledger/tokens_trained"] / max(gen_s, 1e-9),
        "step_s": last["ledger/seconds"] / n,
        "gen_s_per_step": gen_s / n,
        # the ledger is the engine's count: APRIL's partials still in its buffer at the end are in it (charged when
        # decoded, never trained), and so are ARRoL's pruned rows and LATR's pruned branches
        "trained_share": last["ledger/tokens_trained"] / max(last["ledger/tokens"], 1),
        "length": float(np.mean([r["rollout/length_mean"] for r in steps])),
        "distinct": float(np.mean([r.get("rollout/distinct_answers", np.nan) for r in steps])),
        "mixed": float(np.mean([r.get("sampler/mixed_share", np.nan) for r in steps])),
        "start": float(_curve(run)[1][0]),
        "final": float(_curve(run)[1][-1]),
    }


def summarise(runs: dict[str, list[list[dict[str, Any]]]], level: str | None = None,
              at_step: int | None = None) -> tuple[list[dict[str, Any]], dict[str, float]]:
    all_runs = [run for rs in runs.values() for run in rs]
    budget = {x: min(float(_curve(run, METRIC, x)[0][-1]) for run in all_runs)
              for x in ("ledger/tokens", "ledger/seconds")}
    rows = []
    for arm, rs in runs.items():
        per = [run_stats(run) for run in rs]
        for x, tag in (("ledger/tokens", "tok"), ("ledger/seconds", "sec")):
            for frac in (0.5, 1.0):
                for p, run in zip(per, rs):
                    p[f"acc_{tag}_{int(frac * 100)}"] = at(run, x, frac * budget[x])
        if level:  # one level's accuracy at the full token budget and at the end
            for p, run in zip(per, rs):
                key = f"eval/{level}/pass@1"
                p["level_tok_100"] = at(run, "ledger/tokens", budget["ledger/tokens"], key)
                ys = _curve(run, key)[1]
                p["level_start"], p["level_final"] = float(ys[0]), float(ys[-1])
        if at_step is not None:  # equal optimiser steps (NaN for a run that stopped before)
            for p, run in zip(per, rs):
                p["acc_step"] = at(run, "step", at_step)
        row: dict[str, Any] = {"arm": arm, "seeds": len(rs)}
        for k in per[0]:
            v = np.array([p[k] for p in per])
            row[k], row[k + "_sd"] = float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0
        rows.append(row)
    return rows, budget


def table(rows: list[dict[str, Any]], budget: dict[str, float], level: str | None = None,
          at_step: int | None = None) -> str:
    def pm(r: dict[str, Any], k: str, fmt: str = ".3f") -> str:
        return f"{r[k]:{fmt}} ± {r[k + '_sd']:{fmt}}"

    t, s = budget["ledger/tokens"], budget["ledger/seconds"]
    head = ("| arm | seeds | decoded tok/s (gen) | trained tok/s (gen) | s/step | gen s/step | trained share | "
            f"acc @ {t / 2e3:.0f}k tok | acc @ {t / 1e3:.0f}k tok | acc @ {s / 2:.0f} s | acc @ {s:.0f} s | "
            "final acc | steps | distinct answers/group | mixed share | length |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        lines.append(
            f"| {r['arm']} | {r['seeds']} | {pm(r, 'decoded_per_s', '.0f')} | {pm(r, 'trained_per_s', '.0f')} | "
            f"{pm(r, 'step_s', '.2f')} | {pm(r, 'gen_s_per_step', '.2f')} | {pm(r, 'trained_share', '.2f')} | "
            f"{pm(r, 'acc_tok_50')} | {pm(r, 'acc_tok_100')} | {pm(r, 'acc_sec_50')} | {pm(r, 'acc_sec_100')} | "
            f"{pm(r, 'final')} | {r['steps']:.0f} | {pm(r, 'distinct', '.2f')} | {pm(r, 'mixed', '.2f')} | "
            f"{r['length']:.1f} |")
    if at_step is not None:
        lines += ["", f"| arm | acc @ step {at_step} |", "|---|---|"]
        lines += [f"| {r['arm']} | {pm(r, 'acc_step')} |" for r in rows]
    if level:
        lines += ["", f"| arm | {level} start | {level} @ {t / 1e3:.0f}k tok | {level} final |", "|---|---|---|---|"]
        lines += [f"| {r['arm']} | {r['level_start']:.3f} | {pm(r, 'level_tok_100')} | {pm(r, 'level_final')} |"
                  for r in rows]
    return "\n".join(lines) + "\n"


def plot(runs: dict[str, list[list[dict[str, Any]]]], path: Path) -> None:
    """Held-out accuracy against generated tokens and against training-loop seconds: each seed thin, the mean
    over seeds (on the common x range, interpolated) thick."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, (x, label) in zip(axes, (("ledger/tokens", "generated rollout tokens"),
                                     ("ledger/seconds", "training-loop seconds"))):
        for i, (arm, rs) in enumerate(runs.items()):
            color = f"C{i}"
            curves = [np.stack(_curve(run, METRIC, x), axis=1) for run in rs]  # [evals, 2]
            for c in curves:
                ax.plot(c[:, 0], c[:, 1], color=color, lw=0.6, alpha=0.35)
            grid = np.linspace(0, min(c[-1, 0] for c in curves), 50)
            ax.plot(grid, np.mean([np.interp(grid, c[:, 0], c[:, 1]) for c in curves], axis=0), color=color, lw=2,
                    label=f"{arm} ({len(rs)})")
        ax.set_xlabel(label)
        ax.set_ylabel("held-out pass@1 (greedy, mean of levels)")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("grid", nargs="?", default=str(Path(__file__).with_name("strategies.toml")))
    ap.add_argument("--out", default=None, help="markdown table (default: <grid out>/strategies.md; json beside)")
    ap.add_argument("--plot", default=None, help="accuracy plot (default: <grid out>/strategies.png)")
    ap.add_argument("--level", default=None, help="also one level's held-out accuracy (e.g. chain)")
    ap.add_argument("--at-step", type=int, default=None, help="also the accuracy at this optimiser step")
    args = ap.parse_args()
    grid = load_grid(args.grid)
    runs = load_runs(grid, finished=True)
    rows, budget = summarise(runs, args.level, args.at_step)
    plot(runs, Path(args.plot) if args.plot else grid.out / "strategies.png")
    md = table(rows, budget, args.level, args.at_step)
    out = Path(args.out) if args.out else grid.out / "strategies.md"
    out.write_text(md)
    out.with_suffix(".json").write_text(json.dumps({"budget": budget, "arms": rows}, indent=1))
    print(md)


if __name__ == "__main__":
    main()

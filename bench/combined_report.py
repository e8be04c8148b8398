"""The combined recipe's table (issue 32): per arm of a grid, the cost to reach 90% and 100% of the reference's
final held-out gain in generated tokens, trained tokens, training-loop CPU seconds and projected GPU seconds
(the cost model's price of each run's engine and update work, where ``rollwise.cost`` is present), each as a
mean over the seeds that reach it with its min-max band and its ratio to the reference arm's and to a second
baseline's (DAPO) cost, plus what each part of the recipe did per step.

    python bench/combined_report.py bench/combined.toml [--vs dapo]

Writes ``combined.md`` / ``combined.json`` beside the grid's results.
"""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

import numpy as np

from rollwise.bench import _curve, _tokens_to_reach, load_grid, load_runs
from rollwise.bench_cost import PROJECTED, price_runs
from rollwise.bench_headline import ci95

Row = dict[str, Any]
#: per-step counters of the recipe's parts, shown as the mean per step over every run of an arm
PARTS = {"replayed groups": "sampler/replay/drawn", "LATR branches": "generation/latr_spawned",
         "rows skipped": "perf/update_rows_skipped", "mixed share": "sampler/mixed_share"}


AXES = {"tokens": "ledger/tokens", "trained tokens": "ledger/tokens_trained", "CPU s": "ledger/seconds",
        "GPU s (projected)": PROJECTED}  # the cost axes: label -> the (cumulative) key of a metrics row


def crossings(run: list[Row], metric: str, x: str, target: float) -> float:
    return _tokens_to_reach(*_curve(run, metric, x), target, True)


def _last(run: list[Row], x: str) -> float:
    """A run's whole cost on axis ``x`` (its last row)."""
    return float([r for r in run if "ledger/tokens" in r][-1][x])


def table(grid_path: str, vs: str, cost_model: str | None = None) -> tuple[list[Row], dict[str, Any]]:
    grid = load_grid(grid_path)
    cost = grid.cost or {"setup": "h100-vllm-fsdp", "model": "tiny"}
    cost = cost if cost_model is None else {**cost, "model": cost_model}
    runs = price_runs(load_runs(grid, finished=True), cost)  # every row with its projected GPU seconds
    ref = runs[grid.reference]
    start = float(np.mean([_curve(r, grid.metric)[1][0] for r in ref]))
    final = float(np.mean([_curve(r, grid.metric)[1][-1] for r in ref]))
    gain = final - start
    rows: list[Row] = []
    for name in [grid.reference, *[a for a in runs if a != grid.reference]]:
        rs = runs[name]
        gains = np.array([_curve(r, grid.metric)[1][-1] - _curve(r, grid.metric)[1][0] for r in rs])
        row: Row = {"arm": name, "seeds": len(rs), "gain": float(gains.mean()), "gain_ci95": ci95(gains),
                    "final_acc": float(np.mean([_curve(r, grid.metric)[1][-1] for r in rs])),
                    "steps": float(np.mean([run[-1]["step"] for run in rs]))}
        for label, x in AXES.items():
            for frac in (0.9, 1.0):
                hits = np.array([crossings(r, grid.metric, x, start + frac * gain) for r in rs])
                ok = hits[np.isfinite(hits)]
                row[f"{label}@{round(frac * 100)}"] = {
                    "mean": float(ok.mean()) if ok.size else math.nan, "reached": int(ok.size),
                    "min": float(ok.min()) if ok.size else math.nan, "max": float(ok.max()) if ok.size else math.nan}
        if vs in runs:  # the second baseline's own final accuracy: what it cost it (its whole run) and each arm
            vs_final = float(np.mean([_curve(r, grid.metric)[1][-1] for r in runs[vs]]))
            for label, x in AXES.items():
                if name == vs:
                    xs = [_last(r, x) for r in rs]
                else:
                    xs = [crossings(r, grid.metric, x, vs_final) for r in rs]
                a = np.array(xs, float)
                row[f"{label}@{vs}"] = {"mean": float(np.nanmean(a)) if np.isfinite(a).any() else math.nan,
                                        "reached": int(np.isfinite(a).sum()),
                                        "min": float(np.nanmin(a)) if np.isfinite(a).any() else math.nan,
                                        "max": float(np.nanmax(a)) if np.isfinite(a).any() else math.nan}
        row["parts"] = {k: float(np.mean([r[key] for run in rs for r in run if key in r] or [math.nan]))
                        for k, key in PARTS.items()}
        rows.append(row)
    by = {r["arm"]: r for r in rows}
    for r in rows:
        for k, v in list(r.items()):
            if isinstance(v, dict) and "mean" in v:
                for base in (grid.reference, vs):
                    b = by.get(base, {}).get(k, {}).get("mean", math.nan)
                    v[f"x_{base}"] = v["mean"] / b if b and math.isfinite(b) else math.nan
    vs_final = float(np.mean([_curve(r, grid.metric)[1][-1] for r in runs[vs]])) if vs in runs else math.nan
    meta = {"vs_final_acc": vs_final, "reference": grid.reference, "vs": vs, "start_acc": start,
            "ref_final_acc": final, "ref_gain": gain, "seeds": grid.seeds,
            "gpu_model": cost["model"]}
    return rows, meta


def by_arm(rows: list[Row]) -> dict[str, Row]:
    return {r["arm"]: r for r in rows}


def _cell(v: dict[str, float], seeds: int, ref: str, vs: str, digits: int) -> str:
    if not v["reached"]:
        return f"not reached (0/{seeds})"
    n = "" if v["reached"] == seeds else f" ({v['reached']}/{seeds})"
    ratio = f"{v['x_' + ref]:.2f}x" + (f" / {v['x_' + vs]:.2f}x" if math.isfinite(v["x_" + vs]) else " / -")
    return f"{v['mean']:,.{digits}f} [{v['min']:,.{digits}f}-{v['max']:,.{digits}f}]{n} ({ratio})"


def markdown(rows: list[Row], meta: dict[str, Any]) -> str:
    ref, vs = meta["reference"], meta["vs"]
    labels = [k.removesuffix("@90") for k in rows[0] if k.endswith("@90")]
    head = ["arm", "seeds", "final gain (95% CI)", *[f"{lab} to {p}%" for lab in labels for p in (90, 100)]]
    out = [f"reference {ref}: held-out {meta['start_acc']:.3f} -> {meta['ref_final_acc']:.3f} "
           f"(gain {meta['ref_gain']:+.3f}); cells: mean over the seeds that reach [min-max] (x {ref} / x {vs})", "",
           "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [_cell(r[f"{lab}@{p}"], r["seeds"], ref, vs, 0 if "tokens" in lab else 1 if "CPU" in lab else 2)
                 for lab in labels for p in (90, 100)]
        gain = f"{r['gain']:+.3f} ± {r['gain_ci95']:.3f}"
        out.append(f"| {r['arm']} | {r['seeds']} | {gain} | " + " | ".join(cells) + " |")
    if f"tokens@{vs}" in rows[0]:
        out += ["", f"Cost to reach {vs}'s final held-out accuracy ({meta['vs_final_acc']:.3f}; {vs}'s row: its whole "
                f"run), mean over the seeds that reach [min-max] (x {vs}):", "",
                "| arm | " + " | ".join(labels) + " |", "|" + "---|" * (len(labels) + 1)]
        for r in rows:
            cells = []
            for lab in labels:
                v = r[f"{lab}@{vs}"]
                b = by_arm(rows)[vs][f"{lab}@{vs}"]["mean"]
                d = 0 if "tokens" in lab else 1 if "CPU" in lab else 2
                n = "" if v["reached"] == r["seeds"] else f" ({v['reached']}/{r['seeds']})"
                cells.append(f"not reached (0/{r['seeds']})" if not v["reached"] else
                             f"{v['mean']:,.{d}f} [{v['min']:,.{d}f}-{v['max']:,.{d}f}]{n} ({v['mean'] / b:.2f}x)")
            out.append(f"| {r['arm']} | " + " | ".join(cells) + " |")
    out += ["", "| arm | steps | " + " | ".join(PARTS) + " (per step) |", "|" + "---|" * (len(PARTS) + 2)]
    for r in rows:
        out.append(f"| {r['arm']} | {r['steps']:.0f} | " + " | ".join(f"{v:.2f}" for v in r["parts"].values()) + " |")
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("grid")
    ap.add_argument("--vs", default="dapo", help="the second baseline's arm")
    ap.add_argument("--cost-model", help="price the counted work as another model size of the cost setup (e.g. "
                    "smollm2-135m): a sensitivity, written as combined_<model>.md/json")
    args = ap.parse_args()
    rows, meta = table(args.grid, args.vs, args.cost_model)
    out = load_grid(args.grid).out
    stem = "combined" if args.cost_model is None else f"combined_{args.cost_model}"
    (out / f"{stem}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    md = f"projected GPU seconds priced as {meta['gpu_model']}\n\n" + markdown(rows, meta)
    (out / f"{stem}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()

"""The projected GPU cost columns of a bench grid (``cost = {setup = ..., model = ...}`` in the grid file): each
logged row's cumulative ledger priced by :mod:`rollwise.cost`, so the bench's "to reach" logic runs a second time
with the projected seconds as its cost axis. Every column and heading says "projected": these are not measured."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from rollwise.cost import get_model, get_setup, project_row

PROJECTED = "cost/projected_seconds"  # the cost axis added to each priced row
TERMS = ("decode", "prefill", "train")


def price_runs(runs: dict[str, list[list[dict[str, Any]]]], cost: dict[str, str]) -> dict[str, list[list[dict]]]:
    """Each run's rows, copied, with ``cost/projected_seconds`` (and its three terms) from the row's ledger."""
    setup = get_setup(cost["setup"])
    model = get_model(setup, cost["model"])
    out: dict[str, list[list[dict[str, Any]]]] = {}
    for arm, rs in runs.items():
        out[arm] = []
        for run in rs:
            priced = []
            for r in run:
                p = project_row(r, setup, model)
                priced.append({**r, PROJECTED: p.total_s, **{f"cost/projected_{k}_seconds": v for k, v in
                                                             zip(TERMS, (p.decode_s, p.prefill_s, p.train_s))}})
            out[arm].append(priced)
    return out


def cost_columns(runs: list[list[dict[str, Any]]], reach: Callable[[list[dict[str, Any]], float], float],
                 target: float, ref_final: float) -> dict[str, float]:
    """An arm's projected columns (mean over its priced runs): projected seconds to the grid's target and to the
    reference's final accuracy (``reach(rows, target)``: the bench's own "to reach" on the projected axis, NaN if
    never), the final projection and its terms, trained tokens and the measured CPU seconds of the loop."""

    def mean(xs: list[float]) -> float:
        a = np.array(xs, float)
        return float(np.nanmean(a)) if np.isfinite(a).any() else float("nan")

    last = [run[-1] for run in runs]
    return {
        "projected_s_to_target": mean([reach(run, target) for run in runs]),
        "projected_s_to_ref_final": mean([reach(run, ref_final) for run in runs]),
        "projected_s_final": mean([r[PROJECTED] for r in last]),
        **{f"projected_{k}_s_final": mean([r[f"cost/projected_{k}_seconds"] for r in last]) for k in TERMS},
        "tokens_trained_final": mean([r.get("ledger/tokens_trained", np.nan) for r in last]),
        "cpu_seconds_final": mean([r.get("ledger/seconds", np.nan) for r in last]),
    }


def cost_table(cost: dict[str, str], rows: list[dict[str, Any]], what: str) -> list[str]:
    """The markdown table of the projected columns (appended to results.md)."""
    lines = ["", f"Projected GPU seconds on {cost['setup']} for {cost['model']} (rollwise.cost: counted work priced "
                 "with published numbers; projected, not measured; CPU seconds are measured)", "",
             f"| arm | projected GPU s to reach {what} | projected GPU s to reach ref final | projected GPU s final "
             "(decode + prefill + train) | trained tokens | measured CPU s |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['arm']} | {r['projected_s_to_target']:.3f} | {r['projected_s_to_ref_final']:.3f} | "
                     f"{r['projected_s_final']:.3f} ({r['projected_decode_s_final']:.3f} + "
                     f"{r['projected_prefill_s_final']:.3f} + {r['projected_train_s_final']:.3f}) | "
                     f"{r['tokens_trained_final']:.0f} | {r['cpu_seconds_final']:.1f} |")
    return lines

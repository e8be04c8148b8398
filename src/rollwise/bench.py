"""``rollwise bench``: a grid of sampler arms x seeds on one base config, at the same rollout-token budget,
summarised as a table (markdown + JSON + CSV) and plots with a spread band per arm.

The grid is restartable: a finished run leaves a ``DONE`` marker and is skipped; an interrupted run resumes
from its latest checkpoint.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from rollwise.bench_cost import PROJECTED, cost_columns, cost_table, price_runs
from rollwise.bench_grid import Arm, Grid, GridError, load_grid, quick_grid
from rollwise.config import ConfigError, load_config
from rollwise.logging import read_metrics

__all__ = ["Arm", "Grid", "GridError", "check_grid", "load_grid", "load_runs", "plot_grid", "quick_grid",
           "run_grid", "summarise", "write_report"]


def _train(cfg: Any, run_dir: Path) -> None:
    from rollwise.train.trainer import Trainer

    trainer = Trainer(cfg)
    try:
        trainer.train(resume=True)
    finally:
        trainer.close()
    (run_dir / "DONE").write_text("ok")


def _claim(run_dir: Path) -> Any | None:
    """The run's claim: an OS lock on a file beside ``run_dir`` (the run directory's own kind of lock), so that
    several ``rollwise bench`` processes can share one grid; None if another live process holds it."""
    from rollwise.train.rundir import try_lock

    run_dir.parent.mkdir(parents=True, exist_ok=True)
    return try_lock(run_dir.with_name(run_dir.name + ".lock"))


def _train_once(cfg: Any, run_dir: Path) -> bool:
    """Train ``run_dir`` unless another process holds it; False if it did."""
    from rollwise.train.rundir import unlock

    lock = _claim(run_dir)
    if lock is None:
        return False
    try:
        if not (run_dir / "DONE").is_file():
            _train(cfg, run_dir)
    finally:
        unlock(lock)
    return True


def _run_args(grid: Grid, arm: Arm, seed: int, extra: list[str] | None) -> list[str]:
    return [*grid.overrides, *arm.overrides, *(extra or []), f"--run.seed={seed}",
            f"--run.out_dir={grid.out / arm.name}", f"--run.name=seed{seed}", "--trainer.progress=false",
            "--trainer.plots=false"]


def _prepare_args(grid: Grid) -> list[str]:
    return [*(grid.prepare or []), f"--run.out_dir={grid.out / '_prepare'}", "--run.name=run",
            "--trainer.progress=false", "--trainer.plots=false"]


def check_grid(grid: Grid, extra: list[str] | None = None) -> dict[tuple[str, int], Any]:
    """Load the config of the prepare run and of every (arm, seed) before anything trains; every arm that does
    not load is named, one line per problem (a bad override in the last arm fails before the first trains).
    Returns the configs by (arm name, seed); the prepare run's under ("_prepare", 0)."""
    if not Path(grid.base).is_file():
        raise GridError(f"bench grid: base config not found: {grid.base}")
    runs: list[tuple[str, int, list[str]]] = [("_prepare", 0, _prepare_args(grid))] if grid.prepare is not None else []
    runs += [(a.name, s, _run_args(grid, a, s, extra)) for a in grid.arms for s in grid.seeds]
    cfgs: dict[tuple[str, int], Any] = {}
    problems: dict[str, list[str]] = {}
    for name, seed, args in runs:
        try:
            cfgs[name, seed] = load_config(grid.base, args)
        except ConfigError as exc:
            lines = str(exc).removeprefix("invalid config:\n").splitlines()
            problems.setdefault(name, [f"  {'prepare' if name == '_prepare' else f'arm {name!r}'}: {ln.strip()}"
                                       for ln in lines])
    if problems:
        raise GridError(f"bench grid: {len(problems)} run(s) do not load, nothing trained:\n"
                        + "\n".join(ln for lines in problems.values() for ln in lines))
    return cfgs


def run_grid(grid: Grid, extra: list[str] | None = None, log: Any = print) -> None:
    """Check every run's config (:func:`check_grid`), then train the prepare run, then every (arm, seed) that
    has not finished yet, seed by seed (a grid stopped early has every arm at the same seeds). Several processes
    may run one grid: each takes the runs no other live process holds."""
    cfgs = check_grid(grid, extra)
    prep = grid.out / "_prepare" / "run"
    if grid.prepare is not None and not (prep / "DONE").is_file():
        log("prepare: training the grid's start run")
        while not _train_once(cfgs["_prepare", 0], prep):  # another process is preparing: wait for it
            time.sleep(5)
    todo = [(a, s) for s in grid.seeds for a in grid.arms]
    for i, (arm, seed) in enumerate(todo):
        run_dir = grid.out / arm.name / f"seed{seed}"
        if (run_dir / "DONE").is_file():
            log(f"[{i + 1}/{len(todo)}] {arm.name} seed {seed}: done, skipped")
            continue
        log(f"[{i + 1}/{len(todo)}] {arm.name} seed {seed}: training")
        if not _train_once(cfgs[arm.name, seed], run_dir):
            log(f"[{i + 1}/{len(todo)}] {arm.name} seed {seed}: another process is training it, skipped")


def _curve(rows: list[dict[str, Any]], key: str = "eval/mean/pass@1",
           x: str = "ledger/tokens") -> tuple[np.ndarray, np.ndarray]:
    ev = [r for r in rows if key in r]
    return np.array([r.get(x, 0) for r in ev], float), np.array([r[key] for r in ev], float)


def _tokens_to_reach(tokens: np.ndarray, acc: np.ndarray, target: float, interpolate: bool = False) -> float:
    """Rollout tokens at the first eval whose accuracy is >= target (NaN if never); with ``interpolate``, the
    point on the straight line from the eval before it where the target is crossed."""
    hit = np.nonzero(acc >= target - 1e-12)[0]
    if not hit.size:
        return float("nan")
    i = int(hit[0])
    if not interpolate or i == 0:
        return float(tokens[i])
    t0, t1, a0, a1 = tokens[i - 1], tokens[i], acc[i - 1], acc[i]
    return float(t0 + (t1 - t0) * (target - a0) / (a1 - a0))


def load_runs(grid: Grid, finished: bool = False) -> dict[str, list[list[dict[str, Any]]]]:
    """Each arm's runs' metric rows, in seed order; a run with no eval yet is left out (``finished``: only runs
    with their DONE marker)."""
    runs: dict[str, list[list[dict[str, Any]]]] = {}
    for arm in grid.arms:
        for seed in grid.seeds:
            d = grid.out / arm.name / f"seed{seed}"
            if (d / "metrics.jsonl").is_file() and (not finished or (d / "DONE").is_file()):
                runs.setdefault(arm.name, []).append(read_metrics(d))
    if any(grid.metric in r for rs in runs.values() for run in rs for r in run):
        runs = {a: kept for a, rs in runs.items()
                if (kept := [run for run in rs if any(grid.metric in r for r in run)])}
    if grid.reference not in runs:
        raise ValueError(f"no runs of the reference arm {grid.reference!r} in {grid.out}")
    return runs


def summarise(grid: Grid) -> list[dict[str, Any]]:
    """Per arm: final accuracy, tokens to reach the reference's target accuracy (its final, or ``reach`` of its
    gain; and the ratio to the reference's own tokens to it), mixed share, seconds per step; mean and spread
    over seeds. With ``cost``, also the projected GPU seconds to the same targets (bench_cost.py)."""
    runs = load_runs(grid)

    def curve(rows: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
        x, y = _curve(rows, grid.metric, grid.x)
        if not len(y):
            raise ValueError(f"bench metric {grid.metric!r} was never logged (set it in the grid's 'metric')")
        return x, y

    ref_final = float(np.mean([curve(r)[1][-1] for r in runs[grid.reference]]))
    ref_start = float(np.mean([curve(r)[1][0] for r in runs[grid.reference]]))
    target = ref_start + grid.reach * (ref_final - ref_start)
    if grid.reach == 1.0:  # the reference's own budget: what "reaching its final accuracy" cost it
        ref_tokens = float(np.mean([curve(r)[0][-1] for r in runs[grid.reference]]))
    else:
        ref_reach = [_tokens_to_reach(*curve(r), target, grid.interpolate) for r in runs[grid.reference]]
        ref_tokens = float(np.nanmean(ref_reach)) if np.isfinite(ref_reach).any() else float("nan")
    out = []
    for name, rs in runs.items():
        finals = np.array([curve(r)[1][-1] for r in rs])
        starts = np.array([curve(r)[1][0] for r in rs])
        reach = np.array([_tokens_to_reach(*curve(r), target, grid.interpolate) for r in rs])
        steps = [r for run in rs for r in run if "sampler/mixed_share" in r]
        sps = [r["ledger/seconds"] / max(r["step"], 1) for run in rs for r in run[-1:] if "ledger/seconds" in r]
        out.append({
            "arm": name, "seeds": len(rs), "target_acc": target,
            "start_acc": float(starts.mean()),
            "final_acc": float(finals.mean()), "final_acc_std": float(finals.std(ddof=1)) if len(rs) > 1 else 0.0,
            "tokens_final": float(np.mean([curve(r)[0][-1] for r in rs])),
            "tokens_to_ref": float(np.nanmean(reach)) if np.isfinite(reach).any() else float("nan"),
            "reached": int(np.isfinite(reach).sum()),
            "ratio_to_ref": float(np.nanmean(reach) / ref_tokens) if np.isfinite(reach).any() else float("nan"),
            "mixed_share": float(np.mean([r["sampler/mixed_share"] for r in steps])) if steps else float("nan"),
            "seconds_per_step": float(np.mean(sps)) if sps else float("nan"),
            "steps": float(np.mean([run[-1]["step"] for run in rs])),
            "acc_at_step": _at_step(rs, grid.metric, grid.at_step),
            "generated_per_step": float(np.mean([r.get("sampler/budget_spent", np.nan) for r in steps]))
            if steps else float("nan"),
            **{key: _report_value(rs, key) for key in grid.report},
        })
    if grid.cost is not None:  # the same "to reach", a second time, on the projected GPU seconds (bench_cost.py)
        priced = price_runs(runs, grid.cost)

        def reach(rows: list[dict[str, Any]], goal: float) -> float:
            return _tokens_to_reach(*_curve(rows, grid.metric, PROJECTED), goal, grid.interpolate)

        for row in out:
            row |= cost_columns(priced[row["arm"]], reach, target, ref_final)
    return out


def _report_value(runs: list[list[dict[str, Any]]], key: str) -> float:
    """A ``report`` column: mean over runs of KEY's last logged value, or (``mean:KEY``) of its mean over the
    run's logged steps; NaN where a run never logged it."""
    agg, name = ("mean", key[5:]) if key.startswith("mean:") else ("last", key)
    vals = []
    for run in runs:
        xs = [float(r[name]) for r in run if isinstance(r.get(name), int | float)]
        if xs:
            vals.append(float(np.mean(xs)) if agg == "mean" else xs[-1])
    return float(np.mean(vals)) if vals else float("nan")


def _at_step(runs: list[list[dict[str, Any]]], key: str, step: int | None) -> float:
    """Mean over runs of the last eval at or before optimiser step ``step`` (a run that stopped earlier, on the
    token budget, contributes its final eval)."""
    if step is None:
        return float("nan")
    vals = [ev[-1][key] for run in runs if (ev := [r for r in run if key in r and r.get("step", 0) <= step])]
    return float(np.mean(vals)) if vals else float("nan")


def write_report(grid: Grid, rows: list[dict[str, Any]]) -> Path:
    """results.md / results.json / results.csv and accuracy.png in the grid's out dir."""
    grid.out.mkdir(parents=True, exist_ok=True)
    (grid.out / "results.json").write_text(json.dumps(rows, indent=2))
    with open(grid.out / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    what = "ref final" if grid.reach == 1.0 else f"{grid.reach:.0%} of ref gain"
    at = f" | acc @ step <= {grid.at_step}" if grid.at_step is not None else ""
    cost = "tokens" if grid.x == "ledger/tokens" else grid.x.split("/")[-1]
    head = (f"| arm | seeds | start acc | final acc (± sd) | {cost} to reach {what} | ratio to ref | "
            f"reached | mixed share | generated/step | s/step | steps{at} |")
    head += "".join(f" {k} |" for k in grid.report)
    lines = [head, "|" + "---|" * (11 + bool(at) + len(grid.report))]
    for r in rows:
        tail = f" {r['acc_at_step']:.3f} |" if at else ""
        lines.append(f"| {r['arm']} | {r['seeds']} | {r['start_acc']:.3f} | {r['final_acc']:.3f} ± "
                     f"{r['final_acc_std']:.3f} | {r['tokens_to_ref']:.0f} | {r['ratio_to_ref']:.2f} | "
                     f"{r['reached']}/{r['seeds']} | {r['mixed_share']:.2f} | {r['generated_per_step']:.0f} | "
                     f"{r['seconds_per_step']:.2f} | {r['steps']:.0f} |{tail}"
                     + "".join(f" {r[k]:.3f} |" for k in grid.report))
    if grid.cost is not None:
        lines += cost_table(grid.cost, rows, what)
    md = grid.out / "results.md"
    md.write_text("\n".join(lines) + "\n")
    plot_grid(grid)
    return md


def arm_style(plt: Any, i: int) -> dict[str, Any]:
    """Colour and line style of the ``i``-th arm: tab20's strong shades first, then its light ones, so that
    more than 10 arms never repeat a colour."""
    return {"color": plt.get_cmap("tab20").colors[(2 * i) % 20 + (i // 10) % 2],
            "linestyle": ("-", "--", ":")[i // 10 % 3]}


def plot_grid(grid: Grid, name: str = "accuracy.png") -> Path:
    """The compared curve against the grid's cost axis (``grid.x``), one line per arm, seed band min-max."""
    from rollwise.plots import plt, save_figure  # Agg backend set there

    fig, ax = plt.subplots(figsize=(8, 5))
    for i, arm in enumerate(grid.arms):
        curves = [_curve(read_metrics(grid.out / arm.name / f"seed{s}"), grid.metric, grid.x) for s in grid.seeds
                  if (grid.out / arm.name / f"seed{s}" / "metrics.jsonl").is_file()]
        curves = [c for c in curves if len(c[1])]
        if not curves:
            continue
        grid_x = np.linspace(0, min(c[0][-1] for c in curves), 50)
        ys = np.array([np.interp(grid_x, x, y) for x, y in curves])
        m = ys.mean(0)
        line, = ax.plot(grid_x, m, label=arm.name, **arm_style(plt, i))
        if len(curves) > 1:
            ax.fill_between(grid_x, ys.min(0), ys.max(0), alpha=0.15, color=line.get_color())
    what = "train-pool" if grid.metric.startswith("train_eval/") else "held-out"
    per = "rollout tokens generated" if grid.x == "ledger/tokens" else f"{grid.x} (training loop, no evals)"
    ax.set(xlabel=per, ylabel=f"{what} pass@1 (mean over levels)",
           title=f"Arms against {per} (band: min-max over seeds)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return save_figure(fig, grid.out / name)

"""Matplotlib figures of a run: accuracy per level vs rollout tokens, share of zero-variance groups, and the
sampler's behaviour (rollouts allocated vs estimated pass rate; pool pass-rate distribution over time)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from rollwise.logging import read_metrics  # noqa: E402


def save_figure(fig: Any, out: Path) -> Path:
    """Lay out, write as PNG and release a figure (every rollwise plot ends here)."""
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _eval_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if "eval/mean/pass@1" in r]


def plot_accuracy(rows: list[dict[str, Any]], out: Path) -> Path:
    ev = _eval_rows(rows)
    levels = sorted({k.split("/")[1] for r in ev for k in r if k.endswith("/pass@1") and k.startswith("eval/")})
    fig, ax = plt.subplots(figsize=(7, 4.5))
    x = [r.get("ledger/tokens", 0) for r in ev]
    for lv in levels:
        ax.plot(x, [r.get(f"eval/{lv}/pass@1", np.nan) for r in ev], marker="o", ms=3, label=lv,
                lw=2.5 if lv == "mean" else 1.2, color="black" if lv == "mean" else None)
    ax.set(xlabel="rollout tokens generated", ylabel="held-out pass@1", title="Accuracy per level", ylim=(0, 1))
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    return save_figure(fig, out)


def plot_groups(rows: list[dict[str, Any]], out: Path) -> Path:
    tr = [r for r in rows if "sampler/mixed_share" in r]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    steps = [r["step"] for r in tr]
    ax.plot(steps, [1 - r["sampler/mixed_share"] for r in tr], label="trained groups with zero variance")
    gen = [r["sampler/prompts_generated"] for r in tr]
    trained = [r["sampler/groups_trained"] for r in tr]
    ax.plot(steps, [1 - t / max(g, 1) for t, g in zip(trained, gen)], label="generated groups not trained")
    ax.set(xlabel="step", ylabel="share", ylim=(0, 1), title="Advantage collapse")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return save_figure(fig, out)


def plot_sampler(rows: list[dict[str, Any]], out: Path) -> Path:
    tr = [r for r in rows if "trace/alloc" in r]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    if tr:
        pts = np.array([p for r in tr for p in r["trace/alloc"]], dtype=float).reshape(-1, 2)
        jitter = np.random.default_rng(0).normal(0, 0.01, len(pts))
        a1.scatter(pts[:, 0] + jitter, pts[:, 1], s=4, alpha=0.25)
        a1.set(xlabel="estimated pass rate before the step", ylabel="rollouts generated",
               title="Rollouts allocated vs difficulty")
        hist = [r["trace/pool_pass_hist"] for r in rows if "trace/pool_pass_hist" in r]
        if hist:
            h = np.array(hist).T
            labels = ["0", "(0,.2)", "[.2,.4)", "[.4,.6)", "[.6,.8)", "[.8,1)", "1"]
            a2.stackplot(range(1, h.shape[1] + 1), h, labels=labels[: h.shape[0]])
            a2.set(xlabel="step", ylabel="share of seen prompts", ylim=(0, 1),
                   title="Pool pass-rate distribution (EMA)")
            a2.legend(fontsize=7, loc="upper left")
    return save_figure(fig, out)


def plot_run(run_dir: Path) -> list[Path]:
    """Write every run figure into ``run_dir/plots`` and return their paths."""
    rows = read_metrics(run_dir)
    out = Path(run_dir) / "plots"
    out.mkdir(exist_ok=True)
    return [plot_accuracy(rows, out / "accuracy.png"), plot_groups(rows, out / "groups.png"),
            plot_sampler(rows, out / "sampler.png")]


def summary_table(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Per-level pass@1 at the first and last eval, with the change."""
    ev = _eval_rows(rows)
    if not ev:
        return ["level", "start", "end", "change"], []
    first, last = ev[0], ev[-1]
    levels = sorted({k.split("/")[1] for k in last if k.startswith("eval/") and k.endswith("/pass@1")},
                    key=lambda s: (s == "mean", s))
    body = []
    for lv in levels:
        a, b = first.get(f"eval/{lv}/pass@1"), last.get(f"eval/{lv}/pass@1")
        if a is None or b is None:
            continue
        body.append([lv, f"{a:.3f}", f"{b:.3f}", f"{b - a:+.3f}"])
    return ["level", "start", "end", "change"], body

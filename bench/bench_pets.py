"""PETS vs uniform maj@k at equal samples on a synthetic answer distribution (no model needed).

For each uniform budget k = 4..16 samples per question it reports the self-consistency rate (agreement with
the infinite-budget majority, here the true mode of each question's answer distribution) of uniform maj@k,
and the mean samples per question PETS offline (OKG) and PETS online (buckets) need to reach at least that
rate. Curves are averaged over ``--reps`` independent draws of the answer pools before the crossing is read.

    python bench/bench_pets.py                 # table on stdout, JSON in bench/results/pets.json
    python bench/bench_pets.py --reps 2 --questions 100   # quicker

On a model, the same comparison at one budget: ``rollwise eval --model CKPT --n 32 --allocator pets_offline
--budget 8`` (reports ``pets/sc_accuracy`` and ``pets/uniform_sc_accuracy`` at equal samples); with ``--model``
this script runs that for both allocators over ``--model-budgets`` on the arithmetic suite (reference: the
n-sample majority) and adds a second table:

    python bench/bench_pets.py --model src/rollwise/assets/warmstart/c587ab2eeaa128fe --n 32 --eval-size 25
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from rollwise.sampling.pets import AnswerPools, OKGAllocator, OnlineAllocator, bucket_of, prefix_majorities

OPTIONS = ("A", "B", "C", "D")


def answer_distributions(num: int, rng: np.random.Generator) -> np.ndarray:
    """[num, 4] answer probabilities, option 0 the unique mode: 50% easy (p1 in 0.8..0.98), 30% medium
    (p1 in 0.5..0.7, runner-up 0.2..0.3), 20% near-tied (p1 in 0.4..0.5, runner-up 0.05..0.15 below)."""
    p = np.zeros((num, 4))
    kind = rng.choice(3, size=num, p=[0.5, 0.3, 0.2])
    for i, t in enumerate(kind):
        if t == 0:
            p1 = rng.uniform(0.8, 0.98)
            p2 = (1 - p1) * rng.uniform(0.4, 0.8)
        elif t == 1:
            p1 = rng.uniform(0.5, 0.7)
            p2 = min(rng.uniform(0.2, 0.3), 1 - p1)
        else:
            p1 = rng.uniform(0.4, 0.5)
            p2 = p1 - rng.uniform(0.05, 0.15)
        rest = 1 - p1 - p2
        p[i] = [p1, p2, rest * 0.6, rest * 0.4]
    return p


def draw_pools(probs: np.ndarray, size: int, rng: np.random.Generator) -> list[list[str]]:
    return [[OPTIONS[j] for j in rng.choice(4, size=size, p=pr)] for pr in probs]


def sc_at_counts(prefix: list[list[str]], counts: np.ndarray) -> float:
    """Self-consistency (true mode = 'A') when question q votes on its first counts[q] answers."""
    return float(np.mean([c > 0 and pm[c - 1] == "A" for pm, c in zip(prefix, counts)]))


def run_rep(probs: np.ndarray, cal_probs: np.ndarray, pool_size: int, budgets: np.ndarray,
            grid: np.ndarray, seed: int, draws: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    pools = draw_pools(probs, pool_size, rng)
    K = len(pools)
    prefix = [prefix_majorities(p) for p in pools]
    uniform = np.array([sc_at_counts(prefix, np.full(K, k)) for k in budgets])
    # offline: one OKG run to the largest budget; the state at any smaller total is a prefix of its order
    okg = OKGAllocator(draws=draws, seed=seed)
    okg.run(AnswerPools(pools), K, int(grid[-1] * K))
    order = np.asarray(okg.order)
    offline = np.array([sc_at_counts(prefix, np.bincount(order[: int(round(b * K))], minlength=K))
                        for b in grid])
    # online: fit once on separate calibration questions, replan per average budget
    online_al = OnlineAllocator(mean_budget=4, seed=seed).fit(draw_pools(cal_probs, pool_size, rng))
    buckets = np.array([bucket_of(p[:4]) for p in pools])
    online_sc, online_mean = [], []
    for b in grid[grid >= 4]:
        counts = online_al.plan(float(b)).budgets[buckets]
        online_sc.append(sc_at_counts(prefix, counts))
        online_mean.append(counts.mean())
    return {"uniform": uniform, "offline": offline, "online_sc": np.array(online_sc),
            "online_mean": np.array(online_mean)}


def needed(x: np.ndarray, sc: np.ndarray, target: float) -> float | None:
    """Smallest mean samples x whose self-consistency reaches ``target`` (None if never)."""
    hit = np.flatnonzero(sc >= target - 1e-12)
    return float(x[hit].min()) if hit.size else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--questions", type=int, default=200)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--pool", type=int, default=128, help="pre-drawn answers per question")
    ap.add_argument("--draws", type=int, default=500, help="Gamma draws per OKG estimate")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "pets.json")
    ap.add_argument("--model", default=None, help="also run `rollwise eval` PETS on this checkpoint")
    ap.add_argument("--n", type=int, default=32, help="samples drawn per question with --model")
    ap.add_argument("--eval-size", type=int, default=25, help="questions per arithmetic level with --model")
    ap.add_argument("--model-budgets", type=float, nargs="+", default=[4, 6, 8, 12])
    args = ap.parse_args()

    t0 = time.time()
    rng = np.random.default_rng(args.seed)
    probs, cal_probs = answer_distributions(args.questions, rng), answer_distributions(args.questions, rng)
    budgets = np.arange(4, 17)
    grid = np.arange(1, 24.01, 0.25)
    reps = []
    for r in range(args.reps):
        reps.append(run_rep(probs, cal_probs, args.pool, budgets, grid, args.seed * 1000 + r, args.draws))
    mean = {k: np.mean([rep[k] for rep in reps], axis=0) for k in reps[0]}
    online_grid = grid[grid >= 4]
    rows = []
    for i, k in enumerate(budgets):
        target = float(mean["uniform"][i])
        off = needed(grid, mean["offline"], target)
        on = needed(mean["online_mean"], mean["online_sc"], target)
        j = int(np.flatnonzero(online_grid == k)[0])
        rows.append({"budget": int(k), "uniform_sc": target,
                     "offline_sc_at_budget": float(mean["offline"][int(np.flatnonzero(grid == k)[0])]),
                     "online_sc_at_budget": float(mean["online_sc"][j]),
                     "offline_samples_to_match": off, "online_samples_to_match": on})

    def cell(v: float | None, k: int) -> str:
        return "not reached" if v is None else f"{v:.2f} ({100 * (v / k - 1):+.0f}%)"

    lines = ["| k | uniform maj@k SC | OKG SC @k | online SC @k | OKG samples to match | online samples to match |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        k = row["budget"]
        lines.append(f"| {k} | {row['uniform_sc']:.3f} | {row['offline_sc_at_budget']:.3f} | "
                     f"{row['online_sc_at_budget']:.3f} | {cell(row['offline_samples_to_match'], k)} | "
                     f"{cell(row['online_samples_to_match'], k)} |")
    print("\n".join(lines))
    print(f"\n{args.questions} questions x {args.reps} pool draws, seed {args.seed}, {time.time() - t0:.1f} s")
    report = {"config": vars(args) | {"out": str(args.out)}, "rows": rows,
              "curves": {k: v.tolist() for k, v in mean.items()}, "grid": grid.tolist()}
    if args.model:
        report["model_rows"] = model_table(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))


def model_table(args: argparse.Namespace) -> list[dict[str, float | str]]:
    """PETS vs uniform through ``run_eval`` (the engine is seeded, so every call sees the same n samples)."""
    from rollwise.config import load_config
    from rollwise.train.evaluate import run_eval

    cfg = load_config(None, [f"--task.eval_size={args.eval_size}", f"--run.seed={args.seed}"])
    rows: list[dict[str, float | str]] = []
    print(f"\n| allocator | budget | PETS SC | uniform SC | PETS acc | uniform acc | samples/q |  (n={args.n})")
    print("|---|---|---|---|---|---|---|")
    for name in ("pets_offline", "pets"):
        for b in args.model_budgets:
            r = run_eval(cfg, args.model, "arith", args.n, name, b)
            rows.append({k: v for k, v in r.items() if k.startswith("pets/")})
            print(f"| {name} | {b:g} | {r['pets/sc_accuracy']:.3f} | {r['pets/uniform_sc_accuracy']:.3f} | "
                  f"{r['pets/accuracy']:.3f} | {r['pets/uniform_accuracy']:.3f} | {r['pets/samples_mean']:.2f} |")
    return rows


if __name__ == "__main__":
    main()

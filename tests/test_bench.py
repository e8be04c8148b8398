from pathlib import Path

import numpy as np

from rollwise.bench import load_grid, run_grid, summarise, write_report

ROOT = Path(__file__).resolve().parents[1]


def test_grid_runs_skips_finished_and_reports(tmp_path, warm_cache):
    grid_file = tmp_path / "g.toml"
    grid_file.write_text(f"""
base = "{ROOT / 'configs' / 'smoke.toml'}"
seeds = [0, 1]
out = "{tmp_path / 'out'}"
overrides = ["--trainer.steps=2", "--trainer.eval_every=1", "--warmstart.cache_dir={warm_cache}"]
[[arms]]
name = "uniform"
[[arms]]
name = "dapo"
overrides = ["--sampler.type=dapo"]
""")
    grid = load_grid(grid_file)
    logs: list[str] = []
    run_grid(grid, log=logs.append)
    assert sum("training" in m for m in logs) == 4
    logs.clear()
    run_grid(grid, log=logs.append)  # a restarted grid skips finished runs
    assert sum("skipped" in m for m in logs) == 4
    rows = summarise(grid)
    assert {r["arm"] for r in rows} == {"uniform", "dapo"}
    uni = next(r for r in rows if r["arm"] == "uniform")
    assert uni["seeds"] == 2 and uni["steps"] == 2
    md = write_report(grid, rows)
    assert "| uniform |" in md.read_text()
    assert (grid.out / "accuracy.png").stat().st_size > 1000


def test_grid_metric_selects_the_curve(tmp_path, warm_cache):
    """A grid may compare the train-pool fit instead of held-out accuracy; an unlogged metric is a clear error."""
    import pytest

    def grid(metric: str, extra: str = "") -> Path:
        f = tmp_path / f"{metric.replace('/', '_')}.toml"
        f.write_text(f"""
base = "{ROOT / 'configs' / 'smoke.toml'}"
seeds = [0]
out = "{tmp_path / 'out'}"
metric = "{metric}"
overrides = ["--trainer.steps=2", "--trainer.eval_every=1", "--warmstart.cache_dir={warm_cache}"{extra}]
[[arms]]
name = "uniform"
""")
        return f

    g = load_grid(grid("train_eval/mean/pass@1", ', "--trainer.train_eval_size=4"'))
    assert g.metric == "train_eval/mean/pass@1"
    run_grid(g, log=lambda m: None)
    (row,) = summarise(g)
    from rollwise.logging import read_metrics

    evals = [r for r in read_metrics(g.out / "uniform" / "seed0") if "train_eval/mean/pass@1" in r]
    assert row["final_acc"] == evals[-1]["train_eval/mean/pass@1"]
    assert row["start_acc"] == evals[0]["train_eval/mean/pass@1"]
    with pytest.raises(ValueError, match="never logged"):
        summarise(load_grid(grid("nope/mean/pass@1")))


def test_reach_a_share_of_the_reference_gain_with_interpolation(tmp_path):
    """Hand-made curves: target = start + reach x gain of the reference; tokens at the target by first eval or
    by linear interpolation; the ratio divides by the reference's own tokens to the same target."""
    import json

    from rollwise.bench import _tokens_to_reach

    curves = {"uniform": ([0, 100, 200], [0.2, 0.4, 0.6]), "fast": ([0, 50, 100], [0.2, 0.3, 0.7])}
    for arm, (tokens, acc) in curves.items():
        d = tmp_path / "out" / arm / "seed0"
        d.mkdir(parents=True)
        rows = [{"step": i, "ledger/tokens": t, "eval/mean/pass@1": a, "sampler/mixed_share": 0.5}
                for i, (t, a) in enumerate(zip(tokens, acc))]
        (d / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    f = tmp_path / "g.toml"
    body = f'seeds = [0]\nout = "{tmp_path / "out"}"\nbase = "x"\n[[arms]]\nname = "uniform"\n[[arms]]\nname = "fast"\n'
    f.write_text("reach = 0.75\ninterpolate = true\n" + body)
    rows = {r["arm"]: r for r in summarise(load_grid(f))}
    assert abs(rows["uniform"]["target_acc"] - 0.5) < 1e-12          # 0.2 + 0.75 x (0.6 - 0.2)
    assert abs(rows["uniform"]["tokens_to_ref"] - 150) < 1e-9         # 100 + 100 x (0.5 - 0.4) / (0.6 - 0.4)
    assert abs(rows["fast"]["tokens_to_ref"] - 75) < 1e-9             # 50 + 50 x (0.5 - 0.3) / (0.7 - 0.3)
    assert abs(rows["fast"]["ratio_to_ref"] - 0.5) < 1e-9 and abs(rows["uniform"]["ratio_to_ref"] - 1) < 1e-9
    f.write_text("reach = 0.75\n" + body)  # first eval at or above the target
    rows = {r["arm"]: r for r in summarise(load_grid(f))}
    assert rows["uniform"]["tokens_to_ref"] == 200 and rows["fast"]["tokens_to_ref"] == 100
    f.write_text(body)  # default: the reference's final accuracy, ratio to its whole budget
    rows = {r["arm"]: r for r in summarise(load_grid(f))}
    assert rows["uniform"]["tokens_to_ref"] == 200 and rows["fast"]["tokens_to_ref"] == 100
    assert rows["fast"]["ratio_to_ref"] == 0.5
    import math

    assert math.isnan(_tokens_to_reach(np.array([0, 10]), np.array([0.1, 0.2]), 0.9, interpolate=True))


def test_report_columns_last_and_mean_values(tmp_path):
    """``report`` keys: KEY = the last logged value, mean:KEY = the mean over logged steps, averaged over seeds;
    a key no run logged is NaN; the markdown table gets one column per key."""
    import json
    import math

    rows_by_seed = {0: [0.0, 0.2, 0.4], 1: [0.0, 0.4, 0.8]}
    for seed, vals in rows_by_seed.items():
        d = tmp_path / "out" / "uniform" / f"seed{seed}"
        d.mkdir(parents=True)
        rows = [{"step": i, "ledger/tokens": 10 * i, "eval/mean/pass@1": v, "eval/add4/pass@1": v / 2,
                 "rollout/flawed": 0.1 * (i + 1)} for i, v in enumerate(vals)]
        (d / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    f = tmp_path / "g.toml"
    f.write_text(f'seeds = [0, 1]\nout = "{tmp_path / "out"}"\nbase = "x"\n'
                 'report = ["eval/add4/pass@1", "mean:rollout/flawed", "nope"]\n[[arms]]\nname = "uniform"\n')
    g = load_grid(f)
    (row,) = summarise(g)
    assert abs(row["eval/add4/pass@1"] - 0.3) < 1e-12  # last values 0.2 and 0.4
    assert abs(row["mean:rollout/flawed"] - 0.2) < 1e-12  # mean of 0.1, 0.2, 0.3 in both seeds
    assert math.isnan(row["nope"])
    md = write_report(g, [row]).read_text()
    assert "eval/add4/pass@1 | mean:rollout/flawed | nope |" in md.splitlines()[0]

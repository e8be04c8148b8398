from pathlib import Path

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

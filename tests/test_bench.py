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

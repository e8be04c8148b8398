"""The proving-ground summary on hand-made runs (costs to 90% / 100% of the reference gain in tokens and
seconds, the gain's 95% t-interval, overhead per step, rollouts-per-prompt percentiles), and the grid's
``[quick]`` variant and ``prepare`` run."""

import json
import math
from pathlib import Path

import pytest

from rollwise.bench import load_grid, quick_grid, run_grid
from rollwise.bench_headline import ci95, headline, write_headline
from rollwise.logging import read_metrics

ROOT = Path(__file__).resolve().parents[1]


def _write(d: Path, evals: list[tuple[int, float, float]], alloc: list[list[float]], done: bool = True) -> None:
    """Rows with an eval at each (tokens, seconds, acc); each step row 1 s of which 0.25 gen + 0.5 train."""
    d.mkdir(parents=True)
    rows = []
    for i, (tok, sec, acc) in enumerate(evals):
        row = {"step": i, "ledger/tokens": tok, "ledger/seconds": sec, "eval/mean/pass@1": acc}
        if i:
            row |= {"sampler/mixed_share": 0.5, "perf/generate_seconds": 0.25 * (sec - evals[i - 1][1]),
                    "perf/verify_seconds": 0.0, "perf/train_seconds": 0.5 * (sec - evals[i - 1][1]),
                    "trace/alloc": alloc}
        rows.append(row)
    (d / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    if done:
        (d / "DONE").write_text("ok")


def test_headline_costs_gain_interval_and_allocation(tmp_path):
    out = tmp_path / "out"
    # reference: 0.2 -> 0.6 (gain 0.4) in 200 tokens / 20 s for both seeds; 90% target 0.56
    for s in (0, 1):
        _write(out / "uniform" / f"seed{s}", [(0, 0, 0.2), (100, 10, 0.4), (200, 20, 0.6)], [[0.5, 8]] * 4)
    # the fast arm: seed 0 gains 0.5, seed 1 gains 0.3 (never reaches 0.6)
    _write(out / "fast" / "seed0", [(0, 0, 0.2), (50, 10, 0.6), (100, 20, 0.7)], [[0.1, 2], [0.5, 16]])
    _write(out / "fast" / "seed1", [(0, 0, 0.2), (50, 10, 0.5), (100, 20, 0.5)], [[0.1, 2], [0.5, 16]])
    _write(out / "fast" / "seed2", [(0, 0, 0.2), (10, 1, 0.9)], [[0.5, 8]], done=False)  # unfinished: ignored
    f = tmp_path / "g.toml"
    f.write_text(f'seeds = [0, 1, 2]\nout = "{out}"\nbase = "x"\nheadline = true\n'
                 '[[arms]]\nname = "uniform"\n[[arms]]\nname = "fast"\n')
    g = load_grid(f)
    assert g.headline
    rows = {r["arm"]: r for r in headline(g)}
    uni, fast = rows["uniform"], rows["fast"]
    assert uni["gain"] == pytest.approx(0.4) and math.isnan(ci95([0.4]))
    assert uni["tokens_to_90"] == pytest.approx(180)          # 100 + 100 x (0.56 - 0.4) / 0.2
    assert uni["tokens_to_100"] == 200 and uni["tokens_to_100_ratio"] == 1.0   # both seeds cross 0.6 at 200
    assert uni["seconds_to_90"] == pytest.approx(18)
    assert fast["seeds"] == 2 and fast["gain"] == pytest.approx(0.4)
    assert fast["gain_ci95"] == pytest.approx(12.706 * math.sqrt(0.02) / math.sqrt(2))  # sd of (0.5, 0.3)
    # seed 0 crosses 0.56 at 50 x 0.36 / 0.4 = 45 tokens; seed 1 at 50 + 50 x (0.56-0.5)/0 -> never (flat 0.5)
    assert fast["tokens_to_90"] == pytest.approx(45) and fast["tokens_to_90_reached"] == 1
    assert fast["tokens_to_90_ratio"] == pytest.approx(45 / 180)
    assert fast["tokens_to_100"] == pytest.approx(50) and fast["seconds_to_100_ratio"] == pytest.approx(10 / 20)
    assert fast["overhead_s_per_step"] == pytest.approx(2.5)   # 25% of each 10-s step outside gen/verify/train
    assert (fast["rpp_p10"], fast["rpp_median"], fast["rpp_max"]) == (2.0, 9.0, 16.0)
    md = write_headline(g, list(rows.values())).read_text()
    assert "| fast | 2 | +0.400 ± " in md and "45 (1/2) (0.25x)" in md
    for png in ("accuracy_seconds.png", "mixed.png", "alloc.png"):
        assert (out / png).stat().st_size > 1000


def test_quick_variant_and_prepare_run(tmp_path, warm_cache):
    """``[quick]`` keeps the arms it names, its seeds and overrides, in ``<out>_quick``; the prepare run trains
    first (once) and an arm starts from its checkpoint through ``model.path``."""
    out = tmp_path / "out"
    f = tmp_path / "g.toml"
    f.write_text(f"""
base = "{ROOT / 'configs' / 'smoke.toml'}"
seeds = [0, 1]
out = "{out}"
prepare = ["--trainer.steps=2", "--trainer.checkpoint_every=2", "--warmstart.cache_dir={warm_cache}"]
overrides = ["--trainer.steps=3", "--trainer.eval_every=1", "--warmstart.cache_dir={warm_cache}",
             "--model.path={out}/_prepare/run/checkpoints/step_000002"]
[quick]
seeds = [0]
arms = ["uniform"]
overrides = ["--trainer.steps=1"]
[[arms]]
name = "uniform"
[[arms]]
name = "dapo"
overrides = ["--sampler.type=dapo"]
""")
    q = quick_grid(load_grid(f))
    assert q.out == tmp_path / "out_quick" and q.seeds == [0] and [a.name for a in q.arms] == ["uniform"]
    assert f"--model.path={tmp_path}/out_quick/_prepare/run/checkpoints/step_000002" in q.overrides
    logs: list[str] = []
    run_grid(q, log=logs.append)
    assert (q.out / "_prepare" / "run" / "DONE").is_file() and (q.out / "uniform" / "seed0" / "DONE").is_file()
    steps = [r["step"] for r in read_metrics(q.out / "uniform" / "seed0") if "rollout/reward_mean" in r]
    assert steps == [1]  # the quick override came last
    logs.clear()
    run_grid(q, log=logs.append)
    assert not any("prepare" in m for m in logs)  # the prepare run is not repeated
    with pytest.raises(ValueError, match="unknown arm"):
        f.write_text(f.read_text().replace('arms = ["uniform"]', 'arms = ["nope"]'))
        quick_grid(load_grid(f))


def test_a_run_held_by_a_live_process_is_skipped_and_a_dead_ones_lock_taken_over(tmp_path):
    """Several ``rollwise bench`` processes share a grid through an OS lock beside each run."""
    import os
    import subprocess
    import sys

    from rollwise.bench import _claim
    from rollwise.train.rundir import unlock

    run = tmp_path / "arm" / "seed0"
    lock = _claim(run)
    path = tmp_path / "arm" / "seed0.lock"
    assert lock is not None and path.read_text() == f"pid {os.getpid()}\n"
    assert _claim(run) is None  # held by a live process (this one, through another open file)
    unlock(lock)
    holder = subprocess.Popen([sys.executable, "-c", "import sys; from rollwise.bench import _claim; "
                               f"l = _claim(__import__('pathlib').Path({str(run)!r})); print(l is not None, "
                               "flush=True); sys.stdin.read()"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    assert holder.stdout.readline().strip() == "True"
    assert _claim(run) is None  # another live process holds it
    holder.kill()
    holder.wait()
    lock = _claim(run)  # its holder died (SIGKILL): the kernel released the lock
    assert lock is not None
    unlock(lock)

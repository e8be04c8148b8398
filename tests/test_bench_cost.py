"""A grid's projected GPU cost columns (``cost = {...}``, rollwise/bench_cost.py) on constructed metrics.jsonl
files, checked by hand: the bench's "to reach" run again on the projected seconds of each row's ledger."""

from __future__ import annotations

import json

import pytest

from rollwise.bench import GridError, load_grid, summarise, write_report
from rollwise.cost import SETUPS, ModelCosts, Param, Setup

# 10 ms per decode step at any batch; 1e4 prefill tokens/s; 6 x 1e9 / (0.6 x 1e15) = 1e-5 s per trained token
UNIT = Setup("unit", "round numbers", Param(1e15, "test"),
             {"unit": ModelCosts("unit", Param(1e9, "test"), ((1.0, 0.01),), "test", Param(0.6, "test"),
                                 Param(1e4, "test"))})
# per arm, per eval: (decode steps, prefill tokens, trained tokens, accuracy); each term is 1 s per 100 / 1e4 / 1e5
ARMS = {"uniform": [(0, 0, 0, 0.2), (100, 10_000, 100_000, 0.4), (200, 20_000, 200_000, 0.6)],  # 0, 3, 6 s
        "fast": [(0, 0, 0, 0.2), (50, 5_000, 50_000, 0.3), (100, 10_000, 100_000, 0.7)]}  # 0, 1.5, 3 s


@pytest.fixture()
def grid_file(tmp_path, monkeypatch):
    monkeypatch.setitem(SETUPS, "unit", UNIT)
    for arm, points in ARMS.items():
        d = tmp_path / "out" / arm / "seed0"
        d.mkdir(parents=True)
        rows = [{"step": i, "ledger/tokens": 10 * i, "ledger/seconds": 10.0 * i, "ledger/decode_steps": s,
                 "ledger/decode_row_steps": 4 * s, "ledger/prefill_tokens": p, "ledger/tokens_trained": t,
                 "eval/mean/pass@1": a} for i, (s, p, t, a) in enumerate(points)]
        (d / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    f = tmp_path / "g.toml"
    f.write_text(f'reach = 0.75\ninterpolate = true\nseeds = [0]\nout = "{tmp_path / "out"}"\nbase = "x"\n'
                 'cost = {setup = "unit", model = "unit"}\n[[arms]]\nname = "uniform"\n[[arms]]\nname = "fast"\n')
    return f


def test_projected_seconds_to_reach_by_hand(grid_file):
    grid = load_grid(grid_file)
    assert grid.cost == {"setup": "unit", "model": "unit"}
    rows = {r["arm"]: r for r in summarise(grid)}
    uni, fast = rows["uniform"], rows["fast"]
    # target 0.2 + 0.75 x (0.6 - 0.2) = 0.5, interpolated on the projected axis
    assert abs(uni["projected_s_to_target"] - 4.5) < 1e-9  # 3 + 3 x (0.5 - 0.4) / (0.6 - 0.4)
    assert abs(fast["projected_s_to_target"] - 2.25) < 1e-9  # 1.5 + 1.5 x (0.5 - 0.3) / (0.7 - 0.3)
    # 100% of the reference's gain: its final accuracy 0.6
    assert abs(uni["projected_s_to_ref_final"] - 6.0) < 1e-9
    assert abs(fast["projected_s_to_ref_final"] - 2.625) < 1e-9  # 1.5 + 1.5 x (0.6 - 0.3) / (0.7 - 0.3)
    assert abs(uni["projected_s_final"] - 6.0) < 1e-9 and abs(fast["projected_s_final"] - 3.0) < 1e-9
    assert [round(uni[f"projected_{k}_s_final"], 9) for k in ("decode", "prefill", "train")] == [2.0, 2.0, 2.0]
    assert uni["tokens_trained_final"] == 200_000 and fast["cpu_seconds_final"] == 20.0
    assert uni["tokens_to_ref"] == 15  # the token columns are unchanged: 10 + 10 x (0.5 - 0.4) / 0.2
    md = write_report(grid, list(rows.values())).read_text()
    assert "Projected GPU seconds on unit for unit" in md and "projected, not measured" in md
    assert "| uniform | 4.500 | 6.000 | 6.000 (2.000 + 2.000 + 2.000) | 200000 | 20.0 |" in md
    assert "projected_s_to_target" in (grid.out / "results.csv").read_text().splitlines()[0]


def test_a_grid_without_cost_has_no_projected_columns(grid_file):
    grid_file.write_text("\n".join(ln for ln in grid_file.read_text().splitlines() if not ln.startswith("cost")))
    (row, _) = summarise(load_grid(grid_file))
    assert not any(k.startswith("projected") for k in row)


def test_unknown_cost_names_fail_at_load(grid_file):
    grid_file.write_text(grid_file.read_text().replace('model = "unit"', 'model = "llama-70b"'))
    with pytest.raises(GridError, match="prices no model 'llama-70b'"):
        load_grid(grid_file)

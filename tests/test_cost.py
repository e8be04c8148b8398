"""rollwise.cost: the projected GPU cost formula on hand-computed values, the step-latency interpolation, the
H100 setup's derived numbers, and the one-run pricing script (bench/project_cost.py)."""

from __future__ import annotations

import json
import math
import runpy
from pathlib import Path

import pytest

from rollwise.cost import (
    SETUPS,
    ModelCosts,
    Param,
    Setup,
    compute_projection,
    compute_step_latency,
    get_model,
    get_setup,
    guess_model,
    project_row,
)

ROOT = Path(__file__).resolve().parents[1]
# round numbers: 2 ms per step at batch 1, 4 ms at batch 101; 1e5 prefill tokens/s; 1e9 parameters at 50% of 1e15
UNIT_MODEL = ModelCosts("unit", Param(1e9, "test"), ((1.0, 0.002), (101.0, 0.004)), "test", Param(0.5, "test"),
                        Param(1e5, "test"))
UNIT = Setup("unit", "round numbers", Param(1e15, "test"), {"unit": UNIT_MODEL})


def test_step_latency_is_linear_in_batch_flat_below_and_extended_above():
    table = UNIT_MODEL.decode_latency
    assert compute_step_latency(table, 0.5) == 0.002  # below the first point: flat
    assert compute_step_latency(table, 1) == 0.002
    assert abs(compute_step_latency(table, 51) - 0.003) < 1e-15  # halfway: 2 + 2 x 50/100 ms
    assert abs(compute_step_latency(table, 201) - 0.006) < 1e-15  # the last segment extended: 4 + 2 x 100/100 ms
    assert compute_step_latency(((8.0, 0.01),), 100) == 0.01  # one point: flat


def test_projection_by_hand():
    # 100 decode steps of mean batch 5100/100 = 51 rows at 3 ms = 0.3 s; 2e5 prefill tokens at 1e5/s = 2 s;
    # 6 x 1e9 x 1e6 trained tokens / (0.5 x 1e15) = 12 s
    p = compute_projection(100, 5100, 2e5, 1e6, UNIT, UNIT_MODEL)
    assert abs(p.decode_s - 0.3) < 1e-12 and abs(p.prefill_s - 2.0) < 1e-12 and abs(p.train_s - 12.0) < 1e-12
    assert abs(p.total_s - 14.3) < 1e-12
    # the same from a metrics row's cumulative ledger; missing counters count 0
    row = {"ledger/decode_steps": 100, "ledger/decode_row_steps": 5100, "ledger/prefill_tokens": 200000,
           "ledger/tokens_trained": 1000000}
    assert project_row(row, UNIT, UNIT_MODEL) == p
    assert project_row({}, UNIT, UNIT_MODEL).total_s == 0.0


def test_h100_setup_numbers_by_hand():
    setup = get_setup("h100-vllm-fsdp")
    assert setup.peak_flops.value == 989e12
    q = get_model(setup, "qwen2.5-0.5b")
    n = 494_032_768
    # batch 256: 2.42 ms + 256 x 2N FLOPs at half of 989e12 + 256 x 512 x 12288 KV bytes at 3.35e12 B/s
    assert abs(compute_step_latency(q.decode_latency, 256) - (2.42e-3 + 256 * 2 * n / 494.5e12
                                                               + 256 * 512 * 12288 / 3.35e12)) < 1e-12
    assert abs(compute_step_latency(q.decode_latency, 256) - 3.4123e-3) < 1e-7
    assert q.utilisation.value == 0.3976  # llm-foundry H100 BF16 table, MPT 760m at seq 1024
    assert abs(q.prefill_tokens_per_s.value - 0.3976 * 989e12 / (2 * n)) < 1e-6
    p = compute_projection(0, 0, 0, 1e6, setup, q)  # one million trained tokens
    assert abs(p.train_s - 6 * n * 1e6 / (0.3976 * 989e12)) < 1e-9 and abs(p.train_s - 7.5381) < 1e-3
    assert abs(get_model(setup, "smollm2-135m").utilisation.value - 0.3592) < 1e-4  # 39.76 x 43.15 / 47.76
    # the worked example of the docs: 1000 decode steps at mean batch 128, 2e6 prefill tokens, 3e6 trained tokens
    p = compute_projection(1000, 128_000, 2e6, 3e6, setup, q)
    assert abs(compute_step_latency(q.decode_latency, 128) - (2.42e-3 + (3.4123e-3 - 2.42e-3) * 127 / 255)) < 1e-7
    assert [round(x, 3) for x in (p.decode_s, p.prefill_s, p.train_s, p.total_s)] == [2.914, 5.025, 22.614, 30.554]


def test_every_parameter_names_its_source():
    for setup in SETUPS.values():
        assert setup.peak_flops.source
        for m in setup.models.values():
            assert m.params.source and m.decode_source and m.utilisation.source
            assert "assumed" in m.prefill_tokens_per_s.source  # no publication: says so
            assert "assumed" in m.decode_source  # the batch-256 point is derived, not measured
            assert [b for b, _ in m.decode_latency] == sorted(b for b, _ in m.decode_latency)


def test_unknown_names_list_the_options():
    with pytest.raises(ValueError, match="h100-vllm-fsdp"):
        get_setup("a100")
    with pytest.raises(ValueError, match="qwen2.5-0.5b"):
        get_model(get_setup("h100-vllm-fsdp"), "llama-70b")
    assert guess_model('path = "models/smollm2"') == "smollm2-135m"
    assert guess_model("Qwen/Qwen2.5-1.5B-Instruct") == "qwen2.5-1.5b" and guess_model("") == "tiny"


def test_project_cost_script_prints_the_three_terms(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(SETUPS, "unit", UNIT)
    rows = [{"step": 0, "ledger/decode_steps": 0, "ledger/decode_row_steps": 0, "ledger/prefill_tokens": 0,
             "ledger/tokens_trained": 0},
            {"step": 1, "ledger/decode_steps": 100, "ledger/decode_row_steps": 5100, "ledger/prefill_tokens": 200000,
             "ledger/tokens_trained": 1000000, "ledger/seconds": 3.5},
            {"step": 1, "eval/mean/pass@1": 0.5}]  # an eval-only row without the ledger is skipped
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    main = runpy.run_path(str(ROOT / "bench" / "project_cost.py"))["main"]
    assert main([str(tmp_path), "--setup", "unit", "--model", "unit"]) == 0
    out = capsys.readouterr().out
    assert "PROJECTED" in out and "mean batch 51.0" in out
    got = {line.split()[1]: float(line.split()[2]) for line in out.splitlines() if line.startswith("  projected ")}
    assert got == {"decode": 0.3, "prefill": 2.0, "train": 12.0, "total": 14.3}
    assert not math.isnan(got["total"])

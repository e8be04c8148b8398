"""``rollwise train`` smoke runs of the advantage-shaping methods (ACE, MSSR's entropy term, HAPO): two steps each,
checking that the method's own metrics are logged."""

from __future__ import annotations

import dataclasses
import inspect
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rollwise.cli import app
from rollwise.generation import ENGINES

ROOT = Path(__file__).resolve().parents[2]


def train(tmp_path: Path, warm_cache: Path, name: str, *overrides: str) -> list[dict]:
    res = CliRunner().invoke(app, ["train", str(ROOT / "configs" / "smoke.toml"), "--trainer.steps=2",
                                   "--run.threads=1", "--trainer.eval_every=0", "--task.eval_size=4",
                                   f"--run.out_dir={tmp_path}", f"--warmstart.cache_dir={warm_cache}",
                                   f"--run.name={name}", *overrides])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == len(rows) - 1 >= 2  # the step-0 eval row, then one row per step
    return rows


def test_cli_ace(tmp_path, warm_cache):
    rows = train(tmp_path, warm_cache, "ace", '--algo.shaping=[{type="ace",alpha=1.0}]')
    assert all("loss/ace_scale_mean" in r for r in rows[1:])


def test_cli_mssr_entropy_with_batch_normalised_baseline(tmp_path, warm_cache):
    rows = train(tmp_path, warm_cache, "mssr", '--algo.shaping=["mssr_entropy"]', "--sampler.baseline=pool_mean",
                 '--algo.advantage={type="pool_baseline",batch_norm=true}')
    assert all("loss/mssr_entropy_term_mean" in r for r in rows[1:])


def test_cli_hapo(tmp_path, warm_cache):
    rows = train(tmp_path, warm_cache, "hapo", "--algo.loss=hapo", "--algo.advantage=hapo", "--algo.clip_high=0.2",
                 "--algo.dual_clip=10")
    assert all("loss/hapo_clip_low_mean" in r for r in rows[1:])


HF_KNOBS = ENGINES.config("hf")


@pytest.mark.skipif(HF_KNOBS is None or "entropy_temperature_tau" not in HF_KNOBS.model_fields,
                    reason="the hf engine's knobs are not registered (generation/__init__.py: config=HFEngineKnobs)")
def test_cli_hapo_adaptive_temperature(tmp_path, warm_cache):
    rows = train(tmp_path, warm_cache, "hapo_tau", "--algo.loss=hapo", "--algo.advantage=hapo",
                 '--generation.engine={type="hf",entropy_temperature_tau=0.05}', "--trainer.steps=3")
    assert "loss/behaviour_is_mean" not in rows[1]  # step 1 samples at the base temperature (no statistics yet)
    ran = [r for r in rows[2:] if r["perf/update_rows_skipped"] < r["sampler/rollouts_trained"]]  # a loss ran
    assert ran and all("loss/behaviour_is_mean" in r for r in ran)  # then pi_old / mu corrects the adaptive T


def test_hf_engine_knobs_match_the_engine():
    from rollwise.generation.base import HFEngineKnobs
    from rollwise.generation.hf import HFEngine

    params = inspect.signature(HFEngine).parameters
    for f in dataclasses.fields(HFEngineKnobs):
        assert params[f.name].default == f.default, f.name

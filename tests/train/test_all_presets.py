"""Every registered sampler preset completes a (smoke) training run end to end through the real trainer."""

import pytest

from rollwise.sampling.presets import PRESETS
from rollwise.train.trainer import Trainer


@pytest.mark.parametrize("preset", PRESETS.names())
def test_preset_trains(preset, smoke_cfg):
    extra = ["--sampler.params.fixed.n=8"] if preset == "brorl" else []
    cfg = smoke_cfg(f"--sampler.type={preset}", f"--run.name={preset}", "--trainer.steps=3",
                    "--trainer.eval_every=0", "--trainer.checkpoint_every=0", *extra)
    t = Trainer(cfg)
    t.train()
    t.close()
    rows = [r for r in (t.run_dir / "metrics.jsonl").read_text().splitlines() if '"sampler/budget"' in r]
    assert len(rows) == 3
    import json

    for r in map(json.loads, rows):
        assert r["sampler/budget_spent"] <= r["sampler/budget"]

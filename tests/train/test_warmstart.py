"""Warm-start options: the cache key, the learning-rate floor, untied embeddings and the scratchpads."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from rollwise.config import load_config
from rollwise.logging import read_metrics
from rollwise.train.model import build_tiny_model, load_model
from rollwise.train.trainer import Trainer
from rollwise.train.warmstart import PACKAGED, find_warmstart, lr_factor, train_warmstart, warmstart_key

ROOT = Path(__file__).resolve().parents[2]


def test_default_key_is_the_packaged_warm_start():
    # The options added after the packaged checkpoint was made must not change the default key.
    cfg = load_config(None, [])
    assert (PACKAGED / warmstart_key(cfg) / "config.json").is_file()
    assert find_warmstart(cfg) is not None


def test_direct_answer_key_is_unchanged_and_shipped():
    # configs/direct.toml was the default when its checkpoint was made; later options must not change its key.
    cfg = load_config(ROOT / "configs" / "direct.toml", [])
    assert warmstart_key(cfg) == "ba6893b81f68fdda"
    assert find_warmstart(cfg) == PACKAGED / "ba6893b81f68fdda"


def test_key_changes_with_each_new_option():
    base = warmstart_key(load_config(None, []))
    options = [["--warmstart.final_lr_ratio=0.1"], ["--warmstart.weight_decay=0.1"], ["--model.tie_embeddings=false"],
               ["--task.scratchpad=carries"], ["--task.scratchpad=none"], ["--task.scratchpad_share=0.3"],
               ["--task.scratchpad_prompted=0.4"]]
    keys = {warmstart_key(load_config(None, o)) for o in options}
    assert base not in keys and len(keys) == len(options)
    # the mixing shares do not enter the key of the other formats
    assert warmstart_key(load_config(None, ["--task.scratchpad=none", "--task.scratchpad_share=0.5"])) == \
        warmstart_key(load_config(None, ["--task.scratchpad=none"]))


def test_lr_factor_warmup_cosine_and_floor():
    # 100 steps, 5 warm-up steps: linear ramp, cosine from 1 to the floor, floor after the end.
    assert math.isclose(lr_factor(0, 100, 5, 0.0), 0.2)
    assert math.isclose(lr_factor(50, 100, 5, 0.0), 0.5)
    assert math.isclose(lr_factor(50, 100, 5, 0.2), 0.2 + 0.8 * 0.5)
    assert math.isclose(lr_factor(100, 100, 5, 0.2), 0.2)
    assert lr_factor(70, 100, 5, 1.0) == 1.0  # ratio 1 = constant after warm-up


def test_untied_embeddings(tokenizer):
    tied = build_tiny_model(tokenizer, layers=1, hidden=16, heads=2, kv_heads=1, intermediate=32)
    untied = build_tiny_model(tokenizer, layers=1, hidden=16, heads=2, kv_heads=1, intermediate=32,
                              tie_embeddings=False)
    assert tied.lm_head.weight.data_ptr() == tied.model.embed_tokens.weight.data_ptr()
    assert untied.lm_head.weight.data_ptr() != untied.model.embed_tokens.weight.data_ptr()
    n = sum(p.numel() for p in untied.parameters()) - sum(p.numel() for p in tied.parameters())
    assert n == len(tokenizer) * 16


def test_untied_warm_start_trains_and_reloads(smoke_cfg):
    cfg = smoke_cfg("--model.tie_embeddings=false", "--warmstart.steps=3", "--warmstart.final_lr_ratio=0.5")
    out = train_warmstart(cfg, set(), device=torch.device("cpu"))
    assert out.name == warmstart_key(cfg)
    assert find_warmstart(cfg) == out
    model, _ = load_model(out)
    assert model.config.tie_word_embeddings is False


def test_carry_scratchpad_warm_start_and_rl_run_end_to_end(smoke_cfg):
    """The scratchpad path: SFT on '<carries>|<answer>' targets, then RL scored by synthetic_scratch."""
    cfg = smoke_cfg("--run.name=carries", "--task.scratchpad=carries", "--task.verifier=synthetic_scratch",
                    "--generation.max_new_tokens=8", "--warmstart.steps=60", "--trainer.steps=2")
    t = Trainer(cfg)
    t.train()
    t.close()
    scored = [r for r in read_metrics(t.run_dir) if "rollout/parsed_share" in r]
    assert len(scored) == 2
    # after 60 SFT steps the model writes the 'carries|answer' shape, so the verifier parses its rollouts
    assert scored[-1]["rollout/parsed_share"] > 0.5


def test_mixed_scratchpad_warm_start_and_rl_run_end_to_end(smoke_cfg):
    """The default's path at smoke size: SFT on direct, prompted and unprompted worked targets, then RL scored by
    synthetic_mixed on plain prompts, with the eval logging completion lengths."""
    cfg = smoke_cfg("--run.name=mixed", "--task.scratchpad=mixed", "--generation.max_new_tokens=8",
                    "--warmstart.steps=60", "--trainer.steps=2")
    assert cfg.task.verifier_name() == "synthetic_mixed"
    t = Trainer(cfg)
    t.train()
    t.close()
    rows = read_metrics(t.run_dir)
    scored = [r for r in rows if "rollout/parsed_share" in r]
    assert len(scored) == 2 and scored[-1]["rollout/parsed_share"] > 0.5
    ev = [r for r in rows if "eval/add2/length" in r]
    assert ev and all(1 <= r["eval/add2/length"] <= 8 for r in ev)

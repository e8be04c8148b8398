"""Where APRIL's generation time goes vs plain (one-off diagnosis behind docs/notes/strategies_longtail.md):
profile 4 generation steps (after 2 warm-up steps, no update) of the long-tail testbed with cProfile and print
tokens/s, the number of model forwards and their cumulative time.

    python bench/profile_april.py plain
    python bench/profile_april.py april
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import tempfile
from pathlib import Path

import torch

from rollwise.config import load_config
from rollwise.train.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
APRIL = ['--generation.strategy={type="april",over_sample=2.0}', "--sampler.batch_prompts=64",
         "--generation.batch_size=512"]


def main(arm: str) -> None:
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        overrides = [f"--run.out_dir={tmp}", "--trainer.progress=false", "--run.threads=1",
                     *(APRIL if arm == "april" else [])]
        tr = Trainer(load_config(ROOT / "configs" / "longtail.toml", overrides))
        for step in range(2):  # warm-up: APRIL's buffer fills
            tr.rollouts.collect(tr.pipeline, step, version=step)
        prof = cProfile.Profile()
        tokens, seconds = 0, 0.0
        prof.enable()
        for step in range(2, 6):
            got = tr.rollouts.collect(tr.pipeline, step, version=step)
            tokens, seconds = tokens + got.decoded_tokens, seconds + got.gen_seconds
        prof.disable()
    print(f"{arm}: {tokens} decoded tokens in {seconds:.2f} s of generation = {tokens / seconds:.0f} tok/s")
    pstats.Stats(prof).sort_stats("cumulative").print_stats("hf.py.*(_forward|_decode)")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "april")

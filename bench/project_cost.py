"""Price one run's counted work on a GPU setup (rollwise.cost): projected seconds, never measured ones.

    python bench/project_cost.py RUN_DIR [--setup h100-vllm-fsdp] [--model qwen2.5-0.5b]

Reads the last row of RUN_DIR/metrics.jsonl that holds the ledger (cumulative prefill tokens, decode steps and
row-steps, trained tokens) and prints the formula's three terms, their sum, and every parameter with its source.
Without ``--model`` the size is guessed from the run's config.toml (model path or name; 'tiny' if none matches).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rollwise.cost import LEDGER_KEYS, SETUPS, describe, get_model, get_setup, guess_model, project_row
from rollwise.logging import read_metrics


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--setup", default="h100-vllm-fsdp", choices=sorted(SETUPS))
    ap.add_argument("--model", default=None, help="priced model size (default: guessed from config.toml)")
    args = ap.parse_args(argv)
    rows = [r for r in read_metrics(args.run_dir) if LEDGER_KEYS[0] in r]
    if not rows:
        print(f"{args.run_dir}: no row with {LEDGER_KEYS[0]} (a run from before the work counters?)", file=sys.stderr)
        return 1
    cfg = args.run_dir / "config.toml"
    name = args.model or guess_model(cfg.read_text() if cfg.is_file() else "")
    setup = get_setup(args.setup)
    model = get_model(setup, name)
    last = rows[-1]
    p = project_row(last, setup, model)
    steps, row_steps = last["ledger/decode_steps"], last["ledger/decode_row_steps"]
    print(f"{args.run_dir} at step {last.get('step', '?')}, priced as {model.name} on {setup.name} (PROJECTED, "
          "not measured)")
    print(f"  counted: prefill tokens {last['ledger/prefill_tokens']}, decode steps {steps}, decode row-steps "
          f"{row_steps} (mean batch {row_steps / steps if steps else 0:.1f}), trained tokens "
          f"{last.get('ledger/tokens_trained', 0)}; measured CPU seconds {last.get('ledger/seconds', 0):.1f}")
    print(f"  projected decode  {p.decode_s:12.4f} s")
    print(f"  projected prefill {p.prefill_s:12.4f} s")
    print(f"  projected train   {p.train_s:12.4f} s")
    print(f"  projected total   {p.total_s:12.4f} s")
    print("  parameters:")
    for line in describe(setup, model):
        print(f"    {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

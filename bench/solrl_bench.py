"""Sol-RL for LLMs (arXiv:2604.06916, adapted; issue 30 item 2): (1) generation throughput of the int8 explore copy
vs the fp32 policy on the HF engine, on the embedded default's architecture and on SmolLM2-135M; (2) short runs
on the embedded default: held-out accuracy of Sol-RL (32-candidate int8 pool -> 8 trained) at equal generated
tokens and equal train wall-clock against uniform GRPO at G = 8, with the FlashRL-like int8-sample arms.

    nice -n 5 python bench/solrl_bench.py throughput [--rows 16 --tokens 32 --repeats 3]
    nice -n 5 python bench/solrl_bench.py train [--max-tokens 60000 --seeds 0]

Timings are wall-clock on a shared 2-core CPU: arms are interleaved (throughput) or run back to back, and only
ratios measured inside one invocation are compared.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "solrl"
#: generated tokens per step on the default (measured): each arm evaluates about 6 times whatever the budget
TOKENS_PER_STEP = {"grpo_g8": 1400, "solrl": 6700, "solrl_is": 5400, "int8_uncorrected": 5400}
ARMS = {
    "grpo_g8": [],  # uniform GRPO, 8 full-precision rollouts per prompt
    "solrl": ["--recipe=solrl"],  # int8 pool 32 -> best 4 + worst 4, regenerated at fp32 with the same noise
    "solrl_is": ["--recipe=solrl_is"],  # the 8 int8 samples trained with TIS min(pi_old/mu, 2)
    "int8_uncorrected": ["--generation.strategy={type=\"solrl\",mode=\"rescore_is\"}"],  # int8 samples as on-policy
}


def throughput(rows: int, tokens: int, repeats: int) -> dict:
    import torch

    from rollwise.generation import SamplingParams
    from rollwise.generation.hf import HFEngine
    from rollwise.generation.solrl import quantize_int8
    from rollwise.train.model import build_char_tokenizer, build_tiny_model, load_model

    torch.set_num_threads(1)
    models = {}
    tok = build_char_tokenizer()
    models["tiny_0.8M"] = (build_tiny_model(tok, seed=0), tok, tok.encode("123+456="))
    smol = ROOT / "models" / "smollm2"
    if smol.is_dir():
        m, t = load_model(str(smol), dtype=torch.float32, device=torch.device("cpu"))
        models["smollm2_135M"] = (m, t, t.encode("Q: Tom has 12 apples and buys 30 more. How many now?\nA:"))
    params = SamplingParams(temperature=1.0, max_new_tokens=tokens, seed=0,
                            row_seeds=tuple(range(rows)))
    out = {}
    for name, (model, t, prompt) in models.items():
        engines = {"fp32": HFEngine(model, t, batch_size=rows),
                   "int8": HFEngine(quantize_int8(model), t, batch_size=rows),
                   "int8_head": HFEngine(quantize_int8(model, include_head=True), t, batch_size=rows)}
        times: dict[str, list[float]] = {k: [] for k in engines}
        decoded: dict[str, int] = {}
        same: dict[str, float] = {}
        base = None
        for _ in range(repeats + 1):  # the first round warms up and is dropped
            for k, e in engines.items():  # interleaved, so contention falls on every arm alike
                t0 = time.perf_counter()
                got = e.generate([prompt], [rows], params)[0]
                times[k].append(time.perf_counter() - t0)
                decoded[k] = sum(len(c.token_ids) for c in got)
                if k == "fp32":
                    base = [c.token_ids for c in got]
                same[k] = sum(c.token_ids == b for c, b in zip(got, base)) / rows
        out[name] = {k: {"seconds_median": statistics.median(v[1:]), "tokens": decoded[k],
                         "tokens_per_s": decoded[k] / statistics.median(v[1:]),
                         "same_noise_identical_share": same[k]} for k, v in times.items()}
        print(name, json.dumps(out[name]), flush=True)
    return out


def train(max_tokens: int, seeds: list[int], arms: list[str]) -> dict:
    from rollwise.logging import read_metrics

    res = {}
    for seed in seeds:
        for arm in arms:
            name = f"{arm}_t{max_tokens // 1000}k_s{seed}"
            every = max(1, round(max_tokens / TOKENS_PER_STEP[arm] / 6))
            run_dir = OUT / name
            if not (run_dir / "DONE").exists():
                subprocess.run([shutil.which("rollwise") or "rollwise", "train", str(ROOT / "configs" / "tiny.toml"),
                                *ARMS[arm], "--trainer.steps=1000", f"--trainer.max_tokens={max_tokens}",
                                f"--trainer.eval_every={every}", "--trainer.checkpoint_every=0",
                                "--trainer.progress=false", "--trainer.plots=false", "--run.threads=1",
                                f"--run.seed={seed}", f"--run.out_dir={OUT}", f"--run.name={name}", "--overwrite"],
                               check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
                (run_dir / "DONE").write_text("ok\n")
            rows = read_metrics(run_dir)
            ev = [r for r in rows if "eval/mean/pass@1" in r]
            res[name] = {"curve": [(r["step"], r["ledger/tokens"], round(r["ledger/seconds"], 1),
                                    r["eval/mean/pass@1"]) for r in ev],
                         "regen_agreement": [r.get("generation/solrl_regen_agreement") for r in rows
                                             if "generation/solrl_regen_agreement" in r],
                         "flip_rate": [r.get("generation/solrl_reward_flip_rate") for r in rows
                                       if "generation/solrl_reward_flip_rate" in r],
                         "p_correct_given_draft": [(r.get("generation/solrl_p_correct_given_draft_correct"),
                                                    r.get("generation/solrl_p_correct_given_draft_wrong"))
                                                   for r in rows if "generation/solrl_pool" in r],
                         "reward_mean": [r["rollout/reward_mean"] for r in rows if "rollout/reward_mean" in r]}
            print(name, json.dumps(res[name]["curve"]), flush=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["throughput", "train"])
    ap.add_argument("--rows", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=60000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--arms", nargs="+", default=list(ARMS))
    a = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if a.what == "throughput":
        got = throughput(a.rows, a.tokens, a.repeats)
    else:
        got = train(a.max_tokens, a.seeds, a.arms)
    (OUT / f"{a.what}.json").write_text(json.dumps(got, indent=1))


if __name__ == "__main__":
    main()

"""The checks to run when a GPU is lent (issue 31): one script, one JSON of results.

    python bench/gpu_check.py --dry-run                      # list what it would run, run nothing
    python bench/gpu_check.py --out $OUT/gpu_check.json      # run every check (on the device machine)
    python bench/gpu_check.py --only vllm_tests,bench_trl --rl-steps 3 --out /tmp/gpu.json

Checks, in order (each in its own process with its own timeout; one that fails or times out is recorded and the
next still runs):

1. ``env``: ``nvidia-smi``, torch's CUDA device and whether vLLM imports (and its version).
2. ``vllm_tests``: the vLLM engine tests (``tests/generation/test_vllm_engine.py``, ``test_vllm_async.py``):
   greedy == HF engine, behaviour logprobs, prefix continuation, weight sync, abort with partials. The JSON has
   pytest's summary line and the number skipped (a skip for want of vllm is a failed check here).
3. ``smollm2_rl``: a short SmolLM2-135M-Instruct RL run (``configs/smollm2_arith.toml``) on CUDA with the vLLM
   engine, asynchronous, weights broadcast to the rollout worker over NCCL (``async.weight_sync = "collective"``);
   records the last step's metrics (``metrics.jsonl``). Needs the converted model at ``--model`` (default
   ``models/smollm2``, git-ignored and too large to carry: put it under ``shared/`` and pass ``--model``; without
   it the check is recorded as skipped with the reason). Needs ``ray`` (the ``[ray]`` extra).
4. ``bench_trl``: ``bench/bench_trl.py`` on the embedded default (``configs/tiny.toml``) on CUDA: rollwise vs TRL
   s/step on the same GPU (the issue's aim: <= 0.30x), and, when the model is there, the same on SmolLM2.

Written for the device machine of this project (one GPU, no network): ``$OUT`` is where results come back. The
commands are plain ``python -m pytest`` / ``python -m rollwise.cli`` / ``python bench/...`` lines, so a human can
run any one of them by hand (``--dry-run`` prints them).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CHECKS = ("env", "vllm_tests", "smollm2_rl", "bench_trl")


def plan(args: argparse.Namespace, out_dir: Path) -> list[dict[str, Any]]:
    """The commands each check runs: [{check, name, cmd, timeout, needs}]."""
    py, model = sys.executable, str(args.model)
    run_dir = out_dir / "smollm2_rl"
    steps: list[dict[str, Any]] = [
        {"check": "env", "name": "nvidia-smi", "cmd": ["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                                                          "--format=csv,noheader"], "timeout": 60},
        {"check": "env", "name": "torch+vllm", "timeout": 120, "cmd": [py, "-c", (
            "import json, torch\nd = {'torch': torch.__version__, 'cuda': torch.cuda.is_available(),\n"
            "     'device': torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}\n"
            "try:\n    import vllm; d['vllm'] = vllm.__version__\nexcept Exception as e:\n"
            "    d['vllm'] = 'not importable: ' + repr(e)[:200]\nprint(json.dumps(d))")]},
        {"check": "vllm_tests", "name": "vllm engine tests", "timeout": args.timeout, "cmd": [
            py, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "tests/generation/test_vllm_engine.py",
            "tests/generation/test_vllm_async.py"]},
        {"check": "smollm2_rl", "name": "SmolLM2 RL, vLLM engine, NCCL weight sync", "timeout": args.timeout,
         "needs": model, "cmd": [
             py, "-m", "rollwise.cli", "train", "configs/smollm2_arith.toml", f"--model.path={model}",
             "--run.device=cuda", "--generation.engine=vllm", "--run.mode=async", "--async.weight_sync=collective",
             f"--trainer.steps={args.rl_steps}", "--trainer.eval_every=0", "--task.eval_size=8",
             "--trainer.progress=false", f"--run.out_dir={run_dir}"],
         "metrics": str(run_dir)},
        {"check": "bench_trl", "name": "bench_trl, embedded default, CUDA", "timeout": args.timeout, "cmd": [
            py, "bench/bench_trl.py", "--config", "configs/tiny.toml", "--steps", str(args.trl_steps),
            "--run.device=cuda", "--out", str(out_dir / "trl_default_cuda.json")],
         "result": str(out_dir / "trl_default_cuda.json")},
        {"check": "bench_trl", "name": "bench_trl, SmolLM2, CUDA", "timeout": args.timeout, "needs": model, "cmd": [
            py, "bench/bench_trl.py", "--config", "configs/smollm2_arith.toml", "--steps", str(args.rl_steps),
            f"--model.path={model}", "--task.eval_size=8", "--run.device=cuda",
            "--out", str(out_dir / "trl_smollm2_cuda.json")],
         "result": str(out_dir / "trl_smollm2_cuda.json")},
    ]
    return [s for s in steps if s["check"] in args.only]


def run_step(step: dict[str, Any]) -> dict[str, Any]:
    """Run one command; return what the JSON keeps of it."""
    rec: dict[str, Any] = {k: step[k] for k in ("check", "name")} | {"cmd": shlex.join(step["cmd"])}
    if step.get("needs") and not (ROOT / step["needs"]).exists() and not Path(step["needs"]).exists():
        return rec | {"status": "skipped", "reason": f"{step['needs']} not found (pass --model)"}
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    t0 = time.perf_counter()
    try:
        p = subprocess.run(step["cmd"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=step["timeout"])
        rc, out = p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired as e:
        rc, out = 124, f"timed out after {step['timeout']} s\n" + str(e.stdout or "")[-4000:]
    except FileNotFoundError as e:
        rc, out = 127, str(e)
    rec |= {"status": "ok" if rc == 0 else "failed", "rc": rc, "seconds": round(time.perf_counter() - t0, 1),
            "tail": out[-3000:]}
    if step["check"] == "vllm_tests":
        last = [line for line in out.splitlines() if " passed" in line or " failed" in line or " skipped" in line]
        rec["summary"] = last[-1] if last else None
        rec["skipped"] = out.count("SKIPPED")
        if rec["skipped"] and rec["status"] == "ok":
            rec["status"] = "failed"  # a vLLM test skipped on the GPU machine is what this check must catch
    if step.get("metrics"):
        files = sorted(Path(step["metrics"]).rglob("metrics.jsonl"))
        lines = files[-1].read_text().splitlines() if files else []
        rec["last_metrics"] = json.loads(lines[-1]) if lines else None
    if step.get("result") and Path(step["result"]).exists():
        rec["result"] = json.loads(Path(step["result"]).read_text())
    return rec


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="print the commands as JSON and run nothing")
    ap.add_argument("--only", default=",".join(CHECKS), help=f"comma list of checks: {','.join(CHECKS)}")
    ap.add_argument("--model", default="models/smollm2", help="converted SmolLM2-135M-Instruct directory")
    ap.add_argument("--rl-steps", type=int, default=3, help="steps of the SmolLM2 runs")
    ap.add_argument("--trl-steps", type=int, default=30, help="steps of bench_trl on the embedded default")
    ap.add_argument("--timeout", type=int, default=900, help="seconds per command")
    ap.add_argument("--out", default=os.path.join(os.environ.get("OUT", "/tmp"), "gpu_check.json"))
    args = ap.parse_args(argv)
    args.only = [c for c in args.only.split(",") if c]
    unknown = set(args.only) - set(CHECKS)
    if unknown:
        ap.error(f"unknown checks {sorted(unknown)}; choose from {','.join(CHECKS)}")
    out = Path(args.out)
    steps = plan(args, out.parent)
    if args.dry_run:
        print(json.dumps([{"check": s["check"], "name": s["name"], "cmd": shlex.join(s["cmd"]),
                           "timeout": s["timeout"]} for s in steps], indent=1))
        return 0
    out.parent.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M"), "argv": sys.argv[1:], "steps": []}
    for step in steps:
        print(f"[gpu_check] {step['check']}: {step['name']}", file=sys.stderr, flush=True)
        result["steps"].append(run_step(step))
        out.write_text(json.dumps(result, indent=1))  # written after each step: a timeout keeps what ran
    result["ok"] = all(s["status"] == "ok" for s in result["steps"])
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps({s["name"]: s["status"] for s in result["steps"]} | {"ok": result["ok"]}, indent=1))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

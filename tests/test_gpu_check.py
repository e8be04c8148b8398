"""bench/gpu_check.py, the script for a lent GPU: its dry run lists every check's command, the overrides of its
SmolLM2 run load as a config (a typo would waste the device time), and a run writes one JSON that records a
missing tool or model as a failed or skipped check instead of stopping."""

import json
import shlex
import subprocess
import sys
from pathlib import Path

from rollwise.config import load_config

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "gpu_check.py"


def _dry(*args: str) -> list[dict]:
    p = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", *args], capture_output=True, text=True, check=True)
    return json.loads(p.stdout)


def test_dry_run_lists_every_check():
    steps = _dry()
    assert [s["check"] for s in steps] == ["env", "env", "vllm_tests", "smollm2_rl", "bench_trl", "bench_trl"]
    cmds = {s["name"]: s["cmd"] for s in steps}
    assert "tests/generation/test_vllm_engine.py" in cmds["vllm engine tests"]
    rl = cmds["SmolLM2 RL, vLLM engine, NCCL weight sync"]
    for flag in ("--generation.engine=vllm", "--async.weight_sync=collective", "--run.device=cuda"):
        assert flag in rl
    assert "--run.device=cuda" in cmds["bench_trl, embedded default, CUDA"]
    assert [s["check"] for s in _dry("--only", "vllm_tests")] == ["vllm_tests"]


def test_the_rl_run_overrides_load_as_a_config():
    rl = next(s for s in _dry() if s["check"] == "smollm2_rl")["cmd"]
    args = shlex.split(rl)
    i = args.index("train")
    cfg = load_config(ROOT / args[i + 1], [a for a in args[i + 2 :] if not a.startswith("--model.path")])
    assert cfg.generation.engine.type == "vllm" and cfg.run.mode == "async"
    assert cfg.async_.weight_sync == "collective" and cfg.run.device == "cuda"


def test_a_run_writes_one_json_and_records_failures(tmp_path):
    out = tmp_path / "gpu.json"
    p = subprocess.run([sys.executable, str(SCRIPT), "--only", "env,smollm2_rl", "--model", str(tmp_path / "none"),
                        "--out", str(out)], capture_output=True, text=True, timeout=300)
    got = json.loads(out.read_text())
    status = {s["name"]: s["status"] for s in got["steps"]}
    assert status["SmolLM2 RL, vLLM engine, NCCL weight sync"] == "skipped"
    assert status["torch+vllm"] == "ok" and json.loads(got["steps"][1]["tail"].strip().splitlines()[-1])["torch"]
    assert p.returncode == (0 if got["ok"] else 1) and got["ok"] is False  # a skip is not a pass

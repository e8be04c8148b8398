"""The run directory and its signals cannot be lost or falsified (each test reproduces a case of the
reliability issue): one owner per directory, no silent reuse, resume checks the config, atomic metrics,
torn checkpoints fall back, non-finite steps never reach a checkpoint, degenerate settings fail at load."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rollwise.config import ConfigError, load_config
from rollwise.logging import read_metrics, truncate_metrics
from rollwise.train import checkpoint as ckpt
from rollwise.train.rundir import RunDir, RunDirError
from rollwise.train.trainer import Trainer, TrainingError

ROOT = Path(__file__).resolve().parents[2]


def _run(cfg, **kw) -> Trainer:
    t = Trainer(cfg)
    try:
        t.train(**kw)
    finally:
        t.close()
    return t


def _steps(run_dir: Path) -> list[int]:
    return [r["step"] for r in read_metrics(run_dir)]


# 1. two runs cannot share a run directory
def test_a_second_owner_is_refused_with_the_holders_pid(tmp_path):
    a = RunDir(tmp_path / "r")
    a.acquire()
    with pytest.raises(RunDirError, match=f"in use by pid {os.getpid()}"):
        RunDir(tmp_path / "r").acquire()
    code = ("import sys; from rollwise.train.rundir import RunDir, RunDirError\n"
            f"try: RunDir({str(tmp_path / 'r')!r}).acquire()\nexcept RunDirError as e: print(e); sys.exit(3)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 3 and f"pid {os.getpid()}" in out.stdout  # another process is refused too
    a.release()
    RunDir(tmp_path / "r").acquire()  # free again once released (a killed holder releases it too)


# 2. a rerun without --resume never wipes or prunes a finished run
def test_rerun_into_a_finished_directory_needs_resume_or_overwrite(smoke_cfg):
    cfg = smoke_cfg("--run.name=again", "--trainer.steps=2", "--trainer.checkpoint_every=1")
    first = _run(cfg)
    before = (first.run_dir / "metrics.jsonl").read_text()
    with pytest.raises(RunDirError, match="already holds a run; pass --resume"):
        _run(cfg)
    assert (first.run_dir / "metrics.jsonl").read_text() == before
    t = _run(smoke_cfg("--run.name=again", "--trainer.steps=1"), overwrite=True)
    assert [p.name for p in ckpt.list_checkpoints(t.run_dir)] == ["step_000001"]  # the old run is gone
    assert _steps(t.run_dir) == [0, 1]


def test_pruning_removes_only_this_runs_checkpoints(smoke_cfg):
    cfg = smoke_cfg("--run.name=prune", "--trainer.steps=3", "--trainer.checkpoint_every=1",
                    "--trainer.keep_checkpoints=1")
    run_dir = Path(cfg.run.out_dir) / "prune"
    foreign = run_dir / "checkpoints" / "step_000118"
    foreign.mkdir(parents=True)
    (foreign / ckpt.MARKER).write_text("118 someotherrun")
    t = _run(cfg, resume=True)  # resume=True into a directory with no run of ours: starts fresh
    names = sorted(p.name for p in ckpt.list_checkpoints(t.run_dir))
    assert names == ["step_000003", "step_000118"]  # ours pruned to 1, the foreign one untouched


# 3. resume applies allowed changes, refuses the rest before writing anything
def test_resume_applies_lr_and_refuses_identity_changes(smoke_cfg):
    base = ["--run.name=res", "--trainer.steps=2", "--trainer.checkpoint_every=2"]
    t = _run(smoke_cfg(*base))
    cfg_text = (t.run_dir / "config.toml").read_text()
    for bad in ("--run.seed=7", "--sampler.type=vade", "--model.layers=3"):
        with pytest.raises(RunDirError, match="resume refused"):
            _run(smoke_cfg(*base, "--trainer.steps=3", bad), resume=True)
        assert (t.run_dir / "config.toml").read_text() == cfg_text  # nothing was rewritten
    same = _run(smoke_cfg("--run.name=res", "--trainer.steps=3"), resume=True)
    faster = _run(smoke_cfg("--run.name=res2", "--trainer.steps=2", "--trainer.checkpoint_every=2"))
    faster = _run(smoke_cfg("--run.name=res2", "--trainer.steps=3", "--algo.lr=0.05"), resume=True)
    assert not torch.equal(next(same.model.parameters()), next(faster.model.parameters()))  # the new lr trained
    assert faster.optimizer.param_groups[0]["lr"] == pytest.approx(0.05)
    row = read_metrics(faster.run_dir)[-1]
    assert "algo.lr: 0.001 -> 0.05" in row["run/resume_changes"]
    assert "lr = 0.05" in (faster.run_dir / "config.toml").read_text()


# 4. metrics rewrites are atomic; a torn last line is dropped
def test_metrics_rewrite_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "metrics.jsonl"
    rows = [json.dumps({"step": s}) for s in range(5)]
    path.write_text("\n".join(rows) + "\n" + '{"step": 5, "tor')
    assert [r["step"] for r in read_metrics(tmp_path)] == [0, 1, 2, 3, 4]

    def crash(*a, **k):
        raise KeyboardInterrupt("killed mid-rewrite")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        truncate_metrics(tmp_path, 2)
    assert [r["step"] for r in read_metrics(tmp_path)] == [0, 1, 2, 3, 4]  # the old file, whole
    monkeypatch.undo()
    truncate_metrics(tmp_path, 2)
    assert path.read_text() == "\n".join(rows[:3]) + "\n"


# 5. a non-finite run never writes a poisoned checkpoint, and names the last good one
def test_nonfinite_steps_never_reach_a_checkpoint(smoke_cfg):
    # the full update: with lr 1e30 every later row has advantage 0, and it is those rows' non-finite logprobs
    # (0 x inf) that make the loss non-finite; the zero-advantage skip never computes them (nor needs to)
    cfg = smoke_cfg("--run.name=nan", "--trainer.steps=8", "--trainer.checkpoint_every=1", "--algo.lr=1e30",
                    "--trainer.max_nan_skips=1", "--algo.grad_clip=1e30", "--algo.skip_zero_rows=false")
    t = Trainer(cfg)
    with pytest.raises(TrainingError, match="last good checkpoint is"):
        t.train()
    t.close()
    for c in ckpt.list_checkpoints(t.run_dir):
        w = load_file(str(c / "model.safetensors"))
        assert all(torch.isfinite(v).all() for v in w.values()), c
    steps = _steps(t.run_dir)
    assert len(steps) == len(set(steps))  # skip rows no longer repeat step numbers
    skipped = [r for r in read_metrics(t.run_dir) if r.get("loss/nonfinite_skip")]
    done = {int(c.name[5:]) for c in ckpt.list_checkpoints(t.run_dir)}
    assert not done & {r["step"] for r in skipped}


# 10. a torn newest checkpoint falls back to the previous one
def test_torn_checkpoint_falls_back_with_a_warning(smoke_cfg):
    cfg = smoke_cfg("--run.name=torn", "--trainer.steps=4", "--trainer.checkpoint_every=2")
    full = _run(cfg)
    newest = ckpt.latest_checkpoint(full.run_dir)
    (newest / "model.safetensors").write_bytes(b"\x00" * 17)
    t = Trainer(smoke_cfg("--run.name=torn", "--trainer.steps=4"))
    with pytest.warns(UserWarning, match="unreadable"):
        t.train(resume=True)
    t.close()
    assert _steps(t.run_dir) == [0, 1, 2, 3, 4]  # resumed from step 2, steps 3-4 redone


# 9, 10. degenerate settings and user errors: one line, no traceback
def _cli(capsys, *args: str) -> tuple[int, str]:
    """Run the ``rollwise`` app in-process (its error handling included); return (exit code, stderr)."""
    from rollwise.cli import app

    with pytest.raises(SystemExit) as exit_info:
        app(list(args))
    return int(exit_info.value.code or 0), " ".join(capsys.readouterr().err.split())


@pytest.mark.parametrize(("args", "needle"), [
    (["--sampler.group_size=1"], "no contrast"),
    (["--sampler.rollout_budget=1"], "cannot let preset 'uniform' act"),
    (["--run.out_dir=/proc/rollwise_cannot_write_here"], "cannot use run directory"),
    (["--model.path=/tmp"], "is not a model directory"),
])
def test_user_errors_are_one_line_without_a_traceback(args, needle, tmp_path, capsys):
    code, err = _cli(capsys, "train", str(ROOT / "configs" / "smoke.toml"), f"--run.out_dir={tmp_path}", *args)
    assert code in (1, 2) and needle in err and "Traceback" not in err, err


@pytest.mark.parametrize(("args", "needle"), [
    (["--n", "0"], "--n"),
    (["--data", "nosuch"], "nosuch"),
])
def test_eval_user_errors_are_one_line(args, needle, tmp_path, capsys):
    (tmp_path / "model").mkdir()
    code, err = _cli(capsys, "eval", "--model", str(tmp_path / "model"), *args)
    assert code in (1, 2) and needle in err and "Traceback" not in err, err


def test_a_file_as_out_dir_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    code, err = _cli(capsys, "train", str(ROOT / "configs" / "smoke.toml"), f"--run.out_dir={tmp_path / 'afile'}")
    assert code == 1 and "cannot use run directory" in err and "Traceback" not in err


def test_an_internal_error_keeps_its_traceback_and_asks_for_a_report(monkeypatch, capsys):
    import rollwise.cli as cli

    def boom(*a, **k):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(cli, "describe", boom)
    code, err = _cli(capsys, "config", "show", "--docs")
    assert code == 1 and "Traceback" in err and "ZeroDivisionError" in err and "please report it" in err


def test_config_rejects_degenerate_settings():
    with pytest.raises(ConfigError, match="group_size"):
        load_config(None, ["--sampler.group_size=1"])
    assert load_config(None, ["--sampler.group_size=1", "--sampler.type=reinforce_ada"])  # pool baseline

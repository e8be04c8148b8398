from pathlib import Path

from typer.testing import CliRunner

from rollwise.cli import app

ROOT = Path(__file__).resolve().parents[1]

runner = CliRunner()


def test_config_show_resolves_overrides():
    res = runner.invoke(app, ["config", "show", "--sampler.type=vade", "--trainer.steps=7"])
    assert res.exit_code == 0, res.output
    assert 'type = "vade"' in res.output and "steps = 7" in res.output


def test_config_show_docs_lists_every_option():
    res = runner.invoke(app, ["config", "show", "--docs"])
    assert res.exit_code == 0
    assert "sampler.type" in res.output and "algo.clip_high" in res.output


def test_bad_override_is_an_error_naming_the_key():
    res = runner.invoke(app, ["config", "show", "--algo.clip_hgh=0.3"])
    assert res.exit_code == 2
    assert "algo.clip_hgh" in res.output


def test_samplers_lists_presets_and_components():
    res = runner.invoke(app, ["samplers"], terminal_width=200)
    assert res.exit_code == 0, res.output
    for name in ["uniform", "dapo", "vade", "reinforce_ada", "gdro", "dars", "dots", "xrpo", "mc_grpo", "d3s",
                 "v05", "brorl", "balanced", "gdro_sqrt", "dars_filter"]:
        assert name in res.output, name


def test_report_on_missing_run(tmp_path):
    res = runner.invoke(app, ["report", str(tmp_path)])
    assert res.exit_code == 2


def _walk(cmd, prefix=()):
    """Every command path under a click command (groups included)."""
    out = [prefix]
    for name, sub in getattr(cmd, "commands", {}).items():
        out += _walk(sub, (*prefix, name))
    return out


def test_every_command_help_renders():
    """--help of every command renders (a help text with rich markup-like brackets once crashed `eval --help`)."""
    import typer.main

    paths = _walk(typer.main.get_command(app))
    assert ("eval",) in paths and ("model", "import") in paths
    for path in paths:
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output[-500:])
        assert "Traceback" not in result.output and "Usage" in result.output


def test_user_text_with_brackets_is_printed_verbatim(tmp_path):
    """Errors quote user input (paths, keys); brackets in it are text, not rich markup (which crashed)."""
    result = runner.invoke(app, ["train", str(tmp_path / "does[/level]not.toml")])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "does[/level]not.toml" in result.output.replace("\n", "")
    result = runner.invoke(app, ["eval", "--model", str(tmp_path / "m[/x]")])
    assert result.exit_code == 2 and "m[/x]: no such file or directory" in result.output.replace("\n", "")


def test_logger_and_verifier_names_are_one_line_errors_before_any_model(tmp_path, monkeypatch):
    """Unknown loggers and verifiers (a name, or an import path that does not import) fail at load with one line
    naming the key, exit 2, before any model is built (they were a KeyError after the warm start, an ImportError
    traceback)."""
    import rollwise.train.trainer as trainer_mod

    def no_model(*a, **k):
        raise AssertionError("a model was built")

    monkeypatch.setattr(trainer_mod.Trainer, "__init__", no_model)
    smoke = str(ROOT / "configs" / "smoke.toml")
    for arg, expected in [("--trainer.loggers=['mlflow']", "trainer.loggers: unknown logger 'mlflow'"),
                          ("--task.verifier=no_such_pkg.mod:fn", "task.verifier: cannot import module 'no_such_pkg"),
                          ("--task.verifier=mth", "task.verifier: unknown verifier 'mth'; did you mean 'math'?"),
                          ("--task.verifier=rollwise.rewards.text:nope", "has no attribute 'nope'")]:
        res = runner.invoke(app, ["train", smoke, f"--run.out_dir={tmp_path}", arg])
        assert res.exit_code == 2, (arg, res.output)
        assert expected in res.output and "Traceback" not in res.output, res.output
    from rollwise.config import load_config

    assert load_config(smoke, ["--trainer.loggers=[]"]).trainer.loggers == ["jsonl"]
    assert load_config(smoke, ["--task.verifier=rollwise.rewards.text:verify_exact"]).task.verifier_name() == (
        "rollwise.rewards.text:verify_exact")


def _smoke_train(tmp_path, warm_cache, *extra):
    return ["train", str(ROOT / "configs" / "smoke.toml"), f"--run.out_dir={tmp_path}", "--run.threads=1",
            f"--warmstart.cache_dir={warm_cache}", *extra]


def _sigint_at(monkeypatch, step_index: int, times: int = 1) -> None:
    """A real SIGINT to this process (``times`` of them) as step ``step_index`` (0-based) starts."""
    import os
    import signal

    from rollwise.train.trainer import Trainer

    step = Trainer.train_step

    def train_step(self, i):
        if i == step_index:
            for _ in range(times):
                os.kill(os.getpid(), signal.SIGINT)
        return step(self, i)

    monkeypatch.setattr(Trainer, "train_step", train_step)


def test_ctrl_c_checkpoints_the_last_finished_step_and_exits_130(tmp_path, warm_cache, monkeypatch):
    """Ctrl-C during step 1 lets it finish, checkpoints it (checkpoint_every is 2: no checkpoint was due) and
    exits 130 with one line and no traceback; --resume continues from it to the end."""
    import json

    _sigint_at(monkeypatch, 0)
    res = runner.invoke(app, _smoke_train(tmp_path, warm_cache))
    assert res.exit_code == 130, res.output
    run = tmp_path / "smoke"
    ckpt = run / "checkpoints" / "step_000001"
    assert f"interrupted after step 1: checkpoint {ckpt} (continue with --resume)" in res.output.replace("\n", "")
    assert "Traceback" not in res.output and ckpt.is_dir()
    assert [json.loads(r)["step"] for r in (run / "metrics.jsonl").read_text().splitlines()] == [0, 1]
    monkeypatch.undo()
    res = runner.invoke(app, _smoke_train(tmp_path, warm_cache, "--resume"))
    assert res.exit_code == 0, res.output
    assert [json.loads(r)["step"] for r in (run / "metrics.jsonl").read_text().splitlines()] == [0, 1, 2, 3, 4]


def test_second_ctrl_c_stops_at_once_and_says_what_is_on_disk(tmp_path, warm_cache, monkeypatch):
    _sigint_at(monkeypatch, 2, times=2)  # during step 3: step 2's checkpoint is the last one
    res = runner.invoke(app, _smoke_train(tmp_path, warm_cache))
    assert res.exit_code == 130, res.output
    last = tmp_path / "smoke" / "checkpoints" / "step_000002"
    assert (f"interrupted during step 3: not checkpointed; the last checkpoint is {last}"
            in res.output.replace("\n", "")), res.output
    assert "Traceback" not in res.output
    assert not (tmp_path / "smoke" / "checkpoints" / "step_000003").exists()


def test_ctrl_c_before_training_is_one_line(tmp_path, warm_cache, monkeypatch):
    from rollwise.train import setup

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(setup, "build_task", interrupted)  # e.g. pressed during the warm start
    res = runner.invoke(app, _smoke_train(tmp_path, warm_cache))
    assert res.exit_code == 130 and "interrupted before training started: no checkpoint written" in res.output
    assert "Traceback" not in res.output


def test_sigint_to_a_training_process_exits_130_with_a_checkpoint(tmp_path, warm_cache):
    """The real thing: `rollwise train configs/smoke.toml` in a subprocess, SIGINT once it logged a step."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    args = _smoke_train(tmp_path, warm_cache, "--trainer.steps=1000", "--trainer.eval_every=0",
                        "--trainer.checkpoint_every=0")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    proc = subprocess.Popen([sys.executable, "-m", "rollwise.cli", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "smoke" / "metrics.jsonl"
    try:
        deadline = time.monotonic() + 300  # a bound on waiting, not a timing assertion
        while proc.poll() is None and time.monotonic() < deadline:
            if metrics.is_file() and any(json.loads(r)["step"] >= 1 for r in metrics.read_text().splitlines()
                                         if r.strip()):
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    last = json.loads(metrics.read_text().splitlines()[-1])["step"]
    ckpt = tmp_path / "smoke" / "checkpoints" / f"step_{last:06d}"
    assert ckpt.is_dir() and "Traceback" not in err, err
    assert f"interrupted after step {last}: checkpoint {ckpt}" in err.replace("\n", ""), err

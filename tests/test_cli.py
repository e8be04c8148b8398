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

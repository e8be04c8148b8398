"""``rollwise envs`` lists every registered environment with each of its knobs and their defaults."""

from __future__ import annotations

from typer.testing import CliRunner

from rollwise.cli import app
from rollwise.envs import ENVIRONMENTS


def test_envs_lists_environments_and_knobs():
    res = CliRunner().invoke(app, ["envs"], env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    for name in ENVIRONMENTS.names():
        assert name in res.output
        for knob in ENVIRONMENTS.config(name).model_fields:
            assert knob in res.output
    assert "guess-the-number" in res.output and "[env]" in res.output and "allowed [low, high]" in res.output


def test_config_docs_list_every_environment_knob():
    res = CliRunner().invoke(app, ["config", "show", "--docs"], env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    for name in ENVIRONMENTS.names():
        for knob in ENVIRONMENTS.config(name).model_fields:
            assert f"env[{name}].{knob}" in res.output

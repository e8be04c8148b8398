"""``rollwise eval`` on an ``[env]`` config: the environment's held-out tasks played through the run's episode
collector, reporting success, turns and tokens per episode (JSON with ``--out``), with the config's own policy
when no ``--model`` is given; single-turn options that mean nothing for an environment are refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rollwise.cli import app
from rollwise.train.model import build_char_tokenizer, build_tiny_model

ROOT = Path(__file__).resolve().parents[2]
GUESS = str(ROOT / "configs" / "guess.toml")
runner = CliRunner()
FAST = ["--run.threads=1", "--model.layers=1", "--model.hidden=32", "--model.heads=2", "--model.kv_heads=1",
        "--model.intermediate=64"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt")
    tok = build_char_tokenizer()
    build_tiny_model(tok, layers=1, hidden=32, heads=2, kv_heads=1, intermediate=64).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_eval_on_an_env_config_reports_success_turns_and_tokens(checkpoint, tmp_path):
    """The scripted engine always guesses 7 on guess 1-7: the secret 7 is solved on turn 1 ("guess 1-7\\n" is 10
    characters, + "7" + eos = 12 tokens), the 6 others run out of 5 turns (10 + 5 x len("7 down\\n") = 45 tokens
    of context): success 1/7, turns (1 + 6 x 5) / 7, tokens (12 + 6 x 45) / 7, each held-out secret played n=2
    times."""
    out = tmp_path / "eval.json"
    res = runner.invoke(app, ["eval", "--model", str(checkpoint), "--config", GUESS, "--n", "2", "--out", str(out),
                              "--env.n=7", "--generation.engine=scripted", *FAST], terminal_width=200)
    assert res.exit_code == 0, res.output
    r = json.loads(out.read_text())
    assert (r["env"], r["n"], r["eval/guess/episodes"]) == ("guess", 2, 14)
    assert r["eval/guess/success"] == pytest.approx(1 / 7) == r["eval/guess/pass@1"] == r["eval/mean/success"]
    assert r["eval/guess/turns_mean"] == pytest.approx(31 / 7)
    assert (r["eval/guess/solve_turns"], r["eval/guess/finish_max_turns"]) == (1.0, pytest.approx(6 / 7))
    assert r["eval/guess/tokens_mean"] == pytest.approx(282 / 7)
    assert r["eval/guess/return_mean"] == pytest.approx(1 / 7)  # a solve on turn 1 scores 0.9 ** 0
    assert sum(v for k, v in r.items() if "/faults_" in k) == 0
    for key in ("eval/guess/success", "eval/guess/turns_mean", "eval/guess/tokens_mean"):
        assert key in res.output  # the printed table


def test_eval_without_model_uses_the_configs_policy(tmp_path):
    out = tmp_path / "eval.json"
    res = runner.invoke(app, ["eval", "--config", GUESS, "--out", str(out), "--env.n=3", "--warmstart.enabled=false",
                              "--generation.engine=scripted", "--generation.engine.default=\"2\"", *FAST],
                        terminal_width=200)
    assert res.exit_code == 0, res.output
    r = json.loads(out.read_text())
    assert r["model"] == "config" and r["eval/guess/episodes"] == 3
    assert r["eval/guess/success"] == pytest.approx(1 / 3) and r["eval/guess/turns_mean"] == pytest.approx(11 / 3)


@pytest.mark.parametrize("args,message", [
    (["--config", GUESS, "--data", "words"], "drop --data"),
    (["--config", GUESS, "--allocator", "pets", "--n", "4"], "drop --data, --allocator"),
    (["--data", "arith"], "--model: required"),
])
def test_eval_refuses_what_an_env_config_cannot_use(tmp_path, args, message):
    res = runner.invoke(app, ["eval", *args], terminal_width=200)
    assert res.exit_code == 2
    assert message in res.output + (str(res.exception) if res.exception else "")

"""`rollwise eval` end to end on a saved tiny random-init Qwen2: the JSON report's metrics and per-set rows,
and a clear error for a missing checkpoint."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from rollwise.cli import app
from rollwise.train.model import build_char_tokenizer, build_tiny_model

runner = CliRunner()
ROWS = [("1+2=", 3, 1), ("3+4=", 7, 1), ("5+6=", 11, 1), ("12+30=", 42, 2), ("40+41=", 81, 2), ("7+70=", 77, 2)]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt")
    tok = build_char_tokenizer()
    build_tiny_model(tok, layers=1, hidden=32, heads=2, kv_heads=1, intermediate=64).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def check_report(report: dict, sets: list[str], n: int) -> None:
    for name in sets:
        for metric in ("pass@1", f"pass@{n}", f"maj@{n}"):
            v = report[f"eval/{name}/{metric}"]
            assert isinstance(v, float) and 0.0 <= v <= 1.0, (name, metric, v)
        assert report[f"eval/{name}/pass@1"] <= report[f"eval/{name}/pass@{n}"]
    assert 0.0 <= report["eval/mean/pass@1"] <= 1.0


def test_eval_jsonl_writes_metrics(checkpoint, tmp_path):
    data = tmp_path / "toy.jsonl"  # the loader's default field names: prompt, answer
    data.write_text("".join(json.dumps({"prompt": p, "answer": a, "level": lv}) + "\n" for p, a, lv in ROWS))
    out = tmp_path / "res" / "eval.json"
    res = runner.invoke(app, ["eval", "--model", str(checkpoint), "--data", str(data), "--n", "4",
                              "--out", str(out), "--run.threads=1"], terminal_width=200)
    assert res.exit_code == 0, res.output
    report = json.loads(out.read_text())
    assert report["n"] == 4 and report["data"] == str(data) and report["verifier"] == "math"
    # a plain path keeps a "level" column: one set for all rows plus one per level
    sets = sorted({k.split("/")[1] for k in report if k.startswith("eval/") and k.split("/")[1] != "mean"})
    assert sets == ["all", "level1", "level2"], sets
    check_report(report, sets, 4)
    assert "eval/all/pass@2" in report
    assert "eval/all/maj@4" in res.output  # the printed table


def test_eval_arith_reports_per_level(checkpoint, tmp_path):
    out = tmp_path / "eval.json"
    res = runner.invoke(app, ["eval", "--model", str(checkpoint), "--n", "4", "--out", str(out),
                              "--task.eval_size=2", "--task.train_size=8", "--run.threads=1"], terminal_width=200)
    assert res.exit_code == 0, res.output
    report = json.loads(out.read_text())
    levels = sorted({k.split("/")[1] for k in report if k.startswith("eval/") and k.split("/")[1] != "mean"})
    assert len(levels) > 1
    check_report(report, levels, 4)
    for name in levels:
        assert f"eval/{name}/pass@1" in res.output


def test_eval_missing_model_fails_naming_the_path(tmp_path):
    missing = tmp_path / "no_such_checkpoint"
    res = runner.invoke(app, ["eval", "--model", str(missing), "--data", "arith"])
    assert res.exit_code != 0
    message = res.output + (str(res.exception) if res.exception else "")
    assert str(missing) in message


def test_eval_truncated_weights_is_one_line(checkpoint, tmp_path, capsys):
    """A checkpoint whose model.safetensors was cut short (an interrupted copy) is a one-line error naming the
    directory and the file, exit 1, not a SafetensorError traceback."""
    import shutil

    from rollwise.train.model import ModelLoadError, load_model

    cut = tmp_path / "cut"
    shutil.copytree(checkpoint, cut)
    weights = cut / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(ModelLoadError, match=r"cut: its weights \(model.safetensors\) do not load \(a truncated"):
        load_model(cut)
    with pytest.raises(SystemExit) as exit_info:  # the app itself, its user-error handling included
        app(["eval", "--model", str(cut), "--data", "arith", "--task.eval_size=2", "--task.train_size=8",
             "--run.threads=1"])
    err = " ".join(capsys.readouterr().err.split())
    assert exit_info.value.code == 1 and "do not load" in err and "Traceback" not in err, err


def test_nan_and_infinity_references_are_bad_rows(checkpoint, tmp_path, capsys):
    """JSON's NaN / Infinity (and "nan" written as text) are no answer a completion can match: a bad row, named
    by file:line, or with task.on_error = skip counted as malformed like other bad rows; a long integer that a
    float would overflow stays a fine reference."""
    from rollwise.data.loaders import DatasetError, load_examples

    data = tmp_path / "refs.jsonl"
    data.write_text('{"prompt": "1+2=", "answer": 3}\n{"prompt": "a=", "answer": NaN}\n'
                    '{"prompt": "b=", "answer": Infinity}\n{"prompt": "c=", "answer": -Infinity}\n'
                    '{"prompt": "d=", "answer": "NaN"}\n{"prompt": "e=", "answer": "' + "9" * 400 + '"}\n')
    with pytest.raises(DatasetError, match=r"refs.jsonl: line 2: answer 'nan' in field 'answer' is not a finite"):
        load_examples(data)
    rows = load_examples(data, on_error="skip")
    assert [p.reference for p in rows] == ["3", "9" * 400] and rows.skipped_by["malformed"] == 4
    with pytest.raises(SystemExit) as exit_info:  # rollwise eval: one line, before the model is loaded
        app(["eval", "--model", str(checkpoint), "--data", str(data), "--run.threads=1"])
    err = " ".join(capsys.readouterr().err.split())
    assert exit_info.value.code == 1 and "line 2: answer 'nan'" in err and "Traceback" not in err, err
    out = tmp_path / "eval.json"
    res = runner.invoke(app, ["eval", "--model", str(checkpoint), "--data", str(data), "--out", str(out),
                              "--task.on_error=skip", "--run.threads=1"])
    assert res.exit_code == 0, res.output
    report = json.loads(out.read_text())
    assert report["data/skipped_malformed"] == 4, {k: v for k, v in report.items() if k.startswith("data/")}

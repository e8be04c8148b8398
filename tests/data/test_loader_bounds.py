"""Bad data at load: length bounds, undecodable bytes and missing files are one-line DatasetErrors naming
file:line (or source and row), or with on_error="skip" counted skips by reason that reach the task."""

from __future__ import annotations

import json
import re
import sys
import types

import pytest

from rollwise.data.loaders import (
    DEFAULT_MAX_PROMPT_CHARS,
    DEFAULT_MAX_REFERENCE_CHARS,
    DatasetError,
    load_examples,
    load_preset,
)

MB = 1 << 20
GOOD = [{"prompt": "1+1=", "answer": "2"}, {"prompt": "2+2=", "answer": "4"}, {"prompt": "3+3=", "answer": "6"}]


def _write_lines(path, lines: list[bytes]):
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def _row(prompt: str, answer: str) -> bytes:
    return json.dumps({"prompt": prompt, "answer": answer}).encode()


def _good(i: int) -> bytes:
    return json.dumps(GOOD[i]).encode()


def test_defaults_match_config():
    from rollwise.config import TaskConfig

    fields = TaskConfig.model_fields
    assert DEFAULT_MAX_PROMPT_CHARS == fields["max_prompt_chars"].default
    assert DEFAULT_MAX_REFERENCE_CHARS == fields["max_reference_chars"].default


def test_megabyte_prompt_rejected_with_file_line_and_limit(tmp_path):
    path = _write_lines(tmp_path / "big.jsonl", [_good(0), _row("x" * MB, "1"), _good(1)])
    with pytest.raises(DatasetError) as info:
        load_examples(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: line 2: prompt")
    assert f"{MB} chars" in msg and "task.max_prompt_chars=8192" in msg
    assert "\n" not in msg and len(msg) < 400  # one line, the prompt itself not quoted
    assert isinstance(info.value, ValueError)


def test_megabyte_prompt_skipped_and_counted(tmp_path, caplog):
    path = _write_lines(tmp_path / "big.jsonl", [_good(0), _row("x" * MB, "1"), _good(1)])
    examples = load_examples(path, on_error="skip")
    assert [e.text for e in examples] == ["1+1=", "2+2="]
    assert [e.uid for e in examples] == ["big-00000", "big-00002"]  # the skipped row keeps its index
    assert examples.skipped_by == {"malformed": 0, "too_long": 1, "decode": 0}
    assert examples.skipped == 1
    assert "big.jsonl: line 2" in caplog.text


def test_prompt_bound_is_a_keyword_and_inclusive(tmp_path):
    path = _write_lines(tmp_path / "p.jsonl", [_row("x" * 10, "1"), _row("y" * 11, "2")])
    with pytest.raises(DatasetError, match=r"p\.jsonl: line 2: .*11 chars.*max_prompt_chars=10"):
        load_examples(path, max_prompt_chars=10)
    assert [e.reference for e in load_examples(path, max_prompt_chars=10, on_error="skip")] == ["1"]


def test_reference_over_bound(tmp_path):
    path = _write_lines(tmp_path / "ref.jsonl", [_good(0), _good(1), _row("q", "9" * 5000)])
    with pytest.raises(DatasetError, match=r"ref\.jsonl: line 3: reference .*5000 chars.*max_reference_chars=4096"):
        load_examples(path)
    examples = load_examples(path, on_error="skip")
    assert len(examples) == 2 and examples.skipped_by["too_long"] == 1
    small = load_examples(path, max_reference_chars=5000)
    assert len(small) == 3 and small.skipped == 0


def test_reference_bound_applies_to_the_extracted_answer(tmp_path):
    # a long worked solution is fine; the bound is on the answer the verifier compares with
    solution = "step " * 2000 + "#### 42"
    path = _write_lines(tmp_path / "gsm.jsonl", [_row("q", solution)])
    assert load_examples(path, answer_extractor="gsm8k")[0].reference == "42"


def test_invalid_utf8_on_line_3_names_file_and_line(tmp_path):
    bad = b'{"prompt": "caf\xe9", "answer": "1"}'  # latin-1 e-acute, not UTF-8
    path = _write_lines(tmp_path / "bytes.jsonl", [_good(0), _good(1), bad, _good(2)])
    with pytest.raises(DatasetError, match=r"bytes\.jsonl: line 3: not valid UTF-8 \(byte 0xe9 at column 16\)"):
        load_examples(path)


def test_invalid_utf8_skipped_and_counted(tmp_path):
    path = _write_lines(tmp_path / "bytes.jsonl", [_good(0), _good(1), b'{"prompt": "\xff", "answer": "1"}', _good(2)])
    examples = load_examples(path, on_error="skip")
    assert [e.text for e in examples] == ["1+1=", "2+2=", "3+3="]
    assert examples.skipped_by == {"malformed": 0, "too_long": 0, "decode": 1}


def test_non_ascii_and_byte_order_mark_still_load(tmp_path):
    path = tmp_path / "utf8.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + _row("caf\u00e9 \u2211", "\u03c0") + b"\r\n" + _good(1) + b"\n")
    assert [(e.text, e.reference) for e in load_examples(path)] == [("caf\u00e9 \u2211", "\u03c0"), ("2+2=", "4")]


def test_skip_counts_by_reason(tmp_path):
    lines = [_good(0), b"{oops", _row("x" * 100, "1"), b"\x80\x81", _row("q", "y" * 100), _good(1), b"[1]"]
    path = _write_lines(tmp_path / "mixed.jsonl", lines)
    examples = load_examples(path, on_error="skip", max_prompt_chars=50, max_reference_chars=50)
    assert [e.text for e in examples] == ["1+1=", "2+2="]
    assert examples.skipped_by == {"malformed": 2, "too_long": 2, "decode": 1}
    assert examples.skipped == 5


def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / "nope.jsonl"
    with pytest.raises(DatasetError, match=rf"{re.escape(str(path))}: no such file") as info:
        load_examples(path)
    assert isinstance(info.value, FileNotFoundError)  # callers catching the builtin still do
    folder = tmp_path / "folder.jsonl"
    folder.mkdir()
    with pytest.raises(DatasetError, match="is a folder, not a file"):
        load_examples(folder)


def test_unknown_name_without_datasets_is_not_an_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # as if `datasets` were not installed
    with pytest.raises(DatasetError, match="unknown dataset 'nosuch': not a preset .*gsm8k:test") as info:
        load_preset("nosuch")
    assert isinstance(info.value, KeyError)
    assert str(info.value).startswith("unknown dataset")  # plain message, not KeyError's quoted repr
    with pytest.raises(DatasetError, match="nosuch-org/x: no such file or folder.*'datasets' package"):
        load_examples("nosuch-org/x", fmt="hf")


def test_extractor_failure_is_a_one_line_row_error(tmp_path):
    path = _write_lines(tmp_path / "e.jsonl", [_good(0), _row("q", "1")])

    def fussy(value):
        if value == "1":
            raise ValueError("first line\nsecond line")
        return value

    with pytest.raises(DatasetError, match=r"e\.jsonl: line 2: first line second line$"):
        load_examples(path, answer_extractor=fussy)
    with pytest.raises(DatasetError, match=r"line 1: answer extractor failed: TypeError"):
        load_examples(path, answer_extractor=lambda v: v + 1)


def test_load_preset_passes_the_bounds(tmp_path, monkeypatch):
    (tmp_path / "gsm8k").mkdir()
    rows = [{"question": "q" * 30, "answer": "#### 1"}, {"question": "q", "answer": "#### 2"}]
    (tmp_path / "gsm8k" / "test.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    monkeypatch.setenv("ROLLWISE_DATA_DIR", str(tmp_path))
    with pytest.raises(DatasetError, match=r"test\.jsonl: line 1: prompt .*max_prompt_chars=20"):
        load_preset("gsm8k:test", max_prompt_chars=20)
    examples = load_preset("gsm8k:test", max_prompt_chars=20, on_error="skip")
    assert [e.uid for e in examples] == ["gsm8k-test-00001"] and examples.skipped_by["too_long"] == 1


def test_hf_rows_name_source_and_row(tmp_path, monkeypatch):
    class DatasetDict(dict):
        pass

    rows = [{"prompt": "ok", "answer": "1"}, {"prompt": "x" * 40, "answer": "2"}]
    fake = types.SimpleNamespace(DatasetDict=DatasetDict, load_from_disk=lambda source: DatasetDict(train=rows))
    monkeypatch.setitem(sys.modules, "datasets", fake)  # no `datasets` needed: only the loader's own logic
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "dataset_dict.json").write_text("{}")
    with pytest.raises(DatasetError, match=rf"{re.escape(str(folder))}: row 2: prompt .*40 chars.*max_prompt_chars=30"):
        load_examples(folder, max_prompt_chars=30)
    assert load_examples(folder, max_prompt_chars=30, on_error="skip").skipped_by["too_long"] == 1


def _dataset_cfg(path, *overrides):
    from rollwise.config import load_config

    return load_config(None, ["--task.suite=dataset", f"--task.dataset={path}", *overrides])


def test_build_dataset_task_uses_config_bounds_and_reports_skips(tmp_path):
    from rollwise.data.sources import skip_metrics
    from rollwise.data.task import build_dataset_task

    train = _write_lines(tmp_path / "train.jsonl", [_good(0), _row("x" * 30, "1"), b"\xff", _good(1), b"{bad"])
    held = _write_lines(tmp_path / "held.jsonl", [_good(2), _row("q", "7" * 30)])
    cfg = _dataset_cfg(train, f"--task.eval_dataset={held}", "--task.on_error=skip",
                       "--task.max_prompt_chars=20", "--task.max_reference_chars=20")
    task = build_dataset_task(cfg)
    assert [p.text for p in task.pool] == ["1+1=", "2+2="]
    assert [p.text for ps in task.eval_sets.values() for p in ps] == ["3+3="]
    assert task.skipped == {"malformed": 1, "too_long": 2, "decode": 1}  # train and eval together
    assert skip_metrics(task) == {"data/skipped_malformed": 1, "data/skipped_too_long": 2, "data/skipped_decode": 1}
    assert skip_metrics(object()) == {"data/skipped_malformed": 0, "data/skipped_too_long": 0,
                                      "data/skipped_decode": 0}
    with pytest.raises(DatasetError, match=r"train\.jsonl: line 2: prompt .*max_prompt_chars=20"):
        build_dataset_task(_dataset_cfg(train, "--task.max_prompt_chars=20"))


def test_build_dataset_task_with_no_usable_rows_says_why(tmp_path):
    from rollwise.data.task import build_dataset_task

    train = _write_lines(tmp_path / "train.jsonl", [b"\xff", b"{bad"])
    with pytest.raises(DatasetError, match=r"no usable rows \(skipped: .*'malformed': 1.*'decode': 1"):
        build_dataset_task(_dataset_cfg(train, "--task.on_error=skip"))

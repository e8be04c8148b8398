"""Dataset loaders: field mapping, answer extraction, stable ids, malformed rows, formats and presets."""

from __future__ import annotations

import json
import logging

import pytest

from rollwise.data.loaders import PRESETS, data_dir, load_examples, load_preset, render_answer
from rollwise.types import Prompt

ROWS = [  # shaped like ../shared/data/gsm8k/test.jsonl (first rows, solutions shortened)
    {"question": "Janet's ducks lay 16 eggs per day...", "answer": "16 - 3 - 4 = <<16-3-4=9>>9\n#### 18"},
    {"question": "A robe takes 2 bolts of blue fiber...", "answer": "2/2=<<2/2=1>>1\n#### 3"},
    {"question": "Josh decides to try flipping a house...", "answer": "profit\n#### 70,000"},
]


def _write_jsonl(path, rows, extra_lines=()):
    lines = [json.dumps(r) for r in rows] + list(extra_lines)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _gsm8k_kwargs():
    return dict(
        prompt_field="question", answer_field="answer", answer_extractor="gsm8k", meta_fields=("answer",)
    )


def test_jsonl_field_mapping_and_ids(tmp_path):
    path = _write_jsonl(tmp_path / "mini.jsonl", ROWS)
    examples = load_examples(path, id_prefix="gsm8k-test", **_gsm8k_kwargs())
    assert [e.uid for e in examples] == ["gsm8k-test-00000", "gsm8k-test-00001", "gsm8k-test-00002"]
    assert [e.reference for e in examples] == ["18", "3", "70000"]  # thousands separator dropped
    assert examples[0] == Prompt(
        "gsm8k-test-00000", ROWS[0]["question"], "18", {"answer": ROWS[0]["answer"]}
    )
    assert examples.skipped == 0


def test_default_id_prefix_is_file_stem(tmp_path):
    path = _write_jsonl(tmp_path / "mini.jsonl", ROWS)
    assert load_examples(path, **_gsm8k_kwargs())[1].uid == "mini-00001"


def test_id_field(tmp_path):
    rows = [{"id": 60, "problem": "p", "answer": 27.0}, {"id": 61, "problem": "q", "answer": 2.5}]
    path = _write_jsonl(tmp_path / "amc.jsonl", rows)
    examples = load_examples(path, prompt_field="problem", id_field="id", id_prefix="amc23")
    assert [(e.uid, e.reference) for e in examples] == [("amc23-60", "27"), ("amc23-61", "2.5")]
    assert [e.uid for e in load_examples(path, prompt_field="problem", id_field="id")] == ["60", "61"]


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ("{not json", "invalid JSON"),
        (json.dumps({"question": "q"}), "missing field 'answer'"),
        (json.dumps({"question": "q", "answer": "no hashes"}), "no '####' answer line"),
        (json.dumps(["a", "list"]), "not a JSON object"),
        (json.dumps({"question": "", "answer": "#### 1"}), "non-empty string"),
    ],
)
def test_malformed_row_names_file_and_line(tmp_path, bad_line, message):
    path = _write_jsonl(tmp_path / "bad.jsonl", ROWS[:1], extra_lines=["", bad_line, json.dumps(ROWS[1])])
    with pytest.raises(ValueError, match=rf"bad\.jsonl: line 3: .*{message}"):
        load_examples(path, **_gsm8k_kwargs())


def test_malformed_rows_skipped_and_counted(tmp_path, caplog):
    path = _write_jsonl(tmp_path / "bad.jsonl", ROWS[:1], extra_lines=["{oops", json.dumps(ROWS[1])])
    with caplog.at_level(logging.WARNING, logger="rollwise.data.loaders"):
        examples = load_examples(path, on_error="skip", **_gsm8k_kwargs())
    assert examples.skipped == 1 and len(examples) == 2
    assert examples[1].uid == "bad-00002"  # ids count the skipped row, so they stay stable
    assert "bad.jsonl: line 2" in caplog.text


def test_duplicate_ids_are_malformed(tmp_path):
    rows = [{"id": 1, "prompt": "a", "answer": "1"}, {"id": 1, "prompt": "b", "answer": "2"}]
    with pytest.raises(ValueError, match="line 2: duplicate id '1'"):
        load_examples(_write_jsonl(tmp_path / "dup.jsonl", rows), id_field="id")


def test_limit_and_custom_extractor(tmp_path):
    path = _write_jsonl(tmp_path / "mini.jsonl", ROWS)
    examples = load_examples(path, prompt_field="question", answer_extractor=lambda a: a[-2:], limit=2)
    assert [e.reference for e in examples] == ["18", " 3"]


def test_boxed_extractor(tmp_path):
    rows = [{"problem": "p", "solution": "so $\\boxed{\\frac{1}{2}}$."}]
    path = _write_jsonl(tmp_path / "m.jsonl", rows)
    examples = load_examples(path, prompt_field="problem", answer_field="solution", answer_extractor="boxed")
    assert examples[0].reference == "\\frac{1}{2}"


@pytest.mark.parametrize(
    ("value", "text"), [(27.0, "27"), (-1.0, "-1"), (2.5, "2.5"), (7, "7"), (" 5 ", "5")]
)
def test_render_answer(value, text):
    assert render_answer(value) == text


def test_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "mini.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), path)
    examples = load_examples(path, **_gsm8k_kwargs())
    assert [e.reference for e in examples] == ["18", "3", "70000"]


def test_parquet_missing_field_names_row(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "mini.parquet"
    pq.write_table(pa.Table.from_pylist([{"question": "q", "other": "x"}]), path)
    with pytest.raises(ValueError, match=r"mini\.parquet: row 1: missing field 'answer'"):
        load_examples(path, **_gsm8k_kwargs())


def test_hf_dataset_saved_to_disk(tmp_path):
    datasets = pytest.importorskip("datasets")
    folder = tmp_path / "hf"
    datasets.DatasetDict({"test": datasets.Dataset.from_list(ROWS)}).save_to_disk(str(folder))
    examples = load_examples(folder, split="test", id_prefix="gsm8k-test", **_gsm8k_kwargs())
    assert [e.uid for e in examples][-1] == "gsm8k-test-00002" and examples[2].reference == "70000"
    with pytest.raises(ValueError, match="no split 'train'"):
        load_examples(folder, split="train", **_gsm8k_kwargs())


def test_env_var_overrides_data_dir(tmp_path, monkeypatch):
    (tmp_path / "gsm8k").mkdir()
    _write_jsonl(tmp_path / "gsm8k" / "test.jsonl", ROWS)
    monkeypatch.setenv("ROLLWISE_DATA_DIR", str(tmp_path))
    assert data_dir() == tmp_path
    examples = load_preset("gsm8k:test")
    assert [e.uid for e in examples] == ["gsm8k-test-00000", "gsm8k-test-00001", "gsm8k-test-00002"]


def test_unknown_preset_lists_options():
    with pytest.raises(KeyError, match="gsm8k:test"):
        load_preset("gsm8k:validation")


def test_missing_preset_file_mentions_env_var(tmp_path, monkeypatch):
    """No local file and no ``datasets`` package (hidden here, so the test never reaches for the hub): the
    error names the environment variable to set."""
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "datasets" else find_spec(name, *a))
    monkeypatch.setenv("ROLLWISE_DATA_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="ROLLWISE_DATA_DIR"):
        load_preset("math500:test")


@pytest.mark.skipif(not (data_dir() / "gsm8k").exists(), reason="shared benchmark data absent")
@pytest.mark.parametrize(
    ("name", "count", "first_uid", "first_reference"),
    [
        ("gsm8k:train", 7473, "gsm8k-train-00000", "72"),
        ("gsm8k:test", 1319, "gsm8k-test-00000", "18"),
        ("math500:test", 500, "test/precalculus/807.json", "\\left( 3, \\frac{\\pi}{2} \\right)"),
        ("aime24:test", 30, "aime24-60", "204"),
        ("amc23:test", 40, "amc23-0", "27"),
    ],
)
def test_presets_on_shared_data(name, count, first_uid, first_reference):
    examples = load_preset(name)
    assert (len(examples), examples.skipped) == (count, 0)
    assert (examples[0].uid, examples[0].reference) == (first_uid, first_reference)
    assert len({e.uid for e in examples}) == count
    if name.startswith("gsm8k"):
        assert all("," not in e.reference for e in examples)
    if name == "amc23:test":
        assert all(not e.reference.endswith(".0") for e in examples)


def test_every_preset_is_tested():
    assert set(PRESETS) == {"gsm8k:train", "gsm8k:test", "math500:test", "aime24:test", "amc23:test"}


def test_unreachable_hub_is_a_clear_error(monkeypatch):
    datasets = pytest.importorskip("datasets")

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(ConnectionError, match="HF hub"):
        load_examples("some-org/some-dataset", fmt="hf")

"""Dataset presets load anywhere: the local file (ROLLWISE_DATA_DIR), else the same rows from the HF hub
through ``datasets``; with neither, a one-line error that says which of the two to provide."""

from __future__ import annotations

import importlib.machinery
import sys
import types

import pytest

from rollwise.data.loaders import DatasetNotFoundError, load_preset


def _fake_datasets(calls: list, rows: list[dict]) -> types.ModuleType:
    mod = types.ModuleType("datasets")
    mod.__spec__ = importlib.machinery.ModuleSpec("datasets", None)

    class DatasetDict(dict):
        pass

    def load_dataset(source, config=None, split=None):
        calls.append((source, config, split))
        return rows

    mod.DatasetDict, mod.load_dataset = DatasetDict, load_dataset
    return mod


def test_a_preset_without_a_local_file_comes_from_the_hub(tmp_path, monkeypatch):
    monkeypatch.setenv("ROLLWISE_DATA_DIR", str(tmp_path))  # empty: no local gsm8k
    calls: list = []
    rows = [{"question": "2+3?", "answer": "2+3=5\n#### 5"}, {"question": "1+1?", "answer": "#### 2"}]
    monkeypatch.setitem(sys.modules, "datasets", _fake_datasets(calls, rows))
    examples = load_preset("gsm8k:test")
    assert calls == [("openai/gsm8k", "main", "test")]
    assert [(e.text, e.reference) for e in examples] == [("2+3?", "5"), ("1+1?", "2")]


def test_neither_source_is_one_line_naming_both(tmp_path, monkeypatch):
    monkeypatch.setenv("ROLLWISE_DATA_DIR", str(tmp_path))
    monkeypatch.setitem(sys.modules, "datasets", None)  # as if `datasets` were not installed
    with pytest.raises(DatasetNotFoundError, match="set ROLLWISE_DATA_DIR .*'openai/gsm8k'") as err:
        load_preset("gsm8k:train")
    assert "\n" not in str(err.value)
    with pytest.raises(DatasetNotFoundError, match="aime24/test.jsonl") as err:  # no hub copy registered
        load_preset("aime24:test")
    assert "hub" not in str(err.value)

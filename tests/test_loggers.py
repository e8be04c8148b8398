"""The metric sinks: jsonl round-trips rows (non-finite floats as null), TensorBoard gets the numeric scalars at
their step, W&B (offline) records a run with the scalars; ``trace/`` keys (lists for plots) stay in jsonl."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest

from rollwise.logging import LOGGERS, build_logger, read_metrics

ROWS = [
    {"step": 1, "loss/pg": 0.5, "sampler/groups_trained": 3, "trace/alloc": [[0.5, 8]], "run/name": "tiny"},
    {"step": 2, "loss/pg": 0.25, "sampler/groups_trained": 4, "eval/acc": math.nan},
]


def test_jsonl_round_trips_rows(tmp_path):
    log = build_logger(["jsonl"], tmp_path)
    for row in ROWS:
        log.log(row)
    log.close()
    back = read_metrics(tmp_path)
    assert back[0] == ROWS[0]
    assert back[1] == ROWS[1] | {"eval/acc": None}


def test_tensorboard_sink_writes_numeric_scalars_at_their_step(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    log = LOGGERS.get("tensorboard")(tmp_path)
    for row in ROWS:
        log.log(row)
    log.close()
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"loss/pg", "sampler/groups_trained", "step"} <= tags
    assert not any(t.startswith(("trace/", "run/")) for t in tags)  # lists and strings are not scalars
    assert [(e.step, e.value) for e in acc.Scalars("loss/pg")] == [(1, 0.5), (2, 0.25)]
    assert [(e.step, e.value) for e in acc.Scalars("sampler/groups_trained")] == [(1, 3.0), (2, 4.0)]


def test_wandb_sink_records_an_offline_run(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")  # belt and braces: the sink itself asks for offline mode
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DISABLE_GIT", "true")
    log = LOGGERS.get("wandb")(tmp_path)
    run = log._run
    assert run.offline and run.name == tmp_path.name
    for row in ROWS:
        log.log(row)
    log.log({"step": 3})  # a later step commits step 2's row
    summary = dict(run.summary)
    assert summary["loss/pg"] == 0.25 and summary["sampler/groups_trained"] == 4
    assert not any(k.startswith("trace/") for k in summary)
    log.close()
    files = list(tmp_path.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(files) == 1
    deadline = time.monotonic() + 30  # the W&B service flushes the run file after finish() returns
    while b"sampler/groups_trained" not in files[0].read_bytes() and time.monotonic() < deadline:
        time.sleep(0.1)
    data = files[0].read_bytes()
    assert b"loss/pg" in data and b"sampler/groups_trained" in data and b"trace/alloc" not in data


def test_unknown_logger_names_the_closest_sink(tmp_path):
    with pytest.raises(KeyError, match="did you mean 'tensorboard'"):
        build_logger(["tensorbord"], Path(tmp_path))


def test_logger_names_are_checked_and_jsonl_always_kept(monkeypatch):
    """``trainer.loggers`` at load: unknown names and missing packages are one-line errors; jsonl (which reports,
    plots, bench and resume read) is always kept, so ``[]`` means jsonl only; duplicates are dropped."""
    from rollwise import logging as rlog
    from rollwise.logging import check_loggers

    assert check_loggers([]) == ["jsonl"]
    assert check_loggers(["tensorboard", "jsonl", "tensorboard"]) == ["jsonl", "tensorboard"]
    with pytest.raises(ValueError, match="unknown logger 'mlflow'; choose one of: jsonl, tensorboard, wandb"):
        check_loggers(["mlflow"])
    monkeypatch.setitem(rlog.LOGGER_PACKAGES, "wandb", "no_such_wandb_pkg")
    with pytest.raises(ValueError, match="logger 'wandb' needs the 'no_such_wandb_pkg' package"):
        check_loggers(["wandb"])


def test_an_empty_logger_list_still_writes_metrics_jsonl(tmp_path):
    log = build_logger([], tmp_path)
    log.log(ROWS[0])
    log.close()
    assert read_metrics(tmp_path) == [ROWS[0]]

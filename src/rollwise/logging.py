"""Metric sinks with namespaced keys (``rollout/``, ``sampler/``, ``loss/``, ``perf/``, ``eval/``, ``ledger/``).

``jsonl`` is always cheap and always on (``check_loggers`` adds it where a config leaves it out); tensorboard
and wandb are optional and imported lazily. Keys under ``trace/`` (lists for plots) go to the jsonl file only.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from rollwise.registry import Registry


class NullLogger:
    """Discards everything (tests, benchmarks)."""

    def log(self, row: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass


class JsonlLogger:
    """Appends one JSON object per row to ``run_dir/metrics.jsonl``; non-finite floats become null."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "a")

    def log(self, row: dict[str, Any]) -> None:
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
        self._f.write(json.dumps(clean) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()


class TensorboardLogger:
    """Scalars to TensorBoard (needs the ``tensorboard`` package)."""

    def __init__(self, run_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self._w = SummaryWriter(str(Path(run_dir) / "tb"))

    def log(self, row: dict[str, Any]) -> None:
        step = int(row.get("step", 0))
        for k, v in row.items():
            if isinstance(v, int | float) and not k.startswith("trace/"):
                self._w.add_scalar(k, v, step)

    def close(self) -> None:
        self._w.close()


class WandbLogger:
    """Scalars to Weights & Biases (needs ``wandb``; offline unless configured)."""

    def __init__(self, run_dir: Path) -> None:
        import wandb

        self._run = wandb.init(dir=str(run_dir), name=Path(run_dir).name, mode="offline")

    def log(self, row: dict[str, Any]) -> None:
        self._run.log({k: v for k, v in row.items() if not k.startswith("trace/")}, step=int(row.get("step", 0)))

    def close(self) -> None:
        self._run.finish()


class MultiLogger:
    def __init__(self, sinks: list[Any]) -> None:
        self.sinks = sinks

    def log(self, row: dict[str, Any]) -> None:
        for s in self.sinks:
            s.log(row)

    def close(self) -> None:
        for s in self.sinks:
            s.close()


LOGGERS: Registry[Any] = Registry("logger")
LOGGERS.register("jsonl", JsonlLogger)
LOGGERS.register("tensorboard", TensorboardLogger)
LOGGERS.register("wandb", WandbLogger)
#: the package each optional sink imports when it starts (checked at load, not after the warm start)
LOGGER_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb"}


def check_loggers(names: list[str]) -> list[str]:
    """``trainer.loggers`` as run: every name registered and its package installed (ValueError, one line,
    otherwise), duplicates dropped, and ``jsonl`` always first (added when left out: reports, plots, bench and
    resume read ``metrics.jsonl``, so an empty list means "jsonl only", never "no metrics")."""
    import importlib.util

    for name in names:
        if name not in LOGGERS:
            raise ValueError(f"unknown logger {name!r}; {LOGGERS.suggest(name)}")
        pkg = LOGGER_PACKAGES.get(name)
        if pkg is not None and importlib.util.find_spec(pkg) is None:
            raise ValueError(f"logger {name!r} needs the {pkg!r} package (pip install {pkg})")
    return list(dict.fromkeys(["jsonl", *names]))


def build_logger(names: list[str], run_dir: Path) -> MultiLogger:
    """The sinks ``names`` (after :func:`check_loggers`: jsonl always among them) writing under ``run_dir``."""
    try:
        names = check_loggers(names)
    except ValueError as exc:
        raise KeyError(str(exc)) from None
    return MultiLogger([LOGGERS.get(n)(run_dir) for n in names])


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """All rows of ``metrics.jsonl`` (a missing file is an error naming it)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"no metrics.jsonl in {run_dir}")
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line torn by a kill mid-append; the next resume drops it
            continue
    return rows


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that a reader (or a crash) sees the old or the new file, never a torn one:
    write aside, fsync, rename, fsync the directory."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    try:
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def truncate_metrics(run_dir: Path, after_step: int) -> None:
    """Drop rows logged after ``after_step`` (a resumed run rewrites them), atomically: a kill during the
    rewrite leaves the old file. A torn last line (a kill mid-append) is dropped too."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return
    keep = []
    for ln in path.read_text().splitlines():
        try:
            row = json.loads(ln) if ln.strip() else None
        except json.JSONDecodeError:
            continue
        if row is not None and row.get("step", -1) <= after_step:
            keep.append(ln)
    atomic_write(path, "".join(ln + "\n" for ln in keep))

"""A run directory owned by one process, whose history nothing can silently lose or falsify.

- **One owner.** ``RunDir.acquire`` takes an exclusive OS lock (``flock`` on ``run_dir/.lock``, released by the
  kernel when the process dies, even by SIGKILL) and writes the holder's pid into it; a second run into the
  same directory is refused with that pid.
- **No accidental reuse.** A directory that already holds a run (checkpoints or metrics) is continued only
  with ``resume`` or replaced only with ``overwrite`` (which deletes that run's files inside the lock).
- **Resume checks the config.** Options that define the run (model, task, seed, sampler, ...) must equal the
  saved ones, else the resume is refused before anything is written; options that may change (steps, eval
  and checkpoint cadence, lr, ...) are applied and returned as a change log. ``config.toml`` is rewritten
  only after the check passes, atomically.
- **Atomic files.** Rewrites go to a temporary file, are fsynced and renamed over the old one.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from rollwise.config import Config, ConfigError, dump_toml, load_config
from rollwise.logging import atomic_write

#: options a resumed run may change; anything else must equal the saved run's
MUTABLE_ON_RESUME = frozenset({
    "trainer.steps", "trainer.max_tokens", "trainer.eval_every", "trainer.eval_samples", "trainer.train_eval_size",
    "trainer.checkpoint_every", "trainer.keep_checkpoints", "trainer.plots", "trainer.progress", "trainer.loggers",
    "trainer.max_nan_skips", "trainer.max_empty_steps", "run.threads", "run.device", "generation.batch_size",
    "algo.micro_batch", "algo.lr", "warmstart.cache_dir", "async.workers", "async.worker_threads", "ray.address",
    "ray.num_cpus",
})
RUN_FILES = ("metrics.jsonl", "config.toml", "run.json", "plots", "tb", "wandb")


def try_lock(path: Path) -> Any | None:
    """Take an exclusive OS lock (``flock``) on ``path`` without waiting and write this process's pid into it;
    None if another process holds it. The kernel releases it when the process dies, even by SIGKILL."""
    lock = open(path, "a+")
    try:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        return None
    lock.seek(0)
    lock.truncate()
    lock.write(f"pid {os.getpid()}\n")
    lock.flush()
    return lock


def unlock(lock: Any) -> None:
    """Release a lock taken by :func:`try_lock`."""
    fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
    lock.close()


class RunDirError(RuntimeError):
    """The run directory cannot be used as asked (in use, holds another run, unwritable, config changed)."""


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and not (prefix.count(".") >= 1):  # sections, then whole values below them
            out |= flatten(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_changes(saved: Config, requested: Config) -> tuple[dict[str, tuple[Any, Any]], dict[str, tuple[Any, Any]]]:
    """(allowed, refused) differences between a saved run's config and a requested one, as key -> (old, new)."""
    a, b = flatten(saved.model_dump(mode="json")), flatten(requested.model_dump(mode="json"))
    diff = {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}
    allowed = {k: v for k, v in diff.items() if k in MUTABLE_ON_RESUME}
    return allowed, {k: v for k, v in diff.items() if k not in allowed}


class RunDir:
    """The locked run directory of one training process (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock: Any = None
        self.run_id = ""

    # ------------------------------------------------------------------ ownership
    def acquire(self) -> None:
        """Create the directory and take its lock, or raise naming the process that holds it."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            lock = try_lock(self.path / ".lock")
        except OSError as exc:
            raise RunDirError(f"cannot use run directory {self.path}: {exc.strerror or exc}") from None
        if lock is None:
            holder = (self.path / ".lock").read_text().strip() or "another process"
            raise RunDirError(f"run directory {self.path} is in use by {holder}; wait for it to finish or pick "
                              "another --run.name") from None
        self._lock = lock

    def release(self) -> None:
        if self._lock is not None:
            unlock(self._lock)
            self._lock = None

    def holds_run(self) -> bool:
        """True when the directory holds a run's checkpoints or metrics."""
        ckpts = self.path / "checkpoints"
        has_ckpt = ckpts.is_dir() and any(ckpts.iterdir())
        metrics = self.path / "metrics.jsonl"
        return has_ckpt or (metrics.is_file() and metrics.stat().st_size > 0)

    @property
    def locked(self) -> bool:
        return self._lock is not None

    def check(self, *, resume: bool, overwrite: bool) -> None:
        """Refuse an existing run without ``resume`` or ``overwrite`` (cheap: call before building a model)."""
        if resume and overwrite:
            raise RunDirError("--resume and --overwrite exclude each other")
        if self.holds_run() and not resume and not overwrite:
            raise RunDirError(f"run directory {self.path} already holds a run; pass --resume to continue it or "
                              "--overwrite to delete it and start again (or pick another --run.name)")

    def prepare(self, cfg: Config, *, resume: bool, overwrite: bool) -> dict[str, tuple[Any, Any]]:
        """Decide how the locked directory is used; return the allowed config changes of a resume.

        A fresh directory gets a new run id. An existing run is refused unless ``resume`` (config checked) or
        ``overwrite`` (its files deleted). ``config.toml`` is written only once every check has passed."""
        self.check(resume=resume, overwrite=overwrite)
        changes: dict[str, tuple[Any, Any]] = {}
        if overwrite:
            self._wipe()
        if resume and (self.path / "config.toml").is_file():
            changes = self._check_resume(cfg)
        self.run_id = self._read_run_id() if resume else ""
        if not self.run_id:
            self.run_id = uuid.uuid4().hex[:12]
            atomic_write(self.path / "run.json", json.dumps({"run_id": self.run_id}) + "\n")
        atomic_write(self.path / "config.toml", dump_toml(cfg))
        return changes

    def _check_resume(self, cfg: Config) -> dict[str, tuple[Any, Any]]:
        try:
            saved = load_config(self.path / "config.toml")
        except ConfigError as exc:
            raise RunDirError(f"cannot resume {self.path}: its config.toml no longer loads ({exc})") from None
        allowed, refused = config_changes(saved, cfg)
        if refused:
            listed = "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in list(refused.items())[:6])
            raise RunDirError(f"resume refused: these settings differ from the saved run in {self.path}: {listed}"
                              f"{' ...' if len(refused) > 6 else ''}. Drop the changed flags to continue it, or "
                              "start a new run (another --run.name, or --overwrite)")
        return allowed

    def _read_run_id(self) -> str:
        path = self.path / "run.json"
        if not path.is_file():
            return ""
        try:
            return str(json.loads(path.read_text()).get("run_id", ""))
        except (json.JSONDecodeError, AttributeError):
            return ""

    def _wipe(self) -> None:
        shutil.rmtree(self.path / "checkpoints", ignore_errors=True)
        for name in RUN_FILES:
            p = self.path / name
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            elif p.exists():
                p.unlink()

"""Checkpoints that make a resumed run identical to an uninterrupted one: model weights (safetensors through
``save_pretrained``), optimiser, sampler state (with its data cursor), every RNG, step and ledger.

A checkpoint is written to a temporary directory and renamed into place, then marked complete, so a run
killed mid-write never resumes from a torn checkpoint. The marker names the run that wrote it, and pruning
only ever removes that run's own checkpoints. A checkpoint whose files cannot be read (torn by a disk fault)
is skipped with a warning in favour of the previous one.
"""

from __future__ import annotations

import pickle
import random
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

MARKER = "COMPLETE"


def rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


class CheckpointError(RuntimeError):
    """No complete checkpoint of the run could be read."""


def save_checkpoint(run_dir: Path, step: int, *, model: Any, tokenizer: Any, optimizer: torch.optim.Optimizer,
                    trainer_state: dict[str, Any], keep: int = 2, run_id: str = "") -> Path:
    """Write ``run_dir/checkpoints/step_XXXXXX`` atomically and prune all but the newest ``keep`` of this run's
    own checkpoints (``run_id``)."""
    root = run_dir / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:06d}"
    tmp = root / f".tmp_step_{step:06d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    with open(tmp / "trainer_state.pkl", "wb") as f:
        pickle.dump(trainer_state | {"step": step, "rng": rng_state()}, f)
    (tmp / MARKER).write_text(f"{step} {run_id}".strip())
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    own = [c for c in list_checkpoints(run_dir) if checkpoint_run_id(c) == run_id]
    for old in own[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def checkpoint_run_id(ckpt: Path) -> str:
    """The id of the run that wrote ``ckpt`` ('' for checkpoints written before run ids existed)."""
    parts = (ckpt / MARKER).read_text().split()
    return parts[1] if len(parts) > 1 else ""


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    root = run_dir / "checkpoints"
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("step_*") if (p / MARKER).is_file())


def latest_checkpoint(run_dir: Path) -> Path | None:
    ckpts = list_checkpoints(run_dir)
    return ckpts[-1] if ckpts else None


def load_trainer_state(ckpt: Path) -> dict[str, Any]:
    with open(ckpt / "trainer_state.pkl", "rb") as f:
        return pickle.load(f)


def own_checkpoints(run_dir: Path, run_id: str) -> list[Path]:
    """Run ``run_id``'s complete checkpoints, oldest first (ones from before run ids count as its own)."""
    return [c for c in list_checkpoints(run_dir) if checkpoint_run_id(c) in (run_id, "")]


def load_latest(run_dir: Path, *, model: Any, optimizer: torch.optim.Optimizer,
                run_id: str = "") -> tuple[Path, dict[str, Any]] | None:
    """Load run ``run_id``'s newest complete checkpoint that reads back whole (checkpoints of other runs are
    never loaded; ones from before run ids count as this run's), falling back to older ones with a warning;
    None when the run has none. Raises ``CheckpointError`` when every one is unreadable."""
    ckpts = own_checkpoints(run_dir, run_id)
    for ckpt in reversed(ckpts):
        try:
            return ckpt, load_checkpoint(ckpt, model=model, optimizer=optimizer)
        except Exception as exc:  # noqa: BLE001 - any unreadable file: try the previous checkpoint
            warnings.warn(f"checkpoint {ckpt} is unreadable ({type(exc).__name__}: {exc}); trying the previous "
                          "one", stacklevel=2)
    if ckpts:
        raise CheckpointError(f"no checkpoint in {run_dir / 'checkpoints'} could be read; start again with "
                              "--overwrite")
    return None


def load_checkpoint(ckpt: Path, *, model: Any, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore weights (a LoRA checkpoint holds the adapter only), optimiser and every RNG from ``ckpt``;
    return the trainer state saved with it (step, ledger, sampler, scheduler, ...)."""
    from safetensors.torch import load_file

    if (ckpt / "adapter_model.safetensors").is_file():
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, load_file(str(ckpt / "adapter_model.safetensors")))
    else:
        weights = load_file(str(ckpt / "model.safetensors"))
        missing, unexpected = model.load_state_dict(weights, strict=False)
        if unexpected or [k for k in missing if "lm_head" not in k]:
            raise RuntimeError(f"checkpoint {ckpt} does not match the model: missing {missing}, "
                               f"unexpected {unexpected}")
    optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", weights_only=False))
    state = load_trainer_state(ckpt)
    set_rng_state(state["rng"])
    return state

"""GGUF file -> plain Hugging Face directory (``rollwise model import FILE.gguf OUT_DIR``).

transformers reads a GGUF itself (``from_pretrained(..., gguf_file=...)``, which needs the ``gguf`` and
``accelerate`` packages): it de-quantizes every tensor, undoes llama.cpp's q/k row permutation and rebuilds
the config and a fast tokenizer (with the chat template) from the file's metadata. What it returns cannot be
saved as is: its config keeps a ``quantization_config`` entry and ``save_pretrained`` refuses a model whose
quantizer is GGUF. So the weights are copied into a model built from the same config without that entry,
and that model is saved (safetensors) beside the tokenizer. The result loads with
``AutoModelForCausalLM.from_pretrained(OUT_DIR)`` and no GGUF packages at all.

Choices: the weights are de-quantized to ``dtype`` once and saved in it (no re-quantization); an existing
non-empty ``OUT_DIR`` is refused unless ``overwrite``, which writes into it and first removes any old
``model*.safetensors`` shards so none of them can shadow the new weights.
"""

from __future__ import annotations

import importlib.util
import os
import struct
from dataclasses import dataclass
from pathlib import Path

GGUF_MAGIC = b"GGUF"
DTYPES = ("float32", "bfloat16", "float16")
INSTALL_HINT = "pip install 'rollwise[gguf]'  (or: pip install gguf accelerate)"


class ModelImportError(RuntimeError):
    """The GGUF file or the output directory is the user's to fix; the CLI prints it on one line."""


@dataclass(frozen=True)
class ImportedModel:
    """What ``import_gguf`` wrote."""

    path: Path  # the HF directory
    num_parameters: int  # unique parameters (tied embeddings counted once)
    model_type: str  # e.g. "llama"
    dtype: str  # the dtype the weights were saved in


def check_gguf_file(path: Path) -> None:
    """Raise ``ModelImportError`` unless ``path`` is an existing file that starts with the GGUF magic."""
    if not path.exists():
        raise ModelImportError(f"{path}: no such file")
    if not path.is_file():
        raise ModelImportError(f"{path} is not a file (expected a .gguf model file)")
    try:
        with path.open("rb") as f:
            magic = f.read(len(GGUF_MAGIC))
    except OSError as exc:
        raise ModelImportError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if magic != GGUF_MAGIC:
        raise ModelImportError(f"{path} is not a GGUF file (it does not start with the bytes 'GGUF')")


def check_out_dir(out_dir: Path, overwrite: bool) -> None:
    """Refuse a file, a non-empty directory unless ``overwrite``, and a place that cannot be written (checked by
    writing there, before the minutes of de-quantizing: ``os.access`` says yes to root even on ``/proc``).
    Directories made for the check are removed again."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ModelImportError(f"{out_dir} exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise ModelImportError(f"{out_dir} exists and is not empty; pass --overwrite to write into it")
    made = [d for d in (out_dir, *out_dir.parents) if not d.exists()]
    probe = out_dir / f".rollwise-write-check-{os.getpid()}"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ModelImportError(f"{out_dir}: cannot write there ({exc.strerror or exc})") from None
    finally:
        for d in made:  # innermost first
            if d.is_dir():
                d.rmdir()


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a broken or blocked install counts as missing
        return False


def require_gguf_packages() -> None:
    """The packages transformers' GGUF loader needs, checked up front so a missing one is one line."""
    missing = [name for name in ("gguf", "accelerate") if not _installed(name)]
    if missing:
        raise ModelImportError(f"importing a GGUF file needs the {' and '.join(missing)} package"
                               f"{'s' if len(missing) > 1 else ''}: {INSTALL_HINT}")


def clean_config_dict(config: dict) -> dict:
    """The config without what only describes the GGUF source (its quantization entry, the file path)."""
    return {k: v for k, v in config.items() if k not in ("quantization_config", "_model_name_or_path")}


def _dequantize_kwargs() -> dict:
    """transformers >= 5.19 may keep quantized blocks packed (``GgufLinear``) when the ``kernels`` package has a
    matmul kernel for the device; ask for plain dense weights so the state dict is an ordinary model's.
    Older versions always de-quantize and have no ``GgufConfig``."""
    try:
        from transformers import GgufConfig
    except ImportError:
        return {}
    return {"quantization_config": GgufConfig(dequantize=True)}


def import_gguf(gguf_path: str | Path, out_dir: str | Path, *, dtype: str = "float32",
                overwrite: bool = False) -> ImportedModel:
    """De-quantize ``gguf_path`` into ``out_dir`` as an HF model directory (config.json, safetensors,
    tokenizer files with the chat template). Every user-side failure is a ``ModelImportError``."""
    gguf_path, out_dir = Path(gguf_path).expanduser(), Path(out_dir).expanduser()
    if dtype not in DTYPES:
        raise ModelImportError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    check_gguf_file(gguf_path)
    check_out_dir(out_dir, overwrite)
    require_gguf_packages()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = getattr(torch, dtype)
    source = str(gguf_path.resolve())
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=source)
        loaded = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=source, dtype=torch_dtype,
                                                      **_dequantize_kwargs())
    except (ValueError, KeyError, IndexError, OSError, EOFError, NotImplementedError, struct.error) as exc:
        # unsupported architecture or tokenizer type, truncated or corrupt file: the loader's own words
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelImportError(f"could not import {gguf_path}: {first}") from exc

    # save_pretrained refuses the loaded model (GGUF quantizer); an identical model built from the cleaned
    # config takes its weights and saves normally. Random init of the copy is wasted but model-agnostic.
    config = type(loaded.config).from_dict(clean_config_dict(loaded.config.to_dict()))
    model = AutoModelForCausalLM.from_config(config, dtype=torch_dtype)
    model.load_state_dict(loaded.state_dict(), strict=True)
    model.generation_config = loaded.generation_config
    model.eval()
    del loaded

    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for stale in [*out_dir.glob("model*.safetensors"), *out_dir.glob("model.safetensors.index.json")]:
            stale.unlink()
        model.save_pretrained(out_dir)
        tokenizer.save_pretrained(out_dir)
    except OSError as exc:  # e.g. the disk filled up while saving
        raise ModelImportError(f"{out_dir}: writing the model failed ({exc.strerror or exc})") from None
    n_params = sum(p.numel() for p in model.parameters())
    return ImportedModel(path=out_dir, num_parameters=n_params, model_type=config.model_type, dtype=dtype)

"""Load verifiable examples from jsonl, parquet or HF ``datasets`` with a field mapping, or by preset name.

Every source becomes a list of :class:`Example` (stable ``uid``, ``prompt``, ``reference`` answer string,
``meta``). A malformed row (bad JSON, missing field, answer that cannot be extracted) raises a ValueError
naming the file and line, or with ``on_error="skip"`` is logged and counted in ``ExampleList.skipped``.
pyarrow and ``datasets`` are imported only when those formats are used.

Presets (``gsm8k:train``, ``gsm8k:test``, ``math500:test``, ``aime24:test``, ``amc23:test``) read the shared
benchmark files from ``$ROLLWISE_DATA_DIR`` or else the ``shared/data`` folder beside the repository.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rollwise.registry import Registry
from rollwise.rewards.extract import last_boxed

__all__ = [
    "ANSWER_EXTRACTORS",
    "PRESETS",
    "Example",
    "ExampleList",
    "Preset",
    "data_dir",
    "load_examples",
    "load_preset",
]

log = logging.getLogger(__name__)
OnError = Literal["raise", "skip"]


@dataclass(frozen=True)
class Example:
    """One verifiable example: stable id, prompt text, reference answer (a string), extra fields."""

    uid: str
    prompt: str
    reference: str
    meta: dict[str, Any] = field(default_factory=dict)


class ExampleList(list[Example]):
    """A plain list of examples that also says how many malformed rows were skipped."""

    skipped: int = 0


def render_answer(value: Any) -> str:
    """An answer value as a reference string: ``27.0`` -> ``"27"``, ``2.5`` -> ``"2.5"``."""
    if isinstance(value, bool) or value is None:
        raise ValueError(f"answer must be a string or a number, got {value!r}")
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return value.strip()
    raise ValueError(f"answer must be a string or a number, got {type(value).__name__}")


def _gsm8k_answer(value: Any) -> str:
    """The ``#### N`` line of a GSM8K solution, thousands separators dropped (``1,000`` -> ``1000``)."""
    text = render_answer(value)
    if "####" not in text:
        raise ValueError("no '####' answer line")
    return text.rsplit("####", 1)[1].strip().replace(",", "")


def _boxed_answer(value: Any) -> str:
    """The last ``\\boxed{}`` of a worked solution."""
    boxed = last_boxed(render_answer(value))
    if boxed is None:
        raise ValueError("no \\boxed{} answer")
    return boxed


ANSWER_EXTRACTORS: Registry[Callable[[Any], str]] = Registry("answer extractor")
ANSWER_EXTRACTORS.register("plain", render_answer)
ANSWER_EXTRACTORS.register("gsm8k", _gsm8k_answer)
ANSWER_EXTRACTORS.register("boxed", _boxed_answer)


@dataclass(frozen=True)
class Preset:
    """A known dataset file and how to map its fields."""

    path: str  # relative to data_dir()
    prompt_field: str
    answer_field: str
    id_field: str | None = None
    id_prefix: str = ""
    meta_fields: tuple[str, ...] = ()
    answer_extractor: str = "plain"


PRESETS: dict[str, Preset] = {
    "gsm8k:train": Preset(
        "gsm8k/train.jsonl", "question", "answer", None, "gsm8k-train", ("answer",), "gsm8k"
    ),
    "gsm8k:test": Preset("gsm8k/test.jsonl", "question", "answer", None, "gsm8k-test", ("answer",), "gsm8k"),
    "math500:test": Preset(
        "math500/test.jsonl", "problem", "answer", "unique_id", "", ("subject", "level", "solution")
    ),
    "aime24:test": Preset("aime24/test.jsonl", "problem", "answer", "id", "aime24", ("url", "solution")),
    "amc23:test": Preset("amc23/test.jsonl", "problem", "answer", "id", "amc23", ("url",)),
}


def data_dir() -> Path:
    """``$ROLLWISE_DATA_DIR``, else ``shared/data`` beside the repository root (``../shared/data``), else
    beside the working directory (for an installed package run from a checkout)."""
    env = os.environ.get("ROLLWISE_DATA_DIR")
    if env:
        return Path(env)
    beside_repo = Path(__file__).resolve().parents[3].parent / "shared" / "data"
    beside_cwd = Path.cwd().parent / "shared" / "data"
    return beside_repo if beside_repo.exists() or not beside_cwd.exists() else beside_cwd


def _jsonl_rows(path: Path) -> Iterator[tuple[int, dict[str, Any] | Exception]]:
    """(line number, row or the error) for every non-blank line."""
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                yield lineno, ValueError(f"invalid JSON ({exc.msg})")
                continue
            yield lineno, row if isinstance(row, dict) else ValueError("row is not a JSON object")


def _parquet_rows(path: Path) -> Iterator[tuple[int, dict[str, Any] | Exception]]:
    import pyarrow.parquet as pq  # lazy: optional dependency (rollwise[data])

    yield from enumerate(pq.read_table(path).to_pylist(), start=1)


def _hf_rows(source: str, split: str, config: str | None) -> Iterator[tuple[int, dict[str, Any] | Exception]]:
    import datasets  # lazy: optional dependency (rollwise[data])

    path = Path(source)
    if (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists():
        ds = datasets.load_from_disk(source)  # a folder written by save_to_disk
    elif path.exists():  # a local folder of data files
        ds = datasets.load_dataset(source, config, split=split)
    else:  # a hub id: only works when the hub is reachable
        try:
            ds = datasets.load_dataset(source, config, split=split)
        except Exception as exc:
            raise ConnectionError(f"cannot load {source!r} from the HF hub (offline? typo?): {exc}") from exc
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise ValueError(f"{source}: no split {split!r}; has {sorted(ds)}")
        ds = ds[split]
    yield from enumerate(ds, start=1)


def _rows(
    source: str, fmt: str | None, split: str, config: str | None
) -> tuple[str, Iterable[tuple[int, Any]]]:
    path = Path(source)
    if fmt is None:
        if path.suffix in (".jsonl", ".json"):
            fmt = "jsonl"
        elif path.suffix == ".parquet":
            fmt = "parquet"
        else:
            fmt = "hf"
    if fmt == "jsonl":
        return "line", _jsonl_rows(path)
    if fmt == "parquet":
        return "row", _parquet_rows(path)
    if fmt == "hf":
        return "row", _hf_rows(source, split, config)
    raise ValueError(f"unknown format {fmt!r}; choose jsonl, parquet or hf")


def _example(row: dict[str, Any], index: int, spec: Preset, extract: Callable[[Any], str]) -> Example:
    for name in (spec.prompt_field, spec.answer_field, *((spec.id_field,) if spec.id_field else ())):
        if name not in row or row[name] is None:
            raise ValueError(f"missing field {name!r}")
    prompt = row[spec.prompt_field]
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError(f"field {spec.prompt_field!r} is not a non-empty string")
    reference = extract(row[spec.answer_field])
    if not reference:
        raise ValueError(f"empty answer in field {spec.answer_field!r}")
    if spec.id_field:
        raw = str(row[spec.id_field])
        uid = f"{spec.id_prefix}-{raw}" if spec.id_prefix else raw
    else:
        uid = f"{spec.id_prefix or 'row'}-{index:05d}"  # 0-based row position: gsm8k-test-00042
    meta = {k: row[k] for k in spec.meta_fields if k in row}
    return Example(uid, prompt, reference, meta)


def load_examples(
    source: str | os.PathLike[str],
    *,
    prompt_field: str = "prompt",
    answer_field: str = "answer",
    id_field: str | None = None,
    id_prefix: str | None = None,
    meta_fields: Sequence[str] = (),
    answer_extractor: str | Callable[[Any], str] = "plain",
    fmt: str | None = None,
    split: str = "train",
    hf_config: str | None = None,
    limit: int | None = None,
    on_error: OnError = "raise",
) -> ExampleList:
    """Examples from a jsonl / parquet file or an HF dataset (saved folder or hub id), mapping fields.

    Without ``id_field`` ids are ``{id_prefix}-{row:05d}`` (prefix defaults to the file stem); with it,
    the row's id, prefixed when ``id_prefix`` is given. ``answer_extractor`` is a name in
    ``ANSWER_EXTRACTORS`` (``plain``, ``gsm8k``, ``boxed``), ``package.module:function`` or a callable.
    ``fmt`` (jsonl / parquet / hf) defaults from the suffix; ``split`` and ``hf_config`` apply to ``hf``.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    source = os.fspath(source)
    extract = (
        ANSWER_EXTRACTORS.get(answer_extractor) if isinstance(answer_extractor, str) else answer_extractor
    )
    prefix = id_prefix if id_prefix is not None else ("" if id_field else Path(source).stem)
    spec = Preset(source, prompt_field, answer_field, id_field, prefix, tuple(meta_fields))
    unit, rows = _rows(source, fmt, split, hf_config)
    out, seen = ExampleList(), set()
    for index, (n, row) in enumerate(rows):  # index counts malformed rows too, so ids stay stable
        if limit is not None and len(out) >= limit:
            break
        try:
            if isinstance(row, Exception):
                raise row
            ex = _example(row, index, spec, extract)
            if ex.uid in seen:
                raise ValueError(f"duplicate id {ex.uid!r}")
        except ValueError as exc:
            msg = f"{source}: {unit} {n}: {exc}"
            if on_error == "raise":
                raise ValueError(msg) from exc
            log.warning("skipping malformed row: %s", msg)
            out.skipped += 1
            continue
        seen.add(ex.uid)
        out.append(ex)
    if out.skipped:
        log.warning("%s: skipped %d malformed rows", source, out.skipped)
    return out


DEFAULT_META = ("level", "subject", "type")  # metadata columns kept from a plain path when present


def load_preset(name: str, *, limit: int | None = None, on_error: OnError = "raise") -> ExampleList:
    """Examples of a named preset (``gsm8k:test``...) or a path / hub id with default field names."""
    if name not in PRESETS:
        if ":" in name and not Path(name).exists():
            raise KeyError(f"unknown dataset preset {name!r}; choose one of: {', '.join(sorted(PRESETS))}")
        return load_examples(name, limit=limit, on_error=on_error, meta_fields=DEFAULT_META)
    p = PRESETS[name]
    path = data_dir() / p.path
    if not path.exists():
        raise FileNotFoundError(f"{path} not found (preset {name!r}); set ROLLWISE_DATA_DIR to its folder")
    return load_examples(
        path,
        prompt_field=p.prompt_field,
        answer_field=p.answer_field,
        id_field=p.id_field,
        id_prefix=p.id_prefix,
        meta_fields=p.meta_fields,
        answer_extractor=p.answer_extractor,
        limit=limit,
        on_error=on_error,
    )

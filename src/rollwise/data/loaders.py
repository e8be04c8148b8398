"""Load verifiable prompts from jsonl, parquet or HF ``datasets`` with a field mapping, or by preset name.

Every source becomes a :class:`PromptList` of :class:`rollwise.types.Prompt` (stable ``uid``, ``text``,
``reference`` answer string, ``meta``): the one prompt record that training, evaluation and the TRL bridge use.
A bad row raises a one-line :class:`DatasetError` naming the file and line (the source and row for
parquet / HF), or with ``on_error="skip"`` is logged and counted by reason in ``PromptList.skipped_by``:
``malformed`` (bad JSON, missing field, answer that cannot be extracted, duplicate id), ``too_long`` (prompt
or reference over ``max_prompt_chars`` / ``max_reference_chars``: a 1 MB prompt would otherwise be accepted
and fail steps later allocating for it) and ``decode`` (a jsonl line that is not UTF-8; the file is read as
bytes and decoded line by line so the other lines still load). pyarrow and ``datasets`` are imported only
when those formats are used.

Presets (``gsm8k:train``, ``gsm8k:test``, ``math500:test``, ``aime24:test``, ``amc23:test``) read the shared
benchmark files from ``$ROLLWISE_DATA_DIR`` or else the ``shared/data`` folder beside the repository.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rollwise.registry import Registry
from rollwise.rewards.extract import last_boxed
from rollwise.types import Prompt

__all__ = [
    "ANSWER_EXTRACTORS",
    "DEFAULT_MAX_PROMPT_CHARS",
    "DEFAULT_MAX_REFERENCE_CHARS",
    "PRESETS",
    "SKIP_REASONS",
    "DatasetError",
    "Preset",
    "PromptList",
    "data_dir",
    "load_examples",
    "load_preset",
]

log = logging.getLogger(__name__)
OnError = Literal["raise", "skip"]
SKIP_REASONS = ("malformed", "too_long", "decode")
DEFAULT_MAX_PROMPT_CHARS = 8192  # = TaskConfig.max_prompt_chars
DEFAULT_MAX_REFERENCE_CHARS = 4096  # = TaskConfig.max_reference_chars
_MAX_MESSAGE_CHARS = 300  # a bad row's error quotes at most this much, so it stays one readable line


class DatasetError(ValueError):
    """A user error in a dataset (bad row, missing file, unknown name): one line, shown without a traceback.

    Subclasses also derive from the builtin a caller may already catch (KeyError, FileNotFoundError,
    ConnectionError); ``str()`` is always the plain message (KeyError's would quote it)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class UnknownDatasetError(DatasetError, KeyError):
    """A name that is neither a preset, a file nor a loadable dataset."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """A dataset path (or a preset's file) that does not exist."""


class DatasetUnreachableError(DatasetError, ConnectionError):
    """An HF hub id that could not be fetched."""


class _RowError(ValueError):
    """A bad row with the reason it is counted under (a plain ValueError counts as ``malformed``)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_MESSAGE_CHARS else text[: _MAX_MESSAGE_CHARS - 3] + "..."


class PromptList(list[Prompt]):
    """A plain list of prompts that also says how many bad rows were skipped, by reason (``SKIP_REASONS``)."""

    def __init__(self, prompts: Iterable[Prompt] = ()) -> None:
        super().__init__(prompts)
        self.skipped_by: dict[str, int] = dict.fromkeys(SKIP_REASONS, 0)

    @property
    def skipped(self) -> int:
        """Rows skipped for any reason."""
        return sum(self.skipped_by.values())


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


def _non_finite(reference: str) -> bool:
    """Whether a reference spells NaN or an infinity (``nan``, ``-inf``, ``Infinity``, ...); a long integer
    that a float would round to infinity is a fine reference, so the spelling is checked, not ``float()``."""
    return reference.strip().lstrip("+-").lower() in ("nan", "inf", "infinity")


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
    hub: tuple[str, str | None, str] | None = None  # (hub id, config, split) when no local file: same fields


PRESETS: dict[str, Preset] = {
    "gsm8k:train": Preset(
        "gsm8k/train.jsonl", "question", "answer", None, "gsm8k-train", ("answer",), "gsm8k",
        ("openai/gsm8k", "main", "train"),
    ),
    "gsm8k:test": Preset("gsm8k/test.jsonl", "question", "answer", None, "gsm8k-test", ("answer",), "gsm8k",
                         ("openai/gsm8k", "main", "test")),
    "math500:test": Preset(
        "math500/test.jsonl", "problem", "answer", "unique_id", "", ("subject", "level", "solution"), "plain",
        ("HuggingFaceH4/MATH-500", None, "test"),
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
    """(line number, row or the error) for every non-blank line. Read as bytes and decoded line by line, so
    one non-UTF-8 line is one bad row (with its line number) rather than an error for the whole file."""
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:  # utf-8-sig on line 1: a byte-order mark is not part of the first row
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                byte = raw[exc.start : exc.start + 1].hex()
                yield lineno, _RowError(f"not valid UTF-8 (byte 0x{byte} at column {exc.start + 1})", "decode")
                continue
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                yield lineno, ValueError(f"invalid JSON ({exc.msg})")
                continue
            yield lineno, row if isinstance(row, dict) else ValueError("row is not a JSON object")


def _parquet_rows(path: Path) -> Iterator[tuple[int, dict[str, Any] | Exception]]:
    try:
        import pyarrow.parquet as pq  # lazy: optional dependency (rollwise[data])
    except ImportError:
        raise DatasetError(f"{path}: reading parquet needs pyarrow (pip install 'rollwise[data]')") from None
    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise DatasetError(f"{path}: not a readable parquet file ({_one_line(str(exc))})") from None
    yield from enumerate(table.to_pylist(), start=1)


def _hf_rows(source: str, split: str, config: str | None) -> Iterator[tuple[int, dict[str, Any] | Exception]]:
    path = Path(source)
    try:
        import datasets  # lazy: optional dependency (rollwise[data])
    except ImportError:
        what = "an HF dataset folder" if path.exists() else "no such file or folder; as an HF hub id it"
        raise DatasetError(
            f"{source}: {what} needs the 'datasets' package (pip install 'rollwise[data]')"
        ) from None
    if (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists():
        ds = datasets.load_from_disk(source)  # a folder written by save_to_disk
    elif path.exists():  # a local folder of data files
        ds = datasets.load_dataset(source, config, split=split)
    else:  # a hub id: only works when the hub is reachable
        try:
            ds = datasets.load_dataset(source, config, split=split)
        except Exception as exc:
            raise DatasetUnreachableError(
                f"cannot load {source!r} from the HF hub (offline? typo?): {_one_line(str(exc))}"
            ) from exc
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise DatasetError(f"{source}: no split {split!r}; has {sorted(ds)}")
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
    if fmt in ("jsonl", "parquet") and not path.is_file():  # checked now: the row readers are lazy
        what = "is a folder, not a file" if path.is_dir() else "no such file"
        raise DatasetNotFoundError(f"{source}: {what} (format {fmt})")
    if fmt == "jsonl":
        return "line", _jsonl_rows(path)
    if fmt == "parquet":
        return "row", _parquet_rows(path)
    if fmt == "hf":
        return "row", _hf_rows(source, split, config)
    raise DatasetError(f"unknown format {fmt!r}; choose jsonl, parquet or hf")


@dataclass(frozen=True)
class _Bounds:
    prompt: int
    reference: int


def _check_length(text: str, limit: int, what: str, option: str) -> None:
    if len(text) > limit:
        raise _RowError(f"{what} is {len(text)} chars, over the limit {option}={limit}", "too_long")


def _prompt(
    row: dict[str, Any], index: int, spec: Preset, extract: Callable[[Any], str], bounds: _Bounds
) -> Prompt:
    for name in (spec.prompt_field, spec.answer_field, *((spec.id_field,) if spec.id_field else ())):
        if name not in row or row[name] is None:
            raise ValueError(f"missing field {name!r}")
    prompt = row[spec.prompt_field]
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError(f"field {spec.prompt_field!r} is not a non-empty string")
    _check_length(prompt, bounds.prompt, f"prompt (field {spec.prompt_field!r})", "task.max_prompt_chars")
    try:
        reference = extract(row[spec.answer_field])
    except (TypeError, KeyError, IndexError, AttributeError) as exc:  # a user extractor meeting odd data
        raise ValueError(f"answer extractor failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(reference, str):
        raise ValueError(f"answer extractor returned {type(reference).__name__}, not a string")
    if not reference:
        raise ValueError(f"empty answer in field {spec.answer_field!r}")
    if _non_finite(reference):  # JSON's NaN / Infinity, a parquet missing value, a "nan" written by pandas
        raise ValueError(f"answer {reference!r} in field {spec.answer_field!r} is not a finite number (a missing "
                         "value?): no completion can match it")
    _check_length(reference, bounds.reference, f"reference (field {spec.answer_field!r})",
                  "task.max_reference_chars")
    if spec.id_field:
        raw = str(row[spec.id_field])
        uid = f"{spec.id_prefix}-{raw}" if spec.id_prefix else raw
    else:
        uid = f"{spec.id_prefix or 'row'}-{index:05d}"  # 0-based row position: gsm8k-test-00042
    meta = {k: row[k] for k in spec.meta_fields if k in row}
    return Prompt(uid, prompt, reference, meta)


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
    max_prompt_chars: int = DEFAULT_MAX_PROMPT_CHARS,
    max_reference_chars: int = DEFAULT_MAX_REFERENCE_CHARS,
) -> PromptList:
    """Prompts from a jsonl / parquet file or an HF dataset (saved folder or hub id), mapping fields.

    Without ``id_field`` ids are ``{id_prefix}-{row:05d}`` (prefix defaults to the file stem); with it,
    the row's id, prefixed when ``id_prefix`` is given. ``answer_extractor`` is a name in
    ``ANSWER_EXTRACTORS`` (``plain``, ``gsm8k``, ``boxed``), ``package.module:function`` or a callable.
    ``fmt`` (jsonl / parquet / hf) defaults from the suffix; ``split`` and ``hf_config`` apply to ``hf``.
    A prompt longer than ``max_prompt_chars`` or a reference (the extracted answer) longer than
    ``max_reference_chars`` makes its row bad. Bad rows raise :class:`DatasetError`, or with
    ``on_error="skip"`` are counted in ``skipped_by``.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if max_prompt_chars < 1 or max_reference_chars < 1:
        raise ValueError(f"length bounds must be >= 1, got {max_prompt_chars=}, {max_reference_chars=}")
    bounds = _Bounds(max_prompt_chars, max_reference_chars)
    source = os.fspath(source)
    extract = (
        ANSWER_EXTRACTORS.get(answer_extractor) if isinstance(answer_extractor, str) else answer_extractor
    )
    prefix = id_prefix if id_prefix is not None else ("" if id_field else Path(source).stem)
    spec = Preset(source, prompt_field, answer_field, id_field, prefix, tuple(meta_fields))
    unit, rows = _rows(source, fmt, split, hf_config)
    out, seen = PromptList(), set()
    for index, (n, row) in enumerate(rows):  # index counts malformed rows too, so ids stay stable
        if limit is not None and len(out) >= limit:
            break
        try:
            if isinstance(row, Exception):
                raise row
            p = _prompt(row, index, spec, extract, bounds)
            if p.uid in seen:
                raise ValueError(f"duplicate id {p.uid!r}")
        except ValueError as exc:
            msg = _one_line(f"{source}: {unit} {n}: {exc}")
            if on_error == "raise":
                raise DatasetError(msg) from None  # a user error in the data: the message is the whole story
            reason = exc.reason if isinstance(exc, _RowError) else "malformed"
            log.warning("skipping bad row (%s): %s", reason, msg)
            out.skipped_by[reason] += 1
            continue
        seen.add(p.uid)
        out.append(p)
    if out.skipped:
        counts = ", ".join(f"{k}={v}" for k, v in out.skipped_by.items() if v)
        log.warning("%s: skipped %d bad rows (%s)", source, out.skipped, counts)
    return out


DEFAULT_META = ("level", "subject", "type")  # metadata columns kept from a plain path when present


def load_preset(
    name: str,
    *,
    limit: int | None = None,
    on_error: OnError = "raise",
    max_prompt_chars: int = DEFAULT_MAX_PROMPT_CHARS,
    max_reference_chars: int = DEFAULT_MAX_REFERENCE_CHARS,
) -> PromptList:
    """Prompts of a named preset (``gsm8k:test``...) or a path / hub id with default field names."""
    bounds = dict(max_prompt_chars=max_prompt_chars, max_reference_chars=max_reference_chars)
    if name not in PRESETS:
        choices = ", ".join(sorted(PRESETS))
        if ":" in name and not Path(name).exists():
            raise UnknownDatasetError(f"unknown dataset preset {name!r}; choose one of: {choices}")
        if not Path(name).exists() and importlib.util.find_spec("datasets") is None:
            raise UnknownDatasetError(  # else the user sees "No module named 'datasets'" for a typo
                f"unknown dataset {name!r}: not a preset ({choices}), not a file or folder, and loading it "
                "as an HF hub id needs the 'datasets' package (pip install 'rollwise[data]')"
            )
        return load_examples(name, limit=limit, on_error=on_error, meta_fields=DEFAULT_META, **bounds)
    p = PRESETS[name]
    path: str | Path = data_dir() / p.path
    hub: dict[str, Any] = {}
    if not Path(path).exists():  # no local copy: the same rows from the HF hub (cached by datasets)
        if p.hub is None or importlib.util.find_spec("datasets") is None:
            via = (f", or install 'datasets' (pip install 'rollwise[data]') to load it from the HF hub as "
                   f"{p.hub[0]!r}") if p.hub is not None else ""
            raise DatasetNotFoundError(f"{path} not found (preset {name!r}): set ROLLWISE_DATA_DIR to the folder "
                                       f"that holds {p.path}{via}")
        path, hub = p.hub[0], {"fmt": "hf", "hf_config": p.hub[1], "split": p.hub[2]}
    return load_examples(
        path,
        **hub,
        prompt_field=p.prompt_field,
        answer_field=p.answer_field,
        id_field=p.id_field,
        id_prefix=p.id_prefix,
        meta_fields=p.meta_fields,
        answer_extractor=p.answer_extractor,
        limit=limit,
        on_error=on_error,
        **bounds,
    )

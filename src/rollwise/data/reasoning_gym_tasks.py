"""``reasoning-gym`` procedural datasets as single-turn tasks, scored by each dataset's own ``score_answer``
(``pip install -e ".[reasoning-gym]"``; nothing is downloaded: every item is generated from a seed).

A task suite is a dataset spec (``task.suite = "dataset"``), a comma-separated mix of reasoning-gym tasks::

    task.dataset = "reasoning_gym:leg_counting@0,leg_counting@2,chain_sum*2,basic_arithmetic{max_terms=3}"

Each entry is ``NAME[@LEVEL][*WEIGHT][{key=value,...}]``:

* ``NAME``: a reasoning-gym dataset (``leg_counting``, ``chain_sum``, ``tower_of_hanoi``, ... ; an unknown name
  is a one-line error naming the closest ones);
* ``@LEVEL``: the dataset's own curriculum level (its graded difficulty: 0 easiest), the configuration
  reasoning-gym's curriculum makes at that global level in its default (inclusive) context;
* ``*WEIGHT``: the entry's share of the pool (default 1): ``task.train_size`` prompts are split by weight;
* ``{key=value,...}``: the dataset's own config fields (TOML literals; they win over the level's), checked at
  load against the config class.

Each entry is one level of the suite (its label ``NAME`` or ``NAME@LEVEL``; ``#2`` added on a repeat), so the
sampler sees its difficulty groups and the held-out eval has one set per entry of ``task.eval_size`` prompts,
generated from another seed; a train item whose question is also a held-out one is dropped from the pool.

A prompt's reference is a small JSON key that regenerates its item (task, level, config, seed, size, index),
so :func:`verify_reasoning_gym` (the verifier ``reasoning_gym``) scores a completion with the dataset's own
``score_answer(answer, entry)`` in any process. The answer is the last ``<answer>...</answer>`` of the
completion (reasoning-gym's own format), else the whole stripped completion. A scorer that raises or returns a
score that is not a number in [0, 1] raises here, so the verifier pool counts it as a fault (``error``).

:func:`verify_reasoning_gym_number` (the verifier ``reasoning_gym_number``) is for small chat models that never
tag and rarely reply with the bare answer ("The final answer is 8."): the last tagged answer, else the reply's
final number read as ``final_number`` reads word-problem replies (box, answer line, last number), still scored
by the dataset's own ``score_answer``. Meant for mixes whose answers are numbers; ``parsed`` says whether an
answer was found, ``info["where"]`` where (``tag``, ``boxed``, ``answer_line``, ``last_number``).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import re
import tomllib
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from rollwise.rewards.core import VerifyResult
from rollwise.rewards.final_number import extract_final_number
from rollwise.rewards.gsm8k import render_number
from rollwise.types import Prompt

try:  # imported with this module (which only a reasoning_gym spec or verifier imports): a verifier pool worker
    import reasoning_gym  # then pays for the import at start-up, not inside its first check's deadline
except ImportError:  # optional dependency (rollwise[reasoning-gym]); said in one line when a spec needs it
    reasoning_gym = None

PREFIX = "reasoning_gym:"
EXCLUDED = ("composite",)  # reasoning-gym's own mix: a spec's entries are the mix
_ENTRY = re.compile(r"^(?P<name>[A-Za-z0-9_]+)(?:@(?P<level>\d+))?(?:\*(?P<weight>[0-9]*\.?[0-9]+))?"
                    r"(?:\{(?P<kw>.*)\})?$")
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


class ReasoningGymError(ValueError):
    """A bad reasoning-gym spec (one line)."""


@dataclass(frozen=True)
class RGEntry:
    """One entry of a spec: a dataset, its curriculum level (None: the dataset's defaults), share and knobs."""

    name: str
    level: int | None = None
    weight: float = 1.0
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.name if self.level is None else f"{self.name}@{self.level}"


def _rg() -> Any:
    if reasoning_gym is None:
        raise ReasoningGymError("reasoning_gym tasks need the 'reasoning-gym' package "
                                "(pip install -e '.[reasoning-gym]')")
    return reasoning_gym


def task_names() -> list[str]:
    """Every reasoning-gym dataset a spec may name."""
    _rg()
    from reasoning_gym.factory import DATASETS

    return sorted(n for n in DATASETS if n not in EXCLUDED)


def _split_top(text: str) -> list[str]:
    """Split on commas outside braces and brackets."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += (ch in "{[") - (ch in "}]")
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return [*parts, cur]


def _literal(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # a bare word is a string


def parse_spec(spec: str) -> list[RGEntry]:
    """The entries of ``reasoning_gym:...`` (syntax only; :func:`check_entries` checks names and knobs)."""
    body = spec[len(PREFIX):] if spec.startswith(PREFIX) else spec
    entries = []
    for raw in _split_top(body):
        m = _ENTRY.match(raw.strip())
        if not raw.strip() or m is None:
            raise ReasoningGymError(f"task.dataset: bad reasoning_gym entry {raw.strip()!r} in {spec!r}; write "
                                    "NAME[@LEVEL][*WEIGHT][{key=value,...}], e.g. chain_sum@1*2{allow_negation=true}")
        kw: dict[str, Any] = {}
        for item in _split_top(m["kw"] or ""):
            if not item.strip():
                continue
            key, eq, value = item.partition("=")
            if not eq or not key.strip():
                raise ReasoningGymError(f"task.dataset: {m['name']}: knob {item.strip()!r} is not key=value")
            kw[key.strip()] = _literal(value.strip())
        weight = float(m["weight"]) if m["weight"] else 1.0
        if not weight > 0:
            raise ReasoningGymError(f"task.dataset: {m['name']}: weight must be > 0, got {weight}")
        entries.append(RGEntry(m["name"], None if m["level"] is None else int(m["level"]), weight, kw))
    return entries


def check_entries(entries: list[RGEntry]) -> None:
    """Unknown dataset names, levels of a dataset without a curriculum and unknown config keys: one line each."""
    from reasoning_gym.factory import CURRICULA, DATASETS

    names = task_names()
    for e in entries:
        if e.name not in names:
            close = difflib.get_close_matches(e.name, names, n=3, cutoff=0.5)
            hint = ("did you mean " + " or ".join(repr(c) for c in close) + "?") if close else \
                f"choose one of: {', '.join(names)}"
            raise ReasoningGymError(f"task.dataset: unknown reasoning_gym task {e.name!r}; {hint}")
        if e.level is not None and e.name not in CURRICULA:
            raise ReasoningGymError(f"task.dataset: reasoning_gym task {e.name!r} has no curriculum, so no @level")
        fields = {f.name for f in dataclasses.fields(DATASETS[e.name][1])} - {"seed", "size"}
        unknown = sorted(set(e.config) - fields)
        if unknown:
            raise ReasoningGymError(f"task.dataset: {e.name}: unknown config keys {unknown}; "
                                    f"{e.name} has {sorted(fields)}")


def make_dataset(name: str, level: int | None, config: dict[str, Any], seed: int, size: int) -> Any:
    """The reasoning-gym dataset of one entry: its curriculum's configuration at ``level`` (else the config
    class's defaults), with ``config`` over it, then the dataset's own ``validate``."""
    from reasoning_gym.factory import DATASETS, create_curriculum

    dataset_cls, config_cls = DATASETS[name]
    if level is None:
        cfg = config_cls(**config, seed=seed, size=size)
    else:
        curriculum = create_curriculum(name)
        curriculum.set_global_level(level)
        cfg = dataclasses.replace(curriculum.generate_configuration({"seed": seed, "size": size}), **config)
    if hasattr(cfg, "validate"):
        cfg.validate()
    return dataset_cls(config=cfg)


def _seed(base: int, split: str, index: int, label: str) -> int:
    return zlib.crc32(f"rg:{base}:{split}:{index}:{label}".encode()) & 0x7FFFFFFF


def _prompts(entry: RGEntry, label: str, split: str, seed: int, size: int) -> list[Prompt]:
    try:
        ds = make_dataset(entry.name, entry.level, entry.config, seed, size)
        items = [ds[i] for i in range(size)]
    except Exception as exc:  # noqa: BLE001 - a bad knob value surfaces in the dataset's own code
        raise ReasoningGymError(f"task.dataset: {label}: reasoning-gym could not build it "
                                f"({type(exc).__name__}: {' '.join(str(exc).split())})") from None
    out = []
    for i, item in enumerate(items):
        key = {"task": entry.name, "level": entry.level, "config": entry.config, "seed": seed, "size": size,
               "index": i}
        out.append(Prompt(f"rg-{label}-{split}-{i:05d}", str(item["question"]), json.dumps(key, sort_keys=True),
                          {"level": label, "task": entry.name, "answer": str(item["answer"])}))
    return out


@dataclass
class RGSuite:
    """Train pool, held-out eval sets per entry and the entry index of every pool prompt (a ``TaskSuite``)."""

    pool: list[Prompt]
    levels: np.ndarray  # [N] entry index per pool prompt
    level_names: list[str]
    eval_sets: dict[str, list[Prompt]]
    heldout: set[str]


def build_rg_suite(spec: str, train_size: int, eval_size: int, seed: int) -> RGSuite:
    """The suite of ``spec``: ``train_size`` pool prompts split over the entries by weight (at least one each),
    ``eval_size`` held-out prompts per entry from other seeds, held-out questions kept out of the pool."""
    _rg()
    entries = parse_spec(spec)
    check_entries(entries)
    labels: list[str] = []
    for e in entries:
        labels.append(e.label if e.label not in labels else f"{e.label}#{labels.count(e.label) + 1}")
    total = sum(e.weight for e in entries)
    pool: list[Prompt] = []
    levels: list[int] = []
    eval_sets: dict[str, list[Prompt]] = {}
    heldout: set[str] = set()
    for li, (e, label) in enumerate(zip(entries, labels)):
        ev = _prompts(e, label, "eval", _seed(seed, "eval", li, label), eval_size)
        held = {p.text for p in ev}
        n = max(1, round(train_size * e.weight / total))
        tr = [p for p in _prompts(e, label, "train", _seed(seed, "train", li, label), n) if p.text not in held]
        eval_sets[label], heldout = ev, heldout | held
        pool += tr
        levels += [li] * len(tr)
    return RGSuite(pool, np.array(levels, dtype=np.int64), labels, eval_sets, heldout)


def eval_prompts(spec: str, size: int, seed: int) -> list[Prompt]:
    """The held-out prompts of ``spec`` (every entry's eval set, in order): ``rollwise eval --data``."""
    suite = build_rg_suite(spec, len(parse_spec(spec)), size, seed)
    return [p for ps in suite.eval_sets.values() for p in ps]


@lru_cache(maxsize=64)
def _dataset(key: str) -> Any:
    k = json.loads(key)
    return make_dataset(k["task"], k["level"], k["config"], k["seed"], k["size"])


@lru_cache(maxsize=4096)
def _entry(key: str, index: int) -> Any:
    return _dataset(key)[index]


def extract_answer(completion: str) -> str:
    """The last ``<answer>...</answer>`` of a completion, else the whole completion, stripped."""
    tagged = _ANSWER.findall(completion)
    return (tagged[-1] if tagged else completion).strip()


def verify_reasoning_gym(completion: str, reference: str) -> VerifyResult:
    """Score ``completion`` with the dataset's own ``score_answer`` on the item ``reference`` names."""
    answer = extract_answer(completion)
    score, task = _score(reference, answer if answer else None)
    return VerifyResult(score, bool(answer), {"task": task, "answer": answer[:200]})


def _score(reference: str, answer: str | None) -> tuple[float, str]:
    """The dataset's own score of ``answer`` on the item ``reference`` names (checked to be in [0, 1])."""
    key = json.loads(reference)
    if not isinstance(key, dict) or not {"task", "level", "config", "seed", "size", "index"} <= set(key):
        raise ValueError(f"not a reasoning_gym reference: {reference[:80]!r}")
    index = int(key.pop("index"))
    dkey = json.dumps(key, sort_keys=True)
    score = _dataset(dkey).score_answer(answer, _entry(dkey, index))
    if isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score) \
            or not 0.0 <= score <= 1.0:
        raise ValueError(f"reasoning_gym {key['task']}: score_answer returned {score!r}, not a number in [0, 1]")
    return float(score), key["task"]


def verify_reasoning_gym_number(completion: str, reference: str) -> VerifyResult:
    """The last tagged answer, else the reply's final number (``final_number``'s reading), scored by the
    dataset's own ``score_answer``; an untagged reply with no number scores 0, unparsed."""
    tagged = _ANSWER.findall(completion)
    if tagged:
        answer, where = tagged[-1].strip(), "tag"
    else:
        value, where = extract_final_number(completion)
        answer = "" if value is None else render_number(value)
    score, task = _score(reference, answer if answer else None)
    return VerifyResult(score, bool(answer), {"task": task, "answer": answer[:200], "where": where})

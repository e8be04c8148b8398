"""The generation-engine protocol: every backend (HF transformers, vLLM, scripted fake) implements it.

``generate(prompts, counts, params)`` samples ``counts[i]`` completions of ``prompts[i]``. Keyword options, all
off by default and free when off (no extra forward output, no extra tensor, no Python call per step):

- ``prefixes[i]``: a :class:`Prefix` of forced completion tokens every sample of prompt ``i`` continues
  (APRIL / AReaL resume, ROSE / LATR branches). The completion returned is prefix + new tokens; the prefix keeps
  its stored logprobs and versions. ``max_new_tokens`` counts the whole completion, so a prefix that reached it
  comes back with finish reason "length" (one that ends in a stop token with "stop") without decoding.
- ``outputs``: an :class:`OutputSpec` asking for top-k logprobs, full-vocab entropy and last-layer hidden
  states per completion token (LATR k=2, ROSE k=20, ARRoL's quality head).
- ``control``: a :class:`StepControl` whose callback sees the live rows every ``every`` decode steps
  (:class:`StepView`) and may abort or prune them (finish reasons "abort" / "pruned", partial tokens kept);
  returning ``Decision.ABORT`` alone aborts the whole call, rows not yet started included (APRIL's "stop once
  enough groups have finished").

Rows: prompt ``i``'s ``j``-th sample is row ``sum(counts[:i]) + j`` of the call (the ``rows`` of a
:class:`StepView`). Fork (LATR's KV copy with a forced token) is not an engine call: branch by continuing from
the prefix ``parent[:t] + [token]`` (prefill recomputes the shared prefix, i.e. prefix caching is emulated).

Behaviour logprobs are log-softmax(logits / temperature) of the token actually sampled, before top-p
truncation, so they equal a teacher-forced forward of the same tokens at the same temperature (the trainer's
convention, as in verl). Greedy decoding (temperature 0) reports logprobs at temperature 1.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol, runtime_checkable

from rollwise.registry import Registry


@dataclass(frozen=True)
class SamplingParams:
    """How to decode."""

    temperature: float = 1.0  # 0 = greedy
    top_p: float = 1.0
    max_new_tokens: int = 16
    stop_token_ids: tuple[int, ...] = ()  # finish (and keep the token) when one is sampled; eos is always one
    seed: int | None = None  # per-call seed; engines derive per-request streams from it for determinism
    #: one noise seed per row of the call (Sol-RL regeneration): row r's uniforms depend on row_seeds[r] alone,
    #: not on its place in the call, so a subset of rows re-drawn in another call (or by another weight copy)
    #: gets the same noise; None = the per-call stream of ``seed``. Only the HF engine honours it (vLLM and the
    #: scripted engine ignore it; the solrl strategy, its user, refuses other engines at load).
    row_seeds: tuple[int, ...] | None = None


FINISH_REASONS = ("stop", "length", "abort", "pruned")
UNKNOWN_VERSION = -1  # the weight version of a prefix token whose version was not stored


@dataclass
class Completion:
    """One sampled continuation (prefix + new tokens when the request continued a :class:`Prefix`).

    The optional per-token outputs are aligned with ``token_ids`` and empty unless asked for (:class:`OutputSpec`);
    prefix positions carry placeholders there (entropy nan, top-k empty), since the engine did not sample them.
    """

    token_ids: list[int]  # completion tokens, including the final eos/stop token when finish_reason == "stop"
    logprobs: list[float]  # behaviour logprob per completion token (the stored ones for a prefix)
    finish_reason: str  # "stop" | "length" | "abort" | "pruned"
    text: str = ""  # decoded completion without special tokens
    versions: list[int] = field(default_factory=list)  # weight version per token (engine.version when sampled)
    topk_ids: list[list[int]] = field(default_factory=list)  # [C][k] most likely tokens of each step
    topk_logprobs: list[list[float]] = field(default_factory=list)  # [C][k] their logprobs (same temperature)
    entropies: list[float] = field(default_factory=list)  # [C] full-vocab entropy of each step's distribution
    hidden: dict[int, Any] = field(default_factory=dict)  # completion position t -> last-layer state [d] at t
    prefix_len: int = 0  # how many leading tokens were forced (the request's prefix)
    meta: dict[str, Any] = field(default_factory=dict)  # strategy metadata (tree: parent, branch position, ...)


@dataclass(frozen=True)
class Prefix:
    """Forced completion tokens a request continues from, with what was recorded when they were sampled."""

    token_ids: list[int]
    logprobs: list[float]  # behaviour logprobs stored with the tokens (kept as they are: IS corrections need mu)
    versions: list[int] | None = None  # weight version per token; None = unknown (UNKNOWN_VERSION)

    def __post_init__(self) -> None:
        if len(self.logprobs) != len(self.token_ids) or (
                self.versions is not None and len(self.versions) != len(self.token_ids)):
            raise ValueError(f"prefix of {len(self.token_ids)} tokens needs as many logprobs (got "
                             f"{len(self.logprobs)}) and versions (got {self.versions and len(self.versions)})")

    def version_list(self) -> list[int]:
        return list(self.versions) if self.versions is not None else [UNKNOWN_VERSION] * len(self.token_ids)


@dataclass(frozen=True)
class OutputSpec:
    """Per-token outputs to return besides tokens and behaviour logprobs (all off by default).

    Top-k and entropy are of the distribution the behaviour logprobs come from: log_softmax(logits / T) at the
    base temperature T (T = 1 when greedy; the raw distribution when T = 1). The hidden state at completion
    position ``t`` is the last layer's output (``output_hidden_states[-1]``) at token ``t``, i.e. the state from
    which token ``t + 1`` is predicted; it exists for ``t <= len - 2`` (the last token is never fed).
    """

    topk: int = 0  # top-k (ids, logprobs) per sampled token; 0 = off
    entropy: bool = False  # full-vocab entropy per sampled token
    hidden_every: int = 0  # hidden state at completion positions k-1, 2k-1, ... (prefix ones too); 0 = off

    def __post_init__(self) -> None:
        if self.topk < 0 or self.hidden_every < 0:
            raise ValueError(f"OutputSpec needs topk >= 0 and hidden_every >= 0, got {self}")


class Decision(Enum):
    """What a step callback decides for a live row."""

    CONTINUE = "continue"
    ABORT = "abort"  # stop now, return the partial completion with finish reason "abort" (to resume later)
    PRUNE = "pruned"  # stop now, finish reason "pruned" (discarded by the caller, e.g. ARRoL)


@dataclass(frozen=True)
class StepView:
    """Read-only view of the live rows handed to a :class:`StepControl` callback after a decode step.

    Rows decode in lockstep within a batch, so every live row has sampled ``step`` new tokens this call. The
    tensors are ``None`` unless the control asked for them; they describe the step just sampled.
    """

    step: int  # new tokens sampled per live row in this call so far (excluding any prefix)
    rows: list[int]  # [b] row ids (prompt i's j-th sample is row sum(counts[:i]) + j)
    groups: list[int]  # [b] prompt index of each row
    tokens: list[list[int]]  # [b] completion so far: prefix + new tokens
    finished: Mapping[int, str]  # every row of the call finished so far -> its finish reason
    total_rows: int  # rows in the whole call
    topk_ids: Any = None  # [b, k] tensor of the step just sampled (control.topk)
    topk_logprobs: Any = None  # [b, k]
    entropy: Any = None  # [b] (control.entropy)
    hidden: Any = None  # [b, d] last-layer state from which the step's token was sampled (control.hidden)


StepCallback = Callable[[StepView], "Decision | Mapping[int, Decision] | None"]


@dataclass(frozen=True)
class StepControl:
    """Call ``callback(view)`` every ``every`` decode steps. It returns ``None`` (all continue), a mapping
    ``row -> Decision`` (missing rows continue), or one ``Decision`` for every live row; ``Decision.ABORT`` alone
    also aborts rows not started yet (they return their prefix, finish reason "abort")."""

    callback: StepCallback
    every: int = 1
    topk: int = 0  # view.topk_* of the step
    entropy: bool = False  # view.entropy
    hidden: bool = False  # view.hidden

    def __post_init__(self) -> None:
        if self.every < 1 or self.topk < 0:
            raise ValueError(f"StepControl needs every >= 1 and topk >= 0, got every={self.every}, topk={self.topk}")


def resolve_decision(answer: Decision | Mapping[int, Decision] | None, rows: list[int]) -> dict[int, Decision]:
    """A callback's answer as ``row -> decision`` for the given live rows (CONTINUE ones left out)."""
    if answer is None:
        return {}
    if isinstance(answer, Decision):
        return {} if answer is Decision.CONTINUE else dict.fromkeys(rows, answer)
    return {r: d for r, d in answer.items() if d is not Decision.CONTINUE}


def prefix_finish(prefix: Prefix | None, max_new_tokens: int, stop: list[int]) -> str | None:
    """The finish reason of a prefix that needs no decoding ("stop" / "length"), else None."""
    if prefix is None:
        return "length" if max_new_tokens <= 0 else None
    toks = prefix.token_ids[:max(max_new_tokens, 0)]
    if toks and toks[-1] in stop:
        return "stop"
    return "length" if len(prefix.token_ids) >= max_new_tokens else None


def prefix_completion(prefix: Prefix | None, max_new_tokens: int, reason: str, outputs: OutputSpec | None,
                      decode: Callable[[list[int]], str]) -> Completion:
    """The completion of a row that is not decoded: its prefix (cut to ``max_new_tokens``) and ``reason``."""
    if prefix is None:
        return Completion([], [], reason, "")
    n = min(len(prefix.token_ids), max(max_new_tokens, 0))  # a prefix longer than the budget is cut to it
    toks = list(prefix.token_ids[:n])
    c = Completion(toks, list(prefix.logprobs[:n]), reason, decode(toks), prefix.version_list()[:n], prefix_len=n)
    return pad_outputs(c, outputs)


def pad_outputs(c: Completion, outputs: OutputSpec | None) -> Completion:
    """Fill the asked-for per-token outputs of the forced positions with placeholders (empty top-k, nan)."""
    if outputs is not None:
        if outputs.topk:
            c.topk_ids = [[] for _ in range(c.prefix_len)] + c.topk_ids
            c.topk_logprobs = [[] for _ in range(c.prefix_len)] + c.topk_logprobs
        if outputs.entropy:
            c.entropies = [float("nan")] * c.prefix_len + c.entropies
    return c


#: the counters of the work a generate call ran (``GenerateStats`` fields, ``ledger/<name>`` cumulated by the trainer),
#: what a projected GPU cost is priced from (cost.py)
WORK_KEYS = ("prefill_tokens", "decode_steps", "decode_row_steps")


@dataclass
class GenerateStats:
    """Counters of one generate call (the trainer's ledger reads them).

    The work counters (``WORK_KEYS``): ``prefill_tokens`` are the real (unpadded) tokens run through a prefill
    forward: prompt + forced prefix of each decoded row, once per shared prefill, a cached part not again;
    ``decode_steps`` the decode-loop forwards (the first new token of a row comes from its prefill, so a row of
    ``n`` new tokens takes ``n - 1`` of them), summed over the engine's internal batches; ``decode_row_steps`` the
    rows in each of those forwards, summed (``decode_row_steps / decode_steps`` is the mean decode batch). The
    HF engine counts them exactly; engines that cannot see their own loop estimate them (:func:`estimate_work`).
    """

    sequences: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    prefill_tokens: int = 0
    decode_steps: int = 0
    decode_row_steps: int = 0


def estimate_work(prompts: list[list[int]], prefixes: list[Prefix | None] | None,
                  out: list[list[Completion]], slots: int) -> dict[str, int]:
    """The work counters of a call for an engine that batches continuously and cannot report its loop (vLLM;
    the scripted engine): a prefill of each distinct prompt + prefix with a decoded row (vLLM's prefix cache
    shares a group's prompt; block granularity and hits across calls are ignored), each row in the batch for its
    ``n - 1`` decode steps (it leaves when done), and ``max(longest row - 1, ceil(row steps / slots))`` steps:
    a lower bound, exact when all rows fit in the ``slots`` (``max_num_seqs``) and run side by side."""
    pre = prefixes if prefixes is not None else [None] * len(prompts)
    heads: set[tuple[int, ...]] = set()
    new = []
    for i, cs in enumerate(out):
        for c in cs:
            n = len(c.token_ids) - c.prefix_len
            if n > 0:
                heads.add((*prompts[i], *(pre[i].token_ids if pre[i] is not None else ())))
                new.append(n)
    row_steps = sum(n - 1 for n in new)
    steps = max(max(new, default=1) - 1, -(-row_steps // max(slots, 1)))
    return {"prefill_tokens": sum(map(len, heads)), "decode_steps": steps, "decode_row_steps": row_steps}


@dataclass(frozen=True)
class ScriptedKnobs:
    default: str = field(default="7", metadata={"doc": "the completion every rollout gets (the scripted engine "
                                                       "chosen in config: a dry run of the loop, no sampling)"})


@dataclass(frozen=True)
class HFEngineKnobs:
    """The hf engine's config knobs (torch-free, for the config; ``batch_size`` comes from ``generation``)."""

    compact: bool = field(default=True, metadata={"doc": "drop finished rows from the decode batch"})
    share_prefill: bool = field(default=True, metadata={"doc": "rows with the same prompt share one prefill"})
    entropy_temperature_tau: float = field(default=0.0, metadata={
        "doc": "HAPO adaptive temperature T (1 + tau h_t) from the last batch's entropy statistics (0 = off; "
               "HAPO: 0.05; needs a loss that measures them, e.g. algo.loss = hapo)", "ge": 0, "lt": 1})
    kv_cache_mb: float = field(default=0.0, metadata={
        "doc": "keep decoded rows' KV cache across calls, up to this many MiB (LRU; 0 = off): APRIL resumes, "
               "LATR/ROSE branches and episode turns prefill only their new tokens; cleared on a weight sync",
        "ge": 0})


@runtime_checkable
class Engine(Protocol):
    """Generates ``counts[i]`` completions for each tokenised prompt ``prompts[i]``."""

    def generate(
        self, prompts: list[list[int]], counts: list[int], params: SamplingParams, *,
        prefixes: list[Prefix | None] | None = None, outputs: OutputSpec | None = None,
        control: StepControl | None = None,
    ) -> list[list[Completion]]:
        """Return, for each prompt, its ``counts[i]`` completions (order matches the input); keyword options as
        in the module docstring (an engine that cannot honour one raises ``NotImplementedError`` saying so)."""
        ...

    def sync_weights(self, model: Any, version: int) -> None:
        """Load the learner's current weights (a no-op when the engine shares the learner's module)."""
        ...

    @property
    def last_stats(self) -> GenerateStats: ...

    # Optional, looked up with getattr (PolicyUpdate.feed): ``observe_update(feedback: dict)`` receives what the
    # last policy update measured (HAPO: ``entropy_norm``); ``samples_off_policy: bool`` says the engine now
    # samples from another distribution than the learner at the configured temperature.


def check_request(prompts: list[list[int]], counts: list[int], params: SamplingParams,
                  prefixes: list[Prefix | None] | None = None) -> None:
    """Reject a malformed generate call the same way in every engine."""
    if len(prompts) != len(counts):
        raise ValueError(f"{len(prompts)} prompts but {len(counts)} counts")
    if prefixes is not None and len(prefixes) != len(prompts):
        raise ValueError(f"{len(prompts)} prompts but {len(prefixes)} prefixes")
    if any(c < 0 for c in counts) or any(c > 0 and not p for p, c in zip(prompts, counts)):
        raise ValueError("counts must be >= 0 and sampled prompts non-empty")
    if params.temperature < 0 or not 0 < params.top_p <= 1:
        raise ValueError(f"need temperature >= 0 and 0 < top_p <= 1, got {params}")
    if params.row_seeds is not None and len(params.row_seeds) != sum(counts):
        raise ValueError(f"row_seeds has {len(params.row_seeds)} seeds for {sum(counts)} rows")


ENGINES: Registry[Any] = Registry("generation engine", knobs_from_entry=False)


def distinct_rows(prompts: list[list[int]]) -> tuple[list[list[int]], list[int]]:
    """The distinct prompts in first-seen order ([U]) and each row's index into them ([B])."""
    slot: dict[tuple[int, ...], int] = {}
    heads: list[list[int]] = []
    index = []
    for p in prompts:
        if (k := tuple(p)) not in slot:
            slot[k] = len(heads)
            heads.append(p)
        index.append(slot[k])
    return heads, index

"""Projected GPU cost of a run's counted work: what the same work would take on a named GPU setup. A projection,
never a measurement: rollwise runs on CPUs; this prices the work it counted with published GPU numbers.

The model (issue 32, item 3), simple enough to check by hand::

    projected_seconds = decode_steps x step_latency(decode_row_steps / decode_steps)   # decode
                      + prefill_tokens / prefill_throughput                             # prefill
                      + 6 x N x trained_tokens / (utilisation x peak_flops)             # training

from the run's cumulative ledger (``ledger/decode_steps``, ``ledger/decode_row_steps``, ``ledger/prefill_tokens``,
``ledger/tokens_trained``; generation/base.py says how the engines count them). ``step_latency`` interpolates a
small table of per-step decode latency against batch size linearly (flat below its first point, the last segment
extended beyond its last). Every parameter is a :class:`Param` holding its value and its source; a value no
publication gives for that GPU and size says "assumed" or "extrapolated" and how it was derived.

What the model leaves out (so the projection is a lower bound of a real run): the old-policy and reference
forwards (2N FLOPs per token each), prompt tokens in the training forward, attention FLOPs (the cited MFU counts
them, 6N does not), weight sync between trainer and vLLM, verification, and any idle time between phases.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

#: the ledger keys a projection reads
LEDGER_KEYS = ("ledger/decode_steps", "ledger/decode_row_steps", "ledger/prefill_tokens", "ledger/tokens_trained")


@dataclass(frozen=True)
class Param:
    """One parameter of a setup: its value and where it comes from."""

    value: float
    source: str


@dataclass(frozen=True)
class ModelCosts:
    """What a model size costs on one setup."""

    name: str
    params: Param  # N, parameters
    decode_latency: tuple[tuple[float, float], ...]  # (batch rows, seconds per decode step), increasing batch
    decode_source: str
    utilisation: Param  # model FLOPs utilisation of bf16 FSDP training
    prefill_tokens_per_s: Param


@dataclass(frozen=True)
class Setup:
    name: str
    description: str
    peak_flops: Param  # dense bf16 FLOP/s of one GPU
    models: Mapping[str, ModelCosts]


@dataclass(frozen=True)
class Projection:
    """The three terms of a projected cost, in seconds on the setup (projected, not measured)."""

    decode_s: float
    prefill_s: float
    train_s: float

    @property
    def total_s(self) -> float:
        return self.decode_s + self.prefill_s + self.train_s


def compute_step_latency(table: tuple[tuple[float, float], ...], batch: float) -> float:
    """Seconds per decode step at mean batch ``batch``: linear in batch between the table's points, flat below the
    first, the last segment extended beyond the last."""
    if batch <= table[0][0] or len(table) == 1:
        return table[0][1]
    for (b0, t0), (b1, t1) in zip(table, table[1:]):
        if batch <= b1:
            return t0 + (t1 - t0) * (batch - b0) / (b1 - b0)
    (b0, t0), (b1, t1) = table[-2], table[-1]
    return t1 + (t1 - t0) * (batch - b1) / (b1 - b0)


def compute_projection(decode_steps: float, decode_row_steps: float, prefill_tokens: float, tokens_trained: float,
                       setup: Setup, model: ModelCosts) -> Projection:
    """The three terms of the formula in the module docstring."""
    mean_batch = decode_row_steps / decode_steps if decode_steps else 0.0
    decode = decode_steps * compute_step_latency(model.decode_latency, mean_batch) if decode_steps else 0.0
    prefill = prefill_tokens / model.prefill_tokens_per_s.value
    train = 6.0 * model.params.value * tokens_trained / (model.utilisation.value * setup.peak_flops.value)
    return Projection(decode, prefill, train)


def project_row(row: Mapping[str, float], setup: Setup, model: ModelCosts) -> Projection:
    """The projection of a metrics row's cumulative ledger (missing counters count 0)."""
    steps, rows, prefill, trained = (float(row.get(k, 0) or 0) for k in LEDGER_KEYS)
    return compute_projection(steps, rows, prefill, trained, setup, model)


# ---------------------------------------------------------------- the setups and their sources
H100_DATASHEET = ("NVIDIA H100 Tensor Core GPU datasheet (nvidia.com/en-us/data-center/h100/), H100 SXM: BF16 "
                  "Tensor Core 1,979 TFLOP/s with 2:4 sparsity, i.e. 989 TFLOP/s dense; HBM3 3.35 TB/s")
PEAK_H100 = 989e12
HBM_H100 = 3.35e12
DECODE_B1 = 2.42e-3
DECODE_B1_SOURCE = (
    "batch 1: vLLM PR #51349 (github.com/vllm-project/vllm/pull/51349), `vllm bench serve` of Qwen2-VL-2B-Instruct "
    "(1.5B-parameter language model) on an H800 (the H100's SMs and HBM3) at concurrency 1: median TPOT 2.42 ms; "
    "taken for every size here (extrapolated: at batch 1 a sub-2B model's step is bound by launch and scheduling "
    "overhead, its weights are read in < 1 ms, so a smaller model is not faster). Batch 256: assumed, a roofline "
    "increment over batch 1 of 256 x 2N FLOPs at 50% of peak plus the KV reads of 256 rows x 512 positions at "
    "3.35 TB/s; no published per-step latency at batch 256 was found for these sizes on an H100")
FOUNDRY = ("llm-foundry scripts/train/benchmarking/README.md (github.com/mosaicml/llm-foundry), table 'H100 80GB "
           "BF16', FSDP FULL_SHARD, 8 GPUs")


def _decode_table(n_params: float, kv_bytes_per_token: float) -> tuple[tuple[float, float], ...]:
    """(1, 2.42 ms) and (256, 2.42 ms + the roofline increment of DECODE_B1_SOURCE)."""
    extra = 256 * 2 * n_params / (0.5 * PEAK_H100) + 256 * 512 * kv_bytes_per_token / HBM_H100
    return (1.0, DECODE_B1), (256.0, DECODE_B1 + extra)


def _model(name: str, n: float, n_source: str, kv_bytes: float, mfu: float, mfu_source: str) -> ModelCosts:
    return ModelCosts(
        name, Param(n, n_source), _decode_table(n, kv_bytes), DECODE_B1_SOURCE, Param(mfu, mfu_source),
        Param(mfu * PEAK_H100 / (2 * n), f"assumed: a prefill forward runs at the training utilisation, "
                                         f"{mfu:.4f} x 989e12 / (2 x N) tokens/s; no published batched-prefill "
                                         "throughput found for this size on an H100"))


MFU_760M = 0.3976
MFU_1B = 0.4195
MFU_135M = round(MFU_760M * 43.15 / 47.76, 4)  # H100 760m scaled by A100's 125m/760m ratio at seq 1024
H100_VLLM_FSDP = Setup(
    "h100-vllm-fsdp", "one H100 SXM 80GB: vLLM for rollouts, FSDP bf16 for training",
    Param(PEAK_H100, H100_DATASHEET),
    {
        "tiny": _model(
            "tiny", 801_280, "counted: rollwise.train.model.build_tiny_model defaults (4 layers, hidden 128)",
            2 * 4 * 2 * 32 * 2, MFU_135M,
            "assumed: SmolLM2-135M's value; a 0.8M-parameter model cannot keep an H100 busy, so this (and the "
            "whole projection for it) is a lower bound, for checking the arithmetic only"),
        "smollm2-135m": _model(
            "smollm2-135m", 134_515_008, "SmolLM2-135M config (30 layers, hidden 576, 9 heads, 3 KV heads of 64)",
            2 * 30 * 3 * 64 * 2, MFU_135M,
            f"extrapolated: {FOUNDRY} has no row below 760m; its 760m MFU 39.76% (seq 1024) scaled by the A100 "
            "table's 125m/760m ratio at seq 1024 (43.15% / 47.76%) = 35.92%"),
        "qwen2.5-0.5b": _model(
            "qwen2.5-0.5b", 494_032_768, "Qwen2.5-0.5B model card: 0.49B (24 layers, 2 KV heads of 64)",
            2 * 24 * 2 * 64 * 2, MFU_760M,
            f"{FOUNDRY}: MPT 760m, seq 1024, MFU 39.76% (the nearest size; taken for 0.49B unchanged)"),
        "qwen2.5-1.5b": _model(
            "qwen2.5-1.5b", 1_543_714_304, "Qwen2.5-1.5B model card: 1.54B (28 layers, 2 KV heads of 128)",
            2 * 28 * 2 * 128 * 2, MFU_1B, f"{FOUNDRY}: MPT 1b (1.31B), seq 1024, MFU 41.95%"),
    },
)
SETUPS: dict[str, Setup] = {H100_VLLM_FSDP.name: H100_VLLM_FSDP}


def get_setup(name: str) -> Setup:
    if name not in SETUPS:
        raise ValueError(f"unknown cost setup {name!r} (known: {', '.join(SETUPS)})")
    return SETUPS[name]


def get_model(setup: Setup, name: str) -> ModelCosts:
    if name not in setup.models:
        raise ValueError(f"setup {setup.name!r} prices no model {name!r} (known: {', '.join(setup.models)})")
    return setup.models[name]


def guess_model(text: str) -> str:
    """The priced model size a model name or path mentions ('tiny' when none): smollm2 / 0.5b / 1.5b."""
    t = text.lower()
    for key, name in (("smollm2", "smollm2-135m"), ("0.5b", "qwen2.5-0.5b"), ("1.5b", "qwen2.5-1.5b")):
        if key in t:
            return name
    return "tiny"


def describe(setup: Setup, model: ModelCosts) -> list[str]:
    """Every parameter of a priced model with its value and source, one line each."""
    table = ", ".join(f"{b:g} rows {t * 1e3:.3f} ms" for b, t in model.decode_latency)
    return [f"setup {setup.name}: {setup.description}", f"peak FLOP/s {setup.peak_flops.value:.4g}: "
            f"{setup.peak_flops.source}", f"N = {model.params.value:,.0f} parameters: {model.params.source}",
            f"decode step latency ({table}): {model.decode_source}",
            f"utilisation {model.utilisation.value:.4f}: {model.utilisation.source}",
            f"prefill {model.prefill_tokens_per_s.value:,.0f} tokens/s: {model.prefill_tokens_per_s.source}"]

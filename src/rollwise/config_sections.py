"""The plain config sections (run, async, ray, model): no registered components, so no registry imports.
``rollwise.config_models`` assembles them with the component sections into ``Config``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, validate_default=True)


class RunConfig(_Section):
    name: str = Field("tiny", description="run name; the run directory is out_dir/name")
    out_dir: str = Field("runs", description="parent directory of run directories")
    seed: int = Field(0, description="global seed: tasks, init, sampling, dropout")
    device: str = Field("auto", description="torch device: auto | cpu | cuda | cuda:N")
    threads: int = Field(0, ge=0, description="torch CPU threads (0 = all available cores)")
    mode: Literal["sync", "async"] = Field("sync", description="sync: generate, then train, in one process; "
                                           "async: rollout workers on Ray generate while the trainer trains")


class AsyncConfig(_Section):
    """``[async]``: asynchronous off-policy training (``run.mode = "async"``, AReaL-style)."""

    max_staleness: int = Field(1, ge=0, description="eta: a step's rollouts start at most this many weight "
                               "versions before the step trains (0 = synchronous semantics)")
    workers: int = Field(1, ge=1, description="rollout workers (Ray actors, each with its own engine)")
    worker_threads: int = Field(1, ge=1, description="torch CPU threads per rollout worker")
    interrupt: bool = Field(True, description="abort generation at a weight update and resume the partial "
                            "rollouts under the new weights (tokens keep the version that sampled them)")
    weight_sync: Literal["object_store", "collective"] = Field("object_store", description="how weights reach "
                                                               "workers: Ray's object store, or a torch.distributed "
                                                               "broadcast (NCCL on GPU, gloo on CPU)")


class RayConfig(_Section):
    """``[ray]``: where the async mode's Ray runs."""

    address: str | None = Field(None, description="None starts Ray locally (loopback only); 'auto' or "
                                "host:port joins a cluster started with `ray start`")
    num_cpus: int | None = Field(None, ge=1, description="CPUs of a local Ray (None = all)")


class ModelConfig(_Section):
    path: str | None = Field(None, description="local HF checkpoint dir; None builds the embedded tiny Qwen2")
    layers: int = Field(4, ge=1, description="embedded model: transformer layers")
    hidden: int = Field(128, ge=8, description="embedded model: hidden size")
    heads: int = Field(4, ge=1, description="embedded model: attention heads")
    kv_heads: int = Field(2, ge=1, description="embedded model: key/value heads (GQA)")
    intermediate: int = Field(384, ge=8, description="embedded model: MLP width")
    tie_embeddings: bool = Field(True, description="embedded model: share input and output embeddings")
    dtype: Literal["float32", "bfloat16", "float16"] = Field("float32", description="parameter dtype")
    gradient_checkpointing: bool = Field(False, description="recompute activations in backward to save memory")
    lora_rank: int = Field(0, ge=0, description="LoRA rank via peft (0 = full fine-tuning)")
    lora_alpha: float = Field(16.0, description="LoRA alpha")
    lora_targets: list[str] = Field(["q_proj", "k_proj", "v_proj", "o_proj"], description="LoRA target modules")

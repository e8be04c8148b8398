"""Generation engines behind one protocol. Heavy backends are registered lazily and imported on use."""

from rollwise.generation.base import ENGINES, Completion, Engine, GenerateStats, SamplingParams

ENGINES.register("hf", "rollwise.generation.hf:HFEngine")
ENGINES.register("scripted", "rollwise.generation.scripted:ScriptedEngine")
ENGINES.register("vllm", "rollwise.generation.vllm:VLLMEngine")

__all__ = ["ENGINES", "Completion", "Engine", "GenerateStats", "SamplingParams"]

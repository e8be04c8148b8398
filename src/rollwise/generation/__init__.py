"""Generation engines behind one protocol. Heavy backends are registered lazily and imported on use."""

from rollwise.generation.base import (
    ENGINES,
    Completion,
    Decision,
    Engine,
    GenerateStats,
    HFEngineKnobs,
    OutputSpec,
    Prefix,
    SamplingParams,
    StepControl,
    StepView,
)

ENGINES.register("hf", "rollwise.generation.hf:HFEngine", config=HFEngineKnobs)
ENGINES.register("scripted", "rollwise.generation.scripted:ScriptedEngine")
ENGINES.register("vllm", "rollwise.generation.vllm:VLLMEngine")

__all__ = ["ENGINES", "Completion", "Decision", "Engine", "GenerateStats", "OutputSpec", "Prefix", "SamplingParams",
           "StepControl", "StepView"]

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
    ScriptedKnobs,
    StepControl,
    StepView,
)
from rollwise.generation.strategy import STRATEGIES, PlainStrategy, RolloutStrategy, StrategyResult

ENGINES.register("hf", "rollwise.generation.hf:HFEngine", config=HFEngineKnobs)
ENGINES.register("scripted", "rollwise.generation.scripted:build_scripted_engine", config=ScriptedKnobs)
ENGINES.register("vllm", "rollwise.generation.vllm:VLLMEngine")
ENGINES.register("vllm_async", "rollwise.generation.vllm_async:AsyncVLLMEngine")
STRATEGIES.register("plain", PlainStrategy)
STRATEGIES.register("latr", "rollwise.generation.latr:LatrStrategy")
STRATEGIES.register("rose", "rollwise.generation.rose:RoseStrategy")
STRATEGIES.register("april", "rollwise.generation.april:AprilStrategy")
STRATEGIES.register("arrol", "rollwise.generation.arrol:ArrolStrategy")
STRATEGIES.register("etmr", "rollwise.generation.etmr:EtmrStrategy")
STRATEGIES.register("solrl", "rollwise.generation.solrl:SolrlStrategy")
STRATEGIES.register("props", "rollwise.generation.props:PropsStrategy")

__all__ = ["ENGINES", "STRATEGIES", "Completion", "Decision", "Engine", "GenerateStats", "OutputSpec", "Prefix",
           "RolloutStrategy", "SamplingParams", "StepControl", "StepView", "StrategyResult"]

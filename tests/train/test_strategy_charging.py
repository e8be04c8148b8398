"""What a rollout strategy's completions cost: the decoded tokens (a tree branch's shared prefix is charged with
its parent; a resumed partial's earlier tokens when its group comes back, ``meta["uncharged_prefix"]``), plus what
it generated and dropped (pruned rollouts, ``discarded_*``); the budget and ``generated_tokens`` see all of it."""

from __future__ import annotations

from dataclasses import replace

from rollwise.generation import SamplingParams, StrategyResult
from rollwise.generation.scripted import ScriptedEngine
from rollwise.generation.strategy import RolloutStrategy
from rollwise.rewards import VerifierPool
from rollwise.sampler_tables import build_pipeline
from rollwise.sampling import Budget
from rollwise.train.rollout import RolloutCollector
from rollwise.types import Prompt

POOL = [Prompt("a", "A?", "12"), Prompt("b", "B?", "7")]


class Rewrite(RolloutStrategy):
    """Plain sampling, then: prompt 0's first completion marked as a branch with a 2-token shared prefix, its
    second as a resumed partial with 3 earlier uncharged tokens; and 2 pruned rollouts of 5 tokens dropped."""

    def generate(self, engine, keys, prompts, counts, params, *, step):
        out = engine.generate(prompts, counts, params)
        out[0][0] = replace(out[0][0], prefix_len=2)
        out[0][1] = replace(out[0][1], prefix_len=3, meta={"uncharged_prefix": 3})
        return StrategyResult(out, discarded_rollouts=2, discarded_tokens=10)


def test_budget_and_generated_tokens_count_decoded_and_dropped_tokens(tokenizer):
    engine = ScriptedEngine({"A?": ["12"], "B?": ["7"]}, tokenizer=tokenizer)
    collector = RolloutCollector(engine, VerifierPool("synthetic_int", timeout_s=2.0), POOL, tokenizer.encode,
                                 SamplingParams(max_new_tokens=16), strategy=Rewrite())
    pipe = build_pipeline(preset="uniform", pool_size=2, group_size=2, batch_prompts=2, total_steps=3, seed=0)
    budget = Budget(100)
    got = collector.collect(pipe, 0, budget, seed=0, version=0)
    lengths = [r.num_tokens for rs in got.rollouts.values() for r in rs]
    assert got.num_rollouts == 4 and got.num_tokens == sum(lengths)
    # decoded: every completion's tokens, less the branch's 2 shared prefix tokens (the resumed partial's 3
    # earlier tokens are charged now, so its prefix counts in full)
    assert got.generated_tokens == sum(lengths) - 2
    assert (got.discarded_rollouts, got.discarded_tokens) == (2, 10)
    assert budget.spent_rollouts == 4 + 2 and budget.spent_tokens == got.generated_tokens + 10

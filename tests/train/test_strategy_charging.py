"""What a rollout strategy's completions cost: the tokens the engine decoded, counted where they are decoded (the
engine wrapper every strategy generates through), whatever the strategy returns, drops, shares or resumes; and,
for every registered strategy, ``ledger/tokens`` of a training run equals the tokens the engine itself reported
decoding (``last_stats.completion_tokens`` of each call), and the ``ledger/`` work counters (prefill tokens, decode
steps, decode row-steps) the engine's own counts of them."""

from __future__ import annotations

from dataclasses import replace

import pytest

from rollwise.generation import STRATEGIES, Prefix, SamplingParams, StrategyResult
from rollwise.generation.base import WORK_KEYS
from rollwise.generation.scripted import ScriptedEngine
from rollwise.generation.strategy import CountingEngine, RolloutStrategy
from rollwise.rewards import VerifierPool
from rollwise.sampler_tables import build_pipeline
from rollwise.sampling import Budget
from rollwise.train.rollout import RolloutCollector
from rollwise.train.trainer import Trainer
from rollwise.types import Prompt

POOL = [Prompt("a", "A?", "12"), Prompt("b", "B?", "7")]


class Rewrite(RolloutStrategy):
    """Three engine calls: a 3-token partial of prompt 0 (decoded, then thrown away), prompt 0 continued from a
    forced 2-token prefix, and plain samples of both prompts; prompt 0's first completion is then mislabelled as a
    branch with a 5-token shared prefix, and 2 pruned rollouts of 5 tokens are reported. None of it changes the
    charge: the engine's count is all that is charged."""

    def generate(self, engine, keys, prompts, counts, params, *, step):
        engine.generate([prompts[0]], [1], replace(params, max_new_tokens=3))  # "12" + eos: 3 decoded, dropped
        (resumed,), = engine.generate([prompts[0]], [1], params, prefixes=[Prefix([5, 6], [-1.0, -1.0])])
        out = engine.generate(prompts, counts, params)
        out[0][0] = replace(out[0][0], prefix_len=5)
        out[0][1] = resumed
        return StrategyResult(out, discarded_rollouts=2, discarded_tokens=10)


def test_budget_and_decoded_tokens_are_the_engines_count(tokenizer):
    engine = ScriptedEngine({"A?": ["12"], "B?": ["7"]}, tokenizer=tokenizer)
    collector = RolloutCollector(engine, VerifierPool("synthetic_int", timeout_s=2.0), POOL, tokenizer.encode,
                                 SamplingParams(max_new_tokens=16), strategy=Rewrite())
    pipe = build_pipeline(preset="uniform", pool_size=2, group_size=2, batch_prompts=2, total_steps=3, seed=0)
    budget = Budget(100)
    got = collector.collect(pipe, 0, budget, seed=0, version=0)
    assert got.num_rollouts == 4
    # by hand: "12"+eos cut at 3 = 3; after the prefix [5, 6], "12"+eos is 3 tokens, of which the script's tokens
    # after position 2 are new: 1 (the eos); plain: 3 + 3 ("12"+eos twice) + 2 + 2 ("7"+eos twice) = 10
    assert got.decoded_tokens == 3 + 1 + 10 == 14
    assert (got.discarded_rollouts, got.discarded_tokens) == (2, 10)  # reported, not charged again
    assert budget.spent_rollouts == 4 + 2 and budget.spent_tokens == 14


class Spy:
    """The run's engine, wrapped: sums the engine's own ``last_stats.completion_tokens`` and work counters after
    every call."""

    def __init__(self, engine):
        self.engine, self.decoded, self.calls = engine, 0, 0
        self.work = dict.fromkeys(WORK_KEYS, 0)

    def __getattr__(self, name):
        return getattr(self.engine, name)

    def generate(self, *args, **kwargs):
        out = self.engine.generate(*args, **kwargs)
        self.decoded += self.engine.last_stats.completion_tokens
        for k in WORK_KEYS:
            self.work[k] += getattr(self.engine.last_stats, k)
        self.calls += 1
        return out


# what makes each strategy act within 3 smoke steps (its own signature is tested in tests/generation)
EXTRA = {"latr": ['--generation.strategy={type="latr",tau_abs=-1.0}'],  # branches at every step: a deep tree
         "april": ['--generation.strategy={type="april",over_sample=2.0}'],
         "arrol": ['--generation.strategy={type="arrol",warmup=0}']}


@pytest.mark.parametrize("name", STRATEGIES.names())
def test_ledger_tokens_equal_the_tokens_the_engine_decoded(name, smoke_cfg, monkeypatch):
    """Every registered strategy (a new one is covered on registration): 3 steps on the smoke config with the
    trainer's rollout engine wrapped; ``ledger/tokens`` equals the engine's reported count plus what the strategy
    decoded on an engine of its own and charged (Sol-RL's int8 copy, PROPS's behaviour copy), and so does the
    budget of the last step. LATR with tau_abs = -1 used to charge 0 tokens; APRIL charged partials only when
    their group came back, so tokens left in its buffer were never charged."""
    charged: list[int] = []
    work = dict.fromkeys(WORK_KEYS, 0)  # what the strategies' own engines ran, charged with their tokens
    charge = CountingEngine.charge

    def spy_charge(self, n, stats=None):
        charged.append(int(n))
        for k in WORK_KEYS:
            work[k] += getattr(stats, k) if stats is not None else 0
        return charge(self, n, stats)

    monkeypatch.setattr(CountingEngine, "charge", spy_charge)
    cfg = smoke_cfg(f"--run.name=ledger_{name}", "--trainer.steps=3", "--trainer.eval_every=0",
                    "--trainer.checkpoint_every=0", "--run.threads=1",
                    *EXTRA.get(name, [f"--generation.strategy={name}"]))
    trainer = Trainer(cfg)
    spy = Spy(trainer.collector.engine)
    trainer.collector.engine = spy
    trainer.train()
    assert spy.calls >= 3 and spy.decoded > 0
    assert trainer.ledger["ledger/tokens"] == spy.decoded + sum(charged)
    # and the work counters (prefill tokens, decode steps, row-steps) are the engines' own counts too
    assert {k: trainer.ledger[f"ledger/{k}"] for k in WORK_KEYS} == {k: spy.work[k] + work[k] for k in WORK_KEYS}
    assert all(spy.work[k] > 0 for k in WORK_KEYS)
    assert (sum(charged) > 0) == (name in ("solrl", "props"))  # only they decode on an engine of their own

"""ETMR, ETTRL's entropy-fork tree rollout (arXiv:2508.11356): fork points, the leaf plan, the tree's prefixes
and its token cost against parallel sampling, on the scripted engine (hand-computed) and the HF engine."""

from __future__ import annotations

import pytest

from rollwise.generation import STRATEGIES, SamplingParams
from rollwise.generation.etmr import EtmrStrategy, compute_branch_plan, compute_fork_positions
from rollwise.generation.scripted import ScriptedEngine
from rollwise.generation.strategy import CountingEngine

PATH = [10, 11, 12, 13, 14, 15, 16, 17, 18, 19]  # 10 tokens per uninterrupted completion
ENTROPY = [0.1, 0.5, 0.2, 0.9, 0.3, 0.3, 0.8, 0.0, 0.1, 0.2]  # top-2: positions 3 and 6


def engine() -> ScriptedEngine:
    def script(prompt, j, call):
        return PATH, [-(call + 1.0)] * len(PATH), "length"

    def step_fn(tokens, pos, k):
        return [tokens[pos]] + [-1] * (k - 1), [0.0] + [float("-inf")] * (k - 1), ENTROPY[pos], [0.0] * 4

    return ScriptedEngine(script, step_fn=step_fn)


def test_fork_positions_and_branch_plan_by_hand():
    assert compute_fork_positions(ENTROPY, 2) == [3, 6]
    assert compute_fork_positions([0.5, 0.5, 0.1], 2) == [0, 1]  # ties: earliest
    assert compute_fork_positions([0.4], 3) == [0, 0, 0]  # a 1-token root: the missing forks restart at 0
    assert compute_branch_plan(15, 3, 2, 2) == [[2, 2], [2, 2], [2, 2]]
    assert compute_branch_plan(16, 4, 2, 2) == [[2, 2], [2, 2], [2, 2], [0, 0]]  # 4 trees for 16 leaves
    assert compute_branch_plan(7, 2, 2, 2) == [[2, 2], [1, 0]]


def test_trees_fork_at_the_top_entropy_tokens_and_cost_less():
    eng = CountingEngine(engine())
    s = EtmrStrategy(forks=2, branches=2)
    (leaves,) = s.generate(eng, [0], [[1, 2]], [15], SamplingParams(max_new_tokens=10, seed=3), step=0).completions
    assert len(leaves) == 15  # 3 trees x (1 + 2 x 2)
    roots = [c for c in leaves if c.meta["parent"] < 0]
    assert len(roots) == 3 and [c.meta["node"] for c in roots] == [0, 5, 10]
    tree0 = leaves[:5]
    assert [c.meta["branch_pos"] for c in tree0] == [0, 3, 3, 6, 6]
    assert all(c.meta["parent"] == 0 and c.meta["tree"] == 0 for c in tree0[1:])
    assert tree0[1].logprobs == [-1.0] * 3 + [-2.0] * 7  # the root's stored logprobs on the prefix
    assert [h.counts for h in eng.engine.history] == [[3], [2, 2, 2, 2, 2, 2]]  # roots, then all forks at once
    # decoded: 3 roots x 10 + per tree 2 x (10 - 3) + 2 x (10 - 6) = 30 + 3 x 22 = 96 of parallel's 150
    assert eng.decoded == 96
    assert 96 / 150 == pytest.approx(0.64)  # forks at 3/10 and 6/10: the paper's 0.6 for uniform forks
    m = s.metrics()
    assert m["etmr_leaves_per_tree"] == 5.0 and m["etmr_prefix_share"] == pytest.approx(54 / 150)
    assert s.state_dict() == {"trees": 3}


def test_needs_entropies_and_is_registered():
    class NoEntropy(ScriptedEngine):
        def generate(self, *a, **k):
            out = super().generate(*a, **k)
            for cs in out:
                for c in cs:
                    c.entropies = []
            return out

    with pytest.raises(ValueError, match="entropies"):
        EtmrStrategy().generate(NoEntropy(lambda p, j, c: (PATH, [0.0] * 10, "length")), [0], [[1]], [5],
                                SamplingParams(max_new_tokens=10, seed=0), step=0)
    assert STRATEGIES.get("etmr") is EtmrStrategy

"""SCOPE's transform (``scope``): which failures are rectified, the group it hands the estimator, its counters,
and that the stats store learns from the policy's own rewards. The PRM and splice are lent (scripted here)."""

from __future__ import annotations

import numpy as np

from rollwise.sampling import Budget, GroupObs, PromptStats, RescueSources, SampleContext
from rollwise.sampling.scope import ScopeRectify


def _ctx() -> SampleContext:
    return SampleContext(0, 10, 4, 2, PromptStats(4), np.random.default_rng(0), Budget(100))


def _scripted():
    """judge: a step per character, right while it matches '1234'; splice: verified when k >= 1."""
    calls = []

    def judge(p, text):
        return list(range(len(text))), [float(i < 4 and c == "1234"[i]) for i, c in enumerate(text)]

    def splice(p, r, k, char):
        calls.append((p, r, k, char))
        return (f"fixed:{r}", 1.0 if k >= 1 else 0.0, "1234", 5, -0.1)

    return RescueSources(rectifier=lambda prm: (judge, splice)), calls


def _pool(p, rewards, texts):
    r = np.asarray(rewards, dtype=np.float64)
    return GroupObs(p, r, np.full(len(r), 4), np.zeros(len(r)), payload=[f"r{p}{i}" for i in range(len(r))],
                    texts=texts)


def test_rectifies_the_longest_correct_prefix_and_counts():
    src, calls = _scripted()
    t = ScopeRectify()
    t.bind(src)
    # prompt 0, all failed: "1299" (k=2 of 4), "1239" (k=3), "9999" (k=0 < 0.3*4: not eligible)
    # prompt 1, mixed: "1294" (k=2) twice, one success; prompt 2: "9234" only: k=0, not eligible
    # prompt 3, mixed with one failure: left alone (salvaging it would leave the group without contrast)
    pools = [_pool(0, [0, 0, 0], ["1299", "1239", "9999"]), _pool(1, [0, 0, 1], ["1294", "1294", "1234"]),
             _pool(2, [0, 0], ["9234", "9234"]), _pool(3, [1, 0], ["1234", "1239"])]
    t.on_generated(_ctx(), pools)
    assert [c[1:] for c in calls] == [("r01", 3, 3), ("r10", 2, 2)]  # one per group, longest prefix first
    assert pools[0].rewards.tolist() == [0, 1, 0] and pools[0].payload[1] == "fixed:r01"
    assert pools[0].texts[1] == "1234" and pools[0].lengths.tolist() == [4, 5, 4]
    assert pools[0].own_rewards.tolist() == [0, 0, 0]  # what the stats store learns from
    assert pools[1].rewards.tolist() == [1, 0, 1] and pools[2].own_rewards is None and pools[3].own_rewards is None
    m = t.metrics()
    assert (m["failed"], m["eligible"], m["rectified"], m["salvaged"], m["groups_unlocked"]) == (8, 5, 2, 2, 1)
    assert m["salvage_rate"] == 2 / 8


def test_unverified_splice_is_rejected_and_group_kept():
    src, _ = _scripted()
    t = ScopeRectify(min_prefix_share=0.0)
    t.bind(src)
    pools = [_pool(0, [0, 0, 0], ["9999", "9999", "9999"])]  # k = 0: the scripted splice does not verify
    t.on_generated(_ctx(), pools)
    assert pools[0].rewards.tolist() == [0, 0, 0] and pools[0].own_rewards is None
    assert t.metrics()["rejected"] == 3 and t.metrics()["salvaged"] == 0  # each candidate tried in turn


def test_only_all_failed_and_whole_arm():
    src, calls = _scripted()
    t = ScopeRectify(only_all_failed=True, splice="whole", leave_failure=False)
    t.bind(src)
    pools = [_pool(0, [0, 1], ["1299", "1234"]), _pool(1, [0, 0], ["9999", "1299"])]
    t.on_generated(_ctx(), pools)
    # mixed group left alone; whole replacement splices from step 0 (and the scripted splice rejects k = 0)
    assert [c[2:] for c in calls] == [(0, 0), (0, 0)]
    assert t.metrics()["rectified"] == 2


def test_pipeline_stats_learn_the_policy_rewards():
    from rollwise.sampler_tables import build_pipeline

    src, _ = _scripted()
    pipe = build_pipeline(transform={"type": "scope"}, batch_prompts=1, group_size=2, pool_size=4,
                          total_steps=3, seed=0, sources=src)
    pipe.begin_step(0, Budget(100))
    pools = {0: _pool(0, [0, 0], ["1239", "1299"])}
    plan = pipe.finalize(pools)
    assert len(plan.groups) == 1 and plan.groups[0].advantages[0] > 0  # the salvaged rollout leads the group
    pipe.observe(pools, plan.groups)
    assert pipe.stats.successes[0] == 0 and pipe.stats.attempts[0] == 2

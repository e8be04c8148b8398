"""PrefixRL (the ``prefix_rl`` transform): which prompts get a prefix, of which trace (own vs reference), how h
moves, that a prompt's step pool is one context across rounds, the rescued count, resume, the arithmetic
reference traces, and the preset through the CLI."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from rollwise.sampler_tables import build_pipeline
from rollwise.sampling import Budget, GroupObs, PromptContext, PromptStats, RescueSources, SampleContext
from rollwise.sampling.prefix_rl import PrefixRL, compute_next_share, compute_prefix_length
from rollwise.train.rescue import arith_trace

ROOT = Path(__file__).resolve().parents[2]
TRACES = ["#11|125", "#0|9", None, "+10|14", "#1|50", "x"]


def _ctx(step: int = 0, seed: int = 0) -> SampleContext:
    return SampleContext(step, 10, 4, 2, PromptStats(6), np.random.default_rng(seed), Budget(100))


def _pool(p: int, rewards: list[float], texts: list[str] | None = None) -> GroupObs:
    r = np.asarray(rewards, dtype=np.float64)
    return GroupObs(p, r, np.ones(len(r), dtype=np.int64), texts=texts or [f"t{p}{i}" for i in range(len(r))])


def _stuck(source: str = "both", **knobs) -> PrefixRL:
    """Prompts 0, 2, 3, 5 stuck (4 plain failures), 1 too few failures, 4 solved plain."""
    t = PrefixRL(**({"source": source, "plain_share": 0.0} | knobs))
    t.bind(RescueSources(traces=TRACES))
    t.observe(_ctx(), [_pool(p, [0, 0, 0, 0]) for p in (0, 2, 3, 5)] + [_pool(1, [0, 0, 0]),
                                                                       _pool(4, [0, 1, 0, 0])], [])
    return t


def test_prefix_length_and_schedule_by_hand():
    assert [compute_prefix_length(s, 7) for s in (0.0, 0.25, 0.5, 0.9, 1.0)] == [1, 1, 3, 6, 6]
    assert compute_prefix_length(0.5, 1) == 0  # a one-character trace cannot be cut
    assert compute_next_share(0.5, 0.5, 0.25, 0.5, 0.9) == 0.25  # pass rate at the bar: less help
    assert compute_next_share(0.5, 0.0, 0.25, 0.5, 0.9) == 0.75  # all wrong: more help
    assert compute_next_share(0.75, 0.0, 0.25, 0.5, 0.9) == 0.9  # capped
    assert compute_next_share(0.5, 0.25, 0.25, 0.5, 0.9) == 0.5  # in between: unchanged
    assert compute_next_share(0.1, 1.0, 0.25, 0.5, 0.9) == 0.0


def test_only_stuck_prompts_with_a_trace_get_a_prefix():
    t = _stuck()
    out = t.contexts(np.arange(6), {}, _ctx(1))
    assert out[0] == PromptContext(answer_prefix="#11", tag="prefix:3/7")  # floor(0.5 * 7) = 3
    assert out[1] is None  # 3 failures < min_failures
    assert out[2] is None  # stuck, but no trace
    assert out[3] == PromptContext(answer_prefix="+10", tag="prefix:3/6")
    assert out[4] is None  # solved plain
    assert out[5] is None  # a one-character trace
    m = t.metrics()
    assert m["prefixed"] == 2 and m["h_share_mean"] == pytest.approx((3 / 7 + 3 / 6) / 2) and m["stuck"] == 4


def test_plain_share_keeps_some_stuck_prompts_plain():
    t = PrefixRL(plain_share=1.0)
    t.bind(RescueSources(traces=TRACES))
    t.observe(_ctx(), [_pool(0, [0, 0, 0, 0])], [])
    assert t.contexts(np.array([0]), {}, _ctx(1)) is None


def test_h_shrinks_after_a_good_prefixed_pool_and_grows_after_an_all_wrong_one():
    t = _stuck()
    t.contexts(np.array([0, 3]), {}, _ctx(1))
    t.observe(_ctx(1), [_pool(0, [1, 1, 0, 0]), _pool(3, [0, 0, 0, 0])], [])  # 0: pass 0.5; 3: all wrong
    out = t.contexts(np.array([0, 3]), {}, _ctx(2))
    assert out[0].answer_prefix == "#"  # share 0.25: floor(1.75) = 1
    assert out[1].answer_prefix == "+10|"  # share 0.75: floor(4.5) = 4
    assert 0 in t._stuck  # a prefixed success does not un-stick a prompt: only a plain one does


def test_own_success_is_preferred_unless_the_source_is_reference():
    for source, want in (("both", "#1"), ("own", "#1"), ("reference", "+10")):
        t = _stuck(source)
        t.observe(_ctx(), [_pool(3, [0, 1, 0, 0], ["a", "#1|96", "b", "c"])], [])  # solved plain once ...
        t.observe(_ctx(), [_pool(3, [0, 0, 0, 0])], [])  # ... then stuck again
        out = t.contexts(np.array([3, 0]), {}, _ctx(1))
        assert out[0].answer_prefix == want  # floor(0.5 * 5) = 2 of the own trace "#1|96"
        assert (out[1] is None) == (source == "own")  # no own success for prompt 0: only the reference
        assert t.metrics()["from_own"] == (source != "reference")


def test_a_prompts_pool_is_one_context_across_rounds():
    # XRPO's phased allocator asks for three rounds; a prompt keeps its first-round context in all of them
    pipe = build_pipeline(preset="prefix_rl", allocator="xrpo", transform={"type": "prefix_rl", "plain_share": 0.5},
                          pool_size=6, group_size=8, batch_prompts=6, total_steps=10, seed=0,
                          sources=RescueSources(traces=TRACES))
    stats_pools = {p: _pool(p, [0] * 8) for p in range(6)}
    pipe.stats.update(np.arange(6), [p.rewards for p in stats_pools.values()], 0)
    pipe.transform.observe(_ctx(), list(stats_pools.values()), [])
    for step in range(1, 4):
        seen: dict[int, object] = {}
        req = pipe.begin_step(step, Budget(48))
        pools: dict[int, GroupObs] = {}
        while req is not None and len(req):
            for i, (p, c) in enumerate(zip(req.prompts.tolist(), req.counts.tolist())):
                ctx = req.contexts[i] if req.contexts else None
                assert seen.setdefault(p, ctx) == ctx
                old = pools[p].rewards if p in pools else np.zeros(0)
                pools[p] = _pool(p, list(old) + [0.0] * c)
            req = pipe.next_request(pools)
        assert len(pools) == 6 and sum(c is not None for c in seen.values()) >= 1
        pipe.observe(pools, pipe.finalize(pools).groups)


def test_rescued_counts_helped_prompts_later_solved_plain():
    t = _stuck()
    t.contexts(np.array([0]), {}, _ctx(1))
    t.observe(_ctx(1), [_pool(0, [0, 1, 0, 0])], [])
    assert t.metrics()["rescued"] == 0  # solved with a prefix
    t.contexts(np.array([3]), {}, _ctx(2))  # prompt 0 not requested: its next pool is plain
    t.observe(_ctx(2), [_pool(0, [0, 0, 1, 0])], [])
    assert t.metrics()["rescued"] == 1 and 0 not in t._stuck


def test_restored_transform_makes_the_same_choices():
    t = _stuck(plain_share=0.5)
    t.contexts(np.array([0, 3]), {}, _ctx(1))
    t.observe(_ctx(1), [_pool(0, [1, 1, 0, 0]), _pool(3, [0, 0, 0, 0])], [])
    again = PrefixRL(plain_share=0.5)
    again.bind(RescueSources(traces=TRACES))
    again.load_state_dict(pickle.loads(pickle.dumps(t.state_dict())))
    for seed in range(5):
        assert again.contexts(np.arange(6), {}, _ctx(2, seed)) == t.contexts(np.arange(6), {}, _ctx(2, seed))


def test_arithmetic_reference_traces_follow_the_answer_format():
    assert arith_trace("57+68=", "125", "mixed") == "#11|125"
    assert arith_trace("57+68=", "125", "carries") == "11|125"
    assert arith_trace("38-52=", "-14", "carries") == "-10|-14"
    assert arith_trace("57+68=", "125", "none") == "125"
    assert arith_trace("what is 2+2?", "4", "mixed") is None


def test_cli_smoke(warm_cache, tmp_path):
    from rollwise.cli import app

    with pytest.raises(SystemExit) as done:  # 12 prompts, 6 a step: each prompt comes back every other step
        app(["train", str(ROOT / "configs" / "smoke.toml"), "--sampler.type=prefix_rl", "--trainer.steps=4",
             "--task.train_size=12", "--run.threads=1", "--trainer.eval_every=0", f"--run.out_dir={tmp_path}",
             "--run.name=prefix", f"--warmstart.cache_dir={warm_cache}"])
    assert not done.value.code
    rows = [json.loads(r) for r in (tmp_path / "prefix" / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "sampler/budget" in r]
    assert len(rows) == 4 and all("sampler/transform/prefixed" in r for r in rows)
    assert any(r["sampler/transform/prefixed"] > 0 for r in rows[2:])  # prompts stuck in step 1 or 2, back


def test_unstuck_counts_every_stuck_prompt_later_solved_plain_helped_or_not():
    """The control's books: with plain_share 1 nothing is helped (no context, rescued stays 0), yet a stuck
    prompt solved on a later plain visit counts as unstuck; ever_stuck keeps prompts that got unstuck."""
    t = _stuck(plain_share=1.0)  # 0, 2, 3, 5 stuck
    assert t.contexts(np.array([0, 2, 3]), {}, _ctx(1)) is None
    t.observe(_ctx(1), [_pool(2, [0, 1, 0, 0]), _pool(3, [0, 0, 0, 0])], [])
    m = t.metrics()
    assert (m["rescued"], m["unstuck"], m["ever_stuck"], m["stuck"]) == (0, 1, 4, 3)
    assert m["unstuck_share"] == 0.25
    r = PrefixRL(source="both", plain_share=1.0)
    r.load_state_dict(pickle.loads(pickle.dumps(t.state_dict())))
    assert r.metrics() | {"helped": 0.0} == m | {"helped": 0.0}

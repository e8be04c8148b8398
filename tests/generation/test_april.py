"""APRIL (issue 17): the step stops once enough groups finished, the buffer keeps exactly the unfinished rows
with their tokens, behaviour logprobs and versions, the next step resumes them first (off-policy from their
oldest token's version), a seeded engine's resumed rows equal the uninterrupted ones, state round trip, CLI."""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from rollwise.generation import STRATEGIES, SamplingParams
from rollwise.generation.april import AprilStrategy
from rollwise.generation.hf import HFEngine
from rollwise.generation.scripted import ScriptedEngine
from rollwise.logging import read_metrics
from rollwise.sampling import Budget, Request, TrainGroup, TrainPlan
from rollwise.train.batch import build_train_batch
from rollwise.train.model import build_tiny_model
from rollwise.train.rollout import RolloutCollector, StepRollouts
from rollwise.types import Prompt

ROOT = Path(__file__).resolve().parents[2]
LEN = {1: [2, 6], 2: [2, 3], 3: [7, 8], 4: [3, 9], 5: [1, 2], 6: [2, 2], 7: [1, 1], 8: [1, 1]}  # [prompt][j]
P = SamplingParams(max_new_tokens=16)


def script(prompt, j, call):
    """Row j of prompt p: LEN[p][j] tokens 10p + j (the token names the row), logprob -(t + 1)/10 at t."""
    n = LEN[prompt[0]][j]
    return [10 * prompt[0] + j] * n, [-0.1 * (t + 1) for t in range(n)], "stop"


def lps(n):
    return [pytest.approx(-0.1 * (t + 1)) for t in range(n)]


def step0(strategy=None):
    engine, s = ScriptedEngine(script), strategy or AprilStrategy(over_sample=2)
    res = s.generate(engine, [1, 2, 3, 4], [[1], [2], [3], [4]], [2] * 4, P, step=0)
    return engine, s, res


def test_stops_at_the_target_and_buffers_exactly_the_unfinished_rows():
    """4 groups requested, target ceil(4/2) = 2: groups 2 (done at 3 tokens) and 1 (at 6) finish, the call stops
    at step 6. Group 3's rows are cut at 6 tokens; group 4 keeps its finished row 0 and its row 1 cut at 6."""
    engine, s, res = step0()
    assert [[c.token_ids for c in cs] for cs in res.completions] == [[[10] * 2, [11] * 6], [[20] * 2, [21] * 3], [],
                                                                     []]
    assert res.extra == {} and len(engine.history) == 1
    assert [(g.key, g.step, g.start) for g in s.buffer] == [(3, 0, 0), (4, 0, 0)]
    g3, g4 = s.buffer
    for c, tok in zip([*g3.members, g4.members[1]], [30, 31, 41]):
        assert c.finish_reason == "abort" and c.token_ids == [tok] * 6
        assert c.logprobs == lps(6) and c.versions == [0] * 6
    done = g4.members[0]
    assert done.finish_reason == "stop" and done.token_ids == [40] * 3 and done.versions == [0] * 3
    m = s.metrics()
    assert (m["april_target"], m["april_finished_groups"], m["april_aborted"], m["april_buffer_groups"],
            m["april_buffer_rows"], m["april_buffer_tokens"], m["april_resumed"]) == (2, 2, 3, 2, 3, 21, 0)
    assert m["april_offpolicy_share"] == 0.0


def test_next_step_resumes_the_buffer_first_with_its_prefixes():
    engine, s, _ = step0()
    kept = s.buffer[1].members[0]  # group 4's finished row
    engine.sync_weights(None, 1)
    res = s.generate(engine, [5, 6, 7, 8], [[5], [6], [7], [8]], [2] * 4, P, step=1)
    call = engine.history[1]
    # buffered rows first (one entry each, continuing its prefix), then as many requested prompts as fit: 4 in flight
    assert call.prompts == [[3], [3], [4], [5], [6]] and call.counts == [1, 1, 1, 2, 2]
    assert sorted(res.extra) == [3, 4]
    (a, b), (c, d) = res.extra[3][1], res.extra[4][1]
    assert c is kept  # a finished member is not regenerated
    for x in (a, b, d):
        assert x.prefix_len == 6 and x.logprobs[:6] == lps(6) and x.versions[:6] == [0] * 6
        assert set(x.versions[6:]) <= {1} and x.meta["april_start_step"] == 0 and x.finish_reason == "stop"
    # the scripted engine continues a prefix with row 0's script after it (the resume request is one row)
    assert a.token_ids == [30] * 7 and b.token_ids == [31] * 6 + [30] and d.token_ids == [41] * 6
    # groups 3 and 4 finish at the first step (target 2): group 5 keeps its finished row 0, 5's row 1 and 6's rows
    # are cut at 1 token; 7 and 8 did not fit
    assert [len(cs) for cs in res.completions] == [0, 0, 0, 0]
    assert [g.key for g in s.buffer] == [5, 6]
    assert [(x.token_ids, x.finish_reason) for g in s.buffer for x in g.members] == [
        ([50], "stop"), ([51], "abort"), ([60], "abort"), ([61], "abort")]
    m = s.metrics()
    assert (m["april_resumed"], m["april_skipped"], m["april_finished_groups"], m["april_aborted"]) == (3, 2, 2, 3)
    assert m["april_offpolicy_share"] == pytest.approx((6 + 6 + 3 + 6) / (7 + 7 + 3 + 6))  # version-0 tokens


def test_groups_are_resumed_at_a_later_step_only_and_requested_prompts_reuse_their_group():
    engine, s, _ = step0()
    res = s.generate(engine, [5], [[5]], [2], P, step=0)  # another round of step 0: nothing resumed
    assert res.extra == {} and engine.history[1].prompts == [[5]] and len(res.completions[0]) == 2
    assert [g.key for g in s.buffer] == [3, 4]
    s2 = AprilStrategy(over_sample=1)
    e2, s2, _ = step0(s2)  # target 4: everything finishes, nothing buffered
    assert s2.buffer == [] and len(e2.history) == 1
    engine, s, _ = step0()
    res = s.generate(engine, [4, 5], [[4], [5]], [2, 2], P, step=1)  # prompt 4 is buffered: served by its group
    assert [len(cs) for cs in res.completions] == [2, 0] and list(res.extra) == [3] and s.buffer == []
    assert engine.history[1].prompts == [[3], [3], [4]]  # buffer (2 groups) fills the 2 slots: 5 is skipped


class Verifier:
    """Reward 1 for an even number of tokens."""

    def score_batch(self, texts, refs):
        return [Result(float(len(t) % 2 == 0)) for t in texts]


@dataclass
class Result:
    score: float
    parsed: bool = True
    info: dict = None

    def __post_init__(self):
        self.info = {}


def test_collector_marks_resumed_rollouts_off_policy_from_their_oldest_token():
    pool = [Prompt(str(i), str(i), "") for i in range(9)]
    engine = ScriptedEngine(script)
    collector = RolloutCollector(engine, Verifier(), pool, lambda t: [int(t)], P,
                                 strategy=STRATEGIES.get("april")(over_sample=2))
    budgets, outs = [], []
    for step, keys in enumerate([[1, 2, 3, 4], [7, 8, 5, 6]]):
        engine.sync_weights(None, step)
        out, budget = StepRollouts(), Budget(100)
        collector._run(Request(np.array(keys), np.array([2] * 4)), out, budget, seed=step, version=step)
        budgets.append(budget)
        outs.append(out)
    assert sorted(outs[0].rollouts) == [1, 2] and sorted(outs[1].rollouts) == [3, 4, 7, 8]  # 5, 6: no room
    assert all(r.policy_version == 0 for rs in outs[0].rollouts.values() for r in rs)
    versions = {p: [r.policy_version for r in rs] for p, rs in outs[1].rollouts.items()}
    assert versions == {3: [0, 0], 4: [0, 0], 7: [1, 1], 8: [1, 1]}  # 4's row 0 finished at step 0: stale too
    # tokens are charged when decoded: step 0 decodes groups 1 and 2 (2 + 6 + 2 + 3) and the partials of 3 and 4
    # (6 + 6 + 3 + 6); step 1 only what is new: group 3's rows 1 + 1 after their 6 (both resume as row 0's
    # 7-token script), group 4's row 1 nothing (row 0's script is shorter than its prefix), groups 7, 8 1 each
    assert (budgets[0].spent_rollouts, budgets[0].spent_tokens) == (4, 2 + 6 + 2 + 3 + 6 + 6 + 3 + 6)
    assert (budgets[1].spent_rollouts, budgets[1].spent_tokens) == (8, 1 + 1 + 0 + 1 + 1 + 1 + 1)
    rs = [r for p in (3, 4, 7, 8) for r in outs[1].rollouts[p]]
    plan = TrainPlan([TrainGroup(p, np.arange(2), np.zeros(2), outs[1].rollouts[p]) for p in (3, 4, 7, 8)])
    assert build_train_batch(plan, version=1).off_policy.tolist() == [r.policy_version != 1 for r in rs] == [
        True] * 4 + [False] * 4
    assert collector.metrics()["generation/april_resumed"] == 3


def test_resumed_rows_equal_the_uninterrupted_ones_under_the_same_seed_and_rows(tokenizer):
    """Seeded HF engine: group A (2 rows) is cut when group B finishes; resumed at the next step with the same
    seed and A's rows at the same row positions, it comes back token for token as the uninterrupted call."""
    model = build_tiny_model(tokenizer, layers=2, hidden=32, heads=2, kv_heads=1, intermediate=64, seed=0)
    engine = HFEngine(model, tokenizer, batch_size=8)
    A, B = tokenizer.encode("12+34="), tokenizer.encode("7")
    stop = tuple(range(0, len(tokenizer), 4))  # a quarter of the vocabulary stops a row: uneven lengths
    for seed in range(200):  # a seed where both of B's rows finish well before A's
        params = SamplingParams(max_new_tokens=12, seed=seed, stop_token_ids=stop)
        ref = engine.generate([A, B], [2, 2], params)
        if min(len(c.token_ids) for c in ref[0]) > max(len(c.token_ids) for c in ref[1]) + 1:
            break
    else:
        pytest.fail("no seed gives the layout")
    s = AprilStrategy(over_sample=2)
    first = s.generate(engine, [0, 1], [A, B], [2, 2], params, step=0)
    assert first.completions[0] == [] and [c.token_ids for c in first.completions[1]] == [c.token_ids for c in ref[1]]
    cut = max(len(c.token_ids) for c in ref[1])
    assert [len(c.token_ids) for c in s.buffer[0].members] == [cut, cut]
    engine.sync_weights(model, 1)
    again = s.generate(engine, [2], [B], [2], params, step=1)  # room for one group: the buffered one
    (a, b) = again.extra[0][1]
    for got, want in zip((a, b), ref[0]):
        assert got.token_ids == want.token_ids and got.finish_reason == want.finish_reason
        assert got.logprobs[:cut] == want.logprobs[:cut]  # stored, not recomputed
        assert got.versions == [0] * cut + [1] * (len(want.token_ids) - cut)
        assert got.logprobs[cut:] == pytest.approx(want.logprobs[cut:], abs=1e-5)


def test_state_dict_round_trip_makes_the_same_next_step():
    _, s, _ = step0()
    restored = AprilStrategy(over_sample=2)
    restored.load_state_dict(pickle.loads(pickle.dumps(s.state_dict())))
    assert restored.state_dict() == s.state_dict()
    outs = []
    for strat in (s, restored):
        engine = ScriptedEngine(script)
        engine.sync_weights(None, 1)
        res = strat.generate(engine, [5, 6, 7, 8], [[5], [6], [7], [8]], [2] * 4, P, step=1)
        outs.append(([[c.token_ids for c in cs] for cs in res.completions],
                     {k: [(c.token_ids, c.logprobs, c.versions) for c in cs] for k, (_, cs) in res.extra.items()},
                     strat.state_dict(), strat.metrics()))
    assert outs[0] == outs[1]


def test_cli_train_with_april(tmp_path, warm_cache, capsys):
    from rollwise.cli import app

    with pytest.raises(SystemExit) as info:
        app(["train", str(ROOT / "configs" / "smoke.toml"), f"--run.out_dir={tmp_path}", "--run.threads=1",
             f"--warmstart.cache_dir={warm_cache}", "--generation.strategy=april", "--trainer.steps=3",
             "--sampler.batch_prompts=8", "--warmstart.steps=60"])
    assert int(info.value.code or 0) == 0, capsys.readouterr().err
    rows = [r for r in read_metrics(tmp_path / "smoke") if "generation/april_target" in r]
    assert len(rows) == 3 and all(r["generation/april_target"] == 4 for r in rows)
    assert all(0 <= r["generation/april_offpolicy_share"] <= 1 for r in rows)

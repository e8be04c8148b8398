"""reasoning-gym procedural datasets as a single-turn task suite (``task.dataset = "reasoning_gym:..."``): the spec
(levels, weights, knobs), the pool and held-out split built offline and deterministically, each item scored by
its dataset's own ``score_answer`` through the ``reasoning_gym`` verifier, and one-line errors at load."""

from __future__ import annotations

import json
import re

import pytest

pytest.importorskip("reasoning_gym", reason="needs the reasoning-gym extra (pip install -e '.[reasoning-gym]')")

from rollwise.config import ConfigError  # noqa: E402
from rollwise.data import reasoning_gym_tasks as rgt  # noqa: E402
from rollwise.data.sources import load_task_prompts  # noqa: E402
from rollwise.data.task import build_task  # noqa: E402
from rollwise.rewards.base import get_verifier  # noqa: E402

MIX = "reasoning_gym:chain_sum@0*3,leg_counting@1,chain_sum{min_terms=3,max_terms=3,min_digits=2,max_digits=2}"


def chain_value(question: str) -> int:
    """A chain_sum question's value by hand: '... 4 - 1 - 7 =' -> -4 (digits and + / - only)."""
    expr = re.search(r"([0-9][0-9 +-]*)=\s*$", question).group(1).split()
    total, sign = int(expr[0]), 1
    for tok in expr[1:]:
        if tok in "+-":
            sign = 1 if tok == "+" else -1
        else:
            total += sign * int(tok)
    return total


def test_spec_entries_levels_weights_and_knobs():
    entries = rgt.parse_spec(MIX)
    assert [(e.name, e.level, e.weight) for e in entries] == [("chain_sum", 0, 3.0), ("leg_counting", 1, 1.0),
                                                             ("chain_sum", None, 1.0)]
    assert entries[2].config == {"min_terms": 3, "max_terms": 3, "min_digits": 2, "max_digits": 2}
    assert rgt.parse_spec("reasoning_gym:x{a=true, b=[1,2], c=word}")[0].config == {"a": True, "b": [1, 2],
                                                                                    "c": "word"}


def test_suite_splits_the_pool_by_weight_and_holds_out_an_eval_set_per_entry():
    s = rgt.build_rg_suite(MIX, train_size=10, eval_size=3, seed=0)
    assert s.level_names == ["chain_sum@0", "leg_counting@1", "chain_sum"]
    # 10 x 3/5 = 6, 10 x 1/5 = 2, 2 (minus any train question that is also a held-out one)
    counts = [int((s.levels == i).sum()) for i in range(3)]
    assert counts[1:] == [2, 2] and 4 <= counts[0] <= 6  # level 0: 2 one-digit terms, a small space
    assert {k: len(v) for k, v in s.eval_sets.items()} == {"chain_sum@0": 3, "leg_counting@1": 3, "chain_sum": 3}
    assert not {p.text for p in s.pool} & s.heldout  # held out means held out
    assert [p.meta["level"] for p in s.pool] == [s.level_names[i] for i in s.levels]
    for p in s.pool + s.eval_sets["chain_sum"]:  # the answers the dataset wrote are the sums, by hand
        if p.meta["task"] == "chain_sum":
            assert int(p.meta["answer"]) == chain_value(p.text)
    hard = s.eval_sets["chain_sum"]  # the knobs reached the dataset: 3 terms of 2 digits
    assert all(len(re.findall(r"\d+", p.text.split(":")[-1])) == 3 for p in hard)
    again = rgt.build_rg_suite(MIX, train_size=10, eval_size=3, seed=0)
    assert [(p.uid, p.text, p.reference) for p in again.pool] == [(p.uid, p.text, p.reference) for p in s.pool]
    other = rgt.build_rg_suite(MIX, train_size=10, eval_size=3, seed=1)
    assert [p.text for p in other.eval_sets["chain_sum"]] != [p.text for p in hard]


def test_repeated_entries_get_distinct_labels():
    s = rgt.build_rg_suite("reasoning_gym:chain_sum@0,chain_sum@0", train_size=2, eval_size=1, seed=0)
    assert s.level_names == ["chain_sum@0", "chain_sum@0#2"]


def test_verifier_calls_the_datasets_own_score_answer():
    s = rgt.build_rg_suite("reasoning_gym:chain_sum@1,leg_counting@0", train_size=4, eval_size=1, seed=0)
    verify = get_verifier("reasoning_gym", bounded=False)
    for p in s.pool:
        right = verify(p.meta["answer"], p.reference)
        assert (right.score, right.parsed, right.info["task"]) == (1.0, True, p.meta["task"])
        wrong = str(int(p.meta["answer"]) + 1)
        assert verify(wrong, p.reference).score == 0.0
        assert verify(f"thinking... <answer>{wrong}</answer> <answer> {p.meta['answer']} </answer>",
                      p.reference).score == 1.0  # the last tagged answer counts
        empty = verify("   ", p.reference)
        assert (empty.score, empty.parsed) == (0.0, False)
    assert rgt.extract_answer("so <answer>12</answer>") == "12"


def test_the_number_verifier_reads_an_untagged_replys_final_number_with_the_datasets_own_scorer():
    s = rgt.build_rg_suite("reasoning_gym:chain_sum@1,leg_counting@0", train_size=4, eval_size=1, seed=0)
    verify = get_verifier("reasoning_gym_number", bounded=False)
    for p in s.pool:
        gold, wrong = p.meta["answer"], str(int(p.meta["answer"]) + 1)
        chatty = verify(f"The final answer is {gold}.", p.reference)
        assert (chatty.score, chatty.parsed, chatty.info["where"]) == (1.0, True, "answer_line")
        assert verify(f"First {wrong}, then {gold}", p.reference).info["where"] == "last_number"
        assert verify(f"First {wrong}, then {gold}", p.reference).score == 1.0
        assert verify(f"The answer is {wrong}.", p.reference).score == 0.0
        tagged = verify(f"{gold} <answer>{wrong}</answer>", p.reference)  # a tag wins over any number
        assert (tagged.score, tagged.info["where"]) == (0.0, "tag")
        none = verify("I do not know.", p.reference)
        assert (none.score, none.parsed) == (0.0, False)
        # the strict verifier scores the whole untagged reply, so a chatty right answer is no answer
        assert get_verifier("reasoning_gym", bounded=False)(f"The answer is {gold}.", p.reference).score < 0.5


@pytest.mark.parametrize("bad", [float("nan"), 2.0, -0.5, "1", None, float("inf")])
def test_a_scorer_returning_a_bad_score_raises_so_the_pool_counts_a_fault(monkeypatch, bad):
    s = rgt.build_rg_suite("reasoning_gym:chain_sum@0", train_size=1, eval_size=1, seed=0)
    p = s.pool[0]
    ds = rgt._dataset(json.dumps({k: v for k, v in json.loads(p.reference).items() if k != "index"},
                                 sort_keys=True))
    monkeypatch.setattr(ds, "score_answer", lambda answer, entry: bad)
    with pytest.raises(ValueError, match="score_answer returned"):
        rgt.verify_reasoning_gym(p.meta["answer"], p.reference)


def test_a_scorer_that_raises_and_a_bad_reference_raise(monkeypatch):
    s = rgt.build_rg_suite("reasoning_gym:chain_sum@0", train_size=1, eval_size=1, seed=0)
    p = s.pool[0]
    ds = rgt._dataset(json.dumps({k: v for k, v in json.loads(p.reference).items() if k != "index"},
                                 sort_keys=True))
    monkeypatch.setattr(ds, "score_answer", lambda answer, entry: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        rgt.verify_reasoning_gym("3", p.reference)
    with pytest.raises(ValueError, match="not a reasoning_gym reference"):
        rgt.verify_reasoning_gym("3", json.dumps({"task": "chain_sum"}))
    with pytest.raises(ValueError):
        rgt.verify_reasoning_gym("3", "not json")


@pytest.mark.parametrize("spec,message", [
    ("reasoning_gym:chain_summ", "unknown reasoning_gym task 'chain_summ'; did you mean 'chain_sum'"),
    ("reasoning_gym:leg_countin@1", "did you mean 'leg_counting'"),
    ("reasoning_gym:chain_sum{max_term=3}", r"chain_sum: unknown config keys \['max_term'\]"),
    ("reasoning_gym:chain_sum@", "bad reasoning_gym entry 'chain_sum@'"),
    ("reasoning_gym:chain_sum*0", "weight must be > 0"),
    ("reasoning_gym:gsm_symbolic@1", "has no curriculum"),
    ("reasoning_gym:composite", "unknown reasoning_gym task 'composite'"),
    ("reasoning_gym:chain_sum{min_terms=5,max_terms=2}", "chain_sum: reasoning-gym could not build it"),
])
def test_bad_specs_are_one_line_errors_at_load(smoke_cfg, spec, message):
    cfg = smoke_cfg("--task.suite=dataset", f"--task.dataset={spec}", "--task.verifier=reasoning_gym")
    with pytest.raises(rgt.ReasoningGymError, match=message) as err:
        build_task(cfg)
    assert "\n" not in str(err.value)


def test_train_task_from_the_config_and_eval_data(smoke_cfg):
    cfg = smoke_cfg("--task.suite=dataset", "--task.dataset=reasoning_gym:chain_sum@0*3,leg_counting@0",
                    "--task.verifier=reasoning_gym", "--task.train_size=8", "--task.eval_size=2")
    task = build_task(cfg)
    assert (len(task.pool), task.level_names, sorted(task.eval_sets)) == (8, ["chain_sum@0", "leg_counting@0"],
                                                                         ["chain_sum@0", "leg_counting@0"])
    assert task.levels.tolist() == [0] * 6 + [1] * 2
    got = load_task_prompts(cfg.task, cfg.task.dataset, None)  # `rollwise eval --data reasoning_gym:...`
    assert [p.uid for p in got] == [p.uid for ps in task.eval_sets.values() for p in ps]
    auto = smoke_cfg("--task.suite=dataset", "--task.dataset=reasoning_gym:chain_sum")
    assert auto.task.verifier_name() == "reasoning_gym"  # 'auto' reads the dataset family: its own scorer
    number = smoke_cfg("--task.suite=dataset", "--task.dataset=reasoning_gym:chain_sum@0",
                       "--task.verifier=reasoning_gym_number", "--task.train_size=2", "--task.eval_size=1")
    assert len(build_task(number).pool) == 2
    with pytest.raises(ConfigError, match="set task.verifier = 'reasoning_gym'"):
        build_task(smoke_cfg("--task.suite=dataset", "--task.dataset=reasoning_gym:chain_sum",
                             "--task.verifier=math"))


@pytest.mark.slow
def test_a_reasoning_gym_mix_trains(smoke_cfg):
    from rollwise.logging import read_metrics
    from rollwise.train.trainer import Trainer

    t = Trainer(smoke_cfg("--task.suite=dataset", "--task.dataset=reasoning_gym:chain_sum@0,leg_counting@0",
                          "--task.verifier=reasoning_gym", "--task.train_size=8", "--task.eval_size=2",
                          "--warmstart.enabled=false", "--trainer.steps=1", "--trainer.eval_every=0",
                          "--trainer.checkpoint_every=0", "--sampler.batch_prompts=2", "--sampler.group_size=2",
                          "--run.threads=1", "--task.verify_timeout=30"))
    try:
        t.train()
    finally:
        t.close()
    (row,) = [r for r in read_metrics(t.run_dir) if "rollout/reward_mean" in r]
    assert row["rollout/verify_failures"] == 0 and 0.0 <= row["rollout/reward_mean"] <= 1.0

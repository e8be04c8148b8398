"""SAPO swarm sharing (arXiv:2509.08721): boards, and a node that trains I local + J external groups re-scored
under its own tokenizer, verifier and policy (ratio 1), with the sampler never seeing the external groups."""

import json
from dataclasses import asdict

import numpy as np
import pytest
import torch

from rollwise.swarm import DirBoard, MemoryBoard, SharedGroup, parse_group
from rollwise.train.policy import build_seq_batch, compute_logprobs
from rollwise.train.swarm import SwarmPipeline
from rollwise.train.trainer import Trainer


def _group(agent="peer", rnd=0, question="1+2=", ref="3", comps=("3", "4", "3", "x"), rewards=(1, 1, 1, 1)):
    return SharedGroup(agent, rnd, question, ref, list(comps), [True] * len(comps), [float(r) for r in rewards])


def test_memory_board_shares_by_name_and_hides_own_groups():
    MemoryBoard.clear("t1")
    a, b = MemoryBoard("t1"), MemoryBoard("t1")
    a.publish("a", 0, [_group("a")])
    b.publish("b", 3, [_group("b"), _group("b", question="2+2=")])
    got, bad = a.read(exclude="a")
    assert bad == 0 and [g.agent for g in got] == ["b", "b"] and got[1].question == "2+2="
    a.publish("a", 1, [])  # a newer publication replaces the older one
    assert b.read(exclude="b") == ([], 0)


def test_dir_board_skips_and_counts_what_does_not_parse(tmp_path):
    board = DirBoard(str(tmp_path / "board"))
    board.publish("a", 2, [_group("a", 2)])
    (tmp_path / "board" / "junk.json").write_text("{not json")
    bad_group = asdict(_group("c")) | {"finished": [True]}  # lengths differ
    (tmp_path / "board" / "c.json").write_text(json.dumps({"round": 0, "groups": [bad_group]}))
    got, bad = board.read(exclude="z")
    assert [g.agent for g in got] == ["a"] and got[0].round == 2 and bad == 2
    assert not list((tmp_path / "board").glob("*.tmp"))  # atomic: no temporary file left behind


def test_parse_group_refuses_non_finite_logprobs():
    g = asdict(_group()) | {"logprobs": [[0.0], [float("nan")], [0.0], [0.0]]}
    with pytest.raises(ValueError, match="logprobs"):
        parse_group(g)


def _node(smoke_cfg, board, *extra):
    MemoryBoard.clear(board)
    return Trainer(smoke_cfg("--run.name=node", f"--swarm.name={board}", "--swarm.external=1", *extra))


def test_external_group_is_rescored_locally_with_ratio_one(smoke_cfg):
    t = _node(smoke_cfg, "t3")
    assert isinstance(t.pipeline, SwarmPipeline)
    task = t.task.pool[0]
    wrong = str(int(task.reference) + 1)
    # the publisher claims every completion right: the node's own verifier decides (2 of 4 right)
    MemoryBoard("t3").publish("peer", 0, [_group("peer", 0, task.text, task.reference,
                                                 (task.reference, wrong, task.reference, "x"))])
    got = t.rollouts.collect(t.pipeline, 0, version=0)
    plan = t.pipeline.finalize(got.obs(), 0)
    ext = plan.groups[-1]
    assert ext.prompt == -1 and len(plan.groups) == len(got.obs()) + 1
    assert [r.reward for r in ext.rollouts] == [1.0, 0.0, 1.0, 0.0]
    # GRPO over the group: (r - 0.5) / (unbiased std 0.57735 + 1e-6)
    np.testing.assert_allclose(ext.advantages, [0.866024, -0.866024, 0.866024, -0.866024], atol=1e-5)
    r = ext.rollouts[0]
    assert r.prompt_ids == t.encode(task.text) and r.completion_ids[-1] == t.tok.eos_token_id
    assert r.completion_ids[:-1] == t.tok(task.reference, add_special_tokens=False)["input_ids"]
    # behaviour logprobs = this node's current policy: on-policy for the update (ratio exactly 1)
    t.model.eval()
    with torch.no_grad():
        lp, _ = compute_logprobs(t.model, build_seq_batch([r.prompt_ids], [r.completion_ids], t.tok.pad_token_id),
                                 t.cfg.generation.temperature)
    np.testing.assert_allclose(r.behaviour_logprobs, lp[0].tolist(), atol=1e-6)
    assert r.policy_version == 0 and r.versions == [0] * r.num_tokens
    m = t.pipeline.metrics()
    assert m["swarm/external_groups"] == 1 and m["swarm/external_mixed"] == 1 and m["swarm/agents_seen"] == 1
    assert m["swarm/external_reward_mean"] == 0.5
    # this node's own groups went to the board for the others
    mine, _ = MemoryBoard("t3").read(exclude="peer")
    assert {g.question for g in mine} == {t.task.pool[p].text for p in got.obs()}
    t.close()


def test_sampler_never_observes_external_groups(smoke_cfg):
    t = _node(smoke_cfg, "t4")
    MemoryBoard("t4").publish("peer", 0, [_group("peer", 0, t.task.pool[0].text, t.task.pool[0].reference)])
    row = t.train_step(0)
    assert row["swarm/external_groups"] == 1
    stats = t.pipeline.inner.stats
    assert stats.attempts.sum() == 6 * 4  # the 6 local groups of 4; the external group's 4 never counted
    t.close()


def test_groups_of_another_size_or_too_old_do_not_qualify(smoke_cfg):
    t = _node(smoke_cfg, "t5", "--swarm.max_age=1")
    pool = t.task.pool
    MemoryBoard("t5").publish("peer", 0, [_group("peer", 0, pool[0].text, pool[0].reference, ("1", "2")),  # G=2
                                          _group("peer", 0, pool[1].text, pool[1].reference)])
    MemoryBoard("t5").publish("old", -5, [_group("old", -5, pool[2].text, pool[2].reference)])
    got = t.rollouts.collect(t.pipeline, 0, version=0)
    plan = t.pipeline.finalize(got.obs(), 0)
    assert t.pipeline.metrics()["swarm/available"] == 1
    assert plan.groups[-1].rollouts[0].prompt_ids == t.encode(pool[1].text)
    t.close()


def test_a_failing_board_is_counted_and_the_node_trains_alone(smoke_cfg):
    t = _node(smoke_cfg, "t6")

    class Dead:
        def publish(self, *a):
            raise ConnectionError("board actor died")

        read = publish

    t.pipeline.board = Dead()
    row = t.train_step(0)
    assert row["swarm/board_errors"] == 2 and row["swarm/external_groups"] == 0
    assert row["sampler/groups_trained"] > 0
    t.close()


def test_two_nodes_in_one_process_learn_from_each_other(smoke_cfg):
    MemoryBoard.clear("t7")
    a = Trainer(smoke_cfg("--run.name=a", "--swarm.name=t7", "--swarm.external=2", "--run.seed=1"))
    b = Trainer(smoke_cfg("--run.name=b", "--swarm.name=t7", "--swarm.external=2", "--run.seed=2"))
    rows_a, rows_b = [], []
    for step in range(2):
        rows_a.append(a.train_step(step))
        rows_b.append(b.train_step(step))
    assert rows_a[0]["swarm/external_groups"] == 0  # a went first: the board was empty
    assert rows_b[0]["swarm/external_groups"] == 2 and rows_a[1]["swarm/external_groups"] == 2
    assert all(np.isfinite(r["loss/policy"]) for r in rows_a + rows_b if "loss/policy" in r)
    a.close()
    b.close()


def test_node_configs_per_node_tables_and_errors(smoke_cfg):
    from rollwise.train.swarm_nodes import node_configs

    cfg = smoke_cfg("--recipe=sapo", '--swarm.nodes=[{"run.seed"=3, "task.levels"=["add1"]}, {"run.seed"=4}]')
    a, b = node_configs(cfg)
    assert (a.run.name, a.run.seed, a.task.levels, a.swarm.agent) == ("smoke-node0", 3, ["add1"], "node0")
    assert (b.run.name, b.run.seed, b.task.levels, b.swarm.agent) == ("smoke-node1", 4, ["add1", "add2", "sub2"],
                                                                      "node1")
    assert a.swarm.board == "ray" and a.swarm.nodes == []  # a memory board cannot cross the nodes' processes
    with pytest.raises(ValueError, match="2 \\[\\[swarm.nodes\\]\\] tables but --nodes 3"):
        node_configs(cfg, 3)
    with pytest.raises(ValueError, match="no \\[swarm\\] section"):
        node_configs(smoke_cfg(), 2)
    with pytest.raises(ValueError, match="bogus"):
        node_configs(smoke_cfg('--swarm.nodes=[{"run.bogus"=1}]'))

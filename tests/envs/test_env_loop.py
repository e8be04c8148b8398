"""The agent loop and the episode collector on a scripted engine: contexts grow by the sampled action tokens and
the observations, actions keep their logprobs and versions, limits end episodes cleanly, and every turn reaches
the sampler as one rollout of its task's group (hand-counted tokens and rewards)."""

from __future__ import annotations

from env_helpers import Password, password_pool, scripted_sayer

from rollwise.envs.base import EnvKnobs
from rollwise.envs.collector import EpisodeCollector
from rollwise.envs.loop import AgentLoop, PlainFormat
from rollwise.generation import SamplingParams
from rollwise.sampler_tables import build_pipeline
from rollwise.sampling import Budget

PARAMS = SamplingParams(max_new_tokens=16, seed=0)


def enc(tokenizer):
    return lambda s: tokenizer.encode(s, add_special_tokens=False)


def loop(tokenizer, engine, **limits) -> AgentLoop:
    return AgentLoop(engine, Password, PlainFormat(enc(tokenizer), (tokenizer.eos_token_id,)), EnvKnobs(**limits))


def test_context_is_observations_and_sampled_actions(tokenizer):
    engine = scripted_sayer(tokenizer, wrong_first=2)
    engine.sync_weights(None, 3)
    (ep,) = loop(tokenizer, engine, max_turns=5).run(password_pool(["ok"]), [7], PARAMS, version=3)
    e, eos = enc(tokenizer), tokenizer.eos_token_id
    assert [t.context_ids for t in ep.turns] == [e("say w0:"), e("say w0:xno\n"), e("say w0:xno\nxno\n")]
    assert [t.action_ids for t in ep.turns] == [e("x") + [eos], e("x") + [eos], e("ok") + [eos]]
    assert [t.logprobs for t in ep.turns] == [[-0.5] * 2, [-0.5] * 2, [-0.5] * 3]
    assert [t.versions for t in ep.turns] == [[3] * 2, [3] * 2, [3] * 3]
    assert [t.reward for t in ep.turns] == [0.0, 0.0, 1.0]
    assert (ep.task_index, ep.finish, ep.success, ep.episode_return, ep.fault) == (7, "done", True, 1.0, None)
    assert ep.tokens == len("say w0:xno\nxno\nok") + 1  # the final action keeps its stop token


def test_turn_limit_ends_cleanly(tokenizer):
    (ep,) = loop(tokenizer, scripted_sayer(tokenizer, wrong_first=10), max_turns=3).run(
        password_pool(["ok"]), [0], PARAMS)
    assert (ep.finish, ep.num_turns, ep.episode_return, ep.success, ep.fault) == ("max_turns", 3, 0.0, False, None)


def test_token_limit_gives_each_action_only_the_room_left(tokenizer):
    # "say w0:" is 7 tokens; a wrong turn adds "x" + "no\n" (4) to the context
    engine = scripted_sayer(tokenizer, wrong_first=10)
    (ep,) = loop(tokenizer, engine, max_turns=9, max_tokens=14).run(password_pool(["ok"]), [0], PARAMS)
    assert [c.params.max_new_tokens for c in engine.history] == [7, 3]
    assert (ep.finish, ep.num_turns, ep.fault) == ("max_tokens", 2, None)
    engine = scripted_sayer(tokenizer, wrong_first=10)
    (ep,) = loop(tokenizer, engine, max_turns=9, max_tokens=12).run(password_pool(["ok"]), [0], PARAMS)
    assert [c.params.max_new_tokens for c in engine.history] == [5, 1]
    assert [t.finish_reason for t in ep.turns] == ["stop", "length"]  # cut to the one token of room
    assert ep.turns[1].action_ids == enc(tokenizer)("x")
    assert all(len(t.context_ids) + len(t.action_ids) <= 12 for t in ep.turns)
    assert ep.finish == "max_tokens"


def test_one_generate_call_per_turn_for_the_whole_batch(tokenizer):
    engine = scripted_sayer(tokenizer, wrong_first=1)
    eps = loop(tokenizer, engine).run(password_pool(["ok", "x", "ok"]), [0, 1, 2], PARAMS)
    # task 1 wants "x": solved on turn 1; the others on turn 2
    assert [e.num_turns for e in eps] == [2, 1, 2]
    assert [c.counts for c in engine.history] == [[1, 1, 1], [1, 1]]


def test_collector_hands_turns_to_the_sampler_as_groups(tokenizer):
    engine = scripted_sayer(tokenizer, wrong_first=1)
    pool = password_pool(["ok", "ok"])
    limits = EnvKnobs()
    collector = EpisodeCollector(engine, Password, limits, pool, PlainFormat(enc(tokenizer), (1,)), PARAMS)
    pipe = build_pipeline(preset="uniform", pool_size=2, group_size=4, batch_prompts=2, total_steps=3, seed=0)
    budget = Budget(8)
    out = collector.collect(pipe, 0, budget, seed=0, version=0)
    assert sorted(out.rollouts) == [0, 1]
    for p, rs in out.rollouts.items():
        assert len(rs) == 8  # 4 episodes x 2 turns
        assert [r.reward for r in rs] == [1.0] * 8  # credit 'return': the episode's return on every turn
        assert all(r.prompt_index == p for r in rs)
        assert sorted(r.meta["turn"] for r in rs) == [0, 0, 0, 0, 1, 1, 1, 1]
        second = [r for r in rs if r.meta["turn"] == 1][0]
        assert second.prompt_ids == enc(tokenizer)(f"say w{p}:xno\n")
    assert (budget.spent_rollouts, budget.spent_tokens) == (8, 8 * 5)  # episodes; tokens "x"+eos, "ok"+eos
    assert out.decoded_tokens == 40 and out.num_rollouts == 16
    m = collector.metrics()
    assert (m["env/episodes"], m["env/success"], m["env/turns_mean"], m["env/return_mean"]) == (8, 1.0, 2.0, 1.0)
    assert m["env/faults_error"] == 0 and m["env/finish_max_turns"] == 0.0
    assert pipe.finalize(out.obs(), 0) is not None


def test_turn_credit_by_hand():
    from rollwise.envs.collector import compute_turn_credit

    rewards = [0.0, 0.5, 0.0, 1.0]
    assert compute_turn_credit(rewards, "return") == [1.5] * 4
    assert compute_turn_credit(rewards, "to_go", 1.0) == [1.5, 1.5, 1.0, 1.0]
    # gamma 0.5: t=3: 1; t=2: 0 + 0.5; t=1: 0.5 + 0.25; t=0: 0 + 0.375
    assert compute_turn_credit(rewards, "to_go", 0.5) == [0.375, 0.75, 0.5, 1.0]
    assert compute_turn_credit([], "to_go", 0.5) == []


def test_to_go_credit_reaches_the_rollouts(tokenizer):
    engine = scripted_sayer(tokenizer, wrong_first=2)
    collector = EpisodeCollector(engine, Password, EnvKnobs(credit="to_go", gamma=0.5), password_pool(["ok"]),
                                 PlainFormat(enc(tokenizer), (1,)), PARAMS)
    pipe = build_pipeline(preset="uniform", pool_size=1, group_size=2, batch_prompts=1, total_steps=3, seed=0)
    out = collector.collect(pipe, 0, Budget(2), seed=0, version=0)
    assert sorted(r.reward for r in out.rollouts[0]) == [0.25, 0.25, 0.5, 0.5, 1.0, 1.0]


def test_a_task_may_lower_its_turn_limit(tokenizer):
    from rollwise.types import Prompt

    tasks = [Prompt("a", "w0", "ok", {"max_turns": 2}), Prompt("b", "w1", "ok"), Prompt("c", "w2", "ok",
                                                                                       {"max_turns": 9})]
    eps = loop(tokenizer, scripted_sayer(tokenizer, wrong_first=10), max_turns=4).run(tasks, [0, 1, 2], PARAMS)
    assert [(e.num_turns, e.finish) for e in eps] == [(2, "max_turns"), (4, "max_turns"), (4, "max_turns")]

"""rollwise inside TRL's GRPOTrainer: the sampler yields TRL's index layout, rewards reach the rollwise
statistics (VADE's posterior counts, hand-computed), the reward function returns rollwise verifier scores,
methods TRL cannot express are refused by name, a restored sampler makes the same next picks, and a 2-step
``GRPOTrainer.train()`` on a tiny random model runs with the rollwise sampler choosing its prompts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("trl")
from trl import GRPOConfig  # noqa: E402
from trl.trainer.utils import RepeatSampler  # noqa: E402

from rollwise.data.tasks import build_suite  # noqa: E402
from rollwise.integrations.trl import (  # noqa: E402
    INDEX_COLUMN,
    FeedbackReward,
    RollwiseGRPOTrainer,
    RollwiseTRLSampler,
    build_trl_dataset,
    build_trl_pipeline,
    build_trl_reward,
    trl_layout,
)
from rollwise.rewards import get_verifier  # noqa: E402
from rollwise.train.model import build_char_tokenizer, build_tiny_model  # noqa: E402

G, B, POOL = 4, 2, 6


def make_sampler(preset: str = "uniform", repeat: int = 2, seed: int = 0, **table) -> RollwiseTRLSampler:
    name, pipe = build_trl_pipeline({"type": preset, **table}, pool_size=POOL, num_generations=G, prompts=B,
                                    total_steps=10, seed=seed)
    return RollwiseTRLSampler(pipe, num_generations=G, prompts=B, repeat=repeat, steps_per_epoch=3, name=name)


def take(it, n: int) -> list[int]:
    return [next(it) for _ in range(n)]


# ---------------------------------------------------------------------------------------------- layout
def test_sampler_yields_trl_repeat_layout(tiny):
    """A generation batch is laid out exactly as TRL's RepeatSampler lays out its B prompts (each G times in a
    row, the block repeated num_iterations x steps_per_generation times): the loader's slots, and the rows
    that replace them at generation time."""
    sampler = make_sampler(repeat=3)
    trl = list(RepeatSampler(list(range(B)), mini_repeat_count=G, batch_size=B, repeat_count=3, shuffle=False))
    assert list(sampler) == trl * 3 and len(sampler) == 3 * 3 * B * G  # 3 batches per epoch
    _, ds = tiny
    seen = []
    for _ in range(3):
        rows = sampler.rows(ds)
        plan = sampler._pending.tolist()
        assert [r["uid"] for r in rows] == [ds[plan[j]]["uid"] for j in trl[: B * G]]
        assert trl_layout(plan, G, 3) == [plan[j] for j in trl]
        sampler.feed(np.repeat(plan, G), [0.0] * (B * G))
        seen += plan
    assert len(set(seen)) == POOL  # uniform without replacement: one pass over the pool in 3 batches


def test_planning_before_the_rewards_arrive_raises():
    sampler = make_sampler()
    sampler.plan()
    with pytest.raises(RuntimeError, match="got 0 of 8 rewards"):
        sampler.plan()


def test_rewards_for_unplanned_prompts_raise():
    sampler = make_sampler()
    plan = sampler.plan()
    other = next(i for i in range(POOL) if i not in plan)
    with pytest.raises(RuntimeError, match=f"pool prompt {other}"):
        sampler.feed([other], [1.0])


# ---------------------------------------------------------------------------------------------- feedback
def test_vade_posterior_counts_follow_the_fed_rewards():
    """VADE (lambda1 = 0.2, lambda2 = 0.999, success = reward > 0.5): after one batch a selected prompt's counts
    are (successes, failures); after a second batch a reselected prompt has 0.2 x old + new, the others decay."""
    sampler = make_sampler("vade")
    vade = sampler.pipeline.selector
    rewards = {0: [1.0, 1.0, 0.0, 0.5], 1: [1.0, 0.75, 1.0, 1.0]}  # 0.5 is not a success
    p = sampler.plan()
    sampler.feed(np.repeat(p, G), rewards[0] + rewards[1])
    a, b = vade.posterior(p)
    np.testing.assert_allclose(a, [2, 4])
    np.testing.assert_allclose(b, [2, 0])
    stats = sampler.pipeline.stats
    assert sampler.step == 1 and stats.pass_rate(p).tolist() == [0.5, 1.0]  # binarised at 0.5
    np.testing.assert_allclose(stats.reward_sum[p], [2.5, 3.75])

    q = sampler.plan()
    sampler.feed(np.repeat(q, G), [0.0] * G + [1.0] * G)
    expect = {int(p[0]): (2.0, 2.0), int(p[1]): (4.0, 0.0)}
    for j, prompt in enumerate(q.tolist()):  # reselected: 0.2 x old + new; new: 0 + new
        old = expect.get(prompt, (0.0, 0.0))
        succ = 0.0 if j == 0 else 4.0
        expect[prompt] = (0.2 * old[0] + succ, 0.2 * old[1] + (4.0 - succ))
    for prompt in expect:
        if prompt not in q:
            expect[prompt] = (0.999 * expect[prompt][0], 0.999 * expect[prompt][1])
    idx = np.array(sorted(expect))
    a, b = vade.posterior(idx)
    np.testing.assert_allclose(a, [expect[i][0] for i in idx.tolist()])
    np.testing.assert_allclose(b, [expect[i][1] for i in idx.tolist()])


def test_reward_function_returns_verifier_scores_and_feeds_the_sampler():
    sampler = make_sampler()
    p = sampler.plan()
    reward = FeedbackReward(build_trl_reward("synthetic_int"), sampler)
    refs = ["12", "7"]
    completions = ["12", "13", " 12\n", "x", "7", "7", "8", "007"]
    index = np.repeat(p, G).tolist()
    out = reward(prompts=["q"] * 8, completions=completions, completion_ids=[[1] * len(c) for c in completions],
                 reference=[refs[j // G] for j in range(8)], **{INDEX_COLUMN: index})
    verify = get_verifier("synthetic_int")
    assert out == [verify(c, refs[j // G]).score for j, c in enumerate(completions)]
    assert reward.__name__ == "rollwise_synthetic_int"
    assert sampler.step == 1  # the batch was observed
    stats = sampler.pipeline.stats
    np.testing.assert_allclose(stats.reward_sum[p], [sum(out[:G]), sum(out[G:])])
    assert stats.attempts[p].tolist() == [G, G]
    # evaluation rows carry no index column: scored, not fed
    assert reward(prompts=["q"], completions=["12"], completion_ids=[[1]], reference=["12"]) == out[:1]


# ---------------------------------------------------------------------------------------------- refusals
@pytest.mark.parametrize("preset", ["dapo", "reinforce_ada", "dars", "dars_b", "xrpo", "gdro_rollout", "gdro",
                                    "dots", "mc_grpo", "mc_grpo_control", "d3s", "v05", "mssr", "brorl",
                                    "prefix_rl", "hill"])
def test_methods_trl_cannot_express_are_refused_by_name(preset):
    with pytest.raises(ValueError, match=f"sampler '{preset}' cannot drive TRL") as err:
        make_sampler(preset)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("preset,table", [("uniform", {}), ("vade", {}), ("dots", {"replay": False})])
def test_selector_presets_are_accepted(preset, table):
    make_sampler(preset, **table).plan()


def test_restored_sampler_makes_the_same_next_picks():
    a = make_sampler("vade", seed=3)
    for r in ([1.0, 0.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0]):
        p = a.plan()
        a.feed(np.repeat(p, G), r * B)
    state = a.state_dict()
    nxt = a.plan()
    with pytest.raises(RuntimeError, match="awaiting its rewards"):
        a.state_dict()
    b = make_sampler("vade", seed=99)
    b.load_state_dict(state)
    assert b.step == 2
    np.testing.assert_array_equal(b.plan(), nxt)


# ---------------------------------------------------------------------------------------------- GRPOTrainer
def grpo_args(tmp_path, **overrides) -> GRPOConfig:
    kw = dict(output_dir=str(tmp_path), bf16=False, gradient_checkpointing=False, use_cpu=True, report_to="none",
              num_generations=G, per_device_train_batch_size=G, gradient_accumulation_steps=2,
              steps_per_generation=2, max_steps=2, max_completion_length=4, beta=0.0, learning_rate=1e-2,
              save_strategy="no", logging_steps=1, seed=0, temperature=1.0)
    return GRPOConfig(**(kw | overrides))


@pytest.fixture(scope="module")
def tiny():
    tok = build_char_tokenizer()
    suite = build_suite(["add1"], POOL, 2, 0)
    return tok, build_trl_dataset(suite.pool)


def test_grpo_trainer_trains_on_the_prompts_the_sampler_plans(tiny, tmp_path):
    tok, ds = tiny
    model = build_tiny_model(tok, layers=1, hidden=16, heads=2, kv_heads=1, intermediate=32, seed=0)
    before = [p.detach().clone() for p in model.parameters()]
    seen: list[int] = []

    def spy(prompts, completions, **kw):  # the pool indices TRL scored; mixed rewards so the model learns
        seen.extend(kw[INDEX_COLUMN])
        return [float(i % 2) for i in range(len(completions))]

    # one optimiser step per generation batch: the loader has fetched the next batch before this one is scored,
    # so only planning at generation time lets batch 2 see batch 1's rewards
    args = grpo_args(tmp_path, reward_weights=[1.0, 1.0], per_device_train_batch_size=B * G,
                     gradient_accumulation_steps=1, steps_per_generation=1)
    trainer = RollwiseGRPOTrainer(model=model, reward_funcs=[build_trl_reward("synthetic_int"), spy], args=args,
                                  train_dataset=ds, processing_class=tok, sampler="vade")
    sampler = trainer.rollwise_sampler
    planned: list[int] = []
    plan = sampler.plan

    def record():
        p = plan()
        planned.extend(p.tolist())
        return p

    sampler.plan = record
    trainer.train()
    assert sampler.step == 2 and len(planned) == 2 * B  # two batches, each observed before the next was planned
    assert seen == np.repeat(planned, G).tolist()  # TRL scored exactly the planned prompts, in TRL's layout
    assert int(sampler.pipeline.selector._touched.sum()) == len(set(planned))
    assert sampler.pipeline.stats.attempts.sum() == 2 * B * G  # fed by the verifier (index 0), not the spy
    assert sampler.metrics()["sampler/budget_spent"] == B * G
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    logged = [r for r in trainer.state.log_history if "sampler/pool_seen" in r]
    assert logged and logged[-1]["sampler/pool_seen"] == len(set(planned))


def test_trainer_refusals(tiny, tmp_path):
    tok, ds = tiny
    reward = build_trl_reward("synthetic_int")
    model = build_tiny_model(tok, layers=1, hidden=16, heads=2, kv_heads=1, intermediate=32, seed=0)
    with pytest.raises(ValueError, match="feedback_reward=1 must index a callable"):
        RollwiseGRPOTrainer(model=model, reward_funcs=reward, train_dataset=ds, processing_class=tok,
                            args=grpo_args(tmp_path), feedback_reward=1)
    with pytest.raises(ValueError, match="sampler 'dapo' cannot drive TRL"):
        RollwiseGRPOTrainer(model=model, reward_funcs=reward, train_dataset=ds, processing_class=tok,
                            args=grpo_args(tmp_path), sampler="dapo")


def test_resumed_trainer_plans_what_the_uninterrupted_one_planned(tiny, tmp_path):
    """A checkpoint holds the sampler state; resuming from step 1 plans the same batch 2 as the run that went on."""
    tok, ds = tiny

    def run(resume: str | None) -> tuple[RollwiseGRPOTrainer, list[int]]:
        model = build_tiny_model(tok, layers=1, hidden=16, heads=2, kv_heads=1, intermediate=32, seed=0)
        args = grpo_args(tmp_path, per_device_train_batch_size=B * G, gradient_accumulation_steps=1,
                         steps_per_generation=1, save_strategy="steps", save_steps=1)
        trainer = RollwiseGRPOTrainer(model=model, reward_funcs=build_trl_reward("synthetic_int"), args=args,
                                      train_dataset=ds, processing_class=tok, sampler="vade")
        planned: list[int] = []
        plan = trainer.rollwise_sampler.plan
        trainer.rollwise_sampler.plan = lambda: (p := plan(), planned.extend(p.tolist()))[0]
        trainer.train(resume_from_checkpoint=resume)
        return trainer, planned

    full, planned = run(None)
    assert (tmp_path / "checkpoint-1" / "rollwise_sampler.pkl").is_file()
    resumed, again = run(str(tmp_path / "checkpoint-1"))
    assert resumed.rollwise_sampler.step == 2
    assert again == planned[B:] != planned[:B]  # a fresh sampler would have planned batch 1 again

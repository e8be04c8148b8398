"""Prime Intellect's ``verifiers`` through its own rollout loop: environments built here from in-memory datasets (no
download) call an OpenAI-compatible client backed by a rollwise engine; the tests check the client speaks the API
(token ids and logprobs as vLLM returns them), that verifiers' trajectory becomes the same episodes as rollwise's
own loop plays (token for token on guess-the-number), that requests are batched, that limits end episodes
cleanly, that an environment or rubric that misbehaves is a counted fault (a raising reward function is never
trained on as verifiers' 0), and that ``[env] type = "verifiers"`` trains through the trainer.

Needs the verifiers extra (``pip install -e ".[verifiers]"``); it pins other versions of packages the test
environment shares, so they run in a venv of their own that sees the shared packages::

    python -m venv --system-site-packages /tmp/vf && /tmp/vf/bin/pip install "verifiers>=0.3.1,<0.4"
    /tmp/vf/bin/python -m pytest tests/envs/test_verifiers_env.py
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest

vf = pytest.importorskip("verifiers", reason="needs the verifiers extra (pip install -e '.[verifiers]')")
pytest.importorskip("verifiers.legacy", reason="needs verifiers' classic API (0.3.x)")

from datasets import Dataset  # noqa: E402
from env_helpers import binary_search_engine  # noqa: E402

from rollwise.envs.base import ENV_FAULTS  # noqa: E402
from rollwise.envs.collector import EpisodeCollector, episode_metrics  # noqa: E402
from rollwise.envs.guess import GuessNumber, turns_to_solve  # noqa: E402
from rollwise.envs.loop import AgentLoop, PlainFormat  # noqa: E402
from rollwise.envs.openai_shim import EngineChatServer  # noqa: E402
from rollwise.envs.verifiers_env import VerifiersEnv, VerifiersKnobs, VerifiersLoop  # noqa: E402
from rollwise.generation import SamplingParams  # noqa: E402
from rollwise.generation.scripted import ScriptedEngine  # noqa: E402
from rollwise.sampler_tables import build_pipeline  # noqa: E402
from rollwise.sampling import Budget  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def fmt(tok) -> PlainFormat:
    return PlainFormat(lambda s: tok.encode(s, add_special_tokens=False), (tok.eos_token_id,))


def params(tok, **kw) -> SamplingParams:
    return SamplingParams(max_new_tokens=kw.pop("max_new_tokens", 4), seed=0, stop_token_ids=(tok.eos_token_id,), **kw)


class Counting:
    """An engine wrapper counting ``generate`` calls."""

    def __init__(self, engine) -> None:
        self.engine, self.calls = engine, 0

    def generate(self, *a, **kw):
        self.calls += 1
        return self.engine.generate(*a, **kw)


def sayer(tok, text: str, logprob: float = -0.5) -> ScriptedEngine:
    eos = tok.eos_token_id

    def script(ids, j, call):
        toks = tok.encode(text, add_special_tokens=False) + [eos]
        return toks, [logprob] * len(toks), "stop"

    return ScriptedEngine(script, tokenizer=tok)


def test_the_client_is_openai_compatible(tokenizer):
    server = EngineChatServer(sayer(tokenizer, "12"), fmt(tokenizer), params(tokenizer), max_tokens=64, max_turns=4)

    async def ask():
        client = server.client()
        return await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "a?"}],
                                                    max_tokens=4, logprobs=True)

    got = asyncio.run(ask())
    choice = got.choices[0]
    assert (choice.message.content, choice.finish_reason) == ("12", "stop")
    prompt = tokenizer.encode("a?", add_special_tokens=False)
    action = tokenizer.encode("12", add_special_tokens=False) + [tokenizer.eos_token_id]
    assert got.prompt_token_ids == prompt and choice.token_ids == action  # vLLM's return_token_ids fields
    assert [t.logprob for t in choice.logprobs.content] == [-0.5] * 3
    assert server.records[got.id].token_ids == action and server.records[got.id].versions == [0, 0, 0]


def test_verifiers_plays_the_same_episodes_as_rollwises_loop(tokenizer):
    """Binary search over guess 1-7 through verifiers' MultiTurnEnv and through AgentLoop + GuessNumber: the same
    turns token for token (contexts, actions, logprobs), rewards 0.9^(t-1) on the solving turn, all in one
    generate call per turn (7 episodes batched)."""
    env = VerifiersEnv(env_args={"n": 7})
    tasks = env.tasks("eval", 0, 0)
    assert [t.reference for t in tasks] == [str(s) for s in range(1, 8)]
    engine = Counting(binary_search_engine(tokenizer, 7))
    limits = VerifiersKnobs(max_turns=5)
    eps = VerifiersLoop(engine, env, fmt(tokenizer), limits).run(tasks, list(range(7)), params(tokenizer))
    guess = GuessNumber(n=7)
    ref = AgentLoop(binary_search_engine(tokenizer, 7), lambda: GuessNumber(n=7), fmt(tokenizer), limits).run(
        guess.tasks("eval", 0, 0), list(range(7)), params(tokenizer))
    for s, (e, r) in enumerate(zip(eps, ref), start=1):
        t = turns_to_solve(7, s)
        assert (e.finish, e.fault, e.success, e.num_turns) == ("done", None, True, t)
        assert [x.reward for x in e.turns] == pytest.approx([0.0] * (t - 1) + [0.9 ** (t - 1)])
        assert [(x.context_ids, x.action_ids, x.logprobs, x.text) for x in e.turns] == \
            [(x.context_ids, x.action_ids, x.logprobs, x.text) for x in r.turns]
        assert e.tokens == r.tokens
        for a, b in zip(e.turns, e.turns[1:]):  # no re-tokenisation: each prompt extends the last one's
            assert b.context_ids[:len(a.context_ids) + len(a.action_ids) - 1] == a.context_ids + a.action_ids[:-1]
    assert engine.calls == 3  # ceil(log2(8)) turns, every live episode in one call


def test_single_turn_env_from_an_in_memory_dataset(tokenizer):
    rows = Dataset.from_list([{"question": "1+2=", "answer": "3"}, {"question": "2+2=", "answer": "4"}])

    def exact(completion, answer, **kw) -> float:
        return float(completion[-1]["content"].strip() == answer)

    env = VerifiersEnv.__new__(VerifiersEnv)
    env.vf_env, env.model_name, env.success_reward = vf.SingleTurnEnv(dataset=rows, rubric=vf.Rubric(funcs=[exact])), \
        "m", 0.5
    tasks = env.tasks("train", 2, 0)
    eps = VerifiersLoop(sayer(tokenizer, "3"), env, fmt(tokenizer), VerifiersKnobs()).run(tasks, [0, 1],
                                                                                         params(tokenizer))
    by_answer = {t.reference: e for t, e in zip(tasks, eps)}
    assert [(e.num_turns, e.success, e.turns[0].reward) for e in (by_answer["3"], by_answer["4"])] == \
        [(1, True, 1.0), (1, False, 0.0)]
    assert tokenizer.decode(by_answer["3"].turns[0].context_ids) == "1+2="


def test_limits_end_episodes_cleanly(tokenizer):
    env = VerifiersEnv(env_args={"n": 7, "max_turns": 9})
    tasks = env.tasks("eval", 0, 0)[:1]  # secret 1: binary search needs 3 turns
    (ep,) = VerifiersLoop(binary_search_engine(tokenizer, 7), env, fmt(tokenizer),
                          VerifiersKnobs(max_turns=2)).run(tasks, [0], params(tokenizer))
    assert (ep.finish, ep.num_turns, ep.fault, ep.success, ep.episode_return) == ("max_turns", 2, None, False, 0.0)
    (ep,) = VerifiersLoop(binary_search_engine(tokenizer, 7), VerifiersEnv(env_args={"n": 7, "max_turns": 2}),
                          fmt(tokenizer), VerifiersKnobs()).run(tasks, [0], params(tokenizer))
    assert (ep.finish, ep.num_turns, ep.success) == ("max_turns", 2, False)  # the environment's own limit
    (ep,) = VerifiersLoop(binary_search_engine(tokenizer, 7), env, fmt(tokenizer),
                          VerifiersKnobs(max_tokens=16)).run(tasks, [0], params(tokenizer))
    # "guess 1-7\n" (10) + "4" + " down\n" = 17 tokens after turn 1: no room for a second action, as in AgentLoop
    (ref,) = AgentLoop(binary_search_engine(tokenizer, 7), lambda: GuessNumber(n=7), fmt(tokenizer),
                       VerifiersKnobs(max_tokens=16)).run(GuessNumber(n=7).tasks("eval", 0, 0)[:1], [0],
                                                          params(tokenizer))
    assert (ep.finish, ep.num_turns, ep.fault) == (ref.finish, ref.num_turns, ref.fault) == ("max_tokens", 1, None)


class Hostile(vf.MultiTurnEnv):
    """One turn, then done; ``how`` says how the environment or its rubric misbehaves."""

    def __init__(self, how: str, **kw) -> None:
        self.how = how

        def reward(state, **kw) -> float:
            if how == "rubric_raises":
                raise RuntimeError("reward function crashed")
            return {"nan": math.nan, "inf": math.inf, "out_of_range": 2.0}.get(how, 1.0)

        async def slow(state, **kw) -> float:
            await asyncio.sleep(5)
            return 1.0

        rows = Dataset.from_list([{"question": "go\n", "answer": "x"}])
        super().__init__(dataset=rows, rubric=vf.Rubric(funcs=[slow if how == "rubric_hangs" else reward]),
                         max_turns=2, **kw)

    async def env_response(self, messages, state, **kw):
        if self.how == "env_raises":
            raise vf.Error("environment crashed")
        state["final_env_response"] = [vf.UserMessage(content="")]
        return state["final_env_response"]


@pytest.mark.parametrize("how,kind", [("env_raises", "error"), ("rubric_raises", "error"), ("nan", "nan"),
                                      ("inf", "inf"), ("out_of_range", "out_of_range"), ("rubric_hangs", "timeout"),
                                      ("fine", None)])
def test_a_misbehaving_environment_is_a_counted_fault_never_trained(tokenizer, how, kind):
    env = VerifiersEnv.__new__(VerifiersEnv)
    env.vf_env, env.model_name, env.success_reward = Hostile(how), "m", 0.5
    collector = EpisodeCollector(sayer(tokenizer, "x"), env, VerifiersKnobs(timeout_s=0.2, max_turns=4),
                                 env.tasks("train", 1, 0), fmt(tokenizer), params(tokenizer))
    collector.loop = VerifiersEnv.agent_loop(collector.engine, lambda: env, fmt(tokenizer), collector.limits)
    pipe = build_pipeline(preset="uniform", pool_size=1, group_size=2, batch_prompts=1, total_steps=2, seed=0)
    out = collector.collect(pipe, 0, Budget(2), seed=0, version=0)
    m = collector.metrics()
    if kind is None:
        assert len(out.rollouts[0]) == 2 and m["env/success"] == 1.0
    else:
        assert m[f"env/faults_{kind}"] == 2 and sum(m[f"env/faults_{k}"] for k in ENV_FAULTS) == 2, m
        assert not out.rollouts and out.discarded_rollouts == 2  # each episode's one turn: charged, dropped


def test_eval_metrics_from_verifiers_episodes(tokenizer):
    env = VerifiersEnv(env_args={"n": 3})
    eps = VerifiersLoop(binary_search_engine(tokenizer, 3), env, fmt(tokenizer), VerifiersKnobs()).run(
        env.tasks("eval", 0, 0), [0, 1, 2], params(tokenizer))
    m = episode_metrics(eps)
    assert (m["env/success"], m["env/turns_mean"], m["env/solve_turns"]) == (1.0, 5 / 3, 5 / 3)


def test_a_run_trains_through_verifiers(tmp_path):
    """``[env] type = "verifiers"`` on the embedded model: warm start on guess's scripted player (the default
    environment speaks guess's words), then RL steps whose turns come from verifiers' own loop."""
    import torch

    from rollwise.config import load_config, parse_overrides
    from rollwise.logging import read_metrics
    from rollwise.train.trainer import Trainer

    cfg = load_config(ROOT / "configs" / "guess.toml", [
        ("env", {"type": "verifiers", "env_args": {"n": 3, "max_turns": 5}, "max_turns": 5}), *parse_overrides([
        f"--run.out_dir={tmp_path}", f"--warmstart.cache_dir={tmp_path / 'ws'}", "--model.layers=1",
        "--model.hidden=32", "--model.heads=2", "--model.kv_heads=1", "--model.intermediate=64",
        "--warmstart.steps=60", "--warmstart.batch_size=32", "--task.train_size=32", "--sampler.batch_prompts=2",
        "--sampler.group_size=4", "--trainer.steps=2", "--trainer.eval_every=2", "--trainer.checkpoint_every=0",
        "--trainer.plots=false", "--trainer.progress=false", "--run.threads=1", "--algo.lr=1e-2",
        "--trainer.eval_samples=1", "--algo.mini_batches=1"])])
    t = Trainer(cfg)
    assert isinstance(t.collector.loop, VerifiersLoop)
    before = torch.cat([p.detach().flatten().clone() for p in t.model.parameters()])
    t.train()
    t.close()
    rows = read_metrics(t.run_dir)
    steps = [r for r in rows if "env/success" in r]
    assert [r["step"] for r in steps] == [1, 2]
    assert all(r["env/episodes"] == 8 and r["env/turns_mean"] >= 1 for r in steps)
    assert all(sum(r[f"env/faults_{k}"] for k in ENV_FAULTS) == 0 for r in steps)
    assert [r["step"] for r in rows if "eval/verifiers/success" in r] == [0, 2]
    assert not torch.allclose(before, torch.cat([p.detach().flatten() for p in t.model.parameters()]))


def test_an_empty_action_is_played_not_a_fault(tokenizer):
    """A policy that says nothing (the stop token alone) is trained on, not dropped: verifiers would call a reply
    with no content a model error; the client reports it in the one empty form verifiers accepts."""
    env = VerifiersEnv(env_args={"n": 3, "max_turns": 2})
    (ep,) = VerifiersLoop(sayer(tokenizer, ""), env, fmt(tokenizer), VerifiersKnobs(max_turns=2)).run(
        env.tasks("eval", 0, 0)[:1], [0], params(tokenizer))
    assert (ep.fault, ep.finish, ep.num_turns) == (None, "max_turns", 2)
    assert [t.action_ids for t in ep.turns] == [[tokenizer.eos_token_id]] * 2
    assert tokenizer.decode(ep.turns[1].context_ids) == "guess 1-3\n ?\n"  # the environment saw an empty guess


def test_async_mode_and_env_workers_are_refused(tmp_path):
    from rollwise.config import load_config, parse_overrides
    from rollwise.envs.collector import build_episode_collector

    class Tok:
        eos_token_id, chat_template = 1, None

        def __call__(self, s, add_special_tokens=False):
            return {"input_ids": [1] * len(s)}

    base = [("env", {"type": "verifiers", "env_args": {"n": 3}})]
    cfg = load_config(ROOT / "configs" / "guess.toml", base + parse_overrides(["--run.mode=async"]))
    with pytest.raises(ValueError, match="run.mode = 'sync' only"):
        build_episode_collector(cfg, None, [], Tok(), SamplingParams())
    limits = VerifiersKnobs(workers=2)
    with pytest.raises(ValueError, match="env.workers"):
        VerifiersEnv.agent_loop(None, lambda: None, None, limits)

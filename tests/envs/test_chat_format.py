"""Chat templates across turns (``envs/chat.py``): an episode's context of every turn is, token for token, the
tokenizer's encoding of ``apply_chat_template`` on the whole conversation so far, up to the documented difference
(the action tokens are the sampled ones, never re-tokenised). Runs on a SmolLM2-like tokenizer built in the test,
and on SmolLM2's own tokenizer where the checkpoint is imported."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from rollwise.envs.base import EnvKnobs
from rollwise.envs.chat import ChatFormat
from rollwise.envs.ledger import Ledger
from rollwise.envs.loop import AgentLoop, PlainFormat
from rollwise.generation.base import SamplingParams
from rollwise.generation.scripted import ScriptedEngine
from tests.envs.chat_helpers import SMOLLM2, smol_like_tokenizer

SYSTEM = "You solve math word problems with a calculator."


def _tokenizers() -> list[Any]:
    toks = [pytest.param(smol_like_tokenizer, id="smol-like")]
    real = pytest.mark.skipif(not (SMOLLM2 / "tokenizer.json").is_file(), reason="models/smollm2 not imported")

    def smollm2() -> Any:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(SMOLLM2)

    return toks + [pytest.param(smollm2, id="smollm2", marks=real)]


def encode(tok: Any, text: str) -> list[int]:
    return list(tok(text, add_special_tokens=False)["input_ids"])


def whole(tok: Any, messages: list[dict[str, str]]) -> list[int]:
    """The reference: the whole conversation rendered by the template, then encoded."""
    return encode(tok, tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))


def expert_engine(tok: Any, actions: list[str], spell: bool = False, cut_at: int | None = None) -> ScriptedEngine:
    """Plays ``actions`` in turn (turn = assistant headers in the context - 1), each + <|im_end|>. ``spell``:
    one token per character (a split the tokenizer never writes); ``cut_at``: that turn runs out of tokens."""
    eos = tok.convert_tokens_to_ids("<|im_end|>")

    def script(ids: list[int], j: int, call: int) -> tuple[list[int], list[float], str]:
        turn = tok.decode(ids).count("<|im_start|>assistant") - 1
        text = actions[turn]
        toks = [i for ch in text for i in encode(tok, ch)] if spell else encode(tok, text)
        if turn == cut_at:
            return toks, [-0.5] * len(toks), "length"
        return toks + [eos], [-0.5] * (len(toks) + 1), "stop"

    return ScriptedEngine(script, tokenizer=tok)


def play(tok: Any, engine: ScriptedEngine, task_seed: int = 3) -> tuple[Any, list[str], list[dict[str, str]]]:
    env = Ledger(["mix2"])
    task = env.tasks("eval", 1, task_seed)[0]
    actions = env.expert(task)
    loop = AgentLoop(engine, lambda: Ledger(["mix2"]), ChatFormat(tok, SYSTEM), EnvKnobs(max_turns=6, max_tokens=900))
    (ep,) = loop.run([task], [0], SamplingParams(temperature=0.0, max_new_tokens=40, stop_token_ids=(0,)))
    first = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": task.text + "\n"}]
    return ep, actions, first


@pytest.mark.parametrize("make_tok", _tokenizers())
def test_every_turn_context_is_the_whole_conversation_rendered(make_tok):
    tok = make_tok()
    env = Ledger(["mix2"])
    task = env.tasks("eval", 1, 3)[0]
    actions = env.expert(task)  # CALC a + b, CALC (a+b) - c, ANSWER
    ep, _, messages = play(tok, expert_engine(tok, actions))
    assert ep.finish == "done" and ep.success and ep.num_turns == 3
    env.reset(task)
    for t, action in zip(ep.turns, actions):
        assert t.context_ids == whole(tok, messages)  # token-exact up to here
        assert t.text == action
        obs = env.step(action).observation
        messages = messages + [{"role": "assistant", "content": action}, {"role": "user", "content": obs}]
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert ep.turns[0].action_ids[-1] == im_end
    assert ep.turns[1].context_ids.count(im_end) == 4  # system, question, first action, its answer: none doubled


@pytest.mark.parametrize("make_tok", _tokenizers())
def test_sampled_action_tokens_are_kept_as_sampled(make_tok):
    """The documented difference: a split of the action the tokenizer would not write stays in the context."""
    tok = make_tok()
    env = Ledger(["mix2"])
    actions = env.expert(env.tasks("eval", 1, 3)[0])
    ep, _, messages = play(tok, expert_engine(tok, actions, spell=True))
    fmt = ChatFormat(tok, SYSTEM)
    sampled = ep.turns[0].action_ids
    assert tok.decode(sampled[:-1]) == actions[0] and sampled[:-1] != encode(tok, actions[0])  # not re-tokenised
    obs = [{"role": "user", "content": _obs(actions[0])}]
    assert ep.turns[1].context_ids == whole(tok, messages) + sampled + fmt.suffix(obs)[1:]
    # decoded, the context reads exactly as the template renders the conversation
    text = tok.apply_chat_template(messages + [{"role": "assistant", "content": actions[0]}, *obs],
                                   add_generation_prompt=True, tokenize=False)
    assert tok.decode(ep.turns[1].context_ids) == text


def _obs(calc: str) -> str:
    from rollwise.envs.ledger import safe_eval, show

    return f"= {show(safe_eval(calc.split(':', 1)[1]))}\n"


def test_an_action_cut_by_the_token_cap_gets_the_end_of_turn_token():
    tok = smol_like_tokenizer()
    env = Ledger(["mix2"])
    actions = env.expert(env.tasks("eval", 1, 3)[0])
    ep, _, messages = play(tok, expert_engine(tok, actions, cut_at=0))
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert ep.turns[0].finish_reason == "length" and im_end not in ep.turns[0].action_ids
    messages += [{"role": "assistant", "content": actions[0]}, {"role": "user", "content": _obs(actions[0])}]
    assert ep.turns[1].context_ids == whole(tok, messages)


def test_stops_at_the_end_of_turn_token_and_first_adds_the_system_prompt():
    tok = smol_like_tokenizer()
    fmt = ChatFormat(tok, SYSTEM)
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert fmt.stop_ids == (im_end,)
    assert fmt.end_of_turn == encode(tok, "<|im_end|>\n")
    engine = expert_engine(tok, ["ANSWER: 1"])
    play(tok, engine)
    assert im_end in engine.history[0].params.stop_token_ids and 0 in engine.history[0].params.stop_token_ids
    user = [{"role": "user", "content": "hi"}]
    assert fmt.first(user) == whole(tok, [{"role": "system", "content": SYSTEM}, *user])
    own = [{"role": "system", "content": "mine"}, *user]
    assert fmt.first(own) == whole(tok, own)  # the environment's own system message wins
    assert ChatFormat(tok).first(user) == whole(tok, user)  # the template's default system prompt
    assert tok.decode(fmt.suffix(user)) == "<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_a_template_that_rewrites_past_turns_is_refused():
    tok = smol_like_tokenizer()
    rewriting = ("{% for m in messages %}{% if m['role'] == 'assistant' and not loop.last %}{{ '<|im_start|>assistant"
                 "\n[hidden]<|im_end|>\n' }}{% else %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + "
                 "'<|im_end|>\n' }}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n'"
                 " }}{% endif %}")
    other = copy.deepcopy(tok)
    other.chat_template = rewriting
    fmt = ChatFormat(other)
    with pytest.raises(ValueError, match="not prefix-stable"):
        fmt.suffix([{"role": "user", "content": "= 3\n"}])
    with pytest.raises(ValueError, match="chat template"):
        ChatFormat(type("NoTemplate", (), {"chat_template": None})())


def test_the_collector_chooses_the_format_from_the_tokenizer_and_task_chat(tmp_path):
    from rollwise.config import load_config
    from rollwise.envs.collector import build_episode_collector

    tok = smol_like_tokenizer()
    base = ["--env.type=ledger", f"--run.out_dir={tmp_path}", "--task.system_prompt=Play."]
    cfg = load_config("configs/smoke.toml", base)
    got = build_episode_collector(cfg, None, [], tok, SamplingParams())
    assert isinstance(got.loop.fmt, ChatFormat) and got.loop.fmt.system_prompt == "Play."
    cfg = load_config("configs/smoke.toml", [*base, "--task.chat=false"])
    assert isinstance(build_episode_collector(cfg, None, [], tok, SamplingParams()).loop.fmt, PlainFormat)

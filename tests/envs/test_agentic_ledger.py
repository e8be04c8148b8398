"""PivotRL's and UI-S1's step contexts on ``ledger`` through a chat template (SmolLM2's, on a stand-in tokenizer):
token for token what a free-running episode sees at that turn, and UI-S1's match on the parsed action."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rollwise.config import load_config
from rollwise.envs.base import EnvKnobs
from rollwise.envs.chat import ChatFormat
from rollwise.envs.ledger import Ledger
from rollwise.envs.loop import AgentLoop
from rollwise.envs.methods import StepCollectorBase
from rollwise.envs.pivot import expert_candidates
from rollwise.envs.semi_online import play_semi_online
from rollwise.generation.base import SamplingParams
from rollwise.generation.scripted import ScriptedEngine
from tests.envs.chat_helpers import smol_like_tokenizer

ROOT = Path(__file__).resolve().parents[2]
PRESET = ROOT / "configs" / "smollm2_ledger.toml"


def test_canonical_action_hand_values():
    canon = Ledger.canonical_action
    assert canon("CALC: 23 + 45 = 68\nThe answer is 68.") == canon("CALC: 23+45") == "CALC:23+45"
    assert canon("CALC: 45 + 23") == "CALC:45+23"  # the same value, another string: the functional check's job
    assert canon("So ANSWER: 1,056.") == canon("ANSWER: 1056") == "ANSWER:1056"
    assert canon("The answer is 56.") is None and canon("ANSWER: many") is None


def scripted(tok: Any, by_turn: list[str]) -> ScriptedEngine:
    """Turn t (assistant headers in the context - 1) writes ``by_turn[t]``, closed by <|im_end|>."""
    eos = tok.convert_tokens_to_ids("<|im_end|>")

    def script(ids: list[int], j: int, call: int) -> tuple[list[int], list[float], str]:
        turn = tok.decode(ids).count("<|im_start|>assistant") - 1
        toks = list(tok(by_turn[turn], add_special_tokens=False)["input_ids"]) + [eos]
        return toks, [-0.5] * len(toks), "stop"
    return ScriptedEngine(script, tokenizer=tok)


def collector(tok: Any, engine: ScriptedEngine) -> tuple[StepCollectorBase, Any]:
    cfg = load_config(PRESET, ["--model.path=unused", "--run.threads=1"])
    params = SamplingParams(temperature=0.0, max_new_tokens=40, stop_token_ids=(tok.eos_token_id,), seed=0)
    task = Ledger(["mix2"]).tasks("eval", 1, 3)[0]
    return StepCollectorBase(cfg, engine, [task], tok, params), task


def test_pivot_candidates_are_the_expert_episode_contexts():
    tok = smol_like_tokenizer()
    task = Ledger(["mix2"]).tasks("eval", 1, 3)[0]
    expert = Ledger().expert(task)
    engine = scripted(tok, expert)
    coll, task = collector(tok, engine)
    assert isinstance(coll.fmt, ChatFormat) and coll.stops == (tok.eos_token_id,)  # <|im_end|> is SmolLM2's eos
    loop = AgentLoop(engine, lambda: Ledger(["mix2"]), ChatFormat(tok, coll.fmt.system_prompt),
                     EnvKnobs(max_turns=6, max_tokens=900))
    (ep,) = loop.run([task], [0], coll.params)
    assert ep.success and len(ep.turns) == 3
    cands = expert_candidates(coll, [task], [0])
    assert [c.expert for c in cands] == expert
    assert [c.context for c in cands] == [t.context_ids for t in ep.turns]  # token for token
    assert "<|im_start|>system\nYou solve math word problems" in tok.decode(cands[0].context)


def test_semi_online_matches_the_parsed_action_patches_and_keeps_own_tokens():
    tok = smol_like_tokenizer()
    task = Ledger(["mix2"]).tasks("eval", 1, 3)[0]
    e = Ledger().expert(task)
    a, b, _ = task.meta["operands"]
    own0 = f"CALC: {a}+{b} = {a + b}"  # the expert's step, written otherwise: a match
    engine = scripted(tok, [own0, "CALC: 1 + 1", e[2]])  # turn 1 is wrong: patched with the expert's
    coll, task = collector(tok, engine)
    (ro,) = play_semi_online(coll, [task], [0], coll.params, 2, 0)
    assert [s.matched for s in ro.steps] == [True, False, True] and ro.patches == 1 and not ro.success
    system = coll.fmt.system_prompt
    env = Ledger()
    env.reset(task)
    obs0, obs1 = env.step(own0).observation, env.step(e[1]).observation
    messages = [{"role": "system", "content": system}, {"role": "user", "content": task.text + "\n"},
                {"role": "assistant", "content": own0}, {"role": "user", "content": obs0},
                {"role": "assistant", "content": e[1]}, {"role": "user", "content": obs1}]
    whole = tok(tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False),
                add_special_tokens=False)["input_ids"]
    assert ro.steps[2].context_ids == list(whole)  # own tokens at turn 0, the patch at turn 1
    (sop,) = play_semi_online(coll, [task], [0], coll.params, 0, 0)  # SOP: no patch, stop at the first mismatch
    assert [s.matched for s in sop.steps] == [True, False] and sop.matched / sop.expert_len == 1 / 3

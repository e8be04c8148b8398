"""ScriptedEngine: script functions and canned tables, truncation, call records, protocol conformance."""

from __future__ import annotations

import pytest

from rollwise.generation import ENGINES, Engine, SamplingParams
from rollwise.generation.scripted import ScriptedEngine
from rollwise.train.model import build_char_tokenizer


def test_script_function_gets_sample_and_call_index():
    def script(ids: list[int], j: int, call: int) -> tuple[list[int], list[float], str]:
        return [ids[0], j, call], [-0.5, -1.0, -1.5], "stop"

    engine = ScriptedEngine(script)
    assert isinstance(engine, Engine)
    out = engine.generate([[5, 6], [9]], [2, 1], SamplingParams(max_new_tokens=8))
    assert [[c.token_ids for c in g] for g in out] == [[[5, 0, 0], [5, 1, 0]], [[9, 0, 0]]]
    assert out[0][0].logprobs == [-0.5, -1.0, -1.5] and out[0][0].finish_reason == "stop"
    out = engine.generate([[5]], [1], SamplingParams(max_new_tokens=2))
    assert out[0][0].token_ids == [5, 0] and out[0][0].finish_reason == "length"  # cut at max_new_tokens
    assert engine.calls == 2 and engine.history[0].counts == [2, 1]
    st = engine.last_stats
    assert (st.sequences, st.prompt_tokens, st.completion_tokens) == (1, 1, 2)


def test_table_by_text_cycles_samples_and_appends_eos():
    tok = build_char_tokenizer()
    engine = ScriptedEngine({"1+1=": ["2", "3"], "hi": "yo"}, tokenizer=tok, logprob=-0.25)
    out = engine.generate([tok.encode("1+1="), tok.encode("hi")], [3, 1], SamplingParams(max_new_tokens=4))
    assert [c.text for c in out[0]] == ["2", "3", "2"] and out[1][0].text == "yo"
    c = out[1][0]
    assert c.token_ids == [*tok.encode("yo"), tok.eos_token_id] and c.finish_reason == "stop"
    assert c.logprobs == [-0.25] * 3
    with pytest.raises(KeyError):
        engine.generate([tok.encode("unknown")], [1], SamplingParams())


def test_table_by_ids_default_and_sync():
    tok = build_char_tokenizer()
    engine = ScriptedEngine({(3, 4): "abc"}, tokenizer=tok, append_eos=False, default="z")
    out = engine.generate([[3, 4], [7]], [1, 1], SamplingParams(max_new_tokens=8))
    assert out[0][0].text == "abc" and out[0][0].finish_reason == "length" and out[1][0].text == "z"
    engine.sync_weights(None, 3)
    engine.generate([[7]], [1], SamplingParams())
    assert engine.synced == [3] and engine.history[-1].version == 3
    with pytest.raises(ValueError):
        ScriptedEngine({"a": "b"})


def test_scripted_engine_from_config_gives_every_prompt_its_default():
    tok = build_char_tokenizer()
    engine = ENGINES.get("scripted")(None, tok, batch_size=8, default="42")  # what build_engine calls
    out = engine.generate([tok.encode("1+1="), tok.encode("9-3=")], [2, 1], SamplingParams(max_new_tokens=4))
    assert [c.text for cs in out for c in cs] == ["42", "42", "42"]

"""Prompt templates: presets, literal ``{prompt}`` filling, chat templates with a system prompt, and the one
prompt encoding (text -> ids) that the trainer and ``rollwise eval`` share."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from rollwise.data.templates import TEMPLATES, encode_prompt, render_prompt


class FakeChatTokenizer:
    """Records the messages and renders them in a ChatML-like layout."""

    chat_template = "{% for m in messages %}...{% endfor %}"

    def apply_chat_template(self, messages, add_generation_prompt, tokenize):
        assert add_generation_prompt is True and tokenize is False
        self.messages = messages
        return "".join(f"<|{m['role']}|>{m['content']}\n" for m in messages) + "<|assistant|>"


def test_plain_is_identity():
    assert render_prompt("What is 2+2?") == "What is 2+2?"


def test_boxed_preset_keeps_latex_braces_and_prompt_braces():
    text = render_prompt("Find {x} in $\\{1,2\\}$.", "boxed")
    assert text.startswith("Find {x} in $\\{1,2\\}$.") and text.endswith("within \\boxed{}.")
    assert TEMPLATES["boxed"].replace("{prompt}", "Find {x} in $\\{1,2\\}$.") == text


def test_custom_format_string():
    assert render_prompt("2+2", "Q: {prompt}\nA:") == "Q: 2+2\nA:"


def test_unknown_template_raises():
    with pytest.raises(KeyError, match="boxed"):
        render_prompt("x", "no-such-template")


def test_chat_template_with_system_prompt():
    tok = FakeChatTokenizer()
    text = render_prompt("2+2?", "boxed", tok, system_prompt="Be brief.")
    assert tok.messages[0] == {"role": "system", "content": "Be brief."}
    assert tok.messages[1]["role"] == "user" and tok.messages[1]["content"].startswith("2+2?")
    assert text.endswith("<|assistant|>")


def test_config_like_object():
    tok = FakeChatTokenizer()
    cfg = SimpleNamespace(template="plain", system_prompt="S")
    assert render_prompt("hi", cfg, tok) == "<|system|>S\n<|user|>hi\n<|assistant|>"
    assert render_prompt("hi", cfg, tok, chat=False) == "hi"


def test_tokenizer_without_chat_template_renders_plain():
    tok = SimpleNamespace(chat_template=None)
    assert render_prompt("hi", "qa", tok) == "Question: hi\nAnswer:"
    with pytest.raises(ValueError, match="chat_template"):
        render_prompt("hi", "qa", tok, chat=True)


class CharChatTokenizer(FakeChatTokenizer):
    """Code points as ids; ``add_special_tokens`` would put a BOS (0) first."""

    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": [0] * add_special_tokens + [ord(c) for c in text]}


def test_encode_prompt_tokenizes_the_rendered_text_without_special_tokens():
    tok = CharChatTokenizer()
    chat = SimpleNamespace(template="qa", system_prompt="S")
    expected = "<|system|>S\n<|user|>Question: hi\nAnswer:\n<|assistant|>"
    assert encode_prompt("hi", chat, tok) == [ord(c) for c in expected]
    plain = SimpleNamespace(template="Q: {prompt}", chat=False)
    assert encode_prompt("2+2", plain, tok) == [ord(c) for c in "Q: 2+2"]

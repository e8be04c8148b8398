"""Prompt templates: a ``{prompt}`` string or a named preset, optionally inside the tokenizer's chat template.

The template is filled by literal replacement of ``{prompt}``, not ``str.format``: math templates contain
LaTeX braces (``\\boxed{}``) and prompts may contain braces of their own, neither of which must be read as
format fields. With a tokenizer that has a chat template the filled text becomes the user turn, after an
optional system prompt, and the generation prompt is appended.

:func:`encode_prompt` is the one way a prompt's text becomes the token ids a model sees (trainer, ``rollwise
eval``, rescue scoring); the TRL bridge hands TRL the same :func:`render_prompt` text to tokenize.
"""

from __future__ import annotations

from typing import Any

__all__ = ["TEMPLATES", "encode_prompt", "render_prompt", "resolve_template"]

TEMPLATES: dict[str, str] = {
    "plain": "{prompt}",
    "boxed": "{prompt}\n\nPlease reason step by step, and put your final answer within \\boxed{}.",
    "gsm8k": "{prompt}\n\nSolve step by step, then give the final number on a last line as '#### <answer>'.",
    "qa": "Question: {prompt}\nAnswer:",
}


def resolve_template(template: str) -> str:
    """A preset name's text, or ``template`` itself when it is a ``{prompt}`` string."""
    if template in TEMPLATES:
        return TEMPLATES[template]
    if "{prompt}" not in template:
        raise KeyError(
            f"unknown prompt template {template!r}: neither a preset ({', '.join(sorted(TEMPLATES))}) "
            "nor a string containing '{prompt}'"
        )
    return template


def render_prompt(
    example_prompt: str,
    template: Any = "plain",
    tokenizer: Any = None,
    *,
    system_prompt: str | None = None,
    chat: bool | None = None,
) -> str:
    """Fill the template and, when chatting, wrap it with ``tokenizer.apply_chat_template``.

    ``template`` is a preset name, a ``{prompt}`` string, or a config-like object with ``template`` and
    optional ``system_prompt`` / ``chat`` attributes (e.g. ``cfg.task``). ``chat=None`` uses the chat
    template exactly when ``tokenizer`` has one.
    """
    if not isinstance(template, str):
        system_prompt = (
            system_prompt if system_prompt is not None else getattr(template, "system_prompt", None)
        )
        chat = chat if chat is not None else getattr(template, "chat", None)
        template = getattr(template, "template", "plain")
    text = resolve_template(template).replace("{prompt}", example_prompt)
    has_chat = tokenizer is not None and bool(getattr(tokenizer, "chat_template", None))
    if chat is None:
        chat = has_chat
    if not chat:
        return text
    if not has_chat:
        raise ValueError("chat=True needs a tokenizer with a chat_template")
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages.append({"role": "user", "content": text})
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def encode_prompt(text: str, template: Any, tokenizer: Any) -> list[int]:
    """Prompt text -> token ids: :func:`render_prompt` with ``template`` (a preset, a ``{prompt}`` string or
    ``cfg.task``), then ``tokenizer`` without special tokens (the rendered text is all the model sees)."""
    return tokenizer(render_prompt(text, template, tokenizer), add_special_tokens=False)["input_ids"]

"""Chat templates across turns: :class:`ChatFormat`, the :class:`rollwise.envs.loop.TurnFormat` of a tokenizer that
has a chat template (SmolLM2-Instruct, Qwen, ...).

The context of turn ``t + 1`` is the context of turn ``t``, then the action tokens *as sampled*, then the suffix
the template puts between an assistant message and the next assistant turn: its end-of-turn token(s), the
rendered observation message(s) and the assistant header. The suffix is found by rendering a probe conversation
with and without the observation and diffing the two strings, never by re-tokenising the sampled action, so the
trainer scores exactly the tokens the engine sampled. When the action stopped on the end-of-turn token, that
token is already in the context and the suffix goes on after it.

**Documented difference from ``apply_chat_template``** on the whole conversation: the action's tokens are the
sampled ones, which may split the action's text differently from the tokenizer's own encoding (a BPE model can
sample ``"4" "8"`` where the tokenizer writes ``"48"``); an action cut by the token limit is followed by the full
end-of-turn suffix. Everything else (system prompt, observation messages, headers) is token for token what
``tokenizer(apply_chat_template(messages, add_generation_prompt=True), add_special_tokens=False)`` gives, as
long as the template splits at special tokens around each message (every ChatML-style template does). A template
that rewrites earlier turns once later ones follow (e.g. one that drops past reasoning) is not prefix-stable and
is refused with a clear error.
"""

from __future__ import annotations

from typing import Any

from rollwise.envs.base import Message

_PROBE = "ROLLWISEPROBEACTION"  # stands for an action's text when rendering the suffix


class ChatFormat:
    """Renders an episode with ``tok``'s chat template; ``system_prompt`` (e.g. ``task.system_prompt``) opens the
    conversation unless the environment's first observation brings its own system message."""

    def __init__(self, tok: Any, system_prompt: str | None = None) -> None:
        if not getattr(tok, "chat_template", None):
            raise ValueError("ChatFormat needs a tokenizer with a chat template")
        self.tok, self.system_prompt = tok, system_prompt
        self.end_of_turn = self._encode(self._end_of_turn_text())
        if not self.end_of_turn:
            raise ValueError("chat template: an assistant message has no end-of-turn text after it")
        self.stop_ids: tuple[int, ...] = (self.end_of_turn[0],)  # generation stops at the end-of-turn token

    def _encode(self, text: str) -> list[int]:
        return list(self.tok(text, add_special_tokens=False)["input_ids"])

    def _render(self, messages: list[Message], generation_prompt: bool) -> str:
        return self.tok.apply_chat_template(messages, add_generation_prompt=generation_prompt, tokenize=False)

    def _probe_head(self) -> list[Message]:
        head = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return head + [{"role": "user", "content": "x"}, {"role": "assistant", "content": _PROBE}]

    def _end_of_turn_text(self) -> str:
        text = self._render(self._probe_head(), False)
        return text[text.rindex(_PROBE) + len(_PROBE):]

    def with_system(self, messages: list[Message]) -> list[Message]:
        """``messages`` opened by the system prompt (unless they bring one)."""
        if self.system_prompt and not (messages and messages[0].get("role") == "system"):
            return [{"role": "system", "content": self.system_prompt}, *messages]
        return list(messages)

    def first(self, messages: list[Message]) -> list[int]:
        """The first observation rendered up to and including the assistant header."""
        return self._encode(self._render(self.with_system(messages), True))

    def suffix(self, messages: list[Message]) -> list[int]:
        """What follows an assistant message's text when ``messages`` come next: end-of-turn token(s), the
        rendered ``messages``, the assistant header."""
        head = self._probe_head()
        before = self._render(head, False)
        after = self._render(head + list(messages), True)
        cut = before.rindex(_PROBE) + len(_PROBE)
        if after[:cut] != before[:cut]:
            raise ValueError("chat template is not prefix-stable across turns: an observation changes how the "
                             "earlier assistant message renders, so turns cannot share one growing context")
        return self._encode(after[cut:])

    def after(self, action_ids: list[int], messages: list[Message]) -> list[int]:
        """The sampled action, then the suffix; an end-of-turn token the action stopped on is not repeated."""
        tail = self.suffix(messages)
        if action_ids and action_ids[-1] in self.stop_ids and tail[:1] == [action_ids[-1]]:
            tail = tail[1:]
        return list(action_ids) + tail

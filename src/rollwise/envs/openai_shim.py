"""An OpenAI-compatible chat-completions endpoint in process, backed by a rollwise engine: the client object a
harness that drives its own rollout loop (Prime Intellect's ``verifiers``, ``envs/verifiers_env.py``) calls as it
would call vLLM, while rollwise records what the trainer needs (the way prime-rl and SkyRL serve ``verifiers``
rollouts from their own inference engines).

:meth:`EngineChatServer.client` is an ``openai.AsyncOpenAI`` whose HTTP transport is this object (``httpx``'s
``MockTransport``: no socket, no network). A ``POST /chat/completions`` is answered like vLLM with
``return_token_ids``: the message, ``finish_reason``, ``choices[0].token_ids`` (the sampled tokens),
``choices[0].logprobs.content`` (their behaviour logprobs) and ``prompt_token_ids``; each answer is also kept in
:attr:`EngineChatServer.records` under its response id with the tokens' weight versions.

**No re-tokenisation across turns.** The prompt of a request is tokenised by a
:class:`rollwise.envs.loop.TurnFormat` as the agent loop does: when its messages continue a conversation this
server answered (the earlier messages and that answer's text), the context is the earlier context, the answer's
tokens *as sampled* and the new messages (``fmt.after``); otherwise ``fmt.first`` of all messages. So turn
``t + 1``'s prompt ids start with turn ``t``'s prompt and action ids, and the trainer scores exactly what was
sampled.

**Batching.** Requests that arrive together (a harness gathers its rollouts concurrently) go to the engine as one
``generate`` call per room size: a batch waits until every live episode (:attr:`EngineChatServer.live`, kept by
the caller) has its request in, or until none came for ``quiet_s`` (an environment still computing its reply).

**Limits.** A request past ``max_turns`` answers of its conversation, or with no room left in ``max_tokens``,
gets vLLM's context-length error (HTTP 400), which OpenAI-compatible harnesses treat as a prompt too long: the
episode ends cleanly.

**An empty action** (a policy that samples the stop token at once) is a policy's move to train on, not an error,
but a chat reply with no content, tool call or reasoning is one to OpenAI-compatible harnesses (verifiers'
``EmptyModelResponseError``): its tokens are reported as reasoning tokens in ``usage``, the one form of an empty
reply they accept, and the environment sees an empty message.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from dataclasses import dataclass
from typing import Any

from rollwise.envs.loop import TurnFormat
from rollwise.generation.base import Engine, SamplingParams

OVERLONG = "This model's maximum context length is {limit} tokens ({why})"  # vLLM's wording, matched by clients
_TICKS = 4  # event-loop ticks between looks at the pending requests


@dataclass
class Sampled:
    """One answered request: the prompt as tokenised, the sampled action and its weight versions."""

    prompt_ids: list[int]  # [S]
    token_ids: list[int]  # [A]
    logprobs: list[float]  # [A]
    versions: list[int]  # [A]
    finish_reason: str
    text: str
    turn: int  # answers in this conversation before this one


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: their text
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


class EngineChatServer:
    """The in-process endpoint (module docstring); one per batch of episodes (its prefix cache lives as long)."""

    def __init__(self, engine: Engine, fmt: TurnFormat, params: SamplingParams, max_tokens: int, max_turns: int,
                 version: int = 0, model: str = "rollwise", quiet_s: float = 0.02) -> None:
        self.engine, self.fmt, self.params, self.version, self.model = engine, fmt, params, version, model
        self.quiet_s = quiet_s
        self.live = 0  # episodes in play (the caller counts them): a batch is whole when all have asked
        self.max_tokens, self.max_turns = max_tokens, max_turns
        self.stops = tuple(dict.fromkeys((*params.stop_token_ids, *sorted(getattr(fmt, "stop_ids", ())))))
        self.records: dict[str, Sampled] = {}
        self._answers: dict[tuple[tuple[str, str], ...], Sampled] = {}  # conversation + answer -> what was sampled
        self._pending: list[tuple[list[int], int, float, float, asyncio.Future]] = []
        self._flusher: asyncio.Task | None = None
        self._ids = itertools.count()
        self.calls = 0  # generate calls

    def client(self) -> Any:
        """An ``openai.AsyncOpenAI`` answered by this server (imported lazily: the ``openai`` package)."""
        import httpx
        import openai

        http = httpx.AsyncClient(transport=httpx.MockTransport(self.handle), base_url="http://rollwise.engine/v1")
        return openai.AsyncOpenAI(base_url="http://rollwise.engine/v1", api_key="rollwise", max_retries=0,
                                  http_client=http)

    def context(self, messages: list[tuple[str, str]]) -> tuple[list[int], int]:
        """(prompt ids, answers before) of a conversation: continued from the longest one this server answered."""
        for k in range(len(messages), 0, -1):
            if messages[k - 1][0] != "assistant":
                continue
            prev = self._answers.get(tuple(messages[:k]))
            if prev is not None:
                rest = [{"role": r, "content": c} for r, c in messages[k:]]
                return prev.prompt_ids + self.fmt.after(prev.token_ids, rest), prev.turn + 1
        return self.fmt.first([{"role": r, "content": c} for r, c in messages]), 0

    async def handle(self, request: Any) -> Any:
        import httpx

        if request.method != "POST" or not request.url.path.endswith("/chat/completions"):
            return httpx.Response(404, json={"error": {"message": f"no route {request.url.path}"}})
        body = json.loads(request.content)
        messages = [(str(m.get("role", "user")), _text(m.get("content"))) for m in body.get("messages", [])]
        ids, turn = self.context(messages)
        asked = body.get("max_completion_tokens") or body.get("max_tokens") or self.params.max_new_tokens
        room = min(int(asked), self.params.max_new_tokens, self.max_tokens - len(ids))
        if turn >= self.max_turns or room < 1:
            why = f"{turn} turns of {self.max_turns}" if turn >= self.max_turns else f"{len(ids)} in the prompt"
            return httpx.Response(400, json={"error": {"message": OVERLONG.format(limit=self.max_tokens, why=why),
                                                       "type": "BadRequestError", "code": 400}})
        temp = self.params.temperature if body.get("temperature") is None else float(body["temperature"])
        top_p = self.params.top_p if body.get("top_p") is None else float(body["top_p"])
        fut = asyncio.get_running_loop().create_future()
        self._pending.append((ids, room, temp, top_p, fut))
        if self._flusher is None:
            self._flusher = asyncio.ensure_future(self._flush())
        c = await fut
        rid = f"rw-{next(self._ids)}"
        got = Sampled(ids, list(c.token_ids), list(c.logprobs),
                      list(c.versions) or [self.version] * len(c.token_ids), c.finish_reason, c.text, turn)
        self.records[rid] = got
        self._answers[(*messages, ("assistant", c.text))] = got
        finish = "length" if c.finish_reason == "length" else "stop"
        usage: dict[str, Any] = {"prompt_tokens": len(ids), "completion_tokens": len(got.token_ids),
                                 "total_tokens": len(ids) + len(got.token_ids)}
        if not c.text:  # an empty action (say, the stop token alone): see the module docstring
            usage["completion_tokens_details"] = {"reasoning_tokens": max(len(got.token_ids), 1)}
        return httpx.Response(200, json={
            "id": rid, "object": "chat.completion", "created": 0, "model": body.get("model", self.model),
            "prompt_token_ids": ids,
            "choices": [{"index": 0, "finish_reason": finish, "token_ids": got.token_ids,
                         "message": {"role": "assistant", "content": c.text},
                         "logprobs": {"content": [{"token": f"token_id:{t}", "logprob": lp, "bytes": None,
                                                   "top_logprobs": []}
                                                  for t, lp in zip(got.token_ids, got.logprobs)]}}],
            "usage": usage})

    async def _flush(self) -> None:
        """Wait until requests stop arriving, then answer them all (one ``generate`` per room and sampling)."""
        loop = asyncio.get_running_loop()
        seen, since = -1, loop.time()
        while len(self._pending) < self.live:
            if len(self._pending) != seen:
                seen, since = len(self._pending), loop.time()
            elif loop.time() - since > self.quiet_s:
                break
            for _ in range(_TICKS):
                await asyncio.sleep(0)
            if len(self._pending) == seen:
                await asyncio.sleep(self.quiet_s / 8)
        batch, self._pending, self._flusher = self._pending, [], None
        groups: dict[tuple[int, float, float], list[tuple[list[int], asyncio.Future]]] = {}
        for ids, room, temp, top_p, fut in batch:
            groups.setdefault((room, temp, top_p), []).append((ids, fut))
        for (room, temp, top_p), rows in sorted(groups.items()):
            seed = None if self.params.seed is None else self.params.seed + 7919 * self.calls
            self.calls += 1
            try:
                got = self.engine.generate([ids for ids, _ in rows], [1] * len(rows),
                                           SamplingParams(temp, top_p, room, self.stops, seed))
            except Exception as exc:  # noqa: BLE001 - every waiting request gets the engine's error
                for _, fut in rows:
                    fut.set_exception(exc)
                continue
            for (_, fut), (c,) in zip(rows, got):
                fut.set_result(c)

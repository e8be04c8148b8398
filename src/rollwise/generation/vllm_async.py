"""vLLM's async engine (``AsyncLLM``) behind the engine protocol: what offline ``LLM.generate`` cannot do.

Offline ``LLM.generate`` returns when every request has finished, so it can neither abort a call halfway nor say
which rollouts finished first. ``AsyncLLM`` streams each request's tokens as they are decoded and aborts requests
while they run, and this engine builds on that:

- ``control`` (generation/base.py's :class:`StepControl`): the callback sees the live rows every ``every`` decode
  steps and may abort or prune them with their partial tokens kept (finish reasons "abort" / "pruned");
  ``Decision.ABORT`` alone aborts the whole call, queued rows included. So APRIL (arXiv:2509.18521) runs on vLLM
  through the same strategy as on the HF engine. vLLM batches continuously, not in lockstep: ``view.step`` is the
  most new tokens any row of the call has, and a row's tokens decoded after the abort reached the engine are
  dropped (the partial is what had been streamed back).
- :meth:`AsyncVLLMEngine.stream`: completions in the order they finish, and :meth:`AsyncVLLMEngine.abort` (from
  the consumer of the stream) ends the rows still running, which then come out of the stream with their partial
  tokens and finish reason "abort". This is how slime's rollout (THUDM/slime, ``sglang_rollout.py``) does
  partial rollouts: groups are awaited as they complete, the servers are aborted once enough have, and the
  unfinished samples are collected with what they had generated, for the buffer.

Each row is its own request (``n = 1``) seeded ``derive_seed(seed, i) + j``, exactly the stream of the offline
engine's ``j``-th sample of prompt ``i`` (vLLM seeds child ``j`` with ``seed + j``), so for the same call both
engines return the same tokens. Prefixes, versions, top-k and the behaviour-logprob convention are those of
:class:`~rollwise.generation.vllm.VLLMEngine` (its module docstring).

The engine core runs in its own process (``AsyncLLM`` has no in-process mode), driven by an asyncio loop in a
daemon thread of this process; ``sync_weights`` sends the learner's state dict to that process, which reloads it in
place (a copy through the RPC socket; on a GPU cluster vLLM's NCCL weight transfer would replace it).
Call :meth:`AsyncVLLMEngine.close` to stop both.

Either engine may be built first in a process. An in-process ``LLM`` (the offline engine) freezes ``vllm.envs``: its
``EngineCore`` calls ``vllm.envs.enable_envs_cache()``, after which every ``VLLM_*`` value is the one read then. This
engine sets ``VLLM_ALLOW_INSECURE_SERIALIZATION=1`` (for ``sync_weights``); under the frozen cache this process kept
reading it as unset while the spawned engine core read 1 and sent its utility results typed, so the reply to the
first request's ``get_supported_tasks`` call killed ``AsyncLLM``'s output handler (``msgspec.ValidationError:
VLLM_ALLOW_INSECURE_SERIALIZATION must be set to use custom utility result types``) before the request was
registered to receive that error: it waited forever. ``_start`` therefore builds with the cache off and turns it
back on afterwards (:func:`_vllm_env`), and a call whose output handler has died raises instead of waiting.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from rollwise.generation.base import (
    Completion,
    Decision,
    OutputSpec,
    Prefix,
    SamplingParams,
    StepControl,
    StepView,
    resolve_decision,
)
from rollwise.generation.vllm import VLLMEngine

DEAD_HANDLER = ("vLLM's AsyncLLM output handler has stopped (its error is logged above); no request of this "
                "engine can finish: build a new engine")
HANDLER_POLL_S = 2.0  # while no output arrives, how often a call checks that AsyncLLM's output handler still runs


@contextmanager
def _vllm_env(**values: str) -> Iterator[None]:
    """Set ``values`` in ``os.environ`` for the block, with ``vllm.envs``' cache off so that vLLM reads them (an
    in-process ``EngineCore`` freezes every ``VLLM_*`` value: module docstring). ``values`` are restored after the
    block, and a cache that was on is rebuilt from the environment as it is then; a value that must outlive the
    block (``VLLM_ALLOW_INSECURE_SERIALIZATION``) is set by the caller before it."""
    from vllm import envs

    cached = hasattr(envs, "_is_envs_cache_enabled") and envs._is_envs_cache_enabled()
    if cached:
        envs.disable_envs_cache()
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if cached:
            envs.enable_envs_cache()


def _reload_from_bytes(worker: Any, blob: bytes) -> None:
    """Run in the engine process: load a ``torch.save``-d state dict into the running model, in place."""
    import torch

    weights = torch.load(io.BytesIO(blob), weights_only=True)
    worker.reload_weights(weights_iterator=list(weights.items()))


@dataclass
class _Row:
    """What has been streamed back of one row (one request): the fields ``VLLMEngine._completion`` reads."""

    index: int
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[Any] = field(default_factory=list)  # [C] dicts token id -> Logprob
    finish_reason: str | None = None


@dataclass
class _Request:
    row: int  # call row id: prompt i's j-th sample is sum(counts[:i]) + j
    group: int  # prompt index i
    tokens: list[int]  # prompt + forced prefix
    params: Any  # vllm.SamplingParams (n = 1)
    prefix: Prefix | None


class AsyncVLLMEngine(VLLMEngine):
    """``vllm.AsyncLLM`` in a background event loop: the engine protocol with ``control``, plus ``stream``/``abort``
    (see the module docstring). Same constructor as :class:`VLLMEngine`."""

    def _start(self, engine_kwargs: dict[str, Any]) -> Any:
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="rollwise-vllm-async", daemon=True)
        self._thread.start()
        self._calls = itertools.count()
        self._running: dict[str, int] = {}  # request id -> row of the call being streamed
        self._decided: dict[int, str] = {}  # row -> "abort" / "pruned" asked for it
        os.environ["VLLM_ALLOW_INSECURE_SERIALIZATION"] = "1"  # sync_weights runs a function in the child it spawns

        async def build() -> Any:  # inside the loop, so the engine's output handler runs there
            return AsyncLLM.from_engine_args(AsyncEngineArgs(disable_log_stats=True, **engine_kwargs))

        # the offline engine sets VLLM_ENABLE_V1_MULTIPROCESSING=0 for this process; the child is a separate engine
        # process regardless, so it gets 1. Cache off: this process must read what the child reads (docstring).
        with _vllm_env(VLLM_ENABLE_V1_MULTIPROCESSING="1"):
            return self._run(build())

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def close(self) -> None:
        """Shut the engine core down and stop the event loop (the engine is unusable afterwards)."""
        if getattr(self, "_loop", None) is None or self._loop.is_closed():
            return

        async def shutdown() -> None:  # in the loop, so the engine's output handler is cancelled there
            self.llm.shutdown()
            await asyncio.sleep(0.1)

        self._run(shutdown())
        self.llm = None  # collected now, not at interpreter exit (where its __del__ fails on torn-down modules)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def sync_weights(self, model: Any, version: int) -> None:
        """Send ``model``'s state dict (HF names, serialised by ``torch.save``) to the engine process, which loads
        it with the worker's in-place ``reload_weights`` (as the offline engine does); drop cached prefixes.

        vLLM's RPC decodes tensors only where a type hint says so, not inside a weights list, hence the bytes and
        a function run in the worker (allowed by ``VLLM_ALLOW_INSECURE_SERIALIZATION``, set for this engine's own
        child process). vLLM's ``reload_weights(weights_path=...)`` would avoid it, but on vLLM 0.32's CPU backend
        it loads wrong weights (tested: greedy outputs differ from the HF model's)."""
        import torch

        buf = io.BytesIO()
        torch.save({name: t.detach().cpu() for name, t in model.state_dict().items()}, buf)
        self._run(self.llm.collective_rpc(_reload_from_bytes, args=(buf.getvalue(),)))
        self._run(self.llm.reset_prefix_cache())
        self.version = version

    # ------------------------------------------------------------------ calls
    def generate(self, prompts: list[list[int]], counts: list[int], params: SamplingParams, *,
                 prefixes: list[Prefix | None] | None = None, outputs: OutputSpec | None = None,
                 control: StepControl | None = None) -> list[list[Completion]]:
        """Return ``counts[i]`` completions per prompt, in input order; ``control`` as in generation/base.py."""
        t0 = time.perf_counter()
        out, todo, pre = self._plan(prompts, counts, params, prefixes, outputs)
        reqs = self._requests(prompts, counts, params, todo, pre, outputs)
        slot = {r.row: (r.group, j) for r in reqs for j in [r.row - sum(counts[:r.group])]}
        for i in todo:
            out[i] = [None] * counts[i]  # type: ignore[list-item]
        agen = self._stream(reqs, outputs, control, sum(counts))

        async def drain() -> None:
            async for row, c in agen:
                i, j = slot[row]
                out[i][j] = c

        self._run(drain())
        self._record(prompts, counts, out, t0, pre)
        return out

    def stream(self, prompts: list[list[int]], counts: list[int], params: SamplingParams, *,
               prefixes: list[Prefix | None] | None = None,
               outputs: OutputSpec | None = None) -> Iterator[tuple[int, int, Completion]]:
        """Yield ``(i, j, completion)`` for prompt ``i``'s ``j``-th sample as each finishes (finish order; prefixes
        that need no decoding first). Call :meth:`abort` while iterating to end the rows still running: they are
        yielded next, with their partial tokens and finish reason "abort". ``last_stats`` covers the whole
        stream once it is exhausted."""
        t0 = time.perf_counter()
        out, todo, pre = self._plan(prompts, counts, params, prefixes, outputs)
        for i, cs in enumerate(out):
            for j, c in enumerate(cs):
                yield i, j, c
        reqs = self._requests(prompts, counts, params, todo, pre, outputs)
        agen = self._stream(reqs, outputs, None, sum(counts))
        starts = [sum(counts[:i]) for i in range(len(counts))]
        try:
            while True:
                try:
                    row, c = self._run(agen.__anext__())
                except StopAsyncIteration:
                    break
                i = next(g for g in range(len(counts)) if starts[g] <= row < starts[g] + counts[g])
                out[i].append(c)
                yield i, row - starts[i], c
        finally:  # a consumer that stops early: abort what still runs, so the next call starts clean
            if self._running:
                self.abort()
            self._run(agen.aclose())
        self._record(prompts, counts, out, t0, pre)

    def abort(self) -> int:
        """Abort every row still running in the current call or stream (partials kept); return how many."""

        async def abort_all() -> int:  # in the loop's thread, where the running set changes
            ids = list(self._running)
            for rid in ids:
                self._decided.setdefault(self._running[rid], "abort")
            if ids:
                await self.llm.abort(ids)
            return len(ids)

        return self._run(abort_all())

    # ------------------------------------------------------------------ internals
    def _requests(self, prompts: list[list[int]], counts: list[int], params: SamplingParams, todo: list[int],
                  pre: list[Prefix | None], outputs: OutputSpec | None) -> list[_Request]:
        from vllm.sampling_params import RequestOutputKind

        k = outputs.topk if outputs is not None else 0
        reqs = []
        for i in todo:
            forced = list(pre[i].token_ids) if pre[i] else []
            start = sum(counts[:i])
            for j in range(counts[i]):
                sp = self._sampling(params, i, 1, pre[i], k, sample=j, output_kind=RequestOutputKind.DELTA)
                reqs.append(_Request(start + j, i, prompts[i] + forced, sp, pre[i]))
        return reqs

    async def _stream(self, reqs: list[_Request], outputs: OutputSpec | None, control: StepControl | None,
                      total: int) -> AsyncIterator[tuple[int, Completion]]:
        """Run ``reqs`` concurrently; yield ``(row, completion)`` as each finishes, applying ``control``."""
        from vllm.inputs import TokensPrompt

        call = next(self._calls)
        k = outputs.topk if outputs is not None else 0
        by_row = {r.row: r for r in reqs}
        rows = {r.row: _Row(0) for r in reqs}
        ids = {r.row: f"rollwise-{call}-{r.row}" for r in reqs}
        self._running = {ids[r.row]: r.row for r in reqs}
        self._decided = {}
        queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()

        async def pump(r: _Request) -> None:
            try:
                async for res in self.llm.generate(TokensPrompt(prompt_token_ids=r.tokens), r.params, ids[r.row]):
                    queue.put_nowait((r.row, res.outputs[0]))
            except Exception as e:  # surfaced in the consumer
                queue.put_nowait((r.row, e))

        tasks = [asyncio.create_task(pump(r)) for r in reqs]
        finished: dict[int, str] = {}
        live = set(rows)
        next_check = control.every if control is not None else 0
        try:
            while live:
                items = [await self._next(queue)]
                while not queue.empty():
                    items.append(queue.get_nowait())
                done = []
                for row, o in items:
                    if isinstance(o, Exception):
                        raise o
                    acc = rows[row]
                    acc.token_ids += o.token_ids
                    acc.logprobs += list(o.logprobs or [])
                    if o.finish_reason is not None and row in live:
                        reason = str(o.finish_reason)
                        acc.finish_reason = self._decided.get(row, "abort") if reason == "abort" else reason
                        finished[row] = acc.finish_reason
                        live.discard(row)
                        self._running.pop(ids[row], None)
                        done.append(row)
                for row in done:
                    yield row, self._completion(rows[row], by_row[row].prefix, k, outputs)
                if control is not None and live:
                    step = max(len(rows[r].token_ids) for r in rows)
                    if step >= next_check:
                        next_check = (step // control.every + 1) * control.every
                        await self._steer(control, step, sorted(live), by_row, rows, finished, total, ids)
        finally:
            self._running = {}
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _next(self, queue: asyncio.Queue[tuple[int, Any]]) -> tuple[int, Any]:
        """The next streamed output; a one-line error, not a wait forever, once ``AsyncLLM``'s output handler has
        died (it logs the error and fails only the requests registered then: later ones would never finish)."""
        while True:
            try:
                return await asyncio.wait_for(queue.get(), HANDLER_POLL_S)  # Queue.get loses nothing when cancelled
            except TimeoutError:
                handler = getattr(self.llm, "output_handler", None)
                if handler is not None and handler.done():
                    raise RuntimeError(DEAD_HANDLER) from None

    async def _steer(self, control: StepControl, step: int, live: list[int], by_row: dict[int, _Request],
                     rows: dict[int, _Row], finished: dict[int, str], total: int, ids: dict[int, str]) -> None:
        """Call the step callback on the live rows; abort the rows it aborts or prunes."""
        pending = [r for r in live if r not in self._decided]
        if not pending:
            return
        view = StepView(step=step, rows=pending, groups=[by_row[r].group for r in pending],
                        tokens=[(list(by_row[r].prefix.token_ids) if by_row[r].prefix else []) + rows[r].token_ids
                                for r in pending],
                        finished=dict(finished), total_rows=total)
        decisions = resolve_decision(control.callback(view), pending)
        for r, d in decisions.items():
            self._decided[r] = "abort" if d is Decision.ABORT else "pruned"
        if decisions:
            await self.llm.abort([ids[r] for r in decisions])

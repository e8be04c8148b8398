"""Evaluation, the one place that scores a model on eval sets: pass@1 per set (greedy by default), unbiased
pass@k and maj@k when n > 1, and the shares of completions whose answer parsed and that hit the token cap (a cap
that cuts answers shows up as a low parse share or a wrong last number, not as a model that cannot add).

:func:`evaluate` is the trainer's periodic eval; :func:`run_eval` is ``rollwise eval``: it scores a checkpoint
with the same function on a dataset preset, a jsonl / parquet file of ``prompt`` / ``answer`` (/ ``level``) rows,
or the held-out split of a procedural suite (``arith``, ``words``), the sets built by
:func:`rollwise.data.task.build_eval_sets`, with the same engine, prompt encoding and verifier pool as training.
Bad rows raise with file:line or, with ``task.on_error = "skip"``, are counted in ``data/skipped_*``. With a
test-time allocator (``pets``, ``pets_offline``) the same n samples also feed PETS vs uniform maj@k at equal
samples (:mod:`rollwise.train.pets_eval`). On a config with an ``[env]`` section, :func:`run_env_eval` plays the
environment's held-out tasks instead: success, turns and tokens per episode, as the trainer's periodic eval."""

from __future__ import annotations

from collections import Counter
from functools import partial
from math import comb
from typing import Any

import numpy as np

from rollwise.config import Config
from rollwise.data.task import build_eval_sets
from rollwise.data.templates import encode_prompt
from rollwise.generation.base import Engine, SamplingParams
from rollwise.train import pets_eval, setup
from rollwise.train.model import load_model, resolve_device
from rollwise.types import Prompt


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct (Chen et al. 2021): 1 - C(n-c, k) / C(n, k)."""
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def evaluate(engine: Engine, verifier: Any, eval_sets: dict[str, list[Prompt]], encode: Any,
             params: SamplingParams, n: int = 1, ks: tuple[int, ...] = (1,), prefix: str = "eval") -> dict[str, Any]:
    """Generate ``n`` completions per prompt, verify, and report per-set pass@1 (plus pass@k/maj@k for n>1)
    as ``{prefix}/{set}/pass@1`` and their mean ``{prefix}/mean/pass@1``, with the mean completion length in
    tokens (``{prefix}/{set}/length``: shows when a policy starts or stops writing out its working), the share
    of completions with a parsed answer (``parsed``) and the share cut by ``max_new_tokens`` (``truncated``)."""
    out: dict[str, Any] = {}
    means = []
    for name, prompts in eval_sets.items():
        if not prompts:
            continue
        comps = engine.generate([encode(p.text) for p in prompts], [n] * len(prompts), params)
        flat = [(p, c) for p, cs in zip(prompts, comps) for c in cs]
        res = verifier.score_batch([c.text for _, c in flat], [p.reference for p, _ in flat])
        scores = np.array([r.score > 0.5 for r in res], dtype=np.float64).reshape(len(prompts), n)
        out[f"{prefix}/{name}/pass@1"] = float(scores.mean())
        means.append(out[f"{prefix}/{name}/pass@1"])
        out[f"{prefix}/{name}/length"] = float(np.mean([len(c.token_ids) for _, c in flat]))
        out[f"{prefix}/{name}/parsed"] = float(np.mean([bool(r.parsed) for r in res]))
        out[f"{prefix}/{name}/truncated"] = float(np.mean([c.finish_reason == "length" for _, c in flat]))
        for k in ks:
            if 1 < k <= n:
                out[f"{prefix}/{name}/pass@{k}"] = float(np.mean([pass_at_k(n, int(s.sum()), k) for s in scores]))
        if n > 1:
            answers = [c.text.strip() for _, c in flat]
            maj = []
            for i in range(len(prompts)):
                votes = Counter(answers[i * n : (i + 1) * n]).most_common(1)[0][0]
                maj.append(scores[i][answers[i * n : (i + 1) * n].index(votes)])
            out[f"{prefix}/{name}/maj@{n}"] = float(np.mean(maj))
    if means:
        out[f"{prefix}/mean/pass@1"] = float(np.mean(means))
    return out


def run_eval(cfg: Config, model_path: str, data: str, n: int = 1, allocator: str = "uniform",
             budget: float | None = None) -> dict[str, Any]:
    """``rollwise eval``: score the checkpoint at ``model_path`` on ``data`` (module doc) with ``n`` samples per
    prompt; pass@k for k in 1, 2, 4, ... up to n."""
    if allocator != "uniform":  # fail on a bad --allocator/--budget before loading anything
        budget = pets_eval.check_args(allocator, budget, n)
    setup.set_threads(cfg)
    sets, verifier_name, skipped = build_eval_sets(cfg, data)
    model, tok = load_model(model_path, device=resolve_device(cfg.run.device))  # after the data: it fails first
    model.eval()
    engine = setup.build_engine(cfg, model, tok)
    params = setup.sampling_params(cfg, tok, eval_mode=n == 1)
    encode = partial(encode_prompt, template=cfg.task, tokenizer=tok)
    ks = tuple(k for k in (1, 2, 4, 8, 16, 32, 64) if k <= n)
    with setup.build_verifier(cfg, verifier_name) as verifier:
        recorder = None if allocator == "uniform" else pets_eval.RecordingVerifier(verifier)
        result = evaluate(engine, recorder or verifier, sets, encode, params, n=n, ks=ks)
        result["verifier/timeouts"] = verifier.stats["timeouts"]
        result["verifier/errors"] = verifier.stats["errors"]
    if recorder is not None and budget is not None:
        answers, scores = pets_eval.pools_from_calls(recorder.calls, [k for k, v in sets.items() if v], n)
        result |= pets_eval.pets_report(answers, scores, allocator, budget, seed=cfg.run.seed)
    return {"model": model_path, "data": data, "n": n, "verifier": verifier_name, **skipped, **result}


def run_env_eval(cfg: Config, model_path: str | None, n: int = 1) -> dict[str, Any]:
    """``rollwise eval`` on an ``[env]`` config: play every held-out task of the environment ``n`` times with the
    checkpoint at ``model_path`` (None: the config's own policy, ``model.path`` or the embedded model's warm
    start) through the run's episode collector, sampled as the trainer's eval (``generation.eval_temperature``):
    ``eval/<env>/success`` (also ``pass@1``), ``turns_mean``, ``solve_turns``, ``tokens_mean``, ``return_mean``,
    finish shares, fault counts, and their means ``eval/mean/...``."""
    from rollwise.data.task import build_env_task
    from rollwise.envs.collector import build_episode_collector
    from rollwise.train.rollout_parts import build_policy

    setup.set_threads(cfg)
    task = build_env_task(cfg)
    if model_path is not None:
        model, tok = load_model(model_path, device=resolve_device(cfg.run.device))
    else:
        model, tok, _ = build_policy(cfg, task)
    model.eval()
    engine = setup.build_engine(cfg, model, tok)
    params = setup.sampling_params(cfg, tok, eval_mode=True)
    collector = build_episode_collector(cfg, engine, task.pool, tok, params)
    result = collector.evaluate(task.eval_sets, params, n=n)
    return {"model": model_path or "config", "env": cfg.env.type, "n": n, **result}

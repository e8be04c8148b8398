"""``rollwise eval``: score a checkpoint on a dataset preset, a jsonl / parquet file of ``prompt`` / ``answer``
(/ ``level``) rows, or the held-out split of a procedural suite (``arith``, ``words``) — pass@1, unbiased
pass@k, maj@k, parse and truncation shares, per level / subject — with the same engine, templates and verifier
pool as training. A file is scored with the config's template and ``task.verifier`` (else its family's, ``math``
for a plain file); bad rows raise with file:line or, with ``task.on_error = "skip"``, are counted in
``data/skipped_*``. With a test-time allocator (``pets``, ``pets_offline``) the same n samples also feed PETS
vs uniform maj@k at equal samples (:mod:`rollwise.train.pets_eval`)."""

from __future__ import annotations

from typing import Any

from rollwise.config import Config, ConfigError, dataset_verifier

PROCEDURAL_SUITES = ("arith", "words")  # --data names that mean a procedural suite's held-out split


def procedural_eval_sets(cfg: Config, suite: str) -> tuple[dict[str, Any], str]:
    """The held-out sets of procedural ``suite`` built from ``cfg.task`` (levels, sizes, seed) and its verifier.
    ``cfg`` may name another suite (``--data words`` under the default config): its levels must then still be
    levels of ``suite``, else a one-line :class:`ConfigError`."""
    from pydantic import ValidationError

    from rollwise.data.task import build_task

    try:
        if cfg.task.suite != suite:
            cfg = cfg.model_copy(update={"task": type(cfg.task).model_validate({**cfg.task.model_dump(),
                                                                                "suite": suite})})
        return build_task(cfg).eval_sets, cfg.task.verifier_name()
    except (ValidationError, ValueError) as exc:
        msg = ("; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
               if isinstance(exc, ValidationError) else str(exc))
        hint = " (e.g. --config configs/smollm2_arith.toml)" if suite == "words" else ""
        raise ConfigError(f"--data {suite}: {msg}{hint}") from None


def run_eval(cfg: Config, model_path: str, data: str, n: int = 1, allocator: str = "uniform",
             budget: float | None = None) -> dict[str, Any]:
    from rollwise.data.sources import group_prompts, to_prompts
    from rollwise.data.templates import render_prompt
    from rollwise.train import pets_eval, setup
    from rollwise.train.evaluate import evaluate
    from rollwise.train.model import load_model, resolve_device

    if allocator != "uniform":  # fail on a bad --allocator/--budget before loading anything
        budget = pets_eval.check_args(allocator, budget, n)
    setup.set_threads(cfg)
    skipped: dict[str, int] = {}
    if data in PROCEDURAL_SUITES:
        sets, verifier_name = procedural_eval_sets(cfg, data)
    else:
        from rollwise.data.loaders import load_preset

        rows = load_preset(data, limit=cfg.task.eval_limit, on_error=cfg.task.on_error,
                           max_prompt_chars=cfg.task.max_prompt_chars, max_reference_chars=cfg.task.max_reference_chars)
        skipped = {f"data/skipped_{k}": v for k, v in rows.skipped_by.items()}
        prompts = to_prompts(rows)
        if not prompts:
            from rollwise.data.loaders import DatasetError

            raise DatasetError(f"--data {data}: no usable rows" + (f" (skipped: {rows.skipped_by})" if rows.skipped
                                                                   else ""))
        by = "subject" if any("subject" in p.meta for p in prompts) else cfg.task.group_by
        sets = {"all": prompts} | ({} if by is None else
                                   {k: v for k, v in group_prompts(prompts, by).items() if k != "all"})
        verifier_name = cfg.task.verifier if cfg.task.verifier != "auto" else dataset_verifier(data)
    model, tok = load_model(model_path, device=resolve_device(cfg.run.device))  # after the data: it fails first
    model.eval()
    engine = setup.build_engine(cfg, model, tok)
    params = setup.sampling_params(cfg, tok, eval_mode=n == 1)

    def encode(text: str) -> list[int]:
        return tok(render_prompt(text, cfg.task, tok), add_special_tokens=False)["input_ids"]

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

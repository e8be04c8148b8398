"""``rollwise eval``: score a checkpoint on a dataset preset or the arithmetic suite — pass@1, unbiased
pass@k, maj@k, per level / subject — with the same engine, templates and verifier pool as training. With a
test-time allocator (``pets``, ``pets_offline``) the same n samples also feed PETS vs uniform maj@k at equal
samples (:mod:`rollwise.train.pets_eval`)."""

from __future__ import annotations

from typing import Any

from rollwise.config import Config, dataset_verifier


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
    if data == "arith":
        from rollwise.data.tasks import build_suite

        t = cfg.task
        sets = build_suite(t.levels, t.train_size, t.eval_size, t.seed, t.answer_order).eval_sets
        verifier_name = cfg.task.verifier_name()
    else:
        from rollwise.data.loaders import load_preset

        prompts = to_prompts(load_preset(data, limit=cfg.task.eval_limit, on_error=cfg.task.on_error,
                                            max_prompt_chars=cfg.task.max_prompt_chars,
                                            max_reference_chars=cfg.task.max_reference_chars))
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
    return {"model": model_path, "data": data, "n": n, "verifier": verifier_name, **result}

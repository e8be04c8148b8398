"""``rollwise eval``: score a checkpoint on a dataset preset or the arithmetic suite — pass@1, unbiased
pass@k, maj@k, per level / subject — with the same engine, templates and verifier pool as training."""

from __future__ import annotations

from typing import Any

from rollwise.config import Config, dataset_verifier


def run_eval(cfg: Config, model_path: str, data: str, n: int = 1) -> dict[str, Any]:
    from rollwise.data.sources import group_prompts, to_prompts
    from rollwise.data.templates import render_prompt
    from rollwise.rewards.pool import VerifierPool
    from rollwise.train import setup
    from rollwise.train.evaluate import evaluate
    from rollwise.train.model import load_model, resolve_device

    setup.set_threads(cfg)
    model, tok = load_model(model_path, device=resolve_device(cfg.run.device))
    model.eval()
    if data == "arith":
        from rollwise.data.tasks import build_suite

        t = cfg.task
        sets = build_suite(t.levels, t.train_size, t.eval_size, t.seed, t.answer_order).eval_sets
        verifier_name = cfg.task.verifier_name()
    else:
        from rollwise.data.loaders import load_preset

        prompts = to_prompts(load_preset(data, limit=cfg.task.eval_limit, on_error=cfg.task.on_error))
        by = "subject" if any("subject" in p.meta for p in prompts) else cfg.task.group_by
        sets = {"all": prompts} | ({} if by is None else
                                   {k: v for k, v in group_prompts(prompts, by).items() if k != "all"})
        verifier_name = cfg.task.verifier if cfg.task.verifier != "auto" else dataset_verifier(data)
    engine = setup.build_engine(cfg, model, tok)
    params = setup.sampling_params(cfg, tok, eval_mode=n == 1)

    def encode(text: str) -> list[int]:
        return tok(render_prompt(text, cfg.task, tok), add_special_tokens=False)["input_ids"]

    ks = tuple(k for k in (1, 2, 4, 8, 16, 32, 64) if k <= n)
    with VerifierPool(verifier_name) as verifier:
        result = evaluate(engine, verifier, sets, encode, params, n=n, ks=ks)
        result["verifier/timeouts"] = verifier.stats["timeouts"]
        result["verifier/errors"] = verifier.stats["errors"]
    return {"model": model_path, "data": data, "n": n, "verifier": verifier_name, **result}

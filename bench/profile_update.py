"""Where an update's time goes: the no-grad pass (``prepare``), the training forward, the loss, the backward,
the gradient clip and the optimiser step, on a config's real step batches; and, as arms of the same run, the
optimiser implementations (``algo.optimizer_impl``: for-loop, foreach, fused AdamW) and ``algo.compile``.

    python bench/profile_update.py                          # the embedded default (configs/tiny.toml)
    python bench/profile_update.py --steps 3 --reps 5 --arms loop,foreach,fused,compile --out bench/results/x.json

Batches come from the warm-started model's own rollouts at steps 0..steps-1, generated once; each timed update
starts from a copy of the same weights and a fresh optimiser. Arms are interleaved within each repetition (so
contention hits them alike); reported numbers are medians over batches x reps. The phases are timed by wrapping
the update's own methods (``_logprobs`` outside/inside ``_micro_loss``, ``_micro_loss``, ``_step``, the clip);
the backward is the rest of ``run`` (zero_grad and bookkeeping included, both tiny).
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from rollwise.config import load_config
from rollwise.train.batch import build_train_batch, make_micro_batches
from rollwise.train.policy import length_buckets_of
from rollwise.train.setup import build_optimizer
from rollwise.train.trainer import Trainer
from rollwise.train.update import PolicyUpdate

ROOT = Path(__file__).resolve().parents[1]
ARMS = {"loop": {"optimizer_impl": "loop"}, "foreach": {"optimizer_impl": "foreach"},
        "fused": {"optimizer_impl": "fused"}, "compile": {"compile": True}}


class Timed(PolicyUpdate):
    """A PolicyUpdate that adds each phase's seconds to ``self.t``."""

    def __init__(self, *a: Any, **k: Any) -> None:
        super().__init__(*a, **k)
        self.t: dict[str, float] = {}
        self._in_loss = False

    def _add(self, key: str, dt: float) -> None:
        self.t[key] = self.t.get(key, 0.0) + dt

    def _logprobs(self, model, seq, with_entropy=False):  # type: ignore[no-untyped-def]
        t0 = time.perf_counter()
        out = super()._logprobs(model, seq, with_entropy)
        self._add("forward" if self._in_loss else "prepare_forward", time.perf_counter() - t0)
        return out

    def _micro_loss(self, *a: Any):  # type: ignore[no-untyped-def]
        self._in_loss = True
        t0 = time.perf_counter()
        f0 = self.t.get("forward", 0.0)
        try:
            out = super()._micro_loss(*a)
        finally:
            self._in_loss = False
        self._add("loss", time.perf_counter() - t0 - (self.t.get("forward", 0.0) - f0))
        return out

    def _step(self) -> None:
        t0 = time.perf_counter()
        super()._step()
        self._add("optimizer_step", time.perf_counter() - t0)


def timed_update(upd: Timed, micro: list, batch: Any) -> dict[str, float]:
    clip = torch.nn.utils.clip_grad_norm_

    def timed_clip(*a: Any, **k: Any) -> torch.Tensor:
        t0 = time.perf_counter()
        out = clip(*a, **k)
        upd._add("grad_clip", time.perf_counter() - t0)
        return out

    t0 = time.perf_counter()
    upd.prepare(micro, batch)
    t1 = time.perf_counter()
    torch.nn.utils.clip_grad_norm_ = timed_clip
    try:
        upd.run(micro, len(batch.rollouts))
    finally:
        torch.nn.utils.clip_grad_norm_ = clip
    t2 = time.perf_counter()
    t = dict(upd.t)
    t["prepare"] = t1 - t0
    t["run"] = t2 - t1
    t["backward"] = t["run"] - sum(t.get(k, 0.0) for k in ("forward", "loss", "grad_clip", "optimizer_step"))
    t["total"] = t2 - t0
    return t


def padded_cells(batch: Any, cfg: Any, pad_id: int, device: Any) -> dict[str, float]:
    """What packing could save: the [row, position] cells the update's forwards compute (one prompt pass per
    distinct prompt, completion passes per length bucket, zero-advantage rows skipped) vs the real tokens."""
    cells = real = 0
    for mb in make_micro_batches(batch, cfg.algo.micro_batch, pad_id, device):
        s = mb.seq.select((mb.advantages != 0).nonzero().squeeze(-1)) if cfg.algo.skip_zero_rows else mb.seq
        if s.input_ids.shape[0] == 0:
            continue
        C = s.completion_ids.shape[1]
        P = s.input_ids.shape[1] - C
        heads = s.prefix_rows if cfg.algo.share_prefix else torch.arange(s.input_ids.shape[0])
        lens = s.completion_mask.sum(-1).long().tolist()
        cells += len(heads) * P + sum(len(r) * c for r, c in length_buckets_of(lens, cfg.algo.length_buckets))
        real += int(s.attention_mask[heads, :P].sum()) + sum(lens)
    return {"cells": cells, "real_tokens": real, "pad_share": 1 - real / max(cells, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "tiny.toml"))
    ap.add_argument("--steps", type=int, default=3, help="step batches to time")
    ap.add_argument("--reps", type=int, default=5, help="timed updates per batch and arm")
    ap.add_argument("--arms", default="loop,foreach,fused,compile", help=f"comma list of {sorted(ARMS)}")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None, help="write the result JSON here")
    args, overrides = ap.parse_known_args()
    torch.set_num_threads(args.threads)
    arms = args.arms.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(args.config, [f"--run.out_dir={tmp}", "--trainer.progress=false",
                                        f"--run.threads={args.threads}", *overrides])
        tr = Trainer(cfg)
        batches = []
        for step in range(args.steps):
            got = tr.rollouts.collect(tr.pipeline, step, version=step)
            plan = tr.pipeline.finalize(got.obs(), step)
            # the weights never change here, so every batch is on-policy: its version is its rollouts' own
            version = next((r.policy_version for g in plan.groups for r in g.rollouts), step)
            batches.append(build_train_batch(plan, version=version))
            tr.pipeline.observe(got.obs(), batches[-1].groups, None, step)
        padding = [padded_cells(b, cfg, tr.tok.pad_token_id, tr.device) for b in batches]
        runs: dict[str, list[dict[str, float]]] = {a: [] for a in arms}
        final: dict[str, torch.Tensor] = {}
        for batch in batches:
            for rep in range(args.reps + 1):  # rep 0 warms up (compile, allocator); not counted
                for arm in arms:
                    acfg = cfg.model_copy(update={"algo": cfg.algo.model_copy(update=ARMS[arm])})
                    model = copy.deepcopy(tr.model)
                    opt, _ = build_optimizer(acfg, model)
                    upd = Timed(model, opt, acfg.algo, cfg.generation.temperature, cfg.generation.max_new_tokens)
                    micro = make_micro_batches(batch, cfg.algo.micro_batch, tr.tok.pad_token_id, tr.device)
                    model.train()
                    gc.collect()  # the deepcopy's garbage is not the update's cost
                    t = timed_update(upd, micro, batch)
                    if rep:
                        runs[arm].append(t)
                    final[arm] = torch.cat([p.detach().flatten() for p in model.parameters()])
            base = final[arms[0]]
            for arm in arms:
                runs[arm][-1]["max_param_diff_vs_first_arm"] = float((final[arm] - base).abs().max())
        tr.close()
    keys = ["prepare", "prepare_forward", "forward", "loss", "backward", "grad_clip", "optimizer_step", "total"]
    out: dict[str, Any] = {"config": args.config, "overrides": overrides, "steps": args.steps, "reps": args.reps,
                           "threads": args.threads, "rows": [len(b.rollouts) for b in batches],
                           "params": sum(p.numel() for p in tr.model.parameters()),
                           "padding": padding, "load_avg": os.getloadavg()[0],
                           "date": time.strftime("%Y-%m-%d %H:%M"), "arms": {}}
    for arm in arms:
        med = {k: statistics.median(r.get(k, 0.0) for r in runs[arm]) for k in keys}
        med["share"] = {k: med[k] / med["total"] for k in keys[:-1]}
        med["max_param_diff_vs_first_arm"] = max(r.get("max_param_diff_vs_first_arm", 0.0) for r in runs[arm])
        out["arms"][arm] = med
    print(json.dumps(out, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()

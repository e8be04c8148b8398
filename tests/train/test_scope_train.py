"""SCOPE end to end (arXiv:2602.24110) on the smoke model with worked answers: failed rollouts are rectified
from their first wrong step and trained, the spliced suffix marked off-policy, the prefix kept on-policy."""

from __future__ import annotations

import math

import torch

from rollwise.logging import read_metrics
from rollwise.train.policy import build_seq_batch, compute_logprobs
from rollwise.train.trainer import Trainer

ARGS = ["--recipe=scope", "--task.scratchpad=carries", "--generation.max_new_tokens=8", "--sampler.batch_prompts=8",
        "--sampler.group_size=4", "--trainer.eval_every=0", "--trainer.checkpoint_every=0", "--run.threads=1"]


def test_salvaged_rollouts_are_trained(smoke_cfg):
    t = Trainer(smoke_cfg(*ARGS, "--trainer.steps=3", "--run.name=scope"))
    seen: list = []
    finalize = t.pipeline.finalize

    def spy(pools, step=None):  # the rectified rollouts the update receives, with pi_old at that moment
        plan = finalize(pools, step)
        for g in plan.groups:
            for r in g.rollouts:
                if r.off_policy_mask:
                    seq = build_seq_batch([r.prompt_ids], [r.completion_ids], t.tok.pad_token_id)
                    with torch.no_grad():
                        lp, _ = compute_logprobs(t.model, seq, t.cfg.generation.temperature)
                    seen.append((r, lp[0].tolist()))
        return plan

    t.pipeline.finalize = spy
    try:
        t.train()
    finally:
        t.close()
    rows = [r for r in read_metrics(t.run_dir) if "rollout/reward_mean" in r]
    salvaged = sum(r["sampler/transform/salvaged"] for r in rows)
    assert salvaged > 0 and salvaged == len(seen)  # every salvaged rollout reached the update
    assert any(r.get("loss/offpolicy_token_frac", 0) > 0 for r in rows)
    for r, lp in seen:
        cut = r.meta["scope"]["prefix_tokens"]
        assert r.reward == 1.0 and r.off_policy_mask == [False] * cut + [True] * (r.num_tokens - cut)
        assert r.behaviour_logprobs[cut:] == [0.0] * (r.num_tokens - cut)  # the splice is a deterministic teacher
        # the kept prefix is the policy's own sample: its stored logprobs are pi_old's, teacher-forced
        assert all(math.isclose(a, b, abs_tol=1e-3) for a, b in zip(r.behaviour_logprobs[:cut], lp[:cut]))
        assert r.text.split("|")[-1] == t.task.pool[r.prompt_index].reference

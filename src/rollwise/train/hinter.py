"""HiLL's hinter as a language model (Xia et al., "Learning to Hint for Reinforcement Learning",
arXiv:2604.00698; spec ``shared/methods/generation.md`` section 12): its weights, engine and optimiser.

The sampling side (``sampling/hill.py``, ``hinter = "lm"``) decides which prompts get a hint, gates the drafts
and computes the transfer-weighted reward; it reaches this model through ``RescueSources.hinter``, a factory
that builds it on first use (so a copy of the policy is taken after the warm start). Here:

- the hinter prompt (:func:`build_hinter_prompt`): the question, ONE failed rollout and the reference answer,
  asking for a short hint without the answer, as ``<hint>...</hint>`` (HiLL's output tag; its
  ``<analysis>`` part is left out: a 135M hinter spends its 48 tokens on the hint);
- generation through the engine API (``generation/base.py``; an HF engine on the hinter's own module);
- the update: one AdamW step on loss = -sum_i A_i * mean_t log pi_h(h_i,t | prompt_i) / M, micro-batched,
  gradient norm clipped at 1. HiLL updates its hinter with one PPO epoch over fresh samples, whose ratio is 1,
  so the clipped surrogate's gradient is this one (length-normalised per hint, as the policy's
  ``seq-mean-token-mean``).

Checkpointed through the sampler's state: the hinter's weights and optimiser state (``state_dict``).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from rollwise.data.templates import render_prompt
from rollwise.generation import SamplingParams
from rollwise.generation.hf import HFEngine
from rollwise.sampling.hill import HintDraft
from rollwise.train.model import load_model
from rollwise.train.policy import build_seq_batch, compute_logprobs

HINTER_TEMPLATE = ("A student got this problem wrong. Write a one-sentence hint that helps, without giving the "
                   "answer, as <hint>...</hint>.\nProblem: {question}\nWrong attempt: {failed}\n"
                   "Correct answer: {reference}")
HINTER_SYSTEM = "You are a math tutor. You give hints, never answers."
MAX_FAILED_CHARS = 400  # a longer failed rollout is cut (the hinter prompt stays bounded)
_TAG = re.compile(r"<hint>(.*?)(?:</hint>|$)", re.S)


def build_hinter_prompt(question: str, failed: str, reference: str) -> str:
    """The hinter's request: the question, one failed rollout (cut to ``MAX_FAILED_CHARS``) and the reference."""
    failed = " ".join(failed.split())[:MAX_FAILED_CHARS] or "(none kept)"
    return HINTER_TEMPLATE.format(question=question.strip(), failed=failed, reference=reference.strip())


def parse_hint(text: str) -> str:
    """The hint in a reply: inside ``<hint>...</hint>`` when the tag is there, else the whole reply, on one
    line ('' = unparsable: the sampling side gates it)."""
    m = _TAG.search(text)
    return " ".join((m.group(1) if m else text).replace("</hint>", " ").split())


class HinterPolicy:
    """The LM hinter: a causal LM with its own engine and AdamW optimiser (``sampling.hill.HinterModel``)."""

    def __init__(self, model: torch.nn.Module, tok: Any, *, questions: Sequence[str], references: Sequence[str],
                 lr: float, max_new_tokens: int, temperature: float, chat: bool | None = None,
                 micro_batch: int = 16, engine: Any = None, batch_size: int = 64) -> None:
        self.model, self.tok = model, tok
        self.questions, self.references = questions, references
        self.max_new_tokens, self.temperature, self.chat = max_new_tokens, temperature, chat
        self.micro_batch = micro_batch
        self.engine = engine if engine is not None else HFEngine(model, tok, batch_size=batch_size)
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=lr, weight_decay=0.0, betas=(0.9, 0.99))
        self.updates = 0

    def prompt_text(self, prompt: int, failed: str) -> str:
        """What the hinter reads for pool prompt ``prompt`` (the chat template applied when there is one)."""
        text = build_hinter_prompt(self.questions[prompt], failed, self.references[prompt])
        return render_prompt(text, "plain", self.tok, system_prompt=HINTER_SYSTEM, chat=self.chat)

    def prompt_ids(self, prompt: int, failed: str) -> list[int]:
        return self.tok(self.prompt_text(prompt, failed), add_special_tokens=False)["input_ids"]

    def write(self, queries: list[tuple[int, str]], m: int, seed: int) -> list[list[HintDraft]]:
        """``m`` hints for each (pool prompt, failed rollout), in one engine call."""
        prompts = [self.prompt_ids(p, failed) for p, failed in queries]
        params = SamplingParams(temperature=self.temperature, max_new_tokens=self.max_new_tokens,
                                stop_token_ids=(self.tok.eos_token_id,), seed=seed)
        outs = self.engine.generate(prompts, [m] * len(prompts), params)
        return [[HintDraft(parse_hint(c.text), c.finish_reason == "length" and "</hint>" not in c.text,
                           (ids, list(c.token_ids))) for c in cs] for ids, cs in zip(prompts, outs)]

    def learn(self, payloads: list[Any], advantages: np.ndarray) -> dict[str, float]:
        """One policy-gradient step: loss = -sum_i A_i * mean_t log pi_h(h_i,t | prompt_i) / M."""
        M = len(payloads)
        device = next(self.model.parameters()).device
        was_training = self.model.training
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        total = 0.0
        try:
            for i in range(0, M, self.micro_batch):
                chunk = payloads[i : i + self.micro_batch]
                batch = build_seq_batch([p for p, _ in chunk], [c for _, c in chunk], self.pad_id).to(device)
                logp, _ = compute_logprobs(self.model, batch, self.temperature)  # [b, C], 0 on padding
                seq = logp.sum(-1) / batch.completion_mask.sum(-1).clamp(min=1)  # [b] mean token logprob
                adv = torch.as_tensor(np.asarray(advantages[i : i + self.micro_batch]), dtype=seq.dtype,
                                      device=device)  # [b]
                loss = -(adv * seq).sum() / M
                loss.backward()
                total += float(loss.detach())
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, 1.0))
            self.optimizer.step()
        finally:
            self.model.train(was_training)
        self.updates += 1
        return {"loss": total, "grad_norm": grad_norm, "samples": float(M)}

    def state_dict(self) -> dict[str, Any]:
        return {"model": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()},
                "optimizer": copy.deepcopy(self.optimizer.state_dict()), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.updates = int(state["updates"])


def build_hinter_factory(cfg: Any, questions: Sequence[str], references: Sequence[str], model: torch.nn.Module,
                         tok: Any) -> Callable[..., HinterPolicy]:
    """``RescueSources.hinter``: builds the LM hinter from the ``hill`` transform's knobs, on first use: a copy
    of the policy as it is then (after the warm start), or the checkpoint at ``path``."""

    def build(*, path: str | None, lr: float, max_new_tokens: int, temperature: float) -> HinterPolicy:
        if path:
            h_model, h_tok = load_model(path, dtype=getattr(torch, cfg.model.dtype),
                                        device=next(model.parameters()).device)
        else:
            h_model, h_tok = copy.deepcopy(model), tok
        return HinterPolicy(h_model, h_tok, questions=questions, references=references, lr=lr,
                            max_new_tokens=max_new_tokens, temperature=temperature,
                            chat=None if path else cfg.task.chat,
                            micro_batch=cfg.algo.micro_batch, batch_size=cfg.generation.batch_size)

    return build

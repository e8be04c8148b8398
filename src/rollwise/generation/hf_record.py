"""What the HF engine records per generate call (generation/hf.py): the call's shared state (:class:`CallState`:
row layout, options, finished rows, abort-all) and the per-chunk recorder of top-k log-probs, entropies and
hidden states (:class:`Recorder`), kept only when the call's ``outputs`` or step ``control`` ask for them."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from rollwise.generation.base import Completion, OutputSpec, Prefix, StepControl

REASONS = ("length", "stop", "abort", "pruned")  # codes of the per-row finish-reason tensor


class CallState:
    """What one generate call shares across its chunks: row layout, options, rows finished, abort-all flag."""

    def __init__(self, rows: list[int], control: StepControl | None, outputs: OutputSpec | None,
                 prefixes: list[Prefix | None]) -> None:
        self.rows, self.control, self.outputs, self.prefixes = rows, control, outputs, prefixes
        self.finished: dict[int, str] = {}
        self.abort_all = False

    def note_finished(self, chunk: list[int], active: torch.Tensor, done: torch.Tensor,
                      reason: torch.Tensor) -> None:
        for b in active[done].tolist():
            self.finished.setdefault(chunk[b], REASONS[int(reason[b])])


class Recorder:
    """Top-k / entropy / hidden states of one chunk, kept only when the call's outputs or control ask."""

    def __init__(self, call: CallState, B: int, S: int, dev: torch.device) -> None:
        o, c = call.outputs or OutputSpec(), call.control
        self.k_out, self.entropy_out, self.every = o.topk, o.entropy, o.hidden_every
        self.k = max(o.topk, c.topk if c else 0)
        self.want_entropy = o.entropy or bool(c and c.entropy)
        self.k_view, self.view_entropy, self.view_hidden = (c.topk, c.entropy, c.hidden) if c else (0, False, False)
        self.hidden = self.every > 0 or self.view_hidden  # forward with output_hidden_states
        self.topk_ids = torch.zeros((B, S, self.k_out), dtype=torch.long, device=dev) if self.k_out else None
        self.topk_lp = torch.zeros((B, S, self.k_out), device=dev) if self.k_out else None
        self.entropies = torch.zeros((B, S), device=dev) if o.entropy else None
        self.states: list[dict[int, torch.Tensor]] = [{} for _ in range(B)]  # row -> position -> [d]
        self.last: dict[str, torch.Tensor | None] = {}  # the last step's per-active-row values (for the view)
        self.last_hidden: torch.Tensor | None = None  # [b, d] state from which the current logits came

    def prefill_hidden(self, h: torch.Tensor, L: torch.Tensor) -> None:
        """Keep the prefix positions' states (``h`` [B, P, d], prompt + prefix right-aligned)."""
        self.last_hidden = h[:, -1]
        if self.every:
            P = h.shape[1]
            for b, n in enumerate(L.tolist()):
                for t in range(self.every - 1, n, self.every):
                    self.states[b][t] = h[b, P - n + t].float().cpu()

    def decode_hidden(self, h: torch.Tensor, active: torch.Tensor, done: torch.Tensor, pos: torch.Tensor) -> None:
        """Keep the state at completion position ``pos`` [b] of the rows just fed (``h`` [b, d])."""
        self.last_hidden = h
        if self.every:
            for j in ((~done) & ((pos + 1) % self.every == 0)).nonzero().squeeze(-1).tolist():
                self.states[int(active[j])][int(pos[j])] = h[j].float().cpu()

    def step(self, logits: torch.Tensor, T: float, active: torch.Tensor, t: int) -> None:
        """Record the top-k and entropy of the step's distribution log_softmax(logits / T) (T = 1 when greedy)."""
        if not (self.k or self.want_entropy):
            return
        logp = F.log_softmax(logits.float() / (T if T > 0 else 1.0), dim=-1)  # [b, V]
        if self.k:
            lp, ids = logp.topk(self.k, dim=-1)  # [b, k]
            self.last["topk_ids"], self.last["topk_logprobs"] = ids, lp
            if self.k_out:
                self.topk_ids[active, t], self.topk_lp[active, t] = ids[:, : self.k_out], lp[:, : self.k_out]
        if self.want_entropy:
            p = logp.exp()
            ent = -torch.where(p > 0, p * logp, torch.zeros_like(p)).sum(-1)  # [b]; -inf logits add 0
            self.last["entropy"] = ent
            if self.entropies is not None:
                self.entropies[active, t] = ent

    def view(self, live: torch.Tensor) -> dict[str, Any]:
        """The last step's values of the live rows (indices into the active batch), as a StepView asks."""
        out: dict[str, Any] = {}
        for key in ("topk_ids", "topk_logprobs", "entropy"):
            if self.last.get(key) is not None:
                v = self.last[key][live]
                out[key] = v[:, : self.k_view] if key.startswith("topk") else v
        if not self.k_view:
            out.pop("topk_ids", None), out.pop("topk_logprobs", None)
        if not self.view_entropy:
            out.pop("entropy", None)
        if self.view_hidden and self.last_hidden is not None:
            out["hidden"] = self.last_hidden[live]
        return out

    def fill(self, c: Completion, b: int, n: int, o: OutputSpec) -> None:
        """Put row ``b``'s recorded outputs for its ``n`` new tokens into ``c`` (prefix placeholders come later)."""
        if self.topk_ids is not None:
            c.topk_ids, c.topk_logprobs = self.topk_ids[b, :n].tolist(), self.topk_lp[b, :n].tolist()
        if self.entropies is not None:
            c.entropies = self.entropies[b, :n].tolist()
        if self.every:
            c.hidden = {t: v for t, v in sorted(self.states[b].items()) if t <= len(c.token_ids) - 2}

"""PROPS: a behaviour policy that corrects sampling error (Corrado & Hanna, arXiv:2311.08290), on tokens.

A finite on-policy sample rarely matches pi_theta ("sampling error"). PROPS samples with a behaviour policy
pi_phi that raises the probability of actions under-sampled so far, so that the *aggregate* sample is closer to
on-policy, and trains on it as if it were on-policy. For LLMs (the token-level adaptation; its details are not
in the paper and are choices here): a request's G completions per prompt come out in ``rounds`` rounds; before
each round after the first, phi <- theta (the weights; phi's Adam moments are kept across resets, as the PROPS
code does), then up to ``epochs`` Adam steps on the clipped objective (``algos/props.py``) over every token
sampled so far for this request's prompts, stopping before a step once the approximate KL exceeds
``target_kl``; the next round is sampled from phi.

The target update must not see phi: each returned completion's behaviour logprobs are recomputed under theta
(the weights that will be trained), so the update treats the whole group as on-policy, with pi_old = theta and
no behaviour importance weight (the spec: "adding one would undo PROPS"). phi's own logprobs are kept in
``meta["props_phi_logprobs"]``. The buffer is this request's samples (the PROPS repo's newest discrete default,
b = 1). phi is a full copy of the policy (the tiny model; a LoRA or a logit bias would serve larger ones).

Metrics: behaviour steps taken, early stops, the final approximate KL per round, and the sampling error at the
one state every group shares, its prompt: the total variation between the group's first-token frequencies and
pi_theta's first-token distribution (``rounds = 1`` is i.i.d. sampling, the baseline on the same measure).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from pydantic import Field

from rollwise.generation.base import Completion, Engine, SamplingParams
from rollwise.generation.strategy import KEY, RolloutStrategy, StrategyResult

if TYPE_CHECKING:  # torch is imported where the strategy runs: loading a config stays torch-free
    import torch


def split_rounds(count: int, rounds: int) -> list[int]:
    """``count`` samples over ``rounds`` rounds as evenly as possible, earlier rounds first (8, 3 -> 3, 3, 2)."""
    base, extra = divmod(count, rounds)
    return [base + (r < extra) for r in range(rounds)]


def _token_logits(model: Any, prompts: list[list[int]], comps: list[list[int]], pad_id: int,
                  temperature: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits of every completion token given its prompt ([N, T, V], temperature applied), the tokens [N, T] and
    their mask [N, T] (right padding; one forward)."""
    import torch

    device = next(model.parameters()).device
    L = max(len(p) + len(c) for p, c in zip(prompts, comps))
    T = max(len(c) for c in comps)
    ids = torch.full((len(prompts), L), pad_id, dtype=torch.long)
    att = torch.zeros((len(prompts), L), dtype=torch.long)
    for i, (p, c) in enumerate(zip(prompts, comps)):
        ids[i, : len(p) + len(c)] = torch.tensor(p + c)
        att[i, : len(p) + len(c)] = 1
    logits = model(input_ids=ids.to(device), attention_mask=att.to(device), use_cache=False).logits.float()
    pos = torch.zeros((len(prompts), T), dtype=torch.long)
    tok = torch.zeros((len(prompts), T), dtype=torch.long)
    mask = torch.zeros((len(prompts), T))
    for i, (p, c) in enumerate(zip(prompts, comps)):
        pos[i, : len(c)] = torch.arange(len(p) - 1, len(p) - 1 + len(c))
        tok[i, : len(c)] = torch.tensor(c)
        mask[i, : len(c)] = 1
    out = logits.gather(1, pos.to(device).unsqueeze(-1).expand(-1, -1, logits.shape[-1]))  # [N, T, V]
    return out / temperature, tok.to(device), mask.to(device)


class PropsStrategy(RolloutStrategy):
    """PROPS: rounds sampled from a behaviour copy phi pushed away from what was already sampled (module doc)."""

    class Config(RolloutStrategy.Config):
        rounds: int = Field(4, ge=1, le=64, description="rounds per group (the spec's 4 x 2 for G = 8); 1 = plain "
                            "i.i.d. sampling")
        epochs: int = Field(16, ge=1, le=256, description="at most this many Adam steps on phi before each round "
                            "(PROPS: 16)")
        lr: float = Field(1e-3, gt=0, le=1, description="phi's Adam learning rate (PROPS discrete: 1e-3)")
        clip: float = Field(0.3, gt=0, lt=1, description="epsilon of the clipped objective (PROPS: 0.3)")
        kl_coef: float = Field(0.0, ge=0, le=100, description="lambda of KL(pi_phi || pi_theta), full vocabulary "
                               "(PROPS repo: 0; PPOROS: 0.1-0.3)")
        target_kl: float = Field(0.01, gt=0, le=10, description="stop phi's update before a step once "
                                 "mean[(r - 1) - log r] exceeds this (PROPS repo discrete: 0.01)")

    def setup(self) -> None:
        self._phi: Any = None
        self._phi_engine: Any = None
        self._opt: torch.optim.Optimizer | None = None
        self._stats: dict[str, float] = {}

    @classmethod
    def check_config(cls, knobs: Any, cfg: Any) -> None:
        if cfg.generation.engine.type != "hf":
            raise ValueError(f"{KEY} 'props' samples from a behaviour copy of the policy: it needs "
                             f"generation.engine = 'hf', got {cfg.generation.engine.type!r}")

    def behaviour(self, engine: Engine) -> tuple[Any, Any]:
        """phi (a copy of the policy, made once) and an HF engine decoding with it."""
        import torch

        from rollwise.generation.hf import HFEngine

        theta = getattr(engine, "model", None)
        if theta is None:
            raise ValueError(f"{KEY} 'props' needs an engine with a .model (the hf engine)")
        if self._phi is None:
            self._phi = copy.deepcopy(theta)
            self._opt = torch.optim.Adam(self._phi.parameters(), lr=self.lr)
            self._phi_engine = HFEngine(self._phi, engine.tokenizer, batch_size=engine.batch_size)
        return self._phi, self._phi_engine

    def generate(self, engine: Engine, keys: list[int], prompts: list[list[int]], counts: list[int],
                 params: SamplingParams, *, step: int) -> StrategyResult:
        plan = [split_rounds(c, self.rounds) for c in counts]  # [P][R]
        out: list[list[Completion]] = [[] for _ in prompts]
        theta, pad = engine.model, int(getattr(engine, "pad_id", 0) or 0)
        for r in range(self.rounds):
            want = [p[r] for p in plan]
            if not any(want):
                continue
            p = params if params.seed is None else SamplingParams(
                params.temperature, params.top_p, params.max_new_tokens, params.stop_token_ids,
                params.seed + 7919 * r)
            if r == 0:
                got = engine.generate(prompts, want, p)
            else:
                phi, phi_engine = self.behaviour(engine)
                self._update_phi(theta, phi, prompts, out, params.temperature, pad)
                phi_engine.version = getattr(engine, "version", 0)
                got = phi_engine.generate(prompts, want, p)
                charge = getattr(engine, "charge", None)  # decoded outside the counted engine: charge it
                if charge is not None:
                    charge(sum(len(c.token_ids) - c.prefix_len for cs in got for c in cs), phi_engine.last_stats)
            for i, cs in enumerate(got):
                for c in cs:
                    c.meta = {**c.meta, "props_round": r}
                out[i] += cs
        self._onto_theta(theta, prompts, out, params.temperature, pad)
        return StrategyResult(out)

    # ------------------------------------------------------------------ phi's update
    def _pairs(self, prompts: list[list[int]], out: list[list[Completion]]) -> tuple[list, list]:
        rows = [(prompts[i], c.token_ids) for i, cs in enumerate(out) for c in cs if c.token_ids]
        return [p for p, _ in rows], [c for _, c in rows]

    def _update_phi(self, theta: Any, phi: Any, prompts: list[list[int]], out: list[list[Completion]],
                    temperature: float, pad: int) -> None:
        """phi <- theta, then the clipped objective over every token sampled so far, with PROPS's early stop."""
        import torch
        import torch.nn.functional as F

        from rollwise.algos.props import compute_approx_kl, compute_props_loss

        ps, cs = self._pairs(prompts, out)
        phi.load_state_dict(theta.state_dict())
        if not cs:
            return
        was_theta, was = theta.training, phi.training
        theta.eval()
        phi.eval()  # no dropout noise in either forward (the gradient flows all the same)
        with torch.no_grad():
            lt, tok, mask = _token_logits(theta, ps, cs, pad, temperature)
            logp_theta_all = F.log_softmax(lt, -1)  # [N, T, V]
            logp_theta = logp_theta_all.gather(-1, tok.unsqueeze(-1)).squeeze(-1)  # [N, T]
        theta.train(was_theta)
        kl = 0.0
        for _ in range(self.epochs):
            lf, _, _ = _token_logits(phi, ps, cs, pad, temperature)
            logp_phi_all = F.log_softmax(lf, -1)  # [N, T, V]
            logp_phi = logp_phi_all.gather(-1, tok.unsqueeze(-1)).squeeze(-1)  # [N, T]
            kl = float(compute_approx_kl(logp_phi, logp_theta, mask))
            if kl > self.target_kl:
                self._add(early_stops=1)
                break
            full_kl = (logp_phi_all.exp() * (logp_phi_all - logp_theta_all)).sum(-1) if self.kl_coef else None
            loss = compute_props_loss(logp_phi, logp_theta, mask, self.clip, full_kl, self.kl_coef)
            self._opt.zero_grad(set_to_none=True)
            loss.backward()
            self._opt.step()
            self._add(updates=1)
        phi.train(was)
        self._add(rounds_updated=1, approx_kl=kl)

    # ------------------------------------------------------------------ the target sees theta only
    def _onto_theta(self, theta: Any, prompts: list[list[int]], out: list[list[Completion]],
                    temperature: float, pad: int) -> None:
        """Behaviour logprobs of every completion recomputed under theta (phi's kept in meta), and the sampling
        error of each group at its prompt (first-token total variation against pi_theta)."""
        import torch

        with torch.no_grad():
            self._rescore(theta, prompts, out, temperature, pad)

    def _rescore(self, theta: Any, prompts: list[list[int]], out: list[list[Completion]], temperature: float,
                 pad: int) -> None:
        import torch.nn.functional as F

        from rollwise.algos.props import compute_first_token_tv

        ps, cs = self._pairs(prompts, out)
        if not cs:
            return
        was = theta.training
        theta.eval()
        lt, tok, mask = _token_logits(theta, ps, cs, pad, temperature)
        theta.train(was)
        logp_all = F.log_softmax(lt, -1)  # [N, T, V]
        logp = logp_all.gather(-1, tok.unsqueeze(-1)).squeeze(-1)  # [N, T]
        k = 0
        tv = []
        for cs_i in out:
            firsts = []
            for c in cs_i:
                if not c.token_ids:
                    continue
                if self.rounds > 1:
                    c.meta = {**c.meta, "props_phi_logprobs": list(c.logprobs)}
                    c.logprobs = logp[k, : len(c.token_ids)].tolist()
                firsts.append(c.token_ids[0])
                first_probs = logp_all[k, 0].exp()
                k += 1
            if len(firsts) > 1:
                tv.append(compute_first_token_tv(firsts, first_probs))
        if tv:
            self._add(groups=len(tv), first_token_tv=sum(tv))

    def _add(self, **values: float) -> None:
        for key, v in values.items():
            self._stats[key] = self._stats.get(key, 0.0) + float(v)

    def metrics(self) -> dict[str, float]:
        """Since the last call (``props_*``): phi's Adam steps, early stops, mean approximate KL at the end of a
        round's update, and the mean first-token total variation of a group against pi_theta."""
        s, self._stats = self._stats, {}
        rounds, groups = max(s.get("rounds_updated", 0.0), 1.0), max(s.get("groups", 0.0), 1.0)
        return {"props_updates": s.get("updates", 0.0), "props_early_stops": s.get("early_stops", 0.0),
                "props_approx_kl": s.get("approx_kl", 0.0) / rounds,
                "props_first_token_tv": s.get("first_token_tv", 0.0) / groups}

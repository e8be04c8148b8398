"""The names and knobs of the pure-math parts, without importing torch: the registries of advantage
estimators, policy losses, loss aggregations, KL estimators and off-policy corrections, each entry a lazy
``module:function`` (or ``module:Class``) with its knobs as a dataclass (``field(metadata={"doc": ..., "gt": 0})``:
the doc and the range; relations between knobs are checked in ``__post_init__``, see :mod:`rollwise.knobs`).
The config validates names and knobs against this catalog when it loads (fast: no torch), and the trainer
imports an entry only when it runs it.

Adding an estimator: write ``compute_my_advantages`` in ``advantages.py`` and add one line here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from rollwise.registry import Registry

ADVANTAGES: Registry = Registry("advantage estimator", knobs_from_entry=False)
#: estimators whose baseline is the group's own rollouts: a group of one has no signal under them
GROUP_RELATIVE = frozenset({"grpo", "dr_grpo", "rloo", "mc_grpo", "xrpo", "hapo"})
POLICY_LOSSES: Registry = Registry("policy loss", knobs_from_entry=False)
#: losses whose whole-batch step measures the entropy statistics an adaptive-temperature engine reads (a
#: torch-free fact for config checks; the loss itself declares it with ``needs`` and ``prepare``)
ENTROPY_STATS_LOSSES = frozenset({"hapo"})
AGGREGATIONS: Registry = Registry("loss aggregation", knobs_from_entry=False)
KL_ESTIMATORS: Registry = Registry("kl estimator", knobs_from_entry=False)
#: advantage shapers: per-token rewrites of the advantages inside the update (ACE, MSSR's entropy term, ...)
SHAPERS: Registry = Registry("advantage shaper", knobs_from_entry=False)
#: off-policy corrections: behaviour-IS weights, token masks, trust-region anchors and lr scales (corrections.py)
CORRECTIONS: Registry = Registry("off-policy correction", knobs_from_entry=False)


@dataclass(frozen=True)
class GrpoKnobs:
    std_unbiased: bool = field(default=True, metadata={"doc": "Bessel's n-1 in the group std (verl's torch.std)"})


@dataclass(frozen=True)
class McGrpoKnobs:
    scale: Literal["auto", "mad", "none"] = field(default="auto", metadata={
        "doc": "auto: divide by the group MAD where it is > 0, else none (binary rewards: MAD is always 0, "
               "so the authors' 1e-3 floor gives +-1000); mad: the authors' (r - m)/(MAD + eps_mad); none: r - m"})
    eps_mad: float = field(default=1e-3, metadata={"doc": "floor added to the MAD under scale = 'mad'", "gt": 0})


@dataclass(frozen=True)
class PoolBaselineKnobs:
    norm_by_std: bool = field(default=False, metadata={"doc": "divide r - baseline by the group std "
                                                                "(Reinforce-Ada's released script: off)"})
    std_unbiased: bool = field(default=True, metadata={"doc": "Bessel's n-1 in that std"})
    batch_norm: bool = field(default=False, metadata={
        "doc": "then normalise over the whole batch: (A - mean) / (std + eps) over all rows (MSSR)"})


@dataclass(frozen=True)
class HapoAdvantageKnobs:
    fallback_abs: float = field(default=5.0, metadata={
        "doc": "a group with any |A| >= this falls back to GRPO (HAPO code: 5)", "gt": 0})
    std_unbiased: bool = field(default=True, metadata={"doc": "Bessel's n-1 in the GRPO fallback's std (verl)"})


@dataclass(frozen=True)
class XrpoKnobs:
    lam: float = field(default=2.5, metadata={"doc": "novelty bonus scale lambda_nov (XRPO: 2.5)", "ge": 0})
    kappa: float = field(default=0.5, metadata={"doc": "bonus cap as a share of A (XRPO: 0.5)", "ge": 0})
    std_unbiased: bool = field(default=True, metadata={"doc": "Bessel's n-1 in the GRPO std"})


_A = "rollwise.algos.advantages:"
ADVANTAGES.register("grpo", _A + "compute_grpo_advantages", config=GrpoKnobs,
                    doc="GRPO: (r - mean) / (std + eps) per group")
ADVANTAGES.register("dr_grpo", _A + "compute_dr_grpo_advantages", doc="Dr.GRPO: r - mean, no std")
ADVANTAGES.register("rloo", _A + "compute_rloo_advantages", doc="RLOO: r - mean of the other rows")
ADVANTAGES.register("mc_grpo", _A + "compute_mc_grpo_advantages", config=McGrpoKnobs,
                    doc="MC-GRPO: median baseline, pivot dropped")
ADVANTAGES.register("pool_baseline", _A + "compute_pool_baseline_advantages", config=PoolBaselineKnobs,
                    doc="r - an external baseline from the sampler (Reinforce-Ada, V0.5)")
ADVANTAGES.register("xrpo", _A + "compute_xrpo_advantages", config=XrpoKnobs,
                    doc="XRPO: GRPO with novelty sharpening of rare correct answers")
ADVANTAGES.register("hapo", _A + "compute_hapo_advantages", config=HapoAdvantageKnobs,
                    doc="HAPO token-level group average: length-weighted mean and std, GRPO fallback")
ADVANTAGES.register("precomputed", "rollwise.algos.step_methods:compute_precomputed_advantages",
                    doc="A = r: the collector already computed the advantages (UI-S1's step + episode terms)")


@dataclass(frozen=True)
class HapoLossKnobs:
    beta: float = field(default=1.0, metadata={"doc": "advantage redistribution A (1 + beta h) (HAPO: 1; h in "
                                                      "[-1, 1], so above 1 it would flip advantages' signs)",
                                               "ge": 0, "le": 1})
    alpha: float = field(default=1.0, metadata={"doc": "asymmetric clip: eps_lo (1 - alpha h) on low-entropy "
                                                       "tokens, eps_hi (1 + alpha h) on high (HAPO: 1)", "ge": 0,
                                                "le": 10})
    entropy_pivot: float = field(default=0.8, metadata={
        "doc": "quantile of the batch's log-entropy that maps to h = 0 (HAPO recipe: 0.8)", "ge": 0, "le": 1})
    adaptive_clip: bool = field(default=True, metadata={"doc": "asymmetric adaptive clipping on"})
    adaptive_advantage: bool = field(default=True, metadata={"doc": "differential advantage redistribution on"})

@dataclass(frozen=True)
class ScopeLossKnobs:
    gamma: float = field(default=0.1, metadata={"doc": "off-policy tokens' shaping f(p) = p / (p + gamma) (LUFFY's "
                                                       "p_div_p_0.1)", "gt": 0, "le": 10})


POLICY_LOSSES.register("ppo", "rollwise.algos.losses:compute_ppo_loss", doc="PPO/GRPO clipped token ratio")
POLICY_LOSSES.register("gspo", "rollwise.algos.losses:compute_gspo_loss", doc="GSPO clipped sequence ratio")
POLICY_LOSSES.register("hapo", "rollwise.algos.hapo:compute_hapo_loss", config=HapoLossKnobs,
                       doc="HAPO: entropy-adaptive clip ranges and advantage redistribution (arXiv:2509.16591)")
POLICY_LOSSES.register("scope", "rollwise.algos.policy_shaping:compute_scope_loss", config=ScopeLossKnobs,
                       doc="PPO on policy tokens, -A p/(p + gamma) on spliced off-policy tokens (arXiv:2602.24110)")

_G = "rollwise.algos.aggregation:"
AGGREGATIONS.register("token-mean", _G + "_token_mean", doc="mean over all tokens of the batch (DAPO)")
AGGREGATIONS.register("seq-mean-token-mean", _G + "_seq_mean_token_mean", doc="mean of per-sequence token means")
AGGREGATIONS.register("seq-mean-token-sum", _G + "_seq_mean_token_sum", doc="mean of per-sequence token sums")
AGGREGATIONS.register("seq-mean-token-sum-norm", _G + "_seq_mean_token_sum_norm",
                      doc="token sums / max length (Dr.GRPO)")

KL_ESTIMATORS.register("k1", "rollwise.algos.kl:compute_kl_k1", doc="log ratio")
KL_ESTIMATORS.register("k2", "rollwise.algos.kl:compute_kl_k2", doc="half squared log ratio")
KL_ESTIMATORS.register("k3", "rollwise.algos.kl:compute_kl_k3", doc="exp(-x) - 1 + x, unbiased, >= 0")
KL_ESTIMATORS.register("low_var_kl", "rollwise.algos.kl:compute_kl_k3", doc="alias of k3 (verl's name)")


@dataclass(frozen=True)
class AceKnobs:
    alpha: float = field(default=1.0, metadata={"doc": "ACE: A <- A (1 + alpha softplus(c)) on incorrect rollouts "
                                                       "(coefficient unverified in the paper; 1.0 is our choice)",
                                                "ge": 0, "le": 100})


@dataclass(frozen=True)
class MssrEntropyKnobs:
    kappa1: float = field(default=0.4, metadata={"doc": "entropy coefficient: A + min(kappa1 H, |A| / kappa2) "
                                                        "(Cheng et al. alpha = 0.4, recalled: unverified)",
                                                 "ge": 0})
    kappa2: float = field(default=2.0, metadata={"doc": "cap divisor: the term is at most |A| / kappa2, so >= 1 "
                                                        "never flips a sign (Cheng et al. kappa = 2, recalled: "
                                                        "unverified)", "ge": 1})


@dataclass(frozen=True)
class RoseSegmentsKnobs:
    length_penalty: float = field(default=0.0, metadata={
        "doc": "ROSE's length-aware penalty lambda: A <- A - |A| (1 - ((L_s - k_c)/(L_b - k_c))^lambda) on correct "
               "rollouts longer than the group's shortest correct one (0 = off, as ROSE's example script)", "ge": 0})


@dataclass(frozen=True)
class EarKnobs:
    min_scale: float | None = field(default=None, metadata={
        "doc": "EAR: floor of Y_i = 1 + (H_bar - H_i) / H_bar (None = the formula as written, Y < 0 flips a rollout "
               "whose entropy exceeds twice its group's mean; unverified in the paper)", "le": 1})


SHAPERS.register("ace", "rollwise.algos.shaping:shape_ace", config=AceKnobs,
                 doc="ACE: scale negative advantages by the rollout's confidence shift (arXiv:2602.21420)")
SHAPERS.register("mssr_entropy", "rollwise.algos.shaping:shape_mssr_entropy", config=MssrEntropyKnobs,
                 doc="entropy advantage A + min(kappa1 H, |A|/kappa2) (arXiv:2506.14758; MSSR arXiv:2512.18215)")
SHAPERS.register("ear", "rollwise.algos.ear:shape_ear", config=EarKnobs,
                 doc="ETTRL EAR: A <- (1 + (H_bar - H_i) / H_bar) A, mean token entropy per rollout (arXiv:2508.11356)")
SHAPERS.register("rose_segments", "rollwise.algos.rose:shape_rose_segments", config=RoseSegmentsKnobs,
                 doc="ROSE: segment advantages from the group's rollout tree, V(k_{j+1}) - V(k_j) (arXiv:2601.05053)")


def _check_ratio_bounds(lower: float, upper: float, holds_one: bool) -> None:
    """An IS-ratio window [lower, upper] must be one (lower < upper: else every token is masked, loss 0); a
    per-token window that masks what falls outside must also hold 1, the ratio of an on-policy token."""
    if not lower < upper:
        raise ValueError(f"upper ({upper}) must be above lower ({lower}): the window [lower, upper] is empty")
    if holds_one and not lower <= 1.0 <= upper:
        raise ValueError(f"the window [lower, upper] = [{lower:g}, {upper:g}] must hold 1 (the ratio of an on-policy "
                         "token), or it masks every token of an on-policy step")


@dataclass(frozen=True)
class DartKnobs:
    is_cap: float | None = field(default=1.0, metadata={
        "doc": "truncated IS cap: w = min(pi_old/mu, cap) per token (DART: 1; None = off)", "gt": 0, "le": 1e6})
    entropy_keep: float = field(default=0.8, metadata={
        "doc": "share of the batch's step samples (rows) kept by mean token entropy under pi_old, the rest leave "
               "the loss (rho unverified in the release: 0.8; 1 = off)", "gt": 0, "le": 1})


@dataclass(frozen=True)
class TisKnobs:
    level: Literal["token", "sequence"] = field(default="token", metadata={
        "doc": "token: w_t = pi_old/mu per token; sequence: w = prod_t pi_old/mu, one weight per rollout (verl)"})
    cap: float = field(default=2.0, metadata={"doc": "truncation C: w <- min(w, C) (verl rollout_is_threshold: 2; "
                                                      "0 would zero every loss)", "gt": 0, "le": 1e6})


@dataclass(frozen=True)
class MisKnobs:
    level: Literal["token", "sequence", "geometric"] = field(default="token", metadata={
        "doc": "ratio that is tested: per token, the sequence product, or its geometric mean (verl rollout_rs)"})
    upper: float = field(default=2.0, metadata={"doc": "tokens/sequences with ratio > upper are masked out",
                                                "gt": 0})
    lower: float | None = field(default=None, metadata={"doc": "... and with ratio < lower (None = 1 / upper, "
                                                                 "as verl)", "ge": 0})
    is_weight: bool = field(default=True, metadata={
        "doc": "kept tokens also get their IS weight pi_old/mu (Yao et al. MIS); false: pure rejection"})

    def __post_init__(self) -> None:
        if self.lower is None and self.upper <= 1:
            raise ValueError(f"upper ({self.upper}) must be above 1 while lower is unset (lower = 1 / upper)")
        # a sequence product may lie far from 1 off-policy, so the window need not hold 1 here
        _check_ratio_bounds(self.lower if self.lower is not None else 1.0 / self.upper, self.upper, holds_one=False)


@dataclass(frozen=True)
class ArealKnobs:
    level: Literal["token", "sequence"] = field(default="token", metadata={
        "doc": "behaviour weight w per token, or per sequence as the geometric mean of the token weights"})
    action: Literal["mask", "clamp"] = field(default="mask", metadata={
        "doc": "w outside [lower, upper]: mask sets it to 0 (denominator keeps the token), clamp truncates it"})
    upper: float = field(default=5.0, metadata={"doc": "upper bound of w (AReaL's old default 5.0)", "gt": 0})
    lower: float | None = field(default=None, metadata={"doc": "lower bound of w (None = no lower bound)",
                                                        "ge": 0})
    prox: Literal["recompute", "loglinear"] = field(default="recompute", metadata={
        "doc": "pi_prox: recomputed in a no-grad pass, or A-3PO's log mu + alpha (log pi_theta - log mu) "
               "from per-token versions (skips the pass)"})

    def __post_init__(self) -> None:
        _check_ratio_bounds(self.lower or 0.0, self.upper, holds_one=self.action == "mask")


@dataclass(frozen=True)
class VcpoKnobs:
    cap: float | None = field(default=8.0, metadata={
        "doc": "truncated sequence-level IS weight min(w_i, cap) on each rollout's loss (VCPO: 8; None = no weight)",
        "gt": 0, "le": 1e6})
    rule: Literal["sqrt", "linear"] = field(default="sqrt", metadata={
        "doc": "lr scale sqrt(min(1, rho / rho_base)) (AdamW, VCPO default) or min(1, rho / rho_base)"})
    rho_base: float = field(default=1.0, metadata={"doc": "ESS/B at which the lr is left unscaled (VCPO: 1.0; ESS/B "
                                                          "is at most 1, so above 1 the lr is never left unscaled)",
                                                   "gt": 0, "le": 1})
    use_clipped: bool = field(default=False, metadata={"doc": "ESS from the truncated weights instead of raw w"})
    baseline: Literal["opob", "estimator"] = field(default="opob", metadata={
        "doc": "opob: VCPO's off-policy optimal baseline b* per group (one gradient per rollout); estimator: "
               "keep the configured estimator's advantages"})
    norm_by_std: bool = field(default=True, metadata={"doc": "opob: divide R - b* by the group's reward std "
                                                             "(VCPO default)"})


@dataclass(frozen=True)
class MinproKnobs:
    prefix: Literal["strict", "inclusive"] = field(default="strict", metadata={
        "doc": "m_t = min over j < t (spec; m_1 = 1) or over j <= t [unverified choice]"})
    cap_at_one: bool = field(default=False, metadata={"doc": "m_t <- min(m_t, 1): only down-weight [unverified]"})
    anchor: Literal["behaviour", "prox"] = field(default="behaviour", metadata={
        "doc": "the clipped token term's ratio: pi_theta/mu (spec) or pi_theta/pi_prox (decoupled)"})


@dataclass(frozen=True)
class RemixKnobs:
    kl_coef: float = field(default=0.01, metadata={
        "doc": "beta of the KL-convex penalty beta [lam KL(pi||pi_base) + (1 - lam) KL(pi||pi_prev)] "
               "(0 = off) [unverified value]", "ge": 0, "le": 100})
    lam: float = field(default=0.5, metadata={"doc": "lambda, the share of KL to the base (reference) policy "
                                                     "[unverified value]", "ge": 0, "le": 1})
    reincarnate_at: int | None = field(default=None, metadata={
        "doc": "policy reincarnation: at this step the reference <- current weights (None = never)", "ge": 0})
    reincarnate_frac: float | None = field(default=None, metadata={
        "doc": "policy reincarnation at this share of trainer.steps (resolved into reincarnate_at at load; "
               "None = reincarnate_at decides) [unverified value]"})


_C = "rollwise.algos.corrections:"
CORRECTIONS.register("none", _C + "NoCorrection",
                     doc="today's update: decoupled pi_old/mu weight capped at algo.behaviour_is_cap when off-policy")
CORRECTIONS.register("tis", _C + "TruncatedIS", config=TisKnobs,
                     doc="truncated IS: loss x min(pi_old/mu, C), token or sequence level (Yao et al.; verl)")
CORRECTIONS.register("mis", _C + "MaskedIS", config=MisKnobs,
                     doc="masked IS: drop tokens/sequences whose pi_old/mu is outside [lower, upper] (Yao et al.)")
CORRECTIONS.register("areal", _C + "ArealDecoupled", config=ArealKnobs,
                     doc="AReaL decoupled PPO: trust region vs pi_prox, bounded w = pi_prox/mu (arXiv:2505.24298)")
_P = "rollwise.algos.corrections_policy:"
CORRECTIONS.register("dart", "rollwise.algos.dart:DartCorrection", config=DartKnobs,
                     doc="DART: truncated IS at cap 1 and the high-entropy step mask (arXiv:2509.23866)")
CORRECTIONS.register("vcpo", _P + "Vcpo", config=VcpoKnobs,
                     doc="VCPO: truncated sequence IS, lr x sqrt(ESS/B), optimal IS baseline (arXiv:2602.17616)")
CORRECTIONS.register("minpro", _P + "MinPro", config=MinproKnobs,
                     doc="MinPRO: token loss x sg(min prefix ratio pi_theta/mu) (arXiv:2601.22718)")
CORRECTIONS.register("remix", _P + "Remix", config=RemixKnobs,
                     doc="ReMix: ratio vs the behaviour policy + KL-convex penalty; use with replay (arXiv:2507.06892)")

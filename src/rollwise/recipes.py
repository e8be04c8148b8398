"""Recipes: one name per paper (``--recipe=hapo``, or ``recipe = "hapo"`` at the top of a config file).

A recipe is data: the settings its paper sets, across sections (sampler, algo, generation, engine, trainer,
replay, async), as dotted keys. It is applied *under* the config: a key the user gives (in the file or on the
command line) wins over the recipe's; a component table the user gives without ``type`` (or with the same type)
tunes the recipe's component, another type replaces it. The resolved ``config.toml`` names the recipe and marks
each line it set (:func:`recipe_marks`).

Every sampler preset is a recipe of the same name (it sets ``sampler.type``), so each published sampling method
is reached by one switch. PETS is test-time only (``rollwise eval --allocator pets``) and has no training
recipe. Values the papers leave unverified (spec tags) are choices, named in the recipe's doc.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rollwise.registry import Registry
from rollwise.sampling.presets import PRESETS


@dataclass(frozen=True)
class Recipe:
    """A paper's settings, as ``{"section.key": value}``."""

    doc: str
    arxiv: str  # the paper's arXiv id ("" where the method has no arXiv paper)
    settings: dict[str, Any] = field(default_factory=dict)


RECIPES: Registry[Recipe] = Registry("recipe", knobs_from_entry=False)

# ------------------------------------------------------------------ baselines (spec generation.md section 1)
RECIPES.register("grpo", Recipe("GRPO (DeepSeekMath): group-normalised advantages, eps 0.2, seq-mean-token-mean, "
                                "k3 KL beta 0.04", "2402.03300",
                                {"algo.advantage": "grpo", "algo.clip_low": 0.2, "algo.clip_high": 0.2,
                                 "algo.aggregation": "seq-mean-token-mean", "algo.kl_coef": 0.04,
                                 "algo.kl_estimator": "k3"}))
RECIPES.register("dr_grpo", Recipe("Dr.GRPO: r - mean (no std), constant normaliser seq-mean-token-sum-norm, "
                                   "eps 0.2, no KL", "2503.20783",
                                   {"algo.advantage": "dr_grpo", "algo.clip_low": 0.2, "algo.clip_high": 0.2,
                                    "algo.aggregation": "seq-mean-token-sum-norm", "algo.kl_coef": 0.0}))
RECIPES.register("dapo", Recipe("DAPO: dynamic sampling (all-equal groups dropped, batch refilled), clip-higher "
                                "0.2/0.28, dual clip 10, token-mean, no KL", "2503.14476",
                                {"sampler.type": "dapo", "algo.clip_low": 0.2, "algo.clip_high": 0.28,
                                 "algo.dual_clip": 10.0, "algo.aggregation": "token-mean", "algo.kl_coef": 0.0}))
RECIPES.register("gspo", Recipe("GSPO: clipped sequence ratio, eps 3e-4/4e-4, dual clip 10, seq-mean-token-mean",
                                "2507.18071",
                                {"algo.loss": "gspo", "algo.clip_low": 3e-4, "algo.clip_high": 4e-4,
                                 "algo.dual_clip": 10.0, "algo.aggregation": "seq-mean-token-mean"}))

# ------------------------------------------------------------------ shaping and losses
RECIPES.register("hapo", Recipe(
    "HAPO: entropy-adaptive sampling temperature (tau 0.05), token-level group-average advantage, asymmetric "
    "adaptive clipping on eps 0.2/0.2, dual clip 10, on DAPO's dynamic sampling and token-mean", "2509.16591",
    {"sampler.type": "dapo", "algo.loss": "hapo", "algo.advantage": "hapo", "algo.clip_low": 0.2,
     "algo.clip_high": 0.2, "algo.dual_clip": 10.0, "algo.aggregation": "token-mean", "algo.kl_coef": 0.0,
     "generation.engine": {"type": "hf", "entropy_temperature_tau": 0.05}}))
RECIPES.register("ace", Recipe("ACE: confident errors (A < 0) penalised by 1 + alpha softplus(log pi/pi_ref) on "
                               "GRPO advantages", "2602.21420", {"algo.shaping": ["ace"]}))
RECIPES.register("fapo", Recipe("FAPO: a right answer reached by a wrong step (flawed positive) loses lambda = 1 "
                                "of its +-1 reward; needs worked answers (task.scratchpad) or a model judge",
                                "2510.22543", {"task.reward_shaping": "fapo"}))
RECIPES.register("otr", Recipe("One-Token Rollout: the warm start is token-level policy gradient on the "
                               "reference answers (K samples per position) instead of SFT", "2509.26313",
                               {"warmstart.objective": "otr"}))

# ------------------------------------------------------------------ rollout strategies
RECIPES.register("april", Recipe("APRIL: over-provision requests, stop once enough groups finished, resume the "
                                 "unfinished ones next step", "2509.18521", {"generation.strategy": "april"}))
RECIPES.register("arrol", Recipe("ARRoL: prune partial rollouts with a learned success head, keep survivors "
                                 "balanced (rho 0.5)", "2603.24840", {"generation.strategy": "arrol"}))
RECIPES.register("latr", Recipe("LATR: branch at uncertain tokens, look ahead, prune look-alike branches",
                                "2510.24302", {"generation.strategy": "latr"}))
RECIPES.register("rose", Recipe("ROSE: semantic-entropy branching with epsilon restarts, and its length-aware "
                                "segment advantages", "2601.05053",
                                {"generation.strategy": "rose", "algo.shaping": ["rose_segments"]}))

# ------------------------------------------------------------------ asynchronous off-policy (spec sections 6-9)
RECIPES.register("areal", Recipe(
    "AReaL: fully asynchronous rollouts at staleness eta 4 (docs: typical 2-8), decoupled PPO vs pi_prox with "
    "the behaviour weight masked above 5, eps 0.2, 4 mini-batches", "2505.24298",
    {"run.mode": "async", "async.max_staleness": 4, "async.interrupt": True, "algo.correction": "areal",
     "algo.clip_low": 0.2, "algo.clip_high": 0.2, "algo.mini_batches": 4}))
RECIPES.register("vcpo", Recipe(
    "VCPO: asynchronous at staleness k 10, truncated sequence IS at 8, lr x sqrt(ESS/B), off-policy optimal "
    "baseline; PPO clipping off (eps 1 / 1e9), seq-mean-token-mean, one update per sync", "2602.17616",
    {"run.mode": "async", "async.max_staleness": 10, "algo.correction": "vcpo", "algo.clip_low": 1.0,
     "algo.clip_high": 1e9, "algo.dual_clip": None, "algo.aggregation": "seq-mean-token-mean",
     "algo.epochs": 1, "algo.mini_batches": 1}))
RECIPES.register("minpro", Recipe(
    "MinPRO: token loss weighted by the minimum prefix ratio pi_theta/mu, asynchronous at staleness 4 "
    "(the paper's staleness is unverified; 4 as AReaL's recipe)", "2601.22718",
    {"run.mode": "async", "async.max_staleness": 4, "algo.correction": "minpro"}))
RECIPES.register("remix", Recipe(
    "ReMix: mix-policy proximal PG over rollouts of the last K = 2 policies (replay, half of each batch fresh), "
    "update-to-data ratio 2 (2 epochs), KL-convex penalty beta 0.01, lambda 0.5, policy reincarnation halfway "
    "(K, mix, UTD, lambda and T are unverified in the paper: these are choices)", "2507.06892",
    {"sampler.replay": {"fresh_fraction": 0.5, "max_age": 2}, "algo.epochs": 2,
     "algo.correction": {"type": "remix", "kl_coef": 0.01, "lam": 0.5, "reincarnate_frac": 0.5}}))

# ------------------------------------------------------------------ label-free test-time RL (agentic.md section 8)
RECIPES.register("ttrl", Recipe(
    "TTRL: no reference answers; N = 16 votes per prompt, the majority answer is the pseudo-label, the first "
    "M = sampler.group_size (8 in the spec's tiny adaptation; TTRL's AIME script 64 / 32) are trained; an "
    "unparsed answer is a valid vote (TTRL's code)", "2504.16084",
    {"task.labels": "none", "task.empty_vote": "vote", "sampler.allocator": {"type": "fixed", "n": 16},
     "sampler.downsampler": {"type": "vote_split", "pick": "first"}}))
RECIPES.register("ettrl", Recipe(
    "ETTRL: TTRL with entropy-fork tree majority rollout (M = 3 trees x (1 + B 2 x N_f 2) = 15 voting leaves, "
    "forks at the root's top-entropy tokens, on the root only; a seeded random sampler.group_size of them "
    "trained) and entropy-based advantage reshaping A <- (1 + (H_bar - H_i) / H_bar) A (which leaves are "
    "trained and recursion are unverified: choices)", "2508.11356",
    {"task.labels": "none", "task.empty_vote": "vote", "sampler.allocator": {"type": "fixed", "n": 15},
     "sampler.downsampler": {"type": "vote_split", "pick": "random"},
     "generation.strategy": {"type": "etmr", "forks": 2, "branches": 2}, "algo.shaping": ["ear"]}))

# ------------------------------------------------------------------ behaviour policy (agentic.md section 7)
RECIPES.register("props", Recipe(
    "PROPS: each group sampled in 4 rounds; before each, a behaviour copy phi <- theta takes up to 16 Adam steps "
    "(lr 1e-3) on PPO's clipped surrogate with advantages -1 (eps 0.3) over the tokens sampled so far, stopping "
    "at approx KL 0.01; the target trains on it as on-policy (theta's logprobs, no behaviour weight)",
    "2311.08290", {"generation.strategy": {"type": "props", "rounds": 4}, "algo.correction": "none"}))

# ------------------------------------------------------------------ swarm (agentic.md section 6)
RECIPES.register("sapo", Recipe(
    "SAPO swarm: each step 4 local question groups of 8 plus 4 groups drawn from other nodes' rollouts, "
    "re-scored locally and trained with ratio 1; GRPO without KL, clip 0.2/0.28, token-mean (the paper's 4/4). "
    "Run nodes with `rollwise swarm CONFIG --nodes N` (board: [swarm] board)", "2509.08721",
    {"swarm.external": 4, "sampler.batch_prompts": 4, "sampler.group_size": 8, "algo.kl_coef": 0.0,
     "algo.clip_low": 0.2, "algo.clip_high": 0.28, "algo.aggregation": "token-mean"}))

# ------------------------------------------------------------------ cheap exploration, exact training (Sol-RL)
RECIPES.register("solrl", Recipe(
    "Sol-RL for LLMs: an int8 copy of the policy (re-quantised at each weight sync) explores 4x the group per "
    "prompt, the best floor(G/2) and worst rest by reward are kept, regenerated at full precision with the same "
    "per-row noise and trained (the LLM adaptation is unverified: the paper is diffusion)", "2604.06916",
    {"generation.strategy": {"type": "solrl", "pool_factor": 4, "mode": "resample_same_noise"}}))
RECIPES.register("solrl_is", Recipe(
    "Sol-RL selection with FlashRL-style training on the int8 samples themselves: pi_old recomputed at full "
    "precision, truncated IS min(pi_old / mu_int8, 2) (not Sol-RL's regeneration)", "2604.06916",
    {"generation.strategy": {"type": "solrl", "pool_factor": 4, "mode": "rescore_is"},
     "algo.correction": {"type": "tis", "cap": 2.0}}))

# ------------------------------------------------------------------ rescue
RECIPES.register("hill", Recipe(
    "HiLL: a hinter language model (a copy of the policy) reads the question, one failed rollout and the "
    "reference, writes M = 4 hints per all-wrong prompt, trained on the transfer-weighted reward; the policy "
    "trains on the hinted prompt", "2604.00698",
    {"sampler.type": "hill", "sampler.transform": {"hinter": "lm"}}))
RECIPES.register("scope", Recipe(
    "SCOPE: a PRM (the exact step checker on worked arith answers: task.scratchpad = 'carries') finds the first "
    "wrong step of a failed rollout; the reference's steps replace it and the rest (kept if verified, one per "
    "group, k >= 0.3 of the steps); the spliced suffix trains off-policy with -A p/(p + 0.1) (tau, rho and the "
    "per-group cap are unverified choices)", "2602.24110",
    {"sampler.transform": "scope", "algo.loss": "scope"}))
RECIPES.register("dart", Recipe(
    "DART's data curation: per-task rollouts n = max(1, floor(9/s - 7)) for tasks solved at s >= 1 (the code's "
    "threshold), the newest stored success injected into all-failed groups (a versioned store), only the top 0.8 "
    "of step samples by entropy trained (rho unverified), truncated IS at cap 1; the authors' loss shape (gspo, "
    "seq-mean-token-mean, eps 0.1/0.28, dual clip 10, low-var KL 0.1); their lr 1e-7 is not set. Step samples are "
    "grouped per task: use an [env] config (configs/guess.toml)", "2509.23866",
    {"sampler.allocator": "dart", "sampler.transform": "dart_inject", "algo.correction": "dart",
     "algo.loss": "gspo", "algo.aggregation": "seq-mean-token-mean", "algo.clip_low": 0.1, "algo.clip_high": 0.28,
     "algo.dual_clip": 10.0, "algo.kl_coef": 0.1, "algo.kl_estimator": "low_var_kl"}))

# ------------------------------------------------------------------ step-level agentic methods ([env] with an expert)
RECIPES.register("pivotrl", Recipe(
    "PivotRL: profile the start policy (K = 8) at every turn of the expert trajectories, keep turns with mixed "
    "outcomes and mean < lambda_diff 0.75 (unverified; our choice), one-turn GRPO (G = group_size) there with the "
    "functional step reward; eps 0.2/0.28, token-mean, no KL (NVIDIA's recipe). Needs an [env] with an expert "
    "(configs/chain.toml)", "2603.21383",
    {"agentic.type": "pivotrl", "algo.advantage": "grpo", "algo.clip_low": 0.2, "algo.clip_high": 0.28,
     "algo.aggregation": "token-mean", "algo.kl_coef": 0.0}))
RECIPES.register("uis1", Recipe(
    "UI-S1 semi-online RL: n = 8 rollouts per task over its expert trajectory, own actions in the history, the "
    "expert's patched in on a mismatch (budget 2), gamma 0.5 returns that break at a mismatch, A = A_ep "
    "(immediate scores normalised over the task's steps, as the code) + A_step (mean_std_norm per step group), "
    "std filter 0.3, low-var KL 1e-4; SOP beside free-running success at eval. Needs an [env] with an expert",
    "2509.11543",
    {"agentic.type": "uis1", "algo.advantage": "precomputed", "sampler.group_size": 8, "algo.kl_coef": 1e-4,
     "algo.kl_estimator": "low_var_kl"}))

# ------------------------------------------------------------------ the savings composed (issue 32)
RECIPES.register("thrift", Recipe(
    "thrift: the parts that saved something on the proving ground, composed: DOTS's selection near p = 1/2 and "
    "its rollout replay (arXiv:2506.05316; sampler.selector and replay, so it stacks on a file's sampler.type), "
    "LATR's prefix-sharing trees (arXiv:2510.24302; branches decode in the same forwards, where ROSE's "
    "arXiv:2601.05053 takes G sequential calls) and the update's exact zero-advantage row skip. Out: MSSR's "
    "single-rollout groups (arXiv:2512.18215): a tree and a group's pass-rate estimate need G rollouts of a prompt",
    "2506.05316",
    {"sampler.selector": "dots", "sampler.replay": {"fresh_fraction": 0.5}, "generation.strategy": "latr",
     "algo.skip_zero_rows": True}))

# ------------------------------------------------------------------ sampler presets: one recipe each
PRESET_ARXIV = {
    "uniform": "2402.03300", "vade": "2511.18902", "reinforce_ada": "2510.04996", "gdro": "2601.19280",
    "gdro_rollout": "2601.19280", "dars": "2508.13755", "dars_b": "2508.13755", "dots": "2506.05316",
    "xrpo": "2510.06672", "mc_grpo": "2601.22582", "mc_grpo_control": "2601.22582", "d3s": "2509.22115",
    "v05": "2603.10848", "brorl": "2510.01180", "mssr": "2512.18215", "prefix_rl": "2601.18795",
    "hill": "2604.00698",
}
for _name in PRESETS.names():
    if _name not in RECIPES and _name != "uniform":  # uniform is GRPO's sampler; `grpo` is its recipe
        RECIPES.register(_name, Recipe(PRESETS.get(_name).doc, PRESET_ARXIV.get(_name, ""),
                                       {"sampler.type": _name}))


# ------------------------------------------------------------------ applying a recipe
def _merge(under: Any, over: Any) -> Any:
    """``over`` (the user's value) on top of ``under`` (the recipe's): tables merge key by key; a component
    given by name merges with the recipe's table of the same type and replaces one of another type."""
    if isinstance(over, str) and isinstance(under, dict) and "type" in under:
        over = {"type": over}
    if isinstance(under, str) and isinstance(over, dict) and "type" not in over:
        under = {"type": under}
    if isinstance(under, dict) and isinstance(over, dict):
        if "type" in over and "type" in under and over["type"] != under["type"]:
            return over
        return {**under, **{k: _merge(under[k], v) if k in under else v for k, v in over.items()}}
    return over


def recipe_table(name: str) -> dict[str, Any]:
    """A recipe's settings as nested tables ``{"algo": {"loss": "hapo", ...}, ...}``."""
    out: dict[str, Any] = {}
    for dotted, value in RECIPES.get(name).settings.items():
        node = out
        *parents, last = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return out


def apply_recipe(data: dict[str, Any]) -> dict[str, Any]:
    """A raw config table with its ``recipe`` (if any) applied under it. Raises ``ValueError`` naming the closest
    recipes for an unknown name."""
    name = data.get("recipe")
    if name is None:
        return data
    if not isinstance(name, str) or name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; {RECIPES.suggest(str(name))}")
    return _merge(recipe_table(name), data)


def recipe_marks(name: str | None, resolved: dict[str, Any]) -> dict[str, str]:
    """``{"section.key": comment}`` for the keys recipe ``name`` sets: "recipe NAME" where the resolved value is
    the recipe's, "recipe NAME set X; overridden" where the user's value won. ``resolved`` is the dumped config."""
    if name is None:
        return {}
    marks = {}
    for dotted, value in RECIPES.get(name).settings.items():
        section, _, key = dotted.partition(".")
        got = resolved.get(section, {}).get(key)
        ok = _merge(got, value) == got if isinstance(value, dict) else got == value or (
            isinstance(got, dict) and got.get("type") == value)
        if isinstance(value, list) and isinstance(got, list):
            ok = [g.get("type") if isinstance(g, dict) else g for g in got] == value
        marks[dotted] = f"recipe {name}" if ok else f"recipe {name} set {value!r}; overridden"
    return marks

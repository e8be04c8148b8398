"""Checks across config sections (a verifier that reads the task's answers, a loss that feeds the engine's
adaptive temperature, ...), run after every section validated on its own; each failure is one line naming a key."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rollwise.algos.catalog import ENTROPY_STATS_LOSSES
from rollwise.generation.strategy import STRATEGIES
from rollwise.rewards.shaping import check_reward_shaping

if TYPE_CHECKING:
    from rollwise.config_models import Config

ARITH_VERIFIERS = {"none": "synthetic_int", "carries": "synthetic_scratch", "mixed": "synthetic_mixed"}


def check_verifier_spec(spec: str) -> str:
    """``task.verifier`` at load: 'auto', a registered name, or a ``package.module:function`` that imports to a
    callable (user code is imported here, once, as a user selector or loss is); ValueError, one line, if not."""
    from rollwise.registry import import_object
    from rollwise.rewards import VERIFIERS

    if spec == "auto" or spec in VERIFIERS:
        return spec
    if ":" not in spec:
        raise ValueError(f"unknown verifier {spec!r}; {VERIFIERS.suggest(spec)} (or package.module:function)")
    try:
        fn = import_object(spec)
    except (ImportError, ValueError) as exc:
        raise ValueError(str(exc)) from None
    if not callable(fn):
        raise ValueError(f"{spec!r} is not a function (a verifier is called with (completion, reference))")
    return spec


def check_cross_sections(cfg: Config) -> None:
    """Raise ValueError on a combination of sections that cannot run."""
    _check_remix(cfg)
    if cfg.model.heads % cfg.model.kv_heads:
        raise ValueError("model.heads must be a multiple of model.kv_heads")
    if cfg.model.hidden % cfg.model.heads:
        raise ValueError("model.hidden must be a multiple of model.heads")
    verifier = cfg.task.verifier_name()
    if cfg.task.answer_order == "lsb" and verifier == "synthetic_int":
        raise ValueError("task.verifier: synthetic_int compares integers and would accept lsb answers without "
                         "their leading zeros; use task.verifier = 'exact' (or 'auto') with answer_order = 'lsb'")
    if cfg.task.scratchpad != "none" and cfg.task.answer_order == "lsb":
        raise ValueError(f"task.scratchpad: {cfg.task.scratchpad!r} writes answers msb first; set "
                         "task.answer_order = 'msb' or task.scratchpad = 'none'")
    want = ARITH_VERIFIERS[cfg.task.scratchpad]
    if cfg.task.suite == "arith" and cfg.task.scratchpad != "none" and verifier != want:
        raise ValueError(f"task.verifier: task.scratchpad = {cfg.task.scratchpad!r} needs a verifier that reads "
                         f"its answers; use task.verifier = {want!r} (or 'auto')")
    check_reward_shaping(cfg.task)
    if cfg.task.labels == "none" and cfg.env is not None:  # episodes are rewarded by the environment itself
        raise ValueError("task.labels: 'none' (majority-vote pseudo-labels) applies to single-turn prompts; an "
                         "[env] rewards its episodes itself, so it would train on the environment's true reward")
    if getattr(cfg.algo.correction, "baseline", None) == "opob" and cfg.algo.shaping:
        raise ValueError(f"algo.correction: {cfg.algo.correction.type!r} (baseline = 'opob') replaces the "
                         "advantages; not with algo.shaping (set baseline = 'estimator')")
    transform, source = cfg.sampler.transform.type, getattr(cfg.sampler.transform, "source", "own")
    generators = transform == "hill" and getattr(cfg.sampler.transform, "hinter", "generators") == "generators"
    if cfg.task.suite != "arith" and (generators or (transform == "prefix_rl" and source == "reference")):
        what = "hint generators" if transform == "hill" else "worked reference traces"
        raise ValueError(f"sampler.transform: {transform!r} needs {what}, which only task.suite = 'arith' has"
                         + ("; use hinter = 'lm'" if transform == "hill" else "; use source = 'own' or 'both'"))
    tau = getattr(cfg.generation.engine, "entropy_temperature_tau", 0.0)
    if tau > 0 and cfg.algo.loss.type not in ENTROPY_STATS_LOSSES:
        raise ValueError(f"generation.engine.entropy_temperature_tau: HAPO's adaptive temperature needs a loss "
                         f"that measures the entropy statistics it samples with (algo.loss = "
                         f"{' | '.join(sorted(ENTROPY_STATS_LOSSES))}), got {cfg.algo.loss.type!r}")
    if tau > 0 and cfg.run.mode == "async":
        raise ValueError("generation.engine.entropy_temperature_tau: not with run.mode = 'async' (the rollout "
                         "workers do not receive the update's entropy statistics)")
    strategy = STRATEGIES.get(cfg.generation.strategy.type)  # its length thresholds against the cap, one line
    getattr(strategy, "check_config", lambda knobs, cfg: None)(cfg.generation.strategy, cfg)
    rows = cfg.sampler.batch_prompts * cfg.sampler.group_size
    if cfg.generation.strategy.type == "april" and cfg.generation.batch_size < rows:
        raise ValueError(f"generation.batch_size: APRIL stops a call once enough groups finished, but the engine "
                         f"decodes {cfg.generation.batch_size} rows at a time and a later chunk never starts; set "
                         f"generation.batch_size >= sampler.batch_prompts x sampler.group_size = {rows}")
    low, high = cfg.task.reward_range
    if not low < high:
        raise ValueError(f"task.reward_range: low must be below high, got [{low}, {high}]")
    if cfg.trainer.eval_samples > 1 and cfg.generation.eval_temperature == 0:
        raise ValueError("trainer.eval_samples: greedy eval (generation.eval_temperature = 0) gives identical "
                         "samples; set generation.eval_temperature > 0 or eval_samples = 1")


def _check_remix(cfg: Config) -> None:
    """ReMix's reincarnation either fires within the run or is refused: ``reincarnate_frac`` resolves into
    ``reincarnate_at`` (a share of trainer.steps); a reincarnation step past the run's end, or one whose reset
    nothing reads (the reference is read only by the KL-to-base term: kl_coef > 0 and lam > 0), is an error."""
    c = cfg.algo.correction
    if c.type != "remix":
        return
    key = "algo.correction"
    if c.reincarnate_frac is not None:
        if not 0 < c.reincarnate_frac <= 1:
            raise ValueError(f"{key}.reincarnate_frac: a share of trainer.steps in (0, 1], got {c.reincarnate_frac}")
        at = max(1, round(c.reincarnate_frac * cfg.trainer.steps))
        if c.reincarnate_at is not None and c.reincarnate_at != at:
            raise ValueError(f"{key}.reincarnate_at: {c.reincarnate_at} disagrees with reincarnate_frac = "
                             f"{c.reincarnate_frac} x trainer.steps = {at}; set one of them")
        c.reincarnate_at = at
    if c.reincarnate_at is None:
        return
    if c.kl_coef <= 0 or c.lam <= 0:
        raise ValueError(f"{key}.reincarnate_at: reincarnation resets pi_base, which only the KL-to-base term reads, "
                         f"and it is off (kl_coef = {c.kl_coef}, lam = {c.lam}); set both > 0 or drop reincarnation")
    if not 1 <= c.reincarnate_at <= cfg.trainer.steps:
        raise ValueError(f"{key}.reincarnate_at: step {c.reincarnate_at} never comes within trainer.steps = "
                         f"{cfg.trainer.steps}; use a step in [1, {cfg.trainer.steps}] or reincarnate_frac")


class ConfigWarning(UserWarning):
    """A config that runs but in which a component cannot act as its paper says (its precondition is ruled out)."""


def _strategy_off_policy(cfg: Config) -> bool:
    """Whether the rollout strategy, with its knobs, returns tokens another policy sampled (Sol-RL's int8 copy)."""
    from rollwise.generation import STRATEGIES

    return bool(STRATEGIES.get(cfg.generation.strategy.type).samples_off_policy(cfg.generation.strategy))


def precondition_warnings(cfg: Config, pool_size: int) -> list[str]:
    """One line per component whose precondition this config rules out (the run would train, but the method
    would not act): a component that learns from earlier visits of a prompt on a pool whose prompts rarely
    come back (expected visits per prompt = steps x prompts per step / pool size below 2); an off-policy
    correction with no off-policy data; replay that replays nothing; ReMix without its replay."""
    from rollwise.algos import CORRECTIONS
    from rollwise.components import knobs
    from rollwise.sampling.presets import SLOTS, prompts_per_step

    out: list[str] = []
    s = cfg.sampler
    per_step = prompts_per_step(s)
    visits = cfg.trainer.steps * per_step / max(pool_size, 1)
    slots = [(f"sampler.{slot}", getattr(s, slot).type, reg.get(getattr(s, slot).type)) for slot, reg in SLOTS.items()]
    for key, name, comp in slots:
        if getattr(comp, "needs_revisits", False) and visits < 2:
            out.append(f"{key}: {name!r} acts on prompts it has seen before, but each prompt comes back "
                       f"{visits:.2f} times on average (trainer.steps x prompts per step / pool = "
                       f"{cfg.trainer.steps} x {per_step} / {pool_size}); raise trainer.steps or "
                       "sampler.batch_prompts, or lower task.train_size, to >= 2 visits")
    corr = CORRECTIONS.get(cfg.algo.correction.type)(**knobs(cfg.algo.correction))
    off_policy = (cfg.run.mode == "async" or bool(s.replay) or cfg.algo.epochs > 1 or cfg.algo.mini_batches > 1
                  or getattr(cfg.generation.engine, "entropy_temperature_tau", 0.0) > 0
                  or cfg.generation.strategy.type == "april" or _strategy_off_policy(cfg))
    if getattr(corr, "off_policy_only", False) and not off_policy:
        out.append(f"algo.correction: {cfg.algo.correction.type!r} corrects off-policy rollouts, and this run has "
                   "none (run.mode = 'sync', no sampler.replay, algo.epochs = algo.mini_batches = 1): every weight "
                   "is 1; use run.mode = 'async' or replay")
    if s.replay and s.replay.fresh_fraction >= 1:
        out.append("sampler.replay.fresh_fraction: 1 leaves no room in a batch for replayed groups; replay buffers "
                   "and never replays")
    if cfg.algo.correction.type == "remix" and not s.replay:
        out.append("algo.correction: 'remix' mixes recent policies' rollouts from the replay buffer, which is off "
                   "(sampler.replay = false): every rollout is fresh; use --recipe=remix or sampler.replay = true")
    return out

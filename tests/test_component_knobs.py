"""Every knob of every registered component, drawn hostile from the config schema: a value is either refused
at load with a one-line error naming the key, or it trains.

For each entry of every registry in ``COMPONENT_KEYS`` (a new registration is covered without touching this
file) hypothesis draws a few knobs at a time from hostile values derived from each knob's JSON schema
(its bounds and one step past them, 0, negative, huge, inf, nan, empty lists, wrong types) and loads them on
``configs/smoke.toml``: the load must succeed or raise a :class:`ConfigError` whose lines each name a key. Loads
take about a millisecond, so these draws are many; training is not, so two fixed draws per component train,
two steps each, with finite metrics: every knob at the first hostile value it is accepted with on its own (a
boundary, 0, ...), and every float knob that accepts 1e300 at 1e300 (overflow).
"""

from __future__ import annotations

import math
import re
import typing
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from rollwise.components import typed_model
from rollwise.config import Config, ConfigError, load_config
from rollwise.config_models import COMPONENT_KEYS

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "configs" / "smoke.toml"
COMPONENTS = [(key, name) for key, reg in COMPONENT_KEYS.items() for name in reg.names()]
HUGE_INT, HUGE_FLOAT = 10**12, 1e300
#: other settings a component needs to run at all (the estimator its baseline feeds, ...)
CONTEXT: dict[tuple[str, str], list[tuple[str, Any]]] = {
    **{("sampler.baseline", b): [("algo.advantage", "pool_baseline")] for b in ("beta", "pool_mean", "v05")},
    ("algo.advantage", "pool_baseline"): [("sampler.baseline", "pool_mean")],
    ("task.reward_shaping", "fapo"): [("task.scratchpad", "carries")],  # its default judge reads worked answers
    ("sampler.transform", "scope"): [("task.scratchpad", "carries")],  # its arith PRM reads worked answers
    # step-level methods need an environment with an expert (small terms: the smoke model gets some steps right)
    **{("agentic", m): [("env", {"type": "chain", "max_term": 2, "max_terms": 3})] for m in ("pivotrl", "uis1")},
}
#: components the CPU suite cannot train (their load-time draws still run)
NO_TRAIN = {("generation.engine", "vllm"): "needs vLLM and a GPU",
            ("generation.engine", "vllm_async"): "needs vLLM (tests/generation/test_vllm_async.py runs it)",
            ("env", "textarena"): "building its run takes minutes on smoke (measured 146-285 s under load); "
                                  "tests/envs/test_textarena_env.py trains it",
            ("env", "openenv"): "needs a running OpenEnv server (and has no scripted player to warm-start from): "
                                "tests/envs/test_openenv_env.py trains it through a loopback server",
            ("env", "verifiers"): "needs the verifiers extra, which pins package versions the test environment "
                                  "shares: tests/envs/test_verifiers_env.py trains it (in a venv of its own)"}
#: known failures of code owned elsewhere, per draw, each with its reason (xfail, not strict: a fix passes)
XFAIL_TRAIN: dict[tuple[str, str, str], str] = {}


def _is_list_slot(key: str) -> bool:
    model: Any = Config
    for part in key.split("."):
        ann = model.model_fields[part].annotation
        model = ann
    return typing.get_origin(ann) is list


def _slot(key: str, name: str, knobs: dict[str, Any]) -> Any:
    table = {"type": name, **knobs}
    return [table] if _is_list_slot(key) else table


def knob_schemas(key: str, name: str) -> dict[str, dict[str, Any]]:
    """Each knob's JSON schema (the ``type`` tag left out)."""
    props = typed_model(COMPONENT_KEYS[key], name).model_json_schema()["properties"]
    return {k: v for k, v in props.items() if k != "type"}


def _number_values(s: dict[str, Any], integer: bool) -> list[Any]:
    step = 1 if integer else 1e-9
    out: list[Any] = []
    for bound, sign in (("minimum", -1), ("exclusiveMinimum", 0), ("maximum", 1), ("exclusiveMaximum", 0)):
        if bound in s:
            b = s[bound]
            out += [b, b + step if sign <= 0 else b - step, b - step if sign <= 0 else b + step]
    huge = HUGE_INT if integer else HUGE_FLOAT
    out += [0, -1, 1, huge, -huge, 2.5 if integer else 1e-300]
    if not integer:
        out += [math.inf, -math.inf, math.nan, "inf", "nan"]
    return out


def hostile_values(s: dict[str, Any]) -> list[Any]:
    """Hostile values for a knob with JSON schema ``s`` (its declared bounds and past them, degenerate numbers,
    empty and malformed containers, wrong types); the first ones are the boundaries."""
    if "anyOf" in s:
        return [v for sub in s["anyOf"] for v in hostile_values(sub) if v is not None] + [None]
    t = s.get("type")
    if "enum" in s or "const" in s:
        return ["", "no_such_value", 0, None]
    if t in ("integer", "number"):
        return _number_values(s, t == "integer") + ["x", [], None]
    if t == "boolean":
        return ["maybe", 2, None, []]
    if t == "string":
        return ["", "no_such_value", "no_such_pkg.mod:fn", 0, None]
    if t == "array":
        item = s.get("items", {}).get("type", "number")
        bad = [-3, 0] if item == "integer" else [math.nan, -1.0]
        return [[], [0], bad, [HUGE_INT], "x", None]
    if t == "object":
        return [{}, {"0": -1.0}, {"-5": 2.0}, {"0": math.inf}, {"x": 1.0}, "x", None]
    return [None, "x", -1]


def assert_one_line_error(err: ConfigError, key: str) -> None:
    """Each reported problem is one line that names a config key (the component's, or the one it conflicts with)."""
    text = str(err)
    assert "Traceback" not in text
    lines = text.splitlines()
    problems = lines[1:] if lines[0] == "invalid config:" else lines
    assert problems, text
    for line in problems:
        assert re.match(r"^\s*([a-z_]+\.[\w.\[\]-]+|\w+)( |:|=)", line), f"no key named in {line!r}"
    assert key in text or re.search(r"[a-z_]+\.[a-z_]+", text), text


def load(key: str, name: str, knobs: dict[str, Any], *extra: tuple[str, Any]) -> Config | ConfigError:
    overrides = [*CONTEXT.get((key, name), []), (key, _slot(key, name, knobs)), *extra]
    try:
        return load_config(SMOKE, overrides)
    except ConfigError as err:
        assert_one_line_error(err, key)
        return err


@pytest.mark.parametrize(("key", "name"), COMPONENTS, ids=[f"{k}={n}" for k, n in COMPONENTS])
def test_component_defaults_load(key, name):
    """The context each component is drawn in is a valid config, so the draws test the knobs."""
    assert isinstance(load(key, name, {}), Config)


@pytest.mark.parametrize(("key", "name"), COMPONENTS, ids=[f"{k}={n}" for k, n in COMPONENTS])
@settings(max_examples=40, derandomize=True, deadline=None, database=None,
          phases=[Phase.explicit, Phase.generate, Phase.shrink], suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_hostile_knobs_load_or_say_which_key(key, name, data):
    schemas = knob_schemas(key, name)
    if not schemas:  # nothing to tune: any knob is an unknown key
        got = load(key, name, {data.draw(st.sampled_from(["x", "scale", "n"]), label="knob"): 1})
        assert isinstance(got, ConfigError)
        return
    chosen = data.draw(st.lists(st.sampled_from(sorted(schemas)), min_size=1, max_size=3, unique=True), label="knobs")
    knobs = {k: data.draw(st.sampled_from(hostile_values(schemas[k])), label=k) for k in chosen}
    load(key, name, knobs)  # asserts: a Config, or a ConfigError of one line per problem, each naming a key


@cache
def accepted(key: str, name: str) -> dict[str, list[Any]]:
    """Per knob, the hostile values it loads with on its own, in the order drawn (boundaries first)."""
    out = {}
    for k, s in knob_schemas(key, name).items():
        out[k] = [v for v in hostile_values(s) if isinstance(load(key, name, {k: v}), Config)]
    return out


def training_draw(key: str, name: str, draw: str) -> dict[str, Any]:
    """Every knob at a hostile value it is accepted with on its own: the first one drawn of size at most 100
    (``edge``: a boundary, 0, ...), or 1e300 where a float takes it (``huge``: overflow); a knob whose value
    conflicts with those already chosen (a relation between knobs) keeps its default. Counts are not drawn huge
    to train: their upper bounds are checked at load, and a count at its bound is slow by design, not wrong."""
    knobs: dict[str, Any] = {}
    for k, values in accepted(key, name).items():
        if draw == "huge":
            values = [v for v in values if v == HUGE_FLOAT]
        else:  # a count at its upper bound (4096 rollouts per prompt) is slow by design, not wrong
            values = [v for v in values if not isinstance(v, int | float) or abs(v) <= 100]
        for v in values:
            if isinstance(load(key, name, knobs | {k: v}), Config):
                knobs[k] = v
                break
    return knobs


def _nonfinite(row: dict[str, Any]) -> list[str]:
    return [k for k, v in row.items() if isinstance(v, float) and not math.isfinite(v)]


#: components with knobs to draw (one without trains its defaults, as every registry entry does elsewhere)
TRAINED = [c for c in COMPONENTS if c not in NO_TRAIN and knob_schemas(*c)]


@pytest.mark.parametrize(("key", "name", "draw"), [
    pytest.param(k, n, d, marks=[pytest.mark.xfail(reason=XFAIL_TRAIN[k, n, d], strict=False)]
                 if (k, n, d) in XFAIL_TRAIN else [], id=f"{k}={n}-{d}") for k, n in TRAINED for d in ("edge", "huge")])
def test_hostile_knobs_that_load_train_two_finite_steps(key, name, draw, tmp_path, warm_cache):
    from rollwise.train.trainer import Trainer

    knobs = training_draw(key, name, draw)
    if draw == "huge" and not knobs:
        return  # no float knob takes 1e300: the edge draw covers this component
    cfg = load(key, name, knobs, ("run.out_dir", str(tmp_path)), ("warmstart.cache_dir", str(warm_cache)),
               ("run.threads", 1), ("trainer.eval_every", 0), ("trainer.checkpoint_every", 0))
    assert isinstance(cfg, Config), cfg
    trainer = Trainer(cfg)
    try:
        rows = [trainer.train_step(s) for s in range(2)]
    finally:
        trainer.close()
    for row in rows:
        assert not _nonfinite(row), (knobs, _nonfinite(row))


@pytest.mark.parametrize(("overrides", "key", "words"), [
    # accepted before and silently useless: loss and gradient 0 every step
    (['--algo.correction={type="tis", cap=0}'], "algo.correction.cap", "greater than 0"),
    (['--algo.correction={type="areal", upper=1.5, lower=2}'], "algo.correction", "must be above lower"),
    (['--algo.correction={type="areal", upper=0.5}'], "algo.correction", "must hold 1"),
    (['--algo.correction={type="mis", upper=0.5}'], "algo.correction", "must be above 1"),
    # crashed with a traceback
    (['--algo.correction={type="vcpo", rho_base=0}'], "algo.correction.rho_base", "greater than 0"),
    (["--sampler.selector=dots", "--sampler.selector.predictor=no_such_pkg.mod:fn"], "sampler.selector.predictor",
     "cannot import"),
    (["--task.scratchpad=carries", "--task.reward_shaping=fapo", "--task.reward_shaping.judge=no_such_pkg.mod:fn"],
     "task.reward_shaping", "cannot import"),
    (['--sampler.allocator={type="gdro_sqrt", n_mean=1e300}'], "sampler.allocator.n_mean", "less than or equal"),
    (['--sampler.allocator={type="gdro_arms", n_max=1000000000000}'], "sampler.allocator.n_max", "less than or equal"),
    (['--sampler.allocator={type="gdro_arms", n_min=6}'], "sampler.allocator", "sampler.group_size"),
    (["--sampler.selector=gdro", "--sampler.selector.edges=x"], "sampler.selector.edges", "must be numbers"),
    (['--sampler.gates=[{type="dynamic", max_refills=1000000000000, refill_scale=1e300}]'], "sampler.gates.0",
     "less than or equal"),
    (["--algo.correction=tis", "--algo.correction.cap=inf"], "algo.correction.cap", "finite number"),
    (['--sampler.gates=[{type="dars_filter", lower_threshold=0.9, upper_threshold=0.1}]'], "sampler.gates.0",
     "must be below upper_threshold"),
])
def test_known_bad_knobs_are_one_line_errors_at_load(overrides, key, words):
    with pytest.raises(ConfigError) as err:
        load_config(SMOKE, overrides)
    assert_one_line_error(err.value, key)
    assert any(line.strip().startswith(key) and words in line for line in str(err.value).splitlines()), err.value

import tomllib
from pathlib import Path

import pytest

from rollwise.config import Config, ConfigError, describe, dump_toml, load_config, parse_overrides

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_are_the_tiny_config():
    tiny = load_config(ROOT / "configs" / "tiny.toml")
    assert tiny == Config()


def test_overrides_parse_types():
    cfg = load_config(None, ["--trainer.steps=50", "--algo.loss=gspo", "--sampler.type=vade",
                             "--sampler.selector.lambda1=0.3", "--task.levels=['add1','add2']",
                             "--algo.dual_clip", "3.0"])
    assert cfg.trainer.steps == 50 and cfg.algo.loss.type == "gspo"
    assert cfg.sampler.selector.type == "vade" and cfg.sampler.selector.lambda1 == 0.3
    assert cfg.task.levels == ["add1", "add2"] and cfg.algo.dual_clip == 3.0


@pytest.mark.parametrize(("override", "needle"), [
    ("--trainer.stepz=3", "trainer.stepz: unknown key"),
    ("--algo.lr=-1", "algo.lr"),
    ("--bogus.x=1", "bogus: unknown key"),
    ("--generation.top_p=2", "generation.top_p"),
    ("--task.answer_order=backwards", "task.answer_order"),
    ("--task.answer_order=lsb", "task.scratchpad"),
    ("--task.scratchpad=none --task.answer_order=lsb --task.verifier=synthetic_int", "task.verifier"),
    ("--task.scratchpad=carries --task.verifier=synthetic_int", "task.verifier"),
    ("--task.scratchpad=mixed --task.verifier=synthetic_scratch", "task.verifier"),
    ("--task.scratchpad_share=1.5", "task.scratchpad_share"),
    ("--task.scratchpad=yes", "task.scratchpad"),
    ("--trainer.eval_samples=4", "trainer.eval_samples"),
    # APRIL's stop counts the rows decoded together: 64 x 8 rows in chunks of 256 would never start the second
    ("--generation.strategy=april --sampler.batch_prompts=64", "generation.batch_size"),
])
def test_errors_name_the_key(override, needle):
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        load_config(None, override.split())


def test_april_with_every_row_in_one_chunk_loads():
    cfg = load_config(None, ["--generation.strategy=april", "--sampler.batch_prompts=64",
                             "--generation.batch_size=512"])
    assert cfg.generation.strategy.type == "april"


def test_missing_file_and_bad_toml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[run\nseed=1")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(bad)


def test_dump_roundtrip_and_docs():
    cfg = load_config(None, ["--sampler.type=vade", "--sampler.selector.lambda1=0.5"])
    again = Config.model_validate(tomllib.loads(dump_toml(cfg)))
    assert again == cfg
    rows = describe()
    assert all(doc for _, _, doc in rows), [k for k, _, d in rows if not d]


def test_override_without_value():
    with pytest.raises(ConfigError, match="no value"):
        parse_overrides(["--trainer.steps"])


def test_auto_verifier_follows_the_answer_format():
    def name(*o):
        return load_config(None, list(o)).task.verifier_name()
    assert name() == "synthetic_mixed"
    assert name("--task.scratchpad=none") == "synthetic_int"
    assert name("--task.scratchpad=carries") == "synthetic_scratch"
    assert name("--task.scratchpad=none", "--task.answer_order=lsb") == "exact"
    assert name("--task.suite=dataset", "--task.dataset=gsm8k:test") == "gsm8k"
    assert name("--task.suite=dataset", "--task.dataset=math500") == "math"
    assert name("--task.verifier=exact", "--task.scratchpad=none") == "exact"


@pytest.mark.parametrize(("override", "needle"), [
    ("--sampler.type=nope", "sampler.type: unknown sampler preset 'nope'"),
    ("--sampler.type=vadee", "did you mean 'vade'"),
    ("--sampler.selector=vadee", "sampler.selector.type: unknown selector 'vadee'; did you mean 'vade'"),
    ("--sampler.allocator=reinforce_ad", "did you mean 'reinforce_ada'"),
    ("--sampler.gates=['dynamc']", "sampler.gates.0.type: unknown gate 'dynamc'"),
    ("--algo.loss=nope", "algo.loss.type: unknown policy loss 'nope'"),
    ("--algo.aggregation=token_mean", "did you mean 'token-mean'"),
    ("--algo.advantage=rlo", "algo.advantage.type: unknown advantage estimator 'rlo'"),
    ("--generation.engine=nope", "generation.engine.type: unknown generation engine 'nope'"),
    ("--task.suite=foo", "task.suite: unknown suite 'foo'"),
    ("--sampler.type=vade --sampler.selector.lambda9=1", "sampler.selector.lambda9: unknown key; did you mean"),
    ("--sampler.params.vade.lambda1=1", "sampler.params: unknown key"),
    ("--sampler.type=reinforce_ada --sampler.allocator.roundz=3", "did you mean 'rounds'"),
    ("--sampler.type=mc_grpo --algo.advantage.scale=std", "algo.advantage.scale"),
    ("--sampler.type=reinforce_ada --sampler.rollout_budget=256", "preset 'reinforce_ada' act (it needs at least 264"),
    ("--sampler.type=reinforce_ada --algo.advantage=grpo", "sampler.baseline='pool_mean' is ignored by"),
    ("--sampler.type=xrpo --sampler.allocator=fixed --sampler.baseline=v05",
     "sampler.baseline='v05' is ignored by algo.advantage='xrpo'"),
])
def test_component_errors_name_the_key_and_the_closest_names(override, needle):
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.").replace("(", r"\(")):
        load_config(None, override.split())


def test_presets_fill_typed_components_and_explicit_tables_tune_them():
    cfg = load_config(None, ["--sampler.type=reinforce_ada", "--sampler.allocator.rounds=2"])
    s = cfg.sampler
    assert (s.allocator.type, s.allocator.rounds, s.allocator.round_size) == ("reinforce_ada", 2, 8)
    assert (s.downsampler.type, s.baseline.type, cfg.algo.advantage.type) == ("balanced", "pool_mean", "pool_baseline")
    assert cfg.rollout_budget() == 32 * 8 * 2  # the budget follows the method
    s = load_config(None, ["--sampler.type=mc_grpo", "--sampler.allocator=fixed"]).sampler
    assert s.allocator.extra == 1  # same type as the preset's: its knobs are kept
    s = load_config(None, ["--sampler.type=brorl", "--sampler.allocator=xrpo"]).sampler
    assert s.allocator.type == "xrpo"  # another type replaces the preset's component
    cfg = load_config(None, ["--sampler.type=dars_b"])
    assert (cfg.algo.epochs, cfg.algo.mini_batches, cfg.rollout_budget()) == (2, 1, 4 * 32 * 32)
    assert load_config(None, ["--sampler.type=dars_b", "--algo.epochs=1"]).algo.epochs == 1
    assert load_config(None, ["--sampler.replay=true"]).sampler.replay.fresh_fraction == 0.5
    off = load_config(None, ["--sampler.type=dots", "--sampler.replay=false"])
    assert off.sampler.replay is False
    # off stays off through the run directory's config.toml (it was refilled from the preset before)
    assert Config.model_validate(tomllib.loads(dump_toml(off))).sampler.replay is False


def test_user_components_are_imported_and_checked_at_load():
    user = "--sampler.selector=rollwise.sampling.vade:VadeSelector"
    cfg = load_config(None, [user, "--sampler.selector.lambda1=0.5"])
    assert cfg.sampler.selector.type == "rollwise.sampling.vade:VadeSelector"
    with pytest.raises(ConfigError, match="lambda9"):
        load_config(None, ["--sampler.selector=rollwise.sampling.vade:VadeSelector", "--sampler.selector.lambda9=1"])
    with pytest.raises(ConfigError, match="cannot import"):
        load_config(None, ["--sampler.selector=no_such_pkg.mod:Sel"])


def test_loading_a_config_imports_no_torch():
    """Names and knobs are checked against torch-free catalogs, so a config error comes before any model."""
    import subprocess
    import sys

    code = ("import sys; from rollwise.config import load_config, ConfigError\n"
            "try: load_config(None, ['--algo.loss=nope'])\nexcept ConfigError: pass\n"
            "load_config(None, ['--sampler.type=xrpo'])\nprint('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_docs_list_every_component_knob():
    keys = {k for k, _, _ in describe()}
    assert {"sampler.selector[vade].lambda1", "sampler.allocator[reinforce_ada].round_size",
            "sampler.gates[dynamic].max_refills", "algo.advantage[mc_grpo].scale",
            "sampler.transform[xrpo_icl].k", "sampler.replay.fresh_fraction",
            "swarm.external", "swarm.board"} <= keys  # an optional section's knobs too

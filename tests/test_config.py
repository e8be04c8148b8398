import tomllib
from pathlib import Path

import pytest

from rollwise.config import Config, ConfigError, describe, dump_toml, load_config, parse_overrides

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_are_the_tiny_config():
    tiny = load_config(ROOT / "configs" / "tiny.toml")
    assert tiny == Config()


def test_overrides_parse_types():
    cfg = load_config(None, ["--trainer.steps=50", "--algo.loss=gspo", "--sampler.params.vade.lambda1=0.3",
                             "--task.levels=['add1','add2']", "--algo.dual_clip", "3.0"])
    assert cfg.trainer.steps == 50 and cfg.algo.loss == "gspo"
    assert cfg.sampler.params == {"vade": {"lambda1": 0.3}}
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
])
def test_errors_name_the_key(override, needle):
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        load_config(None, override.split())


def test_missing_file_and_bad_toml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[run\nseed=1")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(bad)


def test_dump_roundtrip_and_docs():
    cfg = load_config(None, ["--sampler.type=vade", "--sampler.params.vade.lambda1=0.5"])
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

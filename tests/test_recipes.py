"""Recipes: one switch per paper, applied under the config (a key the user sets wins), named in the resolved
config.toml with the lines it set; unknown names get the closest ones; ReMix's reincarnation fires or is refused;
components whose precondition the config rules out are warned about at load; what the update needs is read
from the built components (ReMix's reference from ``--algo.correction=remix`` alone)."""

from __future__ import annotations

import tomllib

import pytest
from typer.testing import CliRunner

from rollwise.cli import app
from rollwise.config import Config, ConfigError, dump_toml, load_config
from rollwise.config_checks import precondition_warnings
from rollwise.recipes import RECIPES, apply_recipe, recipe_marks
from rollwise.sampling.presets import PRESETS
from rollwise.train.update import UpdateParts


def needs_reference(cfg) -> bool:
    """The trainer's rule: a reference model is built when the built update parts ask for one."""
    return UpdateParts.build(cfg.algo).wants_reference(cfg.algo.kl_coef)

def test_hapo_is_one_switch_and_sets_every_knob_its_paper_sets():
    cfg = load_config(None, ["--recipe=hapo"])
    a, e = cfg.algo, cfg.generation.engine
    assert (a.loss.type, a.advantage.type, a.clip_low, a.clip_high, a.dual_clip) == ("hapo", "hapo", 0.2, 0.2, 10.0)
    assert (e.type, e.entropy_temperature_tau, cfg.sampler.type) == ("hf", 0.05, "dapo")


def test_a_key_the_user_sets_wins_and_a_knob_table_tunes_the_recipes_component():
    cfg = load_config(None, ["--recipe=hapo", "--algo.clip_high=0.3", "--generation.engine.compact=false"])
    assert cfg.algo.clip_high == 0.3 and cfg.algo.clip_low == 0.2
    assert cfg.generation.engine.entropy_temperature_tau == 0.05 and cfg.generation.engine.compact is False
    other = load_config(None, ["--recipe=remix", '--algo.correction={type="tis"}'])  # another type replaces it
    assert other.algo.correction.type == "tis" and other.sampler.replay.max_age == 2
    named = load_config(None, ["--recipe=hapo", "--generation.engine=hf"])  # the same component by name: kept
    assert named.generation.engine.entropy_temperature_tau == 0.05


def test_apply_recipe_merges_under_the_raw_table():
    out = apply_recipe({"recipe": "rose", "algo": {"lr": 1e-4}})
    assert out["algo"] == {"shaping": ["rose_segments"], "lr": 1e-4} and out["generation"] == {"strategy": "rose"}
    assert apply_recipe({"algo": {"lr": 1.0}}) == {"algo": {"lr": 1.0}}  # no recipe: untouched


def test_unknown_recipe_is_one_line_with_the_closest_names():
    with pytest.raises(ConfigError) as info:
        load_config(None, ["--recipe=hapx"])
    assert str(info.value).splitlines()[1].strip().startswith("recipe: unknown recipe 'hapx'; did you mean 'hapo'")


def test_config_toml_names_the_recipe_marks_its_lines_and_round_trips():
    cfg = load_config(None, ["--recipe=dapo", "--algo.clip_high=0.3"])
    text = dump_toml(cfg)
    assert text.startswith('recipe = "dapo"\n')
    assert 'type = "dapo"  # recipe dapo' in text
    assert "clip_high = 0.3  # recipe dapo set 0.28; overridden" in text
    assert Config.model_validate(tomllib.loads(text)) == cfg
    marks = recipe_marks("dapo", cfg.model_dump(exclude={"recipe"}))
    assert marks["algo.clip_low"] == "recipe dapo" and set(marks) == set(RECIPES.get("dapo").settings)


def test_every_preset_is_reached_by_a_recipe_and_every_recipe_cites_its_paper():
    for name in PRESETS.names():
        hit = [r for r in RECIPES.names() if RECIPES.get(r).settings.get("sampler.type") == name]
        assert hit or name == "uniform", name
    for name in RECIPES.names():
        r = RECIPES.get(name)
        assert r.arxiv and len(r.arxiv.split(".")) == 2 and r.doc, name
        load_config(None, [("recipe", name)] + ([("task.scratchpad", "carries")] if name == "fapo" else []))


def test_rollwise_recipes_lists_arxiv_and_budget():
    res = CliRunner().invoke(app, ["recipes"], env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    row = next(line for line in res.output.splitlines() if "│ dars_b" in line)
    assert "2508.13755" in row and "4096" in row  # 4 x 32 prompts x 32 rollouts (n_max)


def test_remix_from_the_correction_switch_builds_its_reference():
    cfg = load_config(None, ["--algo.correction=remix"])
    assert needs_reference(cfg) and "reference" in UpdateParts.build(cfg.algo).needs
    off = load_config(None, ["--algo.correction=remix", "--algo.correction.lam=0"])
    assert not needs_reference(off)  # the KL-to-base term is off: nothing reads a reference
    with pytest.raises(TypeError, match="built instance"):
        from rollwise.algos import CORRECTIONS, needs_of

        needs_of(CORRECTIONS.get("remix"))


def test_remix_reincarnation_fires_within_the_run_or_is_refused():
    cfg = load_config(None, ["--recipe=remix", "--trainer.steps=10"])
    assert cfg.algo.correction.reincarnate_at == 5  # halfway: 0.5 x 10
    for bad, needle in [(["--algo.correction.kl_coef=0"], "kl_coef = 0.0"), (["--algo.correction.lam=0"], "lam = 0.0"),
                        (["--algo.correction.reincarnate_frac=null", "--algo.correction.reincarnate_at=11"],
                         "never comes within trainer.steps = 10"),
                        (["--algo.correction.reincarnate_at=3"], "disagrees with reincarnate_frac")]:
        with pytest.raises(ConfigError, match=needle):
            load_config(None, ["--recipe=remix", "--trainer.steps=10", *bad])


def test_precondition_warnings_name_the_knobs():
    hill = load_config(None, ["--sampler.type=hill", "--trainer.steps=10", "--sampler.batch_prompts=4"])
    (line,) = precondition_warnings(hill, pool_size=100)
    assert line.startswith("sampler.transform: 'hill' acts on prompts it has seen before") and "0.40 times" in line
    assert "trainer.steps" in line and "task.train_size" in line
    assert precondition_warnings(hill, pool_size=20) == []  # 10 x 4 / 20 = 2 visits
    tis = load_config(None, ["--algo.correction=tis"])
    assert any(w.startswith("algo.correction: 'tis' corrects off-policy rollouts") for w in
               precondition_warnings(tis, 10**6))
    assert precondition_warnings(load_config(None, ["--algo.correction=tis", "--sampler.replay=true"]), 10) == []
    remix = load_config(None, ["--algo.correction=remix"])
    assert any("'remix' mixes recent policies' rollouts" in w for w in precondition_warnings(remix, 10))
    assert precondition_warnings(load_config(None, ["--recipe=remix"]), 10) == []


def test_the_trainer_warns_at_load_and_the_cli_prints_one_line(smoke_cfg, capsys):
    from rollwise.cli import config_warnings_as_lines
    from rollwise.config_checks import ConfigWarning
    from rollwise.train.trainer import Trainer

    with pytest.warns(ConfigWarning, match="'prefix_rl' acts on prompts it has seen before") as got:
        Trainer(smoke_cfg("--sampler.type=prefix_rl", "--trainer.steps=1")).close()
    capsys.readouterr()  # the warm start's own output
    others = []
    show = config_warnings_as_lines(lambda *a, **k: others.append(a))
    show(got[0].message, ConfigWarning, "trainer.py", 1)
    show("unrelated", DeprecationWarning, "x.py", 2)
    err = capsys.readouterr().err
    assert err.startswith("warning: sampler.transform: 'prefix_rl' acts on prompts") and err.count("\n") == 1
    assert others == [("unrelated", DeprecationWarning, "x.py", 2)]

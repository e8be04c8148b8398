"""The component shorthand ``--slot=name --slot.knob=value`` works for every slot of ``COMPONENT_KEYS`` (a list
slot such as ``algo.shaping`` takes one entry this way), tested over all slots, a new slot included."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rollwise.components import typed_model
from rollwise.config import COMPONENT_KEYS, ConfigError, load_config

SMOKE = Path(__file__).resolve().parents[1] / "configs" / "smoke.toml"
#: settings a slot's components need to load at all (fapo's default judge reads worked answers)
CONTEXT = {"sampler.baseline": ["--algo.advantage=pool_baseline"], "task.reward_shaping": ["--task.scratchpad=carries"]}


def _other_value(default: Any) -> list[Any]:
    """Values unlike a knob's default that it may accept."""
    if isinstance(default, bool):
        return [not default]
    if isinstance(default, int):
        return [default + 1, default - 1]
    if isinstance(default, float):
        return [default / 2, default + 0.5, default - 0.5] if default else [0.5, 0.25]
    return []


def _tuned(slot: str, name: str) -> Any:
    """``(knob, value, the loaded component)`` for the first knob of ``name`` that the shorthand can set."""
    for knob, field in typed_model(COMPONENT_KEYS[slot], name).model_fields.items():
        for value in [] if knob == "type" else _other_value(field.default):
            try:
                cfg = load_config(SMOKE, [f"--{slot}={name}", f"--{slot}.{knob}={value}", *CONTEXT.get(slot, [])])
            except ConfigError:
                continue
            got: Any = cfg
            for part in slot.split("."):
                got = getattr(got, part)
            return knob, value, got[0] if isinstance(got, list) else got
    return None


@pytest.mark.parametrize("slot", list(COMPONENT_KEYS))
def test_every_slot_takes_a_name_then_its_knobs(slot):
    reg = COMPONENT_KEYS[slot]
    tuned = [(name, t) for name in reg.names() if (t := _tuned(slot, name)) is not None]
    knobbed = [n for n in reg.names() if len(typed_model(reg, n).model_fields) > 1]
    assert len(tuned) >= min(1, len(knobbed)), f"{slot}: no component's knob could be set by the shorthand"
    for name, (knob, value, got) in tuned:
        assert got.type == name and getattr(got, knob) == value
    for name in reg.names():  # a knob the component lacks is an unknown key, never "not a table"
        with pytest.raises(ConfigError) as err:
            load_config(SMOKE, [f"--{slot}={name}", f"--{slot}.no_such_knob=1"])
        assert "is not a table" not in str(err.value) and "no_such_knob: unknown key" in str(err.value)


def test_the_issue_cases():
    cfg = load_config(SMOKE, ["--generation.strategy=april", "--generation.strategy.over_sample=3",
                              "--algo.correction=tis", "--algo.correction.cap=3", "--algo.shaping=ace",
                              "--algo.shaping.alpha=2"])
    assert (cfg.generation.strategy.type, cfg.generation.strategy.over_sample) == ("april", 3)
    assert (cfg.algo.correction.type, cfg.algo.correction.cap) == ("tis", 3)
    assert [(s.type, s.alpha) for s in cfg.algo.shaping] == [("ace", 2)]


def test_a_knob_of_a_list_slot_with_several_entries_says_how_to_write_it():
    with pytest.raises(ConfigError, match="holds 2 entries"):
        load_config(SMOKE, ['--algo.shaping=["ace", "mssr_entropy"]', "--algo.shaping.alpha=2"])


def test_a_knob_of_the_gates_tunes_the_presets_gate():
    cfg = load_config(SMOKE, ["--sampler.type=dapo", "--sampler.gates.max_refills=2"])
    assert [(g.type, g.max_refills) for g in cfg.sampler.gates] == [("dynamic", 2)]
    with pytest.raises(ConfigError, match="preset 'uniform' has 0"):
        load_config(SMOKE, ["--sampler.gates.max_refills=2"])


def test_a_knob_of_a_presets_list_slot_tunes_its_one_entry():
    cfg = load_config(SMOKE, ["--sampler.type=mssr", "--algo.shaping.kappa1=0.3"])
    assert [(s.type, s.kappa1) for s in cfg.algo.shaping] == [("mssr_entropy", 0.3)]

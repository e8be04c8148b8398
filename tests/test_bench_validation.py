"""`rollwise bench` checks the whole grid before anything trains: unknown keys (top level, ``[quick]``, inside an
arm), duplicate or path-like arm names, the reference arm, empty arms, bad TOML, and every arm's overrides
through the config loader, one line per problem. No model is built in these tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from rollwise import bench
from rollwise.bench import GridError, check_grid, load_grid, run_grid
from rollwise.cli import app

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "configs" / "smoke.toml"


def write(tmp_path: Path, body: str, head: str = "") -> Path:
    f = tmp_path / "g.toml"
    f.write_text(f'{head}\nbase = "{SMOKE}"\nseeds = [0]\nout = "{tmp_path / "out"}"\n{body}')
    return f


ARMS = '[[arms]]\nname = "uniform"\n[[arms]]\nname = "dapo"\noverrides = ["--sampler.type=dapo"]\n'


@pytest.mark.parametrize(("body", "expected"), [
    ('[[arms]]\nname = "uniform"\n[[arms]]\nname = "dapo"\noverides = ["--sampler.type=dapo"]\n',
     "arms[1].overides: unknown key"),
    ('[[arms]]\nname = "uniform"\n[[arms]]\nname = "uniform"\noverrides = ["--sampler.type=dapo"]\n',
     "duplicate name(s) ['uniform']"),
    ('[[arms]]\nname = "uniform"\n[[arms]]\nname = "../../x"\n', "arms[1].name: '../../x' must be a plain folder"),
    ('[[arms]]\nname = "_prepare"\n', "arms[0].name: '_prepare' must be a plain folder"),
    ('reference = "unifrom"\n' + ARMS, "reference: 'unifrom' is not an arm; did you mean 'uniform'?"),
    ("arms = []\n", "arms: List should have at least 1 item"),
    ("", "arms: missing"),
    ('sedes = [1]\n' + ARMS, "sedes: unknown key"),
    ('[quick]\narms = ["uniform", "dpo"]\nsteps = 3\n' + ARMS, "quick.steps: unknown key"),
    ('[quick]\narms = ["uniform", "dpo"]\n' + ARMS, "quick.arms: unknown arm(s) ['dpo']; did you mean 'dapo'?"),
    ('[quick]\narms = ["dapo"]\n' + ARMS, "quick.arms: leaves out the reference arm 'uniform'"),
    ("reach = 0\n" + ARMS, "reach: Input should be greater than 0"),
    ('[[arms]]\nname = "uniform"\noverrides = "--sampler.type=dapo"\n',
     "arms[0].overrides: Input should be a valid list"),
    ('[[arms\nname = "uniform"\n', "invalid TOML"),
])
def test_bad_grid_is_one_line_per_problem(tmp_path, body, expected):
    with pytest.raises(GridError) as info:
        load_grid(write(tmp_path, body))
    msg = str(info.value)
    assert expected in msg, msg
    assert "Traceback" not in msg and len(msg.splitlines()) <= 2


def test_duplicate_seeds_are_refused(tmp_path):
    f = tmp_path / "g.toml"
    f.write_text(f'base = "{SMOKE}"\nseeds = [1, 1]\n' + ARMS)
    with pytest.raises(GridError, match=r"seeds: duplicate seed\(s\) \[1\]"):
        load_grid(f)


def test_every_arm_is_checked_before_the_first_trains(tmp_path, monkeypatch):
    """A bad override in the second arm (and a bad CLI extra) is found before the first arm trains."""
    trained: list[Path] = []
    monkeypatch.setattr(bench, "_train", lambda cfg, run_dir: trained.append(run_dir))
    grid = load_grid(write(tmp_path, '[[arms]]\nname = "uniform"\n[[arms]]\nname = "dapo"\n'
                                     'overrides = ["--sampler.type=dpo"]\n[[arms]]\nname = "vade"\n'
                                     'overrides = ["--algo.clip_hgh=0.3"]\n'))
    with pytest.raises(GridError) as info:
        run_grid(grid, log=lambda m: None)
    msg = str(info.value)
    assert "2 run(s) do not load" in msg and "arm 'dapo': sampler.type" in msg and "'dapo'" in msg
    assert "arm 'vade': algo.clip_hgh: unknown key" in msg and "arm 'uniform'" not in msg
    assert trained == [] and not (tmp_path / "out").exists()
    ok = load_grid(write(tmp_path, ARMS))
    with pytest.raises(GridError, match="arm 'uniform': trainer.stps: unknown key"):
        run_grid(ok, ["--trainer.stps=3"], log=lambda m: None)
    cfgs = check_grid(ok)
    assert sorted(cfgs) == [("dapo", 0), ("uniform", 0)] and cfgs["dapo", 0].sampler.type == "dapo"
    run_grid(ok, log=lambda m: None)
    assert trained == [tmp_path / "out" / "uniform" / "seed0", tmp_path / "out" / "dapo" / "seed0"]


def test_prepare_and_base_are_checked(tmp_path):
    with pytest.raises(GridError, match="prepare: trainer.stps: unknown key"):
        check_grid(load_grid(write(tmp_path, 'prepare = ["--trainer.stps=1"]\n' + ARMS)))
    f = tmp_path / "g2.toml"
    f.write_text(f'base = "{tmp_path / "nope.toml"}"\n' + ARMS)
    with pytest.raises(GridError, match="base config not found"):
        check_grid(load_grid(f))


def test_cli_bench_bad_grid_is_one_line_and_trains_nothing(tmp_path):
    f = write(tmp_path, '[[arms]]\nname = "uniform"\n[[arms]]\nname = "dapo"\noverides = ["--sampler.type=dapo"]\n')
    res = CliRunner().invoke(app, ["bench", str(f)])
    assert res.exit_code == 2, res.output
    assert "arms[1].overides: unknown key" in res.output and "Traceback" not in res.output
    f = write(tmp_path, '[[arms]]\nname = "uniform"\n[[arms]]\nname = "dapo"\noverrides = ["--sampler.type=dpo"]\n')
    res = CliRunner().invoke(app, ["bench", str(f)])
    assert res.exit_code == 2 and "arm 'dapo': sampler.type" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "out").exists()

"""bench/strategy_throughput.py orders its calls round by round across arms by default (a load that shifts during
the run then falls on every arm alike) and arm after arm with --no-interleave."""

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "strategy_throughput.py"


def _module():
    spec = importlib.util.spec_from_file_location("strategy_throughput", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_calls_interleave_across_arms_by_default_else_run_in_blocks():
    schedule = _module().schedule
    assert schedule(["plain", "april", "latr"], 2, interleave=True) == [
        ("plain", 0), ("april", 0), ("latr", 0), ("plain", 1), ("april", 1), ("latr", 1)]
    assert schedule(["plain", "april"], 3, interleave=False) == [
        ("plain", 0), ("plain", 1), ("plain", 2), ("april", 0), ("april", 1), ("april", 2)]
    # each arm still sees its own steps in order (APRIL resumes its buffer at the next step)
    order = schedule(["a", "b", "c"], 4, interleave=True)
    for arm in "abc":
        assert [s for a, s in order if a == arm] == [0, 1, 2, 3]

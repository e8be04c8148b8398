"""Eval sets of a dataset task are named by their group's value: levels ``add``/``sub``/``mul`` report as
``eval/add/pass@1`` (not ``eval/leveladd/...``); numeric levels keep the field's name (``eval/level3/...``)."""

from __future__ import annotations

import json

from rollwise.data.sources import group_label, group_prompts
from rollwise.data.task import build_dataset_task, build_eval_sets
from rollwise.generation.base import SamplingParams
from rollwise.generation.scripted import ScriptedEngine
from rollwise.rewards import VerifierPool
from rollwise.train.evaluate import evaluate
from rollwise.types import Prompt


def _prompts(levels: list[object]) -> list[Prompt]:
    return [Prompt(f"p{i}", f"q{i}", "1", {} if lv is None else {"level": lv}) for i, lv in enumerate(levels)]


def test_named_levels_are_their_own_labels():
    groups = group_prompts(_prompts(["add", "sub", "mul", "add"]), "level")
    assert list(groups) == ["add", "mul", "sub"]
    assert [p.uid for p in groups["add"]] == ["p0", "p3"]


def test_numeric_levels_keep_the_field_name():
    assert list(group_prompts(_prompts([1, "2", 2]), "level")) == ["level1", "level2"]
    assert group_label("level", "Level 3") == "level3"  # MATH's spelling of a level
    assert group_label("level", 2.5) == "level2.5"


def test_labels_never_take_a_reserved_name_and_missing_fields_go_to_all():
    assert group_label("level", "all") == "levelall" and group_label("level", "mean") == "levelmean"
    assert group_label("subject", "Algebra") == "Algebra"
    assert list(group_prompts(_prompts([None, None]), "level")) == ["all"]


def test_dataset_task_reports_eval_add_pass_at_1(tmp_path):
    from rollwise.config import load_config

    rows = [("1+2=", "3", "add"), ("5-1=", "4", "sub"), ("2*3=", "6", "mul"), ("4+4=", "8", "add")]
    path = tmp_path / "ops.jsonl"
    path.write_text("".join(json.dumps({"prompt": p, "answer": a, "level": lv}) + "\n" for p, a, lv in rows))
    cfg = load_config(None, ["--task.suite=dataset", f"--task.dataset={path}", f"--task.eval_dataset={path}"])
    task = build_dataset_task(cfg)
    assert sorted(task.eval_sets) == ["add", "mul", "sub"]
    engine = ScriptedEngine(lambda ids, j, call: ([1], [0.0], "stop"))
    out = evaluate(engine, VerifierPool("exact"), task.eval_sets, lambda text: [ord(c) for c in text],
                   SamplingParams(temperature=0.0))
    assert {k for k in out if k.endswith("/pass@1")} == {
        "eval/add/pass@1", "eval/sub/pass@1", "eval/mul/pass@1", "eval/mean/pass@1"}


def test_eval_sets_of_a_file_are_all_plus_one_per_level_and_a_suite_is_its_heldout_split(tmp_path):
    from rollwise.config import load_config

    rows = [("1+2=", "3", 1), ("5-1=", "4", 2), ("2*3=", "6", 2)]
    path = tmp_path / "lv.jsonl"
    path.write_text("".join(json.dumps({"prompt": p, "answer": a, "level": lv}) + "\n" for p, a, lv in rows)
                    + "{bad\n")
    cfg = load_config(None, ["--task.on_error=skip", "--task.eval_size=3"])
    sets, verifier, skipped = build_eval_sets(cfg, str(path))
    assert {k: [p.text for p in v] for k, v in sets.items()} == {
        "all": ["1+2=", "5-1=", "2*3="], "level1": ["1+2="], "level2": ["5-1=", "2*3="]}
    assert verifier == "math" and skipped == {"data/skipped_malformed": 1, "data/skipped_too_long": 0,
                                              "data/skipped_decode": 0}
    sets, verifier, skipped = build_eval_sets(cfg, "arith")
    assert sorted(sets) == sorted(cfg.task.levels) and verifier == cfg.task.verifier_name() and skipped == {}

"""APRIL in async mode (issue 17): a rollout worker has no task, so a buffered group that finishes in a later
round whose job does not name its prompt must still be verified against its own reference. The worker keeps the
problems of the prompts its strategy holds, and checkpoints them with the buffer. No Ray: the worker class is
driven directly, as its actor would be."""

from __future__ import annotations

from pathlib import Path

from rollwise.config import load_config
from rollwise.generation.base import SamplingParams
from rollwise.train.rollout import RoundJob
from rollwise.train.rollout_worker import RolloutWorker

SMOKE = Path(__file__).parents[2] / "configs" / "smoke.toml"


def _job(worker: RolloutWorker, keys: list[int], version: int, seed: int) -> RoundJob:
    problems = {k: (f"{k}+0=", str(k)) for k in keys}  # the answer to prompt k is k
    ids = [worker.tok.encode(problems[k][0]) for k in keys]
    stops = tuple(worker.tok.encode("0123456789abcdefghij"))  # the untrained model rarely ends by itself
    return RoundJob(keys, ids, [4] * len(keys), [""] * len(keys), problems,
                    SamplingParams(1.0, 1.0, 40, stops, seed), version)


def _worker() -> RolloutWorker:
    cfg = load_config(SMOKE, ['--generation.strategy={type="april",over_sample=2.0}',
                              "--generation.max_new_tokens=40"])
    w = RolloutWorker(cfg.model_dump(by_alias=True), 0)
    w.set_weights({k: v.clone() for k, v in w.model.state_dict().items()}, 0)
    return w


def test_a_resumed_group_the_job_does_not_name_is_verified_against_its_own_problem():
    w = _worker()
    first = w.run(_job(w, [0, 1, 2, 3, 4, 5], 0, seed=1))
    held = w.strategy.pending_keys()
    assert held and held <= {0, 1, 2, 3, 4, 5}  # stopped at 3 finished groups of 6: the rest wait
    assert {p for p, *_ in first.items}.isdisjoint(held)
    assert set(w._problems) == held  # only the held prompts' problems are kept

    state = w.strategy_state()  # a checkpoint here, restored into a fresh worker, resumes the same groups
    fresh = _worker()
    fresh.load_strategy_state(state)
    w.set_weights({k: v.clone() for k, v in w.model.state_dict().items()}, 1)
    fresh.set_weights({k: v.clone() for k, v in fresh.model.state_dict().items()}, 1)
    for worker in (w, fresh):
        got = worker.run(_job(worker, [10, 11, 12, 13, 14, 15], 1, seed=2))  # names none of the held prompts
        back = {p for p, *_ in got.items} & held
        assert back  # resumed groups came back (FIFO first) ...
        for p, _, _, res in got.items:  # ... each verified against its own reference (the answer to k is k)
            assert res.score == float(res.parsed and res.info["extracted"] == str(p))


def test_a_checkpoint_from_before_the_problems_were_kept_still_loads():
    w = _worker()
    w.load_strategy_state({"buffer": []})
    assert w.strategy.pending_keys() == set() and w._problems == {}

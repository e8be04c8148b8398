"""Environment workers (``envs/worker.py``) and the pipelined runner (``envs/runner.py``), without Ray: answers
that come at once reproduce the turn-by-turn ``AgentLoop`` exactly (episodes, batches, seeds); a worker answers
faults as data; a worker killed under its episodes (the in-process Ray stand-in ``fake_ray``) is restarted, each
of its episodes in flight is played again from its start and returned once, its lost tokens counted."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from env_helpers import Password, binary_search_engine, password_pool

from rollwise.envs.base import EnvKnobs
from rollwise.envs.guess import GuessNumber
from rollwise.envs.loop import AgentLoop, PlainFormat
from rollwise.envs.runner import EpisodeRunner
from rollwise.envs.worker import LOST, EnvPool, EnvWorker
from rollwise.generation import SamplingParams

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
import fake_ray  # noqa: E402  (tests/train's in-process Ray stand-in)

PARAMS = SamplingParams(max_new_tokens=8, seed=5)
LIMITS = EnvKnobs(max_turns=5, max_tokens=64)


def fmt(tokenizer):
    return PlainFormat(lambda s: tokenizer.encode(s, add_special_tokens=False), (tokenizer.eos_token_id,))


def guess_tasks(n=15):
    env = GuessNumber(n=n)
    return env.tasks("eval", 0, 0)


def played(episodes):
    return [(e.task_index, e.finish, e.fault, e.success, e.tokens, [(t.context_ids, t.action_ids, t.reward)
                                                                    for t in e.turns]) for e in episodes]


def test_answers_at_once_are_the_agent_loop_exactly(tokenizer):
    """One call, an in-process worker: same episodes, same generate batches with the same seeds and rooms."""
    tasks = guess_tasks() + password_pool(["ok", "bad:nan:1", "bad:reset_error:0"])
    index = list(range(len(tasks)))

    def make():
        return GuessNumber(n=15)

    class Mixed:  # guess tasks and Password ones (faults) in one batch
        def __init__(self):
            self.env = None

        def reset(self, task):
            self.env = make() if task.uid.startswith("guess") else Password()
            return self.env.reset(task)

        def step(self, action):
            return self.env.step(action)

    a_engine, b_engine = binary_search_engine(tokenizer, 15), binary_search_engine(tokenizer, 15)
    params = SamplingParams(max_new_tokens=8, seed=5, stop_token_ids=(tokenizer.eos_token_id,))
    a = AgentLoop(a_engine, Mixed, fmt(tokenizer), LIMITS).run(tasks, index, params, version=2)
    pool = EnvPool(Mixed, LIMITS.timeout_s, LIMITS.reward_range, workers=0)
    b = EpisodeRunner(b_engine, pool, fmt(tokenizer), LIMITS).run(tasks, index, params, version=2)
    assert played(a) == played(b)
    assert [(c.prompts, c.params) for c in a_engine.history] == [(c.prompts, c.params) for c in b_engine.history]
    assert sum(e.success for e in b) == 15 and [e.fault for e in b[-2:]] == ["nan", "error"]


def test_a_worker_answers_faults_as_data():
    w = EnvWorker(Password, 5.0, (0.0, 1.0))
    (ok,) = password_pool(["ok"])
    assert w.reset("a", ok) == ("ok", [{"role": "user", "content": "say w0:"}])
    assert w.step("a", "no") == ("ok", [{"role": "user", "content": "no\n"}], 0.0, False, {})
    assert w.step("a", "ok") == ("ok", [], 1.0, True, {"success": True}) and w.live() == 0
    bad = password_pool(["bad:nan:1"])[0]
    assert w.reset("b", bad)[0] == "ok" and w.step("b", "x") == ("fault", "nan", "reward is NaN")
    assert w.reset("c", password_pool(["bad:reset_error:0"])[0]) == ("fault", "error", "RuntimeError: reset failed")
    assert w.step("gone", "x") == LOST and w.live() == 0  # a restarted worker: the episode's state is gone


@pytest.mark.parametrize("kill_call", [3, 20])  # a reset, a step
def test_a_killed_worker_replays_its_episodes_once(tokenizer, monkeypatch, kill_call):
    """Two workers, six episodes (three each); a worker dies under call ``kill_call``: every call it had not
    answered comes back lost, its episodes are played again from the start on the restarted process, and each of
    the six comes back once, as a run without the death plays it (binary search is deterministic)."""
    ray = fake_ray.install(monkeypatch)
    tasks, index = guess_tasks()[:6], list(range(6))

    def run(kill):
        ray.kill_on_call, ray.calls, ray.actors = kill, 0, []
        pool = EnvPool(lambda: GuessNumber(n=15), 5.0, (0.0, 1.0), workers=2)
        runner = EpisodeRunner(binary_search_engine(tokenizer, 15), pool, fmt(tokenizer), LIMITS)
        stats = {}
        return runner.run(tasks, index, PARAMS, stats=stats), runner.stats(), stats, ray.actors

    clean, clean_stats, _, _ = run(set())
    got, st, job, actors = run({kill_call})
    assert played(got) == played(clean) and all(e.success for e in got)
    assert sorted(a.incarnation for a in actors) == [0, 1] and st["worker_restarts"] == 1  # one death
    assert clean_stats["worker_restarts"] == 0 and clean_stats["replayed_episodes"] == 0
    assert st["replayed_episodes"] == job["replayed"] >= 1
    assert job["replayed_tokens"] == st["replayed_tokens"]
    if kill_call == 3:  # worker 1's three episodes: one had its first action out when the reset died under it
        assert job["replayed"] == 3 and job["replayed_tokens"] == 2


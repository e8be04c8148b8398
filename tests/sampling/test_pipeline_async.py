"""Async mode's pipeline contract: several steps in flight at once, each with its own state, and prompts that
other steps are rolling out are not picked again (unless the selector says it may)."""

import numpy as np

from rollwise.sampling import Budget, GroupObs


def _pools(req, reward=lambda p, j: float((p + j) % 2)):
    return {int(p): GroupObs(int(p), np.array([reward(p, j) for j in range(c)]), np.full(c, 5, dtype=np.int64))
            for p, c in zip(req.prompts, req.counts)}


def test_in_flight_prompts_are_not_picked_and_steps_keep_their_own_state(harness):
    pipe = harness.make_pipe("uniform", pool=40, batch=8, group_size=4)
    r0 = pipe.begin_step(0, Budget(32))
    r1 = pipe.begin_step(1, Budget(32), in_flight=r0.prompts)
    assert len(r1) == 8 and not set(r1.prompts) & set(r0.prompts)
    p0, p1 = _pools(r0), _pools(r1)
    assert pipe.next_request(p1, step=1) is None and pipe.next_request(p0, step=0) is None
    plan0 = pipe.finalize(p0, step=0)  # step 0 is trained first, while step 1's state waits
    assert {g.prompt for g in plan0.groups} <= set(r0.prompts.tolist()) and plan0.groups
    assert all(g.step == 0 for g in plan0.groups)
    r2 = pipe.begin_step(2, Budget(32), in_flight=np.concatenate([r1.prompts]))
    assert not set(r2.prompts) & set(r1.prompts)
    pipe.observe(p0, plan0.groups, step=0)
    plan1 = pipe.finalize(p1, step=1)
    assert all(g.step == 1 for g in plan1.groups) and {g.prompt for g in plan1.groups} <= set(r1.prompts.tolist())
    pipe.observe(p1, plan1.groups, step=1)
    assert sorted(pipe._steps) == [2]
    assert pipe.stats.last_step[r1.prompts].tolist() == [1] * 8  # observed as step 1, not as the latest step


def test_a_selector_that_repeats_in_flight_prompts_may(harness):
    pipe = harness.make_pipe("uniform", pool=8, batch=8, group_size=4)
    pipe.selector.repeat_in_flight = True
    r0 = pipe.begin_step(0, Budget(32))
    r1 = pipe.begin_step(1, Budget(32), in_flight=r0.prompts)
    assert len(r1) == 8  # the whole pool again: nothing else to pick
    pipe2 = harness.make_pipe("uniform", pool=8, batch=8, group_size=4)
    q0 = pipe2.begin_step(0, Budget(32))
    assert len(pipe2.begin_step(1, Budget(32), in_flight=q0.prompts)) == 0  # all 8 are in flight


def test_uniform_passes_over_no_prompt_while_steps_are_in_flight(harness):
    """With two steps in flight, five steps of 8 from a 40-prompt pool take every prompt once: the uniform
    selector skips in-flight prompts in its own walk (it used to be asked for k + in-flight and keep k, so its
    permutation advanced past prompts no step trained)."""
    pipe = harness.make_pipe("uniform", pool=40, batch=8, group_size=4)
    flight: list[np.ndarray] = []
    for step in range(5):
        busy = np.concatenate(flight[-2:]) if flight else None
        flight.append(pipe.begin_step(step, Budget(32), in_flight=busy).prompts)
    assert sorted(np.concatenate(flight).tolist()) == list(range(40))
    assert pipe.selector.epoch == 0

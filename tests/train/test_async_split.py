"""Splitting a round over rollout workers (no Ray needed): whole prompts, balanced rollout counts, distinct
seeds, nothing lost or repeated."""

from rollwise.generation.base import SamplingParams
from rollwise.train.async_rollouts import split_job
from rollwise.train.rollout import RoundJob


def _job(counts):
    ps = list(range(10, 10 + len(counts)))
    return RoundJob(ps, [[p] for p in ps], list(counts), [""] * len(ps), {p: (f"q{p}", str(p)) for p in ps},
                    SamplingParams(seed=100), version=3)


def test_split_keeps_whole_prompts_balances_counts_and_gives_each_part_its_seed():
    job = _job([4, 4, 4, 4, 8, 8])
    parts = split_job(job, 2)
    assert [p.prompts for p in parts] == [[10, 11, 12, 13], [14, 15]]  # 16 and 16 rollouts
    assert [sum(p.counts) for p in parts] == [16, 16]
    assert [p.params.seed for p in parts] == [100, 131] and all(p.version == 3 for p in parts)
    assert all(set(p.problems) == set(p.prompts) for p in parts)
    assert split_job(job, 1) == [job] and split_job(_job([8]), 4)[0].prompts == [10]
    parts = split_job(_job([1] * 5), 3)
    assert sorted(x for p in parts for x in p.prompts) == list(range(10, 15)) and len(parts) == 3

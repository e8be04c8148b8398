"""The engines' work counters (prefill tokens, decode steps, decode row-steps: ``WORK_KEYS``) on hand-computed
calls, and their path through ``CountingEngine`` to a round's result.

The tiny random model decodes greedily the same token over and over ("12+34=" -> 83, "ab" -> 14, never eos), so
greedy completions of ``M`` tokens have known lengths; a row's first token comes from its prefill, so a chunk
whose longest row has ``n`` new tokens runs ``n - 1`` decode forwards."""

from __future__ import annotations

import pytest

from rollwise.generation import Prefix, SamplingParams
from rollwise.generation.base import Completion, GenerateStats, estimate_work
from rollwise.generation.hf import HFEngine
from rollwise.generation.scripted import ScriptedEngine
from rollwise.generation.strategy import CountingEngine

GREEDY = SamplingParams(temperature=0, max_new_tokens=5)


def work(stats: GenerateStats) -> tuple[int, int, int]:
    return stats.prefill_tokens, stats.decode_steps, stats.decode_row_steps


@pytest.fixture(scope="module")
def ab(tok):
    a, b = tok.encode("12+34="), tok.encode("ab")  # 6 and 2 tokens
    assert (len(a), len(b)) == (6, 2)
    return a, b


@pytest.mark.parametrize(("batch_size", "share", "expected"), [
    # one chunk of 6 rows: prefills 6 + 2 (a group shares one), 4 decode steps of 6 rows
    (8, True, (8, 4, 24)),
    (8, False, (3 * 6 + 3 * 2, 4, 24)),  # every row prefilled on its own
    # rows sorted by prompt length: chunks [b b b] and [a a a]: 2 + 6 prefilled, 4 steps each of 3 rows
    (3, True, (8, 8, 24)),
    # chunks [b b b a] and [a a]: "12+34=" is prefilled once in each chunk; 4 steps of 4 rows, 4 steps of 2
    (4, True, (2 + 6 + 6, 8, 16 + 8)),
])
def test_hf_counts_greedy_call(model, tok, ab, batch_size, share, expected):
    engine = HFEngine(model, tok, batch_size=batch_size, share_prefill=share)
    out = engine.generate(list(ab), [3, 3], GREEDY)
    assert [len(c.token_ids) for cs in out for c in cs] == [5] * 6  # the lengths the hand counts assume
    assert work(engine.last_stats) == expected


@pytest.mark.parametrize(("compact", "row_steps"), [
    # "12+34=" rows stop at their first token (prefill logits): at step 0, 3 of 6 rows are done; compacted
    # (3 * 4 >= 6) the 4 decode forwards carry the 3 "ab" rows; without compaction all 6 (done ones fed pad)
    (True, 4 * 3),
    (False, 4 * 6),
])
def test_hf_counts_rows_in_each_forward(model, tok, ab, compact, row_steps):
    engine = HFEngine(model, tok, batch_size=8, compact=compact)
    params = SamplingParams(temperature=0, max_new_tokens=5, stop_token_ids=(83,))
    out = engine.generate(list(ab), [3, 3], params)
    assert [len(c.token_ids) for cs in out for c in cs] == [1, 1, 1, 5, 5, 5]
    assert work(engine.last_stats) == (8, 4, row_steps)


def test_hf_prefix_is_prefilled_and_kv_hits_are_not(model, tok, ab):
    a, _ = ab
    # a forced prefix of 2 tokens is prefilled with the prompt: 6 + 2; 3 new tokens take 2 decode steps
    engine = HFEngine(model, tok, batch_size=8)
    engine.generate([a], [1], GREEDY, prefixes=[Prefix([83, 83], [-0.1, -0.1])])
    assert work(engine.last_stats) == (8, 2, 2)
    # with the cross-call KV store, a continuation of a kept row prefills only what the store lacks
    engine = HFEngine(model, tok, batch_size=8, kv_cache_mb=8)
    first = engine.generate([a], [1], GREEDY)[0][0]  # keeps "12+34=" + the 4 tokens it fed (the 5th never was)
    assert work(engine.last_stats) == (6, 4, 4)
    engine.generate([a], [1], SamplingParams(temperature=0, max_new_tokens=8),
                    prefixes=[Prefix(first.token_ids, first.logprobs)])
    assert work(engine.last_stats) == (1, 2, 2)  # 11 tokens of prompt + prefix, 10 held; 3 new tokens


def test_hf_rows_not_decoded_cost_nothing(model, tok, ab):
    a, _ = ab
    engine = HFEngine(model, tok, batch_size=8)
    engine.generate([a], [2], GREEDY, prefixes=[Prefix([83] * 5, [-0.1] * 5)])  # the prefix reached the cap
    assert work(engine.last_stats) == (0, 0, 0)


def comp(n: int, prefix: int = 0) -> Completion:
    return Completion(list(range(n)), [0.0] * n, "length", prefix_len=prefix)


def test_estimate_work_by_hand():
    prompts = [[1, 2, 3], [4, 5]]
    out = [[comp(4), comp(2)], [comp(6, prefix=3), comp(3, prefix=3)]]  # the last row decoded nothing
    prefixes = [None, Prefix([7, 8, 9], [0.0] * 3)]
    # prefills "1 2 3" and "4 5 7 8 9" once each; rows of 4, 2, 3 new tokens are in the batch 3 + 1 + 2 steps
    assert estimate_work(prompts, prefixes, out, slots=8) == {
        "prefill_tokens": 3 + 5, "decode_steps": 3, "decode_row_steps": 6}
    # one slot: the rows run one after another, 6 steps
    assert estimate_work(prompts, prefixes, out, slots=1)["decode_steps"] == 6
    assert estimate_work(prompts, None, [[], []], slots=4) == {
        "prefill_tokens": 0, "decode_steps": 0, "decode_row_steps": 0}


def test_scripted_engine_estimates_its_work():
    engine = ScriptedEngine(lambda ids, j, call: ([1] * (j + 2), [0.0] * (j + 2), "stop"))
    engine.generate([[5, 6], [9]], [2, 1], SamplingParams(max_new_tokens=8))  # rows of 2, 3 and 2 tokens
    assert work(engine.last_stats) == (3, 2, 1 + 2 + 1)


def test_counting_engine_adds_calls_and_charged_work(model, tok, ab):
    counted = CountingEngine(HFEngine(model, tok, batch_size=8))
    counted.generate(list(ab), [3, 3], GREEDY)
    counted.generate(list(ab), [3, 3], GREEDY)
    counted.charge(7, GenerateStats(prefill_tokens=10, decode_steps=3, decode_row_steps=9))
    counted.charge(1)  # tokens alone: no work to add
    assert counted.decoded == 2 * 30 + 7 + 1
    assert counted.work == {"prefill_tokens": 2 * 8 + 10, "decode_steps": 2 * 4 + 3, "decode_row_steps": 2 * 24 + 9}

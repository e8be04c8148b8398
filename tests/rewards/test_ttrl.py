"""TTRL's majority-vote pseudo-labels (arXiv:2504.16084): hand-computed votes, ties, empty votes, faults, the
label-accuracy metrics, and the vote/train split."""

from __future__ import annotations

import numpy as np
import pytest

from rollwise.rewards.core import VerifyResult
from rollwise.rewards.synthetic import verify_int
from rollwise.rewards.ttrl import PseudoLabelShaper, compute_majority_label, pseudo_label_metrics, vote_key
from rollwise.sampling import GroupObs
from rollwise.sampling.subsets import VoteSplit, compute_contrastive_keep


def test_majority_counts_and_ties_go_to_the_first_seen():
    assert compute_majority_label(["3", "5", "5", "3", "7", "5"]) == ("5", 3)
    assert compute_majority_label(["4", "9", "9", "4"]) == ("4", 2)  # tie: "4" was seen first
    assert compute_majority_label(["9", "4", "4", "9"]) == ("9", 2)
    assert compute_majority_label([None, "2", None]) == ("2", 1)  # None does not vote
    assert compute_majority_label([None, None]) == (None, 0)
    assert compute_majority_label(["", "", "3"]) == ("", 2)  # the empty answer is a vote and can win


def test_vote_keys_are_parsed_values_and_faults_never_vote():
    assert vote_key(verify_int("007 tail", "0")) == "7"  # the verifier's parsed integer, not the string
    assert vote_key(verify_int("abc", "0")) == ""
    assert vote_key(verify_int("abc", "0"), "abstain") is None
    assert vote_key(VerifyResult(0.0, False, {"fault": "timeout"})) is None


def _shape(completions, refs, empty_vote="vote", prompts=None):
    prompts = prompts or ["q"] * len(completions)
    results = [verify_int(c, r) for c, r in zip(completions, refs)]
    return PseudoLabelShaper(empty_vote).shape(prompts, completions, refs, results)


def test_rewards_follow_the_majority_not_the_reference():
    # truth is 12; the group's majority says 13 (3 votes of 6): the 13s are rewarded, the right 12 is not
    out = _shape(["13", "12", "13", "x", "013", "11"], ["12"] * 6)
    assert [r.score for r in out] == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]
    assert all(r.info["pseudo_label"] == "13" and r.info["label_correct"] is False for r in out)
    assert [r.info["true_score"] for r in out] == [0.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    assert out[0].info["majority_ratio"] == pytest.approx(3 / 6)


def test_empty_vote_policies():
    comps, refs = ["x", "y", "5", "z", "6"], ["5"] * 5
    voted = _shape(comps, refs, "vote")  # "" has 3 votes: it wins and the unparsed rollouts are rewarded
    assert [r.score for r in voted] == [1.0, 1.0, 0.0, 1.0, 0.0]
    assert voted[0].info["pseudo_label"] == "" and voted[0].info["label_correct"] is False
    abstained = _shape(comps, refs, "abstain")  # 5 and 6 tie at one vote: 5 (first seen) wins, and is right
    assert [r.score for r in abstained] == [0.0, 0.0, 1.0, 0.0, 0.0]
    assert abstained[2].info["label_correct"] is True and abstained[2].info["majority_ratio"] == 0.5
    nobody = _shape(["x", "y"], ["5", "5"], "abstain")  # nobody voted: no label, every reward low
    assert [r.score for r in nobody] == [0.0, 0.0] and nobody[0].info["pseudo_label"] is None


def test_groups_are_voted_separately_and_metrics_are_hand_computed():
    comps = ["4", "4", "5", "x", "x", "7"]
    prompts = ["a", "a", "a", "b", "b", "b"]
    refs = ["4", "4", "4", "7", "7", "7"]
    out = _shape(comps, refs, prompts=prompts)
    assert [r.score for r in out] == [1.0, 1.0, 0.0, 1.0, 1.0, 0.0]  # a: label 4 (right); b: label "" wins
    m = pseudo_label_metrics([[r.info for r in out[:3]], [r.info for r in out[3:]]])
    assert m["label/pseudo_accuracy"] == 0.5 and m["label/empty_win_rate"] == 0.5 and m["label/no_label"] == 0
    assert m["label/majority_ratio"] == pytest.approx(2 / 3)
    assert m["label/empty_vote_rate"] == pytest.approx(2 / 6)
    # pseudo reward == true reward: a: 4,4 (1=1), 5 (0=0); b: x,x (1 vs 0: wrong), 7 (0 vs 1: wrong) -> 3/6
    assert m["label/reward_accuracy"] == pytest.approx(3 / 6)
    assert m["label/true_reward_mean"] == pytest.approx(3 / 6)
    assert pseudo_label_metrics([[{"extracted": "1"}]]) == {}  # labelled runs only


def test_a_further_shaper_sees_the_pseudo_labelled_results():
    class Halve:
        def shape(self, prompts, completions, refs, results):
            return [VerifyResult(r.score / 2, r.parsed, r.info) for r in results]

    results = [verify_int(c, "1") for c in ("2", "2")]
    out = PseudoLabelShaper(then=Halve()).shape(["q", "q"], ["2", "2"], ["1", "1"], results)
    assert [r.score for r in out] == [0.5, 0.5]


def _ctx(group_size, seed=0):
    from types import SimpleNamespace

    return SimpleNamespace(group_size=group_size, rng=np.random.default_rng(seed))


def test_vote_split_trains_the_first_m_or_a_seeded_random_m():
    pools = [GroupObs(0, np.arange(16.0), np.ones(16, dtype=np.int64)), GroupObs(1, np.zeros(3), np.ones(3, int))]
    first = VoteSplit().select(pools, _ctx(8))
    assert first[0].tolist() == list(range(8)) and first[1].tolist() == [0, 1, 2]  # a short pool keeps all
    rand = VoteSplit(pick="random", m=4).select(pools, _ctx(8, seed=1))
    again = VoteSplit(pick="random", m=4).select(pools, _ctx(8, seed=1))
    assert len(rand[0]) == 4 and len(set(rand[0].tolist())) == 4 and rand[0].tolist() == again[0].tolist()
    assert rand[0].tolist() == sorted(rand[0].tolist())


def test_contrastive_keep_best_and_worst_with_random_ties():
    r = np.array([0.9, 0.1, 0.5, 0.7, 0.3, 0.2])
    assert compute_contrastive_keep(r, 4, np.random.default_rng(0)).tolist() == [0, 1, 3, 5]  # top 2, bottom 2
    assert compute_contrastive_keep(r, 3, np.random.default_rng(0)).tolist() == [0, 1, 5]  # 1 best, 2 worst
    assert compute_contrastive_keep(r[:2], 4, np.random.default_rng(0)).tolist() == [0, 1]
    binary = np.array([1, 0, 0, 1, 0, 0, 0, 1], dtype=float)  # 3 correct of 8, keep 4: 2 correct + 2 wrong
    seen = set()
    for s in range(20):
        k = compute_contrastive_keep(binary, 4, np.random.default_rng(s))
        assert binary[k].sum() == 2
        seen.add(tuple(k.tolist()))
    assert len(seen) > 1  # ties within a reward level are broken at random
    only_wrong = np.zeros(6)
    assert len(compute_contrastive_keep(only_wrong, 4, np.random.default_rng(0))) == 4


def test_labels_knob_is_validated_at_load(tmp_path):
    from pathlib import Path

    from rollwise.config import ConfigError, load_config

    smoke = Path(__file__).resolve().parents[2] / "configs" / "smoke.toml"
    with pytest.raises(ConfigError, match="task.labels"):
        load_config(smoke, [f"--run.out_dir={tmp_path}", "--task.labels=hidden"])
    cfg = load_config(smoke, [f"--run.out_dir={tmp_path}", "--recipe=ttrl"])
    assert cfg.task.labels == "none" and cfg.sampler.downsampler.type == "vote_split"


def test_labels_none_is_refused_with_an_environment(tmp_path):
    from pathlib import Path

    from rollwise.config import ConfigError, load_config

    smoke = Path(__file__).resolve().parents[2] / "configs" / "smoke.toml"
    with pytest.raises(ConfigError, match="task.labels"):
        load_config(smoke, [f"--run.out_dir={tmp_path}", "--task.labels=none", "--env=guess"])

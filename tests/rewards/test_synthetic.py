from rollwise.rewards import get_verifier


def test_synthetic_int_exact_integer_only():
    v = get_verifier("synthetic_int")
    assert v("42", "42").score == 1.0
    assert v(" 42 trailing", "42").score == 1.0
    assert v("-7", "-7").score == 1.0
    r = v("43", "42")
    assert r.score == 0.0 and r.parsed
    for bad in ["", "forty", "٤٢", "４２", "4 2x", "42.0"]:
        res = v(bad, "42")
        assert res.score == 0.0, bad
    assert not v("", "42").parsed


def test_synthetic_scratch_reads_the_answer_after_the_last_bar():
    v = get_verifier("synthetic_scratch")
    assert v("11|125", "125").score == 1.0
    assert v("-10|-14", "-14").score == 1.0
    assert v("1|2|125 junk", "125").score == 1.0  # the last '|' holds the answer
    assert v("11|124", "125").score == 0.0 and v("11|124", "125").parsed
    for bad in ["125", "11|", "11|12x5", "|"]:  # no bar, or no integer after it
        assert v(bad, "125").score == 0.0, bad
    assert not v("125", "125").parsed


def test_synthetic_mixed_reads_direct_answers_and_scratchpads():
    v = get_verifier("synthetic_mixed")
    assert v("125", "125").score == 1.0          # a direct answer
    assert v("#11|125", "125").score == 1.0      # a worked answer: the integer after the last '|'
    assert v("#-10|-14", "-14").score == 1.0
    assert v("#11|124", "125").score == 0.0 and v("#11|124", "125").parsed
    for bad in ["#125", "#11|", "|", "", "12|5x"]:  # a marker with no bar, or no integer after the bar
        assert v(bad, "125").score == 0.0, bad
    assert not v("#11|", "125").parsed

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

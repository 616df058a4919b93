import math

import numpy as np
import pytest

from whichvoice.scoring import (
    Calibration,
    cosine_scores,
    eer,
    error_rates,
    fit_calibration,
    identification_far,
    min_dcf,
    score_tail,
    tail_frr,
    tail_threshold,
    threshold_at_far,
)


def gaussian_trials(d: float, n: int = 20000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(d, 1.0, n), rng.normal(0.0, 1.0, n)


def test_cosine_scores() -> None:
    e = np.array([[1.0, 0.0], [0.0, 2.0]])
    t = np.array([[3.0, 0.0], [1.0, 1.0]])
    s = cosine_scores(e, t)
    assert s.shape == (2, 2)
    assert s[0, 0] == pytest.approx(1.0) and s[0, 1] == pytest.approx(0.0)
    assert s[1, 0] == pytest.approx(math.sqrt(0.5), abs=1e-6)


def test_eer_matches_theory_for_gaussians() -> None:
    target, nontarget = gaussian_trials(2.0)
    rate, threshold = eer(target, nontarget)
    expected = 0.5 * math.erfc(1.0 / math.sqrt(2))  # Phi(-d/2) with d = 2
    assert rate == pytest.approx(expected, abs=0.01)
    assert threshold == pytest.approx(1.0, abs=0.05)


def test_perfect_separation_and_rates() -> None:
    rate, threshold = eer(np.array([0.9, 0.8]), np.array([0.1, 0.2, 0.3]))
    assert rate == 0.0 and 0.3 < threshold < 0.8
    thresholds, miss, fa = error_rates(np.array([0.9, 0.8]), np.array([0.1, 0.2, 0.3]))
    assert miss[0] == 0 and fa[0] == 1 and miss[-1] == 1 and fa[-1] == 0
    assert np.all(np.diff(thresholds) > 0)
    with pytest.raises(ValueError):
        eer(np.array([]), np.array([0.1]))


def test_min_dcf_is_normalised() -> None:
    target, nontarget = gaussian_trials(3.0)
    cost, _ = min_dcf(target, nontarget, p_target=0.01)
    assert 0 < cost < 1
    assert min_dcf(target, nontarget, 0.05)[0] < cost  # an easier operating point
    assert min_dcf(np.array([1.0]), np.array([0.0]), 0.01)[0] == 0.0


def test_threshold_at_far() -> None:
    nontarget = np.linspace(0, 1, 1001)
    t = threshold_at_far(nontarget, 0.01)
    assert np.mean(nontarget >= t) <= 0.01
    assert np.mean(nontarget >= t - 0.002) > 0.01
    assert threshold_at_far(nontarget, 0.0) > 1.0 and threshold_at_far(nontarget, 1.0) < 0.0


def test_a_score_tail_reads_thresholds_and_rejections_off_the_trials() -> None:
    rng = np.random.default_rng(3)
    target, nontarget = rng.normal(0.8, 0.05, 5000), rng.normal(0.2, 0.1, 200_000)
    tail = score_tail(target, nontarget, 0.001)
    # 4 points a decade while 10 trials or more lie above: 1e-3 down to 5.6e-5
    assert len(tail["far"]) == 6 and tail["far"][0] == 0.001
    for far, thr in zip(tail["far"], tail["threshold"], strict=True):
        assert np.mean(nontarget >= thr) <= far
    assert tail_threshold(tail, 0.001) == pytest.approx(threshold_at_far(nontarget, 0.001))
    assert tail_threshold(tail, 0.5) == tail["threshold"][0]  # never under the start
    between = tail_threshold(tail, 3e-4)
    assert tail["threshold"][1] <= between <= tail["threshold"][3]
    assert tail_frr(tail, 0.8) == pytest.approx(0.5, abs=0.03)
    assert tail_frr(tail, 0.0) == 0.0 and tail_frr({}, 0.5) is None


def test_a_tail_carried_past_its_trials_stays_near_the_true_quantile() -> None:
    # Gaussian non-target scores (mean 0.3, sigma 0.05): the 1e-6 quantile is 4.75 sigma
    # above the mean. A tail of 100,000 trials reaches 1e-4; its last decade's line carried
    # two decades on lands within half a sigma (over 40 seeds: 4.27-5.30, median 4.98, a
    # little strict as a line over a Gaussian's bending tail is). Cosine scores cap at 1.
    rng = np.random.default_rng(4)
    nontarget = rng.normal(0.3, 0.05, 100_000)
    tail = score_tail(np.ones(10), nontarget, 0.001)
    assert tail["far"][-1] >= 1e-4
    carried = (tail_threshold(tail, 1e-6) - 0.3) / 0.05
    assert abs(carried - 4.75) <= 0.5
    assert tail_threshold(tail, 1e-300) == 1.0
    assert math.isnan(tail_threshold({}, 0.01))  # no tail


def test_identification_keeps_a_strangers_chance_of_being_named() -> None:
    # a stranger scored against N voices is named when any score passes: at the one-trial
    # threshold that happens about N times as often; at identification_far's it does not
    assert identification_far(0.001, 1) == pytest.approx(0.001)
    assert 1 - (1 - identification_far(0.001, 24)) ** 24 == pytest.approx(0.001)
    rng = np.random.default_rng(5)
    dev = rng.normal(0.2, 0.1, 400_000)
    tail = score_tail(np.ones(10), dev, 0.001)
    strangers = rng.normal(0.2, 0.1, (200_000, 24)).max(axis=1)
    one = threshold_at_far(dev, 0.001)
    raised = tail_threshold(tail, identification_far(0.001, 24))
    assert np.mean(strangers >= one) == pytest.approx(1 - 0.999**24, rel=0.15)  # about 2.4 %
    assert np.mean(strangers >= raised) == pytest.approx(0.001, rel=0.35)


def test_identify_raises_the_threshold_only_for_galleries_that_would_name_strangers() -> None:
    from whichvoice.verification import IDENTIFY_FAR, identification_threshold, untailed

    rng = np.random.default_rng(6)
    target, nontarget = rng.normal(0.85, 0.05, 5000), rng.normal(0.3, 0.1, 400_000)
    one = threshold_at_far(nontarget, 0.001)
    far = float(np.mean(nontarget >= one))
    cal = {"threshold": one, "false_acceptance_at_threshold": far,
           "tail": score_tail(target, nontarget, far)}  # fmt: skip
    # up to IDENTIFY_FAR / far voices (10), a stranger is named under 1 time in 100 anyway
    for voices in (1, 2, 10):
        assert identification_threshold(cal, voices) == (one, far)
    thresholds = [identification_threshold(cal, n)[0] for n in (11, 24, 100, 1000)]
    assert one < thresholds[0] < thresholds[1] < thresholds[2] < thresholds[3] <= 1.0
    t24, f24 = identification_threshold(cal, 24)
    assert f24 == pytest.approx(identification_far(IDENTIFY_FAR, 24))
    strangers = rng.normal(0.3, 0.1, (100_000, 24)).max(axis=1)
    assert np.mean(strangers >= one) > 0.02  # the one-trial threshold: 2.4 % named
    assert np.mean(strangers >= t24) == pytest.approx(IDENTIFY_FAR, rel=0.25)
    assert untailed(cal, 100) == ""
    # a calibration stored before tails were: its one threshold, whatever the gallery, and a
    # line saying how many strangers that names
    assert identification_threshold({**cal, "tail": {}}, 100) == (one, far)
    del cal["tail"]
    assert identification_threshold(cal, 100) == (one, far)
    assert "among 100 voices" in untailed(cal, 100) and "names about 10 % of" in untailed(cal, 100)
    assert untailed(cal, 10) == ""  # 10 voices name under 1 stranger in 100 anyway
    # a calibration of the user's at its EER point (5 % of strangers pass): identify raises
    # it from one voice on (a review's one-voice gallery named 1.9 % without a word)
    lax = threshold_at_far(nontarget, 0.05)
    lax_cal = {"threshold": lax, "false_acceptance_at_threshold": 0.05,
               "tail": score_tail(target, nontarget, 0.05)}  # fmt: skip
    t1, f1 = identification_threshold(lax_cal, 1)
    assert t1 > lax and f1 == pytest.approx(IDENTIFY_FAR)
    assert np.mean(rng.normal(0.3, 0.1, 100_000) >= t1) == pytest.approx(IDENTIFY_FAR, rel=0.15)
    assert "among 1 voice at verify's" in untailed(
        {k: lax_cal[k] for k in ("threshold", "false_acceptance_at_threshold")}, 1
    )


def test_calibration_is_monotone_and_sensible() -> None:
    target, nontarget = gaussian_trials(2.0, 5000)
    cal = fit_calibration(target, nontarget)
    assert cal.a > 0
    assert cal.probability(1.0) == pytest.approx(0.5, abs=0.05)  # the midpoint of equal priors
    assert cal.probability(4.0) > 0.95 and cal.probability(-2.0) < 0.05
    assert Calibration.from_dict(cal.to_dict()) == cal
    separable = fit_calibration(np.array([0.9, 0.95]), np.array([0.1, 0.2]))
    assert np.isfinite([separable.a, separable.b]).all()
    assert separable.probability(0.9) > 0.5 > separable.probability(0.2)


def test_calibration_is_the_prior_weighted_logistic_regression() -> None:
    """The slope is the data's, not its ridge's: a review's 400 trials fitted a slope of 21
    where the unpenalised prior-weighted fit (minimum Cllr) is 108, so every probability
    printed leaned towards 0.5. Against scikit-learn's unpenalised, class-balanced fit (the
    same loss), and the slope's scale does not depend on how many trials there are."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(11)
    for n_t, n_n, spread in ((40, 360, 0.05), (500, 20_000, 0.08)):
        target, nontarget = rng.normal(0.8, spread, n_t), rng.normal(0.55, spread, n_n)
        cal = fit_calibration(target, nontarget)
        x = np.concatenate([target, nontarget])[:, None]
        y = np.r_[np.ones(n_t), np.zeros(n_n)]
        ref = LogisticRegression(C=np.inf, class_weight="balanced", tol=1e-10, max_iter=10_000)
        ref.fit(x, y)
        assert cal.a == pytest.approx(ref.coef_[0][0], rel=0.02)
        assert cal.b == pytest.approx(ref.intercept_[0], rel=0.02)
    # repeated trials say the same: the fit does not move
    twice = fit_calibration(np.tile(target, 2), np.tile(nontarget, 2))
    assert twice.a == pytest.approx(cal.a, rel=1e-6)


def test_ties_are_no_operating_point() -> None:
    """A threshold accepts every score equal to it or none of them: a point inside a run of
    equal scores cannot be reached (a review's trial listed as both same and different voice
    got an EER of 1.0), and a false-acceptance target is kept when scores tie at the cut (its
    repeated trials stored a threshold letting 10 of 720 through for a target of 9)."""
    same = np.full(10, 0.5)
    assert eer(same, same.copy())[0] == pytest.approx(0.5)
    assert min_dcf(same, same.copy(), 0.5)[0] == pytest.approx(1.0)
    # half the targets tied with half the non-targets: the reachable points are (0, 1),
    # (0, 0.5), (0.5, 0) and (1, 0) in (miss, false alarm), whose EER is 0.25 (it was 0.5,
    # from a point between the tied scores)
    target, nontarget = (
        np.r_[np.full(5, 0.5), np.full(5, 0.9)],
        np.r_[np.full(5, 0.1), 0.5 * np.ones(5)],
    )
    assert eer(target, nontarget)[0] == pytest.approx(0.25)
    thresholds, miss, fa = error_rates(target, nontarget)
    assert len(thresholds) == 4  # below all, 0.1|0.5, 0.5|0.9, above all
    for t, m, f in zip(thresholds, miss, fa, strict=True):  # every point is a threshold's
        assert m == np.mean(target < t) and f == np.mean(nontarget >= t)
    rng = np.random.default_rng(3)
    scores = np.repeat(rng.normal(0.3, 0.1, 360), 2)  # every trial listed twice
    for far in (0.0125, 0.05, 0.001, 0.5):
        t = threshold_at_far(scores, far)
        assert np.sum(scores >= t) <= math.floor(far * scores.size)
        assert np.sum(scores >= t) >= math.floor(far * scores.size) - 1  # no stricter than it must


def test_wilson_intervals_match_published_values() -> None:
    from whichvoice.scoring import proportion, wilson

    # Newcombe (1998), table I: 81/263 -> 0.2553-0.3662; 0/10 -> 0-0.2775
    assert np.allclose(wilson(81, 263), (0.2553, 0.3662), atol=5e-5)
    assert np.allclose(wilson(0, 10), (0.0, 0.2775), atol=5e-5)
    assert wilson(10, 10)[1] > 1 - 1e-12 and wilson(10, 10)[0] < 1.0
    assert proportion(3, 4) == {"value": 0.75, "k": 3, "n": 4, "ci95": [0.300642, 0.954413]}


def test_clustered_proportions_count_voices_not_clips() -> None:
    from whichvoice.scoring import clustered_proportion, proportion, wilson

    # every clip of 16 voices right: each voice counts once (the data cannot show how a
    # voice's clips go together), so the interval is Wilson's for 16 of 16, not 160 of 160
    x = clustered_proportion([10] * 16, [10] * 16)
    assert (x["k"], x["n"], x["units"], x["effective_n"]) == (160, 160, 16, 16.0)
    assert np.allclose(x["ci95"], wilson(16, 16), atol=1e-6)
    assert x["ci95_clips"] == proportion(160, 160)["ci95"]
    # voices wholly right or wholly wrong: as many observations as voices
    x = clustered_proportion([10, 10, 10, 0], [10] * 4)
    assert x["effective_n"] == 4.0 and np.allclose(x["ci95"], wilson(3, 4), atol=1e-6)
    # the same share spread evenly over the voices (no clustering): the clips' own interval
    x = clustered_proportion([5] * 10, [10] * 10)
    assert x["effective_n"] == 100.0 and x["ci95"] == proportion(50, 100)["ci95"]
    # partly clustered: between the two
    x = clustered_proportion([2, 9, 5, 10, 1, 7], [10] * 6)
    assert 6 < x["effective_n"] < 60
    # by hand: MSB = 6.7333 / 5 = 1.34667, MSW = 8 / 54 = 0.148148, n0 = 10,
    # rho = (MSB - MSW) / (MSB + 9 MSW) = 0.447208, effective 60 / (1 + 9 rho) = 11.94
    # (a test-suite review: MSW over n instead of n - g, 11.35, passed the range above)
    assert x["effective_n"] == 11.94
    assert np.allclose(x["ci95"], wilson(34 / 60 * 11.9406, 11.9406), atol=2e-5)
    assert x["ci95"][0] < x["ci95_clips"][0] and x["ci95"][1] > x["ci95_clips"][1]
    # a unit without clips is no unit; one unit counts once
    one = clustered_proportion([3, 0], [3, 0])
    assert one["units"] == 1 and one["effective_n"] == 1.0
    assert np.allclose(one["ci95"], wilson(1, 1), atol=1e-6)
    # units of different sizes: the design effect weighs the large one (a figure that hangs on
    # one voice of 91 clips beside nine of one is nearly one observation, not ten)
    lopsided = clustered_proportion([0] * 9 + [91], [1] * 9 + [91])
    assert lopsided["effective_n"] < 2 and lopsided["ci95"][0] < 0.3
    with pytest.raises(ValueError):
        clustered_proportion([5], [4])
    # the same from trials: a hit per trial and its unit (a voice, or a row of labels)
    from whichvoice.scoring import clustered_share

    by_voice = clustered_share([1, 1, 0, 1], ["a", "a", "b", "b"])
    assert by_voice == clustered_proportion([2, 1], [2, 2])
    pairs = np.array([[0, 1], [0, 1], [1, 0]])
    assert clustered_share([1, 0, 1], pairs) == clustered_proportion([1, 1], [2, 1])


def test_weights_count_trials_as_often_as_repeated() -> None:
    from whichvoice.scoring import error_rates

    rng = np.random.default_rng(0)
    t, n = rng.normal(1, 1, 50), rng.normal(-1, 1, 80)
    wt, wn = rng.integers(0, 3, 50), rng.integers(0, 3, 80)
    _, miss_w, fa_w = error_rates(t, n, wt, wn)
    _, miss_r, fa_r = error_rates(np.repeat(t, wt), np.repeat(n, wn))
    # every operating point of the weighted trials is one of the repeated trials' (these
    # also stop between the copies of one score, at points no threshold can reach)
    repeated = set(zip(np.round(miss_r, 12), np.round(fa_r, 12), strict=True))
    assert set(zip(np.round(miss_w, 12), np.round(fa_w, 12), strict=True)) <= repeated


def test_voice_bootstrap_brackets_the_eer_and_widens_with_fewer_voices() -> None:
    from whichvoice.scoring import eer, voice_bootstrap

    rng = np.random.default_rng(1)

    def matrix(voices: int, clips: int) -> tuple[np.ndarray, np.ndarray]:
        own = np.repeat(np.arange(voices), clips)
        hard = rng.uniform(0, 1.5, voices)  # some voices are harder than others
        s = rng.normal(0, 0.3, (voices * clips, voices))
        s[np.arange(own.size), own] += 1.5 - hard[own]
        return s, own

    s, own = matrix(40, 20)
    mask = np.zeros_like(s, bool)
    mask[np.arange(own.size), own] = True
    point = eer(s[mask], s[~mask])[0]
    ci = voice_bootstrap(s, own, resamples=300)
    assert ci["eer"][0] <= point <= ci["eer"][1]
    assert ci["min_dcf_0.01"][0] <= ci["min_dcf_0.01"][1]
    few = voice_bootstrap(*matrix(8, 100), resamples=300)
    assert few["eer"][1] - few["eer"][0] > ci["eer"][1] - ci["eer"][0]


def test_a_short_score_tail_sets_no_threshold_far_past_its_end() -> None:
    """A calibration of few different-voice trials (a user's run, a small corpus): its tail
    ends at a high rate; its last line carried to 2 voices' 0.5 % set a threshold of 1.0,
    and identify named no one (review). A tail under a decade long is not carried past its
    rarest point (a long one, at most a decade), and a warning says so."""
    from whichvoice.verification import identification_threshold, short_tail

    rng = np.random.default_rng(7)
    target, nontarget = rng.normal(0.97, 0.01, 60), rng.normal(0.95, 0.02, 108)
    far = 0.23
    cal = {"threshold": threshold_at_far(nontarget, far), "false_acceptance_at_threshold": far,
           "tail": score_tail(target, nontarget, far)}  # fmt: skip
    assert cal["tail"]["far"][-1] > 0.05  # a tail of two or three points
    threshold, used = identification_threshold(cal, 2)
    assert cal["threshold"] < threshold < 1.0 and threshold < target.max()
    assert used == pytest.approx(cal["tail"]["far"][-1])  # its rarest point: not carried on
    note = short_tail(cal, 2)
    assert "identify among 2 voices names about" in note and "too few" in note
    # one voice: identify keeps 1 stranger in 100 too (a review's one-voice gallery named more
    # with no word), and a tail this short cannot: said
    assert "identify among 1 voice names about" in short_tail(cal, 1)
    assert identification_threshold(cal, 1)[0] > cal["threshold"]
    # a long tail reaches: no note
    long = {**cal, "tail": score_tail(target, rng.normal(0.5, 0.1, 400_000), 0.001)}
    assert short_tail(long, 24) == ""


def test_identify_says_when_it_is_stricter_than_a_lax_calibration(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A user's calibration at its EER point (5 % of strangers accepted): identify answers
    at a stricter threshold from one voice on, and says so once (a user found it only by
    comparing identify's threshold with verify's); verify keeps the calibration's."""
    import whichvoice.verification as vf
    from whichvoice.encoders import warn_once

    rng = np.random.default_rng(8)
    target, nontarget = rng.normal(0.85, 0.05, 5000), rng.normal(0.3, 0.1, 100_000)
    lax = threshold_at_far(nontarget, 0.05)
    data = {"threshold": lax, "false_acceptance_at_threshold": 0.05,
            "tail": score_tail(target, nontarget, 0.05)}  # fmt: skip
    made = (lax, Calibration(20.0, 0.0), data, None)  # no file: made here
    monkeypatch.setattr(vf, "calibration_read", lambda model: made)
    warn_once.cache_clear()
    with caplog.at_level("WARNING"):
        assert vf.operating_point(None).threshold == lax  # verify: the calibration's own
        assert not caplog.records
        raised = vf.operating_point(None, voices=1).threshold
    assert raised > lax
    (said,) = [r.getMessage() for r in caplog.records]
    assert said.startswith(f"identify among 1 voice answers at {raised:.4f}, stricter than")
    assert "accepts 5.0 % of strangers" in said and f"verify keeps {lax:.4f}" in said
    warn_once.cache_clear()


def test_calibrate_warns_of_a_looser_threshold_and_of_short_clips() -> None:
    """calibrate's warnings, from the library (a CLI computes nothing): looser than the one
    it replaces and than the shipped one, each named as what it is, with its rate's origin;
    short test clips (single words) said; none for a stricter threshold on long clips."""
    from whichvoice.verification import OperatingPoint, Trials, calibration_warnings

    cal = Calibration(20.0, 0.0)
    shipped = (0.70, cal, {"false_acceptance_at_threshold": 0.001})
    long_clips = Trials(np.ones(10), np.zeros(10), np.full(20, 3.0))
    first = OperatingPoint(0.70, cal, "calibrated", 0.001, 0.07)  # the shipped one answered
    (said,) = calibration_warnings(0.62, long_clips, first, shipped)
    assert "looser than the shipped one, 0.7000 (dev false acceptances 0.10 %)" in said
    assert "the one it replaces" not in said
    mine = OperatingPoint(0.66, cal, "calibrated", 0.0, 0.2)  # a user's earlier calibration
    (said,) = calibration_warnings(0.62, long_clips, mine, shipped)
    assert "the one it replaces, 0.6600 (its trials' false acceptances 0.00 %)" in said
    assert "and the shipped one, 0.7000" in said
    assert calibration_warnings(0.68, long_clips, mine, None) == []  # a run: no shipped one
    assert calibration_warnings(0.75, long_clips, first, shipped) == []
    short = Trials(np.ones(10), np.zeros(10), np.full(20, 0.5))
    (said,) = calibration_warnings(0.75, short, first, shipped)
    assert said.startswith("the test clips hold a median of 0.5 s of speech")
    assert calibration_warnings(0.75, Trials(np.ones(10), np.zeros(10)), first, shipped) == []

"""Scores and their meaning: cosine scoring, EER, minDCF, DET curves, thresholds and a
logistic calibration of scores to probabilities (verification and open-set identification).

Conventions: a *target* trial compares a voice with itself, a *non-target* trial two
different voices; higher scores mean "same voice".
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

Z95 = 1.959963984540054  # the standard normal's 97.5th percentile: two-sided 95 % intervals


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``k``/``n`` (95 % by default): unlike the
    normal approximation, it stays inside [0, 1] and is not empty at 0 or ``n`` successes.
    (nan, nan) when ``n`` is 0."""
    if n <= 0:
        return float("nan"), float("nan")
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def proportion(k: int, n: int) -> dict:
    """A proportion as results report it: {"value", "k", "n", "ci95": [low, high]}."""
    lo, hi = wilson(k, n)
    return {"value": k / n if n else float("nan"), "k": int(k), "n": int(n),
            "ci95": [round(lo, 6), round(hi, 6)]}  # fmt: skip


def clustered_proportion(k_per_unit, n_per_unit) -> dict:
    """A proportion of clips that come in clusters (the clips of one voice or speaker, which
    go right or wrong together more than independent clips do), as ``proportion`` reports it
    with a Wilson interval at the effective count: clips / design effect (Kish), the design
    effect 1 + (m - 1) * rho, m the clips per unit weighted by size (sum n_i^2 / sum n_i: the
    mean for units of one size; Gabler, Haeder and Lahiri 1999) and rho the intraclass
    correlation (ANOVA estimator, within [0, 1]). Where no unit's clips differ from another's
    (every clip right, or every clip wrong), or there is one unit, the data cannot show rho:
    each unit counts once (rho = 1). Also "units", "effective_n" and "ci95_clips" (the
    interval were the clips independent). Counts may be averages (fractions: a unit's clips
    over repeated splits of the voices): ``value`` is then their exact share, and ``k`` and
    ``n`` are rounded."""
    k_i = np.asarray(k_per_unit, dtype=np.float64)
    n_i = np.asarray(n_per_unit, dtype=np.float64)
    if k_i.shape != n_i.shape or k_i.ndim != 1 or (k_i < 0).any() or (k_i > n_i).any():
        raise ValueError("k_per_unit and n_per_unit: one count each per unit, 0 <= k <= n")
    keep = n_i > 0
    k_i, n_i = k_i[keep], n_i[keep]
    k, n, g = float(k_i.sum()), float(n_i.sum()), len(n_i)
    out = proportion(round(k), round(n))
    if n:  # the exact share (averaged counts round apart: a review)
        lo, hi = wilson(k, n)
        out.update(value=k / n, ci95=[round(lo, 6), round(hi, 6)])
    out["ci95_clips"] = out["ci95"]
    if n == 0:
        out.update(units=g, effective_n=0.0)
        return out
    p, p_i = k / n, k_i / n_i
    if g < 2:  # one unit: as many observations as units
        lo, hi = wilson(p, 1)
        out.update(ci95=[round(lo, 6), round(hi, 6)], units=g, effective_n=1.0)
        return out
    msb = float((n_i * (p_i - p) ** 2).sum()) / (g - 1)
    msw = float((n_i * p_i * (1 - p_i)).sum()) / (n - g) if n > g else 0.0
    n0 = (n - float((n_i**2).sum()) / n) / (g - 1)
    spread = msb + (n0 - 1) * msw
    rho = 1.0 if spread <= 1e-12 else min(1.0, max(0.0, (msb - msw) / spread))
    m = float((n_i**2).sum()) / n  # clips per unit, weighted by size
    effective = n / (1 + (m - 1) * rho)
    lo, hi = wilson(p * effective, effective)
    out.update(ci95=[round(lo, 6), round(hi, 6)], units=g, effective_n=round(effective, 2))
    return out


def clustered_share(hits, units) -> dict:
    """``clustered_proportion`` of trials: ``hits`` (bool, one per trial) counted within
    ``units`` (one label per trial, or a row of labels: a voice, a pair of speakers)."""
    hits = np.asarray(hits, dtype=bool)
    keys, index = np.unique(np.asarray(units), axis=0, return_inverse=True)
    index = index.reshape(-1)
    k = np.bincount(index, weights=hits.astype(float), minlength=len(keys))
    n = np.bincount(index, minlength=len(keys))
    return clustered_proportion(np.rint(k).astype(int), n)


def cosine_scores(enroll: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Cosine similarity of every test embedding with every enrolled one.

    ``enroll`` (n_enrolled, dim), ``test`` (n_test, dim), any scale.
    Returns float32 (n_test, n_enrolled) in [-1, 1].
    """
    e = enroll / np.maximum(np.linalg.norm(enroll, axis=1, keepdims=True), 1e-12)
    t = test / np.maximum(np.linalg.norm(test, axis=1, keepdims=True), 1e-12)
    return (t @ e.T).astype(np.float32)


def _check(target: np.ndarray, nontarget: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    target, nontarget = np.asarray(target, np.float64), np.asarray(nontarget, np.float64)
    if target.size == 0 or nontarget.size == 0:
        raise ValueError("need at least one target and one non-target score")
    return target, nontarget


def error_rates(
    target: np.ndarray,
    nontarget: np.ndarray,
    target_weights: np.ndarray | None = None,
    nontarget_weights: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Miss and false-alarm rates at every threshold that changes them.

    Returns (thresholds ascending, miss rates = P(target < t), false-alarm rates =
    P(non-target >= t)), float64, one per place between two different scores and one past
    each end (n_scores + 1 when no two scores are equal); a trial is accepted when score >= t.
    Weights (default 1 each) count a trial that many times (a bootstrap resample).
    """
    target, nontarget = _check(target, nontarget)
    scores = np.concatenate([target, nontarget])
    wt = np.ones(target.size) if target_weights is None else np.asarray(target_weights, float)
    wn = (
        np.ones(nontarget.size)
        if nontarget_weights is None
        else np.asarray(nontarget_weights, float)
    )
    is_target = np.concatenate([wt, np.zeros(nontarget.size)])
    is_non = np.concatenate([np.zeros(target.size), wn])
    order = np.argsort(scores, kind="mergesort")
    scores, is_target, is_non = scores[order], is_target[order], is_non[order]
    # threshold i sits just above the i lowest scores: those are rejected
    miss = np.concatenate([[0.0], np.cumsum(is_target)]) / max(wt.sum(), 1e-300)
    fa = 1.0 - np.concatenate([[0.0], np.cumsum(is_non)]) / max(wn.sum(), 1e-300)
    thresholds = np.concatenate(
        [[scores[0] - 1e-6], (scores[:-1] + scores[1:]) / 2, [scores[-1] + 1e-6]]
    )
    cuts = _cuts(scores)
    return thresholds[cuts], miss[cuts], fa[cuts]


def _cuts(ascending: np.ndarray) -> np.ndarray:
    """Which of the n + 1 places between ``ascending`` scores a threshold can reach: not one
    inside a run of equal scores (a threshold accepts all of them or none; a review's trial
    listed as both same and different voice got an EER of 1.0 from such a point)."""
    inside = np.zeros(ascending.size + 1, dtype=bool)
    inside[1:-1] = ascending[:-1] == ascending[1:]
    return ~inside


def eer(target: np.ndarray, nontarget: np.ndarray) -> tuple[float, float]:
    """Equal error rate and the threshold where misses and false alarms meet."""
    thresholds, miss, fa = error_rates(target, nontarget)
    return _eer_of(miss, fa), float(thresholds[int(np.argmin(np.abs(miss - fa)))])


def _eer_of(miss: np.ndarray, fa: np.ndarray) -> float:
    # between two operating points the rates cross: take the midpoint of the closest one
    i = int(np.argmin(np.abs(miss - fa)))
    return float((miss[i] + fa[i]) / 2)


def _dcf_of(miss: np.ndarray, fa: np.ndarray, p_target: float) -> float:
    cost = p_target * miss + (1 - p_target) * fa
    return float(cost.min() / min(p_target, 1 - p_target))


def voice_bootstrap(
    scores: np.ndarray,
    clip_voice: np.ndarray,
    *,
    p_targets: tuple[float, ...] = (0.01, 0.05),
    resamples: int = 1000,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """95 % percentile intervals of EER and minDCF by resampling voices with replacement.

    ``scores`` (n_clips, n_voices): each test clip scored against each enrolled voice;
    ``clip_voice`` (n_clips,): the column of each clip's own voice. A resample draws voices;
    a voice drawn k times counts its clips k times as targets, and a pair of different voices
    drawn k and m times counts k*m times as non-targets. Trials stay correlated within a voice,
    so this interval is wider (and more honest) than one over independent trials.
    Returns {"eer": (low, high), "min_dcf_0.01": ..., ...}."""
    scores = np.asarray(scores, np.float64)
    n_clips, n_voices = scores.shape
    clip_voice = np.asarray(clip_voice)
    own = np.zeros_like(scores, dtype=bool)
    own[np.arange(n_clips), clip_voice] = True
    flat = scores.ravel()
    order = np.argsort(flat, kind="mergesort")
    is_target = own.ravel()[order]
    row_voice = np.repeat(clip_voice, n_voices)[order]  # the clip's voice
    col_voice = np.tile(np.arange(n_voices), n_clips)[order]  # the enrolled voice
    cuts = _cuts(flat[order])
    rng = np.random.default_rng(seed)
    out: dict[str, list[float]] = {"eer": [], **{f"min_dcf_{p:g}": [] for p in p_targets}}
    for _ in range(resamples):
        count = np.bincount(rng.integers(0, n_voices, n_voices), minlength=n_voices).astype(float)
        w = count[row_voice] * np.where(is_target, 1.0, count[col_voice])
        wt, wn = np.where(is_target, w, 0.0), np.where(is_target, 0.0, w)
        if wt.sum() == 0 or wn.sum() == 0:
            continue
        miss = (np.concatenate([[0.0], np.cumsum(wt)]) / wt.sum())[cuts]
        fa = (1.0 - np.concatenate([[0.0], np.cumsum(wn)]) / wn.sum())[cuts]
        out["eer"].append(_eer_of(miss, fa))
        for p in p_targets:
            out[f"min_dcf_{p:g}"].append(_dcf_of(miss, fa, p))
    return {
        k: (float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))) for k, v in out.items()
    }


def min_dcf(
    target: np.ndarray,
    nontarget: np.ndarray,
    p_target: float = 0.01,
    c_miss: float = 1.0,
    c_fa: float = 1.0,
) -> tuple[float, float]:
    """Normalised minimum detection cost (NIST SRE) and its threshold."""
    thresholds, miss, fa = error_rates(target, nontarget)
    cost = c_miss * p_target * miss + c_fa * (1 - p_target) * fa
    norm = min(c_miss * p_target, c_fa * (1 - p_target))
    i = int(np.argmin(cost))
    return float(cost[i] / norm), float(thresholds[i])


def threshold_at_far(nontarget: np.ndarray, far: float) -> float:
    """The lowest threshold whose false-alarm rate is at most ``far`` (a trial passes when
    its score reaches the threshold): midway between the highest score that must be turned
    away and the next higher one. Scores tied at that cut are all turned away (a threshold
    at their value would pass all of them: a review's repeated trials stored a threshold
    letting 10 of 720 through for a target of 9)."""
    s = np.sort(np.asarray(nontarget, np.float64))
    if s.size == 0:
        raise ValueError("need non-target scores")
    k = math.floor(far * s.size)  # at most k non-targets may pass
    if k >= s.size:
        return float(s[0] - 1e-6)
    cut = s[-k - 1]  # the (k + 1)-th highest: it and every score equal to it must fail
    above = s[s > cut]
    if above.size == 0:
        return float(cut + 1e-6)
    mid = (cut + above[0]) / 2
    return float(mid if mid > cut else above[0])  # two neighbouring floats: no midpoint


TAIL_STEPS = 4  # points a decade in a score tail (``score_tail``)
TAIL_MIN_TRIALS = 10  # non-target trials above a tail point's threshold, at least


def score_tail(target: np.ndarray, nontarget: np.ndarray, start_far: float) -> dict:
    """The non-target scores' upper tail, for thresholds stricter than one trial's
    (``identification_threshold``): the threshold at each false-acceptance rate from
    ``start_far`` down, ``TAIL_STEPS`` a decade, while at least ``TAIL_MIN_TRIALS`` trials lie
    above it; and the false-rejection rate at every threshold from 0 to 1 in steps of 0.01."""
    target, nontarget = _check(target, nontarget)
    fars, thresholds = [], []
    far = float(start_far)
    while far > 0 and far * nontarget.size >= TAIL_MIN_TRIALS:
        fars.append(far)
        thresholds.append(threshold_at_far(nontarget, far))
        far = start_far * 10 ** (-len(fars) / TAIL_STEPS)
    grid = np.round(np.linspace(0.0, 1.0, 101), 2)
    t = np.sort(target)
    rejected = np.searchsorted(t, grid, side="left") / t.size  # target scores under each
    return {
        "far": [float(f) for f in fars],
        "threshold": [round(float(x), 6) for x in thresholds],
        "frr_threshold": [float(g) for g in grid],
        "frr": [round(float(r), 6) for r in rejected],
    }


def identification_far(far: float, voices: int) -> float:
    """The false-acceptance rate each of ``voices`` enrolled voices may have so that a stranger
    is named (by any of them) with probability ``far``: 1 - (1 - far) ** (1 / voices), as if
    the stranger's scores were independent (the Sidak correction)."""
    return 1.0 - (1.0 - far) ** (1.0 / max(1, voices))


def tail_threshold(tail: dict, far: float) -> float:
    """The threshold at which a non-target trial passes with probability ``far``, from a
    ``score_tail``: log-linear between its points; past its rarest point, the line fitted to
    its last decade (at least two points) carried on. No tail: nan."""
    fars = np.log10(np.asarray(tail.get("far", []), np.float64))
    ths = np.asarray(tail.get("threshold", []), np.float64)
    if fars.size == 0:
        return float("nan")
    x = math.log10(max(far, 1e-300))
    if x >= fars[0]:
        return float(ths[0])
    if x >= fars[-1]:  # fars fall: interpolate on the reversed (rising) axis
        return float(np.interp(x, fars[::-1], ths[::-1]))
    if fars.size < 2:
        return float(ths[-1])
    last = fars <= fars[-1] + 1 + 1e-9  # the rarest decade
    last[-2:] = True
    slope, intercept = np.polyfit(fars[last], ths[last], 1)
    return float(min(1.0, max(ths[-1], slope * x + intercept)))


def tail_frr(tail: dict, threshold: float) -> float | None:
    """The false-rejection rate at ``threshold`` from a ``score_tail`` (None without one)."""
    grid, frr = tail.get("frr_threshold"), tail.get("frr")
    if not grid or not frr:
        return None
    return float(np.interp(threshold, grid, frr))


@dataclass(frozen=True)
class Calibration:
    """P(same voice | score) = sigmoid(a * score + b), fitted on target/non-target trials."""

    a: float
    b: float

    def probability(self, score: np.ndarray | float) -> np.ndarray | float:
        z = self.a * np.asarray(score, np.float64) + self.b
        p = 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))
        return float(p) if np.ndim(p) == 0 else p

    def at(self, threshold: float) -> Calibration:
        """The same slope, its midpoint moved to ``threshold``: P >= 0.5 exactly when the
        score reaches the threshold. It is the posterior at the prior for which that
        threshold is the Bayes decision, so the probability and the decision always agree."""
        return Calibration(self.a, -self.a * float(threshold))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Calibration:
        return cls(float(d["a"]), float(d["b"]))


def fit_calibration(
    target: np.ndarray, nontarget: np.ndarray, p_target: float = 0.5, iterations: int = 50
) -> Calibration:
    """Logistic regression of same/different on the score (Newton's method), with the
    classes weighted to the prior ``p_target`` (Brümmer's prior-weighted logistic
    regression: the minimum of Cllr) and a ridge of 1e-6 on the slope so separable data
    stays finite. The weights sum to the number of trials, so the ridge weighs what a
    millionth of a trial would (until stop 67 they summed to 1 and the ridge, 1e-4, shrank
    the slope about 5 times: a review's 400 trials fitted 21 where the unpenalised fit is 108)."""
    target, nontarget = _check(target, nontarget)
    x = np.concatenate([target, nontarget])
    y = np.concatenate([np.ones(target.size), np.zeros(nontarget.size)])
    n = x.size
    w = np.where(y == 1, p_target * n / target.size, (1 - p_target) * n / nontarget.size)
    X = np.stack([x, np.ones_like(x)], axis=1)
    theta = np.zeros(2)
    ridge = np.diag([1e-6, 1e-12])  # on the slope: the intercept follows the data
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(X @ theta, -50, 50)))
        grad = X.T @ (w * (p - y)) + ridge @ theta
        hess = X.T @ (X * (w * p * (1 - p))[:, None]) + ridge
        step = np.linalg.solve(hess, grad)
        theta -= step
        if np.abs(step).max() < 1e-9:
            break
    return Calibration(float(theta[0]), float(theta[1]))

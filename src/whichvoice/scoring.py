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
    target: np.ndarray, nontarget: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Miss and false-alarm rates at every threshold that changes them.

    Returns (thresholds ascending, miss rates = P(target < t), false-alarm rates =
    P(non-target >= t)), float64, each (n_scores + 1,); a trial is accepted when score >= t.
    """
    target, nontarget = _check(target, nontarget)
    scores = np.concatenate([target, nontarget])
    is_target = np.concatenate([np.ones(target.size), np.zeros(nontarget.size)])
    order = np.argsort(scores, kind="mergesort")
    scores, is_target = scores[order], is_target[order]
    # threshold i sits just above the i lowest scores: those are rejected
    miss = np.concatenate([[0.0], np.cumsum(is_target)]) / target.size
    fa = 1.0 - np.concatenate([[0.0], np.cumsum(1 - is_target)]) / nontarget.size
    thresholds = np.concatenate(
        [[scores[0] - 1e-6], (scores[:-1] + scores[1:]) / 2, [scores[-1] + 1e-6]]
    )
    return thresholds, miss, fa


def eer(target: np.ndarray, nontarget: np.ndarray) -> tuple[float, float]:
    """Equal error rate and the threshold where misses and false alarms meet."""
    thresholds, miss, fa = error_rates(target, nontarget)
    i = int(np.argmin(np.abs(miss - fa)))
    # between two operating points the rates cross: take the midpoint of the closest one
    return float((miss[i] + fa[i]) / 2), float(thresholds[i])


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
    """The lowest threshold whose false-alarm rate is at most ``far``."""
    s = np.sort(np.asarray(nontarget, np.float64))
    if s.size == 0:
        raise ValueError("need non-target scores")
    k = math.floor(far * s.size)  # at most k non-targets may pass
    if k >= s.size:
        return float(s[0] - 1e-6)
    return float(s[-1] + 1e-6) if k == 0 else float((s[-k - 1] + s[-k]) / 2)


@dataclass(frozen=True)
class Calibration:
    """P(same voice | score) = sigmoid(a * score + b), fitted on target/non-target trials."""

    a: float
    b: float

    def probability(self, score: np.ndarray | float) -> np.ndarray | float:
        z = self.a * np.asarray(score, np.float64) + self.b
        p = 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))
        return float(p) if np.ndim(p) == 0 else p

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Calibration:
        return cls(float(d["a"]), float(d["b"]))


def fit_calibration(
    target: np.ndarray, nontarget: np.ndarray, p_target: float = 0.5, iterations: int = 50
) -> Calibration:
    """Logistic regression of same/different on the score (Newton's method), with the
    classes weighted to the prior ``p_target`` and a tiny ridge so separable data stays finite."""
    target, nontarget = _check(target, nontarget)
    x = np.concatenate([target, nontarget])
    y = np.concatenate([np.ones(target.size), np.zeros(nontarget.size)])
    w = np.where(y == 1, p_target / target.size, (1 - p_target) / nontarget.size)
    X = np.stack([x, np.ones_like(x)], axis=1)
    theta = np.zeros(2)
    ridge = 1e-4 * np.eye(2)
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(X @ theta, -50, 50)))
        grad = X.T @ (w * (p - y)) + ridge @ theta
        hess = X.T @ (X * (w * p * (1 - p))[:, None]) + ridge
        step = np.linalg.solve(hess, grad)
        theta -= step
        if np.abs(step).max() < 1e-9:
            break
    return Calibration(float(theta[0]), float(theta[1]))

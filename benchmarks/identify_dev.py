"""How far identify's open-set figure depends on the set of voices, on dev trials only.

identify raises its threshold with the gallery's size so that a stranger is named at most
``IDENTIFY_FAR`` (1 in 100) of the time, reading the dev trials' score tail
(``whichvoice.verification.identification_threshold``). On the test pool that rate moved
from 0.04 % (draw 2) to 1.2 % (draw 3) of clean strangers named. This measures, on the dev
voices of ``benchmarks/verify.py`` (scored as it scores them: prototypes, best prototype):

1. which pairs of voices make the clean clips that pass the threshold for 24 voices against
   a voice not their own (every dev voice enrolled), with the threshold set on every dev
   trial as the shipped calibration is;
2. cross-validation over the dev TTS voices: ``--splits`` times, the threshold and its tail
   set on half of them (and the human-dev speakers, as the shipped calibration pools them),
   and on the other half, half the voices enrolled and the rest strangers: the share of
   clean strangers named at each per-answer rate of ``--rates`` (1 in N), and of hard clips
   of enrolled voices rejected. Reported: the median and 90th percentile over the splits, and
   the share of splits naming more than 1 % (issue 6: 99 % of strangers rejected), with a
   Wilson interval.

Writes benchmarks/results/identify-dev.json.

    python benchmarks/identify_dev.py [--workdir DIR] [--encoder auto] [--splits 200]
        [--rates 100,200,500,1000]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
from human import joined_clips
from provenance import RESULTS, provenance, write_result
from verify import (
    CONDITIONS,
    TARGET_FAR,
    bundled_encoder,
    dev_calibration_trials,
    dev_voices,
    make_trials,
    synthesize,
)

from whichvoice.scoring import (
    identification_far,
    proportion,
    score_tail,
    tail_threshold,
    threshold_at_far,
)
from whichvoice.verification import IDENTIFY_FAR, load_encoder

GALLERY = 24  # the voices enrolled in verify.py's open-set figures


def raised(target: np.ndarray, nontarget: np.ndarray, rate: float, voices: int) -> float:
    """identify's threshold among ``voices`` voices for a per-answer stranger ``rate``, from
    these calibration trials (as ``identification_threshold`` reads a calibration)."""
    base = threshold_at_far(nontarget, TARGET_FAR)
    far = float(np.mean(nontarget >= base))
    f = identification_far(rate, voices)
    if voices > 1 and f < far:
        return max(base, tail_threshold(score_tail(target, nontarget, far), f))
    return base


def within(scores: np.ndarray, truth: np.ndarray, voices: np.ndarray) -> tuple:
    """Target and non-target scores of the clips of ``voices`` against ``voices`` alone."""
    keep = np.isin(truth, voices)
    s, t = scores[keep][:, voices], truth[keep]
    same = t[:, None] == voices[None, :]
    return s[same], s[~same]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--encoder", default="auto")
    parser.add_argument("--splits", type=int, default=200)
    parser.add_argument("--rates", default="100,200,500,1000", help="1 in N strangers named")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the corpora here")
    parser.add_argument("--json", type=Path, default=RESULTS / "identify-dev.json")
    args = parser.parse_args()
    made = provenance()
    rates = [int(x) for x in args.rates.split(",")]
    recipe = json.loads((bundled_encoder() / "recipe.json").read_text())
    encoder = load_encoder(args.encoder)
    with contextlib.ExitStack() as stack:
        work = args.workdir or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="whichvoice-identify-"))
        )
        dev_files = synthesize(work / "dev", dev_voices(recipe, 48), "dev", 40)
        dev = make_trials(dev_files, work / "dev-trials", 10)
        human = make_trials(joined_clips(work / "human-clips", 60, 6), work / "human-trials", 10)
        scored: dict = {}
        pooled, _ = dev_calibration_trials(encoder, dev, human, scored)
    names = sorted(dev["enroll"])  # the score matrices' columns
    # 1. the pairs behind the clips that pass the 24-voice threshold against another voice
    threshold = raised(pooled.target, pooled.nontarget, IDENTIFY_FAR, GALLERY)
    scores, truth = scored[("tts", "clean")]
    others = scores.copy()
    others[np.arange(len(truth)), truth] = -np.inf
    best = others.argmax(axis=1)
    passed = others[np.arange(len(truth)), best] >= threshold
    pairs = Counter((names[truth[i]], names[best[i]]) for i in np.flatnonzero(passed))
    # 2. cross-validation over halves of the dev voices
    rng = np.random.default_rng(46)
    n = len(names)
    human_trials = [within(*scored[("human", c)], np.arange(scored[("human", c)][0].shape[1]))
                    for c in CONDITIONS]  # fmt: skip
    named: dict[int, list[float]] = {r: [] for r in rates}
    hard_rejected: dict[int, list[float]] = {r: [] for r in rates}
    for _ in range(args.splits):
        order = rng.permutation(n)
        calib, held = np.sort(order[: n // 2]), order[n // 2 :]
        enrolled = np.sort(held[: len(held) // 2])
        parts = [within(*scored[("tts", c)], calib) for c in CONDITIONS] + human_trials
        target = np.concatenate([p[0] for p in parts])
        nontarget = np.concatenate([p[1] for p in parts])
        clean_s, clean_t = scored[("tts", "clean")]
        hard_s, hard_t = scored[("tts", "hard")]
        strangers = np.isin(clean_t, held) & ~np.isin(clean_t, enrolled)
        known = np.isin(hard_t, enrolled)
        for r in rates:
            thr = raised(target, nontarget, 1 / r, len(enrolled))
            named[r].append(float(np.mean(clean_s[strangers][:, enrolled].max(axis=1) >= thr)))
            sub = hard_s[known][:, enrolled]
            right = enrolled[sub.argmax(axis=1)] == hard_t[known]
            hard_rejected[r].append(float(np.mean(~(right & (sub.max(axis=1) >= thr)))))
    report = {
        "benchmark": "identify_dev",
        **made,
        "command": "python benchmarks/identify_dev.py " + " ".join(sys.argv[1:]),
        "split": "dev only: the dev pool's TTS voices (and the human-dev speakers in the "
        "calibration trials)",
        "encoder": args.encoder,
        "dev_voices": n,
        "gallery": GALLERY,
        "threshold": threshold,
        "clean_clips": len(truth),
        "passing_clips": proportion(int(passed.sum()), len(truth)),
        "passing_pairs": [
            {"voice": a, "named_as": b, "clips": k} for (a, b), k in pairs.most_common()
        ],
        "splits": args.splits,
        "split_voices": {
            "calibration": n // 2,
            "enrolled": (n - n // 2) // 2,
            "strangers": n - n // 2 - (n - n // 2) // 2,
        },
        "rates": {
            f"1/{r}": {
                "strangers_named_median": float(np.median(named[r])),
                "strangers_named_p90": float(np.percentile(named[r], 90)),
                "splits_over_1pct": proportion(int(np.sum(np.array(named[r]) > 0.01)), args.splits),
                "hard_rejected_median": float(np.median(hard_rejected[r])),
            }
            for r in rates
        },
    }
    write_result(args.json, report)
    print(f"{int(passed.sum())} of {len(truth)} clean clips pass {threshold:.3f} against "
          f"another voice; pairs: {pairs.most_common(5)}")  # fmt: skip
    for r, x in report["rates"].items():
        print(f"{r}: named median {100 * x['strangers_named_median']:.2f} %, 90th percentile "
              f"{100 * x['strangers_named_p90']:.2f} %, splits over 1 % "
              f"{100 * x['splits_over_1pct']['value']:.0f} %, hard rejected "
              f"{100 * x['hard_rejected_median']:.1f} %")  # fmt: skip


if __name__ == "__main__":
    main()

"""Verification per engine family, on the test voices of the engines added in issue 19 (MBROLA,
RHVoice, SVOX Pico, piper, hibari) and random espeak-ng variants of the test pool, under the
evaluation protocol (docs/evaluation.md).

Every encoder compared (the bundled one or ``--model RUN``, resemblyzer, dvector, auto) takes
its threshold from the same dev trials and by the same rule as ``benchmarks/verify.py`` (its
dev corpus is shared when ``--workdir`` is the same). Each test voice
(``whichvoice.protocol.ENGINE_VOICES["test"]``, plus ``--espeak-voices`` of the test pool)
reads ``--per-voice`` test-pool sentences; 3 clips cut to 3 s enroll it, every other clip is
scored against every enrolled voice. A family's trials are its clips against its own voice
(targets) and against every other voice, and every other clip against its voices (non-targets).
Conditions: ``clean`` and ``hard`` (the middle 1.5 s with noise at 10 dB). With 1 to 3 voices a
family, the 95 % intervals come from a bootstrap over clips: they speak of these voices' clips,
not of every voice of the family.
Writes benchmarks/results/families.json.

    python benchmarks/families.py [--per-voice 63] [--espeak-voices 16] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from provenance import RESULTS, provenance, write_result
from verify import (
    TARGET_FAR,
    THRESHOLD_RULE,
    dev_calibration_trials,
    dev_voices,
    make_trials,
    score_matrix,
    sha256s,
    synthesize,
)

from whichvoice.corpus import read_manifest
from whichvoice.protocol import ENGINE_VOICES, pool_sentences, pool_voices
from whichvoice.scoring import eer, proportion, threshold_at_far
from whichvoice.sentences import bundled_sentences
from whichvoice.verification import bundled_encoder, load_encoder

CONDITIONS = ("clean", "hard")


def family_of(voice: str) -> str:
    return voice.split(":", 1)[0]


def family_trials(
    scores: np.ndarray,
    truth: np.ndarray,
    voices: list[str],
    family: str,
    rows: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(target scores, non-target scores) of one family; ``rows`` resamples the clips."""
    if rows is not None:
        scores, truth = scores[rows], truth[rows]
    fam = np.array([family_of(v) == family for v in voices])
    same = np.zeros_like(scores, bool)
    same[np.arange(len(truth)), truth] = True
    clip_in = fam[truth][:, None]
    involved = clip_in | fam[None, :]
    return scores[same & clip_in], scores[~same & involved]


def family_figures(scores, truth, voices, family, threshold, resamples) -> dict:
    target, nontarget = family_trials(scores, truth, voices, family)
    rng = np.random.default_rng(0)
    boot = []
    for _ in range(resamples):
        t, n = family_trials(scores, truth, voices, family, rng.integers(0, len(truth), len(truth)))
        if t.size and n.size:
            boot.append(eer(t, n)[0])
    return {
        "voices": sorted(v for v in voices if family_of(v) == family),
        "eer": eer(target, nontarget)[0],
        "eer_ci95": [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))],
        "target_trials": int(target.size),
        "nontarget_trials": int(nontarget.size),
        "at_dev_threshold": {
            "false_rejection": proportion(int((target < threshold).sum()), target.size),
            "false_acceptance": proportion(int((nontarget >= threshold).sum()), nontarget.size),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="encoder run [bundled]")
    parser.add_argument("--dev-voices", type=int, default=48, help="as benchmarks/verify.py")
    parser.add_argument("--dev-per-voice", type=int, default=40, help="as benchmarks/verify.py")
    parser.add_argument("--per-voice", type=int, default=3 + 60, help="test clips a voice")
    parser.add_argument("--espeak-voices", type=int, default=16)
    parser.add_argument("--dev-channel-clips", type=int, default=10, help="as benchmarks/verify.py")
    parser.add_argument("--human-clips", type=int, default=60, help="as benchmarks/verify.py")
    parser.add_argument("--resamples", type=int, default=300)
    parser.add_argument("--encoders", default="whichvoice,resemblyzer,dvector,auto")
    parser.add_argument("--json", type=Path, default=RESULTS / "families.json")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the corpora here")
    args = parser.parse_args()
    made = provenance()

    root = args.model or bundled_encoder()
    recipe = json.loads((Path(root) / "recipe.json").read_text())
    dev_ids = dev_voices(recipe, args.dev_voices)
    test_voices = list(ENGINE_VOICES["test"]) + pool_voices("test", args.espeak_voices)
    with contextlib.ExitStack() as stack:
        work = args.workdir or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="whichvoice-families-"))
        )
        dev_files = synthesize(work / "dev", dev_ids, "dev", args.dev_per_voice)
        test_files = synthesize(work / "families-test", test_voices, "test", args.per_voice)
        texts = {c.text for c in read_manifest(work / "families-test" / "manifest.jsonl")}
        leaks = {
            "test_clips_whose_sha256_is_a_dev_clip": len(
                sha256s(p for ps in test_files.values() for p in ps)
                & sha256s(p for ps in dev_files.values() for p in ps)
            ),
            "test_voices_trained_on": len(set(test_files) & set(recipe["training_voices"])),
            "test_voices_in_dev": len(set(test_files) & set(dev_files)),
            "test_sentences_bundled": len(texts & {s.text for s in bundled_sentences()}),
            "test_sentences_in_dev_pool": len(
                texts & {s.text for s in pool_sentences("dev", 10_000)}
            ),
        }  # fmt: skip
        if any(leaks.values()):
            sys.exit(f"the pools overlap: {leaks}")
        dev = make_trials(dev_files, work / "dev-trials", args.dev_channel_clips)
        from human import joined_clips  # here: human.py imports verify, as this module does

        human = make_trials(
            joined_clips(work / "human-clips", args.human_clips, 6),
            work / "human-trials",
            args.dev_channel_clips,
        )
        test = make_trials(test_files, work / "families-trials", 0)
        names = [n.strip() for n in args.encoders.split(",") if n.strip()]
        encoders = {n: load_encoder((args.model or n) if n == "whichvoice" else n) for n in names}
        results: dict = {}
        voices = sorted(test["enroll"])
        families = sorted({family_of(v) for v in voices})
        for name, encoder in encoders.items():
            dev_trials, _ = dev_calibration_trials(encoder, dev, human)
            threshold = threshold_at_far(dev_trials.nontarget, TARGET_FAR)
            results[name] = {"dev_threshold": threshold}
            for condition in CONDITIONS:
                scores, truth = score_matrix(encoder, test, condition)
                results[name][condition] = {
                    f: family_figures(scores, truth, voices, f, threshold, args.resamples)
                    for f in families
                }
                for f, r in results[name][condition].items():
                    print(f"{name} {condition} {f}: EER {100 * r['eer']:.2f} % "
                          f"[{100 * r['eer_ci95'][0]:.2f}, {100 * r['eer_ci95'][1]:.2f}] "
                          f"on {r['target_trials']} target trials", flush=True)  # fmt: skip
    report = {
        "benchmark": "families",
        **made,
        "command": "python benchmarks/families.py " + " ".join(sys.argv[1:]),
        "protocol": "docs/evaluation.md",
        "encoder": str(root),
        "dev_voices": sorted(dev["enroll"]),
        "test_voices": voices,
        "test_clips_per_voice": args.per_voice,
        "threshold_rule": THRESHOLD_RULE,
        "interval": "bootstrap over test clips (1-3 voices a family)",
        "leakage": leaks,
        "results": results,
    }
    write_result(args.json, report)
    print(f"-> {args.json}")


if __name__ == "__main__":
    main()

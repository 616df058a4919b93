"""Adaptive score normalisation (AS-norm) against a cohort: does it help, on dev trials only?

For every trial of an enrolled voice ``e`` and a test clip ``t`` with cosine ``s``, AS-norm
compares ``s`` with the ``--top`` highest cosines of ``e`` and of ``t`` against a cohort of
other voices' clips: ``s' = ((s - mean_e) / std_e + (s - mean_t) / std_t) / 2``. It removes
what makes some voices or clips score high against everyone. The cohort: clips of voices the
bundled encoder was trained on (``recipe.json``'s training voices: espeak-ng variants and
recorded flite/festival speakers) reading training sentences, never a dev or test voice. No
human cohort exists here (the only human recordings are the dev speakers themselves), so the
human trials are normalised against TTS voices: that mismatch is part of what this measures.

Trials: the dev pool's TTS voices (whole clips and hard ones, as ``benchmarks/verify.py`` makes
them) and the human-dev speakers (as ``benchmarks/human.py`` joins them). For each encoder, the
EER with and without AS-norm, with 95 % intervals from a bootstrap over voices.

The rule (fixed before any figure was seen): AS-norm is worth using for an encoder when, on
every kind of trial, ``(EER with + 0.1 %) / (EER without + 0.1 %) <= 0.9``.
Writes benchmarks/results/snorm-dev.json.

    python benchmarks/snorm.py [--workdir DIR] [--cohort-voices 120] [--top 50]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import sys
import tempfile
from pathlib import Path

import numpy as np
from human import joined_clips
from provenance import RESULTS, provenance, write_result
from verify import dev_voices, embeddings, make_trials, synthesize

from whichvoice.corpus import SynthConfig, read_manifest, synthesize_corpus
from whichvoice.scoring import eer, voice_bootstrap
from whichvoice.sentences import bundled_sentences
from whichvoice.verification import bundled_encoder, load_encoder

EPS = 0.001
MAX_RATIO = 0.9


def cohort_clips(folder: Path, voices: list[str], per_voice: int) -> list[Path]:
    """``per_voice`` clips of each cohort voice reading bundled (training) sentences (only
    those: a kept folder may hold an earlier run's other voices, or more clips of them)."""
    summary = synthesize_corpus(
        folder,
        bundled_sentences(),
        SynthConfig(voices=(",".join(voices),), assign="sample", per_voice=per_voice, seed=11),
        progress=False,
    )
    print(f"cohort: {summary.line()}", flush=True)
    by_voice: dict[str, list[Path]] = {v: [] for v in voices}
    for c in read_manifest(folder / "manifest.jsonl"):
        if c.voice in by_voice and len(by_voice[c.voice]) < per_voice:
            by_voice[c.voice].append(folder / c.path)
    return sorted(p for paths in by_voice.values() for p in paths)


def top_stats(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of each row's ``k`` highest scores."""
    top = -np.sort(-scores, axis=1)[:, :k]
    return top.mean(1), np.maximum(top.std(1), 1e-6)


def trial_scores(encoder, trials: dict, condition: str, cohort: np.ndarray, k: int):
    """(raw scores, AS-norm scores), both (n_clips, n_voices), and each clip's voice."""
    voices = sorted(trials["enroll"])
    refs = np.stack([embeddings(encoder, trials["enroll"][v]).mean(0) for v in voices])
    refs /= np.linalg.norm(refs, axis=1, keepdims=True)
    pairs = trials[condition]
    tests = embeddings(encoder, [p for _, p in pairs])
    tests /= np.linalg.norm(tests, axis=1, keepdims=True)
    raw = tests @ refs.T
    mean_e, std_e = top_stats(refs @ cohort.T, k)
    mean_t, std_t = top_stats(tests @ cohort.T, k)
    normed = 0.5 * ((raw - mean_e[None]) / std_e[None] + (raw - mean_t[:, None]) / std_t[:, None])
    return raw, normed, np.array([voices.index(v) for v, _ in pairs])


def eer_of(scores: np.ndarray, truth: np.ndarray, resamples: int) -> dict:
    same = np.zeros_like(scores, bool)
    same[np.arange(len(truth)), truth] = True
    ci = voice_bootstrap(scores, truth, resamples=resamples)
    return {"eer": eer(scores[same], scores[~same])[0], "eer_ci95": ci["eer"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--encoders", default="whichvoice,resemblyzer,dvector,auto")
    parser.add_argument("--cohort-voices", type=int, default=120)
    parser.add_argument("--cohort-clips", type=int, default=3, help="per cohort voice")
    parser.add_argument("--top", type=int, default=50, help="cohort scores kept (AS-norm's K)")
    parser.add_argument("--dev-voices", type=int, default=48, help="as benchmarks/verify.py")
    parser.add_argument("--dev-per-voice", type=int, default=40, help="as benchmarks/verify.py")
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument("--json", type=Path, default=RESULTS / "snorm-dev.json")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the corpora here")
    args = parser.parse_args()
    made = provenance()
    recipe = json.loads((bundled_encoder() / "recipe.json").read_text())
    cohort_voices = random.Random(0).sample(recipe["training_voices"], args.cohort_voices)
    with contextlib.ExitStack() as stack:
        work = args.workdir or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="whichvoice-snorm-"))
        )
        dev_ids = dev_voices(recipe, args.dev_voices)
        if set(dev_ids) & set(cohort_voices):
            sys.exit("the cohort shares voices with the dev pool")
        tts = make_trials(
            synthesize(work / "dev", dev_ids, "dev", args.dev_per_voice), work / "dev-trials", 0
        )
        human = make_trials(joined_clips(work / "human-clips", 60, 6), work / "human-trials", None)
        kinds = {"tts": (tts, "clean"), "tts-hard": (tts, "hard"), "human": (human, "clean")}
        cohort = cohort_clips(work / "cohort", cohort_voices, args.cohort_clips)
        rows: dict[str, dict] = {}
        for name in args.encoders.split(","):
            encoder = load_encoder(name)  # "whichvoice": the bundled encoder
            c = embeddings(encoder, cohort)
            c /= np.linalg.norm(c, axis=1, keepdims=True)
            row: dict = {}
            for kind, (trials, condition) in kinds.items():
                raw, normed, truth = trial_scores(encoder, trials, condition, c, args.top)
                row[kind] = {
                    "raw": eer_of(raw, truth, args.resamples),
                    "as_norm": eer_of(normed, truth, args.resamples),
                }
                ratio = (row[kind]["as_norm"]["eer"] + EPS) / (row[kind]["raw"]["eer"] + EPS)
                row[kind]["ratio"] = ratio
                print(f"{name} {kind}: EER {100 * row[kind]['raw']['eer']:.2f} % raw, "
                      f"{100 * row[kind]['as_norm']['eer']:.2f} % AS-norm", flush=True)  # fmt: skip
            row["helps"] = all(row[k]["ratio"] <= MAX_RATIO for k in kinds)
            rows[name] = row
    report = {
        "benchmark": "snorm",
        **made,
        "command": "python benchmarks/snorm.py " + " ".join(sys.argv[1:]),
        "split": "dev only: the dev pool's TTS voices and the human-dev speakers",
        "cohort": {
            "voices": len(cohort_voices),
            "clips": len(cohort),
            "from": "the bundled encoder's training voices reading training sentences",
            "top": args.top,
        },
        "rule": f"AS-norm helps when (EER with + 0.1 %) / (EER without + 0.1 %) <= {MAX_RATIO} "
        "on every kind of trial",
        "encoders": rows,
    }
    write_result(args.json, report)
    print("helps: " + ", ".join(f"{n} {r['helps']}" for n, r in rows.items()))


if __name__ == "__main__":
    main()

"""Verification and open-set identification on voices unseen in training: the bundled encoder
(or ``--model RUN``) and the pretrained resemblyzer encoder, on the same trials.

Voices: the encoder's held-out voices (``recipe.json``: espeak-ng variants never trained on in
any accent, and recorded speakers no training voice shares), each reading sentences drawn
with another seed than the recipe's. Each voice is enrolled from 3 clean clips cut to 3 s of
speech; every other clip is a test clip, scored against every enrolled voice:

- ``clean``: the test clips as synthesized (2-5 s);
- ``hard``: the middle 1.5 s of each test clip's speech, with white noise at 10 dB SNR;
- ``tel8k``, ``mp3-24k``, ``reverb``: each test clip through a telephone channel (300-3400 Hz,
  clipped, 8 kHz), a 24 kbit/s mp3 or a room (RT60 0.6 s), as ``evaluate --conditions`` makes
  them, while the voices stay enrolled from clean clips (a channel unlike the enrollment's).

Per condition: EER, minDCF at p_target 0.01 and 0.05; and open-set identification with the
encoder's stored threshold (what `whichvoice identify` does): the voices are split in two
(seeded, several times), one half enrolled and the other "unknown": the share of unknown
voices' clips rejected ("unknown"), of enrolled voices' clips rejected (false rejection) and
identified as another enrolled voice. Writes benchmarks/results/verify.json.

    python benchmarks/verify.py [--model RUN] [--per-voice 100] [--splits 10] [--no-resemblyzer]
        [--workdir DIR]

``--workdir`` keeps the synthesized corpus there (a rerun with the same held-out voices and
``--per-voice`` synthesizes nothing again); by default it lives in a temporary folder.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from whichvoice.audio import SAMPLE_RATE, encode_audio, read_audio, resample
from whichvoice.augment import degrade, white_noise
from whichvoice.corpus import SynthConfig, synthesize_corpus
from whichvoice.errors import WhichvoiceError
from whichvoice.features import FeatureConfig, trim_silence
from whichvoice.files import write_atomic
from whichvoice.scoring import eer, min_dcf
from whichvoice.sentences import bundled_sentences
from whichvoice.verification import (
    bundled_encoder,
    calibration_of,
    held_out_files,
    load_encoder,
)

ENROLL = 3  # clips per enrolled voice
ENROLL_S = 3.0  # s of speech in each enrollment clip
HARD_S = 1.5  # s of speech in a hard test clip
HARD_SNR_DB = 10.0
CHANNELS = ("tel8k", "mp3-24k", "reverb")  # conditions of whichvoice.augment.degrade
CONDITIONS = ("clean", "hard", *CHANNELS)
SEED = 1234  # sentences drawn unlike the recipe's (seed 0)
TARGETS = {  # the targets for the bundled encoder
    "clean": {
        "eer": 0.001,
        "min_dcf_0.01": 0.05,
        "unknown_rejected": 0.99,
        "false_rejection": 0.01,
    },
    "hard": {"eer": 0.03},
}


def speech_cut(wave: np.ndarray, rate: int, seconds: float, middle: bool) -> np.ndarray:
    """``seconds`` of a clip's speech (silence trimmed), from its start or its middle, 16 kHz."""
    speech = trim_silence(resample(wave, rate, SAMPLE_RATE), FeatureConfig())
    n = int(seconds * SAMPLE_RATE)
    if speech.shape[0] <= n:
        return speech
    start = (speech.shape[0] - n) // 2 if middle else 0
    return speech[start : start + n]


def make_trials(files: dict[str, list[Path]], folder: Path) -> dict:
    """Enrollment and test clips on disk (wav): {"enroll": {voice: [paths]}, and per condition
    [(voice, path)]}."""
    rng = np.random.default_rng(SEED)
    out: dict = {"enroll": {}, **{c: [] for c in CONDITIONS}}
    for voice in sorted(files):
        paths = sorted(files[voice])
        if len(paths) <= ENROLL:
            continue
        safe = voice.replace(":", "_").replace("+", "_")
        out["enroll"][voice] = []
        for i, p in enumerate(paths[:ENROLL]):
            wave, rate = read_audio(p)
            dest = folder / f"{safe}-enroll{i}.wav"
            dest.write_bytes(
                encode_audio(speech_cut(wave, rate, ENROLL_S, False), SAMPLE_RATE, "wav")
            )
            out["enroll"][voice].append(dest)
        for i, p in enumerate(paths[ENROLL:]):
            out["clean"].append((voice, p))
            wave, rate = read_audio(p)
            hard = white_noise(speech_cut(wave, rate, HARD_S, True), HARD_SNR_DB, rng)
            hard /= max(1.0, float(np.abs(hard).max()))
            dest = folder / f"{safe}-hard{i}.wav"
            dest.write_bytes(encode_audio(hard, SAMPLE_RATE, "wav"))
            out["hard"].append((voice, dest))
            for c in CHANNELS:  # each clip its own seeded room, the same on every run
                dest = folder / f"{safe}-{c}{i}.wav"
                dest.write_bytes(degrade(c, wave, rate, seed=len(out[c])))
                out[c].append((voice, dest))
    return out


def embeddings(encoder, paths: list[Path]) -> np.ndarray:
    rows = []
    for p, e in zip(paths, encoder.embed_many(paths), strict=True):
        if isinstance(e, WhichvoiceError):
            raise SystemExit(f"{p}: {e}")
        rows.append(e[0])
    return np.stack(rows)


def open_set(
    scores: np.ndarray, truth: np.ndarray, threshold: float, splits: int
) -> dict[str, float]:
    """Half the voices enrolled, half unknown, ``splits`` seeded times; rates over all clips.
    ``scores``: (n_clips, n_voices) against every voice; ``truth``: each clip's voice index."""
    rng = np.random.default_rng(SEED)
    n = scores.shape[1]
    unknown_ok = unknown_n = false_rej = wrong = enrolled_n = 0
    for _ in range(splits):
        enrolled = np.zeros(n, bool)
        enrolled[rng.permutation(n)[: n // 2]] = True
        idx = np.flatnonzero(enrolled)
        sub = scores[:, idx]
        best = sub.argmax(1)
        accepted = sub[np.arange(len(sub)), best] >= threshold
        known = enrolled[truth]
        unknown_ok += int((~accepted[~known]).sum())
        unknown_n += int((~known).sum())
        false_rej += int((~accepted[known]).sum())
        wrong += int((accepted[known] & (idx[best[known]] != truth[known])).sum())
        enrolled_n += int(known.sum())
    return {
        "unknown_rejected": unknown_ok / max(unknown_n, 1),
        "false_rejection": false_rej / max(enrolled_n, 1),
        "misidentified": wrong / max(enrolled_n, 1),
        "unknown_clips": unknown_n,
        "enrolled_clips": enrolled_n,
    }


def measure(name: str, encoder, trials: dict, threshold: float, splits: int) -> dict:
    voices = sorted(trials["enroll"])
    t0 = time.perf_counter()
    refs = []
    for v in voices:
        mean = embeddings(encoder, trials["enroll"][v]).mean(0)
        refs.append(mean / np.linalg.norm(mean))
    refs = np.stack(refs)
    result: dict = {"threshold": threshold, "voices": len(voices)}
    n_clips = sum(len(v) for v in trials["enroll"].values())
    for condition in CONDITIONS:
        pairs = trials[condition]
        emb = embeddings(encoder, [p for _, p in pairs])
        n_clips += len(pairs)
        truth = np.array([voices.index(v) for v, _ in pairs])
        scores = emb @ refs.T
        same = np.zeros_like(scores, bool)
        same[np.arange(len(truth)), truth] = True
        target, nontarget = scores[same], scores[~same]
        rate, at = eer(target, nontarget)
        result[condition] = {
            "eer": rate,
            "eer_threshold": at,
            "min_dcf_0.01": min_dcf(target, nontarget, 0.01)[0],
            "min_dcf_0.05": min_dcf(target, nontarget, 0.05)[0],
            "target_trials": int(target.size),
            "nontarget_trials": int(nontarget.size),
            **open_set(scores, truth, threshold, splits),
        }
    seconds = time.perf_counter() - t0
    result["embed_clips_per_s"] = round(n_clips / seconds, 1)
    print(
        f"{name}: "
        + "; ".join(
            f"{c}: EER {100 * result[c]['eer']:.2f} %, minDCF(0.01) "
            f"{result[c]['min_dcf_0.01']:.3f}, unknown rejected "
            f"{100 * result[c]['unknown_rejected']:.1f} %, false rejection "
            f"{100 * result[c]['false_rejection']:.1f} %"
            for c in CONDITIONS
        )
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="encoder run [bundled]")
    parser.add_argument("--per-voice", type=int, default=100, help="clips per voice")
    parser.add_argument("--splits", type=int, default=10, help="enrolled/unknown splits")
    parser.add_argument("--no-resemblyzer", action="store_true")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the corpus here")
    args = parser.parse_args()

    root = args.model or bundled_encoder()
    recipe = json.loads((Path(root) / "recipe.json").read_text())
    held = recipe["held_out_voices"]
    with contextlib.ExitStack() as stack:
        if args.workdir is None:
            tmp = Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="whichvoice-verify-"))
            )
        else:
            key = hashlib.sha256("\n".join(held).encode()).hexdigest()[:12]
            tmp = args.workdir / f"{key}-{args.per_voice}"
        corpus = tmp / "corpus"
        synth = synthesize_corpus(
            corpus,
            bundled_sentences(),
            SynthConfig(
                voices=(",".join(held),), assign="sample", per_voice=args.per_voice, seed=SEED
            ),
            progress=False,
        )
        print(synth.line())
        clips = tmp / "clips"
        clips.mkdir(exist_ok=True)
        trials = make_trials(held_out_files(corpus, held), clips)
        encoder = load_encoder(args.model)
        results = {
            "whichvoice": {
                "model": str(root),
                **measure("whichvoice", encoder, trials, calibration_of(encoder)[0], args.splits),
            }
        }
        if not args.no_resemblyzer:
            try:
                other = load_encoder("resemblyzer")
            except WhichvoiceError as e:
                results["resemblyzer"] = {"error": str(e)}
                print(f"resemblyzer: {e}")
            else:
                results["resemblyzer"] = measure(
                    "resemblyzer", other, trials, calibration_of(other)[0], args.splits
                )
    ours = results["whichvoice"]
    met = {
        f"{c}.{k}": (ours[c][k] >= v if k == "unknown_rejected" else ours[c][k] <= v)
        for c, limits in TARGETS.items()
        for k, v in limits.items()
    }
    report = {
        "benchmark": "verify",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "voices": held,
        "clips_per_voice": args.per_voice,
        "enroll": {"clips": ENROLL, "seconds": ENROLL_S},
        "hard": {"seconds": HARD_S, "white_noise_snr_db": HARD_SNR_DB},
        "channels": list(CHANNELS),
        "results": results,
        "targets": TARGETS,
        "targets_met": met,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_atomic(args.out / "verify.json", (json.dumps(report, indent=2) + "\n").encode())
    print(f"targets met: {sum(met.values())}/{len(met)} -> {args.out / 'verify.json'}")


if __name__ == "__main__":
    main()

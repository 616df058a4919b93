"""The recording quality measures (``whichvoice.quality``) on dev clips: the SNR estimate's
offset, and how often each warning is raised on clean clips and under each of the
evaluation suite's conditions.

Dev clips only (nothing here is a test figure): dev-pool espeak-ng variants and the other
engines' dev voices (``protocol.ENGINE_VOICES["dev"]``) reading dev-pool sentences, and the
human-dev speakers' digits joined into ~3 s clips (``human.joined_clips``).

1. *The offset*: each clip mixed with white and with pink noise at 5, 10, 15 and 20 dB SNR
   (the speech's active level over the noise's, as ``whichvoice.conditions`` mixes); the
   median of (the spread of its frame levels - the mixing SNR) is the offset that
   ``quality.snr_db`` takes off the spread (``SPREAD_OFFSET_DB``, rounded to 0.5 dB). Also
   the estimate's error at each SNR, with the offset applied.
2. *Warnings by condition*: every condition of the evaluation suite (``whichvoice.conditions``,
   code the training never shared) made of each clip and decoded as a user's file is: the
   share of clips that each warning (noisy, clipped, narrow band) is raised on, with its
   Wilson interval. The clean row is the false alarms.

Writes benchmarks/results/quality-measures.json.

    python benchmarks/quality_measures.py [--workdir DIR] [--per-voice 4]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from pathlib import Path

import numpy as np
from corpora import voice_clips
from human import joined_clips
from provenance import RESULTS, provenance, write_result

from whichvoice import conditions, quality
from whichvoice.audio import read_audio
from whichvoice.conditions import CONDITIONS
from whichvoice.protocol import ENGINE_VOICES, pool_sentences, pool_voices
from whichvoice.scoring import wilson

SNRS = (5.0, 10.0, 15.0, 20.0)


def _noise(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    noise = rng.standard_normal(n)
    if kind == "pink":  # power falling 3 dB an octave
        spectrum = np.fft.rfft(noise) / np.sqrt(np.arange(1, n // 2 + 2))
        noise = np.fft.irfft(spectrum, n)
    return noise.astype(np.float32)


def _mixed(wave: np.ndarray, rate: int, noise: np.ndarray, snr: float) -> np.ndarray:
    # the conditions' own mixing (active speech power over the noise's)
    return conditions._mix(wave, rate, noise, snr)


def _spread(wave: np.ndarray, rate: int) -> float | None:
    est = quality.snr_db(wave, rate)
    return None if est is None else est + quality.SPREAD_OFFSET_DB


def offset(clips: list[Path]) -> dict:
    rng = np.random.default_rng(0)
    rows: list[tuple[str, float, float]] = []
    for path in clips:
        wave, rate = read_audio(path)
        for kind in ("white", "pink"):
            for snr in SNRS:
                spread = _spread(_mixed(wave, rate, _noise(kind, wave.shape[0], rng), snr), rate)
                if spread is not None:
                    rows.append((kind, snr, spread - snr))
    over = np.array([r[2] for r in rows])
    median = float(np.median(over))
    errors = {}
    for snr in SNRS:
        e = np.array([r[2] for r in rows if r[1] == snr]) - quality.SPREAD_OFFSET_DB
        errors[f"{snr:g} dB"] = {
            "n": int(e.shape[0]),
            "median_error_db": round(float(np.median(e)), 2),
            "p5_p95_db": [round(float(x), 2) for x in np.percentile(e, [5, 95])],
        }
    return {
        "mixtures": len(rows),
        "median_spread_over_snr_db": round(median, 2),
        "shipped_offset_db": quality.SPREAD_OFFSET_DB,
        "offset_rounded_to_half_db": round(2 * median) / 2,
        "estimate_error_with_shipped_offset": errors,
    }


def warnings_by_condition(clips: list[Path]) -> dict:
    out = {}
    for name in CONDITIONS:
        if name == "long":
            continue
        counts = {"noisy": 0, "clipped": 0, "narrow band": 0}
        n = 0
        for i, path in enumerate(clips):
            wave, rate = read_audio(path)
            try:
                made, made_rate = read_audio(conditions.make(name, wave, rate, seed=i))
            except Exception as e:  # a condition that cannot be made of a clip: said, not fatal
                print(f"{name} {path.name}: {e}", file=sys.stderr)
                continue
            q = quality.measure(made, made_rate, speech_s=10.0)
            n += 1
            for w in q.warnings:
                kind = w.split(":")[0]
                counts[kind] += 1
        out[name] = {
            "clips": n,
            **{
                k: {"k": v, "share": round(v / n, 4) if n else None,
                    "ci95": [round(x, 4) for x in wilson(v, n)] if n else None}
                for k, v in counts.items()
            },
        }  # fmt: skip
        print(name, {k: v for k, v in counts.items()}, "of", n, flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None, help="keep the clips here")
    parser.add_argument("--per-voice", type=int, default=4)
    parser.add_argument("--espeak-voices", type=int, default=12)
    parser.add_argument("--json", type=Path, default=RESULTS / "quality-measures.json")
    args = parser.parse_args()
    made = provenance()
    with contextlib.ExitStack() as stack:
        work = args.workdir or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        voices = pool_voices("dev", args.espeak_voices, start=70_000) + list(ENGINE_VOICES["dev"])
        tts = voice_clips(work / "dev", voices, pool_sentences("dev", 300), args.per_voice,
                          seed=5, label="dev")  # fmt: skip
        human = joined_clips(work / "human", args.per_voice, 6, seed=11)
        clips = {
            "tts": [p for v in sorted(tts) for p in tts[v]],
            "human": [p for v in sorted(human) for p in human[v]],
        }
        report = {
            "benchmark": "quality_measures",
            **made,
            "command": "python benchmarks/quality_measures.py " + " ".join(sys.argv[1:]),
            "clips": {k: len(v) for k, v in clips.items()},
            "voices": {"tts": sorted(tts), "human": sorted(human)},
            "thresholds": {
                "noisy_db": quality.NOISY_DB,
                "clipped_share": quality.CLIPPED_SHARE,
                "narrow_hz": quality.NARROW_HZ,
            },
            "offset": offset(clips["tts"] + clips["human"]),
            "by_condition": {k: warnings_by_condition(v) for k, v in clips.items()},
        }
    write_result(args.json, report)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

"""Embedding against the decode limit (issue 23): how fast verification (``embed_many``, what
enroll runs; verify and identify also measure each clip's quality from the one decode:
``tracing.embed_and_trace(measure=True)``, timed beside it) and diarization (``diarize``'s
window embeddings) go, divided by the decode limit of the same files measured in the same run.

- **Clips**: ``--clips`` mp3 files of 3-4 s (``benchmarks/limits.py``'s: the default8 voices
  reading test-pool sentences). Each encoder embeds all of them with ``embed_many`` (every
  core); the figure is clips/s, and its ratio to the decode limit (decode + resample alone
  over the same files in as many processes as there are cores, at most 2).
- **Recordings**: the same clips joined, with 0.1-1 s pauses, into ``--recordings`` mp3 files
  of about ``--recording-minutes`` each, diarized as far as their embeddings
  (``whichvoice.diarize.embed_windows``: speech detection, 1.5 s windows every 0.75 s, each
  embedded); the figure is seconds of audio a second, and its ratio to the decode limit of the
  same files in seconds of audio a second. The clustering after it is not counted here
  (``benchmarks/diarize.py`` reports the whole real-time factor).

Every figure is the median of ``--repeats`` runs taken in turn with the others. Target:
0.5x the decode limit on 2 cores. Writes benchmarks/results/embed-limits.json.

    python benchmarks/embed_limits.py [--workdir DIR] [--clips 600] [--encoders bundled,auto]
        [--recordings 2] [--recording-minutes 5] [--repeats 3]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from limits import decode_limit, make_clips
from provenance import RESULTS, provenance, write_result

TARGET = 0.5  # issue 23: verification and diarization embedding at >= 0.5x the decode limit


def make_recordings(clips: list[Path], folder: Path, n: int, minutes: float) -> list[Path]:
    """``n`` mp3 recordings (resumable) of about ``minutes`` each: the clips in turn, 16 kHz,
    with pauses of 0.1-1 s between them."""
    from whichvoice.audio import SAMPLE_RATE, encode_audio, read_audio, resample

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    out, k = [], 0
    for i in range(n):
        path = folder / f"recording-{i}.mp3"
        pieces, length = [], 0.0
        while length < 60 * minutes:
            wave, rate = read_audio(clips[k % len(clips)])
            k += 1
            pause = np.zeros(int(rng.uniform(0.1, 1.0) * SAMPLE_RATE), np.float32)
            pieces += [resample(wave, rate, SAMPLE_RATE), pause]
            length += (pieces[-2].shape[0] + pause.shape[0]) / SAMPLE_RATE
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(encode_audio(np.concatenate(pieces), SAMPLE_RATE, "mp3"))
            tmp.replace(path)
        out.append(path)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=600)
    parser.add_argument("--encoders", default="bundled,auto")
    parser.add_argument("--recordings", type=int, default=2)
    parser.add_argument("--recording-minutes", type=float, default=5.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=RESULTS / "embed-limits.json")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the audio here")
    args = parser.parse_args()
    made = provenance()

    import soundfile as sf

    from whichvoice.diarize import DiarizeConfig, embed_windows
    from whichvoice.encoders import load_encoder
    from whichvoice.errors import WhichvoiceError
    from whichvoice.tracing import embed_and_trace

    cores = min(len(os.sched_getaffinity(0)), 2)
    with contextlib.ExitStack() as stack:
        work = args.workdir or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="whichvoice-embed-limits-"))
        )
        clips = make_clips(work, args.clips)
        recordings = make_recordings(
            clips, work / "recordings", args.recordings, args.recording_minutes
        )
        clips_audio = sum(sf.info(str(p)).duration for p in clips)
        rec_audio = sum(sf.info(str(p)).duration for p in recordings)
        encoders = {name: load_encoder(name) for name in args.encoders.split(",")}
        cfg = DiarizeConfig()
        for encoder in encoders.values():  # warm-up: first-use exports, caches
            list(encoder.embed_many(clips[:20]))
        runs: dict[str, list[float]] = {}
        errors: dict[str, int] = {}
        for _ in range(args.repeats):  # in turn, so a noisy moment touches every figure
            runs.setdefault("decode limit, clips", []).append(decode_limit(clips, cores, 1))
            rate = decode_limit(recordings, cores, 1)  # recordings/s
            runs.setdefault("decode limit, recordings", []).append(
                rate * rec_audio / len(recordings)
            )
            for name, encoder in encoders.items():
                t0 = time.perf_counter()
                out = list(encoder.embed_many(clips))
                runs.setdefault(f"{name}, clips", []).append(
                    len(clips) / (time.perf_counter() - t0)
                )
                errors[f"{name}, clips"] = sum(isinstance(x, WhichvoiceError) for x in out)
                # what verify and identify run: one decode, measured for the answer's quality
                # (``tracing.embed_and_trace(measure=True)``), then the same embeddings
                t0 = time.perf_counter()
                list(embed_and_trace(encoder, None, clips, measure=True))
                runs.setdefault(f"{name}, clips measured", []).append(
                    len(clips) / (time.perf_counter() - t0)
                )
                t0 = time.perf_counter()
                windows = sum(len(embed_windows(p, encoder, cfg)[0].starts) for p in recordings)
                runs.setdefault(f"{name}, recordings", []).append(
                    rec_audio / (time.perf_counter() - t0)
                )
                errors[f"{name}, recordings"] = 0 if windows else 1
            print({k: round(v[-1], 1) for k, v in runs.items()}, flush=True)
    median = {k: statistics.median(v) for k, v in runs.items()}
    results = {}
    for name in encoders:
        results[name] = {
            "clips_per_s": round(median[f"{name}, clips"], 1),
            "clips_of_decode_limit": round(
                median[f"{name}, clips"] / median["decode limit, clips"], 3
            ),
            "clips_times_real_time": round(median[f"{name}, clips"] * clips_audio / len(clips), 1),
            "measured_clips_per_s": round(median[f"{name}, clips measured"], 1),
            "measured_clips_of_decode_limit": round(
                median[f"{name}, clips measured"] / median["decode limit, clips"], 3
            ),
            "recordings_times_real_time": round(median[f"{name}, recordings"], 1),
            "recordings_of_decode_limit": round(
                median[f"{name}, recordings"] / median["decode limit, recordings"], 3
            ),
            "clips_without_speech": errors[f"{name}, clips"],
            "runs": {
                "clips_per_s": [round(x, 1) for x in runs[f"{name}, clips"]],
                "measured_clips_per_s": [round(x, 1) for x in runs[f"{name}, clips measured"]],
                "recordings_times_real_time": [round(x, 1) for x in runs[f"{name}, recordings"]],
            },
        }
    report = {
        "benchmark": "embed_limits",
        **made,
        "command": "python benchmarks/embed_limits.py " + " ".join(sys.argv[1:]),
        "clips": len(clips),
        "clips_audio_seconds": round(clips_audio, 1),
        "recordings": len(recordings),
        "recordings_audio_seconds": round(rec_audio, 1),
        "cores": cores,
        "decode_limit": {
            "clips_per_s": round(median["decode limit, clips"], 1),
            "recordings_times_real_time": round(median["decode limit, recordings"], 1),
            "runs": {
                "clips_per_s": [round(x, 1) for x in runs["decode limit, clips"]],
                "recordings_times_real_time": [
                    round(x, 1) for x in runs["decode limit, recordings"]
                ],
            },
        },
        "method": f"median of {args.repeats} runs taken in turn; embed_many (clips), "
        "embed_and_trace(measure=True) (clips measured: what verify and identify run) and "
        "diarize's embed_windows (recordings), every core; the decode limit: decode + resample "
        f"alone in {cores} processes",
        "results": results,
        "target": {"of_decode_limit": TARGET, "cores": 2},
    }
    write_result(args.json, report)
    for name, r in results.items():
        print(f"{name}: clips {r['clips_of_decode_limit']:.2f}x the decode limit, recordings "
              f"{r['recordings_of_decode_limit']:.2f}x")  # fmt: skip
    print(f"-> {args.json}")


if __name__ == "__main__":
    main()

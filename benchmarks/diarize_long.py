"""Diarization of a long recording: memory stays bounded and a progress bar runs.

A WAV of ``--minutes`` minutes (default 120) is made by joining conversations of test-pool
voices (``whichvoice.conversation``; the same voices recur, as in a long meeting). Then
``whichvoice diarize`` runs on it in a subprocess, once for ``--minutes`` and once for a
tenth of it: the peak resident memory of each (``ru_maxrss`` of the child), the wall time,
the real-time factor, and the number of voices and turns found. Bounded memory means the
long run's peak is close to the short one's, not ten times it.

    python benchmarks/diarize_long.py [--minutes 120] [--model auto] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from provenance import RESULTS, provenance, write_result

from whichvoice.audio import SAMPLE_RATE
from whichvoice.conversation import make_conversation
from whichvoice.corpus import SynthConfig, read_manifest, synthesize_corpus
from whichvoice.protocol import pool_sentences, pool_voices


def long_wav(path: Path, clips: dict[str, list], minutes: float) -> float:
    """Conversations of 4 of the voices joined into a WAV of about ``minutes``, written in
    pieces (the writer never holds the whole); returns its seconds."""
    voices = sorted(clips)[:4]
    written = 0
    with sf.SoundFile(path, "w", SAMPLE_RATE, 1, "PCM_16") as out:
        k = 0
        while written < minutes * 60 * SAMPLE_RATE:
            conv = make_conversation({v: clips[v] for v in voices}, turns=12, seed=k)
            out.write(conv.wave)
            written += conv.wave.shape[0]
            k += 1
    return written / SAMPLE_RATE


def run(path: Path, model: str) -> dict:
    """``whichvoice diarize`` on ``path`` in a child process: its peak memory and time."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    # no gallery: the user's default one (whatever voices, whatever encoder) stays out of it
    env = os.environ | {"WHICHVOICE_GALLERY": str(path.parent / "no-gallery.sqlite")}
    proc = subprocess.run(
        [sys.executable, "-m", "whichvoice", "diarize", str(path), "--model", model, "--json",
         "--quiet"],
        capture_output=True, text=True, check=True, env=env,
    )  # fmt: skip
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    result = json.loads(proc.stdout)
    return {
        "audio_seconds": result["duration_s"],
        "wall_seconds": seconds,
        "real_time_factor": result["duration_s"] / seconds,
        # ru_maxrss of children is the largest of any child so far: the runs go short first
        "peak_rss_mib": max(peak, before) / 1024,
        "voices_found": len(result["speakers"]),
        "turns": len(result["segments"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=120.0)
    parser.add_argument("--model", default="auto")
    parser.add_argument("--json", type=Path, default=RESULTS / "diarize-long.json")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    made = provenance()
    with contextlib.ExitStack() as stack:
        work = args.workdir or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="whichvoice-long-"))
        )
        voices = pool_voices("test", 4, start=80_000)
        synthesize_corpus(work / "clips", pool_sentences("test", 60),
                          SynthConfig(voices=(",".join(voices),), assign="sample", per_voice=6,
                                      seed=9), progress=False)  # fmt: skip
        clips: dict[str, list] = {}
        for c in read_manifest(work / "clips" / "manifest.jsonl"):
            clips.setdefault(c.voice, []).append(work / "clips" / c.path)
        runs = {}
        for label, minutes in (("short", args.minutes / 10), ("long", args.minutes)):
            path = work / f"{label}.wav"
            seconds = long_wav(path, clips, minutes)
            runs[label] = run(path, args.model)
            print(f"{label}: {seconds / 60:.1f} min of audio, {runs[label]}", flush=True)
    report = {
        "benchmark": "diarize_long",
        **made,
        "command": "python benchmarks/diarize_long.py " + " ".join(sys.argv[1:]),
        "model": args.model,
        "voices": voices,
        "runs": runs,
        "memory_ratio_long_to_short": runs["long"]["peak_rss_mib"] / runs["short"]["peak_rss_mib"],
        "audio_ratio_long_to_short": runs["long"]["audio_seconds"] / runs["short"]["audio_seconds"],
    }
    write_result(args.json, report)
    print(f"-> {args.json}")
    print(f"memory long/short: {report['memory_ratio_long_to_short']:.2f} for "
          f"{report['audio_ratio_long_to_short']:.1f}x the audio; "
          f"{np.round(runs['long']['real_time_factor'])}x real time")  # fmt: skip


if __name__ == "__main__":
    main()

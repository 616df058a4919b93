"""How fast each encoder embeds recordings, side by side in one run: the work behind every
verify, identify and enroll (scoring an embedding against a gallery costs microseconds).

The same clips for every encoder: ``--clips`` test-pool clips (mp3, as ``benchmarks/verify.py``
makes them) and the human-dev speakers' joined clips (wav, 8 kHz), decoded from disk each time.
Each encoder embeds all of them with ``embed_many`` (its defaults: every core, files batched),
``--repeats`` times in turn with the others, after one warm-up pass; the figure is the median
of the repeats: seconds of audio embedded per second of wall time ("x real time"), and the
ratio to the bundled encoder measured in the same run. Two more rows time what `identify` and
`trace` run with the shipped engine head (it reads auto's resemblyzer part and each clip's
spectral fingerprint): ``auto + engine head``, the embedding and the engine answer from one
decode of each file (``tracing.embed_and_trace``), and ``auto + engine head, read twice``, the
path before it (the embedding, then each file read again for its fingerprint on the main
thread). Writes benchmarks/results/speed.json.

    python benchmarks/speed.py [--workdir DIR] [--clips 300] [--repeats 3]
"""

from __future__ import annotations

import argparse
import contextlib
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf
from human import joined_clips
from provenance import RESULTS, provenance, write_result
from verify import synthesize

from whichvoice.errors import WhichvoiceError
from whichvoice.protocol import pool_voices
from whichvoice.tracing import embed_and_trace, head_for
from whichvoice.verification import load_encoder

TARGET = 200.0  # issue 20: the default at >= 200x real time on 2 cores
TRACED = "auto + engine head"  # the rows of identify/trace with the shipped engine head
TWICE = "auto + engine head, read twice"


def runners(encoders: dict) -> dict:
    """name -> a function of the clips that embeds them as that row measures."""
    out = {n: (lambda clips, e=e: list(e.embed_many(clips))) for n, e in encoders.items()}
    auto = encoders.get("auto")
    head = head_for(auto) if auto is not None else None
    if head is None:
        return out

    def twice(clips):  # the embeddings, then each clip read again for the head
        return [r if isinstance(r, WhichvoiceError) else head.answer_clip(r[0], c)
                for c, r in zip(clips, auto.embed_many(clips), strict=True)]  # fmt: skip

    out[TRACED] = lambda clips: [r for r, _, _ in embed_and_trace(auto, head, clips)]
    out[TWICE] = twice
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--encoders", default="whichvoice,resemblyzer,dvector,auto")
    parser.add_argument("--clips", type=int, default=300, help="TTS test clips")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=RESULTS / "speed.json")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the corpora here")
    args = parser.parse_args()
    made = provenance()
    with contextlib.ExitStack() as stack:
        work = args.workdir or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="whichvoice-speed-"))
        )
        tts = synthesize(work / "test", pool_voices("test", 48), "test", 3 + 210)
        pool = sorted(p for paths in tts.values() for p in paths)
        clips = random.Random(0).sample(pool, min(args.clips, len(pool)))
        clips += sorted(p for ps in joined_clips(work / "human-clips", 60, 6).values() for p in ps)
        audio_s = sum(sf.info(str(p)).duration for p in clips)
        encoders = {n: load_encoder(n) for n in args.encoders.split(",")}
        runs = runners(encoders)
        for run in runs.values():  # warm-up: first-use exports, caches
            run(clips[:20])
        walls: dict[str, list[float]] = {n: [] for n in runs}
        errors: dict[str, int] = {}
        for _ in range(args.repeats):
            for name, run in runs.items():
                start = time.perf_counter()
                out = run(clips)
                walls[name].append(time.perf_counter() - start)
                errors[name] = sum(isinstance(x, WhichvoiceError) for x in out)
    results = {}
    for name, w in walls.items():
        median = statistics.median(w)
        results[name] = {
            "times_real_time": round(audio_s / median, 1),
            "seconds": [round(x, 2) for x in w],
            "errors": errors[name],
        }
    base = results.get("whichvoice")
    for r in results.values():
        if base:
            r["relative_to_bundled"] = round(r["times_real_time"] / base["times_real_time"], 3)
    report = {
        "benchmark": "speed",
        **made,
        "command": "python benchmarks/speed.py " + " ".join(sys.argv[1:]),
        "clips": len(clips),
        "audio_seconds": round(audio_s, 1),
        "method": f"embed_many over every clip, decoded from disk (the engine head's rows: "
        "identify's path, the embedding and the engine answer); median of "
        f"{args.repeats} runs taken in turn with the other rows; every core",
        "target": {"encoder": "auto", "times_real_time": TARGET},
        "results": results,
    }
    write_result(args.json, report)
    for name, r in results.items():
        print(f"{name}: {r['times_real_time']}x real time ({r['errors']} clips without speech)")
    print(f"-> {args.json}")


if __name__ == "__main__":
    main()

"""Synthesis throughput: a voice set (``mixed16``: 16 voices of 8 engines, ``make voices``) x
N bundled sentences, every voice reads every sentence.

Writes JSON (wall time, clips/s overall, and per engine clips/s of engine time) to
benchmarks/results/synth.json, or --json PATH.

    python benchmarks/synth.py [--sentences 200] [--voices mixed16] [--workers N] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from provenance import provenance, write_result

from whichvoice.corpus import SynthConfig, default_workers, synthesize_corpus
from whichvoice.sentences import load_sentences


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=200)
    parser.add_argument("--voices", default="mixed16")
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument(
        "--out", type=Path, default=None, help="corpus folder (default: a temp one)"
    )
    parser.add_argument(
        "--json", type=Path, default=Path(__file__).parent / "results" / "synth.json"
    )
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    made = provenance()

    out = args.out or Path(tempfile.mkdtemp(prefix="whichvoice-bench-synth-"))
    sentences = load_sentences(args.sentences).sentences
    cfg = SynthConfig(voices=(args.voices,), assign="all", workers=args.workers)
    t0 = time.perf_counter()
    summary = synthesize_corpus(out, sentences, cfg, progress=not args.quiet)
    wall = time.perf_counter() - t0
    if summary.skipped:
        raise SystemExit(f"{out} already held {summary.skipped} clips: benchmark an empty folder")
    result = {
        "benchmark": "synth",
        **made,
        "command": "python benchmarks/synth.py " + " ".join(sys.argv[1:]),
        "voices": args.voices,
        "sentences": len(sentences),
        "workers": args.workers,
        "clips": summary.made,
        "failed": len(summary.failed),
        "wall_s": round(wall, 2),
        "clips_per_s": round(summary.made / wall, 2),
        "audio_hours": round(sum(s.audio_seconds for s in summary.per_engine.values()) / 3600, 3),
        "per_engine": {
            name: {
                "clips": s.clips,
                "engine_s": round(s.synth_seconds, 2),
                "clips_per_s_one_worker": round(s.clips_per_s, 2),
                "real_time_factor": round(s.audio_seconds / s.synth_seconds, 1),
            }
            for name, s in sorted(summary.per_engine.items())
        },
    }
    write_result(args.json, result)
    print(json.dumps(result, indent=2))
    if args.out is None:
        shutil.rmtree(out)


if __name__ == "__main__":
    main()

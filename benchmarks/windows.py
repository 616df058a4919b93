"""How densely the pretrained encoders cut their windows, chosen on dev data only.

resemblyzer embeds 1.6 s partial utterances 1.3 times a second (each frame seen about twice)
and the d-vector encoder 0.8 s windows every 0.4 s (each frame seen twice). Side by side windows
(each frame seen once) halve their work, which the fused default needs to stay fast. This
measures each encoder both ways on the same dev trials: TTS voices of the dev pool (whole
clips, and "hard" clips of 1.5 s of speech in noise, as ``benchmarks/verify.py`` makes them)
and the human-dev speakers (as ``benchmarks/human.py`` joins them), with EERs and 95 %
intervals from a bootstrap over voices, and the seconds of audio embedded per second of wall
time.

The rule (fixed before any figure was seen): side by side windows are the default for an
encoder when, on every kind of trial, ``(EER + 0.1 %) / (dense EER + 0.1 %) <= 1.25``.
Writes benchmarks/results/windows-dev.json.

    python benchmarks/windows.py [--workdir DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path

from human import joined_clips
from provenance import RESULTS, provenance, write_result
from verify import dev_voices, make_trials, score_matrix, split_trials, synthesize

from whichvoice.audio import read_audio
from whichvoice.pretrained import (
    PARTIALS_PER_S,
    SPARSE_PARTIALS_PER_S,
    DvectorEncoder,
    ResemblyzerEncoder,
)
from whichvoice.scoring import eer, voice_bootstrap
from whichvoice.verification import bundled_encoder

EPS = 0.001
MAX_RATIO = 1.25


def variants() -> dict[str, dict]:
    """{encoder: {density: (make the encoder, its setting)}}."""
    return {
        "resemblyzer": {
            "dense": (
                lambda: ResemblyzerEncoder(partials_per_s=PARTIALS_PER_S),
                {"partials_per_s": PARTIALS_PER_S},
            ),
            "side by side": (
                lambda: ResemblyzerEncoder(partials_per_s=SPARSE_PARTIALS_PER_S),
                {"partials_per_s": SPARSE_PARTIALS_PER_S},
            ),
        },
        "dvector": {
            "dense": (lambda: DvectorEncoder(stride=40), {"stride": 40}),
            "side by side": (lambda: DvectorEncoder(stride=80), {"stride": 80}),
        },
    }


def seconds_of(trials: dict, conditions: tuple[str, ...]) -> float:
    """Seconds of audio an encoder embeds to score ``conditions`` of ``trials``."""
    paths = [p for ps in trials["enroll"].values() for p in ps]
    paths += [p for c in conditions for _, p in trials[c]]
    return sum(len(w) / r for w, r in map(read_audio, paths))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dev-voices", type=int, default=48, help="as benchmarks/verify.py")
    parser.add_argument("--dev-per-voice", type=int, default=40, help="as benchmarks/verify.py")
    parser.add_argument("--human-clips", type=int, default=60)
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument("--json", type=Path, default=RESULTS / "windows-dev.json")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the corpora here")
    args = parser.parse_args()
    made = provenance()
    recipe = json.loads((bundled_encoder() / "recipe.json").read_text())
    with contextlib.ExitStack() as stack:
        work = args.workdir or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="whichvoice-windows-"))
        )
        tts = make_trials(
            synthesize(work / "dev", dev_voices(recipe, args.dev_voices), "dev",
                       args.dev_per_voice),
            work / "dev-trials", 0,
        )  # fmt: skip
        human = make_trials(
            joined_clips(work / "human-clips", args.human_clips, 6), work / "human-trials", None
        )
        kinds = {"tts": (tts, "clean"), "tts-hard": (tts, "hard"), "human": (human, "clean")}
        audio_s = seconds_of(tts, ("clean", "hard")) + seconds_of(human, ("clean",))
        rows: dict[str, dict] = {}
        for name, densities in variants().items():
            rows[name] = {}
            for density, (make, setting) in densities.items():
                encoder = make()
                row: dict = {"setting": setting}
                start = time.perf_counter()
                for kind, (trials, condition) in kinds.items():
                    scores, truth = score_matrix(encoder, trials, condition)
                    t = split_trials(scores, truth)
                    row[f"eer_{kind}"] = eer(t.target, t.nontarget)[0]
                    ci = voice_bootstrap(scores, truth, resamples=args.resamples)
                    row[f"eer_{kind}_ci95"] = ci["eer"]
                    row[f"trials_{kind}"] = {"target": len(t.target), "nontarget": len(t.nontarget)}
                # enrollment clips of the TTS set are embedded twice (clean and hard)
                row["times_real_time"] = round(audio_s / (time.perf_counter() - start), 1)
                rows[name][density] = row
                print(f"{name} {density}: " + ", ".join(
                    f"{k} EER {100 * row[f'eer_{k}']:.2f} %" for k in kinds
                ) + f", {row['times_real_time']}x real time", flush=True)  # fmt: skip
    chosen = {}
    for name, r in rows.items():
        ratios = {
            k: (r["side by side"][f"eer_{k}"] + EPS) / (r["dense"][f"eer_{k}"] + EPS) for k in kinds
        }
        r["ratios"] = ratios
        chosen[name] = "side by side" if max(ratios.values()) <= MAX_RATIO else "dense"
    report = {
        "benchmark": "windows",
        **made,
        "command": "python benchmarks/windows.py " + " ".join(sys.argv[1:]),
        "split": "dev only: the dev pool's TTS voices and the human-dev speakers",
        "rule": f"side by side when (EER + 0.1 %) / (dense EER + 0.1 %) <= {MAX_RATIO} "
        "on every kind of trial",
        "timing": "seconds of audio embedded per second of wall time, one encoder at a time, "
        "decoding included; the machine may have been busy (compare rows, not runs)",
        "encoders": rows,
        "chosen": chosen,
    }
    write_result(args.json, report)
    print(f"chosen: {chosen} -> {args.json}")


if __name__ == "__main__":
    main()

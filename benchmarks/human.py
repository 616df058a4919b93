"""Verification and identification on real people: the human-dev recordings (6 male speakers
saying digits, 8 kHz, CC BY-SA 4.0; ``../shared/data/human-dev``), each encoder side by side on
the same trials.

Small and narrow (digits, 6 men): these figures show how the encoders compare on people, not
what they reach on human speech in general. They are a dev set, not a held-out one: the fused
encoder's weights and the human part of verify's pooled threshold were chosen on these speakers
(``at_shipped_threshold`` is measured on clips that threshold was fitted on). Each clip joins
``--digits`` takes of different digits with 0.2 s pauses (~3 s); every take is used once. Each
speaker is enrolled from 3 clips cut to 3 s of speech (as in ``benchmarks/verify.py``), and
every other clip is scored against every speaker. ``auto`` (the fused encoder) had its weights
chosen on these same speakers among others (``benchmarks/fusion.py``): its row is a dev figure,
not a held-out one. Figures: EER with a 95 % interval from a bootstrap over speakers, top-1
identification with its interval (speakers as clusters), and false rejections and acceptances
at each encoder's shipped threshold (set on dev trials, see verify.py). Writes
benchmarks/results/human.json.

    python benchmarks/human.py [--clips 60] [--digits 6]
        [--encoders whichvoice,resemblyzer,dvector,auto]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
from provenance import provenance, write_result
from verify import make_trials, score_matrix, split_trials

from whichvoice.audio import read_audio
from whichvoice.scoring import clustered_share, eer, voice_bootstrap
from whichvoice.verification import calibration_of, load_encoder

HUMAN = Path(__file__).resolve().parents[2] / "shared" / "data" / "human-dev" / "recordings"
RESULTS = Path(__file__).resolve().parent / "results"


def joined_clips(out: Path, clips: int, digits: int, seed: int = 0) -> dict[str, list[Path]]:
    """{speaker: [clip paths]}: ``clips`` clips a speaker, each ``digits`` takes of distinct
    digits joined with 0.2 s pauses; no take is used twice."""
    takes: dict[str, dict[str, list[Path]]] = {}
    for f in sorted(HUMAN.glob("*.wav")):
        digit, speaker, _ = f.stem.split("_")
        takes.setdefault(speaker, {}).setdefault(digit, []).append(f)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, list[Path]] = {}
    for speaker, by_digit in sorted(takes.items()):
        rng = random.Random(f"{seed} {speaker}")
        pools = {d: rng.sample(ts, len(ts)) for d, ts in sorted(by_digit.items())}
        for k in range(clips):
            chosen = rng.sample(sorted(pools), digits)
            parts: list[np.ndarray] = []
            for d in chosen:
                if not pools[d]:
                    sys.exit(f"{speaker}: not enough takes of {d} for {clips} clips")
                wave, rate = read_audio(pools[d].pop())
                parts += [wave, np.zeros(int(0.2 * rate), np.float32)]
            path = out / f"{speaker}-{k:02d}.wav"
            if not path.exists():
                sf.write(path, np.concatenate(parts), rate)
            files.setdefault(f"human:{speaker}", []).append(path)
    return files


def figures(encoder, trials: dict, resamples: int) -> dict:
    scores, truth = score_matrix(encoder, trials, "clean")
    t = split_trials(scores, truth)
    ci = voice_bootstrap(scores, truth, resamples=resamples)
    threshold, _ = calibration_of(encoder)
    same = np.zeros_like(scores, bool)
    same[np.arange(len(truth)), truth] = True
    rows, cols = np.nonzero(~same)  # the different-speaker trials, as split_trials orders them
    pairs = np.stack([truth[rows], cols], axis=1)  # (the clip's speaker, the claimed one)
    return {
        "eer": eer(t.target, t.nontarget)[0],
        "eer_ci95": ci["eer"],
        "top1": clustered_share(scores.argmax(1) == truth, truth),
        "target_trials": int(t.target.size),
        "nontarget_trials": int(t.nontarget.size),
        "shipped_threshold": threshold,
        "at_shipped_threshold": {
            "false_rejection": clustered_share(t.target < threshold, truth),
            "false_acceptance": clustered_share(t.nontarget >= threshold, pairs),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=60, help="clips a speaker")
    parser.add_argument("--digits", type=int, default=6, help="takes joined into a clip")
    parser.add_argument("--encoders", default="whichvoice,resemblyzer,dvector,auto")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--json", type=Path, default=RESULTS / "human.json")
    args = parser.parse_args()
    if not any(HUMAN.glob("*.wav")):
        parser.exit(2, f"error: no human-dev recordings in {HUMAN}\n")
    made = provenance()
    with tempfile.TemporaryDirectory(prefix="whichvoice-human-") as tmp:
        work = Path(tmp)
        files = joined_clips(work / "clips", args.clips, args.digits)
        trials = make_trials(files, work / "trials", None)
        results = {}
        for name in (n.strip() for n in args.encoders.split(",") if n.strip()):
            encoder = load_encoder(name)  # "whichvoice": the bundled encoder
            results[name] = figures(encoder, trials, args.resamples)
            r = results[name]
            print(f"{name}: EER {100 * r['eer']:.2f} % [{100 * r['eer_ci95'][0]:.2f}, "
                  f"{100 * r['eer_ci95'][1]:.2f}], top-1 {100 * r['top1']['value']:.1f} % "
                  f"on {r['target_trials']} target trials", flush=True)  # fmt: skip
    report = {
        "benchmark": "human",
        **made,
        "command": "python benchmarks/human.py " + " ".join(sys.argv[1:]),
        "data": "human-dev: 6 male speakers saying digits, 8 kHz (FSDD, CC BY-SA 4.0)",
        "speakers": sorted(files),
        "clips_per_speaker": args.clips,
        "digits_per_clip": args.digits,
        "enroll": {"clips": 3, "seconds": 3.0},
        "interval": "EER: bootstrap over speakers; top-1 and false rejection: Wilson at the "
        "effective count with speakers as clusters, false acceptance with (speaker, claimed "
        "speaker) pairs as clusters (scoring.clustered_proportion; ci95_clips: were the "
        "trials independent)",
        "results": results,
    }
    write_result(args.json, report)
    print(f"-> {args.json}")


if __name__ == "__main__":
    main()

"""Choose how to fuse the encoders, on dev data only: TTS trials of the dev pool (the voices and
clips of ``benchmarks/verify.py``'s dev set) and human trials of the human-dev speakers
(``benchmarks/human.py``'s clips). Nothing here looks at the test pool.

For each encoder, every dev clip is scored against every enrolled dev voice; a fusion scores
``sum_i w_i * cos_i`` (``whichvoice.fusion``). Candidates: each encoder alone; equal weights
over two and three encoders; and weights learned by logistic regression (scikit-learn) on the
per-encoder scores of both kinds of trials, each kind weighing half and targets as much as
non-targets. Reports each candidate's dev EER on TTS and on human trials, next to the best
single encoder of each kind, with 95 % intervals from a bootstrap over voices (speakers), and
writes benchmarks/results/fusion-dev.json.

The rule that picks the default (fixed before any candidate was scored): the lowest worst
ratio, over the two kinds, of a candidate's EER to the best single encoder's EER on that
kind (each plus 0.1 %, so that a 0 % EER does not divide by zero); on a tie, fewer encoders
(faster). ``--write`` stores the pick as the package's fusion
(``src/whichvoice/data/fusion/fusion.json``) and its calibration, made on the dev trials of
both kinds together (threshold at 0.1 % false acceptances).

    python benchmarks/fusion.py [--workdir DIR] [--encoders whichvoice,resemblyzer,dvector]
        [--write]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from human import joined_clips
from provenance import RESULTS, provenance, write_result
from verify import dev_voices, make_trials, score_matrix, synthesize

from whichvoice.scoring import eer, voice_bootstrap
from whichvoice.verification import bundled_encoder, load_encoder


def trial_scores(scores: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(scores of every trial, flattened; 1 for a same-voice trial)."""
    same = np.zeros_like(scores, bool)
    same[np.arange(len(truth)), truth] = True
    return scores.ravel(), same.ravel().astype(int)


def learned_weights(kinds: dict[str, tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Logistic regression on the per-encoder scores (n_trials, n_encoders) of each kind;
    each kind weighs half, and within a kind targets weigh as much as non-targets. Returns
    non-negative weights summing to 1 (negative coefficients are set to 0)."""
    from sklearn.linear_model import LogisticRegression

    xs, ys, ws = [], [], []
    for x, y in kinds.values():
        w = np.where(y == 1, 0.5 / max(y.sum(), 1), 0.5 / max((1 - y).sum(), 1))
        xs.append(x)
        ys.append(y)
        ws.append(w / len(kinds))
    model = LogisticRegression(C=1.0, max_iter=1000)
    model.fit(np.concatenate(xs), np.concatenate(ys), sample_weight=np.concatenate(ws))
    coef = np.clip(model.coef_[0], 0, None)
    return coef / coef.sum() if coef.sum() > 0 else np.full(len(coef), 1 / len(coef))


EPS = 0.001  # added to every EER in the choice rule


def choose(rows: dict, best_single: dict) -> str:
    """The candidate the rule picks (see the module docstring)."""

    def cost(label: str) -> float:
        return max(
            (rows[label][f"eer_{k}"] + EPS) / (best + EPS) for k, best in best_single.items()
        )

    def parts(label: str) -> int:
        return sum(w > 0 for w in rows[label]["weights"].values())

    return min(rows, key=lambda label: (round(cost(label), 6), parts(label)))


def write_fusion(weights: dict[str, float], kinds: dict, names: list[str], source: str) -> Path:
    """The package's fusion and its calibration on the dev trials of both kinds."""
    from whichvoice.fusion import Fusion
    from whichvoice.pretrained import shipped_dir
    from whichvoice.verification import Trials, calibrate

    kept = {n: w for n, w in weights.items() if w > 0}
    total = sum(kept.values())
    fusion = Fusion(tuple(kept), tuple(w / total for w in kept.values()), source)
    dest = shipped_dir("fusion")
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "fusion.json").write_text(json.dumps(fusion.to_dict(), indent=2) + "\n")
    w = np.array([weights[n] / total for n in names])
    scores = np.concatenate([x @ w for x, _ in kinds.values()])
    truth = np.concatenate([y for _, y in kinds.values()])
    calibrate(dest, Trials(scores[truth == 1], scores[truth == 0]), target_far=0.001,
              source=source)  # fmt: skip
    return dest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--encoders", default="whichvoice,resemblyzer,dvector")
    parser.add_argument("--dev-voices", type=int, default=48, help="as benchmarks/verify.py")
    parser.add_argument("--dev-per-voice", type=int, default=40, help="as benchmarks/verify.py")
    parser.add_argument("--human-clips", type=int, default=60)
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument("--json", type=Path, default=RESULTS / "fusion-dev.json")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the corpora here")
    parser.add_argument("--write", action="store_true", help="store the pick in the package")
    args = parser.parse_args()
    made = provenance()
    names = [n.strip() for n in args.encoders.split(",") if n.strip()]
    recipe = json.loads((bundled_encoder() / "recipe.json").read_text())
    dev_ids = dev_voices(recipe, args.dev_voices)
    with contextlib.ExitStack() as stack:
        work = args.workdir or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="whichvoice-fusion-"))
        )
        sets = {
            "tts": make_trials(
                synthesize(work / "dev", dev_ids, "dev", args.dev_per_voice),
                work / "dev-trials",
                None,
            ),
            "human": make_trials(
                joined_clips(work / "human-clips", args.human_clips, 6),
                work / "human-trials",
                None,
            ),
        }
        # each kind: every encoder's (n_clips, n_voices) score matrix, and each clip's voice
        matrices: dict[str, dict[str, np.ndarray]] = {k: {} for k in sets}
        truths: dict[str, np.ndarray] = {}
        for name in names:
            encoder = load_encoder(name)  # "whichvoice": the bundled encoder
            for kind, trials in sets.items():
                matrices[kind][name], truths[kind] = score_matrix(encoder, trials, "clean")
            print(f"{name}: scored", flush=True)
    kinds = {}
    for k in sets:
        flat = [trial_scores(matrices[k][n], truths[k]) for n in names]
        kinds[k] = (np.stack([f[0] for f in flat], 1), flat[0][1])
    candidates = {f"{n} alone": np.eye(len(names))[i] for i, n in enumerate(names)}
    for size in range(2, len(names) + 1):
        for combo in itertools.combinations(range(len(names)), size):
            w = np.zeros(len(names))
            w[list(combo)] = 1 / size
            candidates[" + ".join(names[i] for i in combo) + " (equal)"] = w
    candidates["learned (logistic regression)"] = learned_weights(kinds)
    rows = {}
    for label, w in candidates.items():
        rows[label] = {"weights": dict(zip(names, map(float, w), strict=True))}
        for kind, (x, y) in kinds.items():
            s = x @ w
            rows[label][f"eer_{kind}"] = eer(s[y == 1], s[y == 0])[0]
            fused = sum(wi * matrices[kind][n] for wi, n in zip(w, names, strict=True))
            ci = voice_bootstrap(fused, truths[kind], resamples=args.resamples)
            rows[label][f"eer_{kind}_ci95"] = ci["eer"]
        print(f"{label}: " + ", ".join(f"{k} EER {100 * rows[label][f'eer_{k}']:.2f} %"
                                       for k in kinds), flush=True)  # fmt: skip
    best_single = {
        k: min(rows[f"{n} alone"][f"eer_{k}"] for n in names) for k in kinds
    }  # fmt: skip
    report = {
        "benchmark": "fusion",
        **made,
        "command": "python benchmarks/fusion.py " + " ".join(sys.argv[1:]),
        "split": "dev only: the dev pool's TTS voices and the human-dev speakers",
        "trials": {
            k: {"target": int(y.sum()), "nontarget": int((1 - y).sum())}
            for k, (_, y) in kinds.items()
        },
        "candidates": rows,
        "best_single_eer": best_single,
        "rule": "lowest max over kinds of (EER + 0.1 %) / (best single EER + 0.1 %); "
        "ties: fewer encoders",
        "chosen": (chosen := choose(rows, best_single)),
    }
    write_result(args.json, report)
    print(f"chosen: {chosen} -> {args.json}")
    if args.write:
        source = f"benchmarks/fusion.py on dev trials ({chosen}), commit {made['commit'][:12]}"
        dest = write_fusion(rows[chosen]["weights"], kinds, names, source)
        print(f"fusion and its calibration written to {dest}")


if __name__ == "__main__":
    main()

"""Robustness: the default model (with augmentation) and the talk's ``seed`` model, file-level
accuracy on held-out sentences under each condition; and what augmentation costs in training.

Trains on ``default8`` x N sentences (every voice reads every sentence), evaluates the test
split (sentences never seen in training) clean, resampled, quiet, noisy, telephone, mp3,
reverberant, cut to 1 s and joined to 20 s. Writes benchmarks/results/robustness.json.

    python benchmarks/robustness.py [--sentences 400] [--corpus DIR] [--skip-seed]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from whichvoice.augment import CONDITIONS
from whichvoice.corpus import SynthConfig, synthesize_corpus
from whichvoice.evaluate import evaluate
from whichvoice.sentences import load_sentences
from whichvoice.train import TrainConfig, train

TARGETS = {  # the targets for the default model, file level
    "clean": 1.0,
    "wav8k": 1.0,
    "wav22k": 1.0,
    "wav44k": 1.0,
    "flac48k": 1.0,
    "quiet": 1.0,
    "noise10": 0.99,
    "noise0": 0.90,
    "tel8k": 0.98,
    "mp3-24k": 0.99,
    "reverb": 0.99,
    "short1s": 0.98,
    "long": 1.0,
}


def run_model(corpus: Path, out: Path, cfg: TrainConfig, quiet: bool) -> dict:
    t0 = time.perf_counter()
    train(corpus, out, cfg, progress=not quiet)
    seconds = time.perf_counter() - t0
    metrics = json.loads((out / "metrics.json").read_text())
    result = evaluate(out, corpus=corpus, conditions=list(CONDITIONS), progress=not quiet)
    return {
        "model": cfg.model,
        "augment": cfg.augment or "model default",
        "train_s": round(seconds, 1),
        "train_loop_s": metrics["train_seconds"],
        "epochs": metrics["epochs_run"],
        "test_files": result["files"],
        "conditions": {k: round(v["accuracy"], 4) for k, v in result["conditions"].items()},
        "files_per_condition": {k: v["files"] for k, v in result["conditions"].items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=400)
    parser.add_argument("--corpus", type=Path, default=None)
    parser.add_argument("--skip-seed", action="store_true", help="skip the slow seed model")
    parser.add_argument(
        "--json", type=Path, default=Path(__file__).parent / "results" / "robustness.json"
    )
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="whichvoice-bench-robust-"))
    corpus = args.corpus or work / "corpus"
    synthesize_corpus(
        corpus,
        load_sentences(args.sentences).sentences,
        SynthConfig(voices=("default8",), assign="all"),
        progress=not args.quiet,
    )
    default = run_model(corpus, work / "voicenet", TrainConfig(model="voicenet"), args.quiet)
    plain = run_model(
        corpus, work / "voicenet-noaug", TrainConfig(model="voicenet", augment="none"), args.quiet
    )
    models = [default, plain]
    if not args.skip_seed:
        models.append(run_model(corpus, work / "seed", TrainConfig(model="seed"), args.quiet))
    out = {
        "benchmark": "robustness",
        "corpus": {"voices": "default8", "sentences": args.sentences, "assign": "all"},
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "targets_default_model": TARGETS,
        "default_meets": {k: default["conditions"][k] >= v for k, v in TARGETS.items()},
        "augmentation_training_cost": round(default["train_loop_s"] / plain["train_loop_s"], 2),
        "models": models,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

"""The talk's pipeline against whichvoice's default, side by side on one corpus, one run.

For each of ``talk-cnn`` (the talk's network) on seed images and ``voicenet`` on log-mels:
seconds to prepare features, seconds to train (the model's default epochs), training clips/s,
file-level test accuracy; then inference end to end (decode -> features -> model): clips/s
and real-time factor in batch over the test split, and the median ms for one ~3 s clip.

    python benchmarks/train.py [--sentences 320] [--corpus DIR] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from provenance import provenance, write_result

from whichvoice.corpus import SynthConfig, read_manifest, synthesize_corpus
from whichvoice.dataset import PrepareConfig, open_prepared, prepare
from whichvoice.evaluate import held_out_split
from whichvoice.features import FeatureConfig
from whichvoice.runtime import Prediction, load_model
from whichvoice.scoring import proportion
from whichvoice.sentences import load_sentences
from whichvoice.train import TrainConfig, pick_device, train

MODELS = [("talk-cnn", "seed-image"), ("voicenet", "logmel")]


def bench_model(
    corpus: Path, runs: Path, model: str, features: str, quiet: bool, device: str
) -> dict:
    prep = PrepareConfig(features=FeatureConfig(name=features), seed=0)
    t0 = time.perf_counter()
    data = open_prepared(prepare(corpus, runs / f"data-{features}", prep, progress=not quiet))
    prepare_s = time.perf_counter() - t0
    run = runs / model
    t0 = time.perf_counter()
    train(data.root, run, TrainConfig(model=model, seed=0, device=device), progress=not quiet)
    train_s = time.perf_counter() - t0
    metrics = json.loads((run / "metrics.json").read_text())

    vm = load_model(run, device=str(pick_device(device)))
    files = held_out_split(vm, corpus)
    paths = [f.path for f in files]
    t0 = time.perf_counter()
    preds = list(vm.identify_many(paths))
    batch_s = time.perf_counter() - t0
    correct = sum(
        isinstance(p, Prediction) and p.voice == f.voice for p, f in zip(preds, files, strict=True)
    )
    durations = {c.path: c.duration_s for c in read_manifest(corpus / "manifest.jsonl")}
    audio_s = sum(durations[str(p.relative_to(corpus))] for p in paths)
    # one clip of about 3 s, decoded and scored alone, many times
    three = min(paths, key=lambda p: abs(durations[str(p.relative_to(corpus))] - 3.0))
    vm.identify(three)
    times = []
    for _ in range(30):
        t0 = time.perf_counter()
        vm.identify(three)
        times.append(time.perf_counter() - t0)
    return {
        "model": model,
        "features": features,
        "prepare_s": round(prepare_s, 2),
        "train_s": round(train_s, 2),
        "train_loop_s": metrics["train_seconds"],
        "epochs": metrics["epochs_run"],
        "train_clips": metrics["train_clips"],
        "train_clips_per_s": round(
            metrics["train_clips"] * metrics["epochs_run"] / metrics["train_seconds"], 1
        ),
        "val_acc_windows": metrics["val_acc"],
        "test_files": len(files),
        "test_file_acc_end_to_end": correct / len(files),
        "test_file_acc_end_to_end_ci95": proportion(correct, len(files))["ci95"],
        "inference_batch_clips_per_s": round(len(files) / batch_s, 1),
        "inference_batch_x_real_time": round(audio_s / batch_s, 1),
        "inference_single_ms_3s_clip": round(1000 * statistics.median(times), 2),
        "single_clip_s": durations[str(three.relative_to(corpus))],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=320)
    parser.add_argument("--corpus", type=Path, default=None, help="reuse (or make) this corpus")
    parser.add_argument(
        "--json", type=Path, default=Path(__file__).parent / "results" / "train.json"
    )
    parser.add_argument(
        "--no-synth",
        action="store_true",
        help="use --corpus as it is (a machine without the TTS engines, e.g. a GPU host)",
    )
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda (train and infer)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    made = provenance()

    work = Path(tempfile.mkdtemp(prefix="whichvoice-bench-train-"))
    corpus = args.corpus or work / "corpus"
    if not (args.no_synth and args.corpus):
        synthesize_corpus(
            corpus,
            load_sentences(args.sentences).sentences,
            SynthConfig(voices=("default8",), assign="all"),
            progress=not args.quiet,
        )
    results = [bench_model(corpus, work / "runs", m, f, args.quiet, args.device) for m, f in MODELS]
    seed, default = results
    out = {
        "benchmark": "train",
        **made,
        "command": "python benchmarks/train.py " + " ".join(sys.argv[1:]),
        "corpus": {
            "voices": "default8",
            "sentences": args.sentences,
            "clips": len(read_manifest(corpus / "manifest.jsonl")),
        },
        "torch_threads": torch.get_num_threads(),
        "device": str(pick_device(args.device)),
        "models": results,
        "default_vs_seed": {
            "train_speedup": round(seed["train_loop_s"] / default["train_loop_s"], 1),
            "train_speedup_incl_features": round(
                (seed["train_s"] + seed["prepare_s"]) / (default["train_s"] + default["prepare_s"]),
                1,
            ),
            "inference_batch_speedup": round(
                default["inference_batch_clips_per_s"] / seed["inference_batch_clips_per_s"], 1
            ),
        },
    }
    write_result(args.json, out)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

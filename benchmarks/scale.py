"""Scaling out on one machine, side by side in one run: training throughput with 1 vs 2
torchrun processes (the same global batch), batch inference clips/s with 1 vs 2 workers on
10,000 clips, and onnxruntime vs torch latency (batch 1) and throughput (batch 64).

    python benchmarks/scale.py [--sentences 320] [--corpus DIR] [--clips 10000] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from provenance import provenance, write_result

from whichvoice.corpus import SynthConfig, read_manifest, synthesize_corpus
from whichvoice.dataset import PrepareConfig, open_prepared, prepare
from whichvoice.features import FeatureConfig
from whichvoice.runtime import load_model
from whichvoice.scoring import proportion
from whichvoice.sentences import load_sentences
from whichvoice.verification import bundled_encoder


def bench_training(prepared: Path, runs: Path, epochs: int, quiet: bool) -> dict:
    """The default model trained by torchrun with 1 and with 2 processes (gloo on CPU), same
    global batch and seed; each process gets cores / processes threads."""
    out = {}
    test_files = len(np.unique(open_prepared(prepared).arrays("test")[2]))
    for n in (1, 2):
        run = runs / f"train-{n}"
        cmd = [
            sys.executable, "-m", "torch.distributed.run", "--standalone",
            "--nproc_per_node", str(n), "-m", "whichvoice", "train", str(prepared),
            "--out", str(run), "--epochs", str(epochs), "--batch-size", "64", "--quiet",
        ]  # fmt: skip
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL if quiet else None)
        wall = time.perf_counter() - t0
        metrics = json.loads((run / "metrics.json").read_text())
        rows = [json.loads(line) for line in (run / "epochs.jsonl").read_text().splitlines()]
        epoch_s = statistics.median(r["seconds"] for r in rows)
        out[f"processes_{n}"] = {
            "world_size": metrics["world_size"],
            "epochs": metrics["epochs_run"],
            "train_clips": metrics["train_clips"],
            "median_epoch_s": epoch_s,
            "train_clips_per_s": round(metrics["train_clips"] / epoch_s, 1),
            "wall_s": round(wall, 1),
            "test_file_acc": metrics["test_file_acc"],
            "test_file_acc_ci95": proportion(
                round(metrics["test_file_acc"] * test_files), test_files
            )["ci95"],
            "test_files": test_files,
        }
    one, two = out["processes_1"], out["processes_2"]
    out["speedup_2_vs_1"] = round(two["train_clips_per_s"] / one["train_clips_per_s"], 2)
    out["test_file_acc_diff"] = round(two["test_file_acc"] - one["test_file_acc"], 4)
    return out


def bench_batch(run: Path, corpus: Path, work: Path, n_clips: int, quiet: bool) -> dict:
    """``whichvoice predict RUN --manifest M --output preds.csv --workers N`` on ``n_clips``
    manifest lines (the corpus's clips, repeated), N = 1 and 2, through the CLI."""
    clips = read_manifest(corpus / "manifest.jsonl")
    manifest = work / "batch-manifest.jsonl"
    with open(manifest, "w") as f:
        for i in range(n_clips):
            f.write(json.dumps({"path": str(corpus / clips[i % len(clips)].path)}) + "\n")
    out = {"clips": n_clips, "distinct_clips": len(clips)}
    for workers in (1, 2):
        preds = work / f"preds-{workers}.csv"
        cmd = [
            sys.executable, "-m", "whichvoice", "predict", str(run), "--manifest", str(manifest),
            "--output", str(preds), "--workers", str(workers), "--overwrite", "--quiet",
        ]  # fmt: skip
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True)
        seconds = time.perf_counter() - t0
        rows = preds.read_text().count("\n") - 1
        out[f"workers_{workers}"] = {
            "seconds": round(seconds, 1),
            "clips_per_s": round(n_clips / seconds, 1),
            "rows": rows,
        }
    out["speedup_2_vs_1"] = round(
        out["workers_2"]["clips_per_s"] / out["workers_1"]["clips_per_s"], 2
    )
    return out


def _median_ms(fn, x: np.ndarray, repeats: int) -> float:
    for _ in range(3):
        fn(x)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def bench_onnx(run: Path, name: str, threads: int) -> dict:
    """torch vs onnxruntime on the same stored windows (log-mel included in both), the same
    number of threads: median ms at batch 1 and windows/s at batch 64."""
    from whichvoice.runtime import check_windows

    torch.set_num_threads(threads)
    backends = {
        "torch": load_model(run),
        "onnxruntime": load_model(run, backend="onnx", threads=threads),
    }
    w = check_windows(backends["torch"], 64)
    x64 = np.resize(w, (64, *w.shape[1:])).astype(np.float32)
    out: dict = {"model": name, "threads": threads}
    for label, model in backends.items():
        score = model.window_embeddings if model.has_embedding else model.window_log_probs
        b1 = _median_ms(score, x64[:1], 50)
        b64 = _median_ms(score, x64, 10)
        out[label] = {
            "batch1_ms": round(b1, 3),
            "batch64_ms": round(b64, 2),
            "batch64_windows_per_s": round(64_000 / b64, 1),
        }
    torch_out = backends["torch"].window_log_probs(x64)
    onnx_out = backends["onnxruntime"].window_log_probs(x64)
    out["max_abs_diff_log_probs"] = float(np.abs(torch_out - onnx_out).max())
    out["latency_speedup"] = round(out["torch"]["batch1_ms"] / out["onnxruntime"]["batch1_ms"], 2)
    out["throughput_speedup"] = round(
        out["onnxruntime"]["batch64_windows_per_s"] / out["torch"]["batch64_windows_per_s"], 2
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=320)
    parser.add_argument("--corpus", type=Path, default=None, help="reuse (or make) this corpus")
    parser.add_argument("--clips", type=int, default=10_000, help="batch-inference clips")
    parser.add_argument("--epochs", type=int, default=4, help="training epochs per run")
    parser.add_argument(
        "--json", type=Path, default=Path(__file__).parent / "results" / "scale.json"
    )
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    made = provenance()

    work = Path(tempfile.mkdtemp(prefix="whichvoice-bench-scale-"))
    corpus = (args.corpus or work / "corpus").resolve()
    synthesize_corpus(
        corpus,
        load_sentences(args.sentences).sentences,
        SynthConfig(voices=("default8",), assign="all"),
        progress=not args.quiet,
    )
    prepared = prepare(
        corpus, work / "prepared", PrepareConfig(features=FeatureConfig()), progress=not args.quiet
    )
    training = bench_training(prepared, work / "runs", args.epochs, args.quiet)
    run = work / "runs" / "train-1"
    bundled_name = json.loads((bundled_encoder() / "config.json").read_text())["model"]
    result = {
        "benchmark": "scale",
        **made,
        "command": "python benchmarks/scale.py " + " ".join(sys.argv[1:]),
        "corpus": {"voices": "default8", "clips": len(read_manifest(corpus / "manifest.jsonl"))},
        "training": training,
        "batch_inference": bench_batch(run, corpus, work, args.clips, args.quiet),
        "onnx": [
            bench_onnx(run, "voicenet (trained here)", 1),
            bench_onnx(bundled_encoder(), f"bundled encoder ({bundled_name})", 1),
            bench_onnx(run, "voicenet (trained here)", os.cpu_count() or 1),
        ],
    }
    write_result(args.json, result)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

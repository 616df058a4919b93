"""Where the time goes, against the physical limit: the cost of each stage of identifying a clip
alone, and end to end, on the same clips in one run.

The clips: ``--clips`` mp3 files of the default8 voices (the bundled classifier's) reading
test-pool sentences, each cut to 3-4 s, at the engines' own rates (16, 22.05 and 32 kHz).

- **Stages**, one thread, every clip, taken in turn and repeated (median of ``--repeats``):
  decode (file -> float32 at its own rate), resample (-> 16 kHz), speech detection (the edges'
  and pauses' silence trimmed, level set), windows (cut), features (log-mel), the network in
  torch, in onnxruntime and in onnxruntime int8 (the windows of 32 clips at once, as batch
  inference runs them; each with the log-mel), the open set's probe (the bundled encoder on
  each clip's middle window, as each backend runs it: ``whichvoice.openset``,
  ``runtime.load._probe_encoder``), the answer (combine + JSON). Per clip and per second of audio.
- **The decode limit**: decode + resample alone over every clip in 1 and 2 processes: the
  clips/s no identification of these files can pass on this machine. Every end-to-end figure is
  divided by the limit with the same number of cores, measured in the same run.
- **End to end**: ``whichvoice predict CLIPS --output X.jsonl`` (the CLI, as a user runs it;
  the figure is the clips/s it prints, which leaves out start-up and loading the model, and
  the accuracy of its answers: the int8 backend's change on the test pool) with each
  backend, 1 worker (this process, every core) and ``--workers 2``; with ``--baseline REV``,
  the same runs of that commit's code (a git worktree) in turn with this one's.
- **Latency**: one 3 s clip at a time (100 of them), warm model, 1 thread: file in, answer
  out (JSON), per backend, beside the decode + resample of the same clip.

Writes benchmarks/results/limits.json.

    python benchmarks/limits.py [--workdir DIR] [--clips 1200] [--repeats 3] [--baseline REV]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from provenance import RESULTS, ROOT, provenance, write_result

from whichvoice.scoring import proportion

SENTENCES = 160  # test-pool sentences each default8 voice reads
CLIP_S = (3.0, 4.0)  # each clip is cut to a length drawn in this range
LATENCY_S = 3.0  # s: the clips the latency is measured on
TARGET_LATENCY_MS = 5.0  # issue 23: one 3 s clip, warm, 1 thread
BATCH = 32  # clips whose windows the network sees at once (batch inference's chunk)
TARGET = 0.8  # issue 23: batch inference at >= 0.8 x the decode limit
# (backend, workers); code from before stop 54 (--baseline) has no int8 backend
VARIANTS = (
    ("torch", 1),
    ("torch", 2),
    ("onnx", 1),
    ("onnx", 2),
    ("onnx-int8", 1),
    ("onnx-int8", 2),
)


def make_clips(work: Path, n: int, length: tuple[float, float] = CLIP_S) -> list[Path]:
    """``n`` mp3 clips (resumable) of a length drawn in ``length`` seconds: default8 voices
    reading test-pool sentences."""
    from whichvoice.audio import encode_audio, read_audio
    from whichvoice.corpus import SynthConfig, read_manifest, synthesize_corpus
    from whichvoice.protocol import pool_sentences

    corpus = work / "corpus"
    per_voice = -(-n // 8)
    synthesize_corpus(
        corpus,
        pool_sentences("test", max(SENTENCES, per_voice)),
        SynthConfig(voices=("default8",), assign="sample", per_voice=per_voice, seed=0),
        progress=False,
    )
    clips = work / f"clips-{n}" if length == CLIP_S else work / f"clips-{n}-{length[0]:g}s"
    clips.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    out = []
    for k, clip in enumerate(sorted(read_manifest(corpus / "manifest.jsonl"), key=str)[:n]):
        path = clips / f"{k:05d}-{clip.voice.replace(':', '_')}.mp3"
        seconds = rng.uniform(*length)
        if not path.exists():
            wave, rate = read_audio(corpus / clip.path)
            size = int(seconds * rate)
            wave = np.tile(wave, -(-size // wave.shape[0]))[:size]
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(encode_audio(wave, rate, "mp3"))
            tmp.replace(path)
        out.append(path)
    return out


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def stages(clips: list[Path], repeats: int) -> dict:
    """Each stage alone, one thread, over every clip: ms per clip and per audio second."""
    import torch

    from whichvoice.audio import read_audio, resample
    from whichvoice.features import model_inputs, speech_of, wave_windows
    from whichvoice.runtime import load_model

    torch.set_num_threads(1)
    models = {
        backend: load_model(None, backend=backend, threads=1)
        for backend in ("torch", "onnx", "onnx-int8")
    }
    cfg = models["torch"].features
    decoded = [read_audio(p) for p in clips]
    audio_s = sum(w.shape[0] / r for w, r in decoded)
    waves = [resample(w, r, cfg.sample_rate) for w, r in decoded]
    speech = [speech_of(w, cfg) for w in waves]
    windows = [wave_windows(s, cfg) for s in speech]
    batches = [np.concatenate(windows[i : i + BATCH]) for i in range(0, len(windows), BATCH)]
    scores = [models["torch"].window_scores(w) for w in windows]
    probes = [models["torch"].probe(w) for w in windows]
    n_windows = sum(len(w) for w in windows)

    def answers() -> None:
        model = models["torch"]
        for s, probe in zip(scores, probes, strict=True):
            json.dumps(model._combine("clip.mp3", s, 3.0, probe).to_dict())

    def probe_chunks(model) -> None:
        """The open set's encoder as batch inference runs it: each clip's middle window made
        into the encoder's input, then the network once on a chunk's."""
        encoder = model.probe_encoder()
        for i in range(0, len(windows), BATCH):
            inputs = [model.probe_inputs(w) for w in windows[i : i + BATCH]]
            encoder.input_embeddings(np.concatenate(inputs))

    def features() -> None:
        with torch.inference_mode():
            for b in batches:
                model_inputs(torch.from_numpy(b), cfg)

    timed = {
        "decode": lambda: [read_audio(p) for p in clips],
        "resample": lambda: [resample(w, r, cfg.sample_rate) for w, r in decoded],
        "speech": lambda: [speech_of(w, cfg) for w in waves],
        "windows": lambda: [wave_windows(s, cfg) for s in speech],
        "features": features,
        "network_torch": lambda: [models["torch"].window_scores(b) for b in batches],
        "network_onnx": lambda: [models["onnx"].window_scores(b) for b in batches],
        "network_int8": lambda: [models["onnx-int8"].window_scores(b) for b in batches],
        "openset_probe_torch": lambda: probe_chunks(models["torch"]),
        "openset_probe_onnx": lambda: probe_chunks(models["onnx"]),
        "openset_probe_int8": lambda: probe_chunks(models["onnx-int8"]),
        "answer_json": answers,
    }
    for fn in timed.values():  # warm-up: allocator, caches, first-use exports
        fn()
    out: dict[str, dict] = {}
    for _ in range(repeats):  # in turn, so a noisy moment touches every stage
        for name, fn in timed.items():
            t0 = time.perf_counter()
            fn()
            out.setdefault(name, {"seconds": []})["seconds"].append(time.perf_counter() - t0)
    for r in out.values():
        wall = statistics.median(r.pop("seconds"))
        r["ms_per_clip"] = round(1000 * wall / len(clips), 3)
        r["ms_per_audio_s"] = round(1000 * wall / audio_s, 3)
    # the torch network's figure holds the log-mel too (window_scores takes waveforms);
    # onnxruntime runs the network alone on torch's log-mel
    return {
        "clips": len(clips),
        "audio_seconds": round(audio_s, 1),
        "windows": n_windows,
        "stages_ms": out,
    }


def _decode_one(path: str) -> int:
    from whichvoice.audio import SAMPLE_RATE, read_audio, resample

    wave, rate = read_audio(path)
    return resample(wave, rate, SAMPLE_RATE).shape[0]


def _one_thread() -> None:
    os.environ["OMP_NUM_THREADS"] = "1"


def decode_limit(clips: list[Path], processes: int, repeats: int) -> float:
    """clips/s of decode + resample alone over every clip, in ``processes`` processes."""
    paths = [str(p) for p in clips]
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes, initializer=_one_thread) as pool:
        pool.map(_decode_one, paths[: 8 * processes])  # start-up and imports
        chunk = max(1, len(paths) // (16 * processes))
        wall = _median_time(lambda: pool.map(_decode_one, paths, chunksize=chunk), repeats)
    return len(paths) / wall


LINE = re.compile(r"(\d+) clips in ([\d.]+) s \(([\d.]+) clips/s")


def end_to_end(
    src: Path, clips_dir: Path, backend: str, workers: int, out: Path
) -> tuple[float, int, int]:
    """clips/s that ``whichvoice predict`` (the code under ``src``) prints for the folder,
    and (clips answered with their own voice, clips): each file is named after its voice."""
    out.unlink(missing_ok=True)
    # each code its own ONNX cache (for the bundled classifier, a user folder)
    env = {**os.environ, "PYTHONPATH": str(src), "XDG_DATA_HOME": str(out.parent / src.parent.name)}
    cmd = [sys.executable, "-m", "whichvoice", "predict", str(clips_dir), "--output", str(out),
           "--backend", backend, "--workers", str(workers), "--quiet"]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=src.parent)
    match = LINE.search(done.stderr)
    if done.returncode != 0 or not match:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr[-800:]}")
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    right = sum(
        Path(r["path"]).stem.split("-", 1)[1] == (r["voice"] or "").replace(":", "_") for r in rows
    )
    return float(match.group(3)), right, len(rows)


def latency(clips: list[Path], repeats: int) -> dict:
    """Median ms, one clip at a time (warm, 1 thread): identify from the file, per backend,
    and decode + resample alone."""
    import torch

    from whichvoice.runtime import load_model

    torch.set_num_threads(1)
    models = {
        backend: load_model(None, backend=backend, threads=1)
        for backend in ("torch", "onnx", "onnx-int8")
    }
    timed = {"decode_resample": _decode_one}
    for name, model in models.items():
        timed[f"identify_{name}"] = lambda p, m=model: json.dumps(m.identify(p).to_dict())
    for fn in timed.values():
        for p in clips[:20]:
            fn(p)
    per: dict[str, list[float]] = {name: [] for name in timed}
    for _ in range(repeats):
        for p in clips:
            for name, fn in timed.items():
                t0 = time.perf_counter()
                fn(str(p))
                per[name].append(time.perf_counter() - t0)
    return {name: round(1000 * statistics.median(v), 2) for name, v in per.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=1200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline", default=None, help="a commit whose code runs beside this")
    parser.add_argument("--json", type=Path, default=RESULTS / "limits.json")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the clips here")
    args = parser.parse_args()
    made = provenance()
    with contextlib.ExitStack() as stack:
        work = args.workdir or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="whichvoice-limits-"))
        )
        clips = make_clips(work, args.clips)
        print(f"{len(clips)} clips in {clips[0].parent}", flush=True)
        sample = clips[:: max(1, len(clips) // 300)]
        stage = stages(sample, args.repeats)
        print(json.dumps(stage["stages_ms"]), flush=True)
        lat = latency(make_clips(work, 100, (LATENCY_S, LATENCY_S)), args.repeats)
        print(json.dumps(lat), flush=True)
        codes = {"current": ROOT / "src"}
        if args.baseline:
            tree = work / "baseline"
            if tree.exists():
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT)
            subprocess.run(["git", "worktree", "add", "--detach", str(tree), args.baseline],
                           cwd=ROOT, check=True, capture_output=True)  # fmt: skip
            stack.callback(
                subprocess.run, ["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT
            )
            codes = {"baseline": tree / "src", **codes}
        limits: dict[int, list[float]] = {1: [], 2: []}
        runs: dict[str, list[float]] = {}
        correct: dict[str, tuple[int, int]] = {}
        for _ in range(args.repeats):  # every figure in turn, so they share the machine's mood
            for cores in limits:
                limits[cores].append(decode_limit(clips, cores, 1))
            for code, src in codes.items():
                for backend, workers in VARIANTS:
                    int8 = src / "whichvoice" / "data" / "classifier" / "model.int8.onnx"
                    if backend == "onnx-int8" and not int8.exists():
                        continue  # code from before the int8 backend shipped
                    key = f"{code} {backend} workers={workers}"
                    rate, right, n = end_to_end(
                        src, clips[0].parent, backend, workers, work / "out.jsonl"
                    )
                    runs.setdefault(key, []).append(rate)
                    correct[key] = (right, n)
                    print(f"{key}: {rate:.1f} clips/s", flush=True)
    limit = {c: statistics.median(v) for c, v in limits.items()}
    cores = len(os.sched_getaffinity(0))
    results = {}
    for key, rates in runs.items():
        rate = statistics.median(rates)
        results[key] = {
            "clips_per_s": round(rate, 1),
            "runs": [round(r, 1) for r in rates],
            "of_decode_limit": round(rate / limit[min(cores, 2)], 3),
            "accuracy": proportion(*correct[key]),
        }
    report = {
        "benchmark": "limits",
        **made,
        "command": "python benchmarks/limits.py " + " ".join(sys.argv[1:]),
        "clips": len(clips),
        "cores": cores,
        "model": "the bundled classifier (default8 voices)",
        "stages": stage,
        "latency_ms": lat,
        "decode_limit_clips_per_s": {str(c): round(v, 1) for c, v in limit.items()},
        "decode_limit_runs": {str(c): [round(x, 1) for x in v] for c, v in limits.items()},
        "end_to_end": results,
        "baseline": args.baseline,
        "target": {"of_decode_limit": TARGET, "cores": 2, "latency_ms": TARGET_LATENCY_MS},
    }
    write_result(args.json, report)
    print(f"-> {args.json}")


if __name__ == "__main__":
    main()

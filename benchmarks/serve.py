"""Load on the real server, on 127.0.0.1 only: bounded, stops by itself.

Posts 3 s mp3 clips to the talk's ``/invocations`` (base64 body) at concurrency 1, 8 and 32:
requests/s, p50/p99 latency, errors; then the server's memory (RSS, all its processes)
before and after 10,000 requests. Writes benchmarks/results/serve.json.

    python benchmarks/serve.py [--run RUN] [--workers 1,2] [--requests 1000] [--soak 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.server: the launcher

from provenance import provenance, write_result
from tests.server import rss_mib, serving

from whichvoice.audio import encode_audio, read_audio
from whichvoice.corpus import SynthConfig, synthesize_corpus
from whichvoice.sentences import load_sentences
from whichvoice.train import TrainConfig, train

CLIP_S = 3.0  # s of audio per request


def make_clips(work: Path) -> list[bytes]:
    """One 3 s mp3 per default8 voice: real speech, cut or repeated to exactly 3 s."""
    corpus = work / "clips"
    synthesize_corpus(
        corpus,
        load_sentences(8).sentences,
        SynthConfig(voices=("default8",), assign="all"),
        progress=False,
    )
    out = []
    for path in sorted(corpus.rglob("*.mp3"))[::8]:
        wave, rate = read_audio(path)
        n = int(CLIP_S * rate)
        wave = np.tile(wave, int(np.ceil(n / wave.shape[0])))[:n]
        out.append(encode_audio(wave, rate, "mp3"))
    return out


def default_run(work: Path) -> Path:
    run = Path("runs/demo/run-voicenet-default")
    if (run / "model.safetensors").is_file():
        return run
    corpus = work / "corpus"
    synthesize_corpus(
        corpus,
        load_sentences(60).sentences,
        SynthConfig(voices=("default8",), assign="all"),
        progress=False,
    )
    return train(corpus, work / "run", TrainConfig(), progress=False)


async def load(url: str, bodies: list[bytes], n: int, concurrency: int) -> dict:
    """``n`` requests, ``concurrency`` at a time; returns rate, latency percentiles, errors."""
    latencies: list[float] = []
    errors = 0
    counter = iter(range(n))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:

        async def worker() -> None:
            nonlocal errors
            for i in counter:
                t0 = time.perf_counter()
                try:
                    r = await client.post(
                        "/invocations",
                        content=bodies[i % len(bodies)],
                        headers={"Content-Type": "audio/mpeg"},
                    )
                    ok = r.status_code == 200
                except httpx.HTTPError:
                    ok = False
                latencies.append(time.perf_counter() - t0)
                errors += not ok

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    latencies.sort()
    return {
        "concurrency": concurrency,
        "requests": n,
        "errors": errors,
        "requests_per_s": round(n / wall, 1),
        "p50_ms": round(1000 * statistics.median(latencies), 1),
        "p99_ms": round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 1),
        "wall_s": round(wall, 2),
    }


def bench_workers(run: Path, workers: int, bodies: list[bytes], n: int, soak: int) -> dict:
    with serving(run, "--workers", str(workers), stderr=subprocess.DEVNULL) as server:
        url = server.url
        asyncio.run(load(url, bodies, 100, 8))  # warm up every worker
        levels = [asyncio.run(load(url, bodies, n if c > 1 else n // 2, c)) for c in (1, 8, 32)]
        before = rss_mib(server.proc.pid)
        soaked = asyncio.run(load(url, bodies, soak, 8))
        after = rss_mib(server.proc.pid)
    return {
        "workers": workers,
        "levels": levels,
        "soak": soaked,
        "memory_mb_before": round(before, 1),
        "memory_mb_after": round(after, 1),
        "memory_growth_mb": round(after - before, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=None)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--requests", type=int, default=1000, help="per concurrency level")
    parser.add_argument(
        "--soak", type=int, default=10_000, help="requests between the memory readings"
    )
    parser.add_argument(
        "--json", type=Path, default=Path(__file__).parent / "results" / "serve.json"
    )
    args = parser.parse_args()
    made = provenance()
    work = Path(tempfile.mkdtemp(prefix="whichvoice-bench-serve-"))
    run = args.run or default_run(work)
    bodies = [base64.b64encode(c) for c in make_clips(work)]
    results = [
        bench_workers(run, int(w), bodies, args.requests, args.soak)
        for w in args.workers.split(",")
    ]
    out = {
        "benchmark": "serve",
        **made,
        "command": "python benchmarks/serve.py " + " ".join(sys.argv[1:]),
        "endpoint": "/invocations (base64 mp3, 3 s clips)",
        "client": "httpx asyncio on the same machine",
        "run": str(run),
        "results": results,
    }
    write_result(args.json, out)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

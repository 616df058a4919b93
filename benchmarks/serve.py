"""Load on the real server, on 127.0.0.1 only: bounded, stops by itself.

Posts 3 s mp3 clips to the talk's ``/invocations`` (base64 body) at concurrency 1, 8 and 32:
requests/s, p50/p99 latency, errors, and the client's own CPU (it shares the machine). Each
server variant in turn, the same clips and requests:

- ``previous``: the code of ``--baseline REV`` (a git worktree), each request scored alone;
- ``no-batching``: this code with ``--no-batching`` (each request scored alone);
- ``batching``: this code's default (concurrent requests' windows scored in one call);
- ``batching-onnx``: the same with ``--backend onnx``;
- ``batching-int8``: the same with ``--backend onnx-int8`` (the network quantised to int8).

Then, for this code's default, the server's memory (RSS, all its processes) before and after
``--soak`` requests. The client sets TCP_NODELAY: without it, httpx's body waits for the ACK
of its headers, which Linux delays up to 40 ms, and every request at concurrency 1 took
~45 ms longer than the server spent on it. Writes benchmarks/results/serve.json.

    python benchmarks/serve.py [--run RUN] [--workers 1,2] [--requests 1000] [--soak 10000]
        [--baseline REV] [--variants previous,no-batching,batching,batching-onnx,batching-int8]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.server: the launcher

from provenance import ROOT, provenance, write_result
from tests.server import BUNDLED, rss_mib, serving

from whichvoice.audio import encode_audio, read_audio
from whichvoice.corpus import SynthConfig, synthesize_corpus
from whichvoice.sentences import load_sentences

CLIP_S = 3.0  # s of audio per request
TARGET = 3.0  # issue 23: >= 3x the previous path's requests/s at concurrency 8
TARGET_P99_MS = 60.0
# variant -> (code: "baseline" or "current", serve's options)
VARIANTS = {
    "previous": ("baseline", ()),
    "no-batching": ("current", ("--no-batching",)),
    "batching": ("current", ()),
    "batching-onnx": ("current", ("--backend", "onnx")),
    "batching-int8": ("current", ("--backend", "onnx-int8")),
}
DEFAULT = "batching"  # this code's default: the soak runs on it


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


async def load(url: str, bodies: list[bytes], n: int, concurrency: int) -> dict:
    """``n`` requests, ``concurrency`` at a time; returns rate, latency percentiles, errors
    and the client's CPU seconds per wall second (its share of the machine's work)."""
    latencies: list[float] = []
    errors = 0
    counter = iter(range(n))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    nodelay = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
    transport = httpx.AsyncHTTPTransport(limits=limits, socket_options=nodelay)
    async with httpx.AsyncClient(base_url=url, timeout=30, transport=transport) as client:

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

        cpu0, t0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    latencies.sort()
    return {
        "concurrency": concurrency,
        "requests": n,
        "errors": errors,
        "requests_per_s": round(n / wall, 1),
        "p50_ms": round(1000 * statistics.median(latencies), 1),
        "p99_ms": round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 1),
        "wall_s": round(wall, 2),
        "client_cpu_per_s": round(cpu / wall, 3),
    }


def bench(
    run: Path | str, variant: str, src: Path, workers: int, bodies: list[bytes], n: int, soak: int
) -> dict:
    """One server variant: the three concurrency levels, then (``soak`` > 0) the memory."""
    options = VARIANTS[variant][1]
    env = {"PYTHONPATH": str(src), "XDG_DATA_HOME": str(src.parent / ".bench-data")}
    with serving(
        run, "--workers", str(workers), *options, env=env, stderr=subprocess.DEVNULL
    ) as server:
        url = server.url
        asyncio.run(load(url, bodies, 100, 8))  # warm up every worker
        levels = [asyncio.run(load(url, bodies, n if c > 1 else n // 2, c)) for c in (1, 8, 32)]
        out: dict = {"variant": variant, "workers": workers, "levels": levels}
        if soak:
            before = rss_mib(server.proc.pid)
            out["soak"] = asyncio.run(load(url, bodies, soak, 8))
            after = rss_mib(server.proc.pid)
            out |= {
                "memory_mb_before": round(before, 1),
                "memory_mb_after": round(after, 1),
                "memory_growth_mb": round(after - before, 1),
            }
    return out


def worktree(rev: str, work: Path) -> Path:
    """A checkout of ``rev`` under ``work`` (removed by ``git worktree prune`` later)."""
    tree = work / "baseline"
    subprocess.run(["git", "worktree", "add", "--detach", str(tree), rev],
                   cwd=ROOT, check=True, capture_output=True)  # fmt: skip
    return tree


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=None)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--requests", type=int, default=1000, help="per concurrency level")
    parser.add_argument(
        "--soak", type=int, default=10_000, help="requests between the memory readings"
    )
    parser.add_argument("--baseline", default=None, help="the previous path's commit")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument(
        "--json", type=Path, default=Path(__file__).parent / "results" / "serve.json"
    )
    args = parser.parse_args()
    made = provenance()
    variants = args.variants.split(",")
    if "previous" in variants and not args.baseline:
        parser.error("the previous variant needs --baseline REV")
    work = Path(tempfile.mkdtemp(prefix="whichvoice-bench-serve-"))
    run = args.run or BUNDLED  # the bundled classifier
    bodies = [base64.b64encode(c) for c in make_clips(work)]
    codes = {"current": ROOT / "src"}
    if args.baseline:
        codes["baseline"] = worktree(args.baseline, work) / "src"
    results = []
    try:
        for w in args.workers.split(","):
            for variant in variants:
                src = codes[VARIANTS[variant][0]]
                soak = args.soak if variant == DEFAULT else 0
                results.append(bench(run, variant, src, int(w), bodies, args.requests, soak))
                level8 = results[-1]["levels"][1]
                print(f"{variant} workers={w}: c8 {level8['requests_per_s']} req/s, "
                      f"p99 {level8['p99_ms']} ms", flush=True)  # fmt: skip
    finally:
        if args.baseline:
            subprocess.run(["git", "worktree", "remove", "--force", str(work / "baseline")],
                           cwd=ROOT, capture_output=True)  # fmt: skip
    for r in results:
        base = next(
            (b for b in results if b["variant"] == "previous" and b["workers"] == r["workers"]),
            None,
        )
        if base is not None:
            r["c8_vs_previous"] = round(
                r["levels"][1]["requests_per_s"] / base["levels"][1]["requests_per_s"], 2
            )
    out = {
        "benchmark": "serve",
        **made,
        "command": "python benchmarks/serve.py " + " ".join(sys.argv[1:]),
        "endpoint": "/invocations (base64 mp3, 3 s clips)",
        "client": "httpx asyncio on the same machine, TCP_NODELAY",
        "run": "the bundled classifier" if run == BUNDLED else str(run),
        "baseline": args.baseline,
        "target": {"c8_vs_previous": TARGET, "p99_ms": TARGET_P99_MS, "errors": 0},
        "results": results,
    }
    write_result(args.json, out)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

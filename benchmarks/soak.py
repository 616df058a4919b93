"""Soak and overload of the real server on 127.0.0.1: memory over a long run at concurrency
16, /healthz under 64 slow uploads, clients that disconnect mid-upload, and kill -9 of a worker
while voices are being enrolled. Writes benchmarks/results/soak.json (with the commit).

    python benchmarks/soak.py                  # 10 minutes of soak, then the overload phases
    python benchmarks/soak.py --soak-s 60      # a short run

Every request goes to 127.0.0.1 only; each phase is bounded in time and requests.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.server: the launcher

from provenance import provenance, write_result
from tests.server import rss_mib, serving, tree_pids

from whichvoice.gallery import Gallery
from whichvoice.verification import load_encoder, model_id

RESULTS = Path(__file__).parent / "results" / "soak.json"


VOICES = 64  # distinct voices: one a name enrolled in the kill -9 phase (then they repeat)


def speech(voices: int, work: Path) -> list[bytes]:
    """One clip of real speech a voice (``voices`` seeded espeak-ng variants, each reading two
    sentences joined, ~6 s) as WAV bytes: what identify, verify and enroll take. A synthetic
    tone no longer passes: since stop 53 the server hears no speech in a steady sound, and the
    default encoder's detector (silero-vad) none in a tone."""
    from whichvoice.audio import encode_audio, read_audio
    from whichvoice.corpus import SynthConfig, read_manifest, synthesize_corpus
    from whichvoice.protocol import pool_voices
    from whichvoice.sentences import load_sentences

    corpus = work / "speech"
    synthesize_corpus(
        corpus,
        load_sentences(2).sentences,  # the bundled (training) sentences
        SynthConfig(voices=(",".join(pool_voices("train", voices)),), assign="all"),
        progress=False,
    )
    parts: dict[str, list[np.ndarray]] = {}
    rate = 16_000
    for clip in sorted(read_manifest(corpus / "manifest.jsonl"), key=lambda c: c.path):
        wave, rate = read_audio(corpus / clip.path)
        parts.setdefault(clip.voice, []).append(wave)
    return [encode_audio(np.concatenate(w), rate, "wav") for _, w in sorted(parts.items())]


def longer(clip: bytes, seconds: float) -> bytes:
    """``clip`` repeated to ``seconds`` s, WAV bytes."""
    wave, rate = sf.read(io.BytesIO(clip), dtype="float32")
    wave = np.tile(wave, int(np.ceil(seconds * rate / wave.shape[0])))[: int(seconds * rate)]
    buf = io.BytesIO()
    sf.write(buf, wave, rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def worker_pids(pid: int) -> list[int]:
    """The uvicorn worker processes under a ``whichvoice serve --workers N`` process."""
    out = []
    for p in tree_pids(pid)[1:]:
        try:
            cmd = Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if b"spawn_main" in cmd and b"resource_tracker" not in cmd:
            out.append(p)
    return out


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * (len(values) - 1)))] if values else float("nan")


async def soak(url: str, pid: int, seconds: float, concurrency: int, voices: list) -> dict:
    """Mixed traffic (identify, verify, gallery, healthz) for ``seconds``; RSS sampled."""
    clips = voices[3:11]
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    samples: list[tuple[float, float]] = []
    t0 = time.monotonic()
    stop_at = t0 + seconds

    async def client(n: int, http: httpx.AsyncClient) -> None:
        i = n
        while time.monotonic() < stop_at:
            clip = clips[i % len(clips)]
            kind = i % 4
            start = time.perf_counter()
            try:
                if kind == 0:
                    r = await http.post("/v1/identify", content=clip, headers=WAV)
                elif kind == 1:
                    r = await http.post("/v1/verify?name=v0", content=clip, headers=WAV)
                elif kind == 2:
                    r = await http.get("/v1/gallery")
                else:
                    r = await http.get("/healthz")
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            except httpx.HTTPError:
                statuses[-1] = statuses.get(-1, 0) + 1
            latencies.append(time.perf_counter() - start)
            i += concurrency

    async def sampler() -> None:
        while time.monotonic() < stop_at:
            samples.append((round(time.monotonic() - t0, 1), round(rss_mib(pid), 1)))
            await asyncio.sleep(min(10.0, max(1.0, seconds / 60)))
        samples.append((round(time.monotonic() - t0, 1), round(rss_mib(pid), 1)))

    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        for v in range(3):  # voices to identify against
            r = await http.post(f"/v1/enroll?name=v{v}", content=voices[v], headers=WAV)
            r.raise_for_status()
        await asyncio.gather(sampler(), *(client(n, http) for n in range(concurrency)))
    wall = time.monotonic() - t0
    rss = [m for _, m in samples]
    warm = rss[len(rss) // 10 :] or rss  # after the first tenth: caches and arenas filled
    return {
        "seconds": round(wall, 1),
        "concurrency": concurrency,
        "requests": len(latencies),
        "requests_per_s": round(len(latencies) / wall, 1),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "server_errors": sum(v for k, v in statuses.items() if k >= 500 or k < 0),
        "p50_ms": round(1000 * statistics.median(latencies), 1),
        "p99_ms": round(1000 * percentile(latencies, 0.99), 1),
        "rss_mib_start": rss[0],
        "rss_mib_after_warmup": warm[0],
        "rss_mib_end": rss[-1],
        "rss_mib_max": max(rss),
        "rss_growth_after_warmup_mib": round(rss[-1] - warm[0], 1),
        "rss_samples": samples,
    }


WAV = {"Content-Type": "audio/wav"}


async def slow_uploads(url: str, clients: int, seconds: float, body: bytes) -> dict:
    """``clients`` uploads of ``body`` that trickle in over ``seconds``, while /healthz is
    timed."""
    chunk = max(1, len(body) // 40)

    async def trickle():
        for i in range(0, len(body), chunk):
            yield body[i : i + chunk]
            await asyncio.sleep(seconds / 40)

    health: list[float] = []
    health_errors = 0
    done = asyncio.Event()

    async def uploader(http: httpx.AsyncClient) -> int:
        r = await http.post("/v1/identify", content=trickle(), headers=WAV)
        return r.status_code

    async def prober(http: httpx.AsyncClient) -> None:
        nonlocal health_errors
        while not done.is_set():
            start = time.perf_counter()
            try:
                r = await http.get("/healthz")
                health_errors += r.status_code != 200
            except httpx.HTTPError:
                health_errors += 1
            health.append(time.perf_counter() - start)
            await asyncio.sleep(0.1)

    limits = httpx.Limits(max_connections=clients + 4)
    async with (
        httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http,
        httpx.AsyncClient(base_url=url, timeout=10) as probe_http,
    ):
        probe = asyncio.create_task(prober(probe_http))
        statuses = await asyncio.gather(
            *(uploader(http) for _ in range(clients)), return_exceptions=True
        )
        done.set()
        await probe
    return {
        "slow_uploads": clients,
        "upload_seconds": seconds,
        "upload_statuses": sorted({str(s) for s in statuses}),
        "healthz_probes": len(health),
        "healthz_errors": health_errors,
        "healthz_p50_ms": round(1000 * statistics.median(health), 1),
        "healthz_max_ms": round(1000 * max(health), 1),
    }


async def disconnects(url: str, clients: int, tmp: Path, voice: bytes) -> dict:
    """Clients that send half of a 3 MB multipart upload and hang up; then the server's
    temporary folder is looked at for files the uploads left (what was there before, such as
    onnxruntime's own ``.ses`` file written when a session starts, is not theirs)."""
    before = set(tmp.rglob("*"))
    blob = b"\0" * (3 * 2**20)
    boundary = "whichvoicesoak"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode()
    host, port = url.removeprefix("http://").split(":")

    async def cut() -> None:
        _, writer = await asyncio.open_connection(host, int(port))
        total = len(head) + len(blob) + len(boundary) + 8
        writer.write(
            f"POST /v1/enroll?name=cut HTTP/1.1\r\nHost: {host}\r\nContent-Type: "
            f"multipart/form-data; boundary={boundary}\r\nContent-Length: {total}\r\n\r\n".encode()
        )
        writer.write(head + blob[: len(blob) // 2])
        await writer.drain()
        await asyncio.sleep(0.5)
        writer.transport.abort()  # the client goes away mid-upload

    await asyncio.gather(*(cut() for _ in range(clients)))
    await asyncio.sleep(2.0)
    # complete multipart uploads over starlette's 1 MB spool limit go through temp files too
    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        big = [("file", ("big.wav", longer(voice, 40.0), "audio/wav"))]
        r = await http.post("/v1/verify?name=v0", files=big)
    left = sorted(p.name for p in set(tmp.rglob("*")) - before)
    return {
        "disconnected_uploads": clients,
        "large_upload_status": r.status_code,
        "temp_files_left": left,
    }


def kill_a_worker(
    gallery: Path, voices: list, *, workers: int, seconds: float, concurrency: int
) -> dict:
    """Enroll new voices from ``concurrency`` clients on a ``workers``-process server; kill -9
    one worker half-way; every enrollment that was answered 200 must be in the gallery. Name
    ``k{i}`` is voice ``i`` of ``voices`` (after the last, they repeat: a 409 then, counted
    apart)."""
    acked: list[str] = []
    failed = 0
    already = 0
    killed_pid = None
    with serving(None, "--gallery", str(gallery), "--workers", str(workers)) as server:
        workers_pids = worker_pids(server.proc.pid)

        async def run() -> None:
            nonlocal failed
            stop_at = time.monotonic() + seconds

            async def client(n: int, http: httpx.AsyncClient) -> None:
                nonlocal failed, already
                i = n
                while time.monotonic() < stop_at:
                    name = f"k{i}"
                    try:
                        r = await http.post(
                            f"/v1/enroll?name={name}", content=voices[i % len(voices)], headers=WAV
                        )
                        if r.status_code == 200:
                            acked.append(name)
                        elif r.status_code == 409:
                            already += 1
                        else:
                            failed += 1
                    except httpx.HTTPError:
                        failed += 1
                    i += concurrency

            async def killer() -> None:
                nonlocal killed_pid
                await asyncio.sleep(seconds / 2)
                if workers_pids:
                    killed_pid = workers_pids[-1]
                    os.kill(killed_pid, signal.SIGKILL)

            async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
                await asyncio.gather(killer(), *(client(n, http) for n in range(concurrency)))

        asyncio.run(run())
    with Gallery(gallery, model_id(load_encoder(None))) as g:
        stored = set(g.names())
    lost = sorted(set(acked) - stored)
    return {
        "workers": workers,
        "worker_processes": len(workers_pids),
        "killed": killed_pid,
        "enrollments_answered_200": len(acked),
        "refused_already_enrolled": already,
        "requests_failed": failed,
        "lost_after_kill_9": lost,
    }


def table(result: dict) -> str:
    """The docs' table of a soak.json (docs/security.md holds it verbatim; a test checks)."""
    s, slow, cut, kill = (result[k] for k in ("soak", "slow_uploads", "disconnects", "kill_9"))
    rows = [
        ("what", "measured"),
        ("commit", f"`{result['commit'][:12]}` ({result['date'][:10]}, "
                   f"{result['machine']['cpus']} cores)"),
        (f"soak: {s['seconds']:.0f} s at concurrency {s['concurrency']}",
         f"{s['requests']:,} requests ({s['requests_per_s']} req/s), "
         f"{s['server_errors']} server errors, p50 {s['p50_ms']} ms, p99 {s['p99_ms']} ms"),
        ("server memory (RSS)",
         f"{s['rss_mib_start']:.0f} MiB at start, {s['rss_mib_after_warmup']:.0f} MiB after "
         f"the first tenth, {s['rss_mib_end']:.0f} MiB at the end "
         f"({s['rss_growth_after_warmup_mib']:+.0f} MiB), {s['rss_mib_max']:.0f} MiB at most"),
        (f"{slow['slow_uploads']} uploads trickling in over {slow['upload_seconds']:.0f} s",
         f"/healthz answered {slow['healthz_probes']} probes, {slow['healthz_errors']} failed, "
         f"p50 {slow['healthz_p50_ms']} ms, max {slow['healthz_max_ms']} ms"),
        (f"{cut['disconnected_uploads']} clients hanging up mid-upload, then a "
         "40 s multipart upload",
         f"{len(cut['temp_files_left'])} temporary files left"),
        (f"kill -9 of 1 of {kill['workers']} workers while enrolling",
         f"{kill['enrollments_answered_200']} enrollments answered 200, "
         f"{len(kill['lost_after_kill_9'])} of them lost; {kill['requests_failed']} requests "
         "failed (in flight in the killed worker)"
         + (f"; {kill['refused_already_enrolled']} refused as a voice already enrolled under "
            "another name (the clips' voices repeat)" if kill.get("refused_already_enrolled")
            else "")),
    ]  # fmt: skip
    lines = [f"| {a} | {b} |" for a, b in rows]
    lines.insert(1, "|---|---|")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--soak-s", type=float, default=600.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--slow-clients", type=int, default=64)
    parser.add_argument("--slow-upload-s", type=float, default=20.0)
    parser.add_argument("--disconnects", type=int, default=32)
    parser.add_argument("--kill-s", type=float, default=30.0)
    parser.add_argument("--json", type=Path, default=RESULTS)
    parser.add_argument("--table", action="store_true", help="print the docs' table of --json")
    args = parser.parse_args()
    if args.table:
        print(table(json.loads(args.json.read_text())))
        return

    work = Path(tempfile.mkdtemp(prefix="whichvoice-soak-"))
    tmp = work / "server-tmp"  # the server's TMPDIR: what it leaves there is looked at
    tmp.mkdir()
    made = provenance()  # the code that runs, not what is checked out by the end
    voices = speech(VOICES, work)
    with serving(
        None, "--gallery", str(work / "g.sqlite"), "--max-upload-mb", "8",
        env={"TMPDIR": str(tmp)}, stderr=subprocess.DEVNULL,
    ) as server:  # fmt: skip
        print(f"soak: {args.soak_s:.0f} s at concurrency {args.concurrency}", flush=True)
        soaked = asyncio.run(
            soak(server.url, server.proc.pid, args.soak_s, args.concurrency, voices)
        )
        print(json.dumps({k: v for k, v in soaked.items() if k != "rss_samples"}), flush=True)
        print(f"overload: {args.slow_clients} slow uploads", flush=True)
        slow = asyncio.run(
            slow_uploads(server.url, args.slow_clients, args.slow_upload_s, voices[11])
        )
        print(json.dumps(slow), flush=True)
        cut = asyncio.run(disconnects(server.url, args.disconnects, tmp, voices[12]))
        print(json.dumps(cut), flush=True)
    print("kill -9 of a worker under load", flush=True)
    killed = kill_a_worker(
        work / "killed.sqlite", voices, workers=2, seconds=args.kill_s, concurrency=8
    )
    print(json.dumps(killed), flush=True)

    out = {
        "benchmark": "soak",
        **made,
        "command": "python benchmarks/soak.py " + " ".join(sys.argv[1:]),
        "server": "whichvoice serve (no classifier, the default encoder), 1 worker; kill -9: 2",
        "client": "httpx asyncio on the same machine, 127.0.0.1",
        "soak": soaked,
        "slow_uploads": slow,
        "disconnects": cut,
        "kill_9": killed,
        "passed": {
            "no_server_errors": soaked["server_errors"] == 0,
            "flat_memory": soaked["rss_growth_after_warmup_mib"] <= 50,
            "healthz_not_starved": slow["healthz_errors"] == 0 and slow["healthz_max_ms"] < 1000,
            "no_temp_files_left": not cut["temp_files_left"],
            "no_gallery_write_lost": not killed["lost_after_kill_9"],
        },
    }
    write_result(args.json, out)
    print(json.dumps(out["passed"], indent=2))


if __name__ == "__main__":
    main()

"""Shared fixtures: real audio made once per test run, and the CLI run in a subprocess."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

# real people (spoken digits, CC BY-SA 4.0; see its README): `{digit}_{speaker}_{take}.wav`
HUMAN_DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "human-dev" / "recordings"


def human_clip(out: Path, speaker: str, takes: range) -> Path:
    """A human-dev speaker saying the 10 digits once per take of ``takes``, joined into one
    8 kHz wav in ``out`` (~4 s a take pair: enrollment needs 3 s of speech)."""
    import soundfile as sf

    wave = np.concatenate(
        [sf.read(HUMAN_DEV / f"{d}_{speaker}_{t}.wav", dtype="float32")[0]
         for t in takes for d in range(10)]
    )  # fmt: skip
    path = out / f"{speaker}-{takes.start}-{takes.stop}.wav"
    sf.write(path, wave, 8000)
    return path


SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Please bring me a cup of tea and two biscuits.",
    "We will meet at the station at half past nine.",
]


# fixtures that synthesize, train or start a server: a test using one (directly or through
# another fixture) is slow whatever it is marked, so `-m "not slow"` stays fast
SLOW_FIXTURES = {
    "small_corpus",  # synthesis (and trained_run, reference, run_copy, ddp_run: training)
    "enroll_clips",  # synthesis
    "moto_s3",  # an S3 server (and bucket, moto_s3_proxy)
    "flite_clip",  # synthesis (the Polly tests' source audio)
    "corpus",  # test_pretrained: synthesis
    "unseen",  # test_bundled_encoder: synthesis
    "gallery_server",  # a server
    "secured",  # a server
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session", autouse=True)
def _own_data_home(tmp_path_factory: pytest.TempPathFactory) -> None:
    """No test reads or writes the user's own galleries or calibrations
    (``~/.local/share/whichvoice``): the whole session, subprocesses included, gets its own."""
    os.environ["XDG_DATA_HOME"] = str(tmp_path_factory.mktemp("data-home"))
    for name in ("WHICHVOICE_GALLERY", "WHICHVOICE_ENCODER_DIR", "WHICHVOICE_RESEMBLYZER_DIR"):
        os.environ.pop(name, None)


def run_cli(
    *args: str, check: bool = False, timeout: float = 600, **kw
) -> subprocess.CompletedProcess:
    """Run ``python -m whichvoice ARGS`` in a subprocess, as a user would."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **kw.pop("env", {})}
    env = {k: v for k, v in env.items() if v is not None}  # None removes a variable
    proc = subprocess.run(
        [sys.executable, "-m", "whichvoice", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        **kw,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc


def stderr_on_a_terminal(argv: list[str], timeout: float = 300) -> tuple[bytes, bytes]:
    """Run ``argv`` with standard error on a pseudo-terminal of 100 columns (a progress bar
    needs a width), read while it runs: its standard output and what reached the terminal.
    A failure is an AssertionError that shows both."""
    import fcntl
    import struct
    import termios

    controller, terminal = os.openpty()
    try:
        fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
        with tempfile.TemporaryFile() as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=terminal)
            os.close(terminal)
            terminal = -1
            seen = b""
            while True:
                try:
                    chunk = os.read(controller, 4096)
                except OSError:  # EIO once the terminal's last writer is gone
                    break
                if not chunk:
                    break
                seen += chunk
            code = proc.wait(timeout=timeout)
            out.seek(0)
            stdout = out.read()
    finally:
        os.close(controller)
        if terminal >= 0:
            os.close(terminal)
    if code != 0:
        raise AssertionError(f"exit {code}\nstdout:\n{stdout!r}\nterminal:\n{seen!r}")
    return stdout, seen


@pytest.fixture
def cli() -> Callable[..., subprocess.CompletedProcess]:
    return run_cli


@pytest.fixture(scope="session")
def sentences_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sentences") / "sentences.txt"
    path.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    return path


def sine(
    freq: float = 440.0, seconds: float = 1.0, rate: int = 16_000, amp: float = 0.5
) -> np.ndarray:
    """A float32 sine, shape (n_samples,)."""
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def warble(
    freq: float = 200.0, seconds: float = 1.0, rate: int = 16_000, amp: float = 0.5
) -> np.ndarray:
    """A sine rising and falling three times a second, as syllables do: a clip every command
    judges (a steady ``sine`` is no speech to them: ``audio.check_judgeable``)."""
    t = np.arange(int(seconds * rate)) / rate
    envelope = 0.2 + 0.8 * np.abs(np.sin(2 * np.pi * 3 * t))
    return (sine(freq, seconds, rate, amp) * envelope).astype(np.float32)


def encode_with_ffmpeg(wave: np.ndarray | None, rate: int, container: str, codec: str) -> bytes:
    """``wave`` (float32 mono) encoded as a browser or phone would (PyAV's FFmpeg): e.g.
    ("webm", "libopus"), ("mp4", "aac"), ("adts", "aac"); ``wave`` None: a few black video
    frames of ``codec`` and no sound."""
    import io

    import av

    out = io.BytesIO()
    with av.open(out, mode="w", format=container) as f:
        if wave is None:
            picture = f.add_stream(codec, rate=10)
            picture.width, picture.height, picture.pix_fmt = 64, 48, "yuv420p"
            black = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
            packets = [picture.encode(black.reformat(format="yuv420p")) for _ in range(5)]
            packets.append(picture.encode(None))
        else:
            stream = f.add_stream(codec, rate=rate, layout="mono")
            step = stream.codec_context.frame_size or 1024
            resampler = av.AudioResampler(
                format=stream.codec_context.codec.audio_formats[0].name, layout="mono", rate=rate
            )
            packets = []
            for start in range(0, len(wave), step):
                chunk = wave[start : start + step].astype(np.float32)[None, :]
                frame = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
                frame.sample_rate = rate
                packets += [stream.encode(c) for c in resampler.resample(frame)]
            packets.append(stream.encode(None))
        for packet in packets:
            f.mux(packet)
    return out.getvalue()


SMALL_VOICES = "flite:slt,flite:rms,espeak-ng:en-us+f3,festival:ked_diphone"


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real corpus: 40 bundled sentences, each read by 4 voices of 3 engines (160 mp3 clips)."""
    out = tmp_path_factory.mktemp("small") / "corpus"
    run_cli(
        "synth",
        str(out),
        "--voices",
        SMALL_VOICES,
        "--sentences",
        "40",
        "--assign",
        "all",
        "--quiet",
        check=True,
    )
    return out


@pytest.fixture(scope="session")
def trained_run(small_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default model trained on ``small_corpus`` through the CLI."""
    run = tmp_path_factory.mktemp("runs") / "voicenet"
    run_cli(
        "train",
        str(small_corpus),
        "--out",
        str(run),
        "--epochs",
        "8",
        "--batch-size",
        "16",
        "--quiet",
        check=True,
    )
    return run


ENROLL_VOICES = "flite:awb,festival:ked_diphone,espeak-ng:en-us+f3"


@pytest.fixture(scope="session")
def enroll_clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    """Clips of two recorded male voices and a female espeak-ng voice (7 sentences each) for
    enrollment: voice id -> mp3 paths, in sentence order."""
    return voice_clips(tmp_path_factory.mktemp("enroll") / "corpus", ENROLL_VOICES)


def voice_clips(out: Path, voices: str, sentences: int = 7) -> dict[str, list[Path]]:
    """Every one of ``voices`` reading the first ``sentences`` bundled sentences into corpus
    ``out``, through the real CLI: voice id -> clip paths, in sentence order."""
    from whichvoice.corpus import read_manifest

    run_cli(
        "synth", str(out), "--voices", voices, "--sentences", str(sentences), "--assign", "all",
        "--quiet", check=True,
    )  # fmt: skip
    clips: dict[str, list[Path]] = {}
    for c in sorted(read_manifest(out / "manifest.jsonl"), key=lambda c: c.sentence_id):
        clips.setdefault(c.voice, []).append(out / c.path)
    return clips


class Proxy:
    """A TCP proxy on 127.0.0.1 in front of a server. ``cut_after`` = N makes it close every
    connection once the client has sent N bytes (a network that breaks mid-upload); None
    passes everything."""

    def __init__(self, target_port: int) -> None:
        import socket
        import threading

        self.target_port = target_port
        self.cut_after: int | None = None
        self.cuts = 0
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            limit = self.cut_after
            threading.Thread(target=self._pipe, args=(client, upstream, limit), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, None), daemon=True).start()

    def _pipe(self, src, dst, limit: int | None) -> None:
        sent = 0
        try:
            while data := src.recv(65536):
                if limit is not None and sent + len(data) > limit:
                    self.cuts += 1
                    dst.sendall(data[: max(0, limit - sent)])
                    break
                dst.sendall(data)
                sent += len(data)
        except OSError:
            pass
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(2)
            sock.close()

    def close(self) -> None:
        self.server.close()


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[dict[str, str]]:
    """An S3-compatible server (moto's) on 127.0.0.1, on a port it picks, for the whole
    session, behind a proxy that tests can break (``moto_s3_proxy``). Yields the AWS
    environment that points boto3/s3fs at it (the standard ``AWS_ENDPOINT_URL``); the
    variables are also set in this process (and so in CLI subprocesses)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        _, port = server.get_host_and_port()
        proxy = Proxy(port)
        env = {
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{proxy.port}",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_MAX_ATTEMPTS": "2",
        }
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        _PROXIES[env["AWS_ENDPOINT_URL"]] = proxy
        try:
            yield env
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            proxy.close()
    finally:
        server.stop()


_PROXIES: dict[str, Proxy] = {}


@pytest.fixture
def moto_s3_proxy(moto_s3: dict[str, str]) -> Iterator[Proxy]:
    """The proxy in front of the session's moto_server; passes everything again afterwards."""
    proxy = _PROXIES[moto_s3["AWS_ENDPOINT_URL"]]
    try:
        yield proxy
    finally:
        proxy.cut_after = None


@pytest.fixture
def bucket(moto_s3: dict[str, str], request: pytest.FixtureRequest) -> str:
    """A new empty bucket on the session's moto_server: ``s3://NAME``."""
    import re
    import uuid

    import boto3

    name = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-")
    name = f"{name}-{uuid.uuid4().hex[:8]}"
    boto3.client("s3").create_bucket(Bucket=name)
    return f"s3://{name}"

"""Shared fixtures: real audio made once per test run, and the CLI run in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Please bring me a cup of tea and two biscuits.",
    "We will meet at the station at half past nine.",
]


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

"""The command line drops libmpg123's notes on damaged frames and nothing else."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import soundfile as sf

from tests.conftest import sine, stderr_on_a_terminal
from whichvoice.cli.stderr import _pump, is_noise

MPG123_NOTES = [
    b"Note: Illegal Audio-MPEG-Header 0x55555555 at offset 11592.",
    b"Note: Trying to resync...",
    b"Note: Skipped 360 bytes in input.",
    b"[src/libmpg123/layer3.c:INT123_do_layer3():1774] error: part2_3_length (2368) too large "
    b"for available bit count (2200)",
    b"Warning: Xing stream size off by more than 1%, fuzzy seeking may be even more fuzzy than "
    b"by design!",  # a truncated mp3
    b"Note: Hit end of (available) data during resync.",  # a text file named .mp3 (diarize)
]


def _through_pump(data: list[bytes]) -> bytes:
    source_r, source_w = os.pipe()
    sink_r, sink_w = os.pipe()
    thread = threading.Thread(target=_pump, args=(source_r, sink_w))
    thread.start()
    for piece in data:
        os.write(source_w, piece)
    os.close(source_w)
    thread.join(timeout=5)
    os.close(sink_w)
    with os.fdopen(sink_r, "rb") as f:
        return f.read()


def test_noise_lines_are_recognised_and_nothing_else() -> None:
    assert all(is_noise(line) for line in MPG123_NOTES)
    telemetry = (
        b"2026-12-06 18:28:01.401505254 [W:onnxruntime:Default, telemetry_1ds.cc:613 "
        b"operator()] Failed to persist telemetry device ID; using an in-memory ID"
    )
    assert is_noise(b"\x1b[0;93m" + telemetry + b"\x1b[m") and is_noise(telemetry)
    assert not is_noise(b"\x1b[0;93m2026-12-06 18:28:01.4 [W:onnxruntime:Default, x.cc:1] other")
    for line in (b"error: clip.mp3: corrupt", b"Note: the gallery is empty", b"Traceback (most",
                 b"Warning: something else"):  # fmt: skip
        assert not is_noise(line)


def test_pump_drops_notes_and_keeps_everything_else_in_order() -> None:
    progress = [b"\r 10%|#  |", b"\r 50%|#####|", b"\r100%|##########|\n"]
    out = _through_pump(
        [
            b"first line\n",
            *(n + b"\n" for n in MPG123_NOTES),
            *progress,
            b"Note: ",
            b"the gallery is empty\n",
            b"last, without a newline",
        ]
    )
    assert out == (
        b"first line\n"
        + b"".join(progress)
        + b"Note: the gallery is empty\nlast, without a newline"
    )


def _broken_mp3(tmp_path: Path) -> Path:
    path = tmp_path / "broken.mp3"
    sf.write(path, sine(seconds=3.0), 16_000, format="MP3")
    data = bytearray(path.read_bytes())
    middle = len(data) // 3
    data[middle : middle + 400] = b"\x55" * 400
    path.write_bytes(bytes(data))
    return path


SCRIPT = """
import os, sys, soundfile
from whichvoice.cli.stderr import filter_native_noise
filter_native_noise()
wave, rate = soundfile.read(sys.argv[1])
print("decoded", len(wave) > 0)
print("python stderr isatty:", sys.stderr.isatty(), file=sys.stderr)
os.write(2, b"a native line\\n")
"""


def test_damaged_mp3_decodes_without_notes_and_other_output_passes(tmp_path: Path) -> None:
    path = _broken_mp3(tmp_path)
    plain = subprocess.run(
        [sys.executable, "-c", "import soundfile, sys; soundfile.read(sys.argv[1])", str(path)],
        capture_output=True,
        timeout=60,
    )
    assert b"Illegal Audio-MPEG-Header" in plain.stderr  # the file does make libmpg123 talk
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(path)], capture_output=True, timeout=60, check=True
    )
    assert proc.stdout == b"decoded True\n"
    assert proc.stderr.splitlines() == [b"python stderr isatty: False", b"a native line"]


def test_a_terminal_stays_a_terminal_for_progress_bars(tmp_path: Path) -> None:
    path = _broken_mp3(tmp_path)
    stdout, seen = stderr_on_a_terminal([sys.executable, "-c", SCRIPT, str(path)], timeout=60)
    assert stdout == b"decoded True\n"
    assert b"python stderr isatty: True" in seen
    assert b"a native line" in seen
    assert b"Illegal" not in seen and b"resync" not in seen


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full here")
def test_a_full_disk_under_standard_output_is_one_line_and_exit_1() -> None:
    """Review (resources): `voices > /dev/full` said "No space left on device", exit 2 (a
    bad argument's), not naming what it was writing."""
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-m", "whichvoice", "voices"], stdout=full,
                              stderr=subprocess.PIPE, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: the output: No space left on device: free some space and run it again"
    ], proc.stderr

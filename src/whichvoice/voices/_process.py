"""Running engine executables: one place for timeouts and error messages, and the session
of an engine program that writes its audio to a file."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from whichvoice.audio import read_audio
from whichvoice.errors import EngineBrokenError, EngineFaultError, SynthesisError
from whichvoice.voices.base import EngineSession, Speech, Voice

TIMEOUT_S = 60.0  # s; no sentence takes a local engine this long


def run(cmd: list[str], *, stdin: bytes | None = None, what: str) -> bytes:
    """Run ``cmd`` and return its stdout; SynthesisError with the engine's message on failure."""
    try:
        proc = subprocess.run(cmd, input=stdin, capture_output=True, timeout=TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as e:
        raise EngineFaultError(f"{what}: timed out after {TIMEOUT_S:.0f} s") from e
    except OSError as e:
        raise EngineBrokenError(f"{what}: cannot run {cmd[0]} ({e.strerror or e})") from e
    if proc.returncode < 0:  # killed (the OOM killer, a crash): the engine's fault, not the text's
        raise EngineFaultError(f"{what}: {cmd[0]} was killed by signal {-proc.returncode}")
    if proc.returncode != 0:
        msg = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        detail = msg[-1] if msg else f"exit status {proc.returncode}"
        raise SynthesisError(f"{what}: {cmd[0]} failed ({detail})")
    return proc.stdout


class WavFileSession(EngineSession):
    """A session for an engine program that writes a wav file (not a pipe: flite seeks back to
    fix the header, pico2wave wants a name ending in .wav): a temporary folder of its own."""

    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="whichvoice-engine-")

    def command(self, voice: Voice, text: str, out: Path) -> tuple[list[str], bytes | None]:
        """The program's command line that speaks ``text`` into ``out``, and its stdin."""
        raise NotImplementedError

    def synthesize(self, voice: Voice, text: str) -> Speech:
        out = Path(self._tmp.name) / "out.wav"
        out.unlink(missing_ok=True)
        cmd, stdin = self.command(voice, text, out)
        run(cmd, stdin=stdin, what=voice.id)
        if not out.exists():
            raise SynthesisError(f"{voice.id}: {cmd[0]} wrote no audio")
        wave, rate = read_audio(out.read_bytes(), name=f"{voice.id} on {text!r}")
        return Speech(wave, rate)

    def close(self) -> None:
        self._tmp.cleanup()

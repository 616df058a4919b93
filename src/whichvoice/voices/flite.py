"""CMU Flite: small, fast unit-selection and diphone voices (Debian package ``flite``)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from whichvoice.audio import read_audio
from whichvoice.errors import SynthesisError
from whichvoice.voices._process import run
from whichvoice.voices.base import Engine, EngineSession, Speech, Voice, missing_program
from whichvoice.voices.registry import register_engine

_VOICES = [
    Voice("flite", "slt", "female", "en-US", 16_000, "CMU ARCTIC slt, clustergen"),
    Voice("flite", "awb", "male", "en-GB-scotland", 16_000, "CMU ARCTIC awb, clustergen"),
    Voice("flite", "rms", "male", "en-US", 16_000, "CMU ARCTIC rms, clustergen"),
    Voice("flite", "kal16", "male", "en-US", 16_000, "kal diphone, 16 kHz"),
    Voice("flite", "kal", "male", "en-US", 8_000, "kal diphone, 8 kHz"),
]


class FliteSession(EngineSession):
    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="whichvoice-flite-")

    def synthesize(self, voice: Voice, text: str) -> Speech:
        # flite seeks back to fix the wav header, so it needs a real file, not a pipe
        out = Path(self._tmp.name) / "out.wav"
        run(["flite", "-voice", voice.name, "-t", text, "-o", str(out)], what=voice.id)
        if not out.exists():
            raise SynthesisError(f"{voice.id}: flite wrote no audio")
        wave, rate = read_audio(out.read_bytes())
        return Speech(wave, rate)

    def close(self) -> None:
        self._tmp.cleanup()


@register_engine
class FliteEngine(Engine):
    name = "flite"

    def voices(self) -> list[Voice]:
        return list(_VOICES)

    def unavailable_reason(self) -> str | None:
        return missing_program("flite", "flite")

    def open_session(self, *, mode: str | None = None) -> EngineSession:
        return FliteSession()

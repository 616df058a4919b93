"""SVOX Pico: the small HMM voices of early Android phones (``pico2wave``).

Debian non-free ``libttspico-utils``, which ``make voices`` enables for this package only.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from whichvoice.audio import read_audio
from whichvoice.errors import SynthesisError
from whichvoice.voices._process import run
from whichvoice.voices.base import Engine, EngineSession, Speech, Voice, missing_program
from whichvoice.voices.registry import register_engine

SAMPLE_RATE = 16_000  # Hz
_VOICES = [
    Voice("pico", "en-US", "female", "en-US", SAMPLE_RATE, "SVOX Pico American English"),
    Voice("pico", "en-GB", "female", "en-GB", SAMPLE_RATE, "SVOX Pico British English"),
]
HOW_TO_GET = "Debian non-free libttspico-utils; `make voices` installs it"


class PicoSession(EngineSession):
    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="whichvoice-pico-")

    def synthesize(self, voice: Voice, text: str) -> Speech:
        # pico2wave writes only to a file named *.wav; the text goes on stdin, never as an option
        out = Path(self._tmp.name) / "out.wav"
        out.unlink(missing_ok=True)
        run(["pico2wave", "-l", voice.name, "-w", str(out)], stdin=text.encode(), what=voice.id)
        if not out.exists():
            raise SynthesisError(f"{voice.id}: pico2wave wrote no audio")
        wave, rate = read_audio(out.read_bytes())
        return Speech(wave, rate)

    def close(self) -> None:
        self._tmp.cleanup()


@register_engine
class PicoEngine(Engine):
    name = "pico"

    def voices(self) -> list[Voice]:
        return list(_VOICES)

    def unavailable_reason(self) -> str | None:
        reason = missing_program("pico2wave", "SVOX Pico")
        return f"{reason}; {HOW_TO_GET}" if reason else None

    def open_session(self, *, mode: str | None = None) -> EngineSession:
        return PicoSession()

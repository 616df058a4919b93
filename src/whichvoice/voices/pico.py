"""SVOX Pico: the small HMM voices of early Android phones (``pico2wave``).

Debian non-free ``libttspico-utils``, which ``make voices`` enables for this package only.
"""

from __future__ import annotations

from pathlib import Path

from whichvoice.voices._process import WavFileSession
from whichvoice.voices.base import Engine, EngineSession, Voice, missing_program
from whichvoice.voices.prosody import split_name
from whichvoice.voices.registry import register_engine

SAMPLE_RATE = 16_000  # Hz
_VOICES = [
    Voice("pico", "en-US", "female", "en-US", SAMPLE_RATE, "SVOX Pico American English"),
    Voice("pico", "en-GB", "female", "en-GB", SAMPLE_RATE, "SVOX Pico British English"),
    # the other languages of libttspico-data: their own speakers, reading English text with
    # their language's rules (an accent, the same engine)
    Voice("pico", "de-DE", "female", "de-DE", SAMPLE_RATE, "SVOX Pico German"),
    Voice("pico", "es-ES", "female", "es-ES", SAMPLE_RATE, "SVOX Pico Spanish"),
    Voice("pico", "fr-FR", "female", "fr-FR", SAMPLE_RATE, "SVOX Pico French"),
    Voice("pico", "it-IT", "female", "it-IT", SAMPLE_RATE, "SVOX Pico Italian"),
]
HOW_TO_GET = "Debian non-free libttspico-utils; `make voices` installs it"


class PicoSession(WavFileSession):
    def command(self, voice: Voice, text: str, out: Path) -> tuple[list[str], bytes | None]:
        # pico2wave writes only to a file named *.wav; the text goes on stdin, never as an option
        name, prosody = split_name(voice.name)
        if prosody is not None:
            # Pico's own markup; the text's markup characters are read as spaces
            plain = text.translate({ord(c): " " for c in "<>&"})
            text = (f'<pitch level="{prosody.pitch}"><speed level="{prosody.rate}">'
                    f"{plain}</speed></pitch>")  # fmt: skip
        return ["pico2wave", "-l", name, "-w", str(out)], text.encode()


@register_engine
class PicoEngine(Engine):
    name = "pico"
    packages = ("libttspico-utils",)
    prosody = True

    def voices(self) -> list[Voice]:
        return list(_VOICES)

    def unavailable_reason(self) -> str | None:
        reason = missing_program("pico2wave", "SVOX Pico")
        return f"{reason}; {HOW_TO_GET}" if reason else None

    def open_session(self, *, mode: str | None = None) -> EngineSession:
        return PicoSession()

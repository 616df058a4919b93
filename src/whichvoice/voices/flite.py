"""CMU Flite: small, fast unit-selection and diphone voices (Debian package ``flite``)."""

from __future__ import annotations

from pathlib import Path

from whichvoice.voices._process import WavFileSession
from whichvoice.voices.base import Engine, EngineSession, Voice, missing_program
from whichvoice.voices.prosody import split_name
from whichvoice.voices.registry import register_engine

_VOICES = [
    Voice("flite", "slt", "female", "en-US", 16_000, "CMU ARCTIC slt, clustergen"),
    Voice("flite", "awb", "male", "en-GB-scotland", 16_000, "CMU ARCTIC awb, clustergen"),
    Voice("flite", "rms", "male", "en-US", 16_000, "CMU ARCTIC rms, clustergen"),
    Voice("flite", "kal16", "male", "en-US", 16_000, "kal diphone, 16 kHz"),
    Voice("flite", "kal", "male", "en-US", 8_000, "kal diphone, 8 kHz"),
]


# the duration stretch a voice speaks at by default (flite's own setting replaces it)
DURATION_STRETCH = {"kal": 1.1, "kal16": 1.1}


class FliteSession(WavFileSession):
    def command(self, voice: Voice, text: str, out: Path) -> tuple[list[str], bytes | None]:
        name, prosody = split_name(voice.name)
        extra = []
        if prosody is not None:
            # rms's own pitch model ignores f0_shift: its variants differ in rate only
            stretch = DURATION_STRETCH.get(name, 1.0) / prosody.rate_ratio
            extra = ["--setf", f"f0_shift={prosody.pitch_ratio:g}",
                     "--setf", f"duration_stretch={stretch:.6g}"]  # fmt: skip
        return ["flite", "-voice", name, *extra, "-t", text, "-o", str(out)], None


@register_engine
class FliteEngine(Engine):
    name = "flite"
    packages = ("flite",)
    prosody = True

    def voices(self) -> list[Voice]:
        return list(_VOICES)

    def unavailable_reason(self) -> str | None:
        return missing_program("flite", "flite")

    def open_session(self, *, mode: str | None = None) -> EngineSession:
        return FliteSession()

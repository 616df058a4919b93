"""RHVoice: statistical parametric (HTS-style) voices trained on recordings of real speakers.

Debian non-free ``rhvoice`` and ``rhvoice-english``, which ``make voices`` enables for these
packages only. Of its English voices, ``evgeniy-eng`` and ``lyubov`` are left out: their
licence (CC BY-NC-ND) does not allow what whichvoice does with voices (training, shipping).
Two voices of other languages whose licence does (spomenka, LGPL; Leticia-F123, CC BY-SA)
are extra speakers of the engine for benchmarks/trace.py (``make bench-voices``); the other
voices Debian packages are NC or ND (hana, magda, natan, ...) or read only Cyrillic text.
"""

from __future__ import annotations

from pathlib import Path

from whichvoice.voices._process import WavFileSession
from whichvoice.voices.base import Engine, EngineSession, Voice, missing_program
from whichvoice.voices.prosody import split_name
from whichvoice.voices.registry import register_engine

VOICE_ROOT = Path("/usr/share/RHVoice/voices")
SAMPLE_RATE = 24_000  # Hz
# (name, gender, accent, description, Debian package)
_TABLE = [
    ("alan", "male", "en-GB-scotland", "Scottish English male, CMU ARCTIC awb", "rhvoice-english"),
    ("bdl", "male", "en-US", "American English male, CMU ARCTIC bdl", "rhvoice-english"),
    ("clb", "female", "en-US", "American English female, CMU ARCTIC clb", "rhvoice-english"),
    ("slt", "female", "en-US", "American English female, CMU ARCTIC slt", "rhvoice-english"),
    ("spomenka", "female", "eo", "Esperanto female", "rhvoice-esperanto"),
    ("Leticia-F123", "female", "pt-BR", "Brazilian Portuguese female",
     "rhvoice-brazilian-portuguese"),
]  # fmt: skip
_VOICES = [
    Voice("rhvoice", name, gender, accent, SAMPLE_RATE, f"{about} ({package})")
    for name, gender, accent, about, package in _TABLE
]
_PACKAGES = {name: package for name, *_, package in _TABLE}
HOW_TO_GET = "Debian non-free rhvoice-english; `make voices` installs it"


def how_to_get(name: str) -> str:
    """Where a voice comes from: Debian non-free, and the make target that installs it."""
    package = _PACKAGES.get(name, "rhvoice-english")
    target = "make voices" if package == "rhvoice-english" else "make bench-voices"
    return f"Debian non-free {package}; `{target}` installs it"


class RHVoiceSession(WavFileSession):
    def command(self, voice: Voice, text: str, out: Path) -> tuple[list[str], bytes | None]:
        name, prosody = split_name(voice.name)
        extra = [] if prosody is None else ["-t", str(prosody.pitch), "-r", str(prosody.rate)]
        return ["RHVoice-test", "-p", name, *extra, "-o", str(out)], text.encode()


@register_engine
class RHVoiceEngine(Engine):
    name = "rhvoice"
    packages = ("rhvoice",)
    prosody = True

    def voices(self) -> list[Voice]:
        return list(_VOICES)

    def unavailable_reason(self) -> str | None:
        reason = missing_program("RHVoice-test", "RHVoice")
        return f"{reason}; {HOW_TO_GET}" if reason else None

    def voice_unavailable_reason(self, voice: Voice) -> str | None:
        name = split_name(voice.name)[0]
        if missing_program("RHVoice-test", "RHVoice"):
            return f"{missing_program('RHVoice-test', 'RHVoice')}; {how_to_get(name)}"
        if not (VOICE_ROOT / name).is_dir():
            return f"RHVoice voice {name} is not installed ({how_to_get(name)})"
        return None

    def open_session(self, *, mode: str | None = None) -> EngineSession:
        return RHVoiceSession()

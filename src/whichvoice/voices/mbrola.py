"""MBROLA diphone voices, spoken through espeak-ng (``espeak-ng -v mb-us1``).

espeak-ng turns text into phonemes, durations and pitch; MBROLA concatenates the recorded
diphones of a real speaker. The voice databases are in Debian non-free (``mbrola-us1`` ...),
which ``make voices`` enables for these packages only.
"""

from __future__ import annotations

from pathlib import Path

from whichvoice.audio import read_audio
from whichvoice.voices._process import run
from whichvoice.voices.base import Engine, EngineSession, Speech, Voice, missing_program
from whichvoice.voices.registry import register_engine

DATABASES = Path("/usr/share/mbrola")
SAMPLE_RATE = 16_000  # Hz, the rate of the English databases

_TABLE = [
    ("us1", "female", "en-US", "American English female diphones"),
    ("us2", "male", "en-US", "American English male diphones"),
    ("us3", "male", "en-US", "American English male diphones, a second speaker"),
    ("en1", "male", "en-GB", "British English male diphones"),
]
_VOICES = [
    Voice("mbrola", name, gender, accent, SAMPLE_RATE, f"{about} (mbrola-{name})")
    for name, gender, accent, about in _TABLE
]
HOW_TO_GET = "Debian non-free mbrola-{name}; `make voices` installs it"


class MbrolaSession(EngineSession):
    def synthesize(self, voice: Voice, text: str) -> Speech:
        # text on stdin, so a sentence starting with "-" is never taken for an option
        wav = run(
            ["espeak-ng", "-v", f"mb-{voice.name}", "--stdout"], stdin=text.encode(), what=voice.id
        )
        wave, rate = read_audio(wav)
        return Speech(wave, rate)


@register_engine
class MbrolaEngine(Engine):
    name = "mbrola"

    def voices(self) -> list[Voice]:
        return list(_VOICES)

    def unavailable_reason(self) -> str | None:
        return missing_program("espeak-ng", "espeak-ng (MBROLA's front end)") or missing_program(
            "mbrola", "mbrola"
        )

    def voice_unavailable_reason(self, voice: Voice) -> str | None:
        reason = self.unavailable_reason()
        if reason:
            return f"{reason}; {HOW_TO_GET.format(name=voice.name)}"
        if not (DATABASES / voice.name / voice.name).is_file():
            return (
                f"MBROLA voice {voice.name} is not installed ({HOW_TO_GET.format(name=voice.name)})"
            )
        return None

    def open_session(self, *, mode: str | None = None) -> EngineSession:
        return MbrolaSession()

"""MBROLA diphone voices, spoken through espeak-ng (``espeak-ng -v mb-us1``).

espeak-ng turns text into phonemes, durations and pitch; MBROLA concatenates the recorded
diphones of a real speaker. The voice databases are in Debian non-free (``mbrola-us1`` ...),
which ``make voices`` enables for these packages only.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from whichvoice.audio import read_audio
from whichvoice.errors import SynthesisError
from whichvoice.voices._process import run
from whichvoice.voices.base import Engine, EngineSession, Speech, Voice, missing_program
from whichvoice.voices.prosody import split_name
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
# the gain espeak-ng applies to each database's output (its voice files' "voicing"), measured
# against its own output: a variant at 100 % pitch and rate is the plain voice
VOLUME = {"us1": 1.7187, "us2": 1.3437, "us3": 2.5624, "en1": 2.5624}
HOW_TO_GET = "Debian non-free mbrola-{name}; `make voices` installs it"


class MbrolaSession(EngineSession):
    def synthesize(self, voice: Voice, text: str) -> Speech:
        # text on stdin, so a sentence starting with "-" is never taken for an option
        name, prosody = split_name(voice.name)
        if prosody is None:
            wav = run(
                ["espeak-ng", "-v", f"mb-{name}", "--stdout"], stdin=text.encode(), what=voice.id
            )
        else:  # espeak-ng's phonemes, then MBROLA's own pitch and time ratios
            pho = run(["espeak-ng", "-v", f"mb-{name}", "-q", "--pho"], stdin=text.encode(),
                      what=voice.id)  # fmt: skip
            with tempfile.TemporaryDirectory(prefix="whichvoice-mbrola-") as tmp:
                out = Path(tmp) / "out.wav"  # a file: MBROLA fixes the header when done
                ratios = ["-v", f"{VOLUME.get(name, 1.0):g}", "-f", f"{prosody.pitch_ratio:g}",
                          "-t", f"{1 / prosody.rate_ratio:.6g}"]  # fmt: skip
                run(["mbrola", "-e", *ratios, str(DATABASES / name / name), "-", str(out)],
                    stdin=pho, what=voice.id)  # fmt: skip
                if not out.exists():
                    raise SynthesisError(f"{voice.id}: mbrola wrote no audio")
                wav = out.read_bytes()
        wave, rate = read_audio(wav)
        return Speech(wave, rate)


@register_engine
class MbrolaEngine(Engine):
    name = "mbrola"
    prosody = True

    def voices(self) -> list[Voice]:
        return list(_VOICES)

    def unavailable_reason(self) -> str | None:
        return missing_program("espeak-ng", "espeak-ng (MBROLA's front end)") or missing_program(
            "mbrola", "mbrola"
        )

    def voice_unavailable_reason(self, voice: Voice) -> str | None:
        reason = self.unavailable_reason()
        name = split_name(voice.name)[0]
        if reason:
            return f"{reason}; {HOW_TO_GET.format(name=name)}"
        if not (DATABASES / name / name).is_file():
            return f"MBROLA voice {name} is not installed ({HOW_TO_GET.format(name=name)})"
        return None

    def open_session(self, *, mode: str | None = None) -> EngineSession:
        return MbrolaSession()

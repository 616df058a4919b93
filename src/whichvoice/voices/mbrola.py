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

# (name, gender, accent, rate in Hz, description). The English databases first (`make voices`
# installs them; tests use them); then every other database Debian bookworm ships that has an
# espeak-ng ``mb-`` voice (`make bench-voices` installs them: benchmarks/trace.py's extra
# speakers of the engine). They read English text with their own language's letter-to-sound
# rules, as festival's non-English voices do. Left out: es1-3, mx1-2, vz1, it1 and nl1, which
# lack more than 10 of the diphones espeak-ng asks for in one English sentence (nl1 was silent
# for 85 % of it), so their clips are mostly gaps.
_TABLE = [
    ("us1", "female", "en-US", 16_000, "American English female diphones"),
    ("us2", "male", "en-US", 16_000, "American English male diphones"),
    ("us3", "male", "en-US", 16_000, "American English male diphones, a second speaker"),
    ("en1", "male", "en-GB", 16_000, "British English male diphones"),
    ("af1", "male", "af-ZA", 16_000, "Afrikaans male diphones"),
    ("br1", "male", "pt-BR", 16_000, "Brazilian Portuguese male diphones"),
    ("br3", "male", "pt-BR", 22_050, "Brazilian Portuguese male diphones, a second speaker"),
    ("ca1", "male", "fr-CA", 16_000, "Canadian French male diphones"),
    ("ca2", "male", "fr-CA", 22_050, "Canadian French male diphones, a second speaker"),
    ("cz2", "male", "cs-CZ", 16_000, "Czech male diphones"),
    ("de1", "female", "de-DE", 16_000, "German female diphones"),
    ("de2", "male", "de-DE", 16_000, "German male diphones"),
    ("de3", "female", "de-DE", 22_050, "German female diphones, a second speaker"),
    ("de4", "male", "de-DE", 16_000, "German male diphones, a second speaker"),
    ("de5", "female", "de-DE", 22_050, "German female diphones, a third speaker"),
    ("de6", "male", "de-DE", 22_050, "German male diphones, a third speaker"),
    ("de7", "female", "de-DE", 22_050, "German female diphones, a fourth speaker"),
    ("de8", "male", "de-DE", 16_000, "German male diphones, a fourth speaker"),
    ("ee1", "male", "et-EE", 16_000, "Estonian male diphones"),
    ("es4", "male", "es-ES", 16_000, "Spanish male diphones"),
    ("fr1", "male", "fr-FR", 16_000, "French male diphones"),
    ("fr2", "female", "fr-FR", 22_050, "French female diphones"),
    ("fr3", "male", "fr-FR", 16_000, "French male diphones, a second speaker"),
    ("fr4", "female", "fr-FR", 22_050, "French female diphones, a second speaker"),
    ("fr5", "male", "fr-BE", 16_000, "Belgian French male diphones"),
    ("fr6", "male", "fr-FR", 16_000, "French male diphones, a third speaker"),
    ("fr7", "male", "fr-FR", 16_000, "French male diphones, a fourth speaker"),
    ("hu1", "female", "hu-HU", 16_000, "Hungarian female diphones"),
    ("ic1", "male", "is-IS", 16_000, "Icelandic male diphones"),
    ("id1", "male", "id-ID", 16_000, "Indonesian male diphones"),
    ("it3", "male", "it-IT", 16_000, "Italian male diphones"),
    ("it4", "female", "it-IT", 16_000, "Italian female diphones"),
    ("lt1", "male", "lt-LT", 16_000, "Lithuanian male diphones"),
    ("nl2", "male", "nl-NL", 16_000, "Dutch male diphones"),
    ("nl3", "female", "nl-NL", 16_000, "Dutch female diphones"),
    ("pl1", "female", "pl-PL", 16_000, "Polish female diphones"),
    ("pt1", "female", "pt-PT", 22_050, "European Portuguese female diphones"),
    ("ro1", "male", "ro-RO", 16_000, "Romanian male diphones"),
    ("sw1", "male", "sv-SE", 16_000, "Swedish male diphones"),
    ("sw2", "female", "sv-SE", 16_000, "Swedish female diphones"),
    ("tr1", "male", "tr-TR", 16_000, "Turkish male diphones"),
    ("tr2", "female", "tr-TR", 22_050, "Turkish female diphones"),
]
_VOICES = [
    Voice("mbrola", name, gender, accent, rate, f"{about} (mbrola-{name})")
    for name, gender, accent, rate, about in _TABLE
]
ENGLISH = ("us1", "us2", "us3", "en1")  # installed by `make voices`; the rest by bench-voices
# the gain espeak-ng applies to each database's output (its voice files' "voicing"), used by
# prosody variants (MBROLA run directly): the English four measured against espeak-ng's own
# output, so that a variant at 100 % pitch and rate is the plain voice; the others 1.7187
# (the gain of voicing 100) times their voice file's voicing / 100
VOLUME = {
    "us1": 1.7187, "us2": 1.3437, "us3": 2.5624, "en1": 2.5624,
    "br1": 1.375, "br3": 2.0624, "de1": 1.375, "de2": 1.375, "de3": 1.375, "de4": 2.2343,
    "de7": 2.5781, "ee1": 1.375, "fr1": 1.2031, "fr4": 1.5468, "hu1": 2.7499, "ic1": 3.0937,
    "id1": 2.0624, "it3": 1.1172, "it4": 1.0312, "nl2": 2.2343, "pl1": 2.0624, "pt1": 1.2031,
    "sw1": 2.0624, "sw2": 2.2343, "tr2": 2.9218,
}  # fmt: skip


def how_to_get(name: str) -> str:
    """Where a database comes from: Debian non-free, and the make target that installs it."""
    target = "make voices" if name in ENGLISH else "make bench-voices"
    return f"Debian non-free mbrola-{name}; `{target}` installs it"


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
                ratios = ["-v", f"{VOLUME.get(name, 1.7187):g}", "-f", f"{prosody.pitch_ratio:g}",
                          "-t", f"{1 / prosody.rate_ratio:.6g}"]  # fmt: skip
                run(["mbrola", "-e", *ratios, str(DATABASES / name / name), "-", str(out)],
                    stdin=pho, what=voice.id)  # fmt: skip
                if not out.exists():
                    raise SynthesisError(f"{voice.id}: mbrola wrote no audio")
                wav = out.read_bytes()
        wave, rate = read_audio(wav, name=f"{voice.id} on {text!r}")
        return Speech(wave, rate)


@register_engine
class MbrolaEngine(Engine):
    name = "mbrola"
    packages = ("mbrola", "espeak-ng")
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
            return f"{reason}; {how_to_get(name)}"
        if not (DATABASES / name / name).is_file():
            return f"MBROLA voice {name} is not installed ({how_to_get(name)})"
        return None

    def open_session(self, *, mode: str | None = None) -> EngineSession:
        return MbrolaSession()

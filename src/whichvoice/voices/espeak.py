"""eSpeak NG: formant synthesis, 8 English accents, each with ~100 voice variants."""

from __future__ import annotations

import functools
import shutil
import subprocess
from pathlib import Path

from whichvoice.audio import read_audio
from whichvoice.voices._process import run
from whichvoice.voices.base import Engine, EngineSession, Speech, Voice, missing_program
from whichvoice.voices.registry import register_engine

SAMPLE_RATE = 22_050  # Hz, espeak-ng's output rate

# espeak-ng language name -> accent label; its English accents (the mbrola ones are not free)
ACCENTS = {
    "en-us": "en-US",
    "en-us-nyc": "en-US-nyc",
    "en-gb": "en-GB",
    "en-gb-x-rp": "en-GB-rp",
    "en-gb-scotland": "en-GB-scotland",
    "en-gb-x-gbclan": "en-GB-lancaster",
    "en-gb-x-gbcwmd": "en-GB-westmidlands",
    "en-029": "en-029",
}

# the classic variants, used when espeak-ng's data folder cannot be read
_FALLBACK_VARIANTS = {
    **{f"m{i}": "male" for i in range(1, 9)},
    **{f"f{i}": "female" for i in range(1, 6)},
    "croak": "male",
    "klatt": "male",
    "whisper": "male",
    "whisperf": "female",
}


def _variant_dir() -> Path | None:
    try:
        out = subprocess.run(
            ["espeak-ng", "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    # "eSpeak NG text-to-speech: 1.51  Data at: /usr/lib/x86_64-linux-gnu/espeak-ng-data"
    if "Data at:" not in out:
        return None
    folder = Path(out.split("Data at:", 1)[1].strip()) / "voices" / "!v"
    return folder if folder.is_dir() else None


def _gender(path: Path) -> str | None:
    try:
        for line in path.read_text("latin-1").splitlines():
            words = line.split()
            if len(words) >= 2 and words[0] == "gender":
                return {"male": "male", "female": "female"}.get(words[1].lower())
    except OSError:
        pass
    return None


@functools.cache
def variants() -> dict[str, str | None]:
    """Variant name -> gender, read from the installed espeak-ng data when there is one."""
    folder = _variant_dir() if shutil.which("espeak-ng") else None
    if folder is None:
        return dict(_FALLBACK_VARIANTS)
    # variant names with spaces ("Mr serious") cannot be named in a voice id
    found = {p.name: _gender(p) for p in sorted(folder.iterdir()) if " " not in p.name}
    return found or dict(_FALLBACK_VARIANTS)


def espeak_voice_arg(name: str) -> str:
    """The ``-v`` argument for a voice name. espeak-ng ignores the variant of ``en-gb+X``
    (every ``en-gb+X`` reads exactly like plain ``en-gb``); ``en`` is the same language and
    honours it."""
    lang, plus, variant = name.partition("+")
    return f"en+{variant}" if lang == "en-gb" and plus else name


class EspeakSession(EngineSession):
    def synthesize(self, voice: Voice, text: str) -> Speech:
        # text goes on stdin so a sentence starting with "-" is never taken for an option
        wav = run(
            ["espeak-ng", "-v", espeak_voice_arg(voice.name), "--stdout"],
            stdin=text.encode(),
            what=voice.id,
        )
        wave, rate = read_audio(wav)
        return Speech(wave, rate)


@register_engine
class EspeakEngine(Engine):
    name = "espeak-ng"

    def voices(self) -> list[Voice]:
        out = []
        for lang, accent in ACCENTS.items():
            out.append(Voice(self.name, lang, "male", accent, SAMPLE_RATE, "formant"))
            for variant, gender in variants().items():
                name = f"{lang}+{variant}"
                out.append(Voice(self.name, name, gender, accent, SAMPLE_RATE, "formant"))
        return out

    def unavailable_reason(self) -> str | None:
        return missing_program("espeak-ng", "espeak-ng")

    def open_session(self, *, mode: str | None = None) -> EngineSession:
        return EspeakSession()

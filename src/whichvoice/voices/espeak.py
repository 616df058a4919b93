"""eSpeak NG: formant synthesis, 8 English accents, each with ~100 voice variants.

Beyond its own variants, ``rand<K>`` (``en-us+rand17``) names a random variant: pitch,
formants, voicing and voice source drawn from the ranges of espeak-ng's variants, seeded by K,
so the same name is the same voice on every machine. They are not listed (there is no end
to them); the encoder recipe trains on them as more pseudo-voices.
"""

from __future__ import annotations

import functools
import random
import shutil
import subprocess
import tempfile
import weakref
from pathlib import Path

from whichvoice.audio import read_audio
from whichvoice.errors import EngineBrokenError
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


RANDOM = "rand"  # the prefix of random variant names


@functools.cache
def _data_dir() -> Path | None:
    """espeak-ng's data folder, asked of espeak-ng once a process (every session that speaks
    a random variant links it); None when it cannot be found."""
    try:
        out = subprocess.run(
            ["espeak-ng", "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    # "eSpeak NG text-to-speech: 1.51  Data at: /usr/lib/x86_64-linux-gnu/espeak-ng-data"
    if "Data at:" not in out:
        return None
    folder = Path(out.split("Data at:", 1)[1].strip())
    return folder if (folder / "voices" / "!v").is_dir() else None


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
    data = _data_dir() if shutil.which("espeak-ng") else None
    if data is None:
        return dict(_FALLBACK_VARIANTS)
    folder = data / "voices" / "!v"
    # variant names with spaces ("Mr serious") cannot be named in a voice id
    found = {p.name: _gender(p) for p in sorted(folder.iterdir()) if " " not in p.name}
    return found or dict(_FALLBACK_VARIANTS)


def random_variant(k: int) -> tuple[str, str]:
    """(gender, text of an espeak-ng variant file) of random variant ``k``.

    A vocal tract scale shifts every formant together (women's ~15 % higher), each formant
    then moves, strengthens and widens on its own; pitch, voicing, consonant strength, breath,
    roughness, flutter and the Klatt voice source vary within the ranges espeak-ng's own
    variants use. Seeded by ``k`` alone: the same on every machine and Python version."""
    if k < 0:
        raise ValueError(f"random variant numbers start at 0, not {k}")
    rng = random.Random(f"whichvoice espeak-ng random variant {k}")
    female = rng.random() < 0.5
    base = rng.uniform(150, 240) if female else rng.uniform(55, 125)
    tract = rng.uniform(1.0, 1.25) if female else rng.uniform(0.85, 1.08)
    lines = [
        f"name {RANDOM}{k}",
        "language en",
        f"gender {'female' if female else 'male'}",
        f"pitch {base:.0f} {base * rng.uniform(1.1, 1.7):.0f}",
    ]
    for n in range(6):
        freq = 100 * tract * rng.uniform(0.9, 1.1)
        strength, width = rng.uniform(50, 125), rng.uniform(50, 160)
        lines.append(f"formant {n} {freq:.0f} {strength:.0f} {width:.0f}")
    lines.append(f"voicing {rng.uniform(50, 130):.0f}")
    lines.append(f"consonants {rng.uniform(50, 140):.0f} {rng.uniform(50, 140):.0f}")
    if rng.random() < 0.25:
        lines.append(f"breath {' '.join(f'{rng.uniform(0, 40):.0f}' for _ in range(8))}")
    if rng.random() < 0.25:
        lines.append(f"roughness {rng.randint(1, 8)}")
    if rng.random() < 0.25:
        lines.append(f"flutter {rng.randint(2, 20)}")
    if rng.random() < 0.3:
        lines.append(f"klatt {rng.randint(1, 6)}")
    return ("female" if female else "male"), "\n".join(lines) + "\n"


def random_number(variant: str) -> int | None:
    """K of a ``rand<K>`` variant name (in any case, as every id); None for any other name."""
    variant = variant.lower()
    digits = variant[len(RANDOM) :]
    if (
        variant.startswith(RANDOM)
        and digits.isascii()
        and digits.isdigit()
        and digits == str(int(digits))
    ):
        return int(digits)
    return None


def _private_data() -> Path:
    """A data folder of espeak-ng's own, linked entry by entry, whose variants folder can
    take a random variant (espeak-ng reads variants from its data folder only). Returns
    ``root``; the data folder is ``root/espeak-ng-data``."""
    system = _data_dir()
    if system is None:
        raise EngineBrokenError(
            "espeak-ng: its data folder was not found (random variants need it)"
        )
    root = Path(tempfile.mkdtemp(prefix="whichvoice-espeak-"))
    data = root / "espeak-ng-data"
    (data / "voices" / "!v").mkdir(parents=True)
    for folder in (data, data / "voices", data / "voices" / "!v"):
        for entry in (system / folder.relative_to(data)).iterdir():
            if not (folder / entry.name).exists():
                (folder / entry.name).symlink_to(entry)
    return root


def espeak_voice_arg(name: str) -> str:
    """The ``-v`` argument for a voice name. espeak-ng ignores the variant of ``en-gb+X``
    (every ``en-gb+X`` reads exactly like plain ``en-gb``); ``en`` is the same language and
    honours it."""
    lang, plus, variant = name.partition("+")
    return f"en+{variant}" if lang == "en-gb" and plus else name


class EspeakSession(EngineSession):
    def __init__(self) -> None:
        self._root: Path | None = None  # the private data folder, made for random variants

    def _random_data(self, k: int) -> Path:
        """The session's data folder holding random variant ``k`` and no other: espeak-ng
        lists at most ~350 voices and cannot find a variant beyond them."""
        if self._root is None:
            self._root = _private_data()
            weakref.finalize(self, shutil.rmtree, self._root, ignore_errors=True)
        variants = self._root / "espeak-ng-data" / "voices" / "!v"
        for old in variants.glob(f"{RANDOM}*"):
            if old.name != f"{RANDOM}{k}":
                old.unlink()
        path = variants / f"{RANDOM}{k}"
        if not path.exists():
            path.write_text(random_variant(k)[1])
        return self._root

    def synthesize(self, voice: Voice, text: str) -> Speech:
        k = random_number(voice.name.partition("+")[2])
        path = ["--path", str(self._random_data(k))] if k is not None else []
        # text goes on stdin so a sentence starting with "-" is never taken for an option
        wav = run(
            ["espeak-ng", *path, "-v", espeak_voice_arg(voice.name), "--stdout"],
            stdin=text.encode(),
            what=voice.id,
        )
        wave, rate = read_audio(wav, name=f"{voice.id} on {text!r}")
        return Speech(wave, rate)

    def close(self) -> None:
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None


@register_engine
class EspeakEngine(Engine):
    name = "espeak-ng"
    packages = ("espeak-ng", "espeak-ng-data")

    def voices(self) -> list[Voice]:
        out = []
        for lang, accent in ACCENTS.items():
            out.append(Voice(self.name, lang, "male", accent, SAMPLE_RATE, "formant"))
            for variant, gender in variants().items():
                name = f"{lang}+{variant}"
                out.append(Voice(self.name, name, gender, accent, SAMPLE_RATE, "formant"))
        return out

    def voice(self, name: str) -> Voice | None:
        """A random variant of an English accent (``en-us+rand17``)."""
        lang, _, variant = name.partition("+")
        lang = next((a for a in ACCENTS if a.lower() == lang.lower()), lang)  # in any case
        k = random_number(variant)
        if lang not in ACCENTS or k is None:
            return None
        gender = random_variant(k)[0]
        name = f"{lang}+{RANDOM}{k}"  # the id as listed: en-us+rand3 for EN-US+RAND3
        return Voice(self.name, name, gender, ACCENTS[lang], SAMPLE_RATE, "formant, random")

    def unavailable_reason(self) -> str | None:
        return missing_program("espeak-ng", "espeak-ng")

    def open_session(self, *, mode: str | None = None) -> EngineSession:
        return EspeakSession()

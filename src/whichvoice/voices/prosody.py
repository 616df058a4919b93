"""Prosody variants: a voice spoken at another pitch and speaking rate by its own engine.

``flite:slt+p120r90`` is flite's slt with its pitch raised to 120 % and its speaking rate
lowered to 90 %. The engine makes the change itself (flite's ``f0_shift`` and
``duration_stretch``, MBROLA's frequency and time ratios, RHVoice's pitch and rate, Pico's
pitch and speed markup), so a variant carries its engine's own artefacts and no signal
processing of whichvoice's: source tracing can learn from variants what an engine sounds like
beyond its few recorded speakers. Pitch and rate are whole percentages in
``PERCENT_RANGE``; a variant is not listed by ``whichvoice voices``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # base asks this module for variants: no import back at run time
    from whichvoice.voices.base import Voice

PERCENT_RANGE = (50, 200)  # %, the pitch and rate a variant may ask for
_SUFFIX = re.compile(r"^(?P<base>.+)\+p(?P<pitch>[1-9]\d{1,2})r(?P<rate>[1-9]\d{1,2})$")


@dataclass(frozen=True)
class Prosody:
    """Pitch and speaking rate, in percent of the voice's own (100: unchanged)."""

    pitch: int
    rate: int

    @property
    def pitch_ratio(self) -> float:
        return self.pitch / 100.0

    @property
    def rate_ratio(self) -> float:
        """Speaking rate: above 1 speaks faster (shorter durations)."""
        return self.rate / 100.0

    def suffix(self) -> str:
        return f"+p{self.pitch}r{self.rate}"


def split_name(name: str) -> tuple[str, Prosody | None]:
    """(the base voice's name, its prosody) of a voice name; (name, None) for a name without
    a variant suffix or with one outside ``PERCENT_RANGE``."""
    match = _SUFFIX.fullmatch(name)
    if match is None:
        return name, None
    pitch, rate = int(match["pitch"]), int(match["rate"])
    low, high = PERCENT_RANGE
    if not (low <= pitch <= high and low <= rate <= high):
        return name, None
    return match["base"], Prosody(pitch, rate)


_LOOSE = re.compile(r"^(?P<base>.+)\+p(?P<pitch>\d+)r(?P<rate>\d+)$")


def variant_problem(name: str, engine_makes_variants: bool) -> str | None:
    """Why ``name``, which asks for a prosody variant (``slt+p300r90``), is none: a pitch
    or rate outside ``PERCENT_RANGE``, or an engine that makes no variants; None when the
    name does not ask for one (or asks well: then its base voice is what is missing)."""
    match = _LOOSE.fullmatch(name)
    if match is None:
        return None
    if not engine_makes_variants:
        return "this engine makes no prosody variants (flite, mbrola, rhvoice and pico do)"
    low, high = PERCENT_RANGE
    if not all(low <= int(match[k]) <= high for k in ("pitch", "rate")):
        return f"a variant's pitch and rate are whole percentages from {low} to {high}"
    return None


def variant_voice(voices: list[Voice], name: str) -> Voice | None:
    """The variant ``name`` (``slt+p120r90``) of one of ``voices``, or None when ``name`` is
    not a variant of any of them."""
    base, prosody = split_name(name.lower())
    if prosody is None:
        return None
    for voice in voices:
        if voice.name.lower() == base:  # as plain names: any case, the voice's own spelling
            about = f"{voice.description}; pitch {prosody.pitch} %, rate {prosody.rate} %"
            return replace(voice, name=voice.name + prosody.suffix(), description=about)
    return None


def variant_names(base: str, count: int, seed: str) -> list[str]:
    """``count`` distinct variants of voice ``base``: pitch 80-125 % and rate 85-120 %,
    drawn from a generator seeded by ``seed`` and ``base`` (the same on every machine), none
    of them the voice itself."""
    import random

    rng = random.Random(f"whichvoice prosody {seed} {base}")
    names: list[str] = []
    while len(names) < count:
        pitch, rate = rng.randint(80, 125), rng.randint(85, 120)
        name = f"{base}{Prosody(pitch, rate).suffix()}"
        if (pitch, rate) != (100, 100) and name not in names:
            names.append(name)
    return names

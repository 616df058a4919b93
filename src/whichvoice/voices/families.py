"""Engine families: the upper level of a voice's two-level label (family, then voice).

A family is the kind of system that made a clip: one per engine, except where one engine holds
systems that work differently (festival's diphone, HTS and unit-selection voices) or one
service has two generations (Polly's standard and neural modes). Recordings of people imported
with ``import-corpus`` are the family ``human``; any other engine label a corpus carries is its
own family.
"""

from __future__ import annotations

import functools

HUMAN = "human"
# the families whichvoice can make or import, in a stable order
FAMILIES = (
    "espeak-ng",
    "flite",
    "festival-diphone",
    "festival-hts",
    "festival-clunits",
    "mbrola",
    "rhvoice",
    "pico",
    "piper",
    "hibari",
    "polly-standard",
    "polly-neural",
    HUMAN,
)


@functools.cache
def _neural_only_polly() -> frozenset[str]:
    """Polly's voices spoken by its neural engine whatever the mode (their clips were labelled
    ``polly`` before stop 62: their family is polly-neural all the same)."""
    from whichvoice.voices.polly import NEURAL_ONLY

    return NEURAL_ONLY


def engine_family(voice_id: str, engine: str | None = None) -> str:
    """The family of the voice ``engine:name``. ``engine``: the clip's engine as its manifest
    records it, when known (``polly-neural`` for a Polly clip made in neural mode)."""
    name, _, voice = voice_id.partition(":")
    if name == "festival":
        voice = voice.split("@")[0]
        if voice.endswith("_hts"):
            return "festival-hts"
        if voice.endswith("_clunits"):
            return "festival-clunits"
        return "festival-diphone"  # the *_diphone voices and the Czech diphone voices
    if name == "polly":
        neural = engine == "polly-neural" or voice in _neural_only_polly()
        return "polly-neural" if neural else "polly-standard"
    return name

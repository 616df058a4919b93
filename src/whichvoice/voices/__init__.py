"""TTS engines (one module each) and the registry of their voices."""

from whichvoice.voices import (  # noqa: F401  (registers engines)
    espeak,
    festival,
    flite,
    hibari,
    mbrola,
    pico,
    piper,
    polly,
    rhvoice,
)
from whichvoice.voices.base import Engine, EngineSession, Speech, Voice
from whichvoice.voices.registry import (
    VOICE_SETS,
    SessionPool,
    all_voices,
    engine_names,
    find_voice,
    get_engine,
    register_engine,
    require_available,
    resolve_voices,
)

__all__ = [
    "VOICE_SETS",
    "Engine",
    "EngineSession",
    "SessionPool",
    "Speech",
    "Voice",
    "all_voices",
    "engine_names",
    "find_voice",
    "get_engine",
    "register_engine",
    "require_available",
    "resolve_voices",
]

"""hibari: a small neural voice distilled from Kokoro (``af_heart``), run with onnxruntime.

Only the voice bundled in the ``hibari-tts`` wheel is offered: its other voices download on
first use. Its vocoder adds sampled noise; whichvoice seeds it from the sentence, so a
sentence reads the same on every run.
"""

from __future__ import annotations

import hashlib
import importlib.util
from typing import Any

import numpy as np

from whichvoice.errors import SynthesisError
from whichvoice.voices.base import Engine, EngineSession, Speech, Voice
from whichvoice.voices.registry import register_engine

SAMPLE_RATE = 24_000  # Hz
# whichvoice's name (Kokoro's) -> hibari's own name for the bundled voice
_BUNDLED = {"af_heart": "heart"}
_VOICES = [
    Voice(
        "hibari",
        "af_heart",
        "female",
        "en-US",
        SAMPLE_RATE,
        "neural, distilled from Kokoro af_heart, package hibari-tts",
    ),
]
HOW_TO_GET = "pip install hibari-tts (in whichvoice's `neural` extra)"


def _seed(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


class HibariSession(EngineSession):
    def __init__(self) -> None:
        self._models: dict[str, Any] = {}

    def synthesize(self, voice: Voice, text: str) -> Speech:
        from hibari import Hibari

        model = self._models.get(voice.name)
        if model is None:
            model = self._models[voice.name] = Hibari(voice=_BUNDLED[voice.name], threads=1)
        try:
            wave = model(text, seed=_seed(text))
        except Exception as e:  # hibari raises bare errors from its G2P and the network
            raise SynthesisError(f"{voice.id}: hibari failed ({e})") from e
        if wave.size == 0:
            raise SynthesisError(f"{voice.id}: hibari made no audio (nothing to say in {text!r})")
        return Speech(np.asarray(wave, dtype=np.float32), int(model.sample_rate))


@register_engine
class HibariEngine(Engine):
    name = "hibari"
    packages = ("hibari-tts",)

    def voices(self) -> list[Voice]:
        return list(_VOICES)

    def unavailable_reason(self) -> str | None:
        if importlib.util.find_spec("hibari") is None:
            return f"hibari is not installed (no Python package hibari-tts; {HOW_TO_GET})"
        return None

    def open_session(self, *, mode: str | None = None) -> EngineSession:
        return HibariSession()

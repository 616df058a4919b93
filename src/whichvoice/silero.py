"""silero-vad, the voice activity detector whose ONNX weights ship in its wheel (the
``diarize`` extra): one model per process, stateful, so one recording at a time."""

from __future__ import annotations

import threading

import numpy as np

from whichvoice.audio import SAMPLE_RATE, resample

NARROW_RATE = 8000  # silero-vad's other model rate
# share of a recording's power above 4 kHz under which it was made at 8 kHz (a telephone, a
# digit corpus) and resampled: speech sampled at 16 kHz or more keeps 1e-3 to 5e-2 of it
# there (fricatives), a recording resampled from 8 kHz under 1e-5. silero-vad's 16 kHz model
# hears little speech in such a recording (0.4 s of 5.5 s of clear digits, stop 60's review
# of people's recordings) and its 8 kHz model most of it (3.5 s), so it gets that one.
NARROWBAND_BELOW = 1e-4
BAND_FRAMES = 16  # one-second frames, evenly spaced, that decide it for a long recording

_MODEL: list = []
_LOCK = threading.Lock()
_MISSING: list = []  # set once the import failed: Python retries a failed import each time


def speech_stamps(wave: np.ndarray, **options) -> list[dict] | None:
    """silero-vad's speech stamps (``{"start", "end"}`` in samples) of a 16 kHz waveform,
    with ``get_speech_timestamps``'s ``options``; None when silero-vad is not installed. A
    narrowband recording (``narrowband``) is heard by its 8 kHz model."""
    if _MISSING:
        return None
    try:
        import torch
        from silero_vad import get_speech_timestamps, load_silero_vad
    except ImportError:
        _MISSING.append(True)
        return None
    rate = SAMPLE_RATE
    if narrowband(wave):
        wave, rate = resample(wave, SAMPLE_RATE, NARROW_RATE), NARROW_RATE
    with _LOCK:
        if not _MODEL:
            _MODEL.append(load_silero_vad(onnx=True))
        _MODEL[0].reset_states()
        stamps = get_speech_timestamps(
            torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)),
            _MODEL[0],
            sampling_rate=rate,
            return_seconds=False,
            **options,
        )
    scale = SAMPLE_RATE // rate  # samples of the 16 kHz waveform, as asked
    return [{"start": s["start"] * scale, "end": s["end"] * scale} for s in stamps]


def narrowband(wave: np.ndarray) -> bool:
    """Whether a 16 kHz waveform holds (almost) nothing above 4 kHz: a recording made at
    8 kHz, or through a telephone band (``NARROWBAND_BELOW``)."""
    if wave.shape[0] < SAMPLE_RATE // 4:
        frames = np.pad(wave, (0, SAMPLE_RATE // 4 - wave.shape[0]))[None, :]
    else:
        n = min(SAMPLE_RATE, wave.shape[0])
        count = min(BAND_FRAMES, max(1, wave.shape[0] // n))
        starts = np.linspace(0, wave.shape[0] - n, num=count).astype(int)
        frames = np.stack([wave[s : s + n] for s in starts])
    power = np.abs(np.fft.rfft(frames.astype(np.float64), axis=1)) ** 2
    above = np.fft.rfftfreq(frames.shape[1], 1 / SAMPLE_RATE) > NARROW_RATE / 2
    total = float(power.sum())
    return total > 0 and float(power[:, above].sum()) / total < NARROWBAND_BELOW


def speech_seconds(wave: np.ndarray) -> float | None:
    """Seconds of speech silero-vad finds in a 16 kHz waveform at its own defaults; None when
    it is not installed."""
    stamps = speech_stamps(wave)
    return None if stamps is None else sum(s["end"] - s["start"] for s in stamps) / SAMPLE_RATE

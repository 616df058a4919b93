"""How fit a recording is to be judged: measures read from its samples, and plain warnings
where one says an answer on it may not hold.

verify, identify and embed answer every clip they can decode; a score on a noisy, clipped,
narrow-band or very short clip is still a score, and nothing in it says so. These measures
travel with each answer (``quality`` in the JSON) so that a user can set such clips aside.
They change no decision: a threshold that moves with a clip's quality was measured on dev
trials and did not help (docs/verification.md, "quality").

- ``snr_db``: an estimate of the signal-to-noise ratio: the spread between the 98th and the
  2nd percentiles of the 10 ms frames' levels (digital silence left out), less the spread's
  offset over the mixing SNR measured on dev clips (``benchmarks/quality_measures.py``). It
  reads the noise in the pauses and between syllables: continuous speech without any
  pause, or audio compressed hard, reads lower than it is.
- ``clipped``: the share of samples in flat runs at the recording's own peak (3 or more
  equal samples at the highest or lowest value): a recording made too loud. Read at the
  file's own rate, before resampling (which rounds the flat tops off); a lossy codec
  rounds them off too, so clipping under mp3 is mostly not seen.
- ``bandwidth_hz``: the highest frequency whose mean power is within 50 dB of the
  spectrum's peak: a telephone line gives about 3,400 Hz, an 8 kHz file 4,000 Hz.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FRAME_S = 0.01  # s, the frames whose levels the SNR estimate spreads
SILENCE_DB = -80.0  # dBFS, digital silence: frames under it say nothing of the noise
SPREAD_PERCENTILES = (2.0, 98.0)
# dB, the median of (spread - mixing SNR) over dev clips (TTS voices and people) mixed with
# white and pink noise at 5-20 dB SNR (benchmarks/quality_measures.py)
SPREAD_OFFSET_DB = 9.5
MIN_FRAMES = 50  # under half a second of sound: no estimate
CLIP_RUN = 3  # equal samples in a row at the peak that make a flat top
BAND_FLOOR_DB = 50.0  # dB under the spectrum's peak where the band ends
BAND_NPERSEG = 256
BAND_FRAMES = 64  # frames at most: the band is a property of the whole clip
# a long recording is measured on blocks spread over it: memory and time stay bounded
EXCERPT_S = 120.0  # s in all
BLOCK_S = 10.0  # s a block

# what each warning reads; fixed before any figure was looked at, then checked on dev clips
# for false alarms (benchmarks/quality_measures.py)
NOISY_DB = 10.0  # estimated SNR under this: noisy
CLIPPED_SHARE = 0.01  # a share of samples in flat tops at or over this: clipped
NARROW_HZ = 3000.0  # a band under this: narrower than a telephone line's
SHORT_SPEECH_S = 1.5  # s of speech under this: too little to be sure (verify's rejections)
SHORT = "short"  # that warning's first word


@dataclass(frozen=True)
class Quality:
    """The measures of one recording (see the module's docstring) and the warnings they
    raise, each a short phrase ("noisy: an estimated SNR of 4 dB")."""

    speech_s: float
    snr_db: float | None  # None: too little sound to estimate
    clipped: float  # share of samples, 0..1
    bandwidth_hz: float | None
    warnings: tuple[str, ...] = ()

    def but_short(self) -> tuple[str, ...]:
        """The warnings without "short" (for a caller that says that one its own way)."""
        return tuple(w for w in self.warnings if not w.startswith(SHORT))

    def to_dict(self) -> dict:
        return {
            "speech_s": round(self.speech_s, 3),
            "snr_db": None if self.snr_db is None else round(self.snr_db, 1),
            "clipped": round(self.clipped, 4),
            "bandwidth_hz": None if self.bandwidth_hz is None else round(self.bandwidth_hz),
            "warnings": list(self.warnings),
        }


def snr_db(wave: np.ndarray, rate: int) -> float | None:
    """The estimated SNR of a float mono waveform at ``rate`` Hz, in dB; None for under
    MIN_FRAMES frames of sound."""
    hop = max(1, round(rate * FRAME_S))
    n = wave.shape[0] // hop
    if n == 0:
        return None
    frames = wave[: n * hop].reshape(n, hop)
    # each frame's variance (its power less its mean's: a DC offset is no noise), without a
    # float64 copy of the samples
    power = np.einsum("ij,ij->i", frames, frames, dtype=np.float64) / hop
    power = np.maximum(power - np.square(frames.mean(axis=1, dtype=np.float64)), 0.0)
    db = 10 * np.log10(power + 1e-20)
    db = db[db > SILENCE_DB]
    if db.shape[0] < MIN_FRAMES:
        return None
    low, high = np.percentile(db, SPREAD_PERCENTILES)
    return float(high - low - SPREAD_OFFSET_DB)


def clipped_share(wave: np.ndarray) -> float:
    """The share of ``wave``'s samples in runs of CLIP_RUN or more equal samples at its
    highest or its lowest value."""
    n = wave.shape[0]
    if n == 0:
        return 0.0
    flat = 0
    for edge in (wave.max(), wave.min()):
        if edge == 0:
            continue
        at = wave == edge
        if np.count_nonzero(at) < CLIP_RUN:  # most recordings: the peak is one sample
            continue
        at = np.concatenate(([False], at, [False]))
        changes = np.flatnonzero(at[1:] != at[:-1])
        runs = changes[1::2] - changes[::2]
        flat += int(runs[runs >= CLIP_RUN].sum())
    return flat / n


def bandwidth_hz(wave: np.ndarray, rate: int) -> float | None:
    """The highest frequency whose mean power (over up to BAND_FRAMES Hann-windowed frames of
    BAND_NPERSEG samples, spread over the clip) is within BAND_FLOOR_DB of the peak, Hz;
    None for a clip too short for one frame."""
    n = wave.shape[0] // BAND_NPERSEG
    if n == 0:
        return None
    pick = np.linspace(0, n - 1, min(n, BAND_FRAMES)).astype(int)
    frames = wave[: n * BAND_NPERSEG].reshape(n, BAND_NPERSEG)[pick].astype(np.float32)
    frames = frames - frames.mean(axis=1, keepdims=True)
    power = np.square(np.abs(np.fft.rfft(frames * np.hanning(BAND_NPERSEG).astype(np.float32))))
    power = power.mean(axis=0)
    if not np.any(power > 0):
        return None
    above = np.flatnonzero(power >= power.max() * 10 ** (-BAND_FLOOR_DB / 10))
    return float(above[-1] * rate / BAND_NPERSEG)


@dataclass(frozen=True)
class Signals:
    """What ``measure`` reads of the samples alone (the speech found is the encoder's)."""

    snr_db: float | None
    clipped: float
    bandwidth_hz: float | None


def excerpt(wave: np.ndarray, rate: int) -> np.ndarray:
    """``wave`` itself up to EXCERPT_S seconds; a longer one's blocks of BLOCK_S seconds
    spread evenly over it, EXCERPT_S in all, joined."""
    total, block = int(EXCERPT_S * rate), int(BLOCK_S * rate)
    if wave.shape[0] <= total:
        return wave
    starts = np.linspace(0, wave.shape[0] - block, total // block).astype(int)
    return np.concatenate([wave[a : a + block] for a in starts])


def signals(wave: np.ndarray, rate: int) -> Signals:
    """The ``Signals`` of a float mono waveform at its own ``rate`` (Hz), as decoded,
    before any resampling (of a long one: ``excerpt``'s blocks)."""
    wave = excerpt(wave, rate)
    return Signals(snr_db(wave, rate), clipped_share(wave), bandwidth_hz(wave, rate))


def judged(measured: Signals, speech_s: float) -> Quality:
    """The ``Quality`` of a recording whose samples read ``measured`` and in which the
    encoder kept ``speech_s`` seconds of speech: the measures and their warnings."""
    snr, clipped, band = measured.snr_db, measured.clipped, measured.bandwidth_hz
    warnings = []
    if speech_s < SHORT_SPEECH_S:
        warnings.append(f"{SHORT}: {speech_s:.1f} s of speech (under {SHORT_SPEECH_S:g} s)")
    if snr is not None and snr < NOISY_DB:
        warnings.append(f"noisy: an estimated SNR of {snr:.0f} dB (under {NOISY_DB:g} dB)")
    if clipped >= CLIPPED_SHARE:
        warnings.append(f"clipped: {100 * clipped:.1f} % of the samples in flat tops")
    if band is not None and band < NARROW_HZ:
        warnings.append(
            f"narrow band: up to {band:.0f} Hz (a telephone line's reaches about 3,400 Hz)"
        )
    return Quality(speech_s, snr, clipped, band, tuple(warnings))


def measure(wave: np.ndarray, rate: int, speech_s: float) -> Quality:
    """The ``Quality`` of a float mono waveform at its own ``rate`` (Hz), as decoded, before
    any resampling (of a long one: ``excerpt``'s blocks); ``speech_s``: the seconds of
    speech the encoder kept of it."""
    return judged(signals(wave, rate), speech_s)

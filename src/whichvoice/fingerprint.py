"""A spectral fingerprint of a clip: hand-made measures of how its spectrum is made, not of
who speaks, for source tracing (``whichvoice.tracing``).

A speaker encoder is trained to forget the channel and keep the voice; the engine that made a
clip leaves its marks in what the encoder forgets: the band it was synthesised in (a 16 kHz
diphone voice has nothing above 8 kHz, a 22 kHz vocoder a smooth roll-off), how smooth its
spectral envelope is over time, the fine structure between harmonics that each vocoder fills
in its own way. The fingerprint measures these over the clip's louder frames (within 35 dB of
its loudest, brought to one level first: it does not depend on the recording's), and how
fast the level of each band moves: 915 numbers in two blocks, no weights, the same for every
clip of any length.

The spectrum (651):
- the long-term average spectrum (257 bins of a 512-point FFT, log, its mean removed);
- per log-mel band (64): the spread over time and the mean absolute frame-to-frame change;
- spectral flatness in four bands (mean and spread of its log);
- the fine structure: each frame's log spectrum minus its 9-bin smoothing, its spread and
  frame-to-frame change per bin (every other bin).

The modulation (264): per log-mel band (24), the power spectrum of its level over time (2.56 s
stretches, half overlapping) in ten modulation bands from 0 to 50 Hz (log, the band's mean
removed), and the lag-one correlation of its frame-to-frame changes over the louder frames
(a concatenated or vocoded voice moves in steps or smoothly, each engine its own way).

Measured as a tracing input in ``benchmarks/trace.py`` (joined with an encoder's embedding).
"""

from __future__ import annotations

import functools
import itertools

import numpy as np

from whichvoice.audio import SAMPLE_RATE, AudioSource, load_audio

NAME = "fingerprint-v3"  # what a head records as the fingerprint it reads; change with the code
N_FFT = 512
HOP = 160  # samples at 16 kHz: 10 ms
N_MELS = 64
FLOOR_DB = 35.0  # frames within this much of the loudest frame are measured
# the mean power of those frames every clip is brought to first (a typical TTS clip's, about
# -20 dB in the units of ``_SCALE``), so that the small floors added to the power below act
# at the same depth under the voice whatever the recording's level (fingerprint-v2 did not:
# a clip 40 dB quieter moved the engine answer)
REFERENCE_POWER = 0.01
SMOOTH_BINS = 9  # the envelope the fine structure is measured against
FLATNESS_BANDS = ((1, 32), (32, 64), (64, 128), (128, 257))  # FFT bins: 31 Hz-1, 2, 4, 8 kHz
MAX_SECONDS = 120  # of a longer recording, the start: the measures are averages
MOD_MELS = 24  # bands whose level's movement is measured
MOD_FRAMES = 256  # 2.56 s of frames per modulation spectrum
MOD_EDGES = (0, 1, 2, 4, 6, 9, 13, 18, 25, 35, 50)  # Hz: the modulation bands' edges
SPECTRUM_DIM = 257 + 2 * N_MELS + 2 * len(FLATNESS_BANDS) + 2 * 129
DIM = SPECTRUM_DIM + MOD_MELS * (len(MOD_EDGES) - 1) + MOD_MELS
# (start, stop) of each block: a head standardises the numbers and weighs each block the same
BLOCKS = ((0, SPECTRUM_DIM), (SPECTRUM_DIM, DIM))


def spectral_fingerprint(wave: np.ndarray) -> np.ndarray:
    """The fingerprint of a float32 mono waveform at 16 kHz: float32, shape (DIM,)."""
    from scipy.fft import rfft
    from scipy.ndimage import uniform_filter1d

    wave = np.asarray(wave, np.float64)
    if wave.size < N_FFT:
        wave = np.pad(wave, (0, N_FFT - wave.size))
    frames = np.lib.stride_tricks.sliding_window_view(wave, N_FFT)[::HOP]  # 10 ms apart
    z = rfft(frames * _hann(), axis=1)
    # the spectrum and the modulation in double precision (an empty band's leakage stays far
    # under the floors added here; in single precision its rounding noise does not), the rest
    # of the spectrum block in single precision
    squared = (np.square(z.real) + np.square(z.imag)).T * _SCALE  # (257, n_frames)
    squared = _at_reference_level(squared)
    power64 = squared + 1e-12
    level = 10 * np.log10(power64.sum(axis=0))  # which frames are loud: as in double precision
    power = power64.astype(np.float32)
    loud = level > level.max() - FLOOR_DB
    modulation = _modulation(squared + 1e-10, loud)
    if loud.sum() < 5:  # too short to choose: measure every frame
        loud[:] = True
    power = power[:, loud]
    log_power = np.log(power)
    ltas = np.log(power.mean(axis=1))
    mel = np.log(_filterbank(N_MELS) @ power + 1e-12)
    change = np.abs(np.diff(mel, axis=1)).mean(axis=1) if mel.shape[1] > 1 else np.zeros(N_MELS)
    flatness = []
    for lo, hi in FLATNESS_BANDS:  # log of (geometric mean / arithmetic mean) per frame
        log_flat = log_power[lo:hi].mean(axis=0) - np.log(power[lo:hi].mean(axis=0))
        flatness += [log_flat.mean(), log_flat.std()]
    fine = log_power - uniform_filter1d(log_power, SMOOTH_BINS, axis=0)
    fine_change = (np.abs(np.diff(fine, axis=1)).mean(axis=1) if fine.shape[1] > 1
                   else np.zeros(fine.shape[0]))  # fmt: skip
    return np.concatenate([ltas - ltas.mean(), mel.std(axis=1), change, np.array(flatness),
                           fine.std(axis=1)[::2], fine_change[::2],
                           modulation]).astype(np.float32)  # fmt: skip


def _at_reference_level(squared: np.ndarray) -> np.ndarray:
    """A power spectrogram scaled so that its louder frames (within ``FLOOR_DB`` of the
    loudest) have the mean power ``REFERENCE_POWER``: the fingerprint no longer depends on
    the recording's level. All-zero power is left as it is."""
    frame_power = squared.sum(axis=0)
    top = frame_power.max(initial=0.0)
    if not top > 0:
        return squared
    loud = frame_power >= top * 10 ** (-FLOOR_DB / 10)
    return squared * (REFERENCE_POWER / frame_power[loud].mean())


@functools.cache
def _hann() -> np.ndarray:
    """The periodic Hann window of the frames (as scipy.signal.stft's "hann")."""
    return 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)


# the power of a frame's spectrum as scipy.signal.stft scales it (by the window's sum)
_SCALE = 1 / (0.5 * N_FFT) ** 2


@functools.cache
def _filterbank(n_mels: int, dtype: type = np.float32) -> np.ndarray:
    from whichvoice.features import mel_filterbank  # a module that loads torch: only when used

    return mel_filterbank(n_mels, N_FFT, SAMPLE_RATE).astype(dtype)


def _modulation(power: np.ndarray, loud: np.ndarray) -> np.ndarray:
    """The modulation block of the fingerprint from a clip's power spectrogram (257, n_frames)
    at 100 frames/s and its louder frames: float64, shape (DIM - SPECTRUM_DIM,)."""
    bands = np.log(_filterbank(MOD_MELS, np.float64) @ power + 1e-10)
    x = bands - bands.mean(axis=1, keepdims=True)
    if x.shape[1] < MOD_FRAMES:
        x = np.pad(x, ((0, 0), (0, MOD_FRAMES - x.shape[1])))
    taper = np.hanning(MOD_FRAMES)
    stretches = range(0, x.shape[1] - MOD_FRAMES + 1, MOD_FRAMES // 2)
    spectrum = np.mean([np.abs(np.fft.rfft(x[:, a : a + MOD_FRAMES] * taper, axis=1)) ** 2
                        for a in stretches], axis=0)  # fmt: skip
    freqs = np.fft.rfftfreq(MOD_FRAMES, HOP / SAMPLE_RATE)
    mod = np.stack([spectrum[:, (freqs >= lo) & (freqs < hi)].mean(axis=1)
                    for lo, hi in itertools.pairwise(MOD_EDGES)], axis=1)  # fmt: skip
    mod = np.log(mod + 1e-10)
    mod -= mod.mean(axis=1, keepdims=True)
    moving = bands[:, loud] if loud.sum() > 10 else bands
    step = np.diff(moving, axis=1)
    if step.shape[1] > 2:
        lag1 = (step[:, 1:] * step[:, :-1]).mean(axis=1) / (step.var(axis=1) + 1e-9)
    else:  # too short to tell
        lag1 = np.zeros(MOD_MELS)
    return np.concatenate([mod.ravel(), lag1])


def fingerprint_of(source: AudioSource) -> np.ndarray:
    """The fingerprint of a file, bytes or ``Decoded`` audio (decoded and resampled to 16 kHz;
    its first ``MAX_SECONDS``); raises its ``AudioDecodeError`` or ``SilentAudioError``."""
    return recording_fingerprint(load_audio(source))


def recording_fingerprint(wave: np.ndarray) -> np.ndarray:
    """The fingerprint of a recording decoded at 16 kHz: of its first ``MAX_SECONDS``."""
    return spectral_fingerprint(wave[: MAX_SECONDS * SAMPLE_RATE])

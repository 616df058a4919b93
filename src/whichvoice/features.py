"""Waveform -> model inputs: log-mel windows (torch, batched) or the talk's spectrogram images.

Two feature kinds, chosen by ``FeatureConfig.name``:

- ``logmel`` (default): leading and trailing silence trimmed, level normalised, cut into
  waveform windows of ``window_s`` seconds every ``hop_s`` seconds (stored and augmented as
  waveforms), then a 64-band log-mel spectrogram, 25 ms frames every 10 ms, per-band mean
  removed. Stored window: float32 (n_samples,); model input: (n_mels, n_frames).
- ``seed-image``: the talk's input. A 2 s excerpt whose start is drawn once in 500-1000 ms,
  drawn with matplotlib ``specgram`` (colormap 'hot') on a 1.4 x 1.4 in figure at 100 dpi,
  read back as RGB / 255. One window: float32, shape (3, 140, 140).
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from whichvoice.audio import SAMPLE_RATE

FEATURE_NAMES = ("logmel", "seed-image")
VERSION = 5  # bump when the features a config gives change: cached datasets are keyed on it
TRIM_DB = 40.0  # dB below the loudest frame that counts as silence at the edges
TARGET_RMS = 0.05  # full scale (-26 dBFS); every clip is brought to this level
SEED_START_S = (0.5, 1.0)  # s; the talk drew each excerpt's start in this range
SEED_PIXELS = 140  # 1.4 in x 100 dpi


@dataclass(frozen=True)
class FeatureConfig:
    """How audio becomes model input; stored in every prepared dataset and model run."""

    name: str = "logmel"
    sample_rate: int = SAMPLE_RATE  # Hz
    window_s: float = 2.0  # s of audio per model input
    hop_s: float = 1.0  # s between window starts (several windows per clip)
    n_mels: int = 64
    n_fft: int = 400  # samples (25 ms)
    frame_hop: int = 160  # samples (10 ms)
    trim: bool = True
    # remove each mel band's mean over the window (a fixed channel colouring drops out, and so
    # does the voice's average spectral envelope); run configs written before it have it on
    cmn: bool = True

    def __post_init__(self) -> None:
        if self.name not in FEATURE_NAMES:
            raise ValueError(f"unknown features {self.name!r}; valid: {', '.join(FEATURE_NAMES)}")
        if self.window_s <= 0 or self.hop_s <= 0:
            raise ValueError("window and hop must be positive seconds")

    @property
    def window_samples(self) -> int:
        return round(self.window_s * self.sample_rate)

    @property
    def hop_samples(self) -> int:
        return max(1, round(self.hop_s * self.sample_rate))

    @property
    def stored_shape(self) -> tuple[int, ...]:
        """Shape of one stored window (waveform for logmel, the image for seed-image)."""
        if self.name == "seed-image":
            return (3, SEED_PIXELS, SEED_PIXELS)
        return (self.window_samples,)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one window as the model sees it."""
        if self.name == "seed-image":
            return self.stored_shape
        return (self.n_mels, n_frames(self.window_samples, self))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> FeatureConfig:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + f / 700.0)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


@functools.cache
def mel_filterbank(n_mels: int, n_fft: int, sample_rate: int) -> np.ndarray:
    """Triangular HTK-style mel filters, float32, shape (n_mels, n_fft // 2 + 1)."""
    freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    edges = _mel_to_hz(
        np.linspace(_hz_to_mel(np.array(20.0)), _hz_to_mel(np.array(sample_rate / 2)), n_mels + 2)
    )
    lower, center, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None, :] - lower) / (center - lower)
    down = (upper - freqs[None, :]) / (upper - center)
    return np.maximum(0.0, np.minimum(up, down)).astype(np.float32)


class LogMel(torch.nn.Module):
    """Batched log-mel on any device: (batch, n_samples) float32 -> (batch, n_mels, n_frames)."""

    def __init__(self, cfg: FeatureConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.register_buffer("window", torch.hann_window(cfg.n_fft), persistent=False)
        fb = torch.from_numpy(mel_filterbank(cfg.n_mels, cfg.n_fft, cfg.sample_rate))
        self.register_buffer("fb", fb, persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(
            wave,
            n_fft=self.cfg.n_fft,
            hop_length=self.cfg.frame_hop,
            window=self.window,
            center=True,
            return_complex=True,
        )
        power = spec.real.square() + spec.imag.square()
        return torch.log(torch.matmul(self.fb, power) + 1e-6)


def n_frames(n_samples: int, cfg: FeatureConfig) -> int:
    """Frames LogMel makes from ``n_samples`` (center=True)."""
    return n_samples // cfg.frame_hop + 1


def trim_silence(wave: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """Drop the 10 ms frames quieter than TRIM_DB under the loudest one: silence at the
    edges and the pauses inside (a long recording's gaps would otherwise fill windows)."""
    hop = cfg.frame_hop
    n = wave.shape[0] // hop
    if n < 2:
        return wave
    frames = wave[: n * hop].reshape(n, hop)
    db = 10 * np.log10(np.square(frames).mean(axis=1) + 1e-12)
    loud = db > db.max() - TRIM_DB
    if not loud.any():  # cannot happen for finite audio; keep everything rather than nothing
        return wave
    # keep short quiet stretches (stops, soft consonants): drop only runs of 100 ms or more
    keep = loud.copy()
    run_start = None
    for i, is_loud in enumerate([*loud, True]):
        if not is_loud and run_start is None:
            run_start = i
        elif is_loud and run_start is not None:
            edge = run_start == 0 or i == n
            if not edge and i - run_start < 10:
                keep[run_start:i] = True
            run_start = None
    return frames[keep].reshape(-1)


def normalize_level(wave: np.ndarray) -> np.ndarray:
    """Scale to TARGET_RMS, so a quiet recording and a loud one give the same features."""
    rms = float(np.sqrt(np.mean(np.square(wave, dtype=np.float64)))) if wave.size else 0.0
    return (wave * (TARGET_RMS / rms)).astype(np.float32) if rms > 1e-8 else wave


def window_starts(total: int, size: int, step: int) -> list[int]:
    """Starts of windows of ``size`` over ``total`` frames: every ``step``, the last one flush
    with the end; a single window at 0 when ``total`` is shorter than ``size``."""
    if total <= size:
        return [0]
    starts = list(range(0, total - size + 1, step))
    if starts[-1] != total - size:
        starts.append(total - size)
    return starts


def speech_of(wave: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """The part of a 16 kHz clip the model listens to: silence trimmed, level normalised."""
    return normalize_level(trim_silence(wave, cfg) if cfg.trim else wave)


def wave_windows(speech: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """Waveform windows, float32 (n_windows, window_samples). A clip shorter than a window is
    repeated to fill it, so every input has one shape."""
    size = cfg.window_samples
    if speech.shape[0] < size:
        speech = np.tile(speech, math.ceil(size / max(speech.shape[0], 1)))[:size]
    starts = window_starts(speech.shape[0], size, cfg.hop_samples)
    return np.stack([speech[s : s + size] for s in starts]).astype(np.float32)


def model_inputs(x: torch.Tensor, cfg: FeatureConfig) -> torch.Tensor:
    """Stored windows -> what the model takes, on x's device.

    logmel: waveforms (batch, n_samples) -> log-mel (batch, n_mels, n_frames), per-band mean
    removed (the level and a fixed channel colouring drop out); seed-image: unchanged.
    """
    if cfg.name == "seed-image":
        return x
    mel = _logmel_module(cfg, str(x.device))(x)
    return mel - mel.mean(dim=2, keepdim=True) if cfg.cmn else mel


def logmel_windows(waves: list[np.ndarray], cfg: FeatureConfig) -> list[np.ndarray]:
    """Stored-form windows of each 16 kHz waveform: float32 (n_windows, window_samples)."""
    return [wave_windows(speech_of(w, cfg), cfg) for w in waves]


@functools.cache
def _logmel_module(cfg: FeatureConfig, device: str) -> LogMel:
    return LogMel(cfg).to(device)


def seed_image(wave: np.ndarray, rate: int, start_s: float, cfg: FeatureConfig) -> np.ndarray:
    """The talk's input: ``cfg.window_s`` s from ``start_s``, drawn as a 'hot' specgram.

    ``wave`` is float32 mono at its own ``rate`` (the talk used the mp3's rate).
    Returns float32 RGB in [0, 1], shape (3, 140, 140).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    start = int(start_s * rate)
    excerpt = wave[start : start + int(cfg.window_s * rate)]
    if excerpt.shape[0] < 256:  # shorter than the clip's own start: use what there is
        excerpt = wave[: int(cfg.window_s * rate)]
    excerpt = np.pad(excerpt, (0, max(0, 256 - excerpt.shape[0])))
    fig = Figure(figsize=(SEED_PIXELS / 100, SEED_PIXELS / 100), dpi=100)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.axis("off")
    with np.errstate(divide="ignore"):
        ax.specgram(excerpt, Fs=rate, cmap="hot")
    canvas.draw()
    rgb = np.asarray(canvas.buffer_rgba())[:, :, :3]
    return (rgb.transpose(2, 0, 1) / 255.0).astype(np.float32)


def seed_windows(
    wave: np.ndarray, rate: int, cfg: FeatureConfig, start_s: float | None = None
) -> np.ndarray:
    """Seed images for one clip: at ``start_s`` when given (training, as the talk), else at
    the middle of the talk's range and then every ``hop_s`` (prediction on any length).
    Returns float32, shape (n_windows, 3, 140, 140)."""
    if start_s is not None:
        return seed_image(wave, rate, start_s, cfg)[None]
    first = sum(SEED_START_S) / 2
    duration = wave.shape[0] / rate
    starts = [first]
    while starts[-1] + cfg.hop_s + cfg.window_s <= duration:
        starts.append(starts[-1] + cfg.hop_s)
    return np.stack([seed_image(wave, rate, s, cfg) for s in starts])

"""Waveform -> model inputs: log-mel windows (torch, batched) or the talk's spectrogram images.

Two feature kinds, chosen by ``FeatureConfig.name``:

- ``logmel`` (default): 64-band log-mel spectrogram, 25 ms frames every 10 ms, leading and
  trailing silence trimmed, per-band mean removed, cut into windows of ``window_s`` seconds
  every ``hop_s`` seconds. One window: float32, shape (n_mels, n_frames).
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
VERSION = 2  # bump when the features a config gives change: cached datasets are keyed on it
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

    def __post_init__(self) -> None:
        if self.name not in FEATURE_NAMES:
            raise ValueError(f"unknown features {self.name!r}; valid: {', '.join(FEATURE_NAMES)}")
        if self.window_s <= 0 or self.hop_s <= 0:
            raise ValueError("window and hop must be positive seconds")

    @property
    def window_frames(self) -> int:
        return round(self.window_s * self.sample_rate / self.frame_hop)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one window as the model sees it."""
        if self.name == "seed-image":
            return (3, SEED_PIXELS, SEED_PIXELS)
        return (self.n_mels, self.window_frames)

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
    """Drop leading/trailing frames quieter than TRIM_DB under the loudest one."""
    hop = cfg.frame_hop
    n = wave.shape[0] // hop
    if n < 2:
        return wave
    energy = np.square(wave[: n * hop].reshape(n, hop)).mean(axis=1)
    db = 10 * np.log10(energy + 1e-12)
    loud = np.flatnonzero(db > db.max() - TRIM_DB)
    return wave[loud[0] * hop : (loud[-1] + 1) * hop]


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


def cut_windows(logmel: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """Log-mel (n_mels, frames) -> normalised windows (n_windows, n_mels, window_frames).

    A clip shorter than one window is repeated to fill it, so every input has one shape.
    """
    size = cfg.window_frames
    step = max(1, round(cfg.hop_s * cfg.sample_rate / cfg.frame_hop))
    frames = logmel.shape[1]
    if frames < size:
        logmel = np.tile(logmel, (1, math.ceil(size / max(frames, 1))))[:, :size]
        frames = size
    windows = np.stack([logmel[:, s : s + size] for s in window_starts(frames, size, step)])
    # per-band mean removal: the level and a fixed channel colouring drop out
    return (windows - windows.mean(axis=2, keepdims=True)).astype(np.float32)


def logmel_windows(
    waves: list[np.ndarray], cfg: FeatureConfig, device: str | torch.device = "cpu"
) -> list[np.ndarray]:
    """Windows for each waveform (float32 mono at cfg.sample_rate), computed as one batch.

    Returns one float32 array per input, shape (n_windows, n_mels, window_frames).
    """
    if not waves:
        return []
    clips = [normalize_level(trim_silence(w, cfg) if cfg.trim else w) for w in waves]
    lengths = [c.shape[0] for c in clips]
    batch = np.zeros((len(clips), max(max(lengths), cfg.n_fft)), dtype=np.float32)
    for i, c in enumerate(clips):
        batch[i, : c.shape[0]] = c
    with torch.inference_mode():
        mel = _logmel_module(cfg, str(device))(torch.from_numpy(batch).to(device)).cpu().numpy()
    return [cut_windows(mel[i, :, : n_frames(n, cfg)], cfg) for i, n in enumerate(lengths)]


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

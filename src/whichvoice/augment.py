"""Training-time augmentation (torch, batched): making training audio harder.

Evaluation never uses this module: its conditions (``whichvoice.conditions``) are made with
other tools and other parameters, so that robustness is not measured against itself.

Training augmentation works on a batch of waveform windows, float32 (batch, n_samples) at 16
kHz, on any device: additive noise at a random SNR (white, pink, or babble made from the other
windows of the batch), random gain, telephone band with light clipping, reverberation with a
synthetic room impulse response, hard clipping of a recording made too loud, speed changes
(resampling by linear interpolation) and, on request, random band limits. Low-bitrate mp3
cannot be done in torch: prepared datasets keep an mp3-degraded copy of each training window,
drawn instead of the clean one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch.nn import functional as F

from whichvoice.audio import SAMPLE_RATE, read_audio, resample

TELEPHONE_BAND = (300.0, 3400.0)  # Hz, the classic telephone pass band


@dataclass(frozen=True)
class AugmentConfig:
    """Each part switchable (probability 0 turns it off) and seeded by the training loop."""

    enabled: bool = True
    noise_p: float = 0.5  # probability of additive noise
    snr_db: tuple[float, float] = (-5.0, 30.0)  # dB, uniform
    gain_db: float = 30.0  # +/- dB, uniform
    telephone_p: float = 0.3  # telephone band with clipping, or an 8 kHz recording's band
    reverb_p: float = 0.3
    rt60_s: tuple[float, float] = (0.2, 1.3)  # s, reverberation time of the synthetic rooms
    mp3_p: float = 0.25  # probability of the mp3-degraded copy of a window
    clip_p: float = 0.2  # probability of hard clipping
    clip_fraction: tuple[float, float] = (0.005, 0.3)  # of the samples clipped, uniform
    speed_p: float = 0.3  # probability of a speed change
    speed: float = 0.15  # +/- relative speed, uniform
    # a random band limit: off by default (no gain on the dev sentences); asking for the part
    # by name (``--augment ...,band``) turns it on at BAND_P
    band_p: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> AugmentConfig:
        kw = {
            k: tuple(v) if isinstance(v, list) else v
            for k, v in d.items()
            if k in cls.__dataclass_fields__
        }
        return cls(**kw)


NO_AUGMENT = AugmentConfig(enabled=False)
BAND_P = 0.15


def _uniform(
    n: int, lo: float, hi: float, g: torch.Generator, device: torch.device
) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g, device=device)


def _pink(shape: tuple[int, int], g: torch.Generator, device: torch.device) -> torch.Tensor:
    white = torch.randn(shape, generator=g, device=device)
    spec = torch.fft.rfft(white)
    f = torch.arange(spec.shape[1], device=device).clamp(min=1).float()
    return torch.fft.irfft(spec / f.sqrt(), n=shape[1])


def _babble(x: torch.Tensor, rows: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """For each of ``rows``: the sum of 3-6 other windows of the batch, each shifted in time
    (many people talking). Returns (len(rows), n_samples)."""
    batch, n = x.shape
    out = torch.zeros((len(rows), n), dtype=x.dtype, device=x.device)
    for _ in range(int(torch.randint(3, 7, (1,), generator=g))):
        others = torch.randint(0, batch, (len(rows),), generator=g).to(x.device)
        out += torch.roll(x[others], int(torch.randint(0, n, (1,), generator=g)), dims=1)
    return out


def add_noise(x: torch.Tensor, noise: torch.Tensor, snr_db: torch.Tensor) -> torch.Tensor:
    """``x + noise`` with the noise scaled to ``snr_db`` (per row) relative to ``x``'s power."""
    px = x.square().mean(dim=1, keepdim=True).clamp(min=1e-10)
    pn = noise.square().mean(dim=1, keepdim=True).clamp(min=1e-10)
    scale = torch.sqrt(px / pn / (10 ** (snr_db[:, None] / 10)))
    return x + scale * noise


def band_pass(x: torch.Tensor, low: float, high: float, rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Zero the spectrum outside [low, high] Hz (rows of ``x`` independently)."""
    spec = torch.fft.rfft(x)
    freqs = torch.fft.rfftfreq(x.shape[1], 1 / rate).to(x.device)
    spec = spec * ((freqs >= low) & (freqs <= high))
    return torch.fft.irfft(spec, n=x.shape[1])


def telephone(x: torch.Tensor, clip: torch.Tensor) -> torch.Tensor:
    """300-3400 Hz band and light clipping at ``clip`` x each row's peak."""
    y = band_pass(x, *TELEPHONE_BAND)
    limit = (y.abs().amax(dim=1, keepdim=True) * clip[:, None]).clamp(min=1e-6)
    return torch.maximum(torch.minimum(y, limit), -limit)


def hard_clip(x: torch.Tensor, fraction: torch.Tensor) -> torch.Tensor:
    """Each row clipped at the level that ``fraction`` (per row) of its samples exceed, as a
    recording made too loud: full scale is reached by that share of the samples."""
    n = x.shape[1]
    ranked = x.abs().sort(dim=1).values
    at = ((1 - fraction) * (n - 1)).long().clamp(0, n - 1).to(x.device)
    level = ranked.gather(1, at[:, None]).clamp(min=1e-6)
    return torch.maximum(torch.minimum(x, level), -level) / level


def change_speed(x: torch.Tensor, factor: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Each row played ``factor`` (per row) times as fast (pitch and tempo together), by
    linear interpolation; cut to the window at a random offset, or padded with silence."""
    n = x.shape[1]
    out = torch.zeros_like(x)
    for i in range(x.shape[0]):
        size = max(2, round(n / float(factor[i])))
        y = F.interpolate(x[i][None, None], size=size, mode="linear", align_corners=False)[0, 0]
        shift = int(torch.randint(0, abs(size - n) + 1, (1,), generator=g))
        if size >= n:
            out[i] = y[shift : shift + n]
        else:
            out[i, shift : shift + size] = y
    return out


def random_band(
    x: torch.Tensor, low: torch.Tensor, high: torch.Tensor, rate: int = SAMPLE_RATE
) -> torch.Tensor:
    """Each row band-limited to [low, high] Hz (per row) with 1-octave raised-cosine edges."""
    spec = torch.fft.rfft(x)
    f = torch.fft.rfftfreq(x.shape[1], 1 / rate).to(x.device)[None, :].clamp(min=1.0)
    up = ((torch.log2(f / low[:, None]) + 0.5).clamp(0, 1) * torch.pi).cos().neg().add(1) / 2
    down = ((torch.log2(high[:, None] / f) + 0.5).clamp(0, 1) * torch.pi).cos().neg().add(1) / 2
    return torch.fft.irfft(spec * up * down, n=x.shape[1])


def room_impulse(rt60: torch.Tensor, g: torch.Generator, rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Synthetic room impulse responses, (batch, n): a direct path, then exponentially
    decaying noise that falls by 60 dB in ``rt60`` seconds."""
    n = int(rate * float(rt60.max()))
    t = torch.arange(n, device=rt60.device) / rate
    decay = torch.exp(-6.9 * t[None, :] / rt60[:, None])
    rir = torch.randn((rt60.shape[0], n), generator=g, device=rt60.device) * decay * 0.3
    rir[:, 0] = 1.0
    return rir / rir.norm(dim=1, keepdim=True)


def reverberate(x: torch.Tensor, rir: torch.Tensor) -> torch.Tensor:
    """Convolve each row with its impulse response (FFT), keeping the original length."""
    n = x.shape[1] + rir.shape[1]
    size = 1 << (n - 1).bit_length()
    y = torch.fft.irfft(torch.fft.rfft(x, size) * torch.fft.rfft(rir, size), size)
    return y[:, : x.shape[1]]


def augment_batch(x: torch.Tensor, cfg: AugmentConfig, g: torch.Generator) -> torch.Tensor:
    """A degraded copy of a batch of waveform windows, float32 (batch, n_samples) at 16 kHz.

    Each part touches only the rows it drew, so the cost follows the probabilities. ``g`` is
    a CPU generator: the same seed gives the same degradations on any device.
    """
    if not cfg.enabled:
        return x
    batch, device = x.shape[0], x.device
    cpu = torch.device("cpu")
    x = x.clone()

    def rows(p: float) -> torch.Tensor:
        return torch.nonzero(torch.rand(batch, generator=g) < p).flatten()

    if cfg.speed_p > 0 and len(idx := rows(cfg.speed_p)):
        sel = idx.to(device)
        x[sel] = change_speed(x[sel], 1 + _uniform(len(idx), -cfg.speed, cfg.speed, g, cpu), g)
    if cfg.reverb_p > 0 and len(idx := rows(cfg.reverb_p)):
        rir = room_impulse(_uniform(len(idx), *cfg.rt60_s, g, cpu), g).to(device)
        x[idx.to(device)] = reverberate(x[idx.to(device)], rir)
    if cfg.telephone_p > 0 and len(idx := rows(cfg.telephone_p)):
        # half the time a telephone line, half a recording made at 8 kHz (4 kHz band)
        phone = torch.rand(len(idx), generator=g) < 0.5
        if phone.any():
            sel = idx[phone].to(device)
            x[sel] = telephone(x[sel], _uniform(len(sel), 0.3, 0.9, g, cpu).to(device))
        if (~phone).any():
            sel = idx[~phone].to(device)
            x[sel] = band_pass(x[sel], 0.0, 4000.0)
    if cfg.band_p > 0 and len(idx := rows(cfg.band_p)):
        low = 10 ** _uniform(len(idx), 1.7, 2.7, g, cpu)  # 50-500 Hz
        high = 10 ** _uniform(len(idx), 3.4, 3.85, g, cpu)  # 2.5-7 kHz
        sel = idx.to(device)
        x[sel] = random_band(x[sel], low.to(device), high.to(device))
    if cfg.noise_p > 0 and len(idx := rows(cfg.noise_p)):
        sel = idx.to(device)
        kind = torch.randint(0, 3, (len(idx),), generator=g)
        noise = torch.randn((len(idx), x.shape[1]), generator=g).to(device)
        if (kind == 1).any():
            pink = kind == 1
            noise[pink.to(device)] = _pink((int(pink.sum()), x.shape[1]), g, cpu).to(device)
        if (kind == 2).any():
            babble = (kind == 2).to(device)
            noise[babble] = _babble(x, sel[babble], g)
        snr = _uniform(len(idx), *cfg.snr_db, g, cpu).to(device)
        x[sel] = add_noise(x[sel], noise, snr)
    if cfg.clip_p > 0 and len(idx := rows(cfg.clip_p)):
        sel = idx.to(device)
        x[sel] = hard_clip(x[sel], _uniform(len(idx), *cfg.clip_fraction, g, cpu))
    if cfg.gain_db > 0:
        gain = 10 ** (_uniform(batch, -cfg.gain_db, cfg.gain_db, g, cpu).to(device) / 20)
        x = x * gain[:, None]
    return x


def mp3_roundtrip(
    wave: np.ndarray, rate: int, kbps: int, enc_rate: int | None = None
) -> tuple[np.ndarray, int]:
    """``wave`` through an mp3 of about ``kbps`` kbit/s and back (float32 mono, its rate).

    Encoded at ``enc_rate``; by default low bitrates at 16 kHz, as encoders do."""
    enc_rate = enc_rate or (16_000 if kbps <= 32 else rate)
    y = resample(wave, rate, enc_rate)
    # libsndfile maps compression level linearly onto MPEG-2's 8-160 kbit/s (16-24 kHz);
    # it refuses a level of exactly 1
    level = float(np.clip((160 - kbps) / (160 - 8), 0.0, 0.999))
    import io

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(
        buf,
        np.clip(y, -1, 1),
        enc_rate,
        format="MP3",
        subtype="MPEG_LAYER_III",
        compression_level=level,
        bitrate_mode="CONSTANT",
    )
    out, out_rate = read_audio(buf.getvalue())
    return out, out_rate

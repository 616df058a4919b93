"""Audio in and out: decode any file or bytes to float32 mono, write clips atomically.

Everything downstream of this module works on float32 mono waveforms at ``SAMPLE_RATE``.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from whichvoice.errors import AudioDecodeError, SilentAudioError

SAMPLE_RATE = 16_000  # Hz, the rate every model input is resampled to
SILENCE_PEAK = 1e-4  # full scale (-80 dBFS); an input whose peak stays under this is silent
ENGINE_SILENCE_PEAK = 0.01  # full scale (-40 dBFS); a TTS engine's output this quiet failed
MIN_DURATION_S = 0.1  # s; shorter clips carry no usable speech

AudioSource = str | os.PathLike | bytes | bytearray

# soundfile format name and subtype for each file format we write
_WRITE_FORMATS = {
    "wav": ("WAV", "PCM_16"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
    "flac": ("FLAC", "PCM_16"),
}


def describe_source(source: AudioSource) -> str:
    """How errors name an input: its path, or "<N bytes>"."""
    if isinstance(source, bytes | bytearray):
        return f"<{len(source)} bytes>"
    return str(source)


def read_audio(source: AudioSource) -> tuple[np.ndarray, int]:
    """Decode a file path, a URL (``s3://...``) or encoded bytes at its own rate.

    Returns (float32 mono waveform in [-1, 1], shape (n_samples,); sample rate in Hz).
    Raises AudioDecodeError naming the file when it cannot be read, decoded or is empty.
    """
    name = describe_source(source)
    if not isinstance(source, bytes | bytearray) and "://" in os.fspath(source):
        from whichvoice import storage

        if storage.is_url(source):
            try:
                source = storage.read_bytes(source)
            except storage.StorageError as e:
                raise AudioDecodeError(str(e)) from e
    if not isinstance(source, bytes | bytearray) and not Path(source).is_file():
        what = "is a folder" if Path(source).is_dir() else "no such file"
        raise AudioDecodeError(f"{name}: cannot read ({what})")
    try:
        if isinstance(source, bytes | bytearray):
            data, rate = sf.read(io.BytesIO(bytes(source)), dtype="float32", always_2d=True)
        else:
            data, rate = sf.read(os.fspath(source), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        raise AudioDecodeError(f"{name}: not a decodable audio file ({e})") from e
    except OSError as e:
        raise AudioDecodeError(f"{name}: cannot read ({e.strerror or e})") from e
    if data.shape[0] == 0:
        raise AudioDecodeError(f"{name}: the audio is empty (0 samples)")
    if not np.isfinite(data).all():
        raise AudioDecodeError(f"{name}: the audio holds NaN or infinite samples")
    return data.mean(axis=1, dtype=np.float32), int(rate)


def resample(wave: np.ndarray, rate: int, target: int = SAMPLE_RATE) -> np.ndarray:
    """Resample a float32 mono waveform from ``rate`` to ``target`` Hz (soxr, high quality)."""
    if rate == target:
        return wave.astype(np.float32, copy=False)
    return soxr.resample(wave, rate, target, quality="HQ").astype(np.float32, copy=False)


def check_not_silent(
    wave: np.ndarray, rate: int, name: str, min_peak: float = SILENCE_PEAK
) -> None:
    """Raise SilentAudioError (naming ``name``) when the clip is too short or its peak is
    under ``min_peak`` (a quiet recording still passes the default)."""
    duration = wave.shape[0] / rate
    if duration < MIN_DURATION_S:
        raise SilentAudioError(f"{name}: too short ({duration * 1000:.0f} ms of audio)")
    peak = float(np.max(np.abs(wave)))
    if peak < min_peak:
        raise SilentAudioError(f"{name}: silent (peak {20 * np.log10(max(peak, 1e-9)):.0f} dBFS)")


def load_audio(source: AudioSource, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode any file or bytes (wav, mp3, flac, ogg; any rate; stereo) for the models.

    Returns float32 mono, shape (n_samples,), at ``sample_rate`` Hz.
    Raises AudioDecodeError or SilentAudioError naming the input.
    """
    wave, rate = read_audio(source)
    check_not_silent(wave, rate, describe_source(source))
    return resample(wave, rate, sample_rate)


def encode_audio(wave: np.ndarray, rate: int, fmt: str) -> bytes:
    """Encode a float32 mono waveform as ``fmt`` ("wav", "mp3" or "flac") bytes."""
    try:
        major, subtype = _WRITE_FORMATS[fmt]
    except KeyError:
        raise ValueError(
            f"unknown audio format {fmt!r}; valid: {', '.join(_WRITE_FORMATS)}"
        ) from None
    buf = io.BytesIO()
    sf.write(buf, np.clip(wave, -1.0, 1.0), rate, format=major, subtype=subtype)
    return buf.getvalue()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def ensure_dir(path: Path, what: str = "output") -> Path:
    """Create ``path`` (a folder) or raise OutputError in one line, before any long work."""
    from whichvoice.errors import OutputError

    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".whichvoice-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise OutputError(f"{path}: cannot write the {what} here ({e.strerror or e})") from e
    return path


def write_atomic(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename.

    A reader never sees a half-written file, whatever happens to this process. ``durable``
    also fsyncs, so the file survives a power cut (callers that verify files on resume skip it).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; files get the usual mode
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

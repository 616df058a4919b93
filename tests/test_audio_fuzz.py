"""Decoder fuzzing: whatever bytes arrive, ``load_audio`` either raises the library's own error
or returns finite float32 mono, and never allocates what a lying header claims."""

from __future__ import annotations

import os
import struct
import tracemalloc

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from whichvoice.audio import SAMPLE_RATE, encode_audio, load_audio, read_audio
from whichvoice.errors import AudioDecodeError, AudioTooLongError, SilentAudioError

from .conftest import encode_with_ffmpeg, sine

FUZZ = settings(
    max_examples=int(os.environ.get("WHICHVOICE_FUZZ_EXAMPLES", "150")),  # make fuzz: more
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,  # the same examples on every run: a failure here is a real one
    database=None,
)


def _ogg(wave: np.ndarray, rate: int) -> bytes:
    import io

    buf = io.BytesIO()
    sf.write(buf, wave, rate, format="OGG", subtype="VORBIS")
    return buf.getvalue()


SEEDS = {
    "wav": encode_audio(sine(seconds=0.5), SAMPLE_RATE, "wav"),
    "mp3": encode_audio(sine(seconds=0.5), SAMPLE_RATE, "mp3"),
    "flac": encode_audio(sine(seconds=0.5), SAMPLE_RATE, "flac"),
    "ogg": _ogg(sine(seconds=0.5), SAMPLE_RATE),
    # the containers FFmpeg (PyAV) decodes: what browsers and phones record
    "webm": encode_with_ffmpeg(sine(seconds=0.5, rate=48_000), 48_000, "webm", "libopus"),
    "m4a": encode_with_ffmpeg(sine(seconds=0.5, rate=44_100), 44_100, "mp4", "aac"),
    "aac": encode_with_ffmpeg(sine(seconds=0.5, rate=22_050), 22_050, "adts", "aac"),
    "amr": encode_with_ffmpeg(sine(seconds=0.5, rate=8_000), 8_000, "amr", "libopencore_amrnb"),
}


def check_decodes_or_refuses(data: bytes) -> None:
    """The contract every input is held to."""
    try:
        wave = load_audio(data)
    except (AudioDecodeError, SilentAudioError) as e:
        assert str(e).startswith(f"<{len(data)} bytes>")  # the error names the input
        return
    assert wave.dtype == np.float32 and wave.ndim == 1 and wave.size > 0
    assert np.isfinite(wave).all()


@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes(data: bytes) -> None:
    check_decodes_or_refuses(data)


@FUZZ
@given(st.sampled_from(sorted(SEEDS)), st.data())
def test_truncated_files(fmt: str, draw: st.DataObject) -> None:
    seed = SEEDS[fmt]
    check_decodes_or_refuses(seed[: draw.draw(st.integers(0, len(seed)))])


@FUZZ
@given(
    st.sampled_from(sorted(SEEDS)),
    st.lists(st.tuples(st.integers(0, 1 << 30), st.integers(0, 7)), min_size=1, max_size=24),
)
def test_bit_flipped_files(fmt: str, flips: list[tuple[int, int]]) -> None:
    data = bytearray(SEEDS[fmt])
    for at, bit in flips:
        data[at % len(data)] ^= 1 << bit
    check_decodes_or_refuses(bytes(data))


@FUZZ
@given(
    st.sampled_from(sorted(SEEDS)),
    st.integers(0, 200),
    st.binary(min_size=1, max_size=64),
)
def test_overwritten_headers(fmt: str, at: int, junk: bytes) -> None:
    data = bytearray(SEEDS[fmt])
    data[at : at + len(junk)] = junk
    check_decodes_or_refuses(bytes(data))


def wav_header(
    *, rate: int, channels: int, data_bytes: int, bits: int = 16, body: bytes = b""
) -> bytes:
    """A PCM WAV file whose header says what it is told to, followed by ``body``."""
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * block & 0xFFFFFFFF, block, bits)
    riff = 4 + 8 + len(fmt) + 8 + data_bytes
    return (
        b"RIFF"
        + struct.pack("<I", min(riff, 0xFFFFFFFF))
        + b"WAVEfmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"data"
        + struct.pack("<I", min(data_bytes, 0xFFFFFFFF))
        + body
    )


BODY = (sine(seconds=0.5) * 32767).astype("<i2").tobytes()


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (dict(rate=0, channels=1, data_bytes=len(BODY)), "not a decodable audio file"),
        (dict(rate=100, channels=1, data_bytes=len(BODY)), "sample rate of 100 Hz"),
        (dict(rate=10_000_000, channels=1, data_bytes=len(BODY)), "10000000 Hz"),
        (dict(rate=16_000, channels=0, data_bytes=len(BODY)), None),
        (dict(rate=16_000, channels=1000, data_bytes=len(BODY)), None),
        (dict(rate=16_000, channels=1, data_bytes=2**32 - 1), None),  # 2^31 frames claimed
        (dict(rate=16_000, channels=2, data_bytes=2**32 - 1), None),
        (dict(rate=16_000, channels=1, data_bytes=10 * 2**30), None),  # a 10 GB header
    ],
)
def test_absurd_headers_allocate_only_what_the_file_holds(
    header: dict, expected: str | None
) -> None:
    data = wav_header(**header, body=BODY)
    tracemalloc.start()
    try:
        if expected:
            with pytest.raises(AudioDecodeError, match=expected):
                load_audio(data)
        else:
            check_decodes_or_refuses(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # the file is 16 kB: decoding it may take a few blocks, never gigabytes
    assert peak < 64 * 2**20, f"{peak / 2**20:.0f} MiB for a {len(data)} byte file"


def test_lying_header_decodes_the_samples_that_are_there() -> None:
    data = wav_header(rate=16_000, channels=1, data_bytes=2**32 - 1, body=BODY)
    wave, rate = read_audio(data)
    assert rate == 16_000 and wave.shape == (len(BODY) // 2,)


def test_a_duration_limit_stops_decoding() -> None:
    long = encode_audio(sine(seconds=3.0), SAMPLE_RATE, "flac")
    with pytest.raises(AudioTooLongError, match="over the 1 s limit"):
        read_audio(long, max_seconds=1.0)
    assert read_audio(long, max_seconds=5.0)[0].shape == (3 * SAMPLE_RATE,)


def test_many_channels_are_averaged() -> None:
    import io

    frames = np.stack([sine(seconds=0.2)] * 8, axis=1)
    buf = io.BytesIO()
    sf.write(buf, frames, SAMPLE_RATE, format="WAV", subtype="FLOAT")
    wave, _ = read_audio(buf.getvalue())
    assert np.allclose(wave, frames[:, 0], atol=1e-6)

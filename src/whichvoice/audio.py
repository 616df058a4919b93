"""Audio in and out: decode any file or bytes to float32 mono, write clips atomically.

Everything downstream of this module works on float32 mono waveforms at ``SAMPLE_RATE``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from numbers import Number
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from whichvoice import storage
from whichvoice.errors import (
    AudioDecodeError,
    AudioTooLongError,
    NoSuchChannelError,
    SilentAudioError,
)

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000  # Hz, the rate every model input is resampled to
SILENCE_PEAK = 1e-4  # full scale (-80 dBFS); an input whose peak stays under this is silent
ENGINE_SILENCE_PEAK = 0.01  # full scale (-40 dBFS); a TTS engine's output this quiet failed
MIN_DURATION_S = 0.1  # s; shorter clips carry no usable speech
MIN_SPEECH_S = 0.2  # s; less speech than this in a clip is a burst, not a voice to name
MIN_RATE = 1_000  # Hz; a file claiming less is damaged (telephone audio is 8 kHz)
MAX_RATE = 768_000  # Hz; the highest rate audio interfaces record at
# samples past this (float audio is [-1, 1], integer PCM as floats up to 2**31) are brought
# to a peak of 1: their squares would overflow float32 in the features
HUGE_PEAK = 1e10
# a float recording past full scale: a sample over this many times its SPIKE_RANK-th
# largest (a bit flipped in a float WAV, a glitch of an editor) is brought down to that
# bound, or to full scale where that is higher; audio within [-1, 1] is never touched
SPIKE_FACTOR = 4.0
SPIKE_RANK = 100
# two channels whose average keeps under this share of their own mean power cancel each
# other (one in opposite phase): the louder channel alone is the recording (two voices or a
# voice and silence on two channels keep half; the same signal on both keeps all of it)
CANCELLED_POWER = 0.1
MIX_JUDGED_S = 0.5  # seconds: the stretches of a stereo recording judged one by one
# file name endings taken for audio when a folder is searched
AUDIO_SUFFIXES = {".mp3", ".wav", ".flac", ".ogg", ".oga", ".opus", ".aiff", ".aif", ".aifc",
                  ".au", ".caf", ".w64", ".rf64", ".sph", ".m4a", ".m4b", ".mp4", ".mov",
                  ".aac", ".webm", ".weba", ".mka", ".mkv", ".wma", ".amr", ".3gp",
                  ".mp2"}  # fmt: skip
_BLOCK_VALUES = 1 << 20  # samples decoded at a time, all channels together (4 MB of float32)


def listed_audio(entry: Path | os.DirEntry) -> bool:
    """Whether a folder's entry (a Path, or a directory listing's entry, whose type is
    already known) is an input: a file with an audio suffix, or a link of that name to
    nothing (a disk not mounted, a moved file), which is then an input that fails and says so
    rather than one skipped without a word."""
    if os.path.splitext(entry.name)[1].lower() not in AUDIO_SUFFIXES:
        return False
    return entry.is_file() or (entry.is_symlink() and not os.path.exists(entry))


@dataclass(frozen=True, eq=False)
class Decoded:
    """Audio decoded once (e.g. an HTTP upload) and handed on as a source: float32 mono
    ``wave``, shape (n_samples,), at ``rate`` Hz; ``name`` is how errors name it.

    Any array a user holds is taken: a list or another dtype (integer samples are scaled
    to [-1, 1]), several channels (shape (n, channels) or (channels, n), averaged); a DC
    offset is taken away as a decoded file's is (``without_dc``). Samples
    that are not finite, an array of more dimensions, or a rate that is not a positive whole
    number raise AudioDecodeError naming it."""

    wave: np.ndarray
    rate: int
    name: str = "<samples>"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:  # errors would say "None: ..."
            object.__setattr__(self, "name", "<audio>" if not self.name else str(self.name))
        wave = np.asarray(self.wave)
        if not (np.issubdtype(wave.dtype, np.number) and not np.iscomplexobj(wave)):
            raise AudioDecodeError(f"{self.name}: audio samples are numbers, not {wave.dtype}")
        if np.issubdtype(wave.dtype, np.integer):  # PCM as recorded: scaled to [-1, 1]
            info = np.iinfo(wave.dtype)
            if info.bits > 16 and wave.size and 0 < np.abs(wave).max() <= 32768:
                # 16-bit samples in a wider type (a list of ints is int64): scaled to that
                # type's range they were "silent" at -100 dBFS and below
                raise AudioDecodeError(
                    f"{self.name}: {wave.dtype} samples that use 16 bits of its range: integer "
                    f"samples are scaled to their type's full range; give np.int16 samples "
                    "(np.asarray(x, np.int16)) or floats in [-1, 1]"
                )
            middle = 0 if info.min < 0 else (int(info.max) + 1) // 2  # unsigned: offset
            wave = (wave.astype(np.float32) - np.float32(middle)) / np.float32(
                -info.min if info.min < 0 else middle
            )
        if wave.ndim == 2:  # channels along the shorter side
            wave = to_mono(wave if wave.shape[1] <= wave.shape[0] else wave.T, _rate_or(self.rate))
        if wave.ndim != 1:
            raise AudioDecodeError(
                f"{self.name}: audio of shape {wave.shape}; give (samples,), (samples, "
                "channels) or (channels, samples)"
            )
        if wave.dtype != np.float32:
            wave = wave.astype(np.float32)
        check_finite(wave, self.name)
        wave = without_spikes(wave)
        rate = self.rate
        if isinstance(rate, bool) or not isinstance(rate, int | np.integer) or rate <= 0:
            raise AudioDecodeError(f"{self.name}: sample rate {rate!r}: a positive whole number")
        check_rate(int(rate), self.name)  # as a file's header is checked
        # less its DC offset where it has one, as a decoded file is (``without_dc``)
        object.__setattr__(self, "wave", without_dc(wave))
        object.__setattr__(self, "rate", int(rate))


@dataclass(frozen=True)
class Channel:
    """One channel of a recording that has several (a call with a party on each), read alone
    where the channels would otherwise be mixed into one (``Mixer``): ``source``, a path, a
    URL or encoded bytes; ``index``, 1 for the first channel (left), 2 for the second, ...
    Every reader of audio takes it where it takes a path. A recording with fewer channels
    than ``index`` is an AudioDecodeError naming both."""

    source: str | os.PathLike | bytes | bytearray
    index: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "index", channel_index(self.index))
        if not isinstance(self.source, str | os.PathLike | bytes | bytearray):
            raise AudioDecodeError(
                f"{self.source!r:.60}: a Channel of a file path, a URL or encoded bytes (a "
                "Decoded clip is one channel already)"
            )


AudioSource = str | os.PathLike | bytes | bytearray | Decoded | Channel


@contextlib.contextmanager
def _tried() -> Iterator[None]:
    """Another decoder tried where the first gave up: its own failure is passed over (the
    first one's error is said), but a channel the file does not have is the answer."""
    try:
        yield
    except NoSuchChannelError:
        raise
    except AudioDecodeError:
        pass


def channel_count(source: str | os.PathLike | bytes | bytearray) -> int | None:
    """How many channels a recording has, from its header (libsndfile's formats, else
    FFmpeg's first audio stream); None when neither can tell."""
    try:
        opened = io.BytesIO(bytes(source)) if isinstance(source, bytes | bytearray) else source
        with soundfile_target(opened) as target:
            return int(sf.info(target).channels)
    except (sf.SoundFileError, RuntimeError, TypeError, ValueError, OSError):
        pass
    try:
        import av

        # a file object, never a name: FFmpeg reads "take1:2.m4a" as a protocol
        opened = (
            io.BytesIO(bytes(source))
            if isinstance(source, bytes | bytearray)
            else open(source, "rb")  # noqa: SIM115 (closed by the with below)
        )
        with opened as f, av.open(f) as container:
            stream = next((st for st in container.streams if st.type == "audio"), None)
            return None if stream is None else int(stream.codec_context.channels)
    except Exception:  # PyAV on anything it cannot open: not ours to say why here
        return None


def split_channel(source: AudioSource) -> tuple[AudioSource, int | None]:
    """A source and the channel to read of it: a ``Channel``'s, else None (the mix)."""
    return (source.source, source.index) if isinstance(source, Channel) else (source, None)


def channel_index(index: object) -> int:
    """``index`` as a channel's number (1 for the first); AudioDecodeError for one that
    cannot be (0, -1, 1.5, True)."""
    if isinstance(index, bool) or not isinstance(index, int | np.integer) or index < 1:
        raise AudioDecodeError(f"channel {index!r}: 1 for the first, 2 for the second, ...")
    return int(index)


def check_channel(channel: int | None, channels: int, name: str) -> None:
    """NoSuchChannelError naming ``name`` when it has no channel ``channel`` (1-based)."""
    if channel is not None and channel > channels:
        raise NoSuchChannelError(
            f"{name}: has {channels} channel{'s' if channels != 1 else ''}; "
            f"there is no channel {channel}"
        )


def check_rate(rate: int, name: str) -> None:
    """AudioDecodeError naming ``name`` for a sample rate no audio has (a damaged header)."""
    if not MIN_RATE <= rate <= MAX_RATE:
        raise AudioDecodeError(
            f"{name}: a sample rate of {rate} Hz is not audio "
            f"({MIN_RATE}-{MAX_RATE} Hz are accepted)"
        )


class Mixer:
    """One recording's channels to float32 mono, block by block (``data`` of shape
    (samples, channels)): averaged; but where two channels cancel each other (one in
    opposite phase: a balanced microphone wired backwards, a "wide" stereo export or intro),
    whose average was silence, or after lossy coding a thin residue of the voice answered as
    another, one channel alone. Judged on every MIX_JUDGED_S of the recording (stretches
    counted from its start, however it is cut into blocks), so that a stretch that cancels
    does not decide for the rest (a host on one channel was lost to a wide intro); with two
    bounds, so that channels near the bound do not flicker between the two (entered below
    CANCELLED_POWER, left above twice that). The channel taken is the louder in the first
    stretch that cancels, for the whole recording: its sign never flips. Samples are held
    until a stretch is whole (a call may return fewer than it was given); ``end``, or
    ``now``, returns the rest. More channels are averaged (independent ones keep 1/N of
    their power)."""

    def __init__(self, rate: int, channel: int | None = None) -> None:
        self.pick = channel  # 1-based: that channel alone (``Channel``), checked by the caller
        self.stretch = max(1, int(rate * MIX_JUDGED_S))
        self.channel: int | None = None  # the one taken where the two cancel
        self.cancelling = False
        self.held: list[np.ndarray] = []
        self.held_n = 0

    def __call__(self, data: np.ndarray, *, now: bool = False) -> np.ndarray:
        channels = data.shape[1]
        if data.size == 0:  # no samples: the stretches stay where they were
            return self.end() if now else np.zeros(0, np.float32)
        if self.pick is not None:
            return data[:, self.pick - 1].astype(np.float32)
        if channels == 1:
            return data[:, 0].astype(np.float32)
        if channels != 2:  # a recording's layout does not change between its blocks
            return data.mean(axis=1, dtype=np.float32)
        self.held.append(data)
        self.held_n += data.shape[0]
        if not now and self.held_n < self.stretch:
            return np.zeros(0, np.float32)
        data = self.held[0] if len(self.held) == 1 else np.concatenate(self.held)
        whole = data.shape[0] if now else data.shape[0] // self.stretch * self.stretch
        rest = data[whole:]
        self.held, self.held_n = ([rest.copy()], rest.shape[0]) if rest.shape[0] else ([], 0)
        return self._mono(data[:whole])

    def end(self) -> np.ndarray:
        """The samples still held."""
        if not self.held_n:
            self.held = []
            return np.zeros(0, np.float32)
        data = self.held[0] if len(self.held) == 1 else np.concatenate(self.held)
        self.held, self.held_n = [], 0
        return self._mono(data)

    def _mono(self, data: np.ndarray) -> np.ndarray:
        left, right = data[:, 0], data[:, 1]
        mix = left.astype(np.float32)
        mix += right
        mix *= np.float32(0.5)
        n = data.shape[0]
        if n == 0:
            return mix
        # each stretch's powers (the last one may be short), with no copy of the samples
        cuts = np.arange(0, n, self.stretch)
        left_p, right_p, mix_p = (
            np.add.reduceat(np.square(x, dtype=np.float32), cuts) for x in (left, right, mix)
        )
        both = left_p + right_p
        for k in range(cuts.shape[0]):
            if both[k] <= 0:  # silence: as it was
                continue
            share = mix_p[k] / (both[k] / 2)
            bound = 2 * CANCELLED_POWER if self.cancelling else CANCELLED_POWER
            self.cancelling = bool(share < bound)
            if not self.cancelling:
                continue
            if self.channel is None:  # the louder in the first stretch that cancels
                self.channel = int(right_p[k] > left_p[k])
            mix[cuts[k] : cuts[k] + self.stretch] = data[cuts[k] : cuts[k] + self.stretch,
                                                         self.channel]  # fmt: skip
        return mix


def _rate_or(rate: object, default: int = 16_000) -> int:
    """``rate`` when it is a usable whole number (checked after), else ``default``."""
    ok = isinstance(rate, int | np.integer) and not isinstance(rate, bool) and rate > 0
    return int(rate) if ok else default


def to_mono(data: np.ndarray, rate: int = 16_000) -> np.ndarray:
    """A whole recording of shape (samples, channels) as float32 mono (``Mixer``)."""
    return Mixer(rate)(data, now=True)


def without_spikes(wave: np.ndarray) -> np.ndarray:
    """A float mono ``wave`` past full scale less its lone spikes (a bit flipped in a float
    WAV, an editor's glitch): each sample above SPIKE_FACTOR times the SPIKE_RANK-th largest
    magnitude (or full scale, if higher) is brought to that bound; a single such sample set
    the level, so the speech around it was taken for silence. Audio within [-1, 1] (every
    integer format) is returned as it is, and loud float audio (integer PCM written as floats)
    keeps its own level; what is left past HUGE_PEAK is brought to a peak of 1."""
    if wave.size == 0:
        return wave
    peak = max(float(wave.max()), -float(wave.min()))
    if peak <= 1.0:
        return wave
    size = np.abs(wave)
    rank = min(SPIKE_RANK, size.size)
    bound = max(1.0, SPIKE_FACTOR * float(np.partition(size, -rank)[-rank]))
    if peak > bound:
        wave = np.clip(wave, -bound, bound).astype(np.float32, copy=False)
        peak = bound
    if peak > HUGE_PEAK:  # squares of such samples overflow float32; level is not voice
        wave = wave / np.float32(peak)
    return wave


def check_finite(samples: np.ndarray, name: str) -> None:
    """AudioDecodeError naming ``name`` when ``samples`` hold NaN or infinite values."""
    if not np.isfinite(samples).all():
        raise AudioDecodeError(  # a float64 file's samples past 3.4e38 are infinite in float32
            f"{name}: the audio holds NaN or infinite samples (or past float32's range)"
        )


# soundfile format name and subtype for each file format we write
_WRITE_FORMATS = {
    "wav": ("WAV", "PCM_16"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
    "flac": ("FLAC", "PCM_16"),
}


def inputs_of(sources: AudioSource | Iterable[AudioSource]) -> Iterable[AudioSource]:
    """The inputs of a call that takes many: one path, URL, clip or bytes is one input (a str
    is not read one character at a time); any other iterable is its items, read as they
    come (a generator too)."""
    if isinstance(sources, str | os.PathLike | bytes | bytearray | Decoded | Channel):
        return [sources]
    if hasattr(sources, "read") or isinstance(sources, dict):
        # a file object was read a line at a time, each line an input (962 answers for one
        # upload, a web framework's file: a review); a dict, by its keys
        what = "a dict" if isinstance(sources, dict) else "a file object"
        raise AudioDecodeError(
            f"{what} is not an input: pass a file's bytes (f.read()), its path, a URL, a "
            "Decoded clip, or a list of them"
        )
    samples = isinstance(sources, np.ndarray) or (  # a list of numbers alone: samples too
        isinstance(sources, list | tuple)
        and len(sources) > 1
        and all(isinstance(x, Number) for x in sources)
    )
    if samples:  # each sample was taken for an input: a clip of 2 s gave 32,000 errors
        raise AudioDecodeError(
            "an array of samples needs its rate: pass Decoded(wave, rate, name) "
            "(whichvoice.audio.Decoded)"
        )
    if not isinstance(sources, Iterable):  # None, a number
        raise AudioDecodeError(
            f"{sources!r:.60}: give a file path, a URL, encoded bytes, a Decoded clip or a "
            "list of them"
        )
    return sources


def describe_source(source: AudioSource) -> str:
    """How errors name an input: its path, its name when decoded, or "<N bytes>"."""
    if isinstance(source, Decoded):
        return source.name
    if isinstance(source, Channel):
        return f"{describe_source(source.source)} (channel {source.index})"
    if isinstance(source, bytes | bytearray):
        return f"<{len(source)} bytes>"
    return str(source)


STDIN = "-"  # an input named so is standard input, as the Unix tools read it


def is_stdin(source: object) -> bool:
    """Whether ``source`` names standard input (``-``)."""
    return isinstance(source, str | os.PathLike) and os.fspath(source) == STDIN


MAX_PIPE_BYTES = 1 << 30  # a pipe is read into memory whole: at most this much


def read_pipe(path: str | os.PathLike, name: str) -> bytes:
    """A pipe (/dev/stdin, a shell's <(...)) read once, whole, up to ``MAX_PIPE_BYTES``."""
    try:
        with open(path, "rb") as pipe:
            data = pipe.read(MAX_PIPE_BYTES + 1)
    except OSError as e:
        raise AudioDecodeError(f"{name}: cannot read ({e.strerror or e})") from e
    if len(data) > MAX_PIPE_BYTES:
        raise AudioTooLongError(
            f"{name}: a pipe of more than {MAX_PIPE_BYTES >> 20} MiB (give a file)"
        )
    return data


def read_audio(
    source: AudioSource,
    *,
    max_seconds: float | None = None,
    name: str | None = None,
    channel: int | None = None,
) -> tuple[np.ndarray, int]:
    """Decode a file path, a URL (``s3://...``) or encoded bytes at its own rate.

    Returns (float32 mono waveform in [-1, 1], shape (n_samples,); sample rate in Hz).
    Raises AudioDecodeError naming the file when it cannot be read, decoded or is empty,
    and AudioTooLongError when it holds more than ``max_seconds`` of audio; ``name``: how
    errors name it (default ``describe_source``, e.g. "<N bytes>"). Memory follows
    the audio actually decoded, never what a header claims: it is read in blocks.
    ``channel`` (1-based; or a ``Channel`` source): that channel alone, not the mix.
    """
    if isinstance(source, Channel):
        name = name or describe_source(source)
        if channel is not None and channel_index(channel) != source.index:
            raise AudioDecodeError(f"{name}: channel {channel} asked of a Channel {source.index}")
        return read_audio(source.source, max_seconds=max_seconds, name=name, channel=source.index)
    if channel is not None:
        channel = channel_index(channel)
    if isinstance(source, Decoded):
        check_channel(channel, 1, source.name)
        return source.wave, source.rate
    if (
        isinstance(source, list | tuple)
        and source
        and all(isinstance(x, str | os.PathLike) for x in source)
    ):
        raise AudioDecodeError(
            f"a list of {len(source)} file(s): this takes one recording; call it for each"
        )
    if isinstance(source, np.ndarray | list | tuple):
        raise AudioDecodeError(
            "an array of samples needs its rate: pass Decoded(wave, rate, name) "
            "(whichvoice.audio.Decoded)"
        )
    if not isinstance(source, str | os.PathLike | bytes | bytearray):
        raise AudioDecodeError(
            f"{source!r:.60}: not audio; give a file path, a URL, encoded bytes or "
            "Decoded(wave, rate, name)"
        )
    name = name or describe_source(source)
    if is_stdin(source):  # "-": standard input, read once, whole
        source = read_pipe("/dev/stdin", name)
    if not isinstance(source, bytes | bytearray) and storage.is_url(source):
        try:
            source = storage.read_bytes(source)
        except storage.StorageError as e:
            raise AudioDecodeError(str(e)) from e
    if not isinstance(source, bytes | bytearray) and Path(source).is_fifo():
        source = read_pipe(source, name)
    if not isinstance(source, bytes | bytearray) and not Path(source).is_file():
        what = (
            "is a folder"
            if Path(source).is_dir()
            else "not a regular file"
            if Path(source).exists()
            else "no such file"
        )
        raise AudioDecodeError(f"{name}: cannot read ({what})")
    head = (
        bytes(source[:SNIFF_BYTES])
        if isinstance(source, bytes | bytearray)
        else _head(source, name)
    )
    if (what := not_audio(head)) is not None:
        if what.endswith(("text file", "HTML page")) and _mp3_after_text(source):
            # an MP3 behind more text than the sniff reads (a `curl -i` dump, a stream's
            # headers): FFmpeg's MP3 demuxer finds its first frame; text never has one
            with _tried():
                return _decode_with_ffmpeg(source, "mp3", name, max_seconds, channel)
        raise AudioDecodeError(f"{name}: not audio ({what})")
    if (container := ffmpeg_container(head)) is not None:  # what browsers and phones record
        return _decode_with_ffmpeg(source, container, name, max_seconds, channel)
    memory = _memory_file(source) if isinstance(source, bytes | bytearray) else None
    opened = source if memory is None else memory
    if isinstance(source, bytes | bytearray) and memory is None:
        opened = io.BytesIO(bytes(source))
    try:
        with soundfile_target(opened) as target, sf.SoundFile(target, closefd=False) as f:
            wave, rate = _decode_blocks(f, name, max_seconds, channel)
    except (AudioDecodeError, AudioTooLongError):
        raise
    except (sf.SoundFileError, RuntimeError, TypeError, ValueError, OverflowError, EOFError) as e:
        why = getattr(e, "error_string", None) or e  # not soundfile's "Error opening <BytesIO..>"
        if "possibly a pipe" in str(why):  # libsndfile's words for a file it could not parse
            why = "corrupt, or a format it cannot read"
        # libmpg123 gives up on a long run of damaged frames, and libFLAC on a file cut off
        # (the whole file, not just its end): FFmpeg's decoders skip them, or stop at the cut
        if (demuxer := _demuxer_after_damage(head)) is not None:
            with _tried():
                return _decode_with_ffmpeg(source, demuxer, name, max_seconds, channel)
        raise AudioDecodeError(f"{name}: not a decodable audio file ({why})") from e
    except OSError as e:
        raise AudioDecodeError(f"{name}: cannot read ({e.strerror or e})") from e
    finally:
        if memory is not None:
            os.close(memory)
    if wave.shape[0] == 0 and _samples_past_an_empty_header(source):
        # a header whose data chunk says 0 bytes (a recorder stopped before it wrote the
        # size): libsndfile believes it, FFmpeg reads the samples that follow it
        with _tried():
            wave, rate = _decode_with_ffmpeg(source, "wav", name, max_seconds, channel)
            log.warning("%s: its header says it holds no audio; read the %.1f s after it",
                        name, wave.shape[0] / rate)  # fmt: skip
    if wave.shape[0] == 0:
        raise AudioDecodeError(f"{name}: the audio is empty (0 samples)")
    if head[:4] == b"RIFF":  # the header read again only for a WAV
        warn_if_cut_off(source, name)
    return wave, rate


_TEXT_SCAN_BYTES = 1 << 16


def _first_bytes(source: str | os.PathLike | bytes | bytearray) -> bytes:
    """The first 64 KiB of a file or of encoded bytes (none when the file cannot be read)."""
    if isinstance(source, bytes | bytearray):
        return bytes(source[:_TEXT_SCAN_BYTES])
    try:
        with open(source, "rb") as f:
            return f.read(_TEXT_SCAN_BYTES)
    except OSError:
        return b""


def _samples_past_an_empty_header(source: str | os.PathLike | bytes | bytearray) -> bool:
    """Whether a RIFF WAV whose data chunk says 0 bytes has bytes after that chunk's header
    that are no other chunk (a recorder stopped before writing the size: they are its
    samples); a data chunk truly empty, followed by a tag chunk or nothing, has none."""
    data = _first_bytes(source)
    if data[:4] not in (b"RIFF", b"RF64") or data[8:12] != b"WAVE":
        return False
    at = 12
    while at + 8 <= len(data):
        chunk, size = data[at : at + 4], int.from_bytes(data[at + 4 : at + 8], "little")
        if chunk == b"data":
            after = data[at + 8 : at + 16]
            if len(after) < 8 or size != 0:
                return False
            # what follows: another chunk (four printable characters) or samples
            return not all(32 <= c < 127 for c in after[:4])
        at += 8 + size + (size & 1)
    return False


# a data chunk's size at or over this is a writer's placeholder for "not known yet" (a
# stream: arecord to a pipe writes 0x7FFFFF00, espeak-ng --stdout 0x7FFFF000, others
# 0xFFFFFFFF), not a claim of ~9 hours
STREAMED_SIZE = 0x7FFF0000


def wav_cut_off(source: str | os.PathLike | bytes | bytearray) -> tuple[float, float] | None:
    """(seconds its header says, seconds it holds) of a RIFF WAV whose data chunk says more
    bytes than the file holds past it: a download or a copy cut off, which libsndfile reads
    to the cut without a word; None for any other file. A size of 0 or of STREAMED_SIZE or
    more is a recorder's that never wrote it (streamed), not a claim."""
    data = _first_bytes(source)
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    byte_rate, at = 0, 12
    while at + 8 <= len(data):
        chunk, size = data[at : at + 4], int.from_bytes(data[at + 4 : at + 8], "little")
        if chunk == b"fmt " and at + 20 <= len(data):
            byte_rate = int.from_bytes(data[at + 16 : at + 20], "little")
        if chunk == b"data":
            if byte_rate <= 0 or size == 0 or size >= STREAMED_SIZE:
                return None
            try:
                total = (
                    len(source)
                    if isinstance(source, bytes | bytearray)
                    else os.stat(source).st_size
                )
            except OSError:
                return None
            held = max(total - (at + 8), 0)
            if size - held < byte_rate / 100:  # under 10 ms short: a pad byte, a last frame
                return None
            return size / byte_rate, held / byte_rate
        at += 8 + size + (size & 1)
    return None


def warn_if_cut_off(source: str | os.PathLike | bytes | bytearray, name: str) -> None:
    """A warning naming a WAV that is cut off (``wav_cut_off``), which is read to the cut."""
    if (cut := wav_cut_off(source)) is not None:
        log.warning(
            "%s: cut off: its header says %.1f s of audio, the file holds %.1f s (read to the cut)",
            name,
            *cut,
        )


def _mp3_after_text(source: str | os.PathLike | bytes | bytearray) -> bool:
    """Whether the first 64 KiB of a file that begins as text hold an MPEG audio frame's
    sync (0xFF, then three set bits and a layer): UTF-8 text never holds a 0xFF byte."""
    data = _first_bytes(source)
    at = data.find(b"\xff")
    while at != -1:
        if looks_like_mp3(data[at : at + 2]):
            return True
        at = data.find(b"\xff", at + 1)
    return False


@contextlib.contextmanager
def soundfile_target(source: object) -> Iterator[object]:
    """What soundfile can open for ``source``: the source itself, or, for a path whose name
    is not UTF-8 (a Latin-1 name on a Linux disk, held as surrogates), the file opened by
    Python: soundfile encodes names to UTF-8 and would fail on it."""
    if isinstance(source, str | os.PathLike):
        try:
            os.fspath(source).encode("utf-8")
        except UnicodeEncodeError:
            try:
                f = open(source, "rb")  # noqa: SIM115 (closed below, after the yield)
            except OSError:  # the caller's own reading says why
                pass
            else:
                with f:
                    yield f
                return
    yield source


def _memory_file(data: bytes | bytearray) -> int | None:
    """``data`` in an anonymous in-memory file (Linux ``memfd_create``), its descriptor at
    offset 0; None where there is no such call. libsndfile then reads it natively. Through a
    BytesIO it calls back into Python for every read, holding the GIL each time: decoding an
    upload took twice the CPU, and the server's threads waited on one another."""
    if not hasattr(os, "memfd_create"):
        return None
    try:
        fd = os.memfd_create("whichvoice-audio", os.MFD_CLOEXEC)
    except OSError:
        return None
    try:
        view, written = memoryview(data), 0
        while written < len(view):
            written += os.write(fd, view[written:])
        os.lseek(fd, 0, os.SEEK_SET)
    except OSError:
        os.close(fd)
        return None
    return fd


SNIFF_BYTES = 512
_SIGNATURES = (  # leading bytes of common files that are not audio, and what they are
    (b"PK\x03\x04", "a zip archive (or an office document)"),
    (b"%PDF", "a PDF document"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"SQLite format 3", "an SQLite database"),
    (b"\x7fELF", "a program"),
)
# containers libsndfile cannot read, decoded by FFmpeg (PyAV) with the one demuxer their
# leading bytes name: WebM/Matroska (browsers' MediaRecorder), MP4/M4A/3GP (phones, Safari),
# AAC in ADTS, WMA, AMR
_FFMPEG_SIGNATURES = (
    (b"\x1a\x45\xdf\xa3", "matroska"),
    (b"0&\xb2u\x8ef\xcf\x11", "asf"),
    (b"#!AMR", "amr"),
)


def ffmpeg_container(head: bytes) -> str | None:
    """The FFmpeg demuxer for a file libsndfile cannot read, from its first bytes; None for
    any other (libsndfile's own formats, or not audio)."""
    for magic, demuxer in _FFMPEG_SIGNATURES:
        if head.startswith(magic):
            return demuxer
    if head[4:8] == b"ftyp":  # ISO base media: MP4, M4A, MOV, 3GP
        return "mp4"
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xF6 == 0xF0:  # ADTS: layer bits 00
        return "aac"
    return None


def looks_like_mp3(head: bytes) -> bool:
    """Whether a file's first bytes are an MP3's: an ID3 tag, or an MPEG audio frame of
    layer I-III (ADTS AAC has layer bits 00)."""
    if head.startswith(b"ID3"):
        return True
    return len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and head[1] & 0x06 != 0


def _demuxer_after_damage(head: bytes) -> str | None:
    """The FFmpeg demuxer that reads a file libsndfile gave up on, from its first bytes:
    MP3, FLAC and Ogg (None for others: a damaged WAV is read up to its damage already)."""
    if looks_like_mp3(head):
        return "mp3"
    if head.startswith(b"fLaC"):
        return "flac"
    if head.startswith(b"OggS"):
        return "ogg"
    if head.startswith(b"caff"):  # Apple's CAF, of a codec libsndfile lacks (ALAC, AAC)
        return "caf"
    return None


def _decode_with_ffmpeg(
    source: str | os.PathLike | bytes | bytearray,
    demuxer: str,
    name: str,
    max_seconds: float | None,
    channel: int | None = None,
) -> tuple[np.ndarray, int]:
    """(float32 mono waveform, rate) of the first audio stream of a container FFmpeg reads
    (PyAV), channels averaged as ``_decode_blocks`` averages them (or ``channel`` alone)."""
    try:
        import av
    except ImportError as e:  # a core dependency; said plainly if an install lacks it
        raise AudioDecodeError(
            f"{name}: a {demuxer} file needs PyAV to be decoded: pip install av"
        ) from e
    parts: list[np.ndarray] = []
    total = 0
    try:
        # a file object, never a name: FFmpeg reads "take1:2.m4a" or "pipe:..." as a protocol
        opened = (
            io.BytesIO(bytes(source))
            if isinstance(source, bytes | bytearray)
            else open(source, "rb")  # noqa: SIM115 (closed by the with below)
        )
        with opened as target, av.open(target, format=demuxer) as container:
            stream = next((st for st in container.streams if st.type == "audio"), None)
            if stream is None:
                raise AudioDecodeError(f"{name}: no audio in it (a video without sound?)")
            rate = int(stream.rate or stream.codec_context.sample_rate or 0)
            check_rate(rate, name)
            limit = None if max_seconds is None else int(max_seconds * rate)
            down, mixer = _Downsampler(rate), Mixer(rate, channel)
            planar = av.AudioResampler(format="fltp")  # float32, the stream's channels and rate
            damaged: av.FFmpegError | None = None  # the first packet that could not be decoded
            bad = good = 0
            for frame in _frames_around_damage(container, stream):
                if isinstance(frame, av.FFmpegError):
                    damaged, bad = damaged or frame, bad + 1
                    continue
                good += 1
                for out in planar.resample(frame):
                    data = out.to_ndarray()  # (channels, n)
                    check_channel(channel, data.shape[0], name)
                    check_finite(data, name)
                    parts.append(down(mixer(data.T)))
                    total += data.shape[1]
                if limit is not None and total > limit:
                    raise AudioTooLongError(f"{name}: over the {max_seconds:g} s limit")
            if not parts and damaged is not None:
                raise damaged
            parts.append(down(mixer.end()))
            parts.append(down.end())
            rate = down.rate
            if bad > good:  # a few good frames in noise: not a recording to answer about
                raise AudioDecodeError(
                    f"{name}: not a decodable audio file (mostly damaged: {bad} of "
                    f"{bad + good} frames could not be decoded)"
                )
    except (AudioDecodeError, AudioTooLongError):
        raise
    except av.FFmpegError as e:
        why = getattr(e, "strerror", None) or e
        raise AudioDecodeError(f"{name}: not a decodable audio file ({why})") from e
    except OSError as e:
        raise AudioDecodeError(f"{name}: cannot read ({e.strerror or e})") from e
    except Exception as e:  # PyAV on damaged input: metadata not UTF-8, odd layouts, ...
        raise AudioDecodeError(f"{name}: not a decodable audio file ({e})") from e
    wave = (
        np.concatenate(parts).astype(np.float32, copy=False) if parts else np.zeros(0, np.float32)
    )
    if wave.shape[0] == 0:
        raise AudioDecodeError(f"{name}: the audio is empty (0 samples)")
    return without_dc(without_spikes(wave)), rate


def _frames_around_damage(container, stream) -> Iterator:
    """The stream's decoded frames, a packet that cannot be decoded (damaged bytes) given as
    its error in their place: the audio around a damaged stretch is kept, as libmpg123 keeps
    it around a few damaged frames."""
    import av

    for packet in container.demux(stream):
        try:
            yield from packet.decode()
        except av.error.InvalidDataError as e:
            yield e


def _head(path: str | os.PathLike, name: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(SNIFF_BYTES)
    except OSError as e:  # say why (the decoder would say "System error.")
        raise AudioDecodeError(f"{name}: cannot read ({e.strerror or e})") from e


def not_audio(head: bytes) -> str | None:
    """What a file is, from its first bytes, when it is plainly not audio (an empty file,
    text, an image, an archive, ...); None when it may be audio."""
    if not head:
        return "an empty file"
    for magic, what in _SIGNATURES:
        if head.startswith(magic):
            return what
    if head.startswith(
        (b"ID3", b"RIFF", b"RF64", b"fLaC", b"OggS", b"FORM", b".snd", b"caff", b"NIST_1A",
         b"\xff")
    ):  # fmt: skip
        return None  # an audio container (NIST SPHERE's header is text) or an MPEG frame
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if text.isprintable() or all(c.isprintable() or c.isspace() for c in text):
        stripped = text.lstrip().lower()
        if stripped.startswith(("<!doctype html", "<html")):
            return "an HTML page"
        if stripped.startswith(("{", "[")):
            return "a JSON or other text file"
        return "a text file"
    return None


def _decode_blocks(
    f: sf.SoundFile, name: str, max_seconds: float | None, channel: int | None = None
) -> tuple[np.ndarray, int]:
    rate, channels = int(f.samplerate), int(f.channels)
    check_rate(rate, name)
    if channels < 1:
        raise AudioDecodeError(f"{name}: {channels} channels")
    check_channel(channel, channels, name)
    limit = None if max_seconds is None else int(max_seconds * rate)
    block = max(1, _BLOCK_VALUES // channels)
    down, mixer = _Downsampler(rate), Mixer(rate, channel)
    parts, total = [], 0
    while True:
        data = f.read(block, dtype="float32", always_2d=True)
        if data.shape[0] == 0:
            break
        check_finite(data, name)
        parts.append(down(mixer(data)))
        total += data.shape[0]
        if limit is not None and total > limit:
            raise AudioTooLongError(f"{name}: over the {max_seconds:g} s limit")
    parts.append(down(mixer.end()))
    parts.append(down.end())
    wave = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    if f.subtype in ("FLOAT", "DOUBLE"):  # stored as floats: past full scale is possible
        wave = without_spikes(wave)
    return without_dc(wave), down.rate


DECODED_MAX_RATE = 48_000  # Hz: audio recorded faster is brought to this rate as it is decoded


class _Downsampler:
    """Blocks of a recording faster than DECODED_MAX_RATE resampled to it as they are decoded
    (soxr's stream: the same as resampling the whole), others passed as they are. Nothing
    whichvoice measures lies above 8 kHz, and a 768 kHz file of 10 minutes (a few MB of
    FLAC silence) held at its own rate took gigabytes before any check could look at it."""

    def __init__(self, rate: int) -> None:
        self.stream = None
        self.rate = rate
        if rate > DECODED_MAX_RATE:
            import soxr

            self.stream = soxr.ResampleStream(rate, DECODED_MAX_RATE, 1, dtype="float32")
            self.rate = DECODED_MAX_RATE

    def __call__(self, mono: np.ndarray) -> np.ndarray:
        if self.stream is None:
            return mono
        return self.stream.resample_chunk(np.ascontiguousarray(mono, np.float32))

    def end(self) -> np.ndarray:
        if self.stream is None:
            return np.zeros(0, np.float32)
        return self.stream.resample_chunk(np.zeros(0, np.float32), last=True)


STEADY_DB = 3.0  # frames' loudness spread (99th - 10th percentile) under which nothing is speech


def frame_db(wave: np.ndarray, rate: int = SAMPLE_RATE, frame_s: float = 0.01) -> np.ndarray:
    """The loudness (dB) of each ``frame_s`` frame (10 ms) of a waveform at ``rate`` Hz (no copy
    of the waveform is made: a long recording's frames are summed in place)."""
    hop = max(1, int(round(rate * frame_s, 6)))
    n = wave.shape[0] // hop
    frames = np.ascontiguousarray(wave[: n * hop], dtype=np.float32).reshape(n, hop)
    power = np.einsum("ij,ij->i", frames, frames).astype(np.float64) / hop
    return 10 * np.log10(power + 1e-12)


def is_steady(db: np.ndarray) -> bool:
    """Whether frames of these loudnesses (``frame_db``) are a steady sound (a hum, a tone, a
    fan, room noise), which holds no speech: speech rises and falls by far more than
    ``STEADY_DB`` between syllables and pauses."""
    return db.size > 0 and float(np.percentile(db, 99) - np.percentile(db, 10)) < STEADY_DB


SOUND_DB = 40.0  # dB under its loudest frame within which a clip's frames are its sound
# Two tones a few tens of hertz apart beat: a ringback tone (440 + 480 Hz) rises and falls 40
# times a second, by more than STEADY_DB between 10 ms frames, and was taken for a voice
# (a review). Over frames of SLOW_FRAME_S such a beat evens out, while speech still rises and
# falls between syllables; at least SLOW_SOUND_S of them are judged, so that one drawn-out
# syllable is never taken for a tone, and their spread must stay under SLOW_STEADY_DB (a
# beat's leftover part of a period moves them by under 1 dB; measured, no more of 100 clips
# of human-dev digits joined were taken for a steady sound under white noise at any level,
# from 10 dB under the speech to 10 dB over it, nor any of 1,500 TTS clips).
SLOW_FRAME_S = 0.1
SLOW_SOUND_S = 0.8
SLOW_STEADY_DB = 1.5


def only_a_steady_sound(
    wave: np.ndarray, rate: int = SAMPLE_RATE, db: np.ndarray | None = None
) -> bool:
    """Whether a clip's sound, its frames within SOUND_DB of the loudest (silence around it
    left out), is steady (``is_steady``): a tone, a hum or noise, not a voice. Judged on 10 ms
    frames (``db``: their ``frame_db`` where the caller has it already), and on SLOW_FRAME_S
    frames where there are SLOW_SOUND_S of sound (two tones beating: a ringback, a busy
    tone)."""
    db = frame_db(wave, rate) if db is None else db
    if db.size == 0:
        return False
    sound = db[db > db.max() - SOUND_DB]
    # a click or a burst is too short to be steady or not: "no speech found" says it
    if sound.size < round(100 * MIN_SPEECH_S):
        return False
    if is_steady(sound):
        return True
    slow = frame_db(wave, rate, SLOW_FRAME_S)
    slow = slow[slow > slow.max() - SOUND_DB]
    return (
        slow.size >= round(SLOW_SOUND_S / SLOW_FRAME_S)
        and float(np.percentile(slow, 99) - np.percentile(slow, 10)) < SLOW_STEADY_DB
    )


DC_FRAME = 2048  # samples a frame (43-256 ms): longer than a hum's period or a voice's
DC_QUIET = 25  # the quietest quarter of the frames show a recording's baseline


def without_dc(wave: np.ndarray) -> np.ndarray:
    """The waveform less its DC offset, where it has one: an offset (a cheap sound card's, or
    a careless edit's) is inaudible, but it fills the silences with energy that silence
    trimming and speech detection would take for speech. The offset is where the quietest
    quarter of its frames sit (the median of their means), taken away only where those means
    agree (their median distance from it under a quarter of it) and it stands out of the
    frames' own swing (over twice their spread): otherwise the clip is kept exactly as
    decoded. Neither the mean of every sample (a lopsided voice pulls it off zero, 0.003 in a
    flite clip, which taking it away would put into digital silence) nor the median sample
    (a clip of speech without silence pulls it the other way, 0.004 in a spoken digit), and
    no frame's own slow swing (low-pitched noise, a hum) is taken for an offset."""
    n = wave.shape[0] // DC_FRAME
    if n < 2:
        return wave
    frames = wave[: n * DC_FRAME].reshape(n, DC_FRAME)
    spread = frames.std(axis=1)
    quiet = spread <= np.percentile(spread, DC_QUIET)
    means = frames[quiet].mean(axis=1)
    offset = float(np.median(means))
    if (
        abs(offset) <= 2 * float(np.median(spread[quiet]))
        or float(np.median(np.abs(means - offset))) > abs(offset) / 4
    ):
        return wave
    return (wave - np.float32(offset)).astype(np.float32, copy=False)


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


def check_judgeable(wave: np.ndarray, rate: int, name: str) -> None:
    """``check_not_silent``, and a SilentAudioError too when the clip's sound is only a steady
    one (``only_a_steady_sound``: a tone, a hum, noise). What every command that judges a
    clip (predict, identify, verify, enroll, trace, the server's routes) asks of it, so that
    a tone is "no speech" to each of them alike, not an answer to some and an error to
    others (a review). ``load_audio`` and ``read_audio`` decode it all the same."""
    check_not_silent(wave, rate, name)
    if only_a_steady_sound(wave, rate):
        raise SilentAudioError(f"{name}: no speech in it (a steady sound: a tone, a hum, noise)")


def with_speech(source: AudioSource, result):
    """An embedding's ``result`` for ``source`` (``(embedding, seconds of speech)`` or its
    error), or a SilentAudioError when the encoder kept less than MIN_SPEECH_S of speech: an
    embedding of a burst (a click, a breath, a tenth of a second) scores as nobody, and a
    "reject", an "unknown" or an engine would hide that there was no voice to judge. What
    enroll, verify, identify and trace all ask of a clip."""
    if isinstance(result, tuple) and result[1] < MIN_SPEECH_S:
        return burst_error(describe_source(source), result[1])
    return result


def burst_error(name: str, speech_s: float) -> SilentAudioError:
    """The "no speech found" error of a clip named ``name`` that held ``speech_s`` seconds of
    speech, under MIN_SPEECH_S."""
    return SilentAudioError(
        f"{name}: no speech found ({1000 * speech_s:.0f} ms of speech; "
        f"a voice needs {1000 * MIN_SPEECH_S:.0f} ms)"
    )


def load_audio(source: AudioSource, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode any file or bytes (wav, mp3, flac, ogg; any rate; stereo) for the models.

    Returns float32 mono, shape (n_samples,), at ``sample_rate`` Hz.
    Raises AudioDecodeError or SilentAudioError naming the input.
    """
    if (
        isinstance(sample_rate, bool)
        or not isinstance(sample_rate, int | np.integer)
        or not MIN_RATE <= sample_rate <= MAX_RATE
    ):
        raise AudioDecodeError(
            f"sample_rate {sample_rate!r}: a whole number of Hz, {MIN_RATE} to {MAX_RATE}"
        )
    wave, rate = read_audio(source)
    check_not_silent(wave, rate, describe_source(source))
    return resample(wave, rate, sample_rate)


# the sample rates MPEG-1, 2 and 2.5 layer III can store, Hz
MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)


def encode_audio(wave: np.ndarray, rate: int, fmt: str) -> bytes:
    """Encode a float32 mono waveform as ``fmt`` ("wav", "mp3" or "flac") bytes; an mp3 of a
    rate mp3 cannot store is resampled up to the next one it can."""
    try:
        major, subtype = _WRITE_FORMATS[fmt]
    except KeyError:
        raise ValueError(
            f"unknown audio format {fmt!r}; valid: {', '.join(_WRITE_FORMATS)}"
        ) from None
    if fmt == "mp3" and rate not in MP3_RATES:  # e.g. festival's don_diphone, at 10 kHz
        target = min((r for r in MP3_RATES if r > rate), default=MP3_RATES[-1])
        wave, rate = resample(wave, rate, target), target
    buf = io.BytesIO()
    sf.write(buf, np.clip(wave, -1.0, 1.0), rate, format=major, subtype=subtype)
    return buf.getvalue()

"""The evaluation conditions: how ``evaluate --conditions`` makes a test recording harder.

This suite shares no code with training augmentation (``augment.py``) and uses other tools and
other parameters: rooms simulated by pyroomacoustics (the image method), Vorbis and Opus
encoded by libsndfile at the clip's own rate, mp3 by FFmpeg's LAME (training's mp3 copies are
libsndfile's LAME: another build, other settings, another resampler), time stretching by
librosa's phase vocoder, Butterworth filters from scipy, babble of voices that no model here
trains on. So a robustness figure measures the model on degradations it was not built
against.

Every condition is deterministic: ``make(name, wave, rate, seed)`` gives the same audio for the
same clip and seed (the same bytes, but for the random serial number of an Ogg stream).
Parameters drawn from a range are drawn per clip from the seed. Each condition's definition
(``Condition.definition``) is the one docs/evaluation.md states.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import soxr

from whichvoice.errors import WhichvoiceError

# random espeak-ng variants reserved for babble: no recipe or corpus trains on these numbers
BABBLE_VOICES = tuple(1_000_000 + k for k in range(8))
BABBLE_ACCENTS = (
    "en-us", "en-gb", "en-gb-scotland", "en-029", "en-gb-x-rp", "en-us-nyc", "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
)  # fmt: skip


class ConditionError(WhichvoiceError):
    """An unknown condition, or one that needs a package that is not installed."""


@dataclass(frozen=True)
class Condition:
    name: str
    family: str  # what a target speaks of: clean, rate, level, clipping, room, codec, ...
    definition: str  # one sentence: what is done to the clip
    make: Callable[[np.ndarray, int, np.random.Generator], tuple[np.ndarray, int] | bytes]


@dataclass
class Babble:
    """Speech of voices that no model here trains on, for the babble conditions: float32 mono
    at 16 kHz, one array per voice."""

    voices: list[np.ndarray]
    rate: int = 16_000


_babble: Babble | None = None


def set_babble(babble: Babble | None) -> None:
    """The babble the ``babble*`` conditions mix in (``babble_bank`` by default)."""
    global _babble
    _babble = babble


# ------------------------------------------------------------------------------ the suite


def _wav(wave: np.ndarray, rate: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.clip(wave, -1.0, 1.0), rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _normalized(wave: np.ndarray, peak: float = 0.9) -> np.ndarray:
    top = float(np.abs(wave).max()) if wave.size else 0.0
    return (wave * (peak / top) if top > 0 else wave).astype(np.float32)


def _active_power(wave: np.ndarray, rate: int) -> float:
    """Mean power of the speech (the 50 ms frames within 40 dB of the loudest)."""
    hop = max(1, rate // 20)
    n = wave.shape[0] // hop
    if n == 0:
        return float(np.mean(np.square(wave))) + 1e-12
    frames = np.square(wave[: n * hop].reshape(n, hop)).mean(axis=1)
    active = frames[frames >= frames.max() * 1e-4]
    return float(active.mean()) + 1e-12


def _mix(wave: np.ndarray, rate: int, noise: np.ndarray, snr_db: float) -> np.ndarray:
    gain = np.sqrt(_active_power(wave, rate) / (_active_power(noise, rate) * 10 ** (snr_db / 10)))
    mixed = wave + gain * noise[: wave.shape[0]]
    return _normalized(mixed, min(0.95, float(np.abs(mixed).max()) or 0.95))


def _resampled(target: int, fmt: str = "WAV") -> Callable:
    def make(wave: np.ndarray, rate: int, rng: np.random.Generator) -> bytes:
        y = soxr.resample(wave, rate, target, quality="VHQ")
        buf = io.BytesIO()
        sf.write(buf, np.clip(y, -1, 1), target, format=fmt, subtype="PCM_16")
        return buf.getvalue()

    return make


def _gain(db: float) -> Callable:
    def make(wave: np.ndarray, rate: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
        return _normalized(wave) * np.float32(10 ** (db / 20)), rate

    return make


def _level_ride(wave: np.ndarray, rate: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """The level rides up and down by up to 12 dB each way over a few seconds (a speaker
    moving, an automatic gain control)."""
    t = np.arange(wave.shape[0]) / rate
    period = rng.uniform(1.5, 4.0)
    db = 12.0 * np.sin(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi))
    return _normalized(wave, 0.25) * (10 ** (db / 20)).astype(np.float32), rate


def _clipping(wave: np.ndarray, rate: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """Recorded too loud: scaled so that 1-20 % of the samples pass full scale, then clipped."""
    fraction = rng.uniform(0.01, 0.20)
    level = float(np.quantile(np.abs(wave), 1.0 - fraction)) or 1.0
    return np.clip(wave / level, -1.0, 1.0).astype(np.float32), rate


def _room(wave: np.ndarray, rate: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """A shoebox room by the image method: 3-10 x 2.5-8 x 2.4-4 m, RT60 0.2-1.2 s, the
    microphone 0.5-4 m from the talker."""
    try:
        import pyroomacoustics as pra
    except ImportError as e:
        raise ConditionError(
            "the room conditions need pyroomacoustics: pip install 'whichvoice[eval]'"
        ) from e
    fs = 16_000
    x = soxr.resample(wave, rate, fs, quality="HQ").astype(np.float64)
    dims = np.array([rng.uniform(3, 10), rng.uniform(2.5, 8), rng.uniform(2.4, 4)])
    rt60 = rng.uniform(0.2, 1.2)
    try:
        absorption, max_order = pra.inverse_sabine(rt60, dims)
    except ValueError:  # a room too small for so long a reverberation: the longest it allows
        absorption, max_order = pra.inverse_sabine(0.9 * 0.161 * dims.prod() / (
            2 * (dims[0] * dims[1] + dims[0] * dims[2] + dims[1] * dims[2])), dims)  # fmt: skip
    max_order = min(int(max_order), 60)  # up to ~1.3 s of reflections
    room = pra.ShoeBox(
        dims, fs=fs, materials=pra.Material(absorption), max_order=max_order, use_rand_ism=False
    )
    source = np.array([rng.uniform(0.5, d - 0.5) for d in dims[:2]] + [rng.uniform(1.2, 1.9)])
    for _ in range(100):  # a microphone 0.5-4 m away, inside the room
        direction = rng.normal(size=3)
        direction[2] *= 0.2
        direction /= np.linalg.norm(direction)
        mic = source + rng.uniform(0.5, 4.0) * direction
        if np.all(mic > 0.3) and np.all(mic < dims - 0.3):
            break
    else:
        mic = np.clip(source + np.array([0.5, 0, 0]), 0.3, dims - 0.3)
    room.add_source(source)
    room.add_microphone(mic)
    room.compute_rir()
    from scipy import signal

    wet = signal.fftconvolve(x, np.asarray(room.rir[0][0]))[: x.shape[0] + int(rt60 * fs)]
    return _normalized(wet.astype(np.float32)), fs


def _codec(fmt: str, subtype: str, level: float, rates: Sequence[int]) -> Callable:
    def make(wave: np.ndarray, rate: int, rng: np.random.Generator) -> bytes:
        enc = min(rates, key=lambda r: abs(r - rate)) if rate not in rates else rate
        y = soxr.resample(wave, rate, enc, quality="HQ") if enc != rate else wave
        buf = io.BytesIO()
        kw = {"bitrate_mode": "CONSTANT"} if fmt == "MP3" else {}
        sf.write(buf, np.clip(y, -1, 1), enc, format=fmt, subtype=subtype,
                 compression_level=level, **kw)  # fmt: skip
        return buf.getvalue()

    return make


MP3_RATE = 22_050  # Hz: MPEG-2 layer III


def _mp3(kbps: int) -> Callable:
    """MPEG-2 layer III at 22.05 kHz and ``kbps`` kbit/s CBR: FFmpeg's LAME (PyAV) with its
    settings, resampled by FFmpeg's swresample. Training's mp3 copies are libsndfile's LAME,
    resampled by soxr: made by libsndfile, this condition gave audio identical to a training
    copy (review). LAME is the only mp3 encoder offline: the difference is the build, its
    settings (fed the same samples, the two differ by up to 0.19 of full scale) and the
    resampler; tests/test_conditions.py checks that no training copy matches."""

    def make(wave: np.ndarray, rate: int, rng: np.random.Generator) -> bytes:
        import av

        buf = io.BytesIO()
        with av.open(buf, "w", format="mp3") as container:
            stream = container.add_stream("libmp3lame", rate=MP3_RATE, layout="mono")
            stream.bit_rate = kbps * 1000
            frame = av.AudioFrame.from_ndarray(
                np.clip(wave, -1, 1).astype(np.float32)[None, :], format="flt", layout="mono"
            )
            frame.sample_rate = rate
            to_encoder = av.AudioResampler(
                format=stream.codec_context.format.name, layout="mono", rate=MP3_RATE
            )
            for resampled in [*to_encoder.resample(frame), *to_encoder.resample(None)]:
                container.mux(stream.encode(resampled))
            container.mux(stream.encode(None))
        return buf.getvalue()

    return make


def _speed(factor: float) -> Callable:
    def make(wave: np.ndarray, rate: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
        # played ``factor`` times as fast: shorter and higher
        return soxr.resample(wave, rate, rate / factor, quality="VHQ").astype(np.float32), rate

    return make


def _tempo(factor: float) -> Callable:
    def make(wave: np.ndarray, rate: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
        try:
            import librosa
        except ImportError as e:
            raise ConditionError(
                "the tempo conditions need librosa: pip install 'whichvoice[eval]'"
            ) from e
        return librosa.effects.time_stretch(wave, rate=factor).astype(np.float32), rate

    return make


def _silence(wave: np.ndarray, rate: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """1-5 s of room tone (noise at -70 dBFS) before and after the speech."""
    lead, trail = (int(rng.uniform(1.0, 5.0) * rate) for _ in range(2))
    floor = rng.normal(0, 10 ** (-70 / 20), lead + wave.shape[0] + trail).astype(np.float32)
    floor[lead : lead + wave.shape[0]] += wave
    return floor, rate


def _band(wave: np.ndarray, rate: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """A band-limited channel: high-pass at 150-400 Hz, low-pass at 2.5-5 kHz (4th-order
    Butterworth each)."""
    from scipy import signal

    low, high = rng.uniform(150, 400), min(rng.uniform(2500, 5000), 0.45 * rate)
    sos = signal.butter(4, [low, high], btype="bandpass", fs=rate, output="sos")
    return _normalized(signal.sosfilt(sos, wave).astype(np.float32)), rate


def _phone(wave: np.ndarray, rate: int, rng: np.random.Generator) -> bytes:
    """A telephone call: 300-3400 Hz, 8 kHz, G.711 mu-law."""
    from scipy import signal

    y = soxr.resample(wave, rate, 8000, quality="HQ")
    sos = signal.butter(6, [300, 3400], btype="bandpass", fs=8000, output="sos")
    y = _normalized(signal.sosfilt(sos, y).astype(np.float32), 0.7)
    buf = io.BytesIO()
    sf.write(buf, y, 8000, format="WAV", subtype="ULAW")
    return buf.getvalue()


def _noise(snr_db: float) -> Callable:
    def make(wave: np.ndarray, rate: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
        # white, pink or brown noise: white shaped in the frequency domain by f^0, f^-1/2, f^-1
        colour = rng.choice([0.0, 0.5, 1.0])
        n = wave.shape[0]
        spectrum = np.fft.rfft(rng.normal(size=n))
        f = np.fft.rfftfreq(n, 1 / rate)
        spectrum[1:] /= f[1:] ** colour
        spectrum[0] = 0
        return _mix(wave, rate, np.fft.irfft(spectrum, n).astype(np.float32), snr_db), rate

    return make


def _babble_of(snr_db: float) -> Callable:
    def make(wave: np.ndarray, rate: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
        bank = _babble if _babble is not None else babble_bank()
        talkers = rng.choice(len(bank.voices), size=min(len(bank.voices), rng.integers(3, 7)),
                             replace=False)  # fmt: skip
        n = wave.shape[0]
        noise = np.zeros(n, np.float32)
        for t in talkers:
            v = soxr.resample(bank.voices[t], bank.rate, rate, quality="HQ")
            v = np.tile(v, int(np.ceil((n + rate) / max(v.shape[0], 1))))
            start = int(rng.integers(0, max(1, v.shape[0] - n)))
            part = v[start : start + n]
            noise += part / np.sqrt(_active_power(part, rate))
        return _mix(wave, rate, noise, snr_db), rate

    return make


def _short(wave: np.ndarray, rate: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """1 s from the middle of the speech (the clip with its silent ends cut)."""
    hop = max(1, rate // 100)
    n = wave.shape[0] // hop
    frames = np.square(wave[: n * hop].reshape(n, hop)).mean(axis=1) if n else np.ones(1)
    loud = np.flatnonzero(frames >= frames.max() * 1e-3)
    speech = wave[loud[0] * hop : (loud[-1] + 1) * hop] if loud.size else wave
    mid = speech.shape[0] // 2
    return speech[max(0, mid - rate // 2) : mid + rate // 2], rate


# fmt: off
SUITE: tuple[Condition, ...] = (
    Condition("clean", "clean", "The clip as it is (16-bit WAV at its own rate).",
              lambda w, r, g: (w, r)),
    Condition("wav8k", "rate", "Resampled to 8 kHz (soxr, very high quality), 16-bit WAV.",
              _resampled(8000)),
    Condition("wav22k", "rate", "Resampled to 22.05 kHz, 16-bit WAV.", _resampled(22_050)),
    Condition("wav44k", "rate", "Resampled to 44.1 kHz, 16-bit WAV.", _resampled(44_100)),
    Condition("flac48k", "rate", "Resampled to 48 kHz, 16-bit FLAC.", _resampled(48_000, "FLAC")),
    Condition("quiet", "level", "Peak 40 dB under 0.9 of full scale, -40.9 dBFS (a distant, "
              "quiet recording).", _gain(-40)),
    Condition("level-ride", "level",
              "The level rides up and down by up to 12 dB each way (a swing of 24 dB) with a "
              "period of 1.5-4 s.", _level_ride),
    Condition("clipping", "clipping",
              "Recorded too loud: scaled so that 1-20 % of the samples (uniform per clip) pass "
              "full scale, then hard-clipped.", _clipping),
    Condition("room", "room",
              "A shoebox room by the image method (pyroomacoustics): 3-10 x 2.5-8 x 2.4-4 m, "
              "RT60 0.2-1.2 s, the microphone 0.5-4 m from the talker; at 16 kHz.", _room),
    Condition("mp3-16k", "codec", "MP3 (MPEG-2 layer III, 22.05 kHz) at 16 kbit/s CBR, "
              "FFmpeg's LAME.", _mp3(16)),
    Condition("mp3-24k", "codec", "MP3 (MPEG-2 layer III, 22.05 kHz) at 24 kbit/s CBR, "
              "FFmpeg's LAME.", _mp3(24)),
    Condition("mp3-32k", "codec", "MP3 (MPEG-2 layer III, 22.05 kHz) at 32 kbit/s CBR, "
              "FFmpeg's LAME.", _mp3(32)),
    Condition("vorbis", "codec", "Ogg Vorbis at libsndfile's compression level 0.9 (low "
              "quality), at the clip's own rate.", _codec("OGG", "VORBIS", 0.9, (8000, 11025,
              16000, 22050, 24000, 32000, 44100, 48000))),
    Condition("opus", "codec", "Ogg Opus at compression level 0.9 (low bitrate), at the "
              "nearest Opus rate (8-48 kHz).", _codec("OGG", "OPUS", 0.9,
              (8000, 12000, 16000, 24000, 48000))),
    Condition("speed-10", "speed", "Played 10 % slower (resampled: lower and longer).",
              _speed(0.9)),
    Condition("speed+10", "speed", "Played 10 % faster (resampled: higher and shorter).",
              _speed(1.1)),
    Condition("tempo-10", "speed", "10 % slower, pitch kept (librosa's phase vocoder).",
              _tempo(0.9)),
    Condition("tempo+10", "speed", "10 % faster, pitch kept (librosa's phase vocoder).",
              _tempo(1.1)),
    Condition("silence", "silence",
              "1-5 s of room tone (noise at -70 dBFS) before and after the speech.", _silence),
    Condition("band", "band", "High-pass at 150-400 Hz and low-pass at 2.5-5 kHz "
              "(a Butterworth band-pass of order 4 each side, 8 in all), per clip.", _band),
    Condition("phone", "band", "A telephone call: 300-3400 Hz (a Butterworth band-pass of order 6 "
              "each side, 12 in all), 8 kHz, "
              "G.711 mu-law WAV.", _phone),
    Condition("noise10", "noise", "White, pink or brown noise (per clip) at 10 dB SNR to the "
              "speech's active power.", _noise(10)),
    Condition("noise0", "noise", "White, pink or brown noise at 0 dB SNR.", _noise(0)),
    Condition("babble10", "babble", "3-6 talkers at once (voices no model here trains on, "
              "reading the last 4 bundled sentences) at 10 dB SNR.", _babble_of(10)),
    Condition("babble0", "babble", "3-6 talkers at once at 0 dB SNR.", _babble_of(0)),
    Condition("short1s", "length", "1 s from the middle of the speech.", _short),
    Condition("long", "length", "20 s of one voice: up to 6 of its clips joined with 0.3 s "
              "pauses, again from the first until 20 s are filled (made by evaluate).",
              lambda w, r, g: (w, r)),
)
# fmt: on
CONDITIONS = tuple(c.name for c in SUITE)
BY_NAME = {c.name: c for c in SUITE}


# the packages a condition needs beyond the core ones (all in the `eval` extra)
NEEDS = {"room": ("pyroomacoustics", "scipy"), "tempo-10": ("librosa",),
         "tempo+10": ("librosa",), "band": ("scipy",), "phone": ("scipy",)}  # fmt: skip


def check_conditions(names: Sequence[str]) -> list[str]:
    """``names`` if every one is a condition whose packages are installed; ConditionError
    naming the unknown ones, or the packages missing (before any work: a missing scipy was a
    traceback once the clips were made)."""
    from importlib.util import find_spec

    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        raise ConditionError(
            f"unknown condition {', '.join(unknown)}; valid: {', '.join(CONDITIONS)}"
        )
    missing = {m: None for n in names for m in NEEDS.get(n, ()) if find_spec(m) is None}
    if missing:
        which = [n for n in names if set(NEEDS.get(n, ())) & set(missing)]
        raise ConditionError(
            f"the {', '.join(which)} condition{'s' * (len(which) > 1)} need "
            f"{', '.join(missing)}: pip install 'whichvoice[eval]'"
        )
    return list(names)


FAMILIES = {f: tuple(c.name for c in SUITE if c.family == f) for f in dict.fromkeys(
    c.family for c in SUITE)}  # fmt: skip


def expand_conditions(names: Sequence[str]) -> list[str]:
    """``names`` with each family (``noise``, ``codec``, ...) as its conditions, in the
    suite's order, once each; a name that is both (``band``, ``room``) is the condition.
    ConditionError naming the unknown ones."""
    unknown = [n for n in names if n not in BY_NAME and n not in FAMILIES]
    if unknown:
        families = ", ".join(f for f in FAMILIES if f not in BY_NAME)
        raise ConditionError(
            f"unknown condition {', '.join(unknown)}; valid: {', '.join(CONDITIONS)}, or a "
            f"family of them: {families}"
        )
    wanted = {m for n in names for m in ((n,) if n in BY_NAME else FAMILIES[n])}
    return [c for c in CONDITIONS if c in wanted]


def make(name: str, wave: np.ndarray, rate: int, seed: int) -> bytes:
    """The clip (float32 mono at ``rate``) under condition ``name``, as encoded bytes as a user's
    recording would arrive. Deterministic for a given ``seed``. ``long`` joins clips: see
    ``long_recording``."""
    check_conditions([name])
    rng = np.random.default_rng([seed, CONDITIONS.index(name)])
    out = BY_NAME[name].make(np.asarray(wave, np.float32), rate, rng)
    return out if isinstance(out, bytes) else _wav(*out)


def long_recording(waves: list[tuple[np.ndarray, int]], seconds: float = 20.0) -> bytes:
    """Clips of one voice joined with 0.3 s pauses into about ``seconds`` of audio, at the rate
    of the first."""
    rate = waves[0][1]
    pause = np.zeros(int(0.3 * rate), np.float32)
    parts, total, target = [], 0, int(seconds * rate)
    while total < target:
        for wave, r in waves:
            w = wave if r == rate else soxr.resample(wave, r, rate, quality="HQ")
            parts += [w.astype(np.float32), pause]
            total += w.shape[0] + pause.shape[0]
            if total >= target:
                break
    return _wav(np.concatenate(parts)[:target], rate)


def babble_bank(sentences: int = 4) -> Babble:
    """Speech of the reserved babble voices (espeak-ng random variants ``BABBLE_VOICES``),
    synthesized once and kept in whichvoice's cache."""
    from whichvoice.files import cache_home, write_atomic
    from whichvoice.sentences import bundled_sentences
    from whichvoice.voices import SessionPool, resolve_voices

    path = cache_home() / "babble" / f"v1-{len(BABBLE_VOICES)}x{sentences}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as saved:
            return Babble([saved[k] for k in sorted(saved.files, key=int)])
    # the last bundled sentences: far from the first ones that small corpora read
    texts = [s.text for s in bundled_sentences()[-sentences:]]
    ids = [f"espeak-ng:{a}+rand{k}" for a, k in zip(BABBLE_ACCENTS, BABBLE_VOICES, strict=True)]
    voices = []
    pool = SessionPool()
    try:
        for voice in resolve_voices(ids):
            parts = []
            for text in texts:
                speech = pool.get(voice.engine).synthesize(voice, text)
                parts.append(soxr.resample(speech.wave, speech.sample_rate, 16_000))
            voices.append(np.concatenate(parts).astype(np.float32))
    finally:
        pool.close()
    buf = io.BytesIO()
    np.savez(buf, **{str(i): v for i, v in enumerate(voices)})
    write_atomic(path, buf.getvalue())
    return Babble(voices)

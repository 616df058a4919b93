"""Who speaks when: ``diarize(source, encoder)`` splits a recording into voices and names the
enrolled ones.

The steps, each replaceable by its setting (``DiarizeConfig``):
1. **Speech**: the project's own energy detector (10 ms frames above a level set from the
   recording's own noise floor and peak; short gaps bridged, short bursts dropped), or
   silero-vad (``vad="silero"``, its ONNX weights ship in its wheel; slower, steadier in noise).
2. **Embeddings**: windows of ``window_s`` every ``hop_s`` inside the speech (chosen per
   encoder on dev conversations, else ``DEFAULT_WINDOW``), each embedded by the encoder (the
   default ``auto``, or any ``--model``).
3. **Clustering**: agglomerative (scikit-learn, cosine distance, average linkage) with a
   distance threshold, which also finds the number of voices; with ``num_speakers`` exactly
   that many, and the found number kept within ``min_speakers``..``max_speakers``. The
   threshold is calibrated per encoder on dev conversations (``benchmarks/diarize.py
   --write``, shipped in ``data/diarize``); an encoder without one uses its verification
   threshold. A cluster under ``min_cluster_s`` of windows joins the nearest bigger one,
   unless it is further than ``keep_far`` from all of them or holds every window of a
   speech region of ``keep_region_s`` or more (a voice heard once, between two pauses); a
   cluster under twice that size near the mean of two others (``mixture_above``) is their
   overlap and joins the nearest: dev choices per encoder. Long recordings: at most
   ``MAX_CLUSTERED`` windows are clustered (evenly spaced), the others join the nearest
   cluster, so memory stays bounded. Then clusters whose own speech (step 6's embeddings:
   one pass over the recording serves both) is closer than ``merge_speech`` are merged (a
   dev choice per encoder, ``merge_by_speech``).
4. **Boundaries**: every ``FRAME_S`` frame of speech takes the voice whose centroid its
   covering windows are most like (averaged over them), then runs shorter than
   ``min_turn_s`` are merged into their neighbours: turns change at a frame, not at a window.
5. **Overlap** (``overlap=True``): a stretch where the covering windows stay as close to a
   second voice as to the first for at least ``min_overlap_s`` is marked overlapped and given
   both voices.
6. **Names**: each cluster's own speech (its longest runs without another voice, edges
   trimmed, up to ``naming_speech_s`` seconds) is read again and embedded as one recording,
   as verification embeds a clip; a cluster whose embedding reaches an enrolled voice's
   naming threshold takes its name (each enrolled voice names one cluster at most: the
   closest); the others are ``unknown-1``, ``unknown-2``, ... in order of first speech.
   Or (``naming_speech_s=0``) the mean of the cluster's window embeddings is scored, the only
   way before stop 44: which way, and the threshold, are chosen per encoder on dev
   conversations (``benchmarks/diarize.py``; ``data/diarize``'s "naming_speech_s").

Outputs: RTTM (``Diarization.to_rttm``, the NIST format pyannote and dscore read) and JSON
segments ``{start, end, speaker, score, overlap}``. Audio is read in blocks of ``BLOCK_S``
(soundfile formats; others are decoded whole), so a long file's memory is its embeddings.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import numbers
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from whichvoice import silero
from whichvoice.audio import (
    MIN_SPEECH_S,
    SAMPLE_RATE,
    SILENCE_PEAK,
    AudioSource,
    Decoded,
    Mixer,
    check_channel,
    check_finite,
    check_rate,
    describe_source,
    frame_db,
    is_stdin,
    is_steady,
    only_a_steady_sound,
    read_audio,
    read_pipe,
    soundfile_target,
    split_channel,
    warn_if_cut_off,
    without_dc,
    without_spikes,
)
from whichvoice.audio import resample as resample_wave
from whichvoice.errors import AudioDecodeError, WhichvoiceError
from whichvoice.prototypes import voice_refs
from whichvoice.runtime import unit

if TYPE_CHECKING:  # for the hints only (encoders and gallery sit above this module)
    from whichvoice.encoders import Encoder
    from whichvoice.gallery import Gallery

log = logging.getLogger(__name__)

FRAME_S = 0.1  # the resolution of turns
BLOCK_S = 120.0  # audio read at a time
MAX_CLUSTERED = 3000  # windows clustered at most (the rest join the nearest cluster)
UNKNOWN_PREFIX = "unknown-"
THRESHOLDS = "thresholds.json"  # in data/diarize: encoder id -> clustering distance threshold
# in data/diarize, beside it: live mode's window thresholds by seconds of speech
# ("accept_by_speech": encoder id -> pairs), written by ``benchmarks/live.py --split dev --write``
LIVE_SPEECH = "live-speech.json"
VADS = ("energy", "silero")
DEFAULT_MIN_CLUSTER_S = 2.0
DEFAULT_WINDOW = (1.5, 0.75)  # (window_s, hop_s) of an encoder without a dev choice
NAMING_SPEECH_S = 30.0  # s of a cluster's own speech embedded again to name it


class DiarizeError(WhichvoiceError):
    """A recording or setting diarization cannot work with."""


class DiarizeUnavailableError(DiarizeError):
    """A package diarization needs is not installed (the ``diarize`` extra)."""


def check_installed(cfg: DiarizeConfig | None = None) -> None:
    """DiarizeUnavailableError, before any work, when a package diarization (or ``cfg``'s
    ``--vad``) needs is missing: it was a traceback from the clustering, once the recording
    had been embedded (a review of a plain ``pip install whichvoice``)."""
    import importlib.util

    if importlib.util.find_spec("sklearn") is None:
        raise DiarizeUnavailableError(
            "diarize needs scikit-learn: pip install 'whichvoice[diarize]'"
        )
    if cfg is not None and cfg.vad == "silero" and importlib.util.find_spec("silero_vad") is None:
        raise DiarizeUnavailableError(
            "--vad silero needs silero-vad: pip install 'whichvoice[diarize]'"
        )


@dataclass(frozen=True)
class DiarizeConfig:
    """How ``diarize`` works; every field None takes the encoder's choice made on dev
    conversations (``shipped_settings``). ``check()`` refuses settings that cannot work
    (DiarizeError), and ``diarize`` calls it."""

    # the embedding windows: ``window_s`` seconds every ``hop_s``; None (both): the encoder's
    # dev choice (``shipped_settings``), else DEFAULT_WINDOW
    window_s: float | None = None
    hop_s: float | None = None
    threshold: float | None = None  # clustering distance (1 - cosine); None: calibrated
    num_speakers: int | None = None
    min_speakers: int = 1
    max_speakers: int | None = None
    vad: str = "energy"
    min_speech_s: float = MIN_SPEECH_S  # shorter bursts are not speech
    min_gap_s: float = 0.3  # shorter pauses do not split speech
    min_turn_s: float = 0.5  # shorter runs of one voice join their neighbours
    # clusters of fewer windows' worth of hops join the nearest; None: the encoder's dev
    # choice (``shipped_settings``), else 2 s
    min_cluster_s: float | None = None
    # a cluster must also hold this share of all the windows (only a long recording's
    # clusters are affected: 0.5 % of a few hundred windows is under one); chosen on a dev
    # recording of an hour (docs/diarization.md)
    min_cluster_share: float = 0.005
    # a cluster under min_cluster_s is kept as a voice when its centre is further than this
    # (cosine distance) from every bigger cluster's; None: always absorbed
    keep_far: float | None = None
    # a cluster under min_cluster_s is also kept as a voice when it holds every window of a
    # speech region at least this long (a voice heard once, in a turn between two pauses:
    # a stray window of a breath, a noise or two voices at once is not alone in a whole
    # region; not in a long recording, where ``min_cluster_share`` raised the smallest size);
    # 0: never; None: the encoder's dev choice (``shipped_settings``) when ``min_cluster_s``
    # is None too, else 0
    keep_region_s: float | None = None
    # a cluster of under twice min_cluster_s of windows whose centre is at least this cosine
    # from the mean of two other clusters' centres, and nearer to it than to either, is where
    # those two voices overlap (its windows hold both): its windows join the nearest other
    # cluster; 0: never; None: the encoder's dev choice with ``min_cluster_s``, else 0
    mixture_above: float | None = None
    overlap: bool | None = None  # None: the encoder's dev choice (``shipped_settings``)
    min_overlap_s: float = 0.5
    # naming: each cluster's own speech (up to this many seconds, its longest runs alone)
    # embedded again as one recording, as verification embeds a clip, and that embedding
    # scored against the gallery; 0: the mean of the cluster's window embeddings (the only
    # way before stop 44); None: the encoder's dev choice (``shipped_settings``), else
    # NAMING_SPEECH_S
    naming_speech_s: float | None = None
    # clusters whose own speech (their runs alone, up to NAMING_SPEECH_S, embedded as one
    # recording: the embeddings that name them) is closer than this cosine are one voice;
    # 0: never merged; None: the encoder's dev choice (``shipped_settings``), else 0
    merge_speech: float | None = None

    def check(self) -> DiarizeConfig:
        for setting in ("window_s", "hop_s", "merge_speech", "naming_speech_s", "threshold",
                        "keep_region_s", "mixture_above", "min_cluster_s", "keep_far",
                        "min_speech_s", "min_gap_s", "min_turn_s", "min_overlap_s",
                        "min_cluster_share"):  # fmt: skip
            value = getattr(self, setting)
            optional = setting not in ("min_speech_s", "min_gap_s", "min_turn_s",
                                       "min_overlap_s", "min_cluster_share")  # fmt: skip
            if (value is not None or not optional) and (
                isinstance(value, bool)
                or not isinstance(value, numbers.Real)
                or not math.isfinite(value)
            ):
                raise DiarizeError(f"{setting} {value!r}: a finite number")
        for setting, top in (("min_speech_s", 60), ("min_gap_s", 60), ("min_turn_s", 60),
                             ("min_overlap_s", 60), ("min_cluster_s", 3600),
                             ("min_cluster_share", 1), ("keep_far", 2)):  # fmt: skip
            value = getattr(self, setting)
            if value is not None and not 0 <= value <= top:
                raise DiarizeError(f"{setting} {value}: 0 to {top}")
        if self.overlap is not None and not isinstance(self.overlap, bool):
            raise DiarizeError(f"overlap {self.overlap!r}: True, False or None")
        if self.num_speakers is not None and (
            self.min_speakers != 1 or self.max_speakers is not None
        ):
            raise DiarizeError("num speakers goes without min speakers and max speakers")
        if self.vad not in VADS:
            raise DiarizeError(f"unknown speech detector {self.vad!r}; valid: {', '.join(VADS)}")
        if (self.window_s is None) != (self.hop_s is None):
            raise DiarizeError("a window and a hop go together: give both or neither")
        if self.window_s is not None and not 0.3 <= self.window_s <= 10:
            raise DiarizeError(f"window {self.window_s} s: between 0.3 and 10 seconds")
        if self.hop_s is not None and not 0.05 <= self.hop_s <= self.window_s:
            raise DiarizeError(f"hop {self.hop_s} s: between 0.05 s and the window")
        for setting in ("num_speakers", "min_speakers", "max_speakers"):
            value = getattr(self, setting)
            if value is None and setting != "min_speakers":
                continue
            what = setting.replace("_", " ")  # the CLI's --num-speakers, ...
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise DiarizeError(f"{what} {value!r}: a whole number")
            if value < 1:
                raise DiarizeError(f"{what} {value}: at least 1")
        if self.max_speakers is not None and self.max_speakers < self.min_speakers:
            raise DiarizeError(
                f"max speakers {self.max_speakers} is under min speakers {self.min_speakers}"
            )
        if self.merge_speech is not None and not 0 <= self.merge_speech <= 1:
            raise DiarizeError(f"merging at a cosine of {self.merge_speech}: 0 (never) to 1")
        if self.naming_speech_s is not None and not 0 <= self.naming_speech_s <= 600:
            raise DiarizeError(f"naming from {self.naming_speech_s} s of speech: 0 to 600")
        if self.keep_region_s is not None and not 0 <= self.keep_region_s <= 60:
            raise DiarizeError(
                f"keeping clusters that hold a region of {self.keep_region_s} s: 0 (never) to 60"
            )
        if self.mixture_above is not None and not 0 <= self.mixture_above <= 1:
            raise DiarizeError(f"mixtures above a cosine of {self.mixture_above}: 0 (never) to 1")
        if self.threshold is not None and not 0 < self.threshold < 2:
            raise DiarizeError(f"threshold {self.threshold}: a cosine distance, in (0, 2)")
        return self


@dataclass(frozen=True)
class Segment:
    """One turn: ``speaker`` from ``start`` to ``end`` seconds. ``score``: the cosine of the
    turn's voice to the enrolled voice it is named after, else to its own cluster's centroid;
    ``overlap``: another voice speaks at the same time (it has its own segment)."""

    start: float
    end: float
    speaker: str
    score: float
    overlap: bool = False

    def __post_init__(self) -> None:  # plain floats, whatever numpy type computed them
        for name in ("start", "end", "score"):
            object.__setattr__(self, name, float(getattr(self, name)))
        object.__setattr__(self, "overlap", bool(self.overlap))

    def to_dict(self) -> dict:
        return {
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "speaker": self.speaker,
            "score": round(self.score, 4),
            "overlap": self.overlap,
        }


@dataclass
class Diarization:
    """A recording's turns, its voices and how they were found."""

    path: str
    duration_s: float
    segments: list[Segment]
    speakers: dict[str, dict]  # name -> {"enrolled", "score", "speech_s", "nearest"}
    settings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "duration_s": round(self.duration_s, 3),
            # scores to 6 places, as verify's, identify's and trace's (a review)
            "speakers": {
                name: {
                    k: round(v, 6) if k == "score" and isinstance(v, float) else v
                    for k, v in info.items()
                }
                for name, info in self.speakers.items()
            },
            "segments": [s.to_dict() for s in self.segments],
            "settings": self.settings,
        }

    def to_rttm(self, uri: str | None = None, labels: dict[str, str] | None = None) -> str:
        """RTTM lines: ``SPEAKER uri 1 start duration <NA> <NA> speaker <NA> <NA>``. Every field
        is one a reader takes as it is (``rttm_field``), and two voices never share a label:
        a name that is already a field keeps it, one that becomes another's once made safe
        gets a number (``Mary Ann`` -> ``Mary_Ann-2`` beside a ``Mary_Ann``). ``labels``: the
        speakers' labels, for several recordings in one file (``write_rttm``)."""
        uri = rttm_field(uri or Path(self.path).stem or "audio")
        if labels is None:
            labels = speaker_labels([self])
        return "".join(
            f"SPEAKER {uri} 1 {s.start:.3f} {s.end - s.start:.3f} <NA> <NA> "
            f"{labels[s.speaker]} <NA> <NA>\n"
            for s in self.segments
        )


# what pandas reads as a missing value (its default na_values, which pyannote's RTTM loader
# keeps): a recording or voice of that name was dropped or merged when read back (a review)
_READ_AS_MISSING = frozenset(
    ("#N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A",
     "NA", "NULL", "NaN", "None", "n/a", "nan", "null")
)  # fmt: skip


def rttm_field(text: str) -> str:
    """``text`` as one RTTM field that readers take as it is: white space, unprintable
    characters and ``"`` (a quote to pandas, which pyannote reads RTTM with) as ``_``; a
    spelling of "missing" (``NA``, ``None``, ``nan``...) gets a ``_`` after it."""
    safe = "".join("_" if c.isspace() or not c.isprintable() or c == '"' else c for c in text)
    safe = safe or "_"
    return safe + "_" if safe in _READ_AS_MISSING else safe


def unique_fields(names: list[str]) -> list[str]:
    """Each of ``names`` (each a different thing, even where two names are equal) as an RTTM
    field, no two the same. A name that is a field as it is keeps it (its first holder, in
    order); a field already given gets the first free number (``x-2``), never one that
    another name makes as it is."""
    fields = [rttm_field(n) for n in names]
    claimed = set(fields)
    taken: set[str] = set()
    out: list[str | None] = [None] * len(names)
    for i, (n, f) in enumerate(zip(names, fields, strict=True)):  # the unchanged first
        if f == n and f not in taken:
            out[i] = f
            taken.add(f)
    for i, f in enumerate(fields):
        if out[i] is not None:
            continue
        if f in taken:
            k = 2
            while f"{f}-{k}" in taken or f"{f}-{k}" in claimed:
                k += 1
            f = f"{f}-{k}"
        taken.add(f)
        out[i] = f
    return [str(f) for f in out]


def speaker_labels(results: Sequence[Diarization]) -> dict[str, str]:
    """Each name's RTTM label, one for all of ``results``: ``unique_fields`` of their names.
    An enrolled voice is the same voice in every recording, so its label is too; a
    stranger's name (``unknown-1``) is its recording's own, as the JSON names it (the
    ``unknown-1`` of two recordings are two voices, as RTTM scoring reads them per file)."""
    names = list(dict.fromkeys(s.speaker for r in results for s in r.segments))
    return dict(zip(names, unique_fields(names), strict=True))


def rttm_uris(paths: Sequence[str | os.PathLike]) -> list[str]:
    """Each input's RTTM recording id (uri), in order: its file's stem made a field, with a
    number where two would share one (``unique_fields``); what ``write_rttm`` uses."""
    return unique_fields([Path(str(p)).stem or "audio" for p in paths])


# ---------------------------------------------------------------------------------------------
# 1. speech


def energy_speech(wave: np.ndarray, cfg: DiarizeConfig) -> list[tuple[float, float]]:
    """Speech regions (start, end) in seconds of a 16 kHz wave: 10 ms frames louder than a
    level between the noise floor (10th percentile of the frames' dB) and the peak (99th)."""
    db = frame_db(wave)
    if db.size < 3:
        return []
    floor, peak = np.percentile(db, 10), np.percentile(db, 99)
    # silence by the project's one limit (-80 dBFS: a quiet recording is still speech, as
    # enroll, verify and identify hear it); a steady sound
    if peak < 20 * np.log10(SILENCE_PEAK) or is_steady(db):
        return []
    # a third of the way from the floor to the peak, at least 6 dB over the floor and no more
    # than 40 dB under the peak: quiet syllables stay in, noise between words stays out
    level = min(max(floor + (peak - floor) / 3, floor + 6), peak - 6)
    level = max(level, peak - 40)
    active = db > level
    return [(a, b) for a, b in _regions(active, 0.01, cfg) if not _a_tone(wave, db, active, a, b)]


TONE_JUDGED_S = 0.5  # s of sound at least in a region that is judged a tone or not


def _a_tone(wave: np.ndarray, db: np.ndarray, active: np.ndarray, a: float, b: float) -> bool:
    """Whether the region from ``a`` to ``b`` s holds a steady sound only, not speech: its
    frames above the level are steady (tone bursts with gaps between them: a phone's keys),
    or its sound is (``only_a_steady_sound``: also two tones beating, a ringback). A
    recording of speech between tones kept them as voices (a review: each a voice of its own,
    and a call's ringback and keys two more callers)."""
    i, j = round(a / 0.01), round(b / 0.01)
    loud = db[i:j][active[i:j]]
    # too short to tell: kept or dropped as speech (a syllable in noise at 5 dB, 0.2-0.3 s
    # of frames all loud, was taken for a tone: a review)
    if loud.size < round(TONE_JUDGED_S / 0.01):
        return False
    hop = SAMPLE_RATE // 100
    return is_steady(loud) or only_a_steady_sound(wave[i * hop : j * hop], db=db[i:j])


def silero_speech(wave: np.ndarray, cfg: DiarizeConfig) -> list[tuple[float, float]]:
    """Speech regions by silero-vad (its ONNX model, in its wheel)."""
    stamps = silero.speech_stamps(
        wave,
        min_speech_duration_ms=int(cfg.min_speech_s * 1000),
        min_silence_duration_ms=int(cfg.min_gap_s * 1000),
    )
    if stamps is None:
        raise DiarizeError("--vad silero needs silero-vad: `pip install 'whichvoice[diarize]'`")
    return [(s["start"] / SAMPLE_RATE, s["end"] / SAMPLE_RATE) for s in stamps]


def _regions(active: np.ndarray, step: float, cfg: DiarizeConfig) -> list[tuple[float, float]]:
    """Runs of ``active`` frames (``step`` seconds each) as (start, end): gaps shorter than
    ``min_gap_s`` bridged, then runs shorter than ``min_speech_s`` dropped."""
    edges = np.flatnonzero(np.diff(np.r_[0, active.astype(np.int8), 0]))
    runs = [[a * step, b * step] for a, b in zip(edges[::2], edges[1::2], strict=True)]
    merged: list[list[float]] = []
    for run in runs:
        if merged and run[0] - merged[-1][1] < cfg.min_gap_s:
            merged[-1][1] = run[1]
        else:
            merged.append(run)
    return [(a, b) for a, b in merged if b - a >= cfg.min_speech_s]


# ---------------------------------------------------------------------------------------------
# 2. windows and their embeddings


def _blocks(source: AudioSource) -> Iterator[tuple[np.ndarray, float, float]]:
    """(16 kHz mono block, its start in seconds, the file's duration) for the recording, in
    blocks of ``BLOCK_S`` where soundfile can read the file in pieces, else in one."""
    import soundfile as sf

    path, channel = split_channel(source)
    if isinstance(path, (str, os.PathLike)):
        name = describe_source(source)
        with soundfile_target(path) as target:
            try:
                info = sf.info(target)
            except (RuntimeError, sf.LibsndfileError, OSError, ValueError):
                info = None
            if info is not None and info.frames > 0 and info.samplerate > 0:
                check_rate(info.samplerate, name)  # as read_audio does
                check_channel(channel, info.channels, name)
                if info.format == "WAV":  # as read_audio does
                    warn_if_cut_off(path, name)
                if hasattr(target, "seek"):
                    target.seek(0)
                pieces = _pieces(name, target, info, channel)
                try:  # a file whose first block cannot be read is read whole, below
                    first = next(pieces, None)
                except _Unreadable:
                    first = None
                if first is not None:
                    yield first
                    yield from pieces
                    return
    # read_audio's own ways round damage (FFmpeg, where libsndfile gives up) and errors
    wave, rate = read_audio(source)
    yield resample_wave(wave, rate, SAMPLE_RATE), 0.0, wave.shape[0] / rate


class _Unreadable(AudioDecodeError):
    """A file soundfile cannot open or read from its start (``_blocks`` then reads it whole
    with ``read_audio``, whose other decoders may)."""


def _pieces(
    name: str, target: object, info, channel: int | None
) -> Iterator[tuple[np.ndarray, float, float]]:
    """``_blocks`` of a file soundfile reads in pieces (``info``: its header; ``channel``
    alone, or the channels mixed). The audio ends
    where decoding does: a cut-off mp3's header still counts the frames it lost (the last
    block then says the duration really read); ``soundfile.blocks`` handed its last buffer
    out again for each of them, so speech that was not there was diarized."""
    import soundfile as sf

    rate = info.samplerate
    block = int(BLOCK_S * rate)
    at = 0

    def read(f, start: int) -> np.ndarray:
        try:
            return f.read(block, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError, ValueError, EOFError) as e:
            if not start:  # nothing read: _blocks reads the file whole, another way
                raise _Unreadable(f"{name}: cannot be decoded ({e})") from e
            # a file cut off or damaged past here (libFLAC cannot resync): what came before
            # is diarized, and the recording ends here
            log.warning("%s: cannot be decoded past %.1f s (%s); diarized up to there",
                        name, start / rate, e)  # fmt: skip
            return np.zeros((0, info.channels), np.float32)

    try:
        opened = sf.SoundFile(target)
    except (sf.LibsndfileError, RuntimeError, ValueError, OSError) as e:  # changed since .info
        raise _Unreadable(f"{name}: cannot be decoded ({e})") from e
    mixer = Mixer(rate, channel)  # one choice of channels for the whole recording
    with opened as f:
        piece = read(f, 0)
        while piece.shape[0]:
            end = at + piece.shape[0]
            # one block ahead, so that the last one is known and says where the audio ends
            following = read(f, end) if piece.shape[0] == block else piece[:0]
            duration = (info.frames if following.shape[0] else end) / rate
            check_finite(piece, name)
            # each block less its own baseline (read_audio takes the whole file's)
            mono = without_dc(without_spikes(mixer(piece, now=True)))
            yield (resample_wave(mono, rate, SAMPLE_RATE),
                   at / rate, duration)  # fmt: skip
            at, piece = end, following


@dataclass
class Windows:
    """Every window's place (start, end in seconds) and embedding (unit rows)."""

    starts: list[float] = field(default_factory=list)
    ends: list[float] = field(default_factory=list)
    embeddings: list[np.ndarray] = field(default_factory=list)
    speech: list[tuple[float, float]] = field(default_factory=list)

    def matrix(self) -> np.ndarray:
        x = np.stack(self.embeddings).astype(np.float32)
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def window_spans(
    regions: list[tuple[float, float]], cfg: DiarizeConfig
) -> list[tuple[float, float]]:
    """The windows over speech regions: ``window_s`` every ``hop_s`` inside each region (the
    last one ending at the region's end); a region shorter than a window is one window."""
    spans = []
    for a, b in regions:
        if b - a <= cfg.window_s:
            spans.append((a, b))
            continue
        starts = np.arange(a, b - cfg.window_s + 1e-9, cfg.hop_s)
        if b - (starts[-1] + cfg.window_s) > 1e-6:
            starts = np.r_[starts, b - cfg.window_s]
        spans += [(float(s), float(s) + cfg.window_s) for s in starts]
    return spans


def embed_windows(
    source: AudioSource,
    encoder,
    cfg: DiarizeConfig,
    progress: Callable[[float, float], None] | None = None,
) -> tuple[Windows, float]:
    """The speech regions and window embeddings of a recording, block by block; and its
    duration. ``progress(done_s, total_s)`` after each block. Settings ``cfg`` leaves open are
    the encoder's (``resolve``)."""
    cfg = _resolved(cfg, encoder)
    name = describe_source(source)
    detect = silero_speech if cfg.vad == "silero" else energy_speech
    found = Windows()
    duration = 0.0
    carry, carry_at = np.zeros(0, np.float32), 0.0  # speech running over a block's end
    for block, at, duration in _blocks(source):
        wave, at = (np.r_[carry, block].astype(np.float32), carry_at) if carry.size else (block, at)
        # every run, short ones too, so that speech just begun at a block's end is carried
        # whole into the next block rather than dropped as too short
        regions = detect(wave, replace(cfg, min_speech_s=0.0))
        length = wave.shape[0] / SAMPLE_RATE
        carry = np.zeros(0, np.float32)
        if (
            regions
            and at + length < duration - 1e-3  # not the last block
            and length - regions[-1][1] < cfg.min_gap_s  # speech touching the block's end
            and length - regions[-1][0] < BLOCK_S  # and not a block's worth already
        ):
            start = regions.pop()[0]  # read again with the next block
            carry, carry_at = wave[int(start * SAMPLE_RATE) :], at + start
        regions = [(a, b) for a, b in regions if b - a >= cfg.min_speech_s]
        spans = window_spans(regions, cfg)
        found.speech += [(at + a, at + b) for a, b in regions]
        pieces = [
            Decoded(
                wave[int(a * SAMPLE_RATE) : int(b * SAMPLE_RATE)],
                SAMPLE_RATE,
                f"{name} @{at + a:.1f}s",
            )
            for a, b in spans
        ]
        for (a, b), result in zip(spans, encoder.embed_many(pieces), strict=True):
            if isinstance(result, WhichvoiceError):
                continue  # a window in which the encoder found no speech
            found.starts.append(at + a)
            found.ends.append(at + b)
            found.embeddings.append(np.asarray(result[0], np.float32))
        if progress is not None:
            progress(min(at + wave.shape[0] / SAMPLE_RATE, duration), duration)
    return found, duration


# ---------------------------------------------------------------------------------------------
# 3. clustering


def cluster(
    x: np.ndarray,
    threshold: float,
    cfg: DiarizeConfig,
    spans: list[tuple[float, float]] | None = None,
    regions: list[tuple[float, float]] | None = None,
) -> np.ndarray:
    """A cluster label per row of ``x`` (unit embeddings), 0.. in order of first appearance.
    ``spans``: each row's window (start, end) and ``regions`` the speech regions, for
    ``keep_region_s`` (without them no cluster is kept for the region it holds; nor in a
    recording of more than ``MAX_CLUSTERED`` windows, where a sample is clustered and most
    regions hold one sampled window or none: each would seem held whole)."""
    n = x.shape[0]
    if n == 1:
        return np.zeros(1, np.int64)
    if n > MAX_CLUSTERED:  # cluster an even sample, then every window joins the nearest
        pick = np.linspace(0, n - 1, MAX_CLUSTERED).round().astype(int)
        sub = cluster(x[pick], threshold, cfg)
        centroids = _centroids(x[pick], sub)
        return _first_order(np.argmax(x @ centroids.T, axis=1))
    from sklearn.cluster import AgglomerativeClustering

    def ahc(k: int | None) -> np.ndarray:
        model = AgglomerativeClustering(
            n_clusters=k,
            metric="cosine",
            linkage="average",
            distance_threshold=None if k is not None else threshold,
        )
        return model.fit_predict(x)

    # a count given is a bound of both sides: the threshold's voices (small clusters and
    # mixtures absorbed) when they are that many; else exactly that many by average linkage
    # (which alone split a single outlying window off as a voice, and left two voices one:
    # review)
    if cfg.num_speakers is not None:
        low = high = min(cfg.num_speakers, n)
    else:
        low, high = cfg.min_speakers, cfg.max_speakers or n
    found = ahc(None)
    labels = _absorb_small(x, found, cfg, spans, regions)
    k = len(set(labels.tolist()))
    if k > high and cfg.keep_region_s:  # too many: the voices kept for a region give way first
        labels = _absorb_small(x, found, cfg)
        k = len(set(labels.tolist()))
    if cfg.mixture_above and k > low:
        labels = _absorb_mixtures(x, labels, cfg, low)
        k = len(set(labels.tolist()))
    if k > high:
        labels = _fewer(x, labels, high)
    elif k < low:
        labels = ahc(min(low, n))
    return _first_order(labels)


def _fewer(x: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """``labels`` brought down to ``k`` clusters, the smallest first: each joins the cluster
    whose centre is nearest its own. Found by the threshold, a cluster beyond the count asked
    for is a sound that is no voice (a jingle, applause) or a piece of a voice: average
    linkage to exactly ``k`` from the windows kept such outliers apart and merged two hosts
    into one name instead (a review: two hosts and a jingle, ``--num-speakers 2``)."""
    labels = _first_order(labels)
    while labels.max() + 1 > k:
        sizes = np.bincount(labels)
        small = int(np.argmin(sizes))
        centroids = _centroids(x, labels)
        near = centroids @ centroids[small]
        near[small] = -np.inf
        labels = _first_order(np.where(labels == small, int(np.argmax(near)), labels))
    return labels


def _smallest_cluster(cfg: DiarizeConfig) -> tuple[float, float]:
    """The smallest cluster that is a voice by its size alone, in seconds of windows, and
    the windows' spacing (``cluster`` may be called with settings ``resolve`` left open)."""
    smallest = DEFAULT_MIN_CLUSTER_S if cfg.min_cluster_s is None else cfg.min_cluster_s
    return smallest, DEFAULT_WINDOW[1] if cfg.hop_s is None else cfg.hop_s


def _absorb_small(
    x: np.ndarray,
    labels: np.ndarray,
    cfg: DiarizeConfig,
    spans: list[tuple[float, float]] | None = None,
    regions: list[tuple[float, float]] | None = None,
) -> np.ndarray:
    """Clusters of fewer windows than ``min_cluster_s`` of hops (a few outlying windows: a
    breath, a word in noise, a mixture where voices overlap) join the nearest of the others,
    when others are big enough; with ``keep_far``, one far from all of them stays a voice (a
    voice that spoke briefly), and with ``keep_region_s`` one holding every window of a speech
    region that long (``spans``: the rows' windows; ``regions``: the speech regions)."""
    labels = _first_order(labels)
    sizes = np.bincount(labels)
    cfg_smallest, hop = _smallest_cluster(cfg)
    # in a long recording, also a share of all the windows: over hours, stray windows (a
    # cough, two voices at once) gather into clusters of several seconds
    smallest = max(cfg_smallest, cfg.min_cluster_share * len(labels) * hop)
    big = np.flatnonzero(sizes * hop >= smallest)
    if len(big) == 0 or len(big) == len(sizes):
        return labels
    every = _centroids(x, labels)
    centroids = every[big]
    if cfg.keep_far is not None:  # a small cluster far from every big one is a voice too
        nearest = 1 - (every @ centroids.T).max(axis=1)  # each cluster's distance to a big one
        far = [k for k in range(len(sizes)) if k not in big and nearest[k] > cfg.keep_far]
        big = np.sort(np.r_[big, far]).astype(int)
    # not in a long recording, where the share raised the bar: over hours, a cough or a laugh
    # between two pauses would be a voice
    if cfg.keep_region_s and spans is not None and regions and smallest <= cfg_smallest:
        held = _holding_regions(labels, spans, regions, cfg.keep_region_s)
        big = np.union1d(big, sorted(held)).astype(int)
    centroids = every[big]
    small = ~np.isin(labels, big)
    labels = labels.copy()
    labels[small] = big[np.argmax(x[small] @ centroids.T, axis=1)]
    return labels


def _absorb_mixtures(x: np.ndarray, labels: np.ndarray, cfg: DiarizeConfig, low: int) -> np.ndarray:
    """Clusters of under twice ``min_cluster_s`` of windows that sit where two other voices
    overlap (``mixture_above``) join the nearest other cluster, the smallest first, while
    more than ``low`` voices remain."""
    labels = _first_order(labels)
    smallest, hop = _smallest_cluster(cfg)
    sizes = np.bincount(labels)
    centroids = _centroids(x, labels)
    alive = np.ones(len(sizes), bool)
    for c in np.argsort(sizes, kind="stable"):
        if sizes[c] * hop >= 2 * smallest or alive.sum() < 3 or alive.sum() <= low:
            break  # a mixture needs two other clusters
        others = np.flatnonzero(alive & (np.arange(len(sizes)) != c))
        pair = centroids[others][:, None, :] + centroids[others][None, :, :]
        pair /= np.maximum(np.linalg.norm(pair, axis=2, keepdims=True), 1e-12)
        mixed = pair @ centroids[c]
        mixed[np.arange(len(others)), np.arange(len(others))] = -1.0  # a pair is two clusters
        single = float((centroids[others] @ centroids[c]).max())
        if float(mixed.max()) >= cfg.mixture_above and float(mixed.max()) > single:
            alive[c] = False
    if alive.all():
        return labels
    keep = np.flatnonzero(alive)
    out = labels.copy()
    gone = ~alive[labels]
    out[gone] = keep[np.argmax(x[gone] @ centroids[keep].T, axis=1)]
    return _first_order(out)


def _holding_regions(
    labels: np.ndarray,
    spans: list[tuple[float, float]],
    regions: list[tuple[float, float]],
    shortest: float,
) -> set[int]:
    """The clusters that alone hold every window of a speech region ``shortest`` seconds
    long or longer, and have no window outside the regions they hold so."""
    starts = np.array([a for a, _ in spans], np.float64)
    ends = np.array([b for _, b in spans], np.float64)
    held = set()
    placed = np.zeros(labels.shape[0], bool)  # windows in a region their cluster holds
    for a, b in regions:
        if b - a < shortest - 1e-6:  # region edges are whole 10 ms frames
            continue
        inside = (starts >= a - 1e-6) & (ends <= b + 1e-6)
        found = labels[inside]
        if found.size and (found == found[0]).all():
            held.add(int(found[0]))
            placed |= inside
    return {k for k in held if placed[labels == k].all()}


def _first_order(labels: np.ndarray) -> np.ndarray:
    _, first = np.unique(labels, return_index=True)
    order = np.argsort(np.argsort(first))
    return order[np.searchsorted(np.unique(labels), labels)]


def _centroids(x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    c = np.stack([x[labels == k].mean(axis=0) for k in range(labels.max() + 1)])
    return c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)


@functools.cache
def _shipped_table() -> dict:
    """The dev-chosen settings shipped in ``data/diarize`` (``THRESHOLDS`` and ``LIVE_SPEECH``,
    each a table of encoder id -> value per setting; read once)."""
    out: dict = {}
    for name in (THRESHOLDS, LIVE_SPEECH):
        path = Path(str(resources.files("whichvoice").joinpath(f"data/diarize/{name}")))
        if path.is_file():
            out |= json.loads(path.read_text())
    return out


def shipped_settings(encoder) -> dict:
    """The dev-chosen settings shipped for ``encoder`` (``data/diarize``, written by
    ``benchmarks/diarize.py --write``): {"thresholds", "overlap", "min_cluster_s", "keep_far",
    "keep_region_s", "live_accept", "live_turn_accept", ..., and ``benchmarks/live.py``'s
    "accept_by_speech"}: the ones it has; empty for an encoder the benchmarks never ran."""
    from whichvoice.encoders import model_id

    own = model_id(encoder)  # once: a run's id hashes its weights
    return {
        key: table[own]
        for key, table in _shipped_table().items()
        if isinstance(table, dict) and own in table
    }


def naming_threshold(encoder) -> tuple[float | None, str]:
    """The score a cluster must reach to take an enrolled voice's name, and where it came
    from: chosen on dev conversations with enrolled voices (``data/diarize``'s "naming"),
    else None: the encoder's verification threshold."""
    value = shipped_settings(encoder).get("naming")
    if value is not None:
        return float(value), "dev conversations"
    return None, "verification threshold"


def naming_thresholds(encoder) -> tuple[float, float]:
    """The naming threshold of a cluster named from its speech, and of one named from its
    windows' centroid: each way's dev choice (``data/diarize``'s "naming" is the shipped
    way's, "naming_other" the other's), else the encoder's verification threshold."""
    from whichvoice.verification import operating_point

    shipped = shipped_settings(encoder)
    chosen, other = shipped.get("naming"), shipped.get("naming_other")
    if shipped.get("naming_speech_s", NAMING_SPEECH_S) == 0:  # the shipped way: the windows
        chosen, other = other, chosen
    verification = operating_point(encoder).threshold
    return tuple(verification if t is None else float(t) for t in (chosen, other))  # type: ignore[return-value]


def default_threshold(encoder, shipped: dict | None = None) -> tuple[float, str]:
    """The clustering distance threshold for ``encoder``: calibrated on dev conversations
    (``shipped``, else ``shipped_settings(encoder)``), else 1 - its verification
    threshold."""
    shipped = shipped_settings(encoder) if shipped is None else shipped
    if shipped.get("thresholds") is not None:
        return float(shipped["thresholds"]), "calibrated on dev conversations"
    from whichvoice.verification import operating_point

    try:
        return 1.0 - operating_point(encoder).threshold, "1 - the verification threshold"
    except WhichvoiceError:
        return 0.5, "the fallback 0.5 (the encoder is not calibrated)"


# ---------------------------------------------------------------------------------------------
# 4-5. frames, turns and overlap


def frame_voices(
    windows: Windows, x: np.ndarray, centroids: np.ndarray, duration: float, cfg: DiarizeConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per ``FRAME_S`` frame: the best voice (-1: no speech), the second voice where the frame
    is overlapped (-1: none), the best voice's mean cosine and the second voice's (0: none)."""
    n = int(np.ceil(duration / FRAME_S))
    k = centroids.shape[0]
    sims = x @ centroids.T  # (windows, voices)
    total = np.zeros((n, k))
    count = np.zeros(n)
    for (a, b), s in zip(zip(windows.starts, windows.ends, strict=True), sims, strict=True):
        i = _frame(a)
        j = max(_frame(b, up=True), i + 1)
        total[i:j] += s
        count[i:j] += 1
    speech = np.zeros(n, bool)
    for a, b in windows.speech:
        speech[_frame(a) : _frame(b, up=True)] = True
    covered = speech & (count > 0)
    mean = np.where(count[:, None] > 0, total / np.maximum(count[:, None], 1), -np.inf)
    best = np.where(covered, mean.argmax(axis=1), -1)
    best = _smooth(best, max(1, round(cfg.min_turn_s / FRAME_S)))
    second = np.full(n, -1)
    if cfg.overlap and k > 1:
        finite = np.where(np.isfinite(mean), mean, -2.0)  # a cosine is never under -1
        ranked = np.argsort(-finite, axis=1)
        gap = finite[np.arange(n), ranked[:, 0]] - finite[np.arange(n), ranked[:, 1]]
        # as close to a second voice as to the first: within a tenth of the spread of the
        # frames' own margins
        close = covered & (gap < 0.1 * np.median(gap[covered]) if covered.any() else covered)
        runs = _regions(close, FRAME_S, replace(cfg, min_gap_s=0.0, min_speech_s=cfg.min_overlap_s))
        for a, b in runs:
            i, j = round(a / FRAME_S), round(b / FRAME_S)
            other = np.where(ranked[i:j, 0] == best[i:j], ranked[i:j, 1], ranked[i:j, 0])
            second[i:j] = other
    score = np.where(best >= 0, mean[np.arange(n), np.maximum(best, 0)], 0.0)
    second_score = np.where(second >= 0, mean[np.arange(n), np.maximum(second, 0)], 0.0)
    return best, second, score, second_score


def _frame(t: float, *, up: bool = False) -> int:
    """The frame holding time ``t`` (``up``: the first frame after it), with a little room
    for a float's rounding (3.8 s / 0.1 s is 37.99...)."""
    return int(np.ceil(t / FRAME_S - 1e-6)) if up else int(t / FRAME_S + 1e-6)


def _smooth(labels: np.ndarray, min_run: int) -> np.ndarray:
    """Runs of one voice shorter than ``min_run`` frames inside speech take the voice of the
    longer neighbouring run (silence, -1, is left as it is)."""
    out = labels.copy()
    for _ in range(3):
        edges = np.flatnonzero(np.diff(out)) + 1
        starts = np.r_[0, edges]
        ends = np.r_[edges, len(out)]
        changed = False
        for idx, (a, b) in enumerate(zip(starts, ends, strict=True)):
            if out[a] < 0 or b - a >= min_run:
                continue
            left = out[starts[idx - 1]] if idx > 0 else -1
            right = out[starts[idx + 1]] if idx + 1 < len(starts) else -1
            left_n = ends[idx - 1] - starts[idx - 1] if idx > 0 else 0
            right_n = ends[idx + 1] - starts[idx + 1] if idx + 1 < len(starts) else 0
            take = left if (left >= 0 and left_n >= right_n) or right < 0 else right
            if take >= 0:
                out[a:b] = take
                changed = True
        if not changed:
            break
    return out


def _turns(
    best: np.ndarray,
    second: np.ndarray,
    scores: tuple[np.ndarray, np.ndarray],
    names: list[str],
    duration: float,
) -> list[Segment]:
    """Segments from the frame labels: one per run of a voice (split where overlap starts
    and ends), and one per overlapped run of a second voice; none past ``duration``. Each
    run's score is its own voice's mean cosine over its frames (``scores``: the best voice's
    and the second voice's, per frame)."""
    out = []
    overlapped = second >= 0
    for labels, score, of_second in ((best, scores[0], False), (second, scores[1], True)):
        # a run ends where the voice changes or where overlap begins or ends
        edges = np.flatnonzero((np.diff(labels) != 0) | (np.diff(overlapped) != 0)) + 1
        for a, b in zip(np.r_[0, edges], np.r_[edges, len(labels)], strict=True):
            if labels[a] < 0:
                continue
            # times to the millisecond, as Python floats (7.6, not 7.6000000000000005)
            start, end = round(a * FRAME_S, 3), round(float(min(b * FRAME_S, duration)), 3)
            if end <= start:
                continue
            out.append(Segment(start, end, names[labels[a]], float(score[a:b].mean()),
                               of_second or bool(overlapped[a])))  # fmt: skip
    return sorted(out, key=lambda s: (s.start, s.speaker))


# ---------------------------------------------------------------------------------------------
# 6. names, and the whole


def name_clusters(
    centroids: np.ndarray,
    encoder,
    gallery,
    threshold: float | None = None,
    thresholds: np.ndarray | None = None,
) -> tuple[list[str], list[dict]]:
    """A name per cluster: the enrolled voice whose embedding reaches ``threshold`` (None:
    the verification threshold; each voice names its closest cluster only), else
    ``unknown-N``. ``thresholds``: one per cluster instead (each for the way its embedding
    was made)."""
    k = centroids.shape[0]
    names: list[str | None] = [None] * k
    info: list[dict] = [{"enrolled": False, "score": None, "nearest": None} for _ in range(k)]
    if gallery is not None:
        from whichvoice.verification import check_gallery_model

        check_gallery_model(encoder, gallery)
    voices = gallery.voices() if gallery is not None else []
    if voices:
        from whichvoice.verification import operating_point

        point = operating_point(encoder, threshold)
        scores = voice_refs(voices, centroids.shape[1]).scores(centroids)  # (clusters, voices)
        for c in range(k):
            j = int(scores[c].argmax())
            info[c] = {"enrolled": False, "score": float(scores[c, j]), "nearest": voices[j].name}
        # the best pairs first: a voice names one cluster, a cluster takes one voice
        for flat in np.argsort(-scores, axis=None):
            c, j = divmod(int(flat), len(voices))
            if scores[c, j] < (point.threshold if thresholds is None else thresholds[c]):
                continue
            if names[c] is None and voices[j].name not in names:
                names[c] = voices[j].name
                info[c] = {
                    "enrolled": True,
                    "score": float(scores[c, j]),
                    "nearest": voices[j].name,
                }
    # strangers are unknown-1, unknown-2, ...: a number an enrolled voice goes by (a name an
    # older export kept) is passed over, so that two voices never share a name
    taken = {v.name for v in voices}
    unknown = 0
    for c in range(k):
        if names[c] is None:
            unknown += 1
            while f"{UNKNOWN_PREFIX}{unknown}" in taken:
                unknown += 1
            names[c] = f"{UNKNOWN_PREFIX}{unknown}"
    return [str(n) for n in names], info


def resolve(config: DiarizeConfig, shipped: dict) -> DiarizeConfig:
    """``config`` checked, with the settings it leaves open (None) set to the encoder's dev
    choices (``shipped``, from ``shipped_settings``), else the defaults."""
    cfg = config.check()
    if cfg.window_s is None:
        window = shipped.get("window")
        chosen = isinstance(window, list) and len(window) == 2
        window_s, hop_s = window if chosen else DEFAULT_WINDOW
        cfg = replace(cfg, window_s=float(window_s), hop_s=float(hop_s))
    if cfg.overlap is None:
        cfg = replace(cfg, overlap=bool(shipped.get("overlap", False)))
    if cfg.min_cluster_s is None:
        cfg = replace(cfg, min_cluster_s=shipped.get("min_cluster_s") or DEFAULT_MIN_CLUSTER_S)
        if cfg.keep_far is None:  # the dev choice goes with the dev-chosen smallest cluster
            cfg = replace(cfg, keep_far=shipped.get("keep_far"))
        if cfg.keep_region_s is None:  # and so does this one
            cfg = replace(cfg, keep_region_s=shipped.get("keep_region_s"))
        if cfg.mixture_above is None:  # and this one
            cfg = replace(cfg, mixture_above=shipped.get("mixture_above"))
    if cfg.naming_speech_s is None:
        chosen = shipped.get("naming_speech_s")
        cfg = replace(cfg, naming_speech_s=NAMING_SPEECH_S if chosen is None else float(chosen))
    if cfg.merge_speech is None:
        cfg = replace(cfg, merge_speech=float(shipped.get("merge_speech") or 0.0))
    if cfg.keep_region_s is None:
        cfg = replace(cfg, keep_region_s=0.0)
    if cfg.mixture_above is None:
        cfg = replace(cfg, mixture_above=0.0)
    return cfg


def _resolved(cfg: DiarizeConfig, encoder) -> DiarizeConfig:
    """``resolve`` with the encoder's shipped settings, looked up only when something is open."""
    if None in (cfg.window_s, cfg.overlap, cfg.min_cluster_s, cfg.naming_speech_s,
                cfg.merge_speech, cfg.keep_region_s, cfg.mixture_above):  # fmt: skip
        return resolve(cfg, shipped_settings(encoder))
    return cfg


def _read_once(source: AudioSource, name: str) -> AudioSource:
    """A recording that is not a file on disk (a pipe, a URL, bytes, an array) decoded once,
    at 16 kHz, for both of diarization's passes (its windows, then the voices' speech to name
    them): a pipe can be read only once, and encoded bytes would be decoded twice. A file
    stays a path (read in blocks, and span by span), and a ``Channel`` of one its channel."""
    path, channel = split_channel(source)
    if isinstance(path, (str, os.PathLike)):
        from whichvoice import storage

        if storage.is_url(path):
            try:
                data: AudioSource = storage.read_bytes(path)
            except storage.StorageError as e:
                raise AudioDecodeError(str(e)) from e
        elif is_stdin(path) or Path(path).is_fifo():  # "-": standard input
            data = read_pipe("/dev/stdin" if is_stdin(path) else path, name)
        else:
            return source
    else:
        data = path
    wave, rate = read_audio(data, name=name, channel=channel)
    return Decoded(resample_wave(wave, rate, SAMPLE_RATE), SAMPLE_RATE, name)


def diarize(
    source: AudioSource,
    encoder: Encoder | str | os.PathLike | None = None,
    *,
    gallery: Gallery | None = None,
    config: DiarizeConfig | None = None,
    verify_threshold: float | None = None,
    progress: Callable[[float, float], None] | None = None,
) -> Diarization:
    """Who speaks when in ``source`` (a path or encoded bytes), with ``encoder`` (None: the
    default, ``auto``; a name such as ``"bundled"`` is loaded); clusters reaching an enrolled
    voice of ``gallery`` (of the same encoder) are named after it. See the module's docstring
    for the steps and ``DiarizeConfig`` for the settings."""
    from whichvoice.encoders import load_encoder

    if progress is not None and not callable(progress):
        raise DiarizeError(f"progress {progress!r:.40}: a function of (seconds done, in all)")
    encoder = load_encoder(encoder) if encoder is None or isinstance(encoder, str) else encoder
    if gallery is not None:  # before any work: a gallery of another encoder cannot name
        from whichvoice.verification import check_gallery_model

        check_gallery_model(encoder, gallery)
    if config is not None and not isinstance(config, DiarizeConfig):
        raise DiarizeError(
            f"config {config!r:.60}: a DiarizeConfig (DiarizeConfig(max_speakers=2), ...)"
        )
    shipped = shipped_settings(encoder)
    cfg = resolve((config or DiarizeConfig()).check(), shipped)
    check_installed(cfg)
    threshold, threshold_source = (
        (cfg.threshold, "given")
        if cfg.threshold is not None
        else default_threshold(encoder, shipped)
    )
    if threshold_source not in ("given", "calibrated on dev conversations"):
        _warn_unchosen(encoder, threshold, threshold_source, cfg)
    name = describe_source(source)
    source = _read_once(source, name)
    windows, duration = embed_windows(source, encoder, cfg, progress)
    return from_windows(
        windows, duration, name, encoder, cfg,
        threshold=(threshold, threshold_source), gallery=gallery,
        verify_threshold=verify_threshold, source=source,
    )  # fmt: skip


_WARNED: set[str] = set()  # encoders warned of below, once a process


def _warn_unchosen(encoder, threshold: float, source: str, cfg: DiarizeConfig) -> None:
    """Say, once for each encoder, that its clustering threshold was never chosen on
    conversations: a threshold from clip-level verification is far too tight for windows of
    1-2 s (dvector split a call of two voices into 16: review)."""
    from whichvoice.encoders import model_id

    ident = model_id(encoder)
    if cfg.num_speakers is not None or cfg.max_speakers is not None or ident in _WARNED:
        return  # a count or a bound given: the threshold cannot split beyond it
    _WARNED.add(ident)
    log.warning(
        "%s has no diarization settings chosen on dev conversations (auto, bundled and "
        "resemblyzer have); its clustering threshold %.3f is %s, which may split one voice "
        "into several: give --num-speakers or --max-speakers, or use --model auto",
        ident, threshold, source,
    )  # fmt: skip


NAMING_EDGE_S = 0.25  # trimmed off each end of a run before it is embedded to name a voice


def _alone_runs(best: np.ndarray, second: np.ndarray, k: int) -> list[list[tuple[float, float]]]:
    """Per cluster, its runs (start, end in seconds) where it is the only voice, longest
    first: each trimmed by ``NAMING_EDGE_S`` at both ends where 0.5 s or more is left, else
    cut to its middle 0.5 s; a run of 0.5 s or less is kept whole."""
    runs: list[list[tuple[float, float]]] = [[] for _ in range(k)]
    alone = np.where(second >= 0, -1, best)
    edges = np.flatnonzero(np.diff(alone) != 0) + 1
    for a, b in zip(np.r_[0, edges], np.r_[edges, len(alone)], strict=True):
        if alone[a] < 0:
            continue
        start, end = a * FRAME_S, b * FRAME_S
        if end - start - 2 * NAMING_EDGE_S >= 0.5:
            start, end = start + NAMING_EDGE_S, end - NAMING_EDGE_S
        elif end - start > 0.5:
            middle = (start + end) / 2
            start, end = middle - 0.25, middle + 0.25
        runs[int(alone[a])].append((start, end))
    return [sorted(r, key=lambda ab: ab[0] - ab[1]) for r in runs]


def _read_spans(source: AudioSource, spans: list[tuple[float, float]]) -> list[np.ndarray]:
    """The 16 kHz mono audio of each (start, end) span of a recording: a file soundfile can
    seek in is read span by span (a long recording is never held whole), anything else is
    decoded once."""
    import soundfile as sf

    path, channel = split_channel(source)
    if isinstance(path, (str, os.PathLike)):
        try:
            with sf.SoundFile(os.fsencode(path)) as f:  # a name not in UTF-8 too
                if f.frames == 0:  # a header that says no audio: read_audio reads on past it
                    raise RuntimeError("no frames")
                check_channel(channel, f.channels, describe_source(source))
                rate, out, mixer = f.samplerate, [], Mixer(f.samplerate, channel)
                for a, b in spans:
                    f.seek(min(int(a * rate), f.frames))
                    piece = f.read(max(int((b - a) * rate), 0), dtype="float32", always_2d=True)
                    mono = without_spikes(mixer(piece, now=True))
                    out.append(resample_wave(mono, rate, SAMPLE_RATE))
                return out
        except (RuntimeError, sf.LibsndfileError, OSError):
            pass  # a format soundfile does not seek in: decoded whole below
    wave, rate = read_audio(source)
    wave = resample_wave(wave, rate, SAMPLE_RATE)
    return [wave[int(a * SAMPLE_RATE) : int(b * SAMPLE_RATE)] for a, b in spans]


MIN_NAMING_SPEECH_S = 1.0  # a cluster with less speech alone is named from its windows


def _embed_spans(
    source: AudioSource, encoder, spans: list[list[tuple[float, float]]]
) -> dict[int, np.ndarray]:
    """Per cluster with spans, its spans' audio joined and embedded as one recording (a unit
    vector): {cluster: embedding}, leaving out those the encoder finds no speech in. Raises
    the WhichvoiceError of a recording that cannot be read again."""
    flat = [span for s in spans for span in s]
    if not flat:
        return {}
    pieces = iter(_read_spans(source, flat))
    name = describe_source(source)
    which = [c for c, s in enumerate(spans) if s]
    joined = [Decoded(np.concatenate([next(pieces) for _ in spans[c]]).astype(np.float32),
                      SAMPLE_RATE, f"{name} (voice {c + 1})") for c in which]  # fmt: skip
    return {
        c: unit(np.asarray(result[0], np.float32))
        for c, result in zip(which, encoder.embed_many(joined), strict=True)
        if not isinstance(result, WhichvoiceError)
    }


def merge_by_speech(emb: np.ndarray, spoken: np.ndarray, cfg: DiarizeConfig) -> np.ndarray:
    """Clusters that are one voice, found from their speech (``speech_embeddings``: each
    cluster's runs alone embedded as one recording): the pairs of spoken clusters closer than
    ``cfg.merge_speech`` (cosine) joined, the closest first, while the number of voices stays
    within ``min_speakers``. The windows of one voice in noise scatter into clusters its
    speech as a whole does not. Returns each cluster's group (the lowest cluster in it)."""
    k = emb.shape[0]
    parent = list(range(k))

    def root(c: int) -> int:
        while parent[c] != c:
            c = parent[c]
        return c

    talking = np.flatnonzero(spoken)
    pairs = sorted(((float(emb[a] @ emb[b]), int(a), int(b))
                    for i, a in enumerate(talking) for b in talking[i + 1 :]),
                   reverse=True)  # fmt: skip
    voices = k
    for cos, a, b in pairs:
        if cos <= cfg.merge_speech or voices <= cfg.min_speakers:
            break
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
            voices -= 1
    return np.array([root(c) for c in range(k)])


def _joined_speech(
    emb: np.ndarray, spoken: np.ndarray, seconds: np.ndarray, index: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The speech embeddings of merged clusters (``index``: each cluster's merged one): the
    mean of its parts' that were spoken, weighted by their seconds, as a unit vector, and
    whether any part was (the others are given their centroid after)."""
    k = int(index.max()) + 1
    out, said = np.zeros((k, emb.shape[1]), emb.dtype), np.zeros(k, bool)
    for c in range(k):
        parts = np.flatnonzero(index == c)
        talking = parts[spoken[parts]]
        if talking.size:
            out[c], said[c] = unit((emb[talking] * seconds[talking, None]).sum(axis=0)), True
    return out, said


def speech_embeddings(
    source: AudioSource,
    encoder,
    best: np.ndarray,
    second: np.ndarray,
    centroids: np.ndarray,
    limit_s: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per cluster, the embedding of its own speech as one recording: its longest runs
    without another voice (``_alone_runs``), up to ``limit_s`` seconds, joined and embedded
    as verification embeds a clip; which clusters got one; and the seconds each was made
    from. A cluster with under ``MIN_NAMING_SPEECH_S`` of such speech, or whose speech the
    encoder finds none in, keeps its centroid (a fragment says less than all its windows
    do)."""
    k = centroids.shape[0]
    out, spoken, seconds = centroids.copy(), np.zeros(k, bool), np.zeros(k)
    chosen: list[list[tuple[float, float]]] = []
    for runs in _alone_runs(best, second, k):
        took, total = [], 0.0
        for a, b in runs:
            if total >= limit_s:
                break
            b = min(b, a + limit_s - total)
            took.append((a, b))
            total += b - a
        chosen.append(sorted(took) if total >= MIN_NAMING_SPEECH_S else [])
    try:
        emb = _embed_spans(source, encoder, chosen)
    except WhichvoiceError as e:  # a file changed or gone since its windows were read
        log.warning("%s: the voices' speech cannot be read again (%s): they are named from "
                    "their windows and not merged by their speech",
                    describe_source(source), e)  # fmt: skip
        return out, spoken, seconds
    for c, e in emb.items():
        out[c], spoken[c] = e, True
        seconds[c] = sum(b - a for a, b in chosen[c])
    return out, spoken, seconds


def from_windows(
    windows: Windows,
    duration: float,
    name: str,
    encoder,
    cfg: DiarizeConfig,
    *,
    threshold: tuple[float, str],
    gallery=None,
    verify_threshold: float | None = None,
    source: AudioSource | None = None,
    way_thresholds: tuple[float, float] | None = None,
) -> Diarization:
    """Steps 3-6 on a recording's window embeddings (``embed_windows``): a benchmark clusters
    the same embeddings at several thresholds. ``source``: the recording, read again to name
    the voices from their speech (without it they are named from their windows). Naming
    thresholds: ``verify_threshold`` for every cluster, else ``way_thresholds`` (a cluster
    named from its speech, one named from its windows), else the shipped ones
    (``naming_thresholds``)."""
    from whichvoice.encoders import model_id

    cfg = _resolved(cfg, encoder)
    counted = cfg.num_speakers is not None  # the count decides where clustering stops
    settings = {
        "encoder": model_id(encoder),
        "vad": cfg.vad,
        "window_s": cfg.window_s,
        "hop_s": cfg.hop_s,
        # with a count, the threshold proposes the voices and the count decides
        "cluster_threshold": round(threshold[0], 6),
        "cluster_threshold_source": (
            f"{threshold[1]}, then num_speakers" if counted else threshold[1]
        ),
        "overlap": bool(cfg.overlap),
        "min_cluster_s": _smallest_cluster(cfg)[0],
        "keep_far": cfg.keep_far,
        "keep_region_s": cfg.keep_region_s,
        "mixture_above": cfg.mixture_above,
        "merge_speech": None,  # the cosine clusters were merged at, when a merging pass ran
    }
    naming, naming_source = (
        (verify_threshold, "given")
        if verify_threshold is not None
        else naming_threshold(encoder)
        if gallery is not None
        else (None, "no gallery")
    )
    settings["naming_threshold"] = None if naming is None else round(float(naming), 6)
    settings["naming_threshold_source"] = naming_source
    settings["naming_speech_s"] = cfg.naming_speech_s
    settings["named_from"] = None  # "speech", "windows" or both, once a gallery names
    settings["warning"] = None  # fewer voices found than asked for, and why
    if not windows.embeddings:
        return Diarization(name, duration, [], {}, settings)
    x = windows.matrix()
    spans = list(zip(windows.starts, windows.ends, strict=True))
    labels = cluster(x, threshold[0], cfg, spans, windows.speech)
    centroids = _centroids(x, labels)
    best, second, *scores = frame_voices(windows, x, centroids, duration, cfg)
    speech_s = float(cfg.naming_speech_s or 0.0)
    has_voices = gallery is not None and bool(gallery.voices())
    merging = source is not None and bool(cfg.merge_speech) and cfg.num_speakers is None
    by_speech = source is not None and speech_s > 0 and has_voices
    if by_speech or merging:
        # one pass over the recording: each voice's speech read again and embedded, to
        # merge clusters that are one voice and to name the voices
        spoken_emb, spoken, seconds = speech_embeddings(
            source, encoder, best, second, centroids, speech_s or NAMING_SPEECH_S
        )
        if merging:
            settings["merge_speech"] = cfg.merge_speech
            group = merge_by_speech(spoken_emb, spoken, cfg)
            if (group != np.arange(group.size)).any():
                merged = _first_order(group[labels])
                index = np.zeros(group.size, int)  # each cluster's merged cluster
                index[labels] = merged
                labels = merged
                spoken_emb, spoken = _joined_speech(spoken_emb, spoken, seconds, index)
                centroids = _centroids(x, labels)
                spoken_emb = np.where(spoken[:, None], spoken_emb, centroids)
                best, second, *scores = frame_voices(windows, x, centroids, duration, cfg)
    # named from their speech, else from their (merged) windows' centroids
    naming_from, from_speech = (
        (spoken_emb, spoken) if by_speech else (centroids, np.zeros(centroids.shape[0], bool))
    )
    # only the clusters that hold speech once every frame has its voice are voices: a cluster
    # that no frame ends up in (asked for too many voices) names no one and takes no number
    kept = np.unique(np.r_[best[best >= 0], second[second >= 0]]).astype(int)
    if len(kept) < centroids.shape[0]:
        index = np.full(centroids.shape[0], -1)
        index[kept] = np.arange(len(kept))
        centroids, naming_from, from_speech = centroids[kept], naming_from[kept], from_speech[kept]
        best = np.where(best >= 0, index[np.maximum(best, 0)], -1)
        second = np.where(second >= 0, index[np.maximum(second, 0)], -1)
    per_cluster = None
    if has_voices:
        settings["named_from"] = " and ".join(
            way
            for way, used in (("speech", from_speech.any()), ("windows", not from_speech.all()))
            if used
        )
        if verify_threshold is None:  # each way at its own dev-chosen threshold
            by_speech, by_windows = way_thresholds or naming_thresholds(encoder)
            per_cluster = np.where(from_speech, by_speech, by_windows)
    names, info = name_clusters(naming_from, encoder, gallery, naming, per_cluster)
    segments = _turns(best, second, scores, names, duration)
    if gallery is not None:  # a named turn's score is its cosine to the enrolled voice
        named = {names[c]: info[c]["score"] for c in range(len(names)) if info[c]["enrolled"]}
        segments = [replace(s, score=named.get(s.speaker, s.score)) for s in segments]
    spoken = {n: 0.0 for n in names}
    for s in segments:
        spoken[s.speaker] += s.end - s.start
    speakers = {
        n: {**info[c], "speech_s": round(float(spoken[n]), 3)}
        for c, n in enumerate(names)
        if spoken[n] > 0
    }
    short = None
    if counted and len(speakers) < cfg.num_speakers:
        short = f"{cfg.num_speakers} voices asked for, {len(speakers)} found"
    elif cfg.num_speakers is None and segments and len(speakers) < cfg.min_speakers:
        short = f"at least {cfg.min_speakers} voices asked for, {len(speakers)} found"
    if short is not None:
        short += ": too little speech for more"
        log.warning("%s: %s", name, short)
    settings["warning"] = short  # the answer says so too (an HTTP client sees no log)
    return Diarization(name, duration, segments, speakers, settings)


def write_rttm(
    path: str | os.PathLike,
    results: Sequence[Diarization] | Diarization,
    uris: Sequence[str] | None = None,
) -> None:
    """Every result's RTTM lines (one result, or a list) into one file (a path or URL),
    written whole: each recording's uri is its file's stem, made unique with a number where
    two share one (``rttm_uris``), unless ``uris`` gives them; each voice has one label in
    the whole file (``speaker_labels``)."""
    from whichvoice import storage

    results = [results] if isinstance(results, Diarization) else list(results)
    if not all(isinstance(r, Diarization) for r in results):
        raise DiarizeError("write_rttm takes diarize()'s results: one, or a list of them")
    if uris is None:
        uris = rttm_uris([r.path for r in results])
    else:  # as the lines will hold them ("rec 1" and "rec_1" are one field: a review)
        if len(uris) != len(results):
            raise DiarizeError("write_rttm: uris must give each result its own id")
        uris = [rttm_field(u or Path(r.path).stem or "audio")
                for u, r in zip(uris, results, strict=True)]  # fmt: skip
        if len(set(uris)) != len(uris):
            raise DiarizeError("write_rttm: uris must give each result its own id")
    labels = speaker_labels(results)
    lines = [r.to_rttm(uri, labels) for r, uri in zip(results, uris, strict=True)]
    storage.write_bytes(path, "".join(lines).encode())


__all__ = [
    "Diarization",
    "DiarizeConfig",
    "DiarizeError",
    "Segment",
    "diarize",
    "write_rttm",
]

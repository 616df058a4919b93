"""Multi-condition enrollment: an enrolled voice keeps one prototype per listening condition.

A voice enrolled from clean recordings and heard later through a noisy room or a telephone
scores lower against its own clean mean than it does clean: the embedding moves with the
channel. Enrollment therefore also embeds three degraded copies of every enrollment clip
(additive noise, a reverberant room, a telephone band), made with the training augmentation
code (``whichvoice.augment``; the benchmarks' conditions are made by other code), and keeps
the mean of each condition's copies apart: the voice's stored embedding is the
``len(CONDITIONS)`` means side by side. A recording is scored against a voice by its best
prototype (the maximum of the cosines), so a noisy recording meets the voice's noisy
prototype and a clean one its clean prototype.

Galleries made before this hold one prototype per voice (the clean mean); they are scored
the same way with that one row, and clips added to such a voice add to its clean mean only.
"""

from __future__ import annotations

import zlib
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from whichvoice import augment, silero
from whichvoice.audio import SAMPLE_RATE, AudioSource, Decoded, describe_source, load_audio
from whichvoice.errors import SilentAudioError, WhichvoiceError
from whichvoice.runtime import unit

CONDITIONS = ("clean", "noise", "room", "phone")
NOISE_SNR_DB = (5.0, 20.0)  # additive white or pink noise, uniform in this range
ROOM_RT60_S = (0.3, 0.9)  # reverberation time of the synthetic room, uniform
PHONE_CLIP = (0.5, 0.9)  # telephone band, clipped at this share of the peak, uniform
PEAK = 0.5  # every copy is brought to this peak (the encoders normalise the level anyway)


class PrototypeError(WhichvoiceError):
    """An enrolled voice whose stored embedding does not fit the model's embeddings."""


def condition_copies(wave: np.ndarray) -> list[np.ndarray]:
    """The degraded copies of a 16 kHz float32 clip, in ``CONDITIONS`` order after
    ``clean``. Seeded by the clip's samples: the same clip always gives the same copies."""
    g = torch.Generator().manual_seed(zlib.crc32(np.ascontiguousarray(wave).tobytes()))
    cpu = torch.device("cpu")
    x = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))[None]
    if torch.rand(1, generator=g) < 0.5:
        noise = torch.randn(x.shape, generator=g)
    else:
        noise = augment._pink(tuple(x.shape), g, cpu)
    copies = [
        augment.add_noise(x, noise, augment._uniform(1, *NOISE_SNR_DB, g, cpu)),
        augment.reverberate(x, augment.room_impulse(augment._uniform(1, *ROOM_RT60_S, g, cpu), g)),
        augment.telephone(x, augment._uniform(1, *PHONE_CLIP, g, cpu)),
    ]
    out = []
    for y in copies:
        y = y[0].numpy().astype(np.float32)
        out.append(y * np.float32(PEAK / max(float(np.abs(y).max()), 1e-6)))
    return out


# a clip at least this long (s) in which silero-vad finds less speech than NO_SPEECH_S is
# not enrolled: noise, a tone or a hum is "speech" to a level-based detector, and a voice
# enrolled from it then matches other noise (found by a new-user review, stop 41). Shorter
# clips are not checked: silero-vad misses some single words under 0.5 s (a fifth of
# human-dev's single digits), and enrollment needs 3 s of speech in all anyway.
CHECKED_S = 1.0
NO_SPEECH_S = 0.1


def hears_no_speech(wave: np.ndarray) -> bool:
    """Whether enrollment refuses a 16 kHz clip as holding no speech: one of ``CHECKED_S`` or
    more in which silero-vad, when installed, finds under ``NO_SPEECH_S``."""
    if wave.shape[0] < CHECKED_S * SAMPLE_RATE:
        return False
    heard = silero.speech_seconds(wave)
    return heard is not None and heard < NO_SPEECH_S


def _copies_of(source: AudioSource, check_speech: bool) -> list[AudioSource] | WhichvoiceError:
    """The clip itself (decoded once) and its degraded copies, or the error reading it (or
    SilentAudioError: a clip of ``CHECKED_S`` or more in which silero-vad, when installed,
    finds no speech)."""
    name = describe_source(source)
    try:
        wave = load_audio(source)
    except WhichvoiceError as e:
        return e
    if check_speech and hears_no_speech(wave):
        return SilentAudioError(f"{name}: no speech found (silero-vad hears none)")
    clean = Decoded(wave, SAMPLE_RATE, name)
    tags = CONDITIONS[1:]
    return [clean] + [
        Decoded(c, SAMPLE_RATE, f"{name} ({tag} copy)")
        for tag, c in zip(tags, condition_copies(wave), strict=True)
    ]


def embed_enrollment(
    encoder, sources: Iterable[AudioSource], *, check_speech: bool = True
) -> Iterator[tuple[np.ndarray, float] | WhichvoiceError]:
    """For each source, in order: its prototype row (the L2-normalised embeddings of the clip
    and of each degraded copy, side by side: ``len(CONDITIONS) * dim``) and its seconds of
    speech, or the error that made it unusable. A copy the encoder finds no speech in (a
    quiet clip under noise) takes the clean clip's embedding in its place. A source's copies
    are made as the encoder reads it (a chunk ahead), so memory does not grow with the number
    of sources. ``check_speech``: a clip silero-vad hears no speech in is an error
    (``CHECKED_S``; off only for tests of the copies on synthetic signals)."""
    k = len(CONDITIONS)
    groups: deque[WhichvoiceError | None] = deque()  # per source read: its error, or None

    def flat() -> Iterator[AudioSource]:
        for source in sources:
            group = _copies_of(source, check_speech)
            if isinstance(group, WhichvoiceError):
                groups.append(group)
            else:
                groups.append(None)
                yield from group

    def finished(results: list) -> tuple[np.ndarray, float] | WhichvoiceError:
        if isinstance(results[0], WhichvoiceError):
            return results[0]
        clean, speech = results[0]
        rows = [unit(clean)] + [
            unit(clean if isinstance(r, WhichvoiceError) else r[0]) for r in results[1:]
        ]
        return np.concatenate(rows).astype(np.float32), speech

    done: list = []  # embeddings of the first pending source's copies
    for result in encoder.embed_many(flat()):
        done.append(result)
        while groups and (groups[0] is not None or len(done) >= k):
            error = groups.popleft()
            if error is not None:
                yield error
            else:
                yield finished(done[:k])
                del done[:k]
    yield from (e for e in groups if e is not None)  # unreadable sources after the last good


def clean_part(rows: np.ndarray, dim: int) -> np.ndarray:
    """The clean prototype's columns of prototype rows (n, k * dim) -> (n, dim)."""
    return rows[:, :dim]


@dataclass(frozen=True)
class VoiceRefs:
    """Enrolled voices' prototypes for scoring: ``rows`` (R, dim) unit vectors, each voice's
    rows together, starting at ``starts`` (one per voice, in ``names`` order)."""

    names: list[str]
    rows: np.ndarray
    starts: np.ndarray

    def __len__(self) -> int:
        return len(self.names)

    def scores(self, embeddings: np.ndarray) -> np.ndarray:
        """Each voice's score: the best cosine of its prototypes. (dim,) -> (voices,);
        (n, dim) -> (n, voices)."""
        if not self.names:
            return np.zeros((*embeddings.shape[:-1], 0), np.float32)
        return np.maximum.reduceat(embeddings @ self.rows.T, self.starts, axis=-1)


def voice_refs(voices: Iterable, dim: int) -> VoiceRefs:
    """``VoiceRefs`` of enrolled voices (``gallery.EnrolledVoice``) for embeddings of size
    ``dim``: each stored embedding cut into its prototypes, each made unit length."""
    names, rows, starts = [], [], []
    at = 0  # rows so far (a sum over the rows for each voice was quadratic in the voices)
    for v in voices:
        size = int(v.embedding.shape[0])
        if size == 0 or size % dim:
            raise PrototypeError(
                f"{v.name!r} was enrolled with embeddings of size {size}, which the model's "
                f"(size {dim}) do not fit; enroll it again with this model",
                public=f"{v.name!r} was enrolled with another model",
            )
        block = v.embedding.reshape(-1, dim).astype(np.float32)
        starts.append(at)
        at += len(block)
        rows.append(block / np.maximum(np.linalg.norm(block, axis=1, keepdims=True), 1e-12))
        names.append(v.name)
    if not names:
        return VoiceRefs([], np.zeros((0, dim), np.float32), np.zeros(0, np.intp))
    return VoiceRefs(names, np.concatenate(rows), np.asarray(starts, np.intp))


@dataclass(frozen=True)
class MemoryVoice:
    """A voice enrolled in memory only, shaped as a gallery's ``EnrolledVoice`` for
    ``voice_refs``: ``embedding`` the mean of its clips' prototype rows."""

    name: str
    embedding: np.ndarray


def refs_from_clips(encoder, clips: dict[str, Sequence[AudioSource]]) -> VoiceRefs:
    """Voices enrolled in memory (as a gallery enrolls them, nothing written): each name's
    clips embedded with their degraded copies, the prototypes averaged. A clip that cannot
    be used raises its error: a benchmark's enrollment must not lose clips silently."""
    voices = []
    for name in sorted(clips):
        rows = []
        for result in embed_enrollment(encoder, clips[name]):
            if isinstance(result, WhichvoiceError):
                raise result
            rows.append(result[0])
        voices.append(MemoryVoice(name, np.mean(rows, axis=0)))
    if not voices:
        return VoiceRefs([], np.zeros((0, 1), np.float32), np.zeros(0, np.intp))
    return voice_refs(voices, voices[0].embedding.shape[0] // len(CONDITIONS))

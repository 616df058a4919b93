"""Conversations made from single-voice clips, with the truth of who speaks when: for
measuring diarization (``benchmarks/diarize.py``) and for tests.

``make_conversation`` lays turns one after another: each turn is one voice reading part of one
of its clips (cut to the turn's drawn length), followed by a pause, or by
the next turn starting early so that a share ``overlap`` of the speech time has two voices.
Consecutive turns are by different voices. The reference is the list of turns as
(start, end, voice), where the audio of each turn really is (silence trimmed from each piece).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from whichvoice.audio import SAMPLE_RATE, read_audio, resample


@dataclass(frozen=True)
class Turn:
    start: float
    end: float
    voice: str


@dataclass
class Conversation:
    wave: np.ndarray  # float32 mono at SAMPLE_RATE
    turns: list[Turn]

    @property
    def duration_s(self) -> float:
        return self.wave.shape[0] / SAMPLE_RATE

    def rttm(self, uri: str) -> str:
        return "".join(
            f"SPEAKER {uri} 1 {t.start:.3f} {t.end - t.start:.3f} <NA> <NA> {t.voice} <NA> <NA>\n"
            for t in self.turns
        )

    def annotation(self, uri: str = "conversation"):
        """The reference as a ``pyannote.core.Annotation``."""
        from pyannote.core import Annotation, Segment

        ref = Annotation(uri=uri)
        for i, t in enumerate(self.turns):
            ref[Segment(t.start, t.end), i] = t.voice
        return ref


def _speech(wave: np.ndarray) -> np.ndarray:
    """A clip with leading and trailing silence cut (frames 40 dB under its peak)."""
    hop = SAMPLE_RATE // 100
    n = wave.shape[0] // hop
    if n < 2:
        return wave
    db = 10 * np.log10(np.square(wave[: n * hop].reshape(n, hop)).mean(axis=1) + 1e-12)
    loud = np.flatnonzero(db > db.max() - 40)
    return wave[loud[0] * hop : (loud[-1] + 1) * hop]


def make_conversation(
    clips: dict[str, list],
    *,
    turns: int,
    seed: int,
    turn_s: tuple[float, float] = (0.5, 10.0),
    pause_s: tuple[float, float] = (0.1, 1.0),
    overlap: float = 0.0,
    level_db: tuple[float, float] = (-3.0, 3.0),
) -> Conversation:
    """A conversation of ``turns`` turns among the voices of ``clips`` (voice -> clip paths),
    each voice speaking at least once when there are enough turns. Turn lengths are drawn
    uniformly in ``turn_s`` (a clip shorter than the drawn length gives its whole speech);
    pauses in ``pause_s``; with ``overlap`` > 0 about that share of the speech time is
    overlapped (a turn starts before the previous one ends)."""
    rng = np.random.default_rng(seed)
    voices = sorted(clips)
    if len(voices) < 2:
        raise ValueError("a conversation needs clips of 2 voices or more")
    # every voice once (shuffled), then any voice but the previous one
    order = list(rng.permutation(voices))[: min(turns, len(voices))]
    while len(order) < turns:
        order.append(rng.choice([v for v in voices if v != order[-1]]))
    pieces: list[tuple[str, np.ndarray]] = []
    decoded: dict[str, np.ndarray] = {}
    for voice in order:
        path = clips[voice][int(rng.integers(len(clips[voice])))]
        key = str(path)
        if key not in decoded:
            wave, rate = read_audio(path)
            decoded[key] = _speech(resample(wave, rate, SAMPLE_RATE))
        speech = decoded[key]
        want = int(rng.uniform(*turn_s) * SAMPLE_RATE)
        if speech.shape[0] > want:
            at = int(rng.integers(0, speech.shape[0] - want + 1))
            speech = speech[at : at + want]
        gain = 10 ** (rng.uniform(*level_db) / 20)
        pieces.append((voice, (speech * gain).astype(np.float32)))
    total_speech = sum(p.shape[0] for _, p in pieces)
    # overlapped samples spread over the turn changes, each at most half the shorter turn
    per_change = overlap * total_speech / max(len(pieces) - 1, 1)
    starts, t = [], 0
    for k, (_, piece) in enumerate(pieces):
        if k > 0:
            prev = pieces[k - 1][1].shape[0]
            if overlap > 0:
                back = int(min(per_change, prev / 2, piece.shape[0] / 2))
                t -= back
            else:
                t += int(rng.uniform(*pause_s) * SAMPLE_RATE)
        starts.append(max(t, 0))
        t = starts[-1] + piece.shape[0]
    lead = int(rng.uniform(*pause_s) * SAMPLE_RATE)
    wave = np.zeros(t + 2 * lead, np.float32)
    out_turns = []
    for (voice, piece), start in zip(pieces, starts, strict=True):
        a = start + lead
        wave[a : a + piece.shape[0]] += piece
        out_turns.append(Turn(a / SAMPLE_RATE, (a + piece.shape[0]) / SAMPLE_RATE, voice))
    peak = float(np.abs(wave).max())
    if peak > 0.99:
        wave *= 0.99 / peak
    return Conversation(wave, out_turns)

"""The conversations the diarization benchmark and tests are built from: each reference turn
holds its voice's audio and nothing else, no voice takes two turns in a row, and ``overlap``
overlaps turns (a test-suite review: all three could be broken with every fast test passing)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import soundfile as sf

from whichvoice.audio import SAMPLE_RATE
from whichvoice.conversation import make_conversation

from .conftest import warble


def _clips(tmp_path: Path) -> dict[str, list[Path]]:
    """Three "voices", each a 4 s warble at its own pitch."""
    clips = {}
    for voice, freq in (("a", 150.0), ("b", 300.0), ("c", 600.0)):
        path = tmp_path / f"{voice}.wav"
        sf.write(path, warble(freq, seconds=4.0), SAMPLE_RATE)
        clips[voice] = [path]
    return clips


def _pitch(wave: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(wave.shape[0])))
    return float(np.argmax(spectrum) * SAMPLE_RATE / wave.shape[0])


def test_each_turn_holds_its_voice_and_turns_change_voice(tmp_path: Path) -> None:
    conv = make_conversation(_clips(tmp_path), turns=8, seed=4, turn_s=(1.0, 3.0))
    assert len(conv.turns) == 8 and {t.voice for t in conv.turns} == {"a", "b", "c"}
    assert all(a.voice != b.voice for a, b in itertools.pairwise(conv.turns))
    pitch = {"a": 150.0, "b": 300.0, "c": 600.0}
    for turn in conv.turns:
        a, b = round(turn.start * SAMPLE_RATE), round(turn.end * SAMPLE_RATE)
        assert 1.0 - 1e-3 <= turn.end - turn.start <= 3.0 + 1e-3
        inner = conv.wave[a + 800 : b - 800]  # the turn's own audio, edges aside
        assert abs(_pitch(inner) - pitch[turn.voice]) < 20, turn
        assert np.abs(conv.wave[max(a - 400, 0) : a]).max() == 0.0  # silence before it
        assert np.abs(conv.wave[b : b + 400]).max() == 0.0  # and after it (no overlap asked)
    assert conv.turns[-1].end < conv.duration_s


def test_overlap_overlaps_turns_by_about_that_share_of_the_speech(tmp_path: Path) -> None:
    conv = make_conversation(_clips(tmp_path), turns=8, seed=4, turn_s=(2.0, 3.0), overlap=0.1)
    pairs = list(itertools.pairwise(conv.turns))
    assert all(b.start < a.end for a, b in pairs)  # each change of voice overlaps
    overlapped = sum(a.end - b.start for a, b in pairs)
    speech = sum(t.end - t.start for t in conv.turns)
    assert 0.05 <= overlapped / speech <= 0.15, overlapped / speech

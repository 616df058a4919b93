"""Multi-condition enrollment (``whichvoice.prototypes``): the degraded copies, a voice scored by
its best prototype, and galleries of one prototype a voice (made before) still working."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from whichvoice.audio import SAMPLE_RATE, Decoded
from whichvoice.errors import SilentAudioError, WhichvoiceError
from whichvoice.gallery import Gallery
from whichvoice.prototypes import (
    CONDITIONS,
    MemoryVoice,
    PrototypeError,
    condition_copies,
    embed_enrollment,
    voice_refs,
)


def speechlike(seconds: float = 2.0, seed: int = 0) -> np.ndarray:
    """A harmonic tone with a moving pitch and syllable-rate envelope (not silence, not
    white noise), float32 at 16 kHz."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    f0 = 120 + 20 * np.sin(2 * np.pi * 0.7 * t) + rng.uniform(-10, 10)
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    wave = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2
    return (0.2 * wave * envelope).astype(np.float32)


def test_copies_are_degraded_versions_of_the_clip_and_the_same_every_time() -> None:
    wave = speechlike()
    copies = condition_copies(wave)
    assert len(copies) == len(CONDITIONS) - 1
    again = condition_copies(wave)
    other = condition_copies(speechlike(seed=1))
    for c, a, o in zip(copies, again, other, strict=True):
        assert c.dtype == np.float32 and c.shape == wave.shape
        assert np.array_equal(c, a)  # seeded by the clip: enrollment is reproducible
        assert np.isclose(np.abs(c).max(), 0.5, atol=1e-3)
        assert abs(np.corrcoef(c, wave)[0, 1]) < 0.999  # really changed
        assert not np.allclose(c[: len(o)], o)
    phone = np.abs(np.fft.rfft(copies[2]))
    freqs = np.fft.rfftfreq(wave.shape[0], 1 / SAMPLE_RATE)
    assert phone[freqs > 4000].sum() < 0.05 * phone[(freqs > 300) & (freqs < 3400)].sum()


def test_a_voice_scores_by_its_best_prototype() -> None:
    e = np.eye(4, dtype=np.float32)
    voices = [
        MemoryVoice("a", np.concatenate([e[0], 2 * e[1]])),  # two prototypes, any length
        MemoryVoice("b", e[2]),  # one prototype: a voice enrolled before prototypes
    ]
    refs = voice_refs(voices, 4)
    assert refs.names == ["a", "b"] and len(refs) == 2
    assert np.allclose(np.linalg.norm(refs.rows, axis=1), 1)
    clip = np.array([0.6, 0.8, 0, 0], np.float32)
    assert np.allclose(refs.scores(clip), [0.8, 0.0])
    many = refs.scores(np.stack([clip, e[2]]))
    assert many.shape == (2, 2) and np.allclose(many[1], [0, 1])
    assert voice_refs([], 4).scores(clip).shape == (0,)
    # each voice's first row, mixed numbers of prototypes: the running count (a sum over the
    # rows before each voice made a 3,000-voice gallery's identify 229 ms: a review)
    mixed = [MemoryVoice(f"v{i}", np.tile(e[i % 4], 1 + i % 3)) for i in range(50)]
    refs = voice_refs(mixed, 4)
    assert list(refs.starts) == list(np.cumsum([0] + [1 + i % 3 for i in range(49)]))
    assert refs.rows.shape[0] == sum(1 + i % 3 for i in range(50))


def test_a_voice_enrolled_with_another_model_is_refused_in_one_line() -> None:
    with pytest.raises(PrototypeError, match="'a' was enrolled with embeddings of size 6") as e:
        voice_refs([MemoryVoice("a", np.ones(6, np.float32))], 4)
    assert "\n" not in str(e.value)


class CopyStub:
    """An encoder that finds no speech in the noise copy of any clip and embeds the others
    as a fixed vector a kind."""

    def embed_many(self, sources):
        for s in sources:
            if "(noise copy)" in s.name:
                yield SilentAudioError(f"{s.name}: no speech")
            elif "(" in s.name:
                yield np.array([0.0, 1.0], np.float32), 1.0
            else:
                yield np.array([3.0, 4.0], np.float32), 1.5


def test_enrollment_rows_hold_each_copy_and_fall_back_to_the_clean_clip() -> None:
    clip = Decoded(speechlike(), SAMPLE_RATE, "clip")
    silent = Decoded(np.zeros(SAMPLE_RATE, np.float32), SAMPLE_RATE, "silent")
    out = list(embed_enrollment(CopyStub(), [clip, silent, clip], check_speech=False))
    assert isinstance(out[1], WhichvoiceError)  # the input's own error, in its place
    row, speech = out[0]
    assert speech == 1.5 and row.shape == (2 * len(CONDITIONS),)
    blocks = row.reshape(len(CONDITIONS), 2)
    assert np.allclose(blocks[0], [0.6, 0.8])  # clean, made unit length
    assert np.allclose(blocks[1], [0.6, 0.8])  # the noise copy had no speech: clean instead
    assert np.allclose(blocks[2:], [0.0, 1.0])
    assert np.allclose(out[2][0], row)


def test_enrollment_makes_each_sources_copies_as_it_is_read() -> None:
    clip = Decoded(speechlike(), SAMPLE_RATE, "clip")
    silent = Decoded(np.zeros(SAMPLE_RATE, np.float32), SAMPLE_RATE, "silent")
    read = []

    def sources():
        for i, s in enumerate([silent, clip, silent, clip, silent, silent]):
            read.append(i)
            yield s

    out = embed_enrollment(CopyStub(), sources(), check_speech=False)
    first = next(out)  # the unreadable first source, once the next one is being embedded
    assert isinstance(first, WhichvoiceError) and read == [0, 1]
    assert isinstance(next(out), tuple) and read == [0, 1]  # nothing read ahead of need
    rest = list(out)
    assert [isinstance(r, WhichvoiceError) for r in rest] == [True, False, True, True]
    assert read == list(range(6))


@pytest.mark.slow
def test_enroll_stores_prototypes_and_old_galleries_keep_working(
    enroll_clips: dict[str, list[Path]], tmp_path: Path
) -> None:
    from whichvoice.encoders import load_encoder, model_id
    from whichvoice.verification import enroll, identify, verify

    encoder = load_encoder("bundled")
    awb, ked = enroll_clips["flite:awb"], enroll_clips["festival:ked_diphone"]
    with Gallery(tmp_path / "g.sqlite", model_id(encoder)) as g:
        voice, failed = enroll(encoder, g, "awb", awb[:3])
        assert not failed
        dim = voice.embedding.shape[0] // len(CONDITIONS)
        assert voice.embedding.shape[0] == dim * len(CONDITIONS)
        # a voice stored before prototypes: one clean mean
        clean = np.stack([e for e, _ in encoder.embed_many(ked[:3])]).mean(0)
        g.enroll("ked", clean[None] / np.linalg.norm(clean), 9.0)
        old = g.get("ked").embedding.shape
        voice, _ = enroll(encoder, g, "ked", ked[3:4])  # more clips: its clean mean grows
        assert voice.embedding.shape == old and voice.clips == 2
        named = identify(encoder, g, [awb[5], ked[5]])
        assert [n.voice for n in named] == ["awb", "ked"]
        v = verify(encoder, g, "awb", [awb[6]])[0]
        assert v.accept
        # the best prototype: never under the clean prototype's score
        emb = encoder.embed(awb[6])[0]
        clean_proto = g.get("awb").embedding[:dim]
        assert v.score >= float(emb @ clean_proto / np.linalg.norm(clean_proto)) - 1e-5


def test_voices_enrolled_in_memory_average_their_clips(monkeypatch: pytest.MonkeyPatch) -> None:
    """``refs_from_clips`` (the benchmarks' enrollment) averages every clip's prototype row,
    as a gallery does (a test-suite review: using the first clip alone passed), and raises
    the error of a clip it cannot use."""
    import whichvoice.prototypes as pt

    rng = np.random.default_rng(2)
    rows = [rng.normal(size=4 * len(pt.CONDITIONS)).astype(np.float32) for _ in range(3)]

    def enrollment(encoder, sources):
        return iter([(rows[i], 1.0) for i in range(len(sources))])

    monkeypatch.setattr(pt, "embed_enrollment", enrollment)
    refs = pt.refs_from_clips(None, {"b": ["x", "y", "z"], "a": ["x"]})
    assert refs.names == ["a", "b"]
    mean = pt.voice_refs([pt.MemoryVoice("b", np.mean(rows, axis=0))], 4)
    first = pt.voice_refs([pt.MemoryVoice("b", rows[0])], 4)
    probe = rng.normal(size=(5, 4)).astype(np.float32)
    assert np.allclose(refs.scores(probe)[:, 1], mean.scores(probe)[:, 0], atol=1e-6)
    assert not np.allclose(refs.scores(probe)[:, 1], first.scores(probe)[:, 0], atol=1e-3)

    def failing(encoder, sources):
        return iter([SilentAudioError("x: no speech found")])

    monkeypatch.setattr(pt, "embed_enrollment", failing)
    with pytest.raises(SilentAudioError, match="no speech"):
        pt.refs_from_clips(None, {"a": ["x"]})

"""The evaluation protocol's pools cannot overlap: voices, sentences, and the audio itself."""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path

import pytest

from whichvoice.corpus import SynthConfig, read_manifest, synthesize_corpus
from whichvoice.protocol import (
    VOICE_RANGES,
    pool_of_voice,
    pool_sentences,
    pool_voices,
)
from whichvoice.sentences import bundled_sentences
from whichvoice.voices import resolve_voices


def test_voice_pools_are_disjoint_reserved_and_real() -> None:
    pools = {p: pool_voices(p, 30) for p in VOICE_RANGES}
    assert pools["dev"] == pool_voices("dev", 30)  # the same on every call and machine
    for a in pools:
        assert all(pool_of_voice(v) == a for v in pools[a])
        for b in pools:
            if a != b:
                assert not set(pools[a]) & set(pools[b])
    ranges = sorted((r.start, r.stop) for r in VOICE_RANGES.values())
    assert all(hi <= lo for (_, hi), (lo, _) in itertools.pairwise(ranges))
    from whichvoice.conditions import BABBLE_VOICES

    assert min(BABBLE_VOICES) >= max(r.stop for r in VOICE_RANGES.values())
    assert len(resolve_voices(pools["test"][:5])) == 5
    assert pool_of_voice("flite:slt") is None and pool_of_voice("espeak-ng:en-us+m3") is None
    with pytest.raises(ValueError, match="unknown pool"):
        pool_voices("holdout", 3)


def test_the_named_voice_sets_of_each_pool_never_meet() -> None:
    """The engines' voices and the classifier's other voices: no voice in two pools (a
    test-suite review moved a dev voice into test and nothing failed), and no test voice
    among the voices anything trains or chooses on."""
    from whichvoice.protocol import ENGINE_VOICES, OTHER_VOICES

    for a, b in itertools.combinations(ENGINE_VOICES, 2):
        assert not set(ENGINE_VOICES[a]) & set(ENGINE_VOICES[b]), (a, b)
    assert not set(OTHER_VOICES["dev"]) & set(OTHER_VOICES["test"])
    chosen_on = set(OTHER_VOICES["dev"]) | set(ENGINE_VOICES["train"]) | set(ENGINE_VOICES["dev"])
    assert not chosen_on & (set(OTHER_VOICES["test"]) | set(ENGINE_VOICES["test"]))
    assert len(resolve_voices(",".join(ENGINE_VOICES["test"][:2]))) == 2  # real voice ids


def test_sentence_pools_are_disjoint_from_each_other_and_from_training() -> None:
    dev, test = pool_sentences("dev", 2000), pool_sentences("test", 2000)
    assert len({s.text for s in dev}) == len({s.id for s in dev}) == 2000
    assert not {s.text for s in dev} & {s.text for s in test}
    assert not ({s.text for s in dev} | {s.text for s in test}) & {
        s.text for s in bundled_sentences()
    }
    # disjoint by construction, not by the chance of two seeded draws: each pool takes one
    # third of the texts by their hash (a review's mutant giving both one third passed)
    from whichvoice import protocol

    assert {protocol._third(s.text) for s in dev} == {1}
    assert {protocol._third(s.text) for s in test} == {2}
    assert pool_sentences("test", 50) == pool_sentences("test", 50)
    assert pool_sentences("test", 50, seed=1) != pool_sentences("test", 50)
    assert all(4 <= len(s.text.split()) <= 30 and len(s.text) < 300 for s in test)
    with pytest.raises(ValueError):
        pool_sentences("train", 5)


def _hashes(corpus: Path) -> set[str]:
    return {
        hashlib.sha256((corpus / c.path).read_bytes()).hexdigest()
        for c in read_manifest(corpus / "manifest.jsonl")
    }


def test_no_test_clip_is_byte_identical_to_a_training_or_dev_clip(tmp_path: Path) -> None:
    """The deterministic engines make the same bytes for the same voice and sentence: the
    pools must differ in both, so the test pool's audio never occurs among the others'."""
    made = {}
    for pool, sentences in (
        ("train", bundled_sentences()[:3]),
        ("dev", pool_sentences("dev", 3)),
        ("test", pool_sentences("test", 3)),
    ):
        corpus = tmp_path / pool
        synthesize_corpus(
            corpus,
            sentences,
            SynthConfig(voices=(",".join(pool_voices(pool, 2)),), assign="all"),
            progress=False,
        )
        made[pool] = _hashes(corpus)
        assert len(made[pool]) == 6
    assert not made["test"] & (made["train"] | made["dev"])
    assert not made["dev"] & made["train"]

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from whichvoice.corpus import Clip
from whichvoice.dataset import (
    DatasetError,
    PrepareConfig,
    ensure_prepared,
    open_prepared,
    prepare,
    split_clips,
)
from whichvoice.features import FeatureConfig


def fake_clips(n_sentences: int, voices: list[str], assign_all: bool) -> list[Clip]:
    clips = []
    for s in range(n_sentences):
        chosen = voices if assign_all else [voices[s % len(voices)]]
        for v in chosen:
            clips.append(Clip(f"s{s}-{v}", f"a/{s}-{v}.mp3", v, "x", f"s{s}", "t", 16000, 1.0, "0"))
    return clips


@pytest.mark.parametrize("assign_all", [True, False])
def test_split_is_grouped_stratified_and_deterministic(assign_all: bool) -> None:
    voices = [f"e:v{i}" for i in range(8)]
    clips = fake_clips(400, voices, assign_all)
    split = split_clips(clips, seed=3)
    assert split == split_clips(clips, seed=3)
    assert split != split_clips(clips, seed=4)
    by_sentence: dict[str, set[str]] = {}
    for c in clips:
        by_sentence.setdefault(c.sentence_id, set()).add(split[c.id])
    assert all(len(s) == 1 for s in by_sentence.values())  # no sentence in two splits
    counts = Counter(split.values())
    assert abs(counts["test"] / len(clips) - 0.1) < 0.02
    assert abs(counts["val"] / len(clips) - 0.1) < 0.02
    for v in voices:  # every voice in every split, in proportion
        per = Counter(split[c.id] for c in clips if c.voice == v)
        assert per["test"] >= 4 and per["val"] >= 4 and per["train"] >= 35
    if assign_all:  # one bucket of 400 sentences: 40 each, exactly (a test-suite review)
        assert counts["test"] == counts["val"] == 40 * 8


def test_a_small_bucket_of_sentences_still_has_held_out_ones() -> None:
    """Ten sentences of one voice: one each to val and test, eight to train; under three,
    all to train (a review's mutant held buckets under 30 out of val and test, unseen)."""
    ten = fake_clips(10, ["e:v0"], True)
    assert Counter(split_clips(ten, seed=1).values()) == {"train": 8, "val": 1, "test": 1}
    two = fake_clips(2, ["e:v0"], True)
    assert set(split_clips(two, seed=1).values()) == {"train"}


@pytest.mark.slow
def test_prepare_writes_memory_mappable_arrays(small_corpus: Path, tmp_path: Path) -> None:
    out = prepare(small_corpus, tmp_path / "prep", PrepareConfig(seed=1), progress=False)
    data = open_prepared(out)
    assert len(data.labels) == 4
    meta = json.loads((out / "dataset.json").read_text())
    assert sum(c["clips"] for c in meta["counts"].values()) == 160
    sentences = {}
    for row in data.index:
        assert sentences.setdefault(row["sentence_id"], row["split"]) == row["split"]
    for split in ("train", "val", "test"):
        x, y, clip = data.arrays(split)
        assert isinstance(x, np.memmap)
        assert x.dtype == np.float16 and x.shape[1:] == (32000,)
        assert len(x) == len(y) == len(clip) > 0
        assert set(np.unique(y)) <= set(range(4))
        # each window carries its clip's voice (a mutant storing label % 2 passed the above)
        voice_of = [data.labels.index(data.index[c]["voice"]) for c in clip]
        assert (np.asarray(y) == np.asarray(voice_of)).all()
        assert all(data.index[c]["split"] == split for c in np.unique(clip))
        assert np.isfinite(np.asarray(x[:50], dtype=np.float32)).all()
    index, mp3 = data.mp3_copies()
    train_x = data.arrays("train")[0]
    assert mp3.shape[1:] == train_x.shape[1:] and len(index) == len(mp3)
    assert 0.3 * len(train_x) <= len(mp3) <= 0.5 * len(train_x)
    # the same speech through a codec: close to, but not the same as, the clean window
    a, b = np.asarray(train_x[index[0]], np.float32), np.asarray(mp3[0], np.float32)
    assert not np.allclose(a, b) and np.abs(b).max() > 0.1 * np.abs(a).max()
    assert not list(out.rglob("*.pkl")) and not list(out.rglob("*.pickle"))
    # prepared once, then reused from the cache
    cached = ensure_prepared(small_corpus, PrepareConfig(seed=1), progress=False)
    again = ensure_prepared(small_corpus, PrepareConfig(seed=1), progress=False)
    assert cached.root == again.root and cached.root.parent.name == "prepared"


@pytest.mark.slow
def test_prepare_seed_images(small_corpus: Path, tmp_path: Path) -> None:
    cfg = PrepareConfig(features=FeatureConfig(name="seed-image"), seed=0)
    data = open_prepared(prepare(small_corpus, tmp_path / "seed", cfg, progress=False))
    x, _, clip = data.arrays("test")
    assert x.shape[1:] == (3, 140, 140)
    assert len(np.unique(clip)) == len(clip)  # one excerpt per clip, as the talk
    assert float(x.min()) >= 0 and float(x.max()) <= 1


def test_not_a_corpus(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not a corpus"):
        ensure_prepared(tmp_path, PrepareConfig())


def test_a_tiny_corpus_is_warned_of_and_one_voice_refused(
    small_corpus: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A corpus of a few sentences, one voice each: its val and test splits held one voice of
    four, and training reported a test accuracy of 1.0 without a word (review). One voice
    alone is refused in words, not as a Python list."""
    import dataclasses

    from whichvoice.corpus import read_manifest

    clips = read_manifest(small_corpus / "manifest.jsonl")
    voices = sorted({c.voice for c in clips})
    # 12 sentences, each read by one voice in turn: 3 a voice, too few for a split each
    sentences = sorted({c.sentence_id for c in clips})[:12]
    chosen = [c for c in clips if c.sentence_id in sentences
              and c.voice == voices[sentences.index(c.sentence_id) % 4]]  # fmt: skip
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    (tiny / "audio").symlink_to(small_corpus / "audio")
    rows = [json.dumps(dataclasses.asdict(c)) for c in chosen]
    (tiny / "manifest.jsonl").write_text("\n".join(rows) + "\n")
    with caplog.at_level("WARNING"):
        prepare(tiny, tmp_path / "prep", PrepareConfig(), progress=False)
    assert "the test split holds clips of" in caplog.text and "of the 4 voices" in caplog.text
    one = tmp_path / "one"
    one.mkdir()
    (one / "audio").symlink_to(small_corpus / "audio")
    (one / "manifest.jsonl").write_text(
        "\n".join(json.dumps(dataclasses.asdict(c)) for c in clips if c.voice == voices[0])
    )
    with pytest.raises(DatasetError, match=f"found only {re.escape(voices[0])}$"):
        prepare(one, tmp_path / "prep1", PrepareConfig(), progress=False)


def test_a_corpus_that_cannot_be_written_says_how_to_prepare_it_elsewhere(
    small_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Training from a read-only corpus failed with 'cannot write the prepared data here'
    and no way on (review): the error names `whichvoice prepare`."""
    from whichvoice import dataset
    from whichvoice.errors import OutputError

    def refused(*args, **kwargs):
        raise OutputError(f"{small_corpus / 'prepared'}: cannot write the prepared data here")

    monkeypatch.setattr(dataset, "cache_dir", lambda source, cfg: tmp_path / "never")
    monkeypatch.setattr(dataset, "prepare", refused)
    with pytest.raises(OutputError, match=r"whichvoice prepare .* DIR` and give DIR"):
        ensure_prepared(small_corpus, PrepareConfig())


def test_a_full_disk_while_preparing_is_said_and_leaves_nothing(
    small_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review (resources): numpy's short write was the whole message ("7296000 requested and
    505792 written", exit 2) and an empty prepared/ folder stayed in the corpus."""
    import shutil

    from whichvoice import dataset
    from whichvoice.errors import OutputLostError

    corpus = tmp_path / "corpus"
    shutil.copytree(small_corpus, corpus, ignore=shutil.ignore_patterns("prepared"))

    def short_write(file, arr, *args, **kwargs):
        raise OSError(f"{arr.nbytes} requested and 512 written")

    monkeypatch.setattr(dataset.np, "save", short_write)
    with pytest.raises(OutputLostError, match=r"cannot write the prepared data \(.* written: "
                       r"is its disk full\?\); nothing of it was kept"):  # fmt: skip
        ensure_prepared(corpus, PrepareConfig(), progress=False)
    assert not (corpus / "prepared").exists()
    assert not [p for p in corpus.iterdir() if p.name.startswith(".")], list(corpus.iterdir())


def test_prepare_never_replaces_what_is_no_prepared_data(
    small_corpus: Path, tmp_path: Path
) -> None:
    """`prepare CORPUS OUT` emptied OUT whatever it held, exit 0: a trained run, a folder of
    the user's, the corpus itself (review). Prepared data, or an empty folder, is replaced;
    a killed run's temporary folder is removed by the next."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("a")
    for out in (mine, small_corpus, mine / "keep.txt"):
        with pytest.raises(DatasetError, match=r"give a new or empty folder|a file, not a folder"):
            prepare(small_corpus, out, PrepareConfig(), progress=False)
    assert (mine / "keep.txt").read_text() == "a"
    assert (small_corpus / "manifest.jsonl").is_file()
    out = tmp_path / "prep"
    stale = tmp_path / f".prep.tmp-{2**22 + 12345}"  # a pid no process has
    stale.mkdir()
    prepare(small_corpus, out, PrepareConfig(), progress=False)
    prepare(small_corpus, out, PrepareConfig(), progress=False)  # prepared data: replaced
    assert (out / "dataset.json").is_file() and not stale.exists()

"""Existing recordings become a corpus: three layouts, checks, resume, and the corpus works."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import HUMAN_DEV
from whichvoice.corpus import read_manifest
from whichvoice.dataset import load_corpus, split_clips
from whichvoice.recordings import ImportConfig, RecordingsError, import_recordings

PATTERN = r"^(?P<text>\d)_(?P<speaker>[a-z]+)_"


def _flat(tmp_path: Path, speakers=("jackson", "theo"), digits=(1, 2, 3), takes=(0, 1)) -> Path:
    folder = tmp_path / "flat"
    folder.mkdir(parents=True)
    for s in speakers:
        for d in digits:
            for t in takes:
                shutil.copy(HUMAN_DEV / f"{d}_{s}_{t}.wav", folder)
    return folder


def test_flat_folder_with_a_pattern_becomes_a_corpus_and_resumes(tmp_path: Path) -> None:
    out = tmp_path / "corpus"
    summary = import_recordings(_flat(tmp_path), out, ImportConfig(pattern=PATTERN), progress=False)
    assert (summary.made, summary.skipped, summary.speakers, summary.failed) == (12, 0, 2, [])
    clips = load_corpus(out)
    assert {c.voice for c in clips} == {"human:jackson", "human:theo"}
    assert {c.engine for c in clips} == {"human"}
    assert all(c.sample_rate == 8000 and 0.1 < c.duration_s < 2 for c in clips)
    # a text's recordings share a sentence id, so a split never divides them
    by_text = {}
    for c in clips:
        by_text.setdefault(c.text, set()).add(c.sentence_id)
    assert sorted(by_text) == ["1", "2", "3"] and all(len(v) == 1 for v in by_text.values())
    split = split_clips(clips, seed=0, val=0.34, test=0.34)
    assert len({(c.sentence_id, split[c.id]) for c in clips}) == 3
    # stored unchanged
    first = next(c for c in clips if c.id == "human-jackson-1_jackson_0.wav")
    assert (out / first.path).read_bytes() == (HUMAN_DEV / "1_jackson_0.wav").read_bytes()

    again = import_recordings(
        _flat(tmp_path / "b"), out, ImportConfig(pattern=PATTERN), progress=False
    )
    assert (again.made, again.skipped) == (0, 12)
    assert len(read_manifest(out / "manifest.jsonl")) == 12


def test_speaker_folders_and_csv_with_a_bad_file(tmp_path: Path) -> None:
    src = tmp_path / "people"
    for speaker in ("nicolas", "lucas"):
        (src / speaker / "day1").mkdir(parents=True)
        for t in range(2):
            shutil.copy(HUMAN_DEV / f"5_{speaker}_{t}.wav", src / speaker / "day1")
    (src / "lucas" / "notes.wav").write_text("not a recording")
    # a damaged file whose name is not UTF-8: its reason in failures.jsonl was a traceback
    (src / "lucas" / os.fsdecode(b"d\xe9g\xe2t.wav")).write_bytes(b"RIFF, but damaged")
    # a link to nothing (a disk not mounted) fails with its reason, not left out quietly
    (src / "lucas" / "gone.wav").symlink_to(tmp_path / "unmounted.wav")
    summary = import_recordings(src, tmp_path / "a", ImportConfig(engine="studio"), progress=False)
    assert (summary.made, len(summary.failed)) == (4, 3)
    reasons = sorted(f.reason for f in summary.failed)
    assert any("notes.wav" in r and "not audio" in r for r in reasons), reasons
    assert any("gone.wav" in r and "no such file" in r for r in reasons), reasons
    written = (tmp_path / "a" / "failures.jsonl").read_text(encoding="utf-8")
    assert "d\\udce9g\\udce2t.wav" in written and len(written.splitlines()) == 3
    clips = load_corpus(tmp_path / "a")
    assert {c.voice for c in clips} == {"studio:nicolas", "studio:lucas"}
    assert all(c.path.startswith("audio/studio/") for c in clips)
    assert (tmp_path / "a" / "failures.jsonl").is_file()

    table = tmp_path / "list.csv"
    table.write_text(
        "path,voice,text\n"
        "people/nicolas/day1/5_nicolas_0.wav,Nicolas B,five\n"
        "people/lucas/day1/5_lucas_1.wav,lucas,\n",
        encoding="utf-8",
    )
    import_recordings(table, tmp_path / "b", progress=False)
    clips = {c.voice: c for c in load_corpus(tmp_path / "b")}
    assert set(clips) == {"human:Nicolas_B", "human:lucas"}
    assert clips["human:Nicolas_B"].text == "five"
    assert clips["human:lucas"].text == "" and clips["human:lucas"].sentence_id.startswith("rec")


@pytest.mark.parametrize(
    ("make", "pattern", "message"),
    [
        (lambda p: p / "missing", None, "no such file or folder"),
        (lambda p: _flat(p), None, "not in speaker folders: give --pattern"),
        (lambda p: _flat(p), r"(?P<text>\d)_", "no \\(\\?P<speaker>"),
        (lambda p: _flat(p), r"(?P<speaker>[", "not a regular expression"),
        (lambda p: _flat(p), r"^(?P<speaker>zzz)", "no audio file name matches"),
        (
            lambda p: (p / "x.csv").write_text("file,who\na.wav,b\n") and p / "x.csv",
            None,
            "path,voice",
        ),
    ],
)
def test_layouts_that_cannot_be_read_say_why(tmp_path: Path, make, pattern, message) -> None:
    with pytest.raises(RecordingsError, match=message):
        import_recordings(
            make(tmp_path), tmp_path / "out", ImportConfig(pattern=pattern), progress=False
        )
    assert not (tmp_path / "out" / "manifest.jsonl").exists()


def _split_layout(tmp_path: Path) -> Path:
    src = tmp_path / "data"
    for split, take in (("train", 0), ("test", 1)):
        for speaker in ("jackson", "theo"):
            (src / split / speaker).mkdir(parents=True)
            for d in (1, 2):
                shutil.copy(HUMAN_DEV / f"{d}_{speaker}_{take}.wav", src / split / speaker)
    return src


def test_a_layout_of_splits_is_refused_and_its_folders_are_labels(tmp_path: Path) -> None:
    """<split>/<speaker>/<clips> was imported as the voices "train" and "test" (review): it is
    refused, saying which folder to import, and a split's folder is a labels list as it is."""
    from whichvoice.dataset import DatasetError
    from whichvoice.evaluate import labelled_files

    src = _split_layout(tmp_path)
    with pytest.raises(RecordingsError, match=r"\(test, train\) are splits, not speakers: "
                       rf"import {src / 'train'} "):  # fmt: skip
        import_recordings(src, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
    summary = import_recordings(src / "train", tmp_path / "out", progress=False)
    assert (summary.made, summary.speakers) == (4, 2)
    labels = sorted({c.voice for c in load_corpus(tmp_path / "out")})
    files = labelled_files(src / "test", labels)
    assert sorted((f.path.name, f.voice) for f in files) == [
        ("1_jackson_1.wav", "human:jackson"), ("1_theo_1.wav", "human:theo"),
        ("2_jackson_1.wav", "human:jackson"), ("2_theo_1.wav", "human:theo"),
    ]  # fmt: skip
    (src / "test" / "lucas").mkdir()
    shutil.copy(HUMAN_DEV / "1_lucas_0.wav", src / "test" / "lucas")
    with pytest.raises(DatasetError, match="does not know voice 'lucas'"):
        labelled_files(src / "test", labels)
    # one speaker called "test" beside others is a speaker
    (src / "train" / "test").mkdir()
    shutil.copy(HUMAN_DEV / "1_lucas_0.wav", src / "train" / "test")
    assert import_recordings(src / "train", tmp_path / "o2", progress=False).speakers == 3


def test_the_same_audio_in_two_files_stays_in_one_split_and_is_named(tmp_path: Path) -> None:
    """A WAV and its FLAC were two recordings, and prepare put some pairs in train and test
    (review): the copy takes the first's sentence id, and the import names it."""
    import soundfile as sf

    src = tmp_path / "people"
    for speaker in ("jackson", "theo"):
        (src / speaker).mkdir(parents=True)
        for d in (1, 2, 3):
            wav = src / speaker / f"{d}.wav"
            shutil.copy(HUMAN_DEV / f"{d}_{speaker}_0.wav", wav)
            wave, rate = sf.read(wav, dtype="int16")
            sf.write(src / speaker / f"{d}-copy.flac", wave, rate)
    summary = import_recordings(src, tmp_path / "out", progress=False)
    assert summary.made == 12 and len(summary.same_audio) == 6
    # the first in name order is kept as it is: '-' sorts before '.'
    assert summary.same_audio[0] == ["audio/human/jackson/1.wav", "audio/human/jackson/1-copy.flac"]
    clips = {c.path: c for c in load_corpus(tmp_path / "out")}
    for copy, first in summary.same_audio:
        assert clips[copy].sentence_id == clips[first].sentence_id
    assert len({c.sentence_id for c in clips.values()}) == 6
    assert "same_audio" in summary.to_dict()
    # a copy added later, imported by another run, is found too (it was missed: a review)
    shutil.copy(src / "theo" / "2.wav", src / "theo" / "2-later.wav")
    later = import_recordings(src, tmp_path / "out", progress=False)
    assert later.made == 1 and len(later.same_audio) == 1
    copy, first = later.same_audio[0]
    assert copy == "audio/human/theo/2-later.wav" and first.startswith("audio/human/theo/2")
    clips = {c.path: c for c in load_corpus(tmp_path / "out")}
    assert clips[copy].sentence_id == clips["audio/human/theo/2.wav"].sentence_id


@pytest.mark.slow  # CLI subprocesses with the encoder
def test_cli_imports_and_enrolls_from_the_corpus(tmp_path: Path, cli) -> None:
    out = tmp_path / "corpus"
    proc = cli(
        "import-corpus",
        str(_flat(tmp_path, digits=(1, 2, 3, 4, 5, 6), takes=(0, 1, 2))),
        str(out),
        "--pattern",
        PATTERN,
        "--quiet",
        check=True,
    )
    assert proc.stdout == ""
    gallery = tmp_path / "g.sqlite"
    cli(
        "enroll", "jackson", str(out / "audio/human/jackson"), "--gallery", str(gallery), check=True
    )
    proc = cli(
        "identify", str(out / "audio/human/jackson/1_jackson_0.wav"), "--gallery", str(gallery)
    )
    assert "jackson" in proc.stdout
    bad = cli("import-corpus", str(tmp_path / "flat"), str(tmp_path / "c"))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert bad.stderr.startswith("error: ") and "--pattern" in bad.stderr
    # a copy of a recording is said, also when quiet; a layout of splits is one line
    shutil.copy(tmp_path / "flat" / "1_theo_0.wav", tmp_path / "flat" / "1_theo_9.wav")
    copies = cli("import-corpus", str(tmp_path / "flat"), str(tmp_path / "e"), "--pattern",
                 PATTERN, "-q")  # fmt: skip
    assert (
        copies.returncode == 0
        and (
            "warning: 1 recording holds the same audio as another (first: "
            "audio/human/theo/1_theo_9.wav = audio/human/theo/1_theo_0.wav): imported, in the "
            "same split as it (its sentence), but counted twice in training and evaluation; "
            "remove the copies\n"
        )
        in copies.stderr
    ), copies.stderr
    splits = cli("import-corpus", str(_split_layout(tmp_path)), str(tmp_path / "d"))
    assert splits.returncode == 2 and splits.stderr.count("\n") == 1, splits.stderr
    assert "are splits, not speakers" in splits.stderr


@pytest.mark.slow
def test_cli_import_with_unusable_files_imports_the_rest_and_exits_1(tmp_path: Path, cli) -> None:
    flat = _flat(tmp_path, speakers=("jackson",), digits=(1, 2), takes=(0,))
    (flat / "3_jackson_0.wav").write_text("not audio")  # a text file named like a recording
    shutil.copy(flat / "1_jackson_0.wav", flat / "take-one.wav")  # no speaker in its name
    out = tmp_path / "corpus"
    proc = cli("import-corpus", str(flat), str(out), "--pattern", PATTERN, "--quiet")
    assert proc.returncode == 1 and proc.stdout == ""
    # --quiet drops the progress bar, not the warning nor the failures' summary line
    left_out, summary = proc.stderr.strip().splitlines()
    assert left_out == f"warning: 1 file of {flat} does not match --pattern and was left out"
    assert "1 failed" in summary and "failures.jsonl" in summary
    assert "Traceback" not in proc.stderr
    assert len(read_manifest(out / "manifest.jsonl")) == 2


@pytest.mark.slow  # CLI processes
def test_a_recording_with_too_little_speech_to_judge_is_imported_with_a_warning(
    tmp_path: Path, cli
) -> None:
    """A clip of 0.15 s was imported and trained on without a word, and every command that
    judges a clip then answered it "no speech found" (review): it is still imported (training
    may learn from it), and the import says which ones no command will judge."""
    import numpy as np
    import soundfile as sf

    flat = _flat(tmp_path, speakers=("jackson",), digits=(1, 2), takes=(0,))
    wave, rate = sf.read(flat / "1_jackson_0.wav", dtype="float32")
    loud = np.flatnonzero(np.abs(wave) > 0.1 * np.abs(wave).max())
    burst = wave[loud[0] : loud[0] + int(0.15 * rate)]
    quiet = np.zeros(rate // 2, np.float32)
    sf.write(flat / "3_jackson_0.wav", np.concatenate([quiet, burst, quiet]), rate)
    out = tmp_path / "corpus"
    summary = import_recordings(flat, out, ImportConfig(pattern=PATTERN), progress=False)
    assert summary.made == 3 and summary.little_speech == ["audio/human/jackson/3_jackson_0.wav"]
    proc = cli("import-corpus", str(flat), str(tmp_path / "again"), "--pattern", PATTERN, "-q")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.startswith("warning: 1 recording holds under 0.2 s of speech"), proc.stderr
    judged = cli("predict", str(tmp_path / "again" / summary.little_speech[0]))
    assert "no speech found" in judged.stdout  # as the import said
    # a resumed import (nothing left to import) names them again
    again = import_recordings(flat, out, ImportConfig(pattern=PATTERN), progress=False)
    assert again.skipped == 3 and again.little_speech == summary.little_speech


def test_speakers_named_in_any_script_stay_apart(tmp_path: Path) -> None:
    """Names outside ASCII were cut to what was left (李明 and 王芳 both became 'human:_', José
    'human:Jos'), so different people were merged into one voice without a word."""
    src = tmp_path / "people"
    names = ["李明", "王芳", "José", "Zoë", "Zoé"]
    takes = ["nicolas", "lucas", "george", "jackson", "theo"]
    for name, who in zip(names, takes, strict=True):
        (src / name).mkdir(parents=True)
        shutil.copy(HUMAN_DEV / f"3_{who}_0.wav", src / name)
    summary = import_recordings(src, tmp_path / "c", progress=False)
    assert summary.made == 5
    clips = load_corpus(tmp_path / "c")
    assert sorted(c.voice for c in clips) == sorted(f"human:{n}" for n in names)
    assert len({Path(c.path).parent for c in clips}) == 5  # a folder each
    # two names that become the same voice id are refused, not merged
    (src / "Zo é").mkdir()
    (src / "Zo_é").mkdir()
    for folder in ("Zo é", "Zo_é"):
        shutil.copy(HUMAN_DEV / "4_theo_0.wav", src / folder)
    with pytest.raises(RecordingsError, match=r"'Zo é' and 'Zo_é' would both be voice human:Zo_é"):
        import_recordings(src, tmp_path / "d", progress=False)


def test_one_name_in_two_spellings_is_one_speaker(tmp_path: Path) -> None:
    """Zoë typed composed in one folder name and decomposed in another (or with two spaces)
    is one person: one voice, not a refusal naming two identical-looking names."""
    import unicodedata

    src = tmp_path / "people"
    for name, who in (("Zoë", "theo"), (unicodedata.normalize("NFD", "Zoë"), "theo")):
        (src / name).mkdir(parents=True, exist_ok=True)
        shutil.copy(HUMAN_DEV / f"{len(name)}_{who}_0.wav", src / name)
    import_recordings(src, tmp_path / "c", progress=False)
    assert {c.voice for c in load_corpus(tmp_path / "c")} == {"human:Zoë"}


@pytest.mark.slow  # CLI processes, synthesis or imports
def test_names_out_of_ascii_keep_their_suffix_and_the_corpus_is_not_its_own_source(
    tmp_path: Path, caplog
) -> None:
    """é.wav was stored as a file 'wav', which no folder-taking command reads; a corpus made
    inside its source imported its own clips as a speaker 'corpus' on the next run; audio
    beside the speaker folders was left out without a word (review)."""
    from whichvoice.audio import listed_audio

    src = tmp_path / "src"
    (src / "bob").mkdir(parents=True)
    for i, name in enumerate(("é.wav", "ü.wav", "UPPER.WAV", "李明.wav")):
        shutil.copy(HUMAN_DEV / f"{i}_lucas_1.wav", src / "bob" / name)
    shutil.copy(HUMAN_DEV / "4_theo_0.wav", src / "stray.wav")
    out = src / "corpus"  # inside its source
    with caplog.at_level("WARNING", logger="whichvoice.recordings"):
        for _ in range(2):
            summary = import_recordings(src, out, ImportConfig(), progress=False)
    assert summary.speakers == 1 and summary.made + summary.skipped == 4, summary
    assert "1 audio file of" in caplog.text and "in no speaker folder" in caplog.text
    stored = sorted(p.name for p in (out / "audio" / "human" / "bob").iterdir())
    assert len(stored) == 4 and all(listed_audio(out / "audio/human/bob" / n) for n in stored)
    assert "UPPER.WAV" in stored and len(set(stored)) == 4
    with pytest.raises(RecordingsError, match="inside its own recordings"):
        import_recordings(src, src, ImportConfig(), progress=False)


def test_a_csv_of_a_header_alone_says_so(tmp_path: Path) -> None:
    (tmp_path / "e.csv").write_text("path,voice\n")
    with pytest.raises(RecordingsError, match="a header and no rows"):
        import_recordings(tmp_path / "e.csv", tmp_path / "out", ImportConfig(), progress=False)


@pytest.mark.slow  # CLI processes, synthesis or imports
def test_a_corpus_is_imported_again_only_under_its_own_label(tmp_path: Path) -> None:
    """The same recordings imported again with another --engine were stored a second time,
    as other voices (review); two imports at once are refused, as two synths are."""
    from whichvoice.errors import OutputError
    from whichvoice.files import held_alone
    from whichvoice.recordings import LOCK

    src = _flat(tmp_path, speakers=("theo",), digits=(1,), takes=(0, 1))
    out = tmp_path / "corpus"
    import_recordings(src, out, ImportConfig(pattern=PATTERN), progress=False)
    with pytest.raises(RecordingsError, match="imported with --engine human, not people"):
        import_recordings(src, out, ImportConfig(pattern=PATTERN, engine="people"), progress=False)
    assert {c.voice for c in load_corpus(out)} == {"human:theo"}
    with held_alone(out / LOCK, "a test"), pytest.raises(OutputError, match="another"):
        import_recordings(src, out, ImportConfig(pattern=PATTERN), progress=False)


@pytest.mark.slow  # a few hundred files copied and imported
def test_an_import_interrupted_says_how_to_go_on(tmp_path: Path) -> None:
    """Ctrl-C printed only "interrupted" where synth says to run the command again (review);
    what was imported is kept and the same command completes it. Ctrl-C stops soon: the
    pool's exit waited for all 3,000 files (CI timed out on a slow machine)."""
    import signal
    import subprocess
    import sys
    import time

    src = tmp_path / "src"
    for f in sorted(HUMAN_DEV.glob("*.wav")):  # 3,000 recordings of 6 speakers
        (src / f.stem.split("_")[1]).mkdir(parents=True, exist_ok=True)
        shutil.copy(f, src / f.stem.split("_")[1])
    out = tmp_path / "corpus"
    args = [sys.executable, "-m", "whichvoice", "import-corpus", str(src), str(out), "-q"]
    default_sigint = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # noqa: E731
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (out / "manifest.jsonl").is_file():
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("the import ended before it was interrupted")
    assert proc.returncode == 130 and "run the same command again" in err, err
    copied = len(list(out.rglob("*.wav")))  # what the pool went on storing after Ctrl-C
    assert copied < len(list(src.rglob("*.wav"))) / 4, f"{copied} stored after Ctrl-C"
    again = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert len(read_manifest(out / "manifest.jsonl")) == len(list(src.rglob("*.wav")))


def test_two_recordings_of_one_name_are_two_files(tmp_path: Path) -> None:
    """A CSV naming d1/1.wav and d2/1.wav for one speaker: two clips and two stored files,
    each its own source's bytes (a review's mutant storing both under one name, the second
    over the first, passed every fast test)."""
    import hashlib

    for folder, source in (("d1", "1_theo_0.wav"), ("d2", "2_theo_0.wav")):
        (tmp_path / folder).mkdir()
        shutil.copy(HUMAN_DEV / source, tmp_path / folder / "1.wav")
    (tmp_path / "list.csv").write_text("path,voice\nd1/1.wav,theo\nd2/1.wav,theo\n")
    import_recordings(tmp_path / "list.csv", tmp_path / "out", progress=False)
    clips = read_manifest(tmp_path / "out" / "manifest.jsonl")
    assert len({c.id for c in clips}) == len({c.path for c in clips}) == 2

    def digest(path: Path) -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest()

    stored = {digest(tmp_path / "out" / c.path) for c in clips}
    assert stored == {digest(tmp_path / f / "1.wav") for f in ("d1", "d2")}

import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from whichvoice.gallery import (
    Gallery,
    GalleryError,
    GalleryModelError,
    GalleryUnusableError,
    VoiceExistsError,
    VoiceNameError,
    default_gallery_path,
    read_export,
    voice_name,
)


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_enroll_accumulates_the_mean(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    a, b = unit(rng.normal(size=(3, 8))), unit(rng.normal(size=(2, 8)))
    with Gallery(tmp_path / "g.sqlite", "model-1") as g:
        first = g.enroll("Joanna", a, 9.0)
        assert first.clips == 3 and first.seconds == 9.0
        second = g.enroll("Joanna", b, 6.0)
        assert second.clips == 5 and second.seconds == 15.0 and second.created == first.created
        assert np.allclose(second.embedding, np.vstack([a, b]).mean(axis=0), atol=1e-6)
        g.enroll("Matthew", b, 6.0)
        assert g.names() == ["Joanna", "Matthew"]
    with Gallery(tmp_path / "g.sqlite", "model-1") as g:  # it persists
        assert np.allclose(g.get("Joanna").embedding, second.embedding)
        g.remove("Matthew")
        assert g.names() == ["Joanna"]
        with pytest.raises(GalleryError, match="'Nobody' is not enrolled"):
            g.get("Nobody")
        with pytest.raises(GalleryError):
            g.remove("Nobody")


def test_a_gallery_moved_or_removed_while_open_is_not_written_to(tmp_path: Path) -> None:
    """Found by a review: a gallery file moved (a backup script) or removed (its folder
    deleted) while `enroll` held it open took the enrollment into a file no path names, or
    a log left beside the old name, and the command said "enrolled" with exit 0."""
    from whichvoice.gallery import GalleryMovedError

    rows = unit(np.random.default_rng(1).normal(size=(2, 8)))
    folder = tmp_path / "sub"
    folder.mkdir()
    path = folder / "g.sqlite"
    with Gallery(path, "model-1") as g:
        g.enroll("Joanna", rows, 6.0)
    with Gallery(path, "model-1") as g:
        os.rename(path, folder / "moved.sqlite")
        with pytest.raises(GalleryMovedError, match=r"moved or removed .* nothing of this"):
            g.enroll("Matthew", rows, 6.0)
    with Gallery(folder / "moved.sqlite", "model-1") as g:  # whole, as it was
        assert g.names() == ["Joanna"]
    assert not path.exists()
    with Gallery(folder / "moved.sqlite", "model-1") as g:
        shutil.rmtree(folder)  # the folder deleted under it
        with pytest.raises(GalleryMovedError):
            g.enroll("Matthew", rows, 6.0)
    # a gallery made by its first write is written as before
    with Gallery(tmp_path / "new.sqlite", "model-1") as g:
        g.enroll("Joanna", rows, 6.0)
        g.enroll("Matthew", rows, 6.0)
        assert g.names() == ["Joanna", "Matthew"]


def test_a_gallery_of_a_newer_schema_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A gallery a newer whichvoice made (a higher schema in its meta) is refused in one
    line, not read or written as if its tables meant what this version's mean (a review: an
    older version wrote into a newer gallery and its recordings were counted twice)."""
    import sqlite3

    path = tmp_path / "g.sqlite"
    with Gallery(path, "model-1") as g:
        g.enroll("Joanna", unit(np.ones((1, 8))), 3.0)
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = '99' WHERE key = 'schema'")
    db.execute("DELETE FROM meta WHERE key = 'model'")
    db.execute("CREATE TABLE speakers (x)")  # what a newer schema may add
    db.commit()
    db.close()
    before = path.read_bytes()
    for model in ("model-1", None):
        with pytest.raises(GalleryUnusableError, match="schema '99', made by a newer whichvoice"):
            Gallery(path, model)
    assert path.read_bytes() == before  # nothing written into it (not even an owner)
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = 'two' WHERE key = 'schema'")
    db.commit()
    db.close()
    with pytest.raises(GalleryUnusableError, match="schema 'two'"):
        Gallery(path, "model-1")
    # in a folder it cannot write (read only: the WAL file's first read fails there) too
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = '99' WHERE key = 'schema'")
    db.commit()
    db.close()
    first = [True]
    check = Gallery._refuse_a_newer

    def unreadable_here(self) -> None:  # as SQLite fails a WAL file's first read there
        if first.pop() if first else False:
            raise sqlite3.OperationalError("unable to open database file")
        check(self)

    monkeypatch.setattr(Gallery, "_refuse_a_newer", unreadable_here)
    with pytest.raises(GalleryUnusableError, match="made by a newer whichvoice"):
        Gallery(path, "model-1", create=False)
    assert first == []  # the read-only path was taken, and checked


def test_another_models_gallery_is_refused(tmp_path: Path) -> None:
    with Gallery(tmp_path / "g.sqlite", "model-1") as g:
        g.enroll("a", unit(np.ones((1, 4))), 3.0)
    with pytest.raises(GalleryError, match="made with model model-1"):
        Gallery(tmp_path / "g.sqlite", "model-2")
    # every voice removed: nothing left to compare, so it is any encoder's (an import of
    # another encoder's export into it was refused, the advice circular), the first one's
    # that opens it to write
    with Gallery(tmp_path / "g.sqlite", "model-1") as g:
        g.remove("a")
    with Gallery(tmp_path / "g.sqlite", "model-3", create=False) as g:  # a read takes nothing
        assert g.model_id == "model-3" and g.names() == []
    with Gallery(tmp_path / "g.sqlite", None, create=False) as g:
        assert g.model_id == "model-1"
    with Gallery(tmp_path / "g.sqlite", "model-2") as g:
        assert g.model_id == "model-2"
        g.enroll("b", unit(np.ones((1, 4))), 3.0)
    with Gallery(tmp_path / "g.sqlite", None, create=False) as g:
        assert g.model_id == "model-2" and g.names() == ["b"]
    with pytest.raises(GalleryError, match="made with model model-2"):
        Gallery(tmp_path / "g.sqlite", "model-1")


def test_a_gallery_file_is_made_by_its_first_write(tmp_path: Path) -> None:
    # an enrollment that fails before writing leaves no file, so no cleanup ever removes a
    # file that another process may have opened meanwhile
    path = tmp_path / "new" / "g.sqlite"
    with Gallery(path, "model-1") as g:
        assert g.names() == [] and not path.exists()
        with pytest.raises(GalleryError):
            g.enroll("a", np.full((1, 4), np.nan), 3.0)
        assert not path.exists()
        g.enroll("a", unit(np.ones((1, 4))), 3.0)
        assert path.exists() and g.names() == ["a"]
    with Gallery(path, "model-1", create=False) as g:
        assert g.names() == ["a"]
    # made meanwhile by another encoder's process: the first write says so
    other = tmp_path / "other.sqlite"
    late = Gallery(other, "model-1")
    with Gallery(other, "model-2") as g:
        g.enroll("b", unit(np.ones((1, 4))), 3.0)
    with pytest.raises(GalleryError, match="made with model model-2, not model-1"):
        late.enroll("a", unit(np.ones((1, 4))), 3.0)
    late.close()


def test_a_gallery_that_cannot_be_made_is_said_at_once(tmp_path: Path) -> None:
    """A home that cannot be written: enroll computed every embedding, then said
    "/nonexistent: Permission denied", naming neither the gallery nor how to choose one."""
    (tmp_path / "file").write_text("")
    where = tmp_path / "file" / "sub" / "g.sqlite"
    said = r"g\.sqlite: the gallery cannot be written here \(.*\); give another with --gallery"
    with pytest.raises(GalleryUnusableError, match=said):
        Gallery(where, "m")
    with Gallery(where, "m", create=False) as g:  # reading it is reading nothing
        assert g.names() == []
    assert not (tmp_path / "file").is_dir()


def test_reading_a_missing_gallery_does_not_create_it(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "g.sqlite"
    with Gallery(path, "model-1", create=False) as g:
        assert g.names() == [] and g.export_json()["voices"] == []
        with pytest.raises(GalleryError, match="'Nobody' is not enrolled"):
            g.get("Nobody")
        with pytest.raises(GalleryError):
            g.remove("Nobody")
    assert not path.exists() and not path.parent.exists()
    with Gallery(path, "model-1") as g:
        g.enroll("Joanna", unit(np.ones((1, 8))), 3.0)
    with Gallery(path, "model-1", create=False) as g:  # an existing one is read as it is
        assert g.names() == ["Joanna"]
    with pytest.raises(GalleryError, match="made with model model-1"):
        Gallery(path, "model-2", create=False)
    # no model_id: an existing gallery opens for its own model (as its docstring says), a new
    # one needs the id (review)
    with Gallery(path, None) as g:
        assert g.names() == ["Joanna"]
        (voice,) = g.voices()
        assert "embedding" not in repr(voice) and voice.to_dict()["dim"] == 8
    with pytest.raises(GalleryError, match="created for a model"):
        Gallery(tmp_path / "new.sqlite", None)


def test_not_a_database(tmp_path: Path) -> None:
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(GalleryError, match=r"bad\.sqlite"):
        Gallery(bad, "m")
    with pytest.raises(GalleryError, match="is a folder"):  # not SQLite's "disk I/O error"
        Gallery(tmp_path, "m")
    for nothing in (None, ""):
        with pytest.raises(GalleryError, match="give a file path"):
            Gallery(nothing, "m")  # type: ignore[arg-type]
    # another program's database: refused, and left exactly as it was
    import sqlite3

    theirs = tmp_path / "theirs.sqlite"
    with sqlite3.connect(theirs) as db:
        db.execute("CREATE TABLE foo (x)")
    before = theirs.read_bytes()
    for model, create in (("m", True), (None, False)):
        with pytest.raises(GalleryError, match=r"not a whichvoice gallery .*tables foo"):
            Gallery(theirs, model, create=create)
    assert theirs.read_bytes() == before and not Path(f"{theirs}-wal").exists()
    # one that happens to hold a table named meta too
    with sqlite3.connect(theirs) as db:
        db.execute("CREATE TABLE meta (k, v)")
    before = theirs.read_bytes()
    with pytest.raises(GalleryError, match=r"not a whichvoice gallery .*tables foo, meta"):
        Gallery(theirs, "m")
    assert theirs.read_bytes() == before
    # a --gallery mistyped as a recording or an export: said so, not "restore it", untouched
    for name, content, kind in (
        ("clip.wav", b"RIFF\x24\x00\x00\x00WAVEfmt ", "a WAV file"),
        ("clip.mp3", b"ID3\x04\x00\x00\x00\x00\x00\x00", "an MP3 file"),
        ("export.json", b'  {"format": "whichvoice-gallery"}', "JSON text"),
    ):
        other = tmp_path / name
        other.write_bytes(content)
        for model, create in (("m", True), (None, False)):
            with pytest.raises(GalleryError, match=f"{name}: not a gallery but {kind}") as e:
                Gallery(other, model, create=create)
            assert "restore" not in str(e.value)
        assert other.read_bytes() == content
    # a pipe is not read (the look at its first bytes waited for ever), nor taken for a
    # full disk
    os.mkfifo(tmp_path / "fifo.sqlite")
    for create in (True, False):
        with pytest.raises(GalleryError, match="not a regular file"):
            Gallery(tmp_path / "fifo.sqlite", "m", create=create)


def test_export_and_import(tmp_path: Path) -> None:
    emb = unit(np.random.default_rng(1).normal(size=(2, 4)))
    with Gallery(tmp_path / "a.sqlite", "m") as g:
        g.enroll("x", emb, 5.0)
        data = g.export_json()
    # the fields docs/verification.md describes for other tools (a review found them
    # described nowhere), and nothing else
    assert set(data) == {"format", "schema", "model", "voices"}
    assert (data["format"], data["schema"]) == ("whichvoice-gallery", 1)
    assert set(data["voices"][0]) == {"name", "clips", "seconds", "created", "updated",
                                      "model", "dim", "embedding", "digests"}  # fmt: skip
    documented = " ".join((Path(__file__).parents[1] / "docs" / "verification.md")
                          .read_text().split())  # fmt: skip
    assert "in the order clean, noise, room, phone" in documented
    from whichvoice.prototypes import CONDITIONS

    assert CONDITIONS == ("clean", "noise", "room", "phone")
    (tmp_path / "export.json").write_text(json.dumps(data))
    with Gallery(tmp_path / "b.sqlite", "m") as g:
        assert g.import_json(read_export(tmp_path / "export.json")) == 1
        assert np.allclose(g.get("x").embedding, emb.mean(axis=0))
    with (
        Gallery(tmp_path / "c.sqlite", "other") as g,
        pytest.raises(GalleryError, match="made with model m"),
    ):
        g.import_json(data)
    # the same encoder at another version: no --model reads it, and the error says what does
    with Gallery(tmp_path / "d.sqlite", "auto-1111") as g:
        with pytest.raises(GalleryError, match=r"another version of this encoder \(model "
                           r"auto-2222; this whichvoice's is auto-1111\).*upgrade"):  # fmt: skip
            g.import_json({**data, "model": "auto-2222"})
        # two trained runs of one architecture are two encoders, not two versions of one
        with (
            Gallery(tmp_path / "e.sqlite", "voicenet-bbbb") as run_gallery,
            pytest.raises(GalleryError, match="--model with the run that made it"),
        ):
            run_gallery.import_json({**data, "model": "voicenet-aaaa"})
        # an export of no voice adds nothing, whatever its encoder, and makes no file
        assert g.import_json({**data, "model": "auto-2222", "voices": []}) == 0
    assert not (tmp_path / "d.sqlite").exists()


def test_default_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("WHICHVOICE_GALLERY", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_gallery_path() == tmp_path / "whichvoice" / "gallery.sqlite"
    monkeypatch.setenv("WHICHVOICE_GALLERY", str(tmp_path / "mine.sqlite"))
    assert default_gallery_path() == tmp_path / "mine.sqlite"


WRITER = """
import sys, numpy as np
from whichvoice.gallery import Gallery
g = Gallery(sys.argv[1], "m")
rng = np.random.default_rng(0)
i = 0
while True:
    e = rng.normal(size=(4, 64)); e /= np.linalg.norm(e, axis=1, keepdims=True)
    g.enroll(f"voice{i % 50}", e, 12.0)
    i += 1
    if i >= 20:
        print(i, flush=True)  # committed: the test kills it from now on, mid-write
"""


def test_kill_9_during_enroll_leaves_the_gallery_whole(tmp_path: Path) -> None:
    path = tmp_path / "g.sqlite"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    committed = 0
    while committed < 200:  # 180 transactions after the first report, then one is cut
        line = proc.stdout.readline()
        assert line, "the writer died"
        committed = int(line)
    proc.kill()
    proc.wait()
    with Gallery(path, "m") as g:
        voices = g.voices()
        assert voices, "the writer never committed"
        for v in voices:
            assert v.embedding.shape == (64,) and np.isfinite(v.embedding).all()
            assert v.seconds == pytest.approx(3.0 * v.clips)  # each enroll: 4 clips, 12 s
        g.enroll("after", unit(np.ones((1, 64))), 1.0)  # and it still takes writes


@pytest.mark.parametrize(
    ("voice", "why"),
    [
        ({"embedding": [[0.5, 0.5], [0.5, 0.5]]}, "not an embedding"),
        ({"embedding": 0.5}, "not an embedding"),
        ({"embedding": [0.1, float("nan"), 0.2, 0.3]}, "not an embedding"),
        ({"embedding": [0.6, 0.8]}, "dim 4, an embedding of 2"),
        ({"embedding": [0.6, 0.8, 0.0], "dim": 3}, "dimensions"),  # not a part of 4
        ({"embedding": [0.0, 0.0, 0.0, 0.0]}, "an embedding of zeros"),
        ({"name": {"a": 1}}, "voice name"),
        ({"name": 7}, "voice name"),
        ({"name": "  "}, "voice name"),
        ({"name": "Unknown"}, "what identify answers for a stranger"),  # enroll's rules too
        ({"name": "x" * 201}, "over the 200 character limit"),
        ({"name": "a\x00b"}, "control characters"),
        ({"seconds": float("inf")}, "seconds inf"),
        ({"seconds": -1.0}, "seconds -1"),
        ({"created": float("nan")}, "created nan"),
        ({"clips": 0}, "clips 0"),
        ({"clips": 2.5}, "clips 2.5"),
        ({"clips": 1e30}, "damaged"),
        ({"clips": True}, "clips True"),
        ({"created": 1e300}, "created 1e"),  # centuries ahead of any clock
        ({"seconds": "3"}, "seconds '3'"),
        ({"name": "unknown-1"}, "reserved"),  # diarize's name for a stranger
        ({"name": "import"}, "reserved"),
        ({"name": "al\u200bice"}, "invisible formatting characters .U\\+200B"),
        ({"model": "another"}, "made with model another"),
        ({"embedding": None}, "not an embedding"),
        ({"embedding": ["a", "b", "c", "d"]}, "not an embedding"),
    ],
)
def test_a_damaged_import_changes_nothing(tmp_path: Path, voice: dict, why: str) -> None:
    emb = unit(np.random.default_rng(2).normal(size=(2, 4)))
    with Gallery(tmp_path / "g.sqlite", "m") as g:
        g.enroll("kept", emb, 3.0)
        good = g.export_json()["voices"][0]
        data = {"format": "whichvoice-gallery", "model": "m", "voices": [{**good, **voice}]}
        with pytest.raises(GalleryError, match=why):
            g.import_json(data)
        assert g.names() == ["kept"] and g.get("kept").embedding.shape == (4,)


def test_an_import_refuses_embeddings_the_encoder_cannot_have_made(tmp_path: Path) -> None:
    # an export of a model's id over numbers of another size: every identification with the
    # gallery would fail until the voice is removed
    rng = np.random.default_rng(3)
    with Gallery(tmp_path / "g.sqlite", "m") as g:
        voice = {"clips": 1, "seconds": 3.0, "created": 1.0, "updated": 1.0}
        for size in (6, 4 * 17, 2):  # no whole prototype; too many prototypes; too short
            odd = {**voice, "name": "odd", "embedding": rng.normal(size=size).tolist()}
            data = {"format": "whichvoice-gallery", "model": "m", "voices": [odd]}
            with pytest.raises(GalleryError, match=f"an embedding of size {size}; this encoder"):
                g.import_json(data, dim=4)
        assert g.names() == []
        data["voices"][0]["embedding"] = rng.normal(size=8).tolist()  # 2 prototypes of 4
        assert g.import_json(data, dim=4) == 1


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("unknown", "stranger"),
        (" UNKNOWN ", "stranger"),
        ("", "needs a name"),
        ("x" * 201, "limit"),
        ("tab\there", "control"),
        ("unknown-3", "reserved"),  # diarize's name for a stranger
        ("Unknown-2", "reserved"),  # in any case: beside diarize's unknown-2 it reads as one
        ("export", "reserved"),  # the HTTP gallery routes
        ("import", "reserved"),
        ("bad\ufffdbytes", "UTF-8"),
        ("Zo\udceb", "UTF-8"),  # Latin-1 bytes on a UTF-8 command line
        ("alice\u200b", "invisible"),  # a zero-width space: two voices that look alike
        ("\u202eecila", "invisible"),  # a right-to-left override
        ("a\u2028b", "line breaks"),  # a line separator breaks a log's or a listing's line
        ("a\u2029b", "line breaks"),
    ],
)
def test_enroll_and_import_share_one_name_check(tmp_path: Path, name: str, why: str) -> None:
    emb = unit(np.ones((1, 4)))
    with pytest.raises(VoiceNameError, match=why):
        voice_name(name)
    with Gallery(tmp_path / "g.sqlite", "m") as g:
        with pytest.raises(VoiceNameError, match=why):
            g.enroll(name, emb, 1.0)
        assert g.names() == []
    assert voice_name("  Ann Smith  ") == "Ann Smith" and voice_name("x" * 200) == "x" * 200
    assert voice_name("Export") == "Export"  # the routes' paths are case-sensitive


def test_a_name_that_is_not_utf8_is_one_line_wherever_it_is_looked_up(tmp_path: Path) -> None:
    """A Latin-1 name on the command line (``$'Zo\\xeb'``) arrives as a lone surrogate: verify,
    remove and rename looked it up before any check and SQLite's binding raised a traceback
    (environment review)."""
    latin = os.fsdecode(b"Zo\xeb")
    with Gallery(tmp_path / "g.sqlite", "m") as g:
        g.enroll("Zoe", unit(np.ones((1, 4))), 2.0)
        for look_up in (g.get, g.remove, lambda n: g.rename(n, "x"), lambda n: g.rename("Zoe", n)):
            with pytest.raises(
                VoiceNameError, match=r"b'Zo\\xeb': a voice name must be valid UTF-8"
            ):
                look_up(latin)
        assert g.names() == ["Zoe"]


def test_a_name_written_two_ways_is_one_voice(tmp_path: Path) -> None:
    composed, decomposed = "Jos\u00e9", "Jose\u0301"  # both read José
    emb = unit(np.ones((1, 4)))
    with Gallery(tmp_path / "g.sqlite", "m") as g:
        g.enroll(composed, emb, 2.0)
        g.enroll(decomposed, emb, 2.0)
        assert g.names() == [composed] and g.get(decomposed).clips == 2
        assert g.get(f" {composed} ").name == composed  # spaces around: the same voice
        g.remove(f"{decomposed} ")
        assert g.names() == []


def test_an_import_replaces_an_enrolled_voice_only_when_told(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    with Gallery(tmp_path / "old.sqlite", "m") as g:
        g.enroll("a", unit(rng.normal(size=(1, 4))), 2.0)
        g.enroll("b", unit(rng.normal(size=(1, 4))), 2.0)
        data = g.export_json()
    with Gallery(tmp_path / "g.sqlite", "m") as g:
        g.enroll("a", unit(rng.normal(size=(3, 4))), 9.0)
        kept = g.get("a")
        with pytest.raises(VoiceExistsError, match=r"already enrolled: a .*--replace"):
            g.import_json(data)
        assert g.names() == ["a"] and g.get("a").clips == 3  # nothing imported, nothing lost
        assert np.array_equal(g.get("a").embedding, kept.embedding)
        assert g.import_json(data, replace=True) == 2
        assert g.names() == ["a", "b"] and g.get("a").clips == 1
        twice = {**data, "voices": data["voices"] + data["voices"][:1]}
        with pytest.raises(GalleryError, match="named twice: a"):
            g.import_json(twice, replace=True)
    assert voice_name("unknown-x") == "unknown-x" and voice_name("exports") == "exports"


def test_a_gallery_that_cannot_be_written_is_still_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    emb = unit(np.random.default_rng(4).normal(size=(2, 4)))
    with Gallery(tmp_path / "g.sqlite", "m") as g:
        g.enroll("a", emb, 3.0)
    real = sqlite3.connect

    def no_writing(target, *args, **kwargs):  # as SQLite answers in a read-only folder
        if not kwargs.get("uri"):
            raise sqlite3.OperationalError("unable to open database file")
        return real(target, *args, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", no_writing)
    with Gallery(tmp_path / "g.sqlite", "m", create=False) as g:
        assert g.read_only and g.names() == ["a"] and g.get("a").clips == 2
        with pytest.raises(GalleryError, match="cannot be written"):
            g.remove("a")
    # opened to enroll: read as well, and the write says why it cannot be made
    written = r"cannot be written here \(its folder is read-only"  # the server answers 503
    with (
        Gallery(tmp_path / "g.sqlite", "m", create=True) as g,
        pytest.raises(GalleryUnusableError, match=written),
    ):
        g.enroll("b", emb, 3.0)


def test_an_embedding_that_is_not_numbers_is_not_enrolled(tmp_path: Path) -> None:
    with Gallery(tmp_path / "g.sqlite", "m") as g:
        with pytest.raises(GalleryError, match="not numbers"):
            g.enroll("a", np.full((1, 4), np.nan), 3.0)
        assert g.names() == []


@pytest.mark.parametrize(
    ("embeddings", "seconds", "why"),
    [
        (np.ones((1, 10)), 3.0, "embeddings of size 10; the gallery's voices have 48"),
        (np.zeros((1, 48)), 3.0, "an embedding of zeros"),
        (np.ones(48), 3.0, "no clip embeddings"),
        ([["x"] * 48], 3.0, "an array of numbers"),
        (unit(np.ones((1, 48))), -5.0, "seconds of audio -5.0"),
        (unit(np.ones((1, 48))), float("inf"), "seconds of audio inf"),
        (unit(np.ones((1, 48))), "3", "seconds of audio '3'"),
    ],
)
def test_what_enroll_refuses_leaves_the_gallery_scoring(
    tmp_path: Path, embeddings, seconds, why: str
) -> None:
    """Embeddings of another size would make every identify fail (its voices no longer
    compare); refused before anything is written, like an import's."""
    with Gallery(tmp_path / "g.sqlite", "m") as g:
        g.enroll("a", unit(np.ones((2, 48))), 3.0)
        before = g.export_json()
        with pytest.raises(GalleryError, match=why):
            g.enroll("b", embeddings, seconds)
        assert g.export_json() == before
        # a voice of several prototypes beside one enrolled before them is one encoder's,
        # seconds may be a numpy number, and such a gallery goes through export and import
        assert g.enroll("c", unit(np.ones((1, 4 * 48))), np.float32(3.0)).clips == 1
        exported = g.export_json()
    with Gallery(tmp_path / "copy.sqlite", "m") as copy:
        assert copy.import_json(exported) == 2


def _raised(call) -> Exception | None:
    try:
        call()
    except Exception as e:
        return e
    return None


def test_a_gallery_misused_says_so_in_one_line(tmp_path: Path) -> None:
    import threading

    g = Gallery(tmp_path / "g.sqlite", "m")
    g.enroll("a", unit(np.ones((1, 4))), 3.0)
    with pytest.raises(VoiceNameError, match="must be text, not NoneType"):
        g.get(None)  # type: ignore[arg-type]
    caught: list[Exception] = []

    def other_thread() -> None:
        try:
            g.names()
        except Exception as e:
            caught.append(e)

    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join()
    closing = threading.Thread(target=lambda: caught.append(_raised(g.close)))
    closing.start()
    closing.join()
    assert len(caught) == 2 and all(isinstance(e, GalleryError) for e in caught)
    assert "open one per thread" in str(caught[0])
    g.close()
    with pytest.raises(GalleryError, match="the gallery was closed"):
        g.names()
    with pytest.raises(GalleryError, match="model_id is text"):
        Gallery(tmp_path / "g.sqlite", 5)  # type: ignore[arg-type]


def test_an_export_with_a_reserved_name_is_refused_until_renamed(tmp_path: Path) -> None:
    """An import of a voice named as diarize names a stranger would answer a stranger's
    turn with an enrolled voice that reads like none (until stop 48 an older export's names
    were kept): the export is refused whole, naming the voice to rename."""
    emb = unit(np.random.default_rng(5).normal(size=(2, 4)))
    with Gallery(tmp_path / "g.sqlite", "m") as g:
        g.enroll("a", emb, 3.0)
        data = g.export_json()
        data["voices"][0]["name"] = "unknown-2"  # enrolled before the name was reserved
        with pytest.raises(VoiceNameError, match="'unknown-2' is reserved"):
            g.import_json(data)
        data["voices"][0]["name"] = "unknown two"
        assert g.import_json(data) == 1 and "unknown two" in g.names()
    assert voice_name("Export") == "Export"  # the routes are spelled in lower case


def test_exporting_a_gallery_that_is_not_there_is_an_error(cli, tmp_path: Path) -> None:
    """A mistyped --gallery path is said, not exported as an empty gallery."""
    out = tmp_path / "export.json"
    r = cli("gallery", "export", str(out), "--gallery", str(tmp_path / "nope.sqlite"))
    assert r.returncode == 2 and "nope.sqlite: no such file" in r.stderr, r.stderr
    assert not out.exists() and not (tmp_path / "nope.sqlite").exists()


def test_a_conversion_is_all_or_nothing_and_only_from_the_model_it_was_asked_from(
    tmp_path: Path,
) -> None:
    """``Gallery.convert`` (what `gallery upgrade` writes with): one transaction; a voice
    that cannot be converted leaves every voice and the model as they were; a gallery whose
    model changed since it was opened (another process converted it) is refused, and so is
    an enrollment through a handle opened before the conversion."""
    path = tmp_path / "g.sqlite"
    with Gallery(path, "old-1") as g:
        g.enroll("a", np.array([[1.0, 0.0]], np.float32), 3.0)
        g.enroll("b", np.array([[0.0, 1.0]], np.float32), 3.0)
    before = {v.name: v.embedding.copy() for v in Gallery(path, None, create=False).voices()}

    def half_fails(e: np.ndarray) -> np.ndarray:
        if e[1] > 0:
            raise ValueError("cannot")
        return e * 2

    with Gallery(path, None, create=False) as g, pytest.raises(GalleryError, match="'b'"):
        g.convert("old-1", "new-1", half_fails)
    with Gallery(path, None, create=False) as g:
        assert g.model_id == "old-1"
        assert all(np.array_equal(v.embedding, before[v.name]) for v in g.voices())
    stale = Gallery(path, "old-1")  # a process that opened it before the conversion
    with Gallery(path, None, create=False) as g:
        assert g.convert("old-1", "new-1", lambda e: e * 2) == 2
        assert {v.model for v in g.voices()} == {"new-1"}
    with pytest.raises(GalleryModelError, match="made with model new-1, not old-1"):
        stale.enroll("c", np.array([[1.0, 1.0]], np.float32), 3.0)
    with pytest.raises(GalleryModelError):  # converted already: not converted twice
        stale.convert("old-1", "new-1", lambda e: e * 2)
    stale.close()
    with Gallery(path, "new-1") as g:
        assert np.array_equal(g.get("a").embedding, before["a"] * 2)


def test_a_gallery_damaged_inside_is_one_error_naming_it(tmp_path: Path) -> None:
    """Bytes overwritten inside the file (not cut off): SQLite finds the damage only when a
    query reaches the page, often while fetching rows; that was a raw sqlite3.DatabaseError
    and a traceback from every command, and `gallery upgrade` said "nothing to do" (review)."""
    rng = np.random.default_rng(5)
    path = tmp_path / "g.sqlite"
    with Gallery(path, "m") as g:
        for i in range(60):
            g.enroll(f"voice {i}", unit(rng.normal(size=(1, 1536))), 3.0)
    data = bytearray(path.read_bytes())
    data[20_000:28_000] = rng.integers(0, 256, 8_000, np.uint8).tobytes()
    damaged = tmp_path / "damaged.sqlite"
    damaged.write_bytes(bytes(data))
    for read in (Gallery.check, Gallery.voices, Gallery.export_json):
        with (
            pytest.raises(GalleryUnusableError, match=r"damaged\.sqlite: not a usable") as e,
            Gallery(damaged, "m") as g,
        ):
            read(g)
        assert "restore it from an export" in str(e.value)
        assert e.value.public_message() == "the gallery cannot be used"
    with Gallery(path, "m") as g:  # the file it was copied from is whole
        g.check()
        assert len(g.voices()) == 60


def test_a_url_is_no_gallery(tmp_path: Path, monkeypatch) -> None:
    """Gallery("s3://...") wrote a local folder "s3:" without a word (review); the CLI
    refused it already."""
    monkeypatch.chdir(tmp_path)
    for url in ("s3://voices/g.sqlite", "file:///tmp/g.sqlite"):
        with pytest.raises(GalleryError, match="a gallery is a local file, not a URL"):
            Gallery(url, "m")
    assert list(tmp_path.iterdir()) == []


def test_an_export_refuses_a_damaged_voice(tmp_path: Path) -> None:
    """An embedding cut short inside the file was exported without a word, and the import of
    that backup then refused it (review)."""
    import sqlite3

    path = tmp_path / "g.sqlite"
    with Gallery(path, "m") as g:
        g.enroll("whole", unit(np.ones((1, 8))), 3.0)
        g.enroll("cut", unit(np.ones((1, 8))), 3.0)
    db = sqlite3.connect(path)
    db.execute("UPDATE voices SET embedding = substr(embedding, 1, 12) WHERE name = 'cut'")
    db.commit()
    db.close()
    with Gallery(path, "m") as g:
        for read in (g.export_json, g.voices, lambda: g.get("cut")):  # verify and identify too
            with pytest.raises(GalleryError, match="voice 'cut' is damaged"):
                read()
        assert g.remove("cut") == "cut" and [v.name for v in g.voices()] == ["whole"]


_EMBEDDING = "UPDATE voices SET embedding = ? WHERE name = 'cut'"


@pytest.mark.parametrize(
    ("damage", "value", "why"),
    [
        (_EMBEDDING, np.full(8, np.nan, np.float32).tobytes(), "voice 'cut' is damaged"),
        (_EMBEDDING, np.full(8, 1e30, np.float32).tobytes(), "voice 'cut' is damaged"),
        ("UPDATE voices SET dim = 'x' WHERE name = 'cut'", None, "voice 'cut' is damaged"),
        ("UPDATE voices SET clips = 'lots' WHERE name = 'cut'", None, "voice 'cut' is damaged"),
        ("UPDATE voices SET seconds = 'NaN' WHERE name = 'cut'", None, "voice 'cut' is damaged"),
        ("UPDATE voices SET created = 'x' WHERE name = 'cut'", None, "voice 'cut' is damaged"),
        ("UPDATE voices SET name = CAST(name AS BLOB) WHERE name = 'cut'", None, "stored as bytes"),
    ],
)
def test_a_voice_whose_stored_bytes_changed_is_named_damaged(
    tmp_path: Path, damage: str, value: bytes | None, why: str
) -> None:
    """A bit flipped in a gallery made a name bytes (printed b'cut', and "a voice name must be
    text" blamed on the user), an embedding NaN (answers of NaN, invalid JSON, an enrollment
    into it stayed NaN, an export that could not be imported): fuzzing. Each is one line
    naming the file, and nothing is averaged into a damaged voice."""
    import sqlite3

    path = tmp_path / "g.sqlite"
    with Gallery(path, "m") as g:
        g.enroll("whole", unit(np.ones((1, 8))), 3.0)
        g.enroll("cut", unit(np.ones((1, 8))), 3.0)
    db = sqlite3.connect(path)
    db.execute(damage, () if value is None else (value,))
    db.commit()
    db.close()
    with Gallery(path, "m") as g:
        reads = [g.export_json, g.voices]
        reads += [g.names] if "bytes" in why else [lambda: g.get("cut")]
        for read in reads:
            with pytest.raises(GalleryUnusableError, match=why):
                read()
        if "bytes" not in why:
            with pytest.raises(GalleryUnusableError, match=why):
                g.enroll("cut", unit(np.ones((1, 8))), 3.0)
            assert g.remove("cut") == "cut" and [v.name for v in g.voices()] == ["whole"]


def test_what_a_read_would_refuse_is_not_written(tmp_path: Path) -> None:
    """enroll and import took embeddings past the bound every read checks, and the gallery
    was then refused as damaged; an import into a gallery whose dim was damaged raised a
    ValueError (a code review)."""
    import sqlite3

    path = tmp_path / "g.sqlite"
    with Gallery(path, "m") as g:
        with pytest.raises(GalleryError, match="numbers past 10: give L2-normalised ones"):
            g.enroll("big", np.full((1, 4), 20.0), 3.0)
        g.enroll("whole", unit(np.ones((1, 4))), 3.0)
        export = g.export_json()
        export["voices"][0] |= {"name": "huge", "embedding": [50.0, 0.0, 0.0, 0.0]}
        with pytest.raises(GalleryError, match=r"a damaged gallery export \(huge: not an"):
            g.import_json(export)
        assert g.names() == ["whole"]
    db = sqlite3.connect(path)
    db.execute("UPDATE voices SET dim = 'x4'")
    db.commit()
    db.close()
    with Gallery(path, "m") as g:
        export["voices"][0] |= {"name": "new", "embedding": [0.5, 0.5, 0.5, 0.5]}
        with pytest.raises(GalleryUnusableError, match="voice 'whole' is damaged"):
            g.import_json(export)


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ("ALTER TABLE voices DROP COLUMN dim", "its voices table has the columns name, embedding,"),
        (
            "CREATE TRIGGER t AFTER INSERT ON voices BEGIN DELETE FROM voices; END",
            "it holds a trigger 't' whichvoice never makes",
        ),
        ("CREATE VIEW v AS SELECT name FROM voices", "it holds a view 'v'"),
    ],
)
def test_a_gallery_of_other_columns_or_a_trigger_is_refused_before_any_write(
    tmp_path: Path, change: str, why: str
) -> None:
    """A dropped column was a traceback in every command; a trigger in a hostile file removed
    every voice when another was enrolled (fuzzing)."""
    import sqlite3

    path = tmp_path / "g.sqlite"
    with Gallery(path, "m") as g:
        g.enroll("whole", unit(np.ones((1, 8))), 3.0)
    db = sqlite3.connect(path)
    db.execute(change)
    db.commit()
    db.close()
    before = path.read_bytes()
    with pytest.raises(GalleryUnusableError, match=f"not a usable gallery \\({why}"):
        Gallery(path, "m")
    assert path.read_bytes() == before


def test_an_sqlite_error_that_is_no_damage_stays_itself(tmp_path: Path) -> None:
    """The wrapper that turns a damaged file into one line passes other errors on as they
    are, not as their own cause (a loop for whatever walks the causes)."""
    import sqlite3

    with Gallery(tmp_path / "g.sqlite", "m") as g:
        with pytest.raises(sqlite3.OperationalError) as e:
            g._db.execute("SELECT nothing FROM nowhere")
        assert e.value.__cause__ is None


def test_a_gallery_held_by_another_writer_is_busy_not_damaged(tmp_path: Path, monkeypatch) -> None:
    """A writer that held the file past the wait was reported as 'not a usable gallery
    (database is locked)', which reads as damage (review)."""
    import sqlite3

    from whichvoice import gallery as gallery_module

    path = tmp_path / "g.sqlite"
    with Gallery(path, "m") as g:
        g.enroll("ann", unit(np.ones((1, 4))), 3.0)
    monkeypatch.setattr(gallery_module, "LOCK_WAIT_S", 0.1)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        with Gallery(path, "m") as g:  # a read waits for no writer (a review)
            assert g.names() == ["ann"]
            with pytest.raises(GalleryUnusableError, match="another process held the gal") as e:
                g.enroll("bob", unit(np.ones((1, 4))), 3.0)
        assert e.value.public_message() == "the gallery is busy; try again"
    finally:
        other.execute("ROLLBACK")
        other.close()
    with Gallery(path, "m") as g:
        assert g.names() == ["ann"]


def _on_a_full_disk(code: str, path: Path) -> subprocess.CompletedProcess:
    """Run ``code`` (given ``sys.argv[1]``: ``path``) in a child process for which the disk
    is full: its files cannot grow past 8 KiB (RLIMIT_FSIZE, SIGXFSZ ignored, so a write
    fails as on a full disk)."""
    script = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (8192, 8192))\n" + code
    )
    return subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True,
                          text=True, timeout=120)  # fmt: skip


def test_a_full_disk_is_one_error_and_leaves_no_empty_gallery(tmp_path: Path) -> None:
    """A gallery import or enrollment onto a full disk gave sqlite3's 'disk I/O error' as a
    traceback and left an empty gallery file that then listed no voices (review)."""
    proc = _on_a_full_disk(
        "import numpy as np\n"
        "from whichvoice.gallery import Gallery, GalleryUnusableError\n"
        "try:\n"
        "    with Gallery(sys.argv[1], 'm') as g:\n"
        "        g.enroll('ann', np.full((1, 4096), 1 / 64, np.float32), 3.0)\n"
        "except GalleryUnusableError as e:\n"
        "    print(type(e).__name__, e.exit_status, e)\n",
        tmp_path / "g.sqlite",
    )
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stdout.startswith("GalleryFullError 1 ")  # exit 1, as a full disk elsewhere
    assert "is its disk full?" in proc.stdout, proc.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_first_write_that_fills_a_real_disk_leaves_no_file(tmp_path: Path) -> None:
    """Review (resources): with 40-64 KiB left on a tmpfs, the first write made the file but
    not its tables, and the file stayed (4 KiB, "no voice enrolled"): a file without the
    voices table holds nothing, so it goes. Needs a tmpfs of its own (root)."""
    disk = tmp_path / "small"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(disk)],
                             capture_output=True, text=True)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        for free_kib in (40, 48, 64):
            fill = disk / "fill"
            with open(fill, "wb", buffering=0) as f, contextlib.suppress(OSError):  # all it holds
                while True:
                    f.write(b"\0" * 4096)
            os.truncate(fill, max(0, fill.stat().st_size - free_kib * 1024))
            with (
                pytest.raises(GalleryError, match="is its disk full"),
                Gallery(disk / "new.sqlite", "m") as g,
            ):
                g.enroll("ann", np.full((4, 4096), 1 / 64, np.float32), 3.0)
            assert sorted(p.name for p in disk.iterdir()) == ["fill"], free_kib
            fill.unlink()
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_an_export_that_cannot_be_written_names_its_file(tmp_path: Path) -> None:
    """A full disk under `gallery export` said 'No space left on device', no file (review)."""
    target = tmp_path / "export.json"
    proc = _on_a_full_disk(
        "from whichvoice.errors import OutputLostError\n"
        "from whichvoice.gallery import write_export\n"
        "try:\n"
        "    write_export(sys.argv[1], {'voices': ['x' * 20000]})\n"
        "except OutputLostError as e:\n"
        "    print(e.exit_status, e)\n",
        target,
    )
    said = proc.stdout + proc.stderr
    assert proc.stdout.startswith(f"1 {target}: cannot write the export"), said
    assert not target.exists()


def test_reading_a_gallery_waits_for_no_writer(tmp_path: Path) -> None:
    """Every open took the write lock (BEGIN IMMEDIATE), so a server's identify, verify and
    list waited for any writer elsewhere, for 30 s, then 503 "busy" (a review): a gallery
    that has its tables is opened by reading alone."""
    import time

    path = tmp_path / "g.sqlite"
    with Gallery(path, "model-1") as g:
        g.enroll("a", unit(np.ones((1, 4))), 3.0)
    hold = subprocess.Popen(
        [sys.executable, "-c", "import sqlite3, sys, time\n"
         f"d = sqlite3.connect({str(path)!r}, isolation_level=None)\n"
         "d.execute('BEGIN IMMEDIATE'); print('held', flush=True); time.sleep(20)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert hold.stdout is not None and hold.stdout.readline().strip() == "held"
        started = time.monotonic()
        for model in ("model-1", None):
            with Gallery(path, model, create=False) as g:
                assert g.names() == ["a"]
        assert time.monotonic() - started < 15  # a writer made it wait LOCK_WAIT_S, 30 s
    finally:
        hold.kill()
        hold.wait()


def test_a_process_out_of_open_files_is_told_so(tmp_path: Path) -> None:
    """Out of descriptors (ulimit -n), SQLite's "unable to open database file" was "not a
    usable gallery", or "a write-ahead log ... read-only folder" (a review)."""
    with Gallery(tmp_path / "g.sqlite", "model-1") as g:
        g.enroll("a", unit(np.ones((1, 4))), 3.0)
    script = (
        "import os, sys\n"
        "from whichvoice.gallery import Gallery, GalleryUnusableError\n"
        "held = []\n"
        "while True:\n"
        "    try:\n"
        "        held.append(os.open(os.devnull, os.O_RDONLY))\n"
        "    except OSError:\n"
        "        break\n"
        "try:\n"
        "    Gallery(sys.argv[1], 'model-1')\n"
        "except GalleryUnusableError as e:\n"
        "    print(e, '|', e.public_message())\n"
    )
    done = subprocess.run(
        ["bash", "-c", f'ulimit -n 256 && exec "{sys.executable}" -c "$0" "$1"', script,
         str(tmp_path / "g.sqlite")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert "run out of open files" in done.stdout and "ulimit -n" in done.stdout, done
    assert done.stdout.strip().endswith("| the server is out of open files; try again")


def test_a_gallery_on_a_full_disk_is_still_read(tmp_path: Path) -> None:
    """On a full disk SQLite cannot add its log's files: listing said "cannot be opened for
    writing ... is its disk full?" and the server's identify answered unknown for enrolled
    voices (a review). It is read; a write says the disk is full."""
    path = tmp_path / "g.sqlite"
    with Gallery(path, "m") as g:
        g.enroll("ann", unit(np.ones((1, 4))), 3.0)
    for part in ("-wal", "-shm"):
        Path(f"{path}{part}").unlink(missing_ok=True)
    proc = _on_a_full_disk(
        "import numpy as np\n"
        "from whichvoice.gallery import Gallery, GalleryFullError\n"
        "with Gallery(sys.argv[1], 'm') as g:\n"
        "    print(g.names(), g.read_only)\n"
        "    try:\n"
        "        g.enroll('bob', np.ones((1, 4)) / 2, 3.0)\n"
        "    except GalleryFullError as e:\n"
        "        print(e)\n",
        path,
    )
    assert proc.stdout.splitlines()[0] == "['ann'] True", proc.stderr
    assert proc.stdout.splitlines()[1].endswith("the gallery cannot be written: its disk is full")


def test_a_read_only_gallery_file_found_at_its_first_write_says_so(tmp_path: Path) -> None:
    """Opened by reading alone, a gallery whose file cannot be written failed its first write
    with sqlite3's own traceback (a review of the change that stopped taking the write lock at
    every open): it says the file is read-only, as before."""
    import shutil

    path = tmp_path / "g.sqlite"
    with Gallery(path, "m") as g:
        g.enroll("ann", unit(np.ones((1, 4))), 3.0)
    path.chmod(0o444)
    script = (
        "import sys, numpy as np\n"
        "from whichvoice.gallery import Gallery, GalleryUnusableError\n"
        "with Gallery(sys.argv[1], 'm') as g:\n"
        "    print(g.names())\n"
        "    try:\n"
        "        g.remove('ann')\n"
        "    except GalleryUnusableError as e:\n"
        "        print(e)\n"
    )
    command = [sys.executable, "-c", script, str(path)]
    if os.geteuid() == 0:  # root writes any file: without that capability, as a user would
        assert shutil.which("setpriv"), "util-linux's setpriv"
        caps = "-dac_override,-dac_read_search,-fowner"
        command = ["setpriv", "--bounding-set", caps, "--inh-caps", caps, "--", *command]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.stdout.splitlines()[0] == "['ann']", done.stderr
    assert done.stdout.splitlines()[1].endswith("cannot be written here (the file is read-only)")


def test_a_large_gallerys_names_are_not_all_in_one_error_line(tmp_path: Path) -> None:
    """A gallery of 3,000 voices made a 48 KB line of `verify NAME` for a name not enrolled,
    and of an import naming voices already there (a review)."""
    rows = unit(np.random.default_rng(3).normal(size=(1, 8)))
    with Gallery(tmp_path / "big.sqlite", "model-1") as g:
        for i in range(25):
            g.enroll(f"v{i:02d}", rows, 3.0)
        with pytest.raises(GalleryError, match=r"v09, and 15 more \(gallery list\)\)$"):
            g.get("Nobody")
        exported = g.export_json()
        with pytest.raises(VoiceExistsError, match=r"and 15 more \(gallery list\)"):
            g.import_json(exported)


def test_a_removed_voice_leaves_no_bytes_in_the_file_or_its_log(tmp_path: Path) -> None:
    """Erasure: after `gallery remove` (and a rename, an import's replacement) the voice's
    name, embedding and digests are in no byte of the gallery or its write-ahead log, also
    while another connection has the gallery open (a server's other request) and on an
    SQLite built without secure delete, SQLite's default (a data-protection review)."""
    rng = np.random.default_rng(17)
    path = tmp_path / "g.sqlite"
    secret = unit(rng.normal(size=(1, 64))).astype(np.float32)
    digest = "d" * 64

    def found(needle: bytes) -> list[str]:
        return [p.name for p in tmp_path.iterdir() if needle in p.read_bytes()]

    with Gallery(path, "m") as g:
        g.enroll("Zelda Keep", unit(rng.normal(size=(1, 64))), 3.0)
    with Gallery(path, "m") as g, Gallery(path, "m") as other:
        assert g._db.execute("PRAGMA secure_delete").fetchone()[0] == 1  # whatever the build
        g.enroll("Xavier Gone", secret, 3.0, digests=[digest])
        assert other.names() == ["Xavier Gone", "Zelda Keep"]  # open, as a server's request
        assert found(b"Xavier Gone") and found(secret.tobytes())
        g.remove("Xavier Gone")
        for needle in (b"Xavier Gone", secret.tobytes(), digest.encode()):
            assert found(needle) == [], needle[:20]
        g.rename("Zelda Keep", "Yusuf Now")
        assert found(b"Zelda Keep") == []
        assert other.names() == ["Yusuf Now"]

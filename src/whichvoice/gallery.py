"""Enrolled voices, kept in one SQLite file: name, embedding, clip count and seconds, the
model that made it, timestamps. Every write is one transaction, so a crash or ``kill -9``
leaves the gallery as it was before or after the write, never half-written.

A gallery belongs to one model (embeddings of different models cannot be compared): opening
it with another model raises GalleryError.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import math
import numbers
import os
import re
import sqlite3
import stat
import sys
import time
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from whichvoice.errors import WhichvoiceError
from whichvoice.files import data_home, make_dirs

SCHEMA_VERSION = 1
EXPORT_FORMAT = "whichvoice-gallery"
MAX_NAME = 200  # characters of a voice name
UNKNOWN = "unknown"  # what identification answers for a stranger: no voice may be named so
# diarization's names for voices it does not know ("unknown-1", ...), and the HTTP API's
# gallery routes (/v1/gallery/export, /v1/gallery/import) are not voice names either
# diarize's names for strangers in any case (``Unknown-2`` beside diarize's ``unknown-2`` reads
# as one voice); the routes' words as the (case-sensitive) paths spell them
RESERVED = re.compile(r"(?i:unknown-\d+)|export|import")
# the contents (sha-256) of the recordings enrolled into each voice, so that a recording
# enrolled again is counted once (a gallery made before it gets the table when opened to be
# written: ``_setup``)
CLIPS_TABLE = (
    "CREATE TABLE IF NOT EXISTS clips (name TEXT NOT NULL, digest TEXT NOT NULL, "
    "PRIMARY KEY (name, digest))"
)
MAX_DIGEST = 128  # characters of one recording's digest (sha-256: 64)
MAX_CLIPS = 10**12  # clips of one voice, at most (an export's count is checked against it)
MAX_PROTOTYPES = 16  # stored prototypes of one voice, at most (whichvoice.prototypes makes 4)
# the largest number a stored embedding may hold: means of L2-normalised embeddings hold 1 at
# most (a flipped bit in a float's exponent makes 1e30, or NaN)
MAX_COMPONENT = 10.0
# the columns of whichvoice's tables, in order (the same since schema 1)
COLUMNS = {
    "voices": ("name", "embedding", "dim", "clips", "seconds", "model", "created", "updated"),
    "clips": ("name", "digest"),
}


class GalleryError(WhichvoiceError):
    """A gallery that cannot be used, or a voice that is not in it."""


class GalleryUnusableError(GalleryError):
    """The gallery file itself cannot be used (not a gallery, a folder, a connection misused):
    the fault of whoever holds the file, not of a request (the server answers 503)."""


class EnrollmentShortError(GalleryError):
    """An enrollment the voice no longer holds enough speech for when it is written (removed
    by another call while its recordings were read): nothing was added."""


class GalleryMovedError(GalleryUnusableError):
    """The gallery's file was moved or removed while this process had it open: a write would
    go into a file no path names (lost), so nothing is written."""


class GalleryFullError(GalleryUnusableError):
    """A write the gallery's disk had no room for (nothing of it was written): exit 1, as a
    full disk under other commands, once the work it was to store is done."""

    exit_status = 1


class AlreadyEnrolledError(GalleryError):
    """Every recording given to a voice is in it already (nothing added)."""


class NotEnrolledError(GalleryError):
    """A voice name that is not in the gallery."""


class GalleryModelError(GalleryError):
    """A gallery or an export made with another model than the one in use."""


class VoiceNameError(GalleryError):
    """A voice name that cannot be enrolled (empty, too long, reserved, control characters)."""


class VoiceExistsError(GalleryError):
    """An import naming voices the gallery already holds, without leave to replace them."""


SQLITE_MAGIC = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database file
# files a --gallery path may name by mistake, by their first bytes
OTHER_FILES = (
    (b"RIFF", "a WAV file"),
    (b"ID3", "an MP3 file"),
    (b"\xff\xfb", "an MP3 file"),
    (b"\xff\xf3", "an MP3 file"),
    (b"fLaC", "a FLAC file"),
    (b"OggS", "an Ogg file"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"\x1f\x8b", "a gzip file"),
)


def _normal(name: str) -> str:
    """A name as it is stored and looked up: stripped, in Unicode's composed form (NFC), so
    that ``José`` typed with one character or with ``e`` and an accent is one voice."""
    if not isinstance(name, str):
        raise VoiceNameError(f"a voice name must be text, not {type(name).__name__}")
    try:  # bytes of another encoding on the command line arrive as lone surrogates
        name.encode("utf-8")
    except UnicodeEncodeError:
        shown = name.encode("utf-8", "surrogateescape") if _surrogates_only(name) else name
        raise VoiceNameError(f"{shown!r}: a voice name must be valid UTF-8 text") from None
    return unicodedata.normalize("NFC", name.strip())


def _surrogates_only(name: str) -> bool:
    try:
        name.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return False
    return True


def _damaged(e: sqlite3.DatabaseError, where: object) -> Exception:
    """SQLite's word that the file is damaged (bytes overwritten inside it: "database disk
    image is malformed", "file is not a database") as a GalleryUnusableError naming the file;
    ``e`` itself for any other error (a lock, a read-only file: each handled where met)."""
    if type(e) is not sqlite3.DatabaseError:
        return e
    return _unusable(where, str(e))


def _name_not_text(where: object, name: object) -> GalleryUnusableError:
    """A voice's name stored as bytes (or a number): a flipped bit in the file."""
    return _unusable(where, f"a voice's name is stored as {type(name).__name__}, not text")


def _unusable(where: object, why: str) -> GalleryUnusableError:
    """A gallery file whose damage no command mends, naming it and why."""
    return GalleryUnusableError(
        f"{where}: not a usable gallery ({why}); restore it from an export or a copy",
        public="the gallery cannot be used",
    )


def _raise_converted(converted: Exception, e: sqlite3.Error) -> None:
    """Raise ``converted`` (``_misused``'s or ``_damaged``'s error for ``e``) when it is
    another error; else return, for a bare ``raise`` (``raise e from e`` would make the error
    its own cause)."""
    if converted is not e:
        raise converted from e


def _guarded(method: Callable) -> Callable:
    """A cursor's ``method`` whose misuse is ``_misused``'s error and whose damaged file is
    ``_damaged``'s; any other error is raised as it is."""

    @functools.wraps(method)
    def guarded(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except sqlite3.ProgrammingError as e:
            _raise_converted(_misused(e), e)
            raise
        except sqlite3.DatabaseError as e:
            _raise_converted(_damaged(e, getattr(self.connection, "where", "the gallery")), e)
            raise

    return guarded


class _Cursor(sqlite3.Cursor):
    """A cursor whose reads of a damaged file raise ``_damaged``'s error: SQLite finds most
    damage only when a query reaches the page, often while its rows are fetched."""

    execute = _guarded(sqlite3.Cursor.execute)
    executemany = _guarded(sqlite3.Cursor.executemany)
    fetchone = _guarded(sqlite3.Cursor.fetchone)
    fetchmany = _guarded(sqlite3.Cursor.fetchmany)
    fetchall = _guarded(sqlite3.Cursor.fetchall)
    __next__ = _guarded(sqlite3.Cursor.__next__)


class _Connection(sqlite3.Connection):
    """SQLite's connection, whose misuse (another thread, after ``close``) is a
    GalleryError in one line rather than sqlite3.ProgrammingError, and whose damaged file is
    a GalleryUnusableError naming it (``where``, set by whoever opens it)."""

    where: object = "the gallery"

    def _cursor(self) -> _Cursor:
        try:
            return self.cursor(_Cursor)
        except sqlite3.ProgrammingError as e:
            _raise_converted(_misused(e), e)
            raise

    def execute(self, *args, **kwargs):  # type: ignore[override]
        return self._cursor().execute(*args, **kwargs)

    def executemany(self, *args, **kwargs):  # type: ignore[override]
        return self._cursor().executemany(*args, **kwargs)

    def close(self) -> None:
        try:
            super().close()
        except sqlite3.ProgrammingError as e:
            _raise_converted(_misused(e), e)
            raise


def _misused(e: sqlite3.ProgrammingError) -> Exception:
    """The GalleryError for SQLite's complaint ``e`` about how a connection was used."""
    if "thread" in str(e):
        return GalleryUnusableError(
            "a Gallery is used by the thread that opened it: open one per thread",
            public="the gallery cannot be used",
        )
    if "closed" in str(e):
        return GalleryUnusableError(
            "the gallery was closed; open it again", public="the gallery cannot be used"
        )
    return e


LOCK_WAIT_S = 30.0  # how long a gallery another process writes is waited for


def _connect(target: str | os.PathLike, where: object = None, **kwargs) -> sqlite3.Connection:
    db = sqlite3.connect(
        target, timeout=LOCK_WAIT_S, isolation_level=None, factory=_Connection, **kwargs
    )
    db.where = target if where is None else where
    # a voice removed (or its digests replaced) is overwritten in the file, not left in its
    # free pages: Debian's SQLite does this by default, SQLite's own build does not (a
    # data-protection review found a removed voice's embedding and digests there)
    with contextlib.suppress(sqlite3.Error):  # an unusable file says so at its first query
        db.execute("PRAGMA secure_delete = ON")
    return db


def voice_name(name: object) -> str:
    """``name`` as a voice is enrolled under: stripped and composed (NFC), 1 to MAX_NAME
    characters, not a reserved word (``unknown`` and ``unknown-N`` in any case, ``export``,
    ``import``), valid UTF-8, no control or invisible formatting characters (a zero-width
    space or a right-to-left mark would make two voices that look alike). The one check
    enroll, import and HTTP share; raises VoiceNameError."""
    if not isinstance(name, str):
        raise VoiceNameError(f"a voice name must be text, not {type(name).__name__}")
    name = _normal(name)
    if not name:
        raise VoiceNameError("a voice needs a name")
    if len(name) > MAX_NAME:
        raise VoiceNameError(
            f"a voice name of {len(name)} characters is over the {MAX_NAME} character limit"
        )
    if name.lower() == UNKNOWN:
        raise VoiceNameError(f"{name!r} is what identify answers for a stranger; pick another name")
    if name in (".", ".."):
        raise VoiceNameError(f"{name!r} cannot name a voice (a path step in URLs)")
    if RESERVED.fullmatch(name):
        what = "diarize's name for a stranger" if name[0] in "uU" else "an HTTP gallery route"
        raise VoiceNameError(f"{name!r} is reserved ({what}); pick another name")
    if "\ufffd" in name:  # what a decoder leaves of bytes that were not UTF-8
        raise VoiceNameError(f"{name!r}: a voice name must be valid UTF-8 text")
    # line and paragraph separators (Zl, Zp) break a line as a newline does
    if any(unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp") for c in name):
        raise VoiceNameError(
            f"{name!r}: a voice name cannot hold control characters or line breaks"
        )
    hidden = sorted({f"U+{ord(c):04X}" for c in name if unicodedata.category(c) == "Cf"})
    if hidden:
        raise VoiceNameError(
            f"{name!r}: a voice name cannot hold invisible formatting characters "
            f"({', '.join(hidden)})"
        )
    return name


def _some(names: list[str], shown: int = 10) -> str:
    """``names`` for a one-line message: the first ``shown`` and how many more (a gallery of
    3,000 voices made a 48 KB error line)."""
    more = len(names) - shown
    return ", ".join(names[:shown]) + (f", and {more} more (gallery list)" if more > 0 else "")


def _cannot_write(e: sqlite3.OperationalError) -> bool:
    """Whether SQLite failed because the gallery's folder or file cannot be written (not,
    say, because another process holds it locked)."""
    return any(w in str(e) for w in ("unable to open", "readonly", "read-only"))


def _out_of_room(e: sqlite3.OperationalError) -> bool:
    """Whether SQLite failed to write for want of room (a full disk, a quota), which it
    reports as either of two errors."""
    return any(w in str(e) for w in ("disk is full", "disk I/O error"))


def _out_of_descriptors() -> bool:
    """Whether this process has run out of open files (``ulimit -n``): SQLite says only
    "unable to open database file", which read as a gallery that cannot be used."""
    try:
        fd = os.open(os.devnull, os.O_RDONLY)
    except OSError as e:
        return e.errno in (errno.EMFILE, errno.ENFILE)
    os.close(fd)
    return False


def _read_only_mount(path: Path) -> bool:
    """Whether ``path`` (or its folder) lies on a file system mounted read-only."""
    for where in (path, path.parent):
        try:
            return bool(os.statvfs(where).f_flag & os.ST_RDONLY)
        except OSError:
            continue
    return False


def default_gallery_path() -> Path:
    """``$WHICHVOICE_GALLERY``, else ``$XDG_DATA_HOME/whichvoice/gallery.sqlite``
    (``~/.local/share/whichvoice/gallery.sqlite``)."""
    if os.environ.get("WHICHVOICE_GALLERY"):
        given = os.environ["WHICHVOICE_GALLERY"]
        if "://" in given:  # a Path would fold it into a local folder named "s3:"
            raise GalleryError(f"$WHICHVOICE_GALLERY {given}: a gallery is a local file, not a URL")
        return Path(given)
    return data_home() / "gallery.sqlite"


@dataclass(frozen=True)
class EnrolledVoice:
    """One enrolled voice. ``embedding``: float32 (dim,), the mean of its clips' L2-normalised
    embeddings (not itself normalised: its length says how consistent the clips are)."""

    name: str
    embedding: np.ndarray = field(repr=False)  # hundreds of numbers: not in a notebook's repr
    clips: int
    seconds: float
    model: str
    created: float
    updated: float

    def to_dict(self) -> dict:
        """``summary()``: what JSON holds of it (the embedding's size, not its numbers)."""
        return self.summary()

    def summary(self) -> dict:
        return {
            "name": self.name,
            "clips": self.clips,
            "seconds": round(self.seconds, 3),
            "model": self.model,
            "created": self.created,
            "updated": self.updated,
            "dim": int(self.embedding.shape[0]),
        }


class Gallery:
    """The voices enrolled with one model, in a SQLite file. One object belongs to the
    thread that opened it (SQLite's rule; another thread gets a GalleryError): open one per
    thread, as the server does; several processes may share the file."""

    def __init__(
        self, path: str | os.PathLike, model_id: str | None, *, create: bool = True
    ) -> None:
        """Open (or create) the gallery at ``path``. With ``create=False`` a missing file is
        read as an empty gallery and not created, for callers that only read (a gallery
        appears when the first voice is enrolled or imported). ``model_id`` None opens an
        existing gallery for whatever model made it (listing, export, removal: no embedding is
        compared); a new one needs its model's id."""
        if model_id is None and create and not Path(path).exists():
            raise GalleryError("a gallery is created for a model: give its model_id")
        if model_id is not None and not isinstance(model_id, str):
            raise GalleryError(
                f"a gallery's model_id is text (whichvoice.encoders.model_id(encoder)), "
                f"not {type(model_id).__name__}"
            )
        if not isinstance(path, str | os.PathLike) or not str(path):
            raise GalleryError(f"gallery path {path!r:.60}: give a file path (a .sqlite file)")
        if "://" in os.fspath(path):  # Path would fold "s3://b/g" into a local folder "s3:"
            raise GalleryError(
                f"{os.fspath(path)}: a gallery is a local file, not a URL (SQLite writes it in "
                "place); export it to a URL with `gallery export`"
            )
        self.path = Path(path)
        self.model_id = model_id or ""
        self.read_only = False
        self._full = False  # read only because its disk is full
        # a gallery not on disk yet is made by its first write (with ``create``): an
        # enrollment or import that fails, or is interrupted, leaves no file behind, and no
        # process ever removes a file another one may have opened
        self._create_on_write = False
        self._file: tuple[int, int] | None = None  # the file opened, to see it moved
        if self.path.is_dir():  # SQLite would say "disk I/O error"
            raise GalleryUnusableError(
                f"{self.path}: is a folder; give a gallery file (a .sqlite path)",
                public="the gallery cannot be used",
            )
        self._refuse_other_files()
        try:
            if self.path.exists():
                try:
                    self._db = _connect(self.path)
                    self._file = self._file_id()
                    self._refuse_a_newer()
                    self._refuse_a_stranger()
                    self._db.execute("PRAGMA journal_mode=WAL")
                    self._setup(model_id)
                except sqlite3.OperationalError as e:
                    if _out_of_descriptors():
                        raise
                    if not (_cannot_write(e) or _out_of_room(e)):
                        raise
                    # a gallery file, or a folder, this user cannot write (or a full disk,
                    # where SQLite cannot add its log's files): still read (list, identify,
                    # verify); a write says it cannot be written, and why
                    if hasattr(self, "_db"):
                        self._db.close()
                    self._db = self._open_read_only()
                    self._refuse_a_newer()  # its first read failed there (a WAL file's)
                    self._full = _out_of_room(e)
            else:  # nothing on disk: an empty gallery in memory until a write (if ``create``)
                if create:  # said now, not after an enrollment's embeddings were made
                    self._check_makeable()
                self._db = _connect(":memory:")
                self._setup(model_id)
                self._create_on_write = create
        except sqlite3.DatabaseError as e:
            if hasattr(self, "_db"):
                self._db.close()
            if _out_of_descriptors():  # not the gallery's fault: said so, not "unusable"
                raise GalleryUnusableError(
                    f"{self.path}: cannot be opened: this process has run out of open files "
                    f"({e}); raise its limit (ulimit -n) or take fewer connections",
                    public="the server is out of open files; try again",
                ) from e
            if "locked" in str(e):  # a writer held it past the 30 s wait: the file is whole
                raise self._busy(e) from e
            if isinstance(e, sqlite3.OperationalError) and _out_of_room(e):
                raise GalleryUnusableError(  # the file is whole: SQLite could not add its log
                    f"{self.path}: the gallery cannot be opened for writing ({e}): is its "
                    "disk full?",
                    public="the gallery cannot be written",
                ) from e
            raise GalleryUnusableError(
                f"{self.path}: not a usable gallery ({e})", public="the gallery cannot be used"
            ) from e
        except GalleryUnusableError:  # damage found by a query (``_damaged``)
            if hasattr(self, "_db"):
                self._db.close()
            raise
        owner = self._owner()
        if model_id is None:
            self.model_id = owner
        elif owner != model_id and not self._adopted(model_id):
            self.close()
            raise self.model_error(model_id, owner)

    def _refuse_a_newer(self) -> None:
        """A gallery a newer whichvoice made (a schema above this one's, or one it cannot
        read) is refused before anything is written into it (not even its journal mode): its
        tables may mean more than this version knows (an older version wrote into a newer
        gallery and its recordings were counted twice: a review)."""
        try:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        except sqlite3.OperationalError as e:  # no meta table (a new file) or another
            if "no such" in str(e):  # program's: _refuse_a_stranger says what it is
                return
            raise
        if row is None:
            return
        try:
            schema = int(str(row[0]).strip())
        except ValueError:
            schema = None
        if schema is None or schema > SCHEMA_VERSION:
            self._db.close()
            raise GalleryUnusableError(
                f"{self.path}: a gallery of schema {row[0]!r}, made by a newer whichvoice (this "
                f"one reads schema 1 to {SCHEMA_VERSION}); upgrade whichvoice",
                public="the gallery cannot be used",
            )

    def _adopted(self, model_id: str) -> bool:
        """Whether this gallery, made for another model, holds no voice (every one removed),
        and so may be opened for ``model_id``: there is nothing to compare with another
        encoder's embeddings. Nothing is written here (a read takes nothing); the first write
        records the new owner (``_check_owner``, in its transaction)."""
        return not self._holds_voices()

    def _holds_voices(self) -> bool:
        return self._db.execute("SELECT 1 FROM voices LIMIT 1").fetchone() is not None

    def _refuse_a_stranger(self) -> None:
        """Another program's SQLite database is no gallery: refused before anything is
        written into it (not even its journal mode)."""
        tables = [r[0] for r in self._db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
        )]  # fmt: skip
        ours = {"meta", "voices", "clips"}
        meta = (
            {r[1] for r in self._db.execute("PRAGMA table_info(meta)")}
            if "meta" in tables
            else set()
        )
        if tables and (not set(tables) <= ours or meta != {"key", "value"}):
            tables = [t for t in tables if t not in ours or t == "meta"]
            self._db.close()
            shown = ", ".join(tables[:5]) + (", ..." if len(tables) > 5 else "")
            raise GalleryUnusableError(
                f"{self.path}: not a whichvoice gallery (a SQLite database of tables {shown}); "
                "give another --gallery path",
                public="the gallery cannot be used",
            )
        # whichvoice's tables with other columns, or a trigger or view it never makes (a
        # trigger ran on enroll and removed every voice; a dropped column was a traceback:
        # fuzzing)
        made = self._db.execute(
            "SELECT type, name FROM sqlite_master WHERE type IN ('trigger', 'view')"
        ).fetchone()
        why = f"it holds a {made[0]} {made[1]!r} whichvoice never makes" if made else None
        for table, columns in COLUMNS.items():
            if why is None and table in tables:
                held = tuple(r[1] for r in self._db.execute(f"PRAGMA table_info({table})"))
                if held != columns:
                    why = f"its {table} table has the columns {', '.join(held)}"
        if why is not None:
            self._db.close()
            raise _unusable(self.path, why)

    def _refuse_other_files(self) -> None:
        """GalleryUnusableError when the file is plainly something else (audio, JSON, text):
        a mistyped --gallery, said as such rather than as a damaged gallery to restore."""
        try:
            mode = os.stat(self.path).st_mode
            if not stat.S_ISREG(mode):
                if stat.S_ISDIR(mode):
                    return  # said where folders are (its own message)
                raise GalleryUnusableError(  # a pipe would be waited on, a device written
                    f"{self.path}: not a regular file (a pipe or a device); give a gallery "
                    "file (a .sqlite path)",
                    public="the gallery cannot be used",
                )
            with open(self.path, "rb") as f:
                head = f.read(16)
        except OSError:  # missing, unreadable: SQLite's open says what is wrong
            return
        if not head or head.startswith(SQLITE_MAGIC):
            return
        kind = next((k for magic, k in OTHER_FILES if head.startswith(magic)), None)
        if kind is None and head.lstrip()[:1] in (b"{", b"["):
            kind = "JSON text (a gallery export is imported with `whichvoice gallery import`)"
        if kind is None:
            return  # no known kind: damage inside a gallery's first page reads so too
        raise GalleryUnusableError(
            f"{self.path}: not a gallery but {kind}; give another --gallery path (a .sqlite file)",
            public="the gallery cannot be used",
        )

    def _owner(self) -> str:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'model'").fetchone()
        return row[0] if row else ""  # none: an empty gallery opened for any model

    def model_error(self, model_id: str, owner: str | None = None) -> GalleryModelError:
        """The error for using this gallery with encoder ``model_id`` (its own: ``owner``)."""
        owner = self.model_id if owner is None else owner
        return GalleryModelError(
            f"{self.path}: made with model {owner}, not {model_id}; "
            f"use --gallery for another file, or {_made_with(owner)}",
            public=f"the gallery was made with model {owner}, not {model_id}",
        )

    def _check_makeable(self) -> None:
        """GalleryUnusableError, naming the gallery, unless its folder can be written or made
        (a home that cannot be written: "/nonexistent: Permission denied", after the work)."""
        from whichvoice.errors import OutputError
        from whichvoice.files import check_creatable

        try:
            check_creatable(self.path.parent, "gallery")
        except OutputError as e:
            reason = getattr(e.__cause__, "strerror", None) or e.__cause__ or e
            raise GalleryUnusableError(
                f"{self.path}: the gallery cannot be written here ({reason}); give another "
                "with --gallery or WHICHVOICE_GALLERY",
                public="the gallery cannot be written",
            ) from e

    def _materialize(self) -> bool:
        """The gallery's file, made at its first write (or the one another process made
        meanwhile, when it belongs to the same model); whether this call made it."""
        self._create_on_write = False
        made = not self.path.exists()
        try:
            make_dirs(self.path.parent)
            db = _connect(self.path)
            db.execute("PRAGMA journal_mode=WAL")
            self._file = self._file_id()
        except (sqlite3.DatabaseError, OSError) as e:
            if made:
                self._remove_files()
            raise GalleryUnusableError(
                f"{self.path}: the gallery cannot be written here ({e})",
                public="the gallery cannot be written",
            ) from e
        self._db.close()
        self._db = db
        try:
            self._setup(self.model_id)
        except sqlite3.OperationalError as e:  # a full disk: no empty gallery left behind
            if not _out_of_room(e):
                raise
            if made:
                self._unmake()
            raise GalleryFullError(
                f"{self.path}: the gallery cannot be written ({e}): is its disk full?",
                public="the gallery cannot be written",
            ) from e
        if self._owner() != self.model_id:
            raise self.model_error(self.model_id, self._owner())
        return made

    def _open_read_only(self) -> sqlite3.Connection:
        """The gallery file opened for reading only (its folder cannot be written: SQLite
        cannot make the write-ahead log's files there); immutable when even that fails."""
        uri = Path(os.path.abspath(self.path)).as_uri()
        self.read_only = True
        flags = ["?mode=ro"]
        wal = Path(f"{self.path}-wal")
        # immutable would not see a log's voices; an empty log (left by an open on a full
        # disk, beside a -shm it could not grow) holds none
        if not wal.exists() or wal.stat().st_size == 0:
            flags.append("?mode=ro&immutable=1")
        for flag in flags:
            db = _connect(uri + flag, self.path, uri=True)
            try:
                db.execute("SELECT value FROM meta WHERE key = 'model'").fetchone()
                return db
            except sqlite3.OperationalError:
                db.close()
        raise sqlite3.OperationalError(
            "unable to open database file, even to read it (the write-ahead log beside it "
            "cannot be read: a read-only folder, or a full disk)"
        )

    def _setup(self, model_id: str | None) -> None:
        """The tables (made when new) and the model this gallery belongs to. A gallery that
        has them is only read: a write transaction at every open made each read (a server's
        identify, verify, list) wait for any writer, for up to 30 s."""
        self._db.execute("PRAGMA synchronous=FULL")
        if self._set_up(model_id):
            return
        with self._transaction():
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
            )
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS voices (name TEXT PRIMARY KEY, "
                "embedding BLOB NOT NULL, dim INTEGER NOT NULL, clips INTEGER NOT NULL, "
                "seconds REAL NOT NULL, "
                "model TEXT NOT NULL, created REAL NOT NULL, updated REAL NOT NULL)"
            )
            self._db.execute(CLIPS_TABLE)
            self._db.execute(
                "INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),)
            )
            if model_id is not None:
                self._db.execute("INSERT OR IGNORE INTO meta VALUES ('model', ?)", (model_id,))

    def _unwritable(self) -> GalleryUnusableError:
        what = (
            "the file system"
            if _read_only_mount(self.path)
            else "the file"
            if not os.access(self.path, os.W_OK)
            else "its folder"
        )
        return GalleryUnusableError(
            f"{self.path}: the gallery cannot be written here ({what} is read-only)",
            public="the gallery cannot be written",
        )

    def _busy(self, e: sqlite3.Error) -> GalleryUnusableError:
        return GalleryUnusableError(
            f"{self.path}: another process held the gallery for over {LOCK_WAIT_S:g} s ({e}); "
            "try again when it is done",
            public="the gallery is busy; try again",
        )

    def _set_up(self, model_id: str | None) -> bool:
        """Whether the gallery already has its tables, its schema and (with ``model_id``) an
        owner: read without a transaction, so a writer elsewhere holds nothing up."""
        try:
            tables = {r[0] for r in self._db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
            )}  # fmt: skip
            if not {"meta", "voices", "clips"} <= tables:
                return False
            keys = {r[0] for r in self._db.execute("SELECT key FROM meta")}
        except sqlite3.OperationalError:
            return False
        return "schema" in keys and (model_id is None or "model" in keys)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        if self._full:
            raise GalleryFullError(
                f"{self.path}: the gallery cannot be written: its disk is full",
                public="the gallery cannot be written",
            )
        if self.read_only:
            raise self._unwritable()
        if self._create_on_write:
            self._made_here = self._materialize()
        moved = False
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                with contextlib.suppress(sqlite3.Error):  # the failure is what to say
                    self._db.execute("ROLLBACK")
                raise
            # the file moved or removed meanwhile (a backup script, a cleanup): its commit
            # would land in a file no path names, or in a log left beside the old name
            moved = self._file is not None and self._file_id() != self._file
            self._db.execute("ROLLBACK" if moved else "COMMIT")
        except BaseException as e:
            full = isinstance(e, sqlite3.OperationalError) and _out_of_room(e)
            if (full or getattr(self, "_made_here", False)) and self._holds_nothing():
                self._unmake()  # a failed first write leaves no empty gallery behind
            if isinstance(e, sqlite3.OperationalError) and "locked" in str(e):
                raise self._busy(e) from e  # a writer held it past the wait: the file is whole
            if (
                isinstance(e, sqlite3.OperationalError)
                and _cannot_write(e)
                and not _out_of_descriptors()
            ):  # opened (by reading alone) and found read-only at its first write
                raise self._unwritable() from e
            if not full:
                raise
            raise GalleryFullError(
                f"{self.path}: the gallery cannot be written ({e}): is its disk full? "
                "nothing of this change was written",
                public="the gallery cannot be written",
            ) from e
        if moved:
            raise GalleryMovedError(
                f"{self.path}: the gallery file was moved or removed while this command had it "
                "open; nothing of this change was written (run it again)",
                public="the gallery cannot be written",
            )

    def _file_id(self) -> tuple[int, int] | None:
        """(device, inode) of the file at the gallery's path now; None when there is none."""
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_dev, st.st_ino

    def _remove_files(self) -> None:
        for part in ("", "-wal", "-shm"):
            Path(f"{self.path}{part}").unlink(missing_ok=True)

    def _holds_nothing(self) -> bool:
        """Whether the gallery holds no voice (read by a connection of its own: the one that
        failed to write may fail to read too)."""
        try:
            db = _connect(Path(os.path.abspath(self.path)).as_uri() + "?mode=ro", self.path,
                          uri=True)  # fmt: skip
            try:
                return db.execute("SELECT COUNT(*) FROM voices").fetchone()[0] == 0
            except sqlite3.OperationalError as e:
                if "no such table" in str(e):  # the first write made the file, not its tables
                    return True  # (a full disk at 40-64 KiB free: a review)
                raise
            finally:
                db.close()
        except sqlite3.Error:  # unreadable: nothing in it if it is one page and no log
            try:
                wal = Path(f"{self.path}-wal")
                small = self.path.stat().st_size <= 4096
                return small and (not wal.exists() or wal.stat().st_size == 0)
            except OSError:
                return False

    def _unmake(self) -> None:
        """Remove the file this gallery made at its first write, which then failed: an
        empty gallery in memory again, made on the next write."""
        self._db.close()
        self._remove_files()
        self._db, self._file = _connect(":memory:"), None
        self._setup(self.model_id)
        self._create_on_write, self._made_here = True, False

    def enroll(
        self,
        name: str,
        embeddings: np.ndarray,
        seconds: float,
        digests: Sequence[str] = (),
        *,
        min_seconds: float = 0.0,
    ) -> EnrolledVoice:
        """Add clips to ``name`` (created if new): ``embeddings`` float (n_clips, dim), each
        L2-normalised; ``seconds`` of audio they came from. Returns the updated voice.
        Embeddings whose size is neither the gallery's voices' nor a whole multiple or part of
        it (a voice of several prototypes beside one of one) are refused (GalleryError): the
        gallery would no longer score. ``digests``: the clips' contents (``enrolled_digests``
        lists them later, so that a recording enrolled again can be counted once).
        ``min_seconds``: the speech the voice must hold once written, checked in the write's
        transaction (EnrollmentShortError): a voice removed by another call while the caller
        read its recordings, which counted on what it held, is not made again from less."""
        name = self._stored(voice_name(name))
        digests = list(digests)
        if not all(isinstance(d, str) and 0 < len(d) <= MAX_DIGEST for d in digests):
            raise GalleryError(f"{name}: digests are strings of 1 to {MAX_DIGEST} characters")
        try:
            embeddings = np.asarray(embeddings, np.float32)
        except (TypeError, ValueError) as e:
            raise GalleryError(f"{name}: embeddings are an array of numbers ({e})") from e
        if embeddings.ndim != 2 or embeddings.shape[0] == 0 or embeddings.shape[1] == 0:
            raise GalleryError(
                f"{name}: no clip embeddings to enroll (give float (n_clips, dim), "
                f"not shape {embeddings.shape})"
            )
        if not np.isfinite(embeddings).all():
            raise GalleryError(f"{name}: embeddings that are not numbers cannot be enrolled")
        if np.abs(embeddings).max() > MAX_COMPONENT:  # every later read would refuse it
            raise GalleryError(
                f"{name}: embeddings hold numbers past {MAX_COMPONENT:g}: give L2-normalised ones"
            )
        if not np.linalg.norm(embeddings, axis=1).all():
            raise GalleryError(f"{name}: an embedding of zeros (a clip with no speech)")
        if (
            not isinstance(seconds, numbers.Real)
            or isinstance(seconds, bool)
            or not math.isfinite(seconds)
            or seconds < 0
        ):
            raise GalleryError(f"{name}: seconds of audio {seconds!r}: a number, 0 or more")
        seconds = float(seconds)  # SQLite stores a numpy number as bytes
        dims = self._dims()
        if not all(_same_encoder(embeddings.shape[1], d) for d in dims):
            raise GalleryError(
                f"{name}: embeddings of size {embeddings.shape[1]}; the gallery's voices "
                f"have {', '.join(map(str, sorted(dims)))} (another encoder's?)"
            )
        now = time.time()
        with self._transaction():
            self._check_owner(self.model_id)
            row = self._db.execute(
                "SELECT embedding, dim, clips, seconds, created FROM voices WHERE name = ?", (name,)
            ).fetchone()
            if row is not None:  # a damaged voice is not averaged into (it stayed NaN)
                self._check_record(name, *row)
            n_new = embeddings.shape[0]
            total = embeddings.astype(np.float64).sum(axis=0)
            held = 0.0 if row is None else float(row[3])
            if held + seconds < min_seconds:
                raise EnrollmentShortError(
                    f"{name}: it holds {held:.1f} s of speech now (removed by another call "
                    f"meanwhile?); with these {seconds:.1f} s that is under the "
                    f"{min_seconds:g} s enrolling needs: nothing was added"
                )
            if row is None:  # a new voice: recordings left by an earlier one are not its
                self._db.execute("DELETE FROM clips WHERE name = ?", (name,))
            elif digests:
                marks = ",".join("?" * len(digests))
                again = self._db.execute(
                    f"SELECT digest FROM clips WHERE name = ? AND digest IN ({marks})",
                    (name, *digests),
                ).fetchall()
                if again:  # enrolled by another call since ours looked (its check is first)
                    every = len(again) == len(set(digests))
                    raise (AlreadyEnrolledError if every else GalleryError)(
                        f"{name}: {len(again)} of these recordings are enrolled into it already "
                        "(by another call meanwhile?); nothing was added (enroll again)"
                    )
            if row is None:
                clips, secs, created = n_new, seconds, now
                mean = total / n_new
            else:
                old = np.frombuffer(row[0], np.float32).astype(np.float64)
                if row[1] != embeddings.shape[1]:
                    raise GalleryError(
                        f"{name}: embeddings of size {embeddings.shape[1]}, "
                        f"the gallery has {row[1]}"
                    )
                clips, secs, created = row[2] + n_new, row[3] + seconds, row[4]
                mean = (old * row[2] + total) / clips
            emb = mean.astype(np.float32)
            self._db.execute(
                "INSERT OR REPLACE INTO voices VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (name, emb.tobytes(), emb.shape[0], clips, secs, self.model_id, created, now),
            )
            if digests:
                self._db.executemany(
                    "INSERT OR IGNORE INTO clips VALUES (?, ?)", [(name, d) for d in digests]
                )
        return EnrolledVoice(name, emb, clips, secs, self.model_id, created, now)

    def enrolled_digests(self, name: str) -> set[str]:
        """The contents (``enroll``'s digests) of the recordings enrolled into ``name``; none
        for a voice enrolled before galleries kept them, or imported from an export."""
        try:
            rows = self._db.execute(
                "SELECT digest FROM clips WHERE name = ?", (self._stored(voice_name(name)),)
            ).fetchall()
        except sqlite3.OperationalError:  # a gallery made before the table, opened read-only
            return set()
        return {d for (d,) in rows}

    def _stored(self, name: str) -> str:
        """The stored name ``name`` means: itself, else the one that reads the same stripped
        and composed (a voice enrolled before names were composed keeps its spelling)."""
        want = _normal(name)  # text, and UTF-8: before SQLite binds it (it raised)
        if self._db.execute("SELECT 1 FROM voices WHERE name = ?", (name,)).fetchone():
            return name
        return next((n for n in self.names() if _normal(n) == want), name)

    def get(self, name: str) -> EnrolledVoice:
        row = self._db.execute(
            "SELECT * FROM voices WHERE name = ?", (self._stored(name),)
        ).fetchone()
        if row is None:
            known = _some(self.names()) or "none"
            raise NotEnrolledError(
                f"{name!r} is not enrolled in {self.path} (enrolled: {known})",
                public=f"{name!r} is not enrolled",
            )
        return self._voice(row)

    def voices(self) -> list[EnrolledVoice]:
        return [self._voice(r) for r in self._db.execute("SELECT * FROM voices ORDER BY name")]

    def check(self) -> None:
        """GalleryUnusableError naming the file when SQLite finds it damaged (``PRAGMA
        quick_check``: every page read once; for a command that rewrites the gallery)."""
        problems = [row[0] for row in self._db.execute("PRAGMA quick_check").fetchall()]
        if problems != ["ok"]:
            raise _unusable(self.path, problems[0])

    def names(self) -> list[str]:
        names = [r[0] for r in self._db.execute("SELECT name FROM voices ORDER BY name")]
        if (bad := next((n for n in names if not isinstance(n, str)), None)) is not None:
            raise _name_not_text(self.path, bad)
        return names

    def remove(self, name: str) -> str:
        """Forget ``name``; returns the name it was stored under (stripped, composed)."""
        return self.remove_many([name])[0]

    def remove_many(self, names: Sequence[str]) -> list[str]:
        """Forget every one of ``names``, in one transaction: all of them, or (a name not
        enrolled: NotEnrolledError naming every such name) none. Returns the names they were
        stored under, in order."""
        if isinstance(names, str) or not names:
            raise GalleryError("give the names of the voices to remove: a list of one or more")
        with self._transaction():
            stored = list(dict.fromkeys(self._stored(n) for n in names))
            known = {n for (n,) in self._db.execute("SELECT name FROM voices")}
            missing = list({_normal(n): n for n in stored if n not in known}.values())
            if missing:
                shown = ", ".join(map(repr, missing[:10])) + (
                    f" and {len(missing) - 10} more" if len(missing) > 10 else ""
                )
                said = "is" if len(missing) == 1 else "are"
                raise NotEnrolledError(
                    f"{shown} {said} not enrolled in {self.path}; nothing was removed",
                    public=f"{shown} {said} not enrolled; nothing was removed",
                )
            for name in stored:
                self._db.execute("DELETE FROM voices WHERE name = ?", (name,))
                self._db.execute("DELETE FROM clips WHERE name = ?", (name,))
        self._clear_log()
        return stored

    def _clear_log(self) -> None:
        """Copy the write-ahead log into the file and empty it, after a change that forgets
        a voice (remove, rename, an import's replacement): until then the log holds the
        voice's pages as they were (a data-protection review found a removed voice's
        embedding and digests in ``-wal`` while a server's other request had the gallery
        open, and after a kill). Not waited for: where another connection still reads an
        older state the log stays until the next change, or until the last one closes."""
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("PRAGMA busy_timeout = 0")
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            finally:
                self._db.execute(f"PRAGMA busy_timeout = {int(LOCK_WAIT_S * 1000)}")

    def rename(self, name: str, new: str) -> EnrolledVoice:
        """Give voice ``name`` the name ``new`` (a misspelt enrollment mended without its
        recordings), with its recordings' digests; VoiceExistsError when ``new`` is another
        voice's (``remove`` it first, or pick another name). Returns the voice renamed."""
        new = voice_name(new)
        with self._transaction():
            stored = self._stored(name)
            held = self._db.execute("SELECT 1 FROM voices WHERE name = ?", (stored,)).fetchone()
            if held is None:
                raise NotEnrolledError(
                    f"{name!r} is not enrolled in {self.path}", public=f"{name!r} is not enrolled"
                )
            target = self._stored(new)
            if (
                target != stored
                and self._db.execute("SELECT 1 FROM voices WHERE name = ?", (target,)).fetchone()
            ):
                raise VoiceExistsError(
                    f"{target!r} is another voice of {self.path}: remove it first, or give "
                    "another name",
                    public=f"{target!r} is another voice: remove it first, or give another name",
                )
            now = time.time()
            self._db.execute(
                "UPDATE voices SET name = ?, updated = ? WHERE name = ?", (new, now, stored)
            )
            if new != stored:  # (to itself: its own recordings stay, a review)
                self._db.execute("DELETE FROM clips WHERE name = ?", (new,))  # an old voice's
                self._db.execute("UPDATE clips SET name = ? WHERE name = ?", (new, stored))
        self._clear_log()
        return self.get(new)

    def convert(
        self, from_id: str, model_id: str, convert: Callable[[np.ndarray], np.ndarray]
    ) -> int:
        """Give every voice's stored embedding (float32 (dim,)) to ``convert`` (which returns
        the new float32 embedding, or raises ValueError) and the gallery from model
        ``from_id`` to ``model_id``, in one transaction: a failure or a kill leaves it as it
        was, and a gallery another process converted or gave another model meanwhile is
        refused. Returns the number of voices converted."""
        with self._transaction():
            self._check_owner(from_id)
            rows = self._db.execute("SELECT name, embedding FROM voices").fetchall()
            for name, blob in rows:
                try:
                    emb = np.ascontiguousarray(convert(np.frombuffer(blob, np.float32)), np.float32)
                except ValueError as e:
                    raise GalleryError(f"{self.path}: {name!r} cannot be converted ({e})") from e
                self._db.execute(
                    "UPDATE voices SET embedding = ?, dim = ?, model = ? WHERE name = ?",
                    (emb.tobytes(), emb.shape[0], model_id, name),
                )
            self._db.execute("UPDATE meta SET value = ? WHERE key = 'model'", (model_id,))
        self.model_id = model_id
        return len(rows)

    def _check_owner(self, model_id: str) -> None:
        """Inside a write: refuse when the gallery's model is no longer ``model_id`` (another
        process converted it, e.g. `whichvoice gallery upgrade`, since it was opened)."""
        owner = self._owner()
        if owner and owner != model_id:
            if self._holds_voices():
                raise self.model_error(model_id, owner)
            # every voice removed: it belongs to no encoder, and now to this one
            self._db.execute("UPDATE meta SET value = ? WHERE key = 'model'", (model_id,))

    def export_json(self) -> dict:
        """Every voice, embeddings as lists of floats: a JSON-able dict (no pickle). A voice
        whose stored embedding is not the size its record says is a GalleryError naming it:
        an export holding it is a backup that no import takes back."""
        return {
            "format": EXPORT_FORMAT,
            "schema": SCHEMA_VERSION,
            "model": self.model_id,
            "voices": [
                {
                    **v.summary(),
                    "embedding": v.embedding.tolist(),
                    "digests": sorted(self.enrolled_digests(v.name)),
                }
                for v in self.voices()
            ],
        }

    def import_json(self, data: dict, *, replace: bool = False, dim: int | None = None) -> int:
        """Add the voices of an export; one transaction, all or nothing. A voice the gallery
        already holds is replaced only with ``replace`` (else VoiceExistsError names them,
        and nothing is imported). With ``dim``, the encoder's embedding size, an embedding
        that is not 1 to MAX_PROTOTYPES of them is refused (an export whose model id was
        copied onto other numbers would else make every identification fail). Returns how
        many voices were imported."""
        if not isinstance(data, dict) or data.get("format") != EXPORT_FORMAT:
            raise GalleryError("not a whichvoice gallery export")
        if isinstance(data.get("voices"), list) and not data["voices"]:
            return 0  # an export of an empty gallery: nothing to add, whatever its encoder
        if data.get("model") != self.model_id:
            theirs = str(data.get("model"))
            shipped = theirs.rsplit("-", 1)[0]  # auto, resemblyzer, dvector: their versions
            if shipped in VERSIONED and shipped == self.model_id.rsplit("-", 1)[0]:
                # the same encoder at another version: no --model of this whichvoice reads it
                raise GalleryModelError(
                    f"the export was made with another version of this encoder (model "
                    f"{theirs}; this whichvoice's is {self.model_id}): export again from its "
                    "gallery after `whichvoice gallery upgrade` there (an earlier default "
                    "fusion), or enroll its voices again"
                )
            raise GalleryModelError(
                f"the export was made with model {theirs}, not {self.model_id}; "
                f"import it into another --gallery, with {_made_with(theirs)}"
            )
        if not isinstance(data.get("schema", SCHEMA_VERSION), int) or not (
            1 <= data.get("schema", SCHEMA_VERSION) <= SCHEMA_VERSION
        ):
            raise GalleryError(
                f"a gallery export of schema {data.get('schema')!r}; this whichvoice reads "
                f"schema 1 to {SCHEMA_VERSION} (a newer whichvoice made it?)"
            )
        voices = data.get("voices")
        if not isinstance(voices, list):
            raise GalleryError("a damaged gallery export (its voices are not a list)")
        rows = [_export_row(i, v, self.model_id) for i, v in enumerate(voices)]
        held_clips = [
            _export_digests(v, row[0], row[2]) for v, row in zip(voices, rows, strict=True)
        ]
        if dim is not None:
            for name, emb, *_ in rows:
                size = emb.shape[0]
                if size % dim or not 1 <= size // dim <= MAX_PROTOTYPES:
                    raise GalleryError(
                        f"a damaged gallery export ({name}: an embedding of size {size}; "
                        f"this encoder's are {dim} numbers a prototype)"
                    )
        dims = {emb.shape[0] for _, emb, *_ in rows if emb.ndim == 1}
        dims |= self._dims()
        if not all(_same_encoder(a, b) for a in dims for b in dims):
            raise GalleryError(
                f"a damaged gallery export (embeddings of {sorted(dims)} dimensions)"
            )
        names = [row[0] for row in rows]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise GalleryError(f"a damaged gallery export (named twice: {', '.join(twice)})")
        with self._transaction():
            self._check_owner(self.model_id)
            held = sorted(set(names) & set(self.names()))
            if held and not replace:
                raise VoiceExistsError(
                    f"already enrolled: {_some(held)} (an import replaces a voice only "
                    "when told to: --replace, or replace=true over HTTP)"
                )
            for (name, emb, clips, secs, created, updated), digests in zip(
                rows, held_clips, strict=True
            ):
                # a replaced voice's recordings are no longer the ones it holds: the export's
                self._db.execute("DELETE FROM clips WHERE name = ?", (name,))
                self._db.executemany(
                    "INSERT OR IGNORE INTO clips VALUES (?, ?)", [(name, d) for d in digests]
                )
                self._db.execute(
                    "INSERT OR REPLACE INTO voices VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        name,
                        emb.tobytes(),
                        emb.shape[0],
                        clips,
                        secs,
                        self.model_id,
                        created,
                        updated,
                    ),
                )
        if held:
            self._clear_log()  # the replaced voices' digests
        return len(rows)

    def _voice(self, row: tuple) -> EnrolledVoice:
        if len(row) != 8:  # a table of other columns: SELECT * unpacked into a traceback
            raise _unusable(self.path, "its voices table is not whichvoice's")
        name, blob, dim, clips, seconds, model, created, updated = row
        self._check_record(name, blob, dim, clips, seconds, created, updated, model=model)
        return EnrolledVoice(
            name, np.frombuffer(blob, np.float32).copy(), clips, seconds, model, created, updated
        )

    def _check_record(
        self, name: object, blob: object, dim: object, clips: object, *reals: object, model=""
    ) -> None:
        """GalleryUnusableError when a voice's stored record is not what enroll writes: the
        file's bytes changed (a flipped bit made a name bytes, an embedding NaN: answers of
        NaN, a name printed b'alice', "a voice name must be text" blamed on the user, and
        enrolling into it kept it NaN: fuzzing). ``reals``: its seconds and times."""
        if not isinstance(name, str):
            raise _name_not_text(self.path, name)
        if not (
            isinstance(blob, bytes)
            and isinstance(model, str)
            and type(dim) is int
            and dim > 0
            and type(clips) is int
            and clips > 0
            and all(type(x) in (int, float) and math.isfinite(x) for x in reals)  # type: ignore[arg-type]
            and reals[0] >= 0  # type: ignore[operator]
        ):
            why = "a field of the wrong type or not a number"
        elif len(blob) != 4 * dim:
            why = f"its embedding holds {len(blob) / 4:g} numbers, its record says {dim}"
        elif not np.all(np.abs(np.frombuffer(blob, np.float32)) <= MAX_COMPONENT):
            why = "its embedding holds numbers that no enrollment makes"
        else:
            return
        raise GalleryUnusableError(  # the file's bytes changed: no score of it means anything
            f"{self.path}: voice {name!r} is damaged ({why}); remove it (gallery remove) and "
            "enroll it again",
            public=f"the gallery's voice {name!r} is damaged",
        )

    def _dims(self) -> set[int]:
        """The sizes of the voices' embeddings; a record whose size is not a whole number is
        named damaged (``_voice``)."""
        dims = {d for (d,) in self._db.execute("SELECT DISTINCT dim FROM voices").fetchall()}
        if not all(type(d) is int and d > 0 for d in dims):  # the file's bytes changed
            for row in self._db.execute("SELECT * FROM voices").fetchall():
                self._voice(row)
        return dims


def _export_digests(v: dict, name: str, clips: int) -> list[str]:
    """The recordings' digests of voice ``name`` of an export (none in an export made before
    galleries kept them), each checked: at most one a clip."""
    digests = v.get("digests", [])
    if (
        not isinstance(digests, list)
        or len(digests) > clips
        or not all(isinstance(d, str) and 0 < len(d) <= MAX_DIGEST for d in digests)
    ):
        raise GalleryError(f"a damaged gallery export ({name}: its digests)")
    return digests


def _export_row(i: int, v: object, model_id: str) -> tuple:
    """(name, embedding, clips, seconds, created, updated) of voice ``i`` of an export, each
    checked; GalleryError (or VoiceNameError) naming the voice and what is wrong."""
    if not isinstance(v, dict):
        raise GalleryError(f"a damaged gallery export (voice {i} is not an object)")
    missing = [k for k in ("name", "embedding", "clips", "seconds", "created", "updated")
               if k not in v]  # fmt: skip
    if missing:
        raise GalleryError(f"a damaged gallery export (voice {i} has no {', '.join(missing)})")
    try:
        name = voice_name(v["name"])
    except VoiceNameError as e:
        raise VoiceNameError(f"a gallery export with a bad voice name: {e}") from e
    if v.get("model", model_id) != model_id:  # each voice may say its encoder too
        raise GalleryModelError(
            f"a gallery export whose voice {name!r} was made with model {v['model']}, "
            f"not {model_id}"
        )
    emb = v["embedding"]
    if not isinstance(emb, list) or not emb or not all(_is_number(x) for x in emb):
        raise GalleryError(f"a damaged gallery export ({name}: not an embedding)")
    emb = np.asarray(emb, np.float32)
    if not np.isfinite(emb).all() or np.abs(emb).max() > MAX_COMPONENT:
        # past the bound, every later read would refuse it (and the gallery with it)
        raise GalleryError(f"a damaged gallery export ({name}: not an embedding)")
    if not np.any(emb):  # scores 0 against every clip, forever
        raise GalleryError(f"a damaged gallery export ({name}: an embedding of zeros)")
    dim = v.get("dim", emb.shape[0])
    if dim != emb.shape[0]:
        raise GalleryError(
            f"a damaged gallery export ({name}: dim {dim}, an embedding of {emb.shape[0]})"
        )
    clips = v["clips"]
    if not isinstance(clips, int) or isinstance(clips, bool) or not 1 <= clips <= MAX_CLIPS:
        raise GalleryError(f"a damaged gallery export ({name}: clips {clips!r})")
    latest = time.time() + 86_400  # a clock a day ahead at most
    values = {k: v[k] for k in ("seconds", "created", "updated")}
    for key, value in values.items():
        if (
            not _is_number(value)
            or not math.isfinite(value)
            or value < 0
            or (key != "seconds" and value > latest)
        ):
            raise GalleryError(f"a damaged gallery export ({name}: {key} {value!r})")
    return name, emb, clips, *(float(x) for x in values.values())


def _same_encoder(size: int, other: int) -> bool:
    """Whether stored embeddings of ``size`` and ``other`` numbers can come from one encoder:
    equal, or one a whole multiple of the other (a voice enrolled with several prototypes
    beside one enrolled before them, ``whichvoice.prototypes``)."""
    small, big = sorted((size, other))
    return small > 0 and big % small == 0 and big // small <= MAX_PROTOTYPES


def _is_number(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def read_export(path: str | os.PathLike) -> dict:
    """A gallery export from a file or URL (``s3://...``), or standard input (``-``)."""
    from whichvoice import storage

    try:
        raw = sys.stdin.buffer.read() if path == "-" else storage.read_bytes(path)
        data = json.loads(raw.decode("utf-8"))
    except (OSError, ValueError, RecursionError, storage.StorageError) as e:
        shown = "standard input" if path == "-" else path
        reason = getattr(e, "strerror", None) or e  # not "[Errno 2] ...: 'path'" (review)
        raise GalleryError(f"{shown}: cannot read a gallery export ({reason})") from e
    if not isinstance(data, dict) or data.get("format") != EXPORT_FORMAT:
        shown = "standard input" if path == "-" else path
        raise GalleryError(f"{shown}: not a whichvoice gallery export")
    return data


def write_export(path: str | os.PathLike, data: dict) -> None:
    """Write ``Gallery.export_json()`` to a file or URL, whole or not at all."""
    from whichvoice import storage
    from whichvoice.errors import OutputLostError

    try:
        storage.write_bytes(path, (json.dumps(data, indent=1) + "\n").encode())
    except OSError as e:  # a full disk: named (exit 1), and nothing half-written is left
        if e.errno not in _NO_ROOM:
            raise  # a path that cannot be made: the command's own one line
        raise OutputLostError(f"{path}: cannot write the export ({e.strerror or e})") from e


_NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # a full disk, a quota, a size limit


# what names a shipped encoder by its id for the command line (``encoders.option_name``, set
# there: ``encoders`` imports this module, not the other way round); None: no name known
OPTION_NAME: Callable[[str], str | None] = lambda owner: None  # noqa: E731
VERSIONED = ("auto", "resemblyzer", "dvector")  # shipped encoders whose ids carry a version


def _made_with(owner: str) -> str:
    """How to name the encoder whose id is ``owner`` on the command line: ``--model NAME``
    for a shipped one (``serve`` takes it as ``--encoder NAME``), else the run that made it."""
    name = OPTION_NAME(owner)
    if name is None:
        return "--model with the run that made it (serve: --encoder)"
    return f"--model {name} (serve: --encoder {name}), the encoder that made it"

"""What a batch run reads: a manifest, a labels CSV, files and folders, each as a stream of
``BatchInput`` rows."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from whichvoice import storage
from whichvoice.audio import listed_audio
from whichvoice.errors import OutputError, WhichvoiceError
from whichvoice.predict import AUDIO_SUFFIXES, looks_like_a_file
from whichvoice.text import spelled

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".parquet": "parquet"}


class BatchInputError(WhichvoiceError):
    """A manifest or labels CSV that cannot be read, or a line of it that names no file."""


@dataclass(frozen=True)
class BatchInput:
    """One file to identify. ``path``: how the input names it (the output's key, for resume);
    ``source``: where to read it; ``voice``: its true voice, when the input knows it."""

    path: str
    source: str
    voice: str | None = None


@dataclass(frozen=True)
class Inputs:
    """Inputs read lazily, as often as needed (every pass reads the source again), so a
    first pass can count and check them. ``name`` says what they are, for messages."""

    name: str
    read: Callable[[], Iterator[BatchInput]]
    labelled: bool = False  # the inputs know their true voice
    reiterable: bool = True

    def __iter__(self) -> Iterator[BatchInput]:
        return self.read()


def _resolve(base: Path | str, path: str) -> str:
    if "://" in path or Path(path).is_absolute():
        return path
    return str(storage.join(base, path))


def _parent(path: str | os.PathLike) -> Path | str:
    """The folder relative paths in a list are read from: a local folder or a URL prefix."""
    return os.fspath(path).rsplit("/", 1)[0] if storage.is_url(path) else Path(path).parent


def manifest_inputs(manifest: str | os.PathLike) -> Inputs:
    """The files a manifest lists: a corpus manifest.jsonl, any JSONL whose objects have a
    "path", or a text file with one path a line; relative paths are relative to the
    manifest's folder. The manifest and its paths may be URLs (``s3://...``), streamed.
    Reading raises BatchInputError naming the file and line."""
    manifest = manifest if storage.is_url(manifest) else Path(manifest)

    def read() -> Iterator[BatchInput]:
        try:
            f = storage.open_text(manifest, encoding="utf-8")
        except (OSError, storage.StorageError) as e:
            raise BatchInputError(
                f"{manifest}: cannot read ({getattr(e, 'strerror', None) or e})"
            ) from e
        with f:
            try:
                for n, line in enumerate(f, 1):
                    text = line.strip()
                    if not text:
                        continue
                    path = _manifest_path(text, manifest, n) if text.startswith("{") else text
                    yield BatchInput(path, _resolve(_parent(manifest), path))
            except UnicodeDecodeError as e:
                raise BatchInputError(f"{manifest}: not a text file ({e})") from e

    return Inputs(str(manifest), read)


def _manifest_path(text: str, manifest: Path | str, n: int) -> str:
    try:
        row = json.loads(text)
    except ValueError as e:
        raise BatchInputError(f"{manifest}:{n}: not a JSON object ({e})") from e
    path = row.get("path") if isinstance(row, dict) else None
    if not isinstance(path, str) or not path.strip():
        raise BatchInputError(f'{manifest}:{n}: no "path" in {text[:80]}')
    return path


def label_columns(row: list[str], where: str) -> tuple[int, int] | None:
    """The (path, voice) columns a labels CSV's first ``row`` names as its header (any order,
    other columns ignored), or None when the row is data (a cell names an audio file: the
    columns are then path,voice). BatchInputError for a header without both columns."""
    cells = [c.strip().lower() for c in row]
    if "path" in cells and "voice" in cells:
        return cells.index("path"), cells.index("voice")
    if any(Path(c).suffix in AUDIO_SUFFIXES for c in cells):
        return None
    raise BatchInputError(
        f"{where}: expected a header naming the columns path and voice, or rows path,voice; "
        f"got {','.join(row)!r}"
    )


def label_rows(rows, csv_path: str | os.PathLike) -> Iterator[tuple[str, str, str]]:
    """(where: ``CSV:LINE``, path, voice) of each row of a labels CSV read by ``rows`` (a
    ``csv.reader``): blank rows skipped, a header row read by ``label_columns``.
    BatchInputError for a row without a path or a voice."""
    columns = (0, 1)
    for row in rows:
        if not "".join(row).strip():
            continue
        cells = [c.strip() for c in row]
        where = f"{csv_path}:{rows.line_num}"
        if rows.line_num == 1:
            header = label_columns(cells, where)
            if header is not None:
                columns = header
                continue
        path, voice = (cells[i] if i < len(cells) else "" for i in columns)
        if not path or not voice:
            raise BatchInputError(f"{where}: expected 'path,voice', got {','.join(row)!r}")
        yield where, path, voice


def labelled_inputs(csv_path: str | os.PathLike) -> Inputs:
    """The rows ``path,voice`` of a CSV (header optional; paths relative to its folder), or
    the clips of a folder of <speaker>/<clips> (``recordings.labelled_folder``). A voice may
    be named by its id (``flite:slt``) or, when unambiguous, its name (``slt``)."""
    csv_path = csv_path if storage.is_url(csv_path) else Path(csv_path)

    def read() -> Iterator[BatchInput]:
        if isinstance(csv_path, Path) and csv_path.is_dir():  # <speaker>/<clips>
            from whichvoice.recordings import RecordingsError, labelled_folder

            try:
                rows = labelled_folder(csv_path)
            except RecordingsError as e:
                raise BatchInputError(str(e)) from None
            for path, voice in rows:
                yield BatchInput(str(path), str(path), voice)
            return
        try:
            f = storage.open_text(csv_path, encoding="utf-8-sig", newline="")
        except (OSError, storage.StorageError) as e:
            raise BatchInputError(
                f"{csv_path}: cannot read ({getattr(e, 'strerror', None) or e})"
            ) from e
        with f:
            try:
                for _, path, voice in label_rows(csv.reader(f), csv_path):
                    yield BatchInput(path, _resolve(_parent(csv_path), path), voice)
            except (UnicodeDecodeError, csv.Error) as e:
                raise BatchInputError(f"{csv_path}: not a path,voice CSV ({e})") from e

    return Inputs(str(csv_path), read, labelled=True)


def path_inputs(paths: Iterable[str | os.PathLike]) -> Inputs:
    """Files as given, and the audio files under each folder, walked lazily in the order of
    ``predict.expand_paths`` (sorted, recursively); a URL names an object or a prefix. A file
    given by a path that keeps its text (the CLI's, ``given``: ``./a.wav``) is named so."""
    given = list(paths)
    names = {i: p.given for i, p in enumerate(given) if isinstance(getattr(p, "given", None), str)}
    paths = [os.fspath(p) if storage.is_url(p) else Path(p) for p in given]

    def walk(folder: Path) -> Iterator[Path]:
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            if entry.is_dir(follow_symlinks=False):
                yield from walk(Path(entry.path))
            elif listed_audio(entry):
                yield Path(entry.path)

    def read() -> Iterator[BatchInput]:
        listed: dict[str, list[str]] = {}  # each URL's objects, listed once
        for p in paths:  # a mistyped folder is named before any work, not skipped quietly
            empty = False
            if storage.is_url(p):
                listed[p] = list(storage.list_files(p, AUDIO_SUFFIXES))
                # a missing object is one input that fails; a prefix holding none, a folder's
                empty = not listed[p] and not looks_like_a_file(p)
            elif p.is_dir() and next(walk(p), None) is None:
                empty = True
            if empty:
                raise BatchInputError(
                    f"{p}: no audio files ({', '.join(sorted(AUDIO_SUFFIXES))}) in the folder"
                )
        for i, p in enumerate(paths):
            if storage.is_url(p):
                for url in listed[p] or [p]:  # a missing object: its row says why
                    yield BatchInput(url, url)
                continue
            if not p.is_dir():
                yield BatchInput(spelled(names.get(i, str(p))), str(p))
                continue
            for f in walk(p):
                yield BatchInput(spelled(str(f)), str(f))

    return Inputs(", ".join(map(str, paths)), read)


def output_format(output: str | os.PathLike) -> str:
    """ "csv", "jsonl" or "parquet", from the output's suffix; OutputError for any other."""
    try:
        return FORMATS[Path(output).suffix.lower()]
    except KeyError:
        raise OutputError(
            f"{output}: unknown output format; name it .csv, .jsonl or .parquet"
        ) from None

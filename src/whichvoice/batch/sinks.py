"""Where the rows go: CSV or JSONL lines appended and flushed, or Parquet through a JSONL
journal that becomes the .parquet file at the end."""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import itertools
import json
import os
from collections.abc import Iterator
from pathlib import Path

from whichvoice.errors import OutputError, OutputLostError

ROW_GROUP = 10_000  # rows per Parquet row group


class _Lines:
    """A CSV or JSONL output: rows appended line by line, flushed after every chunk."""

    def __init__(self, path: Path, fmt: str) -> None:
        self.path = path
        self.fmt = fmt
        self.file: io.TextIOWrapper | None = None
        self.columns: tuple[str, ...] = ()

    def exists(self) -> bool:
        return self.path.exists()

    def complete(self) -> bool:
        return False  # it may end with a cut line

    def _lines(self) -> Iterator[str]:
        """The lines of the complete rows (a last row cut by a kill is left out: a line
        without its newline, or in CSV a quoted field, such as a path holding a newline, cut
        before its closing quote)."""
        end = _complete_end(self.path, self.fmt)
        with open(self.path, "rb") as f:
            # only the complete rows' bytes are decoded (a kill may cut a character in two);
            # a UTF-8 character never holds the byte of "\n", so each line decodes alone
            for raw in f:
                end -= len(raw)
                if end < 0:
                    return
                yield raw.decode("utf-8")

    def _header(self) -> tuple[str, ...] | None:
        """The columns, from the first line alone (``_lines`` would scan the whole file for
        where its complete rows end: a header holds no quoted newline)."""
        with open(self.path, "rb") as f:
            raw = f.readline()
        if not raw.endswith(b"\n"):  # empty, or cut before its end
            return None
        first = raw.decode("utf-8")
        if self.fmt == "csv":
            return tuple(next(csv.reader([first])))
        return tuple(json.loads(first))

    def check_columns(self, columns: tuple[str, ...]) -> None:
        try:
            found = self._header()
        except (ValueError, OSError) as e:
            raise OutputError(f"{self.path}: not a predictions file ({e})") from e
        if found is not None and found != columns:
            raise OutputError(
                f"{self.path} has the columns {', '.join(found)}, this run writes "
                f"{', '.join(columns)}: give another output, or --overwrite"
            )

    def scan(self) -> Iterator[dict]:
        """The rows already written (path, error, correct), values as written."""
        if self.fmt == "csv":
            yield from csv.DictReader(self._lines())
            return
        for n, line in enumerate(self._lines(), 1):
            try:
                yield json.loads(line)
            except ValueError as e:
                raise OutputError(f"{self.path}:{n}: not a JSON row ({e}); --overwrite?") from e

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)

    def drop_failed(self, paths: set[str]) -> int:
        """Rewrite the output without its rows that have an error and a path among ``paths``
        (the header, the other rows and their order kept; written beside it, then renamed);
        how many were dropped."""
        tmp = self.path.with_name(f".{self.path.name}.retry")
        dropped = 0
        try:
            with open(tmp, "w", encoding="utf-8", newline="") as out:
                if self.fmt == "csv":
                    reader = csv.reader(self._lines())
                    header = next(reader, None)
                    writer = csv.writer(out, lineterminator="\n")
                    if header is not None:
                        writer.writerow(header)
                        at, path = header.index("error"), header.index("path")
                        for row in reader:
                            if len(row) > at and row[at] and row[path] in paths:
                                dropped += 1
                            else:
                                writer.writerow(row)
                else:
                    for line in self._lines():
                        row = json.loads(line)
                        if row.get("error") and row.get("path") in paths:
                            dropped += 1
                        else:
                            out.write(line)
            if dropped:
                os.replace(tmp, self.path)
        except (OSError, ValueError) as e:
            raise OutputError(f"{self.path}: cannot drop its failed rows ({e})") from e
        finally:
            tmp.unlink(missing_ok=True)
        return dropped

    def open(self, columns: tuple[str, ...]) -> None:
        self.columns = columns
        try:
            if self.path.exists():
                _drop_cut_row(self.path, self.fmt)
            self.file = open(self.path, "a", encoding="utf-8", newline="")  # noqa: SIM115
            if self.fmt == "csv" and self.file.tell() == 0:
                self.file.write(",".join(columns) + "\n")
                self.file.flush()
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise  # no room: the caller says what was kept and how to go on
            raise OutputError(f"{self.path}: cannot write ({e.strerror or e})") from e

    def write(self, rows: list[dict]) -> None:
        assert self.file is not None
        if self.fmt == "csv":
            out = csv.writer(self.file, lineterminator="\n")
            out.writerows([_csv_cell(row[c]) for c in self.columns] for row in rows)
        else:
            self.file.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        self.file.flush()  # the rows survive a kill of this process from here on

    def finish(self) -> None:
        if self.file is not None:
            file, self.file = self.file, None
            try:  # the path still names the file written (not removed or replaced meanwhile;
                # inodes only: on older overlayfs fstat and stat report different devices)
                mine = os.fstat(file.fileno())
                gone = mine.st_nlink == 0 or os.stat(self.path).st_ino != mine.st_ino
            except OSError:
                gone = True
            file.close()  # its error (a full disk) is the run's
            if gone:  # the rows went into a file no path names: said, not "N rows"
                raise OutputLostError(
                    f"{self.path}: removed or replaced while this run wrote it; its rows are "
                    "lost (run again)"
                )

    def close(self) -> None:
        """Closed after an error too: what the buffer could not write then (a full disk)
        is the row the next run drops as cut, not a second error hiding the first."""
        if self.file is not None:
            file, self.file = self.file, None
            with contextlib.suppress(OSError):
                file.close()


def _csv_cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _complete_end(path: Path, fmt: str) -> int:
    """The byte offset where ``path``'s complete rows end: after its last newline that ends
    a row. In JSONL every newline does; in CSV only one outside quotes (an even number of
    '"' before it: a quoted field may hold a newline, and a cut inside it is no row's end)."""
    import numpy as np

    end = quotes = 0
    with open(path, "rb") as f:
        offset = 0
        while block := f.read(1 << 20):
            data = np.frombuffer(block, np.uint8)
            newlines = np.flatnonzero(data == 10)
            if fmt == "csv":
                before = quotes + np.cumsum(data == 34)  # quotes up to each byte
                newlines = newlines[before[newlines] % 2 == 0]
                quotes = int(before[-1])
            if newlines.size:
                end = offset + int(newlines[-1]) + 1
            offset += len(block)
    return end


def _drop_cut_row(path: Path, fmt: str) -> None:
    """Truncate ``path`` after its last complete row: drop a row a kill cut short."""
    end = _complete_end(path, fmt)
    if end != path.stat().st_size:
        with open(path, "rb+") as f:
            f.truncate(end)


class _Parquet:
    """A Parquet output, written through a JSONL journal (``.NAME.parquet.jsonl``) that is
    converted at the end: see the module's docstring."""

    def __init__(self, path: Path) -> None:
        try:
            import pyarrow  # noqa: F401
        except ImportError as e:
            raise OutputError(
                f"{path}: a .parquet output needs pyarrow: pip install 'whichvoice[parquet]'"
            ) from e
        self.path = path
        self.journal = _Lines(path.with_name(f".{path.name}.jsonl"), "jsonl")
        self.tmp = path.with_name(f".{path.name}.tmp")
        self.seed = path.with_name(f".{path.name}.jsonl.tmp")

    def exists(self) -> bool:
        return self.path.exists() or self.journal.exists()

    def complete(self) -> bool:
        return self.path.exists() and not self.journal.exists()

    def check_columns(self, columns: tuple[str, ...]) -> None:
        if self.journal.exists():
            self.journal.check_columns(columns)
            return
        import pyarrow.parquet as pq

        try:
            found = tuple(pq.read_schema(self.path).names)
        except (OSError, ValueError) as e:
            raise OutputError(f"{self.path}: not a Parquet file ({e}); --overwrite?") from e
        if found != columns:
            raise OutputError(
                f"{self.path} has the columns {', '.join(found)}, this run writes "
                f"{', '.join(columns)}: give another output, or --overwrite"
            )

    def scan(self) -> Iterator[dict]:
        if self.journal.exists():
            yield from self.journal.scan()
            return
        import pyarrow.parquet as pq

        names = ["path", "error", *(["correct"] * ("correct" in pq.read_schema(self.path).names))]
        for batch in pq.ParquetFile(self.path).iter_batches(columns=names):
            yield from batch.to_pylist()

    def remove(self) -> None:
        self.journal.remove()
        self.path.unlink(missing_ok=True)
        self.tmp.unlink(missing_ok=True)
        self.seed.unlink(missing_ok=True)

    def open(self, columns: tuple[str, ...]) -> None:
        if not self.journal.exists() and self.path.exists():
            self._seed_journal()
        self.journal.open(columns)

    def drop_failed(self, paths: set[str]) -> int:
        """Drop the rows with an error and a path among ``paths`` from the journal (made from
        a complete output first, which stays until the journal becomes it again); how many
        were dropped."""
        if not self.journal.exists():
            if not any(r.get("error") and r.get("path") in paths for r in self.scan()):
                return 0
            self._seed_journal()
        return self.journal.drop_failed(paths)

    def _seed_journal(self) -> None:
        """The journal of a complete Parquet output, to append to (made whole, then renamed)."""
        import pyarrow.parquet as pq

        with open(self.seed, "w", encoding="utf-8") as f:
            for batch in pq.ParquetFile(self.path).iter_batches():
                f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in batch.to_pylist())
        os.replace(self.seed, self.journal.path)

    def write(self, rows: list[dict]) -> None:
        self.journal.write(rows)

    def finish(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.journal.finish()  # strict: a delayed write error is the run's
        schema = _schema(self.journal.columns)
        rows = (r for r in self.journal.scan())
        with pq.ParquetWriter(self.tmp, schema) as writer:
            while group := list(itertools.islice(rows, ROW_GROUP)):
                writer.write_table(pa.Table.from_pylist(group, schema=schema))
        os.replace(self.tmp, self.path)
        self.journal.remove()

    def close(self) -> None:
        self.journal.close()


def _schema(columns: tuple[str, ...]):
    import pyarrow as pa

    types = {
        "path": pa.string(),
        "answer": pa.string(),
        "voice": pa.string(),
        "confidence": pa.float64(),
        "top": pa.list_(pa.struct([("voice", pa.string()), ("p", pa.float64())])),
        "speech_s": pa.float64(),
        "windows": pa.int64(),
        "known": pa.bool_(),
        "openset_score": pa.float64(),
        "openset_threshold": pa.float64(),
        "engine": pa.string(),
        "engine_confidence": pa.float64(),
        "engine_known": pa.bool_(),
        "error": pa.string(),
        "true_voice": pa.string(),
        "correct": pa.bool_(),
    }
    return pa.schema([(c, types[c]) for c in columns])

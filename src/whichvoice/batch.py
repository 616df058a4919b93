"""Batch inference: many inputs -> one predictions file (.csv, .jsonl or .parquet), streamed,
resumable and parallel. ``predict_batch(run, manifest_inputs("manifest.jsonl"), "p.csv")``.

How it works, and why:

- Streaming. Inputs are read lazily (a manifest line by line, a folder walked in sorted order)
  and cut into chunks of ``CHUNK`` files: one model batch, and the unit of work, progress and
  writing. At most ``2 x workers`` chunks are in flight, and each finished chunk's rows are
  appended to the output and flushed, so memory stays bounded whatever the number of inputs.
  The one thing that grows is the set of paths already in the output, read for ``resume``
  (~100 bytes a path).
- Order. Rows are written in input order whatever the number of workers (a finished chunk
  waits for the ones before it), so ``workers`` changes only the speed, the rows of an
  interrupted run are a prefix of the inputs, and a resumed run keeps the order.
- Resume. An input is skipped when the output already has a row with its ``path``, spelled as
  the input names it; failed rows count as done (delete a row to try that file again). A CSV
  or JSONL line cut by a kill is removed before appending. Without ``resume`` an existing
  output is refused, unless ``overwrite`` replaces it.
- Parquet cannot be appended to, nor read after a crash mid-write. Its rows go to a hidden
  JSONL journal beside it (``.NAME.parquet.jsonl``), which resumes like a JSONL output; at the
  end the journal becomes ``NAME.parquet`` (row groups of ``ROW_GROUP`` rows, written to a
  temporary file and renamed) and is deleted. A .parquet output is thus absent or complete.
- Parallelism. ``workers=1`` runs in this process, decoding and torch on every core (as
  ``predict`` always did). ``workers=N`` spawns N processes that load the model once each,
  with ``cores // N`` threads apiece for decoding and for torch, so they do not oversubscribe
  the cores, and the GIL (feature code, Python glue) no longer serialises the work.
- Dask. With ``dask_scheduler`` the chunks go to a dask.distributed cluster instead: each
  worker keeps the model loaded (cached by run and backend), decodes on the task's thread and
  returns rows; the client writes them as above. Workers must see the run and the audio at
  the same paths (a shared filesystem or URLs); relative paths are made absolute first.
- The model is loaded here first, whatever the workers: a bad run fails at once, and an
  ONNX export (``backend="onnx"``) is made once, before the workers look for it.
- A script that calls ``predict_batch(..., workers=2)`` needs the usual
  ``if __name__ == "__main__":`` guard: the worker processes are spawned, and import it.
- Rows are flushed, not fsynced: they survive a kill of the process, not a power cut.
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import json
import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import torch

from whichvoice import storage
from whichvoice.audio import ensure_dir
from whichvoice.errors import OutputError, WhichvoiceError
from whichvoice.predict import AUDIO_SUFFIXES, Prediction, VoiceModel, load_model

CHUNK = 32  # files per task: one model batch, and the unit of progress and of writing
ROW_GROUP = 10_000  # rows per Parquet row group
TOP_K = 3  # voices listed in the ``top`` column
COLUMNS = ("path", "voice", "confidence", "top", "speech_s", "windows", "error")
LABEL_COLUMNS = ("true_voice", "correct")  # added when the inputs know their voice
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


def labelled_inputs(csv_path: str | os.PathLike) -> Inputs:
    """The rows ``path,voice`` of a CSV (header optional; paths relative to its folder). A
    voice may be named by its id (``flite:slt``) or, when unambiguous, its name (``slt``)."""
    csv_path = csv_path if storage.is_url(csv_path) else Path(csv_path)

    def read() -> Iterator[BatchInput]:
        try:
            f = storage.open_text(csv_path, encoding="utf-8-sig", newline="")
        except (OSError, storage.StorageError) as e:
            raise BatchInputError(
                f"{csv_path}: cannot read ({getattr(e, 'strerror', None) or e})"
            ) from e
        with f:
            rows = csv.reader(f)
            try:
                for row in rows:
                    if not "".join(row).strip():
                        continue
                    cells = [c.strip() for c in row]
                    if rows.line_num == 1 and [c.lower() for c in cells[:2]] == ["path", "voice"]:
                        continue
                    if len(cells) < 2 or not cells[0] or not cells[1]:
                        where = f"{csv_path}:{rows.line_num}"
                        raise BatchInputError(f"{where}: expected 'path,voice', got {row!r}")
                    yield BatchInput(cells[0], _resolve(_parent(csv_path), cells[0]), cells[1])
            except (UnicodeDecodeError, csv.Error) as e:
                raise BatchInputError(f"{csv_path}: not a path,voice CSV ({e})") from e

    return Inputs(str(csv_path), read, labelled=True)


def path_inputs(paths: Iterable[str | os.PathLike]) -> Inputs:
    """Files as given, and the audio files under each folder, walked lazily in the order of
    ``predict.expand_paths`` (sorted, recursively); a URL names an object or a prefix."""
    paths = [os.fspath(p) if storage.is_url(p) else Path(p) for p in paths]

    def walk(folder: Path) -> Iterator[Path]:
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            if entry.is_dir(follow_symlinks=False):
                yield from walk(Path(entry.path))
            elif entry.is_file() and Path(entry.name).suffix.lower() in AUDIO_SUFFIXES:
                yield Path(entry.path)

    def read() -> Iterator[BatchInput]:
        for p in paths:
            if storage.is_url(p):
                for url in storage.list_files(p, AUDIO_SUFFIXES):
                    yield BatchInput(url, url)
                continue
            for f in walk(p) if p.is_dir() else [p]:
                yield BatchInput(str(f), str(f))

    return Inputs(", ".join(map(str, paths)), read)


def output_format(output: str | os.PathLike) -> str:
    """ "csv", "jsonl" or "parquet", from the output's suffix; OutputError for any other."""
    try:
        return FORMATS[Path(output).suffix.lower()]
    except KeyError:
        raise OutputError(
            f"{output}: unknown output format; name it .csv, .jsonl or .parquet"
        ) from None


@dataclass
class BatchSummary:
    """What a batch run did. ``rows``, ``failed``, ``labelled`` and ``correct`` describe the
    whole output (rows of earlier runs included); the rest, this run."""

    output: Path | str
    predicted: int = 0  # inputs this run identified (or failed on)
    skipped: int = 0  # inputs already in the output (resume)
    seconds: float = 0.0  # this run's work, worker start-up included
    workers: int = 1
    rows: int = 0
    failed: int = 0  # rows with an error
    labelled: int = 0  # rows with a true voice and a prediction
    correct: int = 0

    @property
    def clips_per_s(self) -> float:
        return self.predicted / self.seconds if self.seconds else 0.0

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.labelled if self.labelled else None

    def count(self, row: dict) -> None:
        self.rows += 1
        if row.get("error"):
            self.failed += 1
        elif row.get("correct") not in (None, ""):
            self.labelled += 1
            self.correct += row["correct"] in (True, "true")

    def line(self) -> str:
        done = f", {self.skipped} already done" if self.skipped else ""
        line = (
            f"{self.predicted} clips in {self.seconds:.1f} s ({self.clips_per_s:.1f} clips/s, "
            f"{self.workers} worker{'s' * (self.workers > 1)}{done}); {self.output}: "
            f"{self.rows} rows, {self.failed} failed"
        )
        if self.accuracy is not None:
            line += f", accuracy {self.accuracy:.4f} on {self.labelled} labelled"
        return line


def predict_batch(
    run: str | os.PathLike,
    inputs: Inputs | Iterable[BatchInput | str | os.PathLike],
    output: str | os.PathLike,
    *,
    workers: int = 1,
    resume: bool = False,
    overwrite: bool = False,
    backend: str = "torch",
    dask_scheduler: str | None = None,
    progress: bool = True,
    chunk: int = CHUNK,
) -> BatchSummary:
    """Identify every input and write one row each to ``output`` (.csv, .jsonl or .parquet).

    Columns: path, voice, confidence, top (the best ``TOP_K`` as [{"voice", "p"}]; a JSON
    string in CSV), speech_s, windows, error ("" when the file was read), and true_voice and
    correct when the inputs know their voice. A file that cannot be read is a row with an
    error. ``workers`` processes share the cores (1: this process); ``dask_scheduler`` sends
    the work to that Dask cluster instead. See the module's docstring for streaming, order,
    resume and the Parquet journal. Raises WhichvoiceError for a bad run, input or output.
    """
    fmt = output_format(output)
    if storage.is_url(output):  # written locally and uploaded, a Parquet journal too
        journal = [f".{os.fspath(output).rsplit('/', 1)[-1]}.jsonl"] * (fmt == "parquet")
        with storage.local_files(os.fspath(output), journal) as local:
            summary = predict_batch(
                run, inputs, local, workers=workers, resume=resume, overwrite=overwrite,
                backend=backend, dask_scheduler=dask_scheduler, progress=progress, chunk=chunk,
            )  # fmt: skip
        summary.output = output
        return summary
    output = Path(output)
    if resume and overwrite:
        raise WhichvoiceError("resume or overwrite: not both")
    if workers < 1 or chunk < 1:
        raise ValueError(f"workers and chunk must be at least 1, not {workers} and {chunk}")
    if dask_scheduler and workers != 1:
        raise WhichvoiceError("workers or a Dask scheduler (whose workers do the work), not both")
    sink = _Parquet(output) if fmt == "parquet" else _Lines(output, fmt)
    model = load_model(run, backend=backend)
    inputs = inputs if isinstance(inputs, Inputs) else _as_inputs(inputs)
    columns = COLUMNS + LABEL_COLUMNS * inputs.labelled

    summary = BatchSummary(output, workers=workers)
    done: set[str] = set()
    exists = sink.exists()
    if exists and resume:
        sink.check_columns(columns)
        for row in sink.scan():
            done.add(row["path"])
            summary.count(row)
    todo = None
    if inputs.reiterable:  # a first pass checks every input before any work, and counts
        total = todo = 0
        for item in _checked(inputs, model.labels):
            total += 1
            todo += item.path not in done
        if not total:
            raise BatchInputError(f"no inputs in {inputs.name}")
    if exists and not (resume or overwrite):
        raise OutputError(f"{output} exists: --resume to complete it, or --overwrite to replace it")
    if overwrite:
        sink.remove()
    ensure_dir(output.parent.resolve(), "predictions")
    if todo == 0:  # all done already: only complete the output
        summary.skipped = total
        if not sink.complete():
            sink.open(columns)
            sink.finish()
        return summary

    def pending() -> Iterator[BatchInput]:
        for item in _checked(inputs, model.labels):
            if item.path in done:
                summary.skipped += 1
            else:
                yield item

    start = time.perf_counter()
    bar = _bar(todo, progress)
    try:
        with (
            _dask(dask_scheduler, run, backend)
            if dask_scheduler
            else _local(model, model.root if storage.is_url(run) else run, backend, workers)
        ) as (submit, inflight, n_workers):
            summary.workers = n_workers
            sink.open(columns)
            for items, results in _ordered(submit, _chunks(pending(), chunk), inflight):
                rows = [_row(i, fields, columns) for i, fields in zip(items, results, strict=True)]
                sink.write(rows)
                for row in rows:
                    summary.count(row)
                summary.predicted += len(rows)
                bar.update(len(rows))
        sink.finish()
    finally:
        sink.close()
        bar.close()
        summary.seconds = time.perf_counter() - start
    return summary


def _as_inputs(items: Iterable[BatchInput | str | os.PathLike]) -> Inputs:
    """Inputs of a list (read as often as needed) or of a one-shot iterator (read once)."""

    def convert(items: Iterable) -> Iterator[BatchInput]:
        for item in items:
            yield item if isinstance(item, BatchInput) else BatchInput(str(item), str(item))

    if iter(items) is items:  # a one-shot iterator: look at its first item for the columns
        first = next(items, None)
        if first is None:
            return Inputs("the inputs", lambda: iter(()))
        rest = itertools.chain([first], items)
        labelled = isinstance(first, BatchInput) and first.voice is not None
        return Inputs("the inputs", lambda: convert(rest), labelled, reiterable=False)
    labelled = any(isinstance(i, BatchInput) and i.voice is not None for i in items)
    return Inputs("the inputs", lambda: convert(items), labelled)


def _checked(inputs: Inputs, labels: list[str]) -> Iterator[BatchInput]:
    """``inputs`` with each true voice named by the model's id for it (or an error)."""
    from whichvoice.evaluate import _match_voice

    for item in inputs:
        if item.voice is None:
            yield item
            continue
        voice = _match_voice(item.voice, labels)
        if voice not in labels:
            raise BatchInputError(
                f"{inputs.name}: {item.path}: the model does not know voice {item.voice!r}; "
                f"it knows {', '.join(labels)}"
            )
        yield BatchInput(item.path, item.source, voice)


def _bar(total: int, progress: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="clip", desc="predict", disable=not progress, dynamic_ncols=True)


def _chunks(items: Iterator[BatchInput], size: int) -> Iterator[list[BatchInput]]:
    while chunk := list(itertools.islice(items, size)):
        yield chunk


def _ordered(submit, chunks: Iterator[list[BatchInput]], inflight: int):
    """(chunk, its rows) in input order, with at most ``inflight`` chunks submitted and not
    yet returned. ``submit(sources)`` returns a future (concurrent or Dask) of the rows."""
    pending: deque[tuple[list[BatchInput], Future]] = deque()
    try:
        for chunk in chunks:
            pending.append((chunk, submit([item.source for item in chunk])))
            while len(pending) >= inflight:
                items, future = pending.popleft()
                yield items, future.result()
        while pending:
            items, future = pending.popleft()
            yield items, future.result()
    except BrokenProcessPool as e:
        raise WhichvoiceError(
            f"a worker process died ({e}); the rows written so far are kept: --resume continues"
        ) from e


def _row(item: BatchInput, fields: dict, columns: tuple[str, ...]) -> dict:
    row = {"path": item.path, **fields}
    if "true_voice" in columns:
        row["true_voice"] = item.voice
        row["correct"] = None if fields["error"] else fields["voice"] == item.voice
    return row


def _identify(model: VoiceModel, sources: list[str], threads: int) -> list[dict]:
    """The output's fields but the path (and the truth) for each source, in order."""
    rows = []
    for result in model.identify_many(sources, batch=len(sources), workers=threads):
        if isinstance(result, Prediction):
            fields = result.to_dict(TOP_K)
            del fields["path"]
            rows.append({**fields, "error": ""})
        else:
            rows.append(
                {
                    "voice": None,
                    "confidence": None,
                    "top": [],
                    "speech_s": None,
                    "windows": None,
                    "error": str(result),
                }
            )
    return rows


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


# A process's models, by (run, backend): loaded once per worker process or Dask worker.
_MODELS: dict[tuple[str, str], VoiceModel] = {}
_MODELS_LOCK = threading.Lock()
_THREADS = 1  # decoding threads per task in a worker process


def _cached_model(run: str, backend: str) -> VoiceModel:
    with _MODELS_LOCK:
        if (run, backend) not in _MODELS:
            _MODELS[run, backend] = load_model(run, backend=backend)
        return _MODELS[run, backend]


def _start_worker(run: str, backend: str, threads: int) -> None:
    global _THREADS
    _THREADS = threads
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it stops the pool
    torch.set_num_threads(threads)
    _cached_model(run, backend)


def _worker_task(run: str, backend: str, sources: list[str]) -> list[dict]:
    return _identify(_cached_model(run, backend), sources, _THREADS)


def _dask_task(run: str, backend: str, sources: list[str]) -> list[dict]:
    return _identify(_cached_model(run, backend), sources, 1)


@contextlib.contextmanager
def _local(model: VoiceModel, run: str | os.PathLike, backend: str, workers: int):
    """(submit, in-flight bound, workers) for this process (``workers=1``) or a pool."""
    threads = max(1, _cores() // workers)
    if workers == 1:
        before = torch.get_num_threads()
        torch.set_num_threads(threads)

        def submit(sources: list[str]) -> Future:
            future: Future = Future()
            future.set_result(_identify(model, sources, threads))
            return future

        try:
            yield submit, 1, 1
        finally:
            torch.set_num_threads(before)
        return
    pool = ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),  # forking a running torch can hang
        initializer=_start_worker,
        initargs=(str(run), backend, threads),
    )
    try:
        yield (
            (lambda sources: pool.submit(_worker_task, str(run), backend, sources)),
            2 * workers,
            workers,
        )
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@contextlib.contextmanager
def _dask(address: str, run: str | os.PathLike, backend: str):
    """(submit, in-flight bound, workers: the cluster's threads) for the Dask cluster at
    ``address``."""
    try:
        from distributed import Client
    except ImportError as e:
        raise WhichvoiceError(
            "--dask-scheduler needs dask.distributed: pip install 'whichvoice[dask]'"
        ) from e
    try:
        client = Client(address, timeout="10s")
    except (OSError, TimeoutError, ValueError) as e:
        raise WhichvoiceError(f"cannot reach the Dask scheduler at {address} ({e})") from e
    run = str(run) if "://" in str(run) else os.path.abspath(run)
    try:
        threads = sum(client.nthreads().values())

        def submit(sources: list[str]):
            sources = [s if "://" in s else os.path.abspath(s) for s in sources]
            return client.submit(_dask_task, run, backend, sources, pure=False)

        yield submit, max(2, 2 * threads), threads
    finally:
        client.close()


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
        """The complete lines (a last line cut by a kill, without its newline, is left out)."""
        with open(self.path, encoding="utf-8", newline="") as f:
            for line in f:
                if line.endswith("\n"):
                    yield line

    def _header(self) -> tuple[str, ...] | None:
        if self.fmt == "csv":
            first = next(csv.reader(self._lines()), None)
            return tuple(first) if first else None
        first = next(self._lines(), None)
        return tuple(json.loads(first)) if first else None

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

    def open(self, columns: tuple[str, ...]) -> None:
        self.columns = columns
        try:
            if self.path.exists():
                _drop_cut_line(self.path)
            self.file = open(self.path, "a", encoding="utf-8", newline="")  # noqa: SIM115
            if self.fmt == "csv" and self.file.tell() == 0:
                self.file.write(",".join(columns) + "\n")
                self.file.flush()
        except OSError as e:
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
        self.close()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


def _csv_cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _drop_cut_line(path: Path) -> None:
    """Truncate ``path`` after its last newline: drop a line a kill cut short."""
    with open(path, "rb+") as f:
        end = f.seek(0, os.SEEK_END)
        pos = end
        while pos > 0:
            step = min(pos, 1 << 16)
            f.seek(pos - step)
            block = f.read(step)
            newline = block.rfind(b"\n")
            if newline >= 0:
                pos = pos - step + newline + 1
                break
            pos -= step
        if pos != end:
            f.truncate(pos)


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

        self.journal.close()
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
        "voice": pa.string(),
        "confidence": pa.float64(),
        "top": pa.list_(pa.struct([("voice", pa.string()), ("p", pa.float64())])),
        "speech_s": pa.float64(),
        "windows": pa.int64(),
        "error": pa.string(),
        "true_voice": pa.string(),
        "correct": pa.bool_(),
    }
    return pa.schema([(c, types[c]) for c in columns])

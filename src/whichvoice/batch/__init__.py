"""Batch inference: many inputs -> one predictions file (.csv, .jsonl or .parquet), streamed,
resumable and parallel. ``predict_batch(run, manifest_inputs("manifest.jsonl"), "p.csv")``.

How it works, and why:

- Streaming. Inputs are read lazily (a manifest line by line, a folder walked in sorted order)
  and cut into chunks of ``CHUNK`` files: one model batch, and the unit of work, progress and
  writing. At most ``2 x workers`` chunks are in flight (with Dask, 2 a worker thread), and
  each finished chunk's rows are appended to the output and flushed, so memory stays bounded
  whatever the number of inputs.
  The one thing that grows is the set of paths already in the output, read for ``resume``
  (~100 bytes a path).
- Order. Rows are written in input order whatever the number of workers (a finished chunk
  waits for the ones before it), so ``workers`` changes only the speed, the rows of an
  interrupted run are a prefix of the inputs, and a resumed run keeps the order.
- Resume. An input is skipped when the output already has a row with its ``path``, spelled as
  the input names it; failed rows count as done, unless ``retry_failed`` drops them first
  (the file is rewritten without them, then renamed), so their inputs run again. The
  model and backend that wrote the rows are recorded beside the output
  (``.NAME.whichvoice.json``): a resume with another one is refused, so one file never holds
  two models' answers. A CSV
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
- One job at a time: a job holds ``.NAME.lock`` beside the output (an ``flock``, released
  by the kernel if the job is killed) from before it reads the output until it is done; a
  second job on the same output is refused (two appended the same rows).
- Rows are flushed, not fsynced: they survive a kill of the process, not a power cut.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import json
import os
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from whichvoice import storage
from whichvoice.batch.inputs import (
    BatchInput,
    BatchInputError,
    Inputs,
    labelled_inputs,
    manifest_inputs,
    output_format,
    path_inputs,
)
from whichvoice.batch.runners import COLUMNS, _dask, _local, check_dask
from whichvoice.batch.sinks import _Lines, _Parquet
from whichvoice.errors import OutputError, OutputExistsError, OutputLostError, WhichvoiceError
from whichvoice.files import ensure_dir, held_alone, output_target, write_json
from whichvoice.runtime import load_model
from whichvoice.text import counted, spelled

if TYPE_CHECKING:
    from tqdm import tqdm


__all__ = [
    "BatchInput",
    "BatchInputError",
    "BatchSummary",
    "Inputs",
    "labelled_inputs",
    "manifest_inputs",
    "output_format",
    "path_inputs",
    "predict_batch",
]

CHUNK = 32  # files per task: one model batch, and the unit of progress and of writing
LABEL_COLUMNS = ("true_voice", "correct")  # added when the inputs know their voice
UNKNOWN = "unknown"  # a true voice that is none of the model's (the open set's answer)


@dataclass
class BatchSummary:
    """What a batch run did. ``rows``, ``failed``, ``labelled`` and ``correct`` describe the
    whole output (rows of earlier runs included); the rest, this run."""

    output: Path | str
    predicted: int = 0  # inputs this run identified (or failed on)
    skipped: int = 0  # inputs already in the output (resume)
    retried: int = 0  # failed rows dropped to be tried again (resume, retry_failed)
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

    def to_dict(self) -> dict:
        """Its fields and rates, as JSON holds them."""
        return {
            **{k: (str(v) if k == "output" else v) for k, v in vars(self).items()},
            "clips_per_s": round(self.clips_per_s, 3),
            "accuracy": self.accuracy,
        }

    def count(self, row: dict) -> None:
        self.rows += 1
        if row.get("error"):
            self.failed += 1
        elif row.get("correct") not in (None, ""):
            self.labelled += 1
            self.correct += row["correct"] in (True, "true")

    def line(self) -> str:
        done = f", {self.skipped} already done" if self.skipped else ""
        if self.retried:
            done += f", {self.retried} failed before and tried again"
        line = (
            f"{counted(self.predicted, 'clip')} in {self.seconds:.1f} s "
            f"({self.clips_per_s:.1f} clips/s, "
            f"{self.workers} worker{'s' * (self.workers > 1)}{done}); {self.output}: "
            f"{counted(self.rows, 'row')}, {self.failed} failed"
        )
        if self.accuracy is not None:
            line += f", accuracy {self.accuracy:.4f} on {self.labelled} labelled"
        return line


def predict_batch(
    run: str | os.PathLike | None,
    inputs: Inputs | Iterable[BatchInput | str | os.PathLike],
    output: str | os.PathLike,
    *,
    workers: int = 1,
    resume: bool = False,
    overwrite: bool = False,
    retry_failed: bool = False,
    backend: str = "torch",
    dask_scheduler: str | None = None,
    progress: bool = True,
    chunk: int = CHUNK,
) -> BatchSummary:
    """Identify every input and write one row each to ``output`` (.csv, .jsonl or .parquet).

    ``run``: a run folder or URL, None: the bundled classifier. ``inputs``: ``path_inputs``,
    ``manifest_inputs``, ``labelled_inputs``, or any list of paths (a folder among them stands
    for its audio files) or ``BatchInput``. Columns (``runners.COLUMNS``): path, answer (the
    voice, or "unknown" when the run's open-set score says it is none of its voices), voice
    (the nearest of them), confidence, top (the best ``TOP_K`` as [{"voice", "p"}]; a JSON
    string in CSV), speech_s, windows, known, openset_score, openset_threshold, engine,
    engine_confidence, engine_known, error (None when the file was read), and true_voice and
    correct (of the answer) when the inputs know their voice. A file that cannot be read is a
    row with an error. Returns a BatchSummary (rows, failed, seconds of the inference, not of
    loading the run; ``to_dict()``). ``workers`` processes share the cores
    (1: this process); ``dask_scheduler`` sends the work to that Dask cluster instead. See
    the module's docstring for streaming, order, resume and the Parquet journal. With
    ``resume``, ``retry_failed`` drops the rows that have an error and identifies their
    inputs again (their new rows come after the rows kept). Raises WhichvoiceError for a bad
    run, input or output.
    """
    fmt = output_format(output)
    if storage.is_url(output):  # written locally and uploaded, a Parquet journal too
        storage.check_writable(output)
        kw = dict(workers=workers, resume=resume, overwrite=overwrite, backend=backend,
                  retry_failed=retry_failed, dask_scheduler=dask_scheduler, progress=progress,
                  chunk=chunk)  # fmt: skip
        return _predict_to_url(run, inputs, os.fspath(output), fmt, **kw)
    output = output_target(output)  # a link: the file it points to is the output
    if resume and overwrite:
        raise WhichvoiceError("resume or overwrite: not both")
    if retry_failed and not resume:
        raise WhichvoiceError("retry_failed retries the failed rows of an output: with resume")
    if workers < 1 or chunk < 1:
        raise WhichvoiceError(f"workers and chunk must be at least 1, not {workers} and {chunk}")
    if dask_scheduler and workers != 1:
        raise WhichvoiceError("workers or a Dask scheduler (whose workers do the work), not both")
    if output.is_dir():  # not an interrupted output to --resume
        raise OutputError(f"{output} is a folder: name a .csv, .jsonl or .parquet file")
    sink = _Parquet(output) if fmt == "parquet" else _Lines(output, fmt)
    model = load_model(run, backend=backend).ready()
    inputs = inputs if isinstance(inputs, Inputs) else _as_inputs(inputs)
    columns = COLUMNS + LABEL_COLUMNS * inputs.labelled

    summary = BatchSummary(output, workers=workers)
    with contextlib.ExitStack() as alone:
        # one job at a time on an output: two appended the same rows
        locked = output.parent.is_dir()
        if locked:
            alone.enter_context(held_alone(lock_path(output), str(output)))
        return _predict_alone(
            run, model, inputs, output, sink, columns, summary, None if locked else alone,
            resume=resume, overwrite=overwrite, retry_failed=retry_failed, backend=backend,
            dask_scheduler=dask_scheduler, progress=progress, chunk=chunk, workers=workers,
        )  # fmt: skip


def _predict_alone(
    run, model, inputs: Inputs, output: Path, sink, columns, summary: BatchSummary,
    alone: contextlib.ExitStack | None, *, resume: bool, overwrite: bool, retry_failed: bool,
    backend: str, dask_scheduler: str | None, progress: bool, chunk: int, workers: int,
) -> BatchSummary:  # fmt: skip
    """``predict_batch``'s work once no other job writes ``output`` (``alone``, when the
    output's folder was not there before: where to take the lock once it is made)."""
    exists = sink.exists()
    made_by = {"model": model.model_id, "backend": backend}
    if exists and resume:
        _check_made_by(output, made_by)
    done = (
        _written(sink, columns, summary, _retried_paths(inputs, model.labels, retry_failed))
        if exists and resume
        else collections.Counter()
    )
    total, todo = _count(inputs, model.labels, done)
    if exists and not (resume or overwrite):
        what = f"{output} exists" if output.exists() else f"an interrupted {output} exists"
        raise OutputExistsError(what)
    if overwrite and exists and dask_scheduler:
        check_dask(dask_scheduler)  # a cluster that cannot be reached moves nothing
    ensure_dir(output.parent.resolve(), "predictions")
    if alone is not None:  # the folder was made just now: the lock first, then anything moved
        alone.enter_context(held_alone(lock_path(output), str(output)))
        if not exists and sink.exists():  # another job made it meanwhile: read it again
            raise OutputError(f"another whichvoice wrote {output} meanwhile; run again")
    if overwrite:
        _set_aside(sink, output)
    try:
        write_json(made_by_path(output), made_by)
    except OSError as e:
        if overwrite:  # no row of this run yet: the previous output goes back
            _undo(sink, output)
        raise OutputError(f"{made_by_path(output)}: cannot write ({e.strerror or e})") from e
    if todo == 0:  # all done already: only complete the output
        summary.skipped = total
        if not sink.complete():
            try:
                with _lost_output(sink):
                    sink.open(columns)
                    sink.finish()
            finally:
                sink.close()
        _drop_aside(output)
        return summary

    def pending() -> Iterator[BatchInput]:
        for item, written in _against(_checked(inputs, model.labels), done):
            if written:
                summary.skipped += 1
            else:
                yield item

    runner = (
        _dask(dask_scheduler, run, backend)
        if dask_scheduler
        else _local(model, model.root if storage.is_url(run) else run, backend, workers)
    )
    try:
        bar = _bar(todo, progress)
        _write_rows(sink, runner, _chunks(pending(), chunk), columns, summary, bar)
    except OutputLostError as e:  # its message says how to go on (--resume), from what is there
        if overwrite and summary.predicted == 0:  # nothing there: the previous output back
            _undo(sink, output)
            # and --resume would go on from the output this run was to replace, mixing the
            # two (a review): the same command, again
            reason = str(e).split(": the whole rows")[0]
            raise OutputLostError(
                f"{reason}: no row of this run was written and {output.name} is as it was; "
                "free the space and run the same command (--overwrite) again"
            ) from e
        raise
    except BaseException:
        if (overwrite or not exists) and summary.predicted == 0:  # nothing to resume
            _undo(sink, output)
        raise
    _drop_aside(output)
    return summary


def _undo(sink, output: Path) -> None:
    """A run that wrote no row: its output and record go, and the previous output set aside
    by ``--overwrite`` (if any) comes back. Each step on its own: the failure being raised is
    what to say, not one of these."""
    for step in (sink.remove, made_by_path(output).unlink, lambda: _put_back(output)):
        with contextlib.suppress(OSError):
            step()


def _aside(output: Path) -> Path:
    """Where ``--overwrite`` keeps the previous output until the run completes:
    ``.NAME.previous`` beside it."""
    return output.with_name(f".{output.name}.previous")


def _set_aside(sink, output: Path) -> None:
    """``--overwrite``: the previous output (and its maker's record) moved aside, not
    removed, so that a run killed before it completes loses none of it (a review: a kill
    left a header where 1,600 rows had been). When one is aside already (an overwrite that
    never completed), it stays the one kept and the interrupted run's rows go."""
    aside = _aside(output)
    if not aside.exists() and output.is_file():
        try:
            os.replace(output, aside)
            with contextlib.suppress(FileNotFoundError):
                os.replace(made_by_path(output), made_by_path(aside))
        except OSError as e:
            raise OutputError(f"{output}: cannot move it aside ({e.strerror or e})") from e
    sink.remove()  # what is left: an interrupted run's rows, a Parquet journal


def _put_back(output: Path) -> None:
    """The output set aside by ``--overwrite`` back in its place (a run that failed before
    its first row)."""
    aside = _aside(output)
    if aside.exists():
        os.replace(aside, output)
        with contextlib.suppress(FileNotFoundError):
            os.replace(made_by_path(aside), made_by_path(output))


def _drop_aside(output: Path) -> None:
    """The run completed: the previous output set aside by ``--overwrite`` goes."""
    with contextlib.suppress(OSError):
        _aside(output).unlink(missing_ok=True)
        made_by_path(_aside(output)).unlink(missing_ok=True)


def _predict_to_url(
    run: str | os.PathLike, inputs: Inputs | Iterable, output: str, fmt: str, **kw
) -> BatchSummary:
    """``predict_batch`` into a local copy of the object ``output`` (and of its Parquet
    journal), downloaded first so that --resume resumes, uploaded after, also on failure."""
    name = output.rsplit("/", 1)[-1]
    beside = [f".{name}.jsonl"] * (fmt == "parquet") + [made_by_path(Path(name)).name]
    with storage.local_files(output, beside) as local:
        try:
            summary = predict_batch(run, inputs, local, **kw)
        except WhichvoiceError as e:  # named as the user named it, not as its local copy
            if str(local) not in str(e):
                raise
            e.args = (str(e).replace(str(local), output), *e.args[1:])
            if isinstance(e, OutputExistsError):  # the CLI says it again from ``what``
                e.what = e.what.replace(str(local), output)
            raise
        finally:  # --overwrite's previous output is the object in the store, not kept here
            _drop_aside(local)
    summary.output = output
    return summary


def lock_path(output: Path) -> Path:
    """The lock a job holds while it writes ``output``: ``.NAME.lock`` beside it."""
    return output.with_name(f".{output.name}.lock")


def made_by_path(output: Path) -> Path:
    """Where an output's maker is recorded: ``.NAME.whichvoice.json`` beside it (the model
    id and backend, checked on resume)."""
    return output.with_name(f".{output.name}.whichvoice.json")


def _check_made_by(output: Path, made_by: dict) -> None:
    """OutputError when the rows already in ``output`` were made by another model or
    backend: a resume would add rows of another model to the same file. An output without
    the record (copied without it, or written before it existed) is refused too: its rows'
    model is not known."""
    try:
        before = json.loads(made_by_path(output).read_text())
    except FileNotFoundError:
        raise OutputError(
            f"{output}: no record of the model that wrote it ({made_by_path(output).name} "
            "beside it, which a copy may leave behind): put the record back to resume, or "
            "--overwrite to replace it"
        ) from None
    except (OSError, ValueError) as e:
        raise OutputError(f"{made_by_path(output)}: cannot read what made {output} ({e})") from e
    if before != made_by:
        raise OutputError(
            f"{output} was made by {before.get('model')} ({before.get('backend')}), not "
            f"{made_by['model']} ({made_by['backend']}): resume with that model and backend, or "
            "--overwrite to replace it"
        )


def _retried_paths(inputs: Inputs, labels: list[str], retry_failed: bool) -> set[str] | None:
    """The inputs' paths whose failed rows ``retry_failed`` drops (None: no retry); the
    inputs are checked first, so a refused run has not rewritten its output."""
    if not retry_failed:
        return None
    if not inputs.reiterable:
        raise WhichvoiceError("retry_failed needs inputs that can be read twice (not a stream)")
    return {item.path for item in _checked(inputs, labels)}


def _written(
    sink: _Lines | _Parquet, columns: list[str], summary: BatchSummary, retry: set[str] | None
) -> collections.Counter:
    """How many rows an interrupted run wrote for each path (counted into ``summary``), its
    failed rows of the paths in ``retry`` dropped first (the failed rows of other inputs
    are kept)."""
    sink.check_columns(columns)
    if retry is not None:
        summary.retried = sink.drop_failed(retry)
    done: collections.Counter = collections.Counter()
    for row in sink.scan():
        done[row["path"]] += 1
        summary.count(row)
    return done


def _against(
    items: Iterable[BatchInput], done: collections.Counter
) -> Iterator[tuple[BatchInput, bool]]:
    """Each input and whether a row of it is already written: an input given twice has two
    rows, so each written row accounts for one occurrence of its path."""
    left = done.copy()
    for item in items:
        written = left[item.path] > 0
        left[item.path] -= written
        yield item, written


def _count(
    inputs: Inputs, labels: list[str], done: collections.Counter
) -> tuple[int | None, int | None]:
    """(inputs, inputs still to do); a first pass that checks every input before any work.
    (None, None) for inputs that can be read only once (a stream)."""
    if not inputs.reiterable:
        return None, None
    total = todo = 0
    for _, written in _against(_checked(inputs, labels), done):
        total += 1
        todo += not written
    if not total:
        raise BatchInputError(f"no inputs in {inputs.name}")
    return total, todo


def _write_rows(
    sink: _Lines | _Parquet,
    runner: contextlib.AbstractContextManager,
    chunks: Iterator[list[BatchInput]],
    columns: list[str],
    summary: BatchSummary,
    bar: tqdm,
) -> None:
    """Send ``chunks`` to the runner's workers and write their rows, in input order."""
    start = time.perf_counter()
    try:
        with runner as (submit, inflight, n_workers):
            summary.workers = n_workers
            with _lost_output(sink):
                sink.open(columns)
            for items, results in _ordered(submit, chunks, inflight):
                rows = [_row(i, fields, columns) for i, fields in zip(items, results, strict=True)]
                with _lost_output(sink):
                    sink.write(rows)
                for row in rows:
                    summary.count(row)
                summary.predicted += len(rows)
                bar.update(len(rows))
        with _lost_output(sink):
            sink.finish()
    finally:
        sink.close()
        bar.close()
        summary.seconds = time.perf_counter() - start


@contextlib.contextmanager
def _lost_output(sink: _Lines | _Parquet) -> Iterator[None]:
    """A system error writing the output (a full disk) as OutputLostError naming it: the
    whole rows written are kept (a row the disk cut is dropped by the next run), and
    ``--resume`` goes on from them."""
    try:
        yield
    except OSError as e:
        raise OutputLostError(
            f"{sink.path}: {e.strerror or e}: the whole rows written are kept; free the space "
            "(or mend the store) and run again with --resume"
        ) from e


def _as_inputs(items: Iterable[BatchInput | str | os.PathLike]) -> Inputs:
    """Inputs of a list (read as often as needed) or of a one-shot iterator (read once); a
    folder (or a URL prefix ending in "/") among them stands for its audio files, as
    ``predict``'s paths do."""

    if isinstance(items, str | os.PathLike):  # one path, not its characters one by one
        items = [items]
    if items is None or isinstance(items, bytes | bytearray) or not isinstance(items, Iterable):
        raise BatchInputError(
            f"inputs {items!r:.60}: give file paths or URLs (a list, an iterator, or one), "
            "or BatchInput rows; a batch reads files, not bytes"
        )

    def convert(items: Iterable) -> Iterator[BatchInput]:
        for item in items:
            if isinstance(item, BatchInput):
                yield item
            elif not isinstance(item, str | os.PathLike):
                raise BatchInputError(
                    f"input {item!r:.60}: give a file path or a URL; a batch reads files, "
                    "not bytes or samples (identify_many takes those)"
                )
            elif Path(item).is_dir() or (storage.is_url(item) and str(item).endswith("/")):
                yield from path_inputs([item]).read()
            else:
                yield BatchInput(spelled(str(item)), str(item))

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
    """``inputs`` with each true voice named by the model's id for it (or an error); a
    true voice ``unknown`` is none of the model's voices."""
    from whichvoice.evaluate import _match_voice

    for item in inputs:
        if item.voice is None:
            yield item
            continue
        if item.voice.strip().lower() == UNKNOWN:  # a stranger: right when answered unknown
            yield BatchInput(item.path, item.source, UNKNOWN)
            continue
        voice = _match_voice(item.voice, labels)
        if voice not in labels:
            raise BatchInputError(
                f"{inputs.name}: {item.path}: the model does not know voice {item.voice!r}; "
                f"it knows {', '.join(labels)}"
            )
        yield BatchInput(item.path, item.source, voice)


def _bar(total: int | None, progress: bool) -> tqdm:
    from tqdm import tqdm

    return tqdm(
        total=total,
        unit="clip",
        desc="predict",
        disable=None if progress else True,
        dynamic_ncols=True,
    )


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
    if row.get("error"):  # it names the file as the system spelled it: a name not in UTF-8 too
        row["error"] = spelled(row["error"])
    if "true_voice" in columns:
        row["true_voice"] = item.voice
        row["correct"] = None if fields["error"] else fields["answer"] == item.voice
    return row

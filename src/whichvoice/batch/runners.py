"""Where the chunks are identified: this process, N spawned worker processes, or a Dask
cluster. Each runner is a context giving ``(submit, inflight, n_workers)``."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import threading
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import torch

from whichvoice.errors import WhichvoiceError
from whichvoice.pools import thread_pool
from whichvoice.runtime import Prediction, VoiceModel, load_model

log = logging.getLogger(__name__)

TOP_K = 3  # voices listed in the ``top`` column
# answer: the voice, or "unknown" when the run's open-set score says it is none of its voices
# (known false; known empty: the run has no open-set threshold); openset_score and
# openset_threshold: the score that decided it and the threshold it met (empty without one)
COLUMNS = (
    "path",
    "answer",
    "voice",
    "confidence",
    "top",
    "speech_s",
    "windows",
    "known",
    "openset_score",
    "openset_threshold",
    "engine",
    "engine_confidence",
    "engine_known",
    "error",
)


def _identify(model: VoiceModel, sources: list[str], threads: int) -> list[dict]:
    """The output's fields but the path (and the truth) for each source, in order."""
    return _rows(model.identify_many(sources, batch=len(sources), workers=threads))


def _rows(results) -> list[dict]:
    """The output's fields but the path (and the truth) for each Prediction or error."""
    rows = []
    for result in results:
        if isinstance(result, Prediction):
            fields = {"openset_score": None, "openset_threshold": None} | result.to_dict(TOP_K)
            rows.append(
                {k: fields[k] for k in COLUMNS if k in fields and k != "path"} | {"error": None}
            )
        else:
            rows.append(
                {
                    "answer": None,
                    "known": None,
                    "openset_score": None,
                    "openset_threshold": None,
                    "voice": None,
                    "confidence": None,
                    "top": [],
                    "speech_s": None,
                    "windows": None,
                    "engine": None,
                    "engine_confidence": None,
                    "engine_known": None,
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


def _start_worker(run: str, backend: str, threads: int, parent: int | None = None) -> None:
    global _THREADS
    _THREADS = threads
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it stops the pool
    torch.set_num_threads(threads)
    _cached_model(run, backend)


def _die_with_parent(parent: int | None) -> None:
    """On Linux, this worker is sent SIGTERM when the process that started it (``parent``)
    dies: a parent killed with -9 left its workers running for good (280 MB each). (The
    signal follows the thread that spawned the worker: the pool spawns in ``submit``, on the
    caller's thread, which waits for the run.)"""
    import ctypes

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
        # the parent died before the call (adopted by init or a subreaper): nobody would
        # signal it; a parent that is pid 1 itself (a container's entrypoint) is alive
        if parent is not None and os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)


def _worker_task(run: str, backend: str, sources: list[str]) -> list[dict]:
    return _identify(_cached_model(run, backend), sources, _THREADS)


def _dask_task(
    run: str, backend: str, sources: list[str], names: list[str] | None = None
) -> list[dict]:
    """``_identify`` on a Dask worker, of ``sources`` made absolute (its working folder is
    not this machine's); an error names each as given (``names``), as a local run does."""
    rows = _identify(_cached_model(run, backend), sources, 1)
    for row, source, name in zip(rows, sources, names or sources, strict=True):
        if row["error"] and source != name and row["error"].startswith(source):
            row["error"] = name + row["error"][len(source) :]
    return rows


class _Scored:
    """A chunk whose files are being decoded on a thread pool; ``result()`` (called in input
    order by the writer) waits for them and runs the network on all their windows."""

    def __init__(self, model: VoiceModel, sources: list[str], pool: ThreadPoolExecutor) -> None:
        self.model = model
        self.sources = sources
        self.prepared = [pool.submit(_prepare, model, src) for src in sources]

    def result(self) -> list[dict]:
        return _rows(self.model.predictions(self.sources, [f.result() for f in self.prepared]))


def _prepare(model: VoiceModel, source: str):
    """``model.prepared(source)``, or the input's error."""
    try:
        return model.prepared(source)
    except WhichvoiceError as e:
        return e


# chunks being decoded ahead of the one the network scores, in this process: enough to keep
# every core decoding while the network runs, few enough to keep memory flat
AHEAD = 3


@contextlib.contextmanager
def _local(model: VoiceModel, run: str | os.PathLike, backend: str, workers: int):
    """(submit, in-flight bound, workers) for this process (``workers=1``) or a pool.

    In this process the files are decoded, cut into windows and made into log-mels on a pool
    of one thread a core, ``AHEAD`` chunks in advance, while this thread runs the network (on
    a quarter of the cores, at least one) on the chunk before. Decoding and the log-mel
    release the GIL, so they overlap the network. Measured on 2 cores (benchmarks/limits.py):
    the log-mel on the network's thread made that thread the bottleneck, and more network
    threads only contended with the decoding."""
    threads = max(1, _cores() // workers)
    if workers == 1:
        before = torch.get_num_threads()
        net_threads = max(1, threads // 4)
        torch.set_num_threads(net_threads)
        model.set_threads(net_threads)
        # its threads are not waited for after Ctrl-C (``pools.thread_pool``)
        with thread_pool(threads, "decode") as pool:
            try:
                yield (lambda sources: _Scored(model, sources, pool)), 1 + AHEAD, 1
            finally:
                torch.set_num_threads(before)
                model.set_threads(before)
        return
    pool = ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),  # forking a running torch can hang
        initializer=_start_worker,
        initargs=(_run_arg(run), backend, threads, os.getpid()),
    )

    def submit(sources: list[str]):
        # a worker is spawned inside submit: with Ctrl-C ignored, which it inherits, so that
        # a terminal's Ctrl-C (sent to every process of the group) is the parent's alone,
        # even while a worker still imports torch; and no Ctrl-C lands between a worker's
        # start and the pool's note of it (a worker the pool does not know is never stopped)
        with _no_ctrl_c():
            return pool.submit(_worker_task, _run_arg(run), backend, sources)

    interrupted = False
    try:
        yield submit, 2 * workers, workers
    except BaseException:
        interrupted = True
        raise
    finally:
        # a second Ctrl-C (a terminal's and timeout's both arrive) must not cut the stopping
        # short: workers left running keep the process from ever exiting
        with _no_ctrl_c():
            if interrupted:  # their work is not wanted: stop them now rather than wait
                _stop_workers(pool)
            pool.shutdown(wait=not interrupted, cancel_futures=True)


@contextlib.contextmanager
def _no_ctrl_c():
    """SIGINT ignored by the whole process while inside (from the main thread; elsewhere, as
    a library may call it, nothing changes): blocking it would hold it off only for this
    thread, and Python raises Ctrl-C in the main thread whichever thread took the signal."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


def _stop_workers(pool: ProcessPoolExecutor, timeout: float = 10.0) -> None:
    """Terminate a process pool's workers and wait for them (at most ``timeout`` s each,
    then kill)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for proc in processes:
        with contextlib.suppress(OSError, ValueError):
            proc.terminate()
    for proc in processes:
        with contextlib.suppress(OSError, ValueError, AssertionError):
            proc.join(timeout)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout)


def _run_arg(run: str | os.PathLike | None, *, absolute: bool = False) -> str | None:
    """``run`` as a worker takes it: None stays None (the bundled classifier, not a folder
    named "None"); a path as text, absolute for workers elsewhere; a URL as given."""
    if run is None:
        return None
    text = os.fspath(run)
    return text if "://" in text or not absolute else os.path.abspath(text)


DASK_CONNECT_S = 10.0  # s: a scheduler that has not answered by then is not there


def _connect(client_type, address: str):
    """A Dask client of the scheduler at ``address``, or WhichvoiceError. Made on a thread of
    its own with a deadline: a port where another service listens (an HTTP server) accepts
    the connection and never answers, and the client's own timeout then waits for ever."""
    made: dict = {}

    def connect() -> None:
        try:
            made["client"] = client_type(address, timeout=f"{DASK_CONNECT_S:g}s")
        except BaseException as e:  # said on the caller's thread
            made["error"] = e

    thread = threading.Thread(target=connect, name="dask-connect", daemon=True)
    thread.start()
    thread.join(DASK_CONNECT_S + 5)
    if "client" in made:
        return made["client"]
    why = made.get("error") or f"no answer in {DASK_CONNECT_S + 5:g} s: is it a Dask scheduler?"
    raise WhichvoiceError(f"cannot reach the Dask scheduler at {address} ({why})")


class DaskRunError(WhichvoiceError):
    """The cluster failed a run under way (a worker's error, the scheduler gone): exit 1, as
    for an output lost mid-run; the rows written are kept."""

    exit_status = 1


class _OnWorker:
    """A Dask future whose error says it happened on a worker: a worker may lack what this
    machine has (credentials for an s3:// run, a file, a package)."""

    def __init__(self, future) -> None:
        self.future = future

    def result(self) -> list[dict]:
        from distributed.comm.core import CommClosedError

        try:
            return self.future.result()
        except WhichvoiceError as e:
            raise DaskRunError(f"on a Dask worker: {e}") from e
        except (CommClosedError, TimeoutError) as e:  # this side: the scheduler went away
            raise DaskRunError(f"the Dask scheduler stopped answering ({e})") from e
        except Exception as e:
            # the client's own word for a scheduler gone (FutureCancelledError, "reason:
            # scheduler-connection-lost"): said so, in one line, not as a worker's error
            if "scheduler-connection-lost" in str(e):
                raise DaskRunError(
                    "the Dask scheduler stopped answering (the connection to it was lost)"
                ) from e
            # any failure there, said in one line here
            why = " ".join(str(e).split())
            raise DaskRunError(f"on a Dask worker: {type(e).__name__}: {why}") from e


def _dask_client_class():
    try:
        from distributed import Client
    except ImportError as e:
        raise WhichvoiceError(
            "--dask-scheduler needs dask.distributed: pip install 'whichvoice[dask]'"
        ) from e
    return Client


def check_dask(address: str) -> None:
    """WhichvoiceError unless the Dask scheduler at ``address`` answers: asked before an
    output that --overwrite replaces is removed (a mistyped address removed a finished one)."""
    _connect(_dask_client_class(), address).close()


@contextlib.contextmanager
def _dask(address: str, run: str | os.PathLike, backend: str):
    """(submit, in-flight bound: twice the cluster's threads, workers: its worker processes)
    for the Dask cluster at ``address``."""
    client = _connect(_dask_client_class(), address)
    run = _run_arg(run, absolute=True)
    # the client's own line for a scheduler gone ("Failed to reconnect ...", or empty)
    # before the run's one line that says it (DaskRunError)
    quiet = _SchedulerGoneLines()
    logging.getLogger("distributed.client").addFilter(quiet)
    try:
        nthreads = client.nthreads()  # {worker: its threads}
        threads = sum(nthreads.values())

        if not nthreads:  # it waited without a word until one joined
            log.warning("the Dask scheduler at %s has no worker yet: the run waits for one",
                        address)  # fmt: skip

        def submit(sources: list[str]):
            given = list(sources)
            sources = [s if "://" in s else os.path.abspath(s) for s in sources]
            return _OnWorker(client.submit(_dask_task, run, backend, sources, given, pure=False))

        yield submit, max(2, 2 * threads), len(nthreads)
    finally:
        client.close()
        logging.getLogger("distributed.client").removeFilter(quiet)


class _SchedulerGoneLines(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage().strip()
        return bool(text) and "reconnect to scheduler" not in text

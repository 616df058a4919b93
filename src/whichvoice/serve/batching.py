"""Micro-batching: the windows of concurrent requests scored by the network in one call.

Each request decodes its upload and cuts its windows on its own worker thread (decoding
releases the GIL, so uploads decode side by side), then hands the windows to the one scoring
thread and waits. That thread takes whatever has queued meanwhile, up to ``max_windows``
windows, and waits ``wait_s`` more for others only when ``wait_s`` > 0: by default a lone
request is scored at once (no added latency), and under load the requests that arrive while
the network runs make the next batch. One call of the network on many windows costs far less
than many calls on a few: the framework's per-call overhead is paid once, and the network has
the cores to itself instead of requests' threads contending for them.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

import numpy as np

log = logging.getLogger(__name__)

MAX_WINDOWS = 64  # windows in one call of the network (~20 clips of 3 s)
WAIT_S = 0.0  # s a batch waits for more requests once the first is in (0: none)


class MicroBatcher:
    """``score(windows)`` from many threads, run as one call of ``fn`` on everything queued.

    ``fn``: (n_windows, ...) float32 -> (n_windows, k); every caller gets its own rows back,
    or the exception ``fn`` raised. ``on_batch(n)`` is told each call's number of requests
    (the server's metrics). Thread-safe; the scoring thread starts on first use and stops with
    ``close()`` (a daemon thread, so it never holds up the process's exit)."""

    def __init__(
        self,
        fn: Callable[[np.ndarray], np.ndarray],
        *,
        max_windows: int = MAX_WINDOWS,
        wait_s: float = WAIT_S,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        if max_windows < 1 or wait_s < 0:
            raise ValueError("max_windows must be at least 1 and wait_s not negative")
        self.fn = fn
        self.max_windows = max_windows
        self.wait_s = wait_s
        self.on_batch = on_batch
        self._queue: queue.SimpleQueue[tuple[np.ndarray, Future] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.calls = 0  # calls of fn, and the requests they answered (see ``mean_batch``)
        self.requests = 0

    @property
    def mean_batch(self) -> float:
        """Requests per call of the network so far."""
        return self.requests / self.calls if self.calls else 0.0

    def score(self, windows: np.ndarray) -> np.ndarray:
        """``fn(windows)``, computed in a batch with whatever other threads sent meanwhile."""
        future: Future = Future()
        self._start()
        self._queue.put((windows, future))
        return future.result()

    def close(self) -> None:
        """Stop the scoring thread once the queued requests are answered."""
        with self._lock:
            if self._thread is not None:
                self._queue.put(None)
                self._thread.join(timeout=10)
                self._thread = None

    def _start(self) -> None:
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="whichvoice-batcher", daemon=True
                )
                self._thread.start()

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch, stop = self._collect(first)
            self._run(batch)
            if stop:
                return

    def _collect(self, first: tuple[np.ndarray, Future]) -> tuple[list, bool]:
        """The first request and those queued after it, up to ``max_windows`` windows (one
        request more than that is never split); True when close() was asked meanwhile."""
        batch, size = [first], len(first[0])
        deadline = time.monotonic() + self.wait_s
        while size < self.max_windows:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    item = self._queue.get(timeout=left)
                except queue.Empty:
                    break
            if item is None:
                return batch, True
            batch.append(item)
            size += len(item[0])
        return batch, False

    def _run(self, batch: list[tuple[np.ndarray, Future]]) -> None:
        try:
            out = self.fn(np.concatenate([w for w, _ in batch]) if len(batch) > 1 else batch[0][0])
        except Exception as e:  # every waiting request gets the error, the thread lives on
            log.exception("scoring a batch of %d requests failed", len(batch))
            for _, future in batch:
                future.set_exception(e)
            return
        self.calls += 1
        self.requests += len(batch)
        if self.on_batch is not None:
            self.on_batch(len(batch))
        at = 0
        for windows, future in batch:
            future.set_result(out[at : at + len(windows)])
            at += len(windows)

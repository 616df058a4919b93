"""The server's micro-batcher: concurrent callers' windows scored in one call, each caller
given its own rows back, errors handed to every waiting caller; and the server's socket."""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import pytest

from whichvoice.serve.batching import MicroBatcher


class SlowDouble:
    """2x its input, after holding the first call until released: the callers that arrive
    meanwhile queue up and must come out in one batch."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if not self.sizes:
            self.entered.set()
            self.release.wait(10)
        self.sizes.append(len(x))
        return 2 * x


def test_concurrent_callers_share_a_call_and_get_their_own_rows() -> None:
    fn = SlowDouble()
    batches: list[int] = []
    batcher = MicroBatcher(fn, max_windows=1000, on_batch=batches.append)
    inputs = [np.full((k % 3 + 1, 4), k, np.float32) for k in range(12)]
    try:
        with ThreadPoolExecutor(12) as pool:
            first = pool.submit(batcher.score, inputs[0])
            assert fn.entered.wait(10)  # the first call runs, and holds
            rest = [pool.submit(batcher.score, x) for x in inputs[1:]]
            while batcher._queue.qsize() < len(rest):  # all queued behind the held call
                threading.Event().wait(0.01)
            fn.release.set()
            outs = [first.result(10)] + [f.result(10) for f in rest]
    finally:
        batcher.close()
    for x, out in zip(inputs, outs, strict=True):
        np.testing.assert_array_equal(out, 2 * x)
    assert fn.sizes == [1, sum(len(x) for x in inputs[1:])]  # the 11 waiting: one call
    assert batches == [1, 11] and batcher.mean_batch == 6.0


def test_a_lone_caller_is_scored_at_once_and_batches_are_bounded() -> None:
    sizes: list[int] = []
    batcher = MicroBatcher(lambda x: sizes.append(len(x)) or x, max_windows=4)
    try:
        out = batcher.score(np.ones((3, 2), np.float32))
        assert out.shape == (3, 2) and sizes == [3]
    finally:
        batcher.close()
    # what is queued is taken up to max_windows, and a request is never split
    idle = MicroBatcher(lambda x: x, max_windows=4)
    items = [(np.ones((2, 2), np.float32), Future()) for _ in range(3)]
    for item in items[1:]:
        idle._queue.put(item)
    batch, stop = idle._collect(items[0])
    assert [len(w) for w, _ in batch] == [2, 2] and not stop
    assert idle._collect(idle._queue.get())[0][0] is items[2]


def test_a_batch_waits_for_later_requests_when_told_to() -> None:
    """--batch-wait-ms: a request that arrives within the wait joins the batch."""
    batcher = MicroBatcher(lambda x: x, max_windows=3, wait_s=5.0)  # full at 3: no more wait
    first = (np.ones((1, 2), np.float32), Future())
    later = (np.ones((2, 2), np.float32), Future())
    timer = threading.Timer(0.05, batcher._queue.put, args=(later,))
    timer.start()
    batch, stop = batcher._collect(first)
    timer.join()
    assert [len(w) for w, _ in batch] == [1, 2] and not stop


def test_close_while_a_batch_is_collected_stops_the_thread_at_once() -> None:
    """A close() asked while a batch waits for more requests is kept: the batch is answered
    and the thread ends (a test-suite review: losing it left close() waiting 10 s and the
    thread running)."""
    import time

    batcher = MicroBatcher(lambda x: x, max_windows=64, wait_s=5.0)
    first = (np.ones((1, 2), np.float32), Future())
    batcher._queue.put((np.ones((1, 2), np.float32), Future()))
    batcher._queue.put(None)  # close() asked meanwhile
    batch, stop = batcher._collect(first)
    assert len(batch) == 2 and stop is True
    batcher = MicroBatcher(lambda x: x, max_windows=64, wait_s=0.01)
    assert batcher.score(np.ones((1, 2), np.float32)).shape == (1, 2)  # the thread runs
    thread = batcher._thread
    assert thread is not None
    started = time.monotonic()
    batcher.close()
    assert time.monotonic() - started < 5 and not thread.is_alive()


def test_an_error_reaches_every_caller_and_the_batcher_lives_on() -> None:
    calls = iter([ValueError("broken network"), None])

    def fn(x: np.ndarray) -> np.ndarray:
        error = next(calls)
        if error is not None:
            raise error
        return x

    batcher = MicroBatcher(fn)
    try:
        with pytest.raises(ValueError, match="broken network"):
            batcher.score(np.zeros((1, 2), np.float32))
        assert batcher.score(np.ones((1, 2), np.float32)).sum() == 2
    finally:
        batcher.close()


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        MicroBatcher(lambda x: x, max_windows=0)
    with pytest.raises(ValueError):
        MicroBatcher(lambda x: x, wait_s=-1)


def test_the_servers_socket_sends_at_once() -> None:
    """TCP_NODELAY on the listening socket (accepted connections inherit it): without it an
    answer's body waited for the client's delayed ACK of its headers, ~45 ms a request."""
    import socket

    from whichvoice.cli.serve import _listen

    sock = _listen("127.0.0.1", 0)
    try:
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        client = socket.create_connection(sock.getsockname())
        conn, _ = sock.accept()
        with client, conn:
            assert conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        sock.close()

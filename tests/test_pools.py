"""Pools that stop soon on Ctrl-C (whichvoice.pools)."""

from __future__ import annotations

import threading
import time

import pytest

from whichvoice.pools import map_ahead, thread_pool


def test_map_ahead_keeps_order_and_bounds_what_is_submitted() -> None:
    submitted: list[int] = []
    lock = threading.Lock()

    def slow_square(x: int) -> int:
        with lock:
            submitted.append(x)
        time.sleep(0.001 * (x % 3))  # out of order inside the pool
        return x * x

    with thread_pool(2, "t") as pool:
        got = []
        for i, y in enumerate(map_ahead(pool, slow_square, range(50), 4)):
            got.append(y)
            assert len(submitted) <= i + 4  # never more than 4 ahead of what was yielded
    assert got == [x * x for x in range(50)]


def test_a_stopped_loop_cancels_what_has_not_started() -> None:
    """``with ThreadPoolExecutor`` waited for every job submitted after Ctrl-C."""
    ran: list[int] = []
    with pytest.raises(KeyboardInterrupt), thread_pool(2, "t") as pool:
        futures = [pool.submit(lambda i=i: ran.append(i) or time.sleep(0.01)) for i in range(200)]
        futures[0].result()
        raise KeyboardInterrupt
    # the two running when it stopped are not waited for (below)
    assert len(ran) < 20 and sum(not f.done() for f in futures) <= 2


def test_after_ctrl_c_a_job_that_does_not_end_is_not_waited_for() -> None:
    """A decoder blocked on a named pipe that nobody writes held the command past SIGTERM for
    ever (fuzzing): after Ctrl-C the pool's exit does not wait, and the command ends at once
    (``cli.common.end_stopped``)."""
    gate = threading.Event()
    t0 = time.perf_counter()
    with pytest.raises(KeyboardInterrupt), thread_pool(1, "t") as pool:
        blocked = pool.submit(gate.wait)
        time.sleep(0.05)
        raise KeyboardInterrupt
    assert time.perf_counter() - t0 < 5 and not blocked.done()
    gate.set()
    assert blocked.result(timeout=5) is True
    with thread_pool(1, "t") as pool:  # without Ctrl-C, the with waits for its jobs
        done = pool.submit(time.sleep, 0.2)
    assert done.done()


def test_ctrl_c_in_the_consumer_of_a_generators_pool_does_not_wait_for_its_jobs() -> None:
    """Ctrl-C mostly lands while the network scores a chunk, outside the generator that
    prepares the next on its pool: the generator is closed (GeneratorExit), and its pool
    waited for a decoder blocked on a named pipe for ever (a code review)."""
    import numpy as np

    from whichvoice.runtime.model import batched

    gate = threading.Event()

    def windows(src: str):
        if src.startswith("b"):
            gate.wait(30)  # a decoder blocked on a pipe nobody writes
        return np.zeros((1, 4), np.float32), 1.0

    def score(_):
        raise KeyboardInterrupt  # Ctrl-C while the network scores the first chunk

    t0 = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        for _ in batched(windows, score, ["a0", "a1", "b2", "b3"], 2, 2):
            pass
    took = time.perf_counter() - t0
    gate.set()
    assert took < 10, took

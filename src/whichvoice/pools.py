"""Thread and process pools that stop soon on Ctrl-C.

``with ThreadPoolExecutor() as pool: pool.map(f, many)`` submits every item at once, and the
``with`` block's exit waits for all of them, also when Ctrl-C (or SIGTERM) ended the loop: an
import of 3,000 files ran on for minutes after Ctrl-C on a slow machine. These pools cancel
what has not started and wait only for what is running; after Ctrl-C or SIGTERM (or a
generator holding the pool closed early) a thread pool does not wait for that either (a
decoder blocked on a named pipe that nobody writes held the command for ever: fuzzing),
and the command ends at once (``cli._interrupted``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from typing import TypeVar

_Pool = TypeVar("_Pool", ThreadPoolExecutor, ProcessPoolExecutor)
_T = TypeVar("_T")
_R = TypeVar("_R")


@contextmanager
def _stopping(pool: _Pool) -> Iterator[_Pool]:
    interrupted = False
    try:
        yield pool
    except (KeyboardInterrupt, GeneratorExit):
        # GeneratorExit: a generator's pool (``runtime.prepared_chunks``) closed as Ctrl-C
        # unwinds its consumer, which is where Ctrl-C mostly lands (the network's step); a
        # consumer that stops early leaves its running jobs to end by themselves
        interrupted = True
        raise
    finally:  # after a normal end nothing is left to cancel; a process pool's workers are
        # waited for after Ctrl-C too: none is left behind
        wait = not interrupted or isinstance(pool, ProcessPoolExecutor)
        pool.shutdown(wait=wait, cancel_futures=True)


def thread_pool(workers: int, name: str = "") -> AbstractContextManager[ThreadPoolExecutor]:
    """A ThreadPoolExecutor of ``workers`` threads (named ``name``-N) for a ``with`` block
    whose exit cancels the jobs not started."""
    return _stopping(ThreadPoolExecutor(workers, thread_name_prefix=name))


def process_pool(workers: int) -> AbstractContextManager[ProcessPoolExecutor]:
    """A ProcessPoolExecutor of ``workers`` processes, as ``thread_pool``."""
    return _stopping(ProcessPoolExecutor(workers))


def map_ahead(
    pool: ThreadPoolExecutor | ProcessPoolExecutor,
    fn: Callable[[_T], _R],
    items: Iterable[_T],
    ahead: int,
) -> Iterator[_R]:
    """``pool.map(fn, items)`` with at most ``ahead`` jobs submitted and not yet yielded
    (twice the pool's workers keeps it busy), in order. ``pool.map`` submits every item at
    once: Ctrl-C then mostly lands in the pool's own bookkeeping, and a long list is held twice."""
    ahead = max(1, ahead)
    pending: deque[Future[_R]] = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()

"""Keep native decoders' chatter off the user's terminal.

libsndfile decodes mp3 through libmpg123, which prints notes such as "Note: Illegal
Audio-MPEG-Header ... Trying to resync" straight to file descriptor 2 when a file has broken
frames. The clip still decodes (or fails with our own one-line error), so those lines only
alarm. No library switch silences them, so the command line routes descriptor 2 through a
pipe whose reader drops exactly those lines and forwards everything else unchanged.

Python's own ``sys.stderr`` is re-opened on a copy of the original descriptor, so progress
bars, colours and error messages still see the real terminal (``isatty`` stays true); only
what C code writes to descriptor 2 passes through the filter.
"""

from __future__ import annotations

import atexit
import os
import re
import sys
import threading

__all__ = ["NOISE", "filter_native_noise", "finish_filter", "is_noise"]

# libmpg123's messages about damaged frames (it resyncs and goes on); onnxruntime's, in
# colour even off a terminal, when a home that cannot be written keeps it from storing its
# telemetry id (it goes on in memory; a review of a user without a writable home)
NOISE = re.compile(
    rb"^(Note: (Illegal Audio-MPEG-Header|Trying to resync|Skipped \d+ bytes|Encountered an "
    rb"error|Giving up resync|Hit end of \(available\) data)"
    rb"|Warning: Xing stream size off"
    rb"|\[src/libmpg123/[^\]]*\] (error|warning): "
    rb"|(\x1b\[[0-9;]*m)?\d{4}-\d\d-\d\d [\d:.]+ \[W:onnxruntime:[^\]]*telemetry[^\]]*\] "
    rb"Failed to persist telemetry device ID)"
)
_PREFIXES = (b"Note: ", b"Warning: ", b"[src/libmpg123/", b"\x1b[0;93m")
_installed = False


def is_noise(line: bytes) -> bool:
    """Whether one line (without its newline) is decoder chatter to drop."""
    return NOISE.match(line) is not None


def _may_become_noise(partial: bytes) -> bool:
    return any(p.startswith(partial[: len(p)]) for p in _PREFIXES)


def _pump(source: int, sink: int) -> None:
    """Copy ``source`` to ``sink`` line by line, dropping noise; partial lines pass at once
    unless they could still turn into noise (progress bars redraw with a bare carriage return)."""
    pending = b""
    while chunk := os.read(source, 65536):
        pending += chunk
        out: list[bytes] = []
        while True:
            cut = min((i for i in (pending.find(b"\n"), pending.find(b"\r")) if i >= 0), default=-1)
            if cut < 0:
                break
            line, pending = pending[: cut + 1], pending[cut + 1 :]
            if not is_noise(line[:-1]):
                out.append(line)
        if pending and not _may_become_noise(pending):
            out.append(pending)
            pending = b""
        if out:
            os.write(sink, b"".join(out))
    if pending and not is_noise(pending):
        os.write(sink, pending)
    os.close(source)


def filter_native_noise() -> None:
    """Route descriptor 2 through the noise filter for the rest of the process (idempotent).

    Does nothing where descriptor 2 is closed. Python-level writes keep going straight to
    the original stream.
    """
    global _installed
    if _installed:
        return
    try:
        original = os.dup(2)
    except OSError:
        return
    _installed = True
    sys.stderr.flush()
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    sys.stderr = open(  # noqa: SIM115 - lives as long as the process
        original,
        "w",
        encoding=sys.stderr.encoding,
        errors="backslashreplace",
        buffering=1,
        closefd=False,
    )
    thread = threading.Thread(
        target=_pump, args=(read_end, original), name="stderr-filter", daemon=True
    )
    thread.start()

    def finish() -> None:
        # closing the last write end lets the reader drain and stop; children that still
        # hold it (rare at exit) are not waited for beyond a second
        sys.stderr.flush()
        os.dup2(original, 2)
        thread.join(timeout=1.0)

    atexit.register(finish)
    _finish[0] = finish


_finish: list = [lambda: None]  # the installed filter's finish (for an exit that skips atexit)


def finish_filter() -> None:
    """Let the filter pass on what native code already wrote, and stop (an exit through
    ``os._exit`` runs no ``atexit`` hook)."""
    _finish[0]()

"""``whichvoice serve`` in a subprocess on a port the server picks itself (``--port 0``): it
reports the port through ``--port-file``, so no test guesses a free port (bind, close, reuse)
that another process may take meanwhile. Used by the tests and the benchmarks."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Server:
    proc: subprocess.Popen
    url: str  # http://127.0.0.1:PORT

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])


BUNDLED = "bundled"  # start(BUNDLED): serve the bundled classifier


def start(
    run: Path | str | None,
    *args: str,
    timeout: float = 90.0,
    env: dict[str, str] | None = None,
    stderr=subprocess.PIPE,
) -> Server:
    """Start ``whichvoice serve [RUN] --port 0 --quiet ARGS``; return once /healthz answers
    200 (AssertionError with the server's stderr when it exits or does not answer in
    ``timeout`` s). ``run`` None: no classifier (``--no-classifier``); ``BUNDLED``: the
    bundled one (no RUN)."""
    folder = Path(tempfile.mkdtemp(prefix="whichvoice-serve-"))
    port_file = folder / "port"
    which = ["--no-classifier"] if run is None else [] if run == BUNDLED else [str(run)]
    cmd = [sys.executable, "-m", "whichvoice", "serve", *which]
    cmd += ["--port", "0", "--port-file", str(port_file), "--quiet", *args]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )
    deadline = time.monotonic() + timeout
    url = None
    try:
        while True:
            if proc.poll() is not None:
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise AssertionError(f"the server exited {proc.returncode}:\n{err}")
            if url is None and port_file.exists():
                url = f"http://127.0.0.1:{int(port_file.read_text())}"
            if url is not None:
                try:
                    with urllib.request.urlopen(f"{url}/healthz", timeout=2) as r:
                        if r.status == 200:
                            return Server(proc, url)
                except (urllib.error.URLError, OSError):
                    pass
            if time.monotonic() > deadline:
                raise AssertionError(f"the server did not answer /healthz in {timeout:.0f} s")
            time.sleep(0.1)
    except BaseException:
        stop(proc)
        raise
    finally:
        port_file.unlink(missing_ok=True)
        folder.rmdir()


def stop(proc: subprocess.Popen) -> None:
    """Terminate the server (kill it after 10 s) and close its pipes."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    if proc.stderr:
        proc.stderr.close()


@contextmanager
def serving(run: Path | None, *args: str, **kw) -> Iterator[Server]:
    """``start`` for a ``with`` block; the server is stopped at its end."""
    server = start(run, *args, **kw)
    try:
        yield server
    finally:
        stop(server.proc)


def tree_pids(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def rss_mib(pid: int) -> float:
    """Resident memory of a process and its descendants, MiB."""
    total = 0
    for p in tree_pids(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024

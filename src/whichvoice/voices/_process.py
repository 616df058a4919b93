"""Running engine executables: one place for timeouts and error messages."""

from __future__ import annotations

import subprocess

from whichvoice.errors import SynthesisError

TIMEOUT_S = 60.0  # s; no sentence takes a local engine this long


def run(cmd: list[str], *, stdin: bytes | None = None, what: str) -> bytes:
    """Run ``cmd`` and return its stdout; SynthesisError with the engine's message on failure."""
    try:
        proc = subprocess.run(cmd, input=stdin, capture_output=True, timeout=TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as e:
        raise SynthesisError(f"{what}: timed out after {TIMEOUT_S:.0f} s") from e
    except OSError as e:
        raise SynthesisError(f"{what}: cannot run {cmd[0]} ({e.strerror or e})") from e
    if proc.returncode != 0:
        msg = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        detail = msg[-1] if msg else f"exit status {proc.returncode}"
        raise SynthesisError(f"{what}: {cmd[0]} failed ({detail})")
    return proc.stdout

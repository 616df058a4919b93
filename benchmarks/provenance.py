"""What every result JSON records about how it was made: the commit (and whether the tree had
uncommitted changes), the date, the machine and the versions of the libraries that ran.

    from provenance import provenance, write_result
"""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
# what "dirty" looks at: uncommitted changes to anything but results and prose
CODE = (".", ":(exclude)benchmarks/results", ":(exclude)*.md", ":(exclude)docs")
PACKAGES = ("whichvoice", "torch", "numpy", "soundfile", "soxr", "onnxruntime", "resemblyzer",
            "pyroomacoustics", "scipy", "librosa", "fastapi", "uvicorn")  # fmt: skip


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout.strip()


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def provenance(extra_packages: tuple[str, ...] = ()) -> dict:
    """Call at the start of a benchmark: the code that runs, not what is checked out at its end."""
    try:
        commit = _git("rev-parse", "HEAD")
        dirty = bool(_git("status", "--porcelain", "--untracked-files=no", "--", *CODE))
    except (OSError, subprocess.CalledProcessError):
        commit, dirty = "unknown", True
    gpu = None
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return {
        "commit": commit,
        "dirty": dirty,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "cpu": _cpu_model(),
            "arch": platform.machine(),
            "gpu": gpu,
            "os": platform.platform(),
            "python": platform.python_version(),
        },
        "versions": {
            name: v for name in (*PACKAGES, *extra_packages) if (v := _version(name)) is not None
        },
    }


def write_result(path: Path, result: dict) -> None:
    """Write a result JSON atomically (a reader never sees half of it). A figure that is not
    a number (NaN, an infinity: a rate of nothing at small sizes) is written as null: JSON
    has no NaN, and parsers other than Python's refuse it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(_finite(result), indent=2, allow_nan=False) + "\n")
    os.replace(tmp, path)


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value

"""How a result was made: the commit of the code that ran (and whether its tree had uncommitted
changes), the date, the machine and the versions of the libraries. Recorded in
``evaluate``'s evaluation.json and in every benchmark's result JSON."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

# the checkout this package runs from, when it does (src/whichvoice -> the repository)
SOURCE_ROOT = Path(__file__).resolve().parents[2]
# what "dirty" looks at: uncommitted changes to anything but results and prose
CODE = (".", ":(exclude)benchmarks/results", ":(exclude)*.md", ":(exclude)docs")
PACKAGES = ("whichvoice", "torch", "numpy", "soundfile", "soxr", "onnxruntime", "resemblyzer",
            "pyroomacoustics", "scipy", "librosa", "av", "fastapi", "uvicorn")  # fmt: skip


def _git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], capture_output=True, text=True, check=True, cwd=root, timeout=30
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


def git_state(root: Path) -> tuple[str, bool] | None:
    """(commit, dirty) of the checkout at ``root``: the commit checked out and whether the
    code (not results or prose) has uncommitted changes; None where ``root`` is no checkout
    or git cannot say. Also what setup.py stamps into a build (it loads this file alone)."""
    try:
        if not (root / ".git").exists():
            raise FileNotFoundError(root / ".git")
        commit = _git(root, "rev-parse", "HEAD")
        dirty = bool(_git(root, "status", "--porcelain", "--untracked-files=no", "--", *CODE))
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired):
        return None
    return commit, dirty


def _stamped() -> tuple[str, bool | None]:
    """(commit, dirty) the build stamped into an installed package (setup.py), or
    ("unknown", None) where it has no stamp."""
    import json

    try:
        made = json.loads((Path(__file__).parent / "_build.json").read_text())
        if isinstance(made.get("commit"), str) and made["commit"]:
            dirty = made.get("dirty")
            return made["commit"], dirty if isinstance(dirty, bool) else None
    except (OSError, ValueError, AttributeError):
        pass
    return "unknown", None


def code_state(root: Path = SOURCE_ROOT) -> dict:
    """The code that runs and when, without the machine (which imports torch): ``commit``,
    ``dirty``, ``date`` and whichvoice's version, as ``provenance`` gives them."""
    commit, dirty = git_state(root) or _stamped()
    return {
        "commit": commit,
        "dirty": dirty,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "whichvoice": _version("whichvoice"),
    }


def provenance(extra_packages: tuple[str, ...] = (), root: Path = SOURCE_ROOT) -> dict:
    """Call at the start of a job: the code that runs, not what is checked out at its end.
    Where ``root`` is no git checkout (an installed wheel), the commit the build stamped into
    the package (setup.py), else "unknown" with ``dirty`` None (not known; it was True until
    stop 65, which read as uncommitted changes)."""
    commit, dirty = git_state(root) or _stamped()
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

"""The build stamps the commit it was made from into the package (``whichvoice/_build.json``),
so that a result made by an installed wheel says which code ran (``whichvoice.provenance``):
the version alone does not change from commit to commit. Everything else is in
pyproject.toml."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

ROOT = Path(__file__).resolve().parent
CODE = (".", ":(exclude)benchmarks/results", ":(exclude)*.md", ":(exclude)docs")


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=True, cwd=ROOT,
                          timeout=30).stdout.strip()  # fmt: skip


def stamp() -> dict:
    """The commit and whether the code had uncommitted changes; None for both outside a
    checkout (a build from the sdist keeps the sdist's own stamp)."""
    kept = ROOT / "src" / "whichvoice" / "_build.json"
    if not (ROOT / ".git").exists() and kept.is_file():
        return json.loads(kept.read_text())
    try:
        if not (ROOT / ".git").exists():
            raise FileNotFoundError(ROOT / ".git")
        commit = _git("rev-parse", "HEAD")
        dirty = bool(_git("status", "--porcelain", "--untracked-files=no", "--", *CODE))
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": dirty}


class StampedBuild(build_py):
    def run(self) -> None:
        super().run()
        if not self.editable_mode:  # an editable install runs from the checkout: git says
            target = Path(self.build_lib) / "whichvoice" / "_build.json"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(stamp()) + "\n")


class StampedSdist(sdist):
    def make_release_tree(self, base_dir: str, files: list[str]) -> None:
        super().make_release_tree(base_dir, files)
        target = Path(base_dir) / "src" / "whichvoice" / "_build.json"
        target.unlink(missing_ok=True)  # a hard link to the checkout's, if any
        target.write_text(json.dumps(stamp()) + "\n")


setup(cmdclass={"build_py": StampedBuild, "sdist": StampedSdist})

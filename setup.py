"""The build stamps the commit it was made from into the package (``whichvoice/_build.json``),
so that a result made by an installed wheel says which code ran (``whichvoice.provenance``):
the version alone does not change from commit to commit. Everything else is in
pyproject.toml."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

ROOT = Path(__file__).resolve().parent


def _provenance():
    """whichvoice/provenance.py alone (it needs the standard library only; importing the
    package would need its dependencies at build time)."""
    path = ROOT / "src" / "whichvoice" / "provenance.py"
    spec = importlib.util.spec_from_file_location("_whichvoice_provenance", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def stamp() -> dict:
    """The commit and whether the code had uncommitted changes (provenance.git_state); None
    for both outside a checkout (a build from the sdist keeps the sdist's own stamp)."""
    kept = ROOT / "src" / "whichvoice" / "_build.json"
    if not (ROOT / ".git").exists() and kept.is_file():
        return json.loads(kept.read_text())
    commit, dirty = _provenance().git_state(ROOT) or (None, None)
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

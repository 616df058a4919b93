"""What the source distribution and the wheel hold (a review installed whichvoice from a
wheel and built the sdist): the sdist runs the tests and the Makefile, both carry the
license, and a wheel says which commit it was built from."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_without_a_checkout_or_a_stamp_the_commit_is_not_known(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from whichvoice import provenance as p

    package = tmp_path / "whichvoice"
    package.mkdir()
    monkeypatch.setattr(p, "__file__", str(package / "provenance.py"))
    made = p.provenance(root=tmp_path)
    assert (made["commit"], made["dirty"]) == ("unknown", None)  # not "dirty": not known
    (package / "_build.json").write_text(json.dumps({"commit": "a" * 40, "dirty": False}))
    made = p.provenance(root=tmp_path)
    assert (made["commit"], made["dirty"]) == ("a" * 40, False)
    (package / "_build.json").write_text("{not json")
    assert p.provenance(root=tmp_path)["commit"] == "unknown"


@pytest.mark.slow  # builds both (about 20 s)
def test_the_sdist_and_the_wheel_hold_what_they_need(tmp_path: Path) -> None:
    if not (ROOT / ".git").exists():
        pytest.skip("builds from a git checkout")
    tree = tmp_path / "tree"  # the committed files and the working copies of them
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.splitlines()  # fmt: skip
    for name in files:
        if (ROOT / name).is_file():
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, tree / name)
    if (ROOT / ".git").is_dir():  # pointed at, not copied (it may be large)
        (tree / ".git").write_text(f"gitdir: {ROOT / '.git'}\n")
    else:  # a worktree's pointer to its repository
        shutil.copy2(ROOT / ".git", tree / ".git")
    code = (
        "import sys; from setuptools import build_meta as b; out = sys.argv[1]; "
        "print(b.build_sdist(out)); print(b.build_wheel(out))"  # it rewrites sys.argv
    )
    out = tmp_path / "dist"
    built = subprocess.run([sys.executable, "-c", code, str(out)], cwd=tree, check=True,
                           capture_output=True, text=True, timeout=600)  # fmt: skip
    (sdist,) = out.glob("*.tar.gz")
    wheels = list(out.glob("*.whl"))
    assert len(wheels) == 1, (sorted(p.name for p in out.iterdir()), built.stdout[-3000:])
    wheel = wheels[0]
    with tarfile.open(sdist) as t:
        names = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
        top = next(n for n in t.getnames() if n.endswith("src/whichvoice/_build.json"))
        sdist_stamp = json.loads(t.extractfile(top).read())
    for needed in ("LICENSE", "Makefile", "constraints.txt", "tests/conftest.py",
                   "tests/__init__.py", "tests/server.py", "docs/cli.md",
                   "benchmarks/tables.py", "benchmarks/results/openset.json"):  # fmt: skip
        assert needed in names, needed
    with zipfile.ZipFile(wheel) as w:
        listed = w.namelist()
        stamp = json.loads(w.read("whichvoice/_build.json"))
    assert any(n.endswith("licenses/LICENSE") for n in listed)
    # PEP 561: type checkers read the package's hints (without it, every import was Any)
    assert "whichvoice/py.typed" in listed
    assert not any(n.startswith(("tests/", "benchmarks/")) for n in listed)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout.strip()  # fmt: skip
    assert stamp["commit"] == sdist_stamp["commit"] == head
    assert isinstance(stamp["dirty"], bool)

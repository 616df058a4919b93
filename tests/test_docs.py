"""Figures quoted in the docs are the benchmark JSON's, printed by the benchmark itself."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).parents[1]


def _benchmark(name: str):
    spec = importlib.util.spec_from_file_location(
        f"bench_{name}", ROOT / "benchmarks" / f"{name}.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_soak_table_in_the_docs_is_the_jsons() -> None:
    result = json.loads((ROOT / "benchmarks" / "results" / "soak.json").read_text())
    assert len(result["commit"]) >= 40 and not result["commit"].endswith("-dirty")
    assert all(result["passed"].values()), result["passed"]
    table = _benchmark("soak").table(result)
    assert table in (ROOT / "docs" / "security.md").read_text()

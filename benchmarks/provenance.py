"""What every result JSON records about how it was made: the commit (and whether the tree had
uncommitted changes), the date, the machine and the versions of the libraries that ran.

    from provenance import provenance, write_result
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from whichvoice.provenance import provenance as _provenance

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def provenance(extra_packages: tuple[str, ...] = ()) -> dict:
    """Call at the start of a benchmark: the code that runs, not what is checked out at its end
    (``whichvoice.provenance`` for this checkout)."""
    return _provenance(extra_packages, ROOT)


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

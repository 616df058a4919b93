"""English for the lines users read: counts with their nouns (imports nothing of ours)."""

from __future__ import annotations


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``n`` and its noun, singular for one: ``counted(1, "clip")`` -> ``"1 clip"``,
    ``counted(3, "clip")`` -> ``"3 clips"``; ``plural`` for a noun that does not take -s."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def none_of(n: int, noun: str) -> str:
    """The subject of "... could be read" when none could: ``"none of the 3 files"``, and for
    one, ``"not the one file"`` (never "none of the 1 files")."""
    return f"not the one {noun}" if n == 1 else f"none of the {counted(n, noun)}"


def spelled(path: str) -> str:
    """``path`` as a machine-readable output names it (an output file's row, a ``--json``
    line): a file name that is not UTF-8 (its bytes kept by Python as surrogates, which no
    UTF-8 file, JSON reader or Parquet string can hold) with those bytes written ``\\xNN``;
    any other name unchanged."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def spelled_all(obj: object) -> object:
    """``obj`` (JSON-able: dicts, lists, strings, numbers) with every string ``spelled``."""
    if isinstance(obj, str):
        return spelled(obj)
    if isinstance(obj, dict):
        return {spelled_all(k): spelled_all(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [spelled_all(v) for v in obj]
    return obj


def as_decided(value: float, bound: float, above: bool, digits: int = 6) -> float:
    """``value`` rounded to ``digits``, read against ``bound`` (rounded alike: the threshold
    every answer shows) as the decision was made: a value just under its bound rounds to it,
    and "score 0.746424 < threshold 0.746424" (or a probability of 0.5 with accept false)
    read as a contradiction; it is then shown one step under the bound."""
    shown, edge = round(value, digits), round(bound, digits)
    if not above and shown >= edge:
        return round(edge - 10.0**-digits, digits)
    return shown

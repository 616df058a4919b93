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

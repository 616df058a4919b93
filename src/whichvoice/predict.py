"""What to predict on: the audio files that paths, folders and URLs name. The loaded model
itself is ``whichvoice.runtime``'s."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from whichvoice import storage
from whichvoice.audio import AUDIO_SUFFIXES

__all__ = ["AUDIO_SUFFIXES", "expand_paths"]


def expand_paths(paths: Iterable[str | os.PathLike]) -> list[Path | str]:
    """Files as given, and the audio files found (recursively, sorted) under each folder;
    a URL (``s3://...``) names an object or a prefix to list."""
    out: list[Path | str] = []
    for given in paths:
        if storage.is_url(given):
            out.extend(storage.list_files(os.fspath(given), AUDIO_SUFFIXES))
            continue
        p = Path(given)
        if p.is_dir():
            out.extend(
                sorted(
                    f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in AUDIO_SUFFIXES
                )
            )
        else:
            out.append(p)
    return out

"""What to predict on: the audio files that paths, folders and URLs name. The loaded model
itself is ``whichvoice.runtime``'s."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from whichvoice import storage
from whichvoice.audio import AUDIO_SUFFIXES, listed_audio
from whichvoice.errors import WhichvoiceError

__all__ = ["AUDIO_SUFFIXES", "expand_paths"]


def looks_like_a_file(url: str | os.PathLike) -> bool:
    """Whether a URL that names nothing was meant as one file (an audio suffix) rather than a
    prefix: a missing file is one failed input, an empty prefix a mistyped folder."""
    text = os.fspath(url)
    return not text.endswith("/") and Path(text).suffix.lower() in AUDIO_SUFFIXES


def expand_paths(paths: Iterable[str | os.PathLike]) -> list[Path | str]:
    """Files as given, and the audio files found (recursively, sorted) under each folder;
    a URL (``s3://...``) names an object or a prefix to list. A folder or prefix that holds
    no audio file raises WhichvoiceError naming it: a mistyped folder is not skipped quietly
    among good inputs."""
    out: list[Path | str] = []
    for given in paths:
        if storage.is_url(given):
            found: list = list(storage.list_files(os.fspath(given), AUDIO_SUFFIXES))
            if not found and looks_like_a_file(given):  # a missing object: its own answer
                out.append(os.fspath(given))  # (reading it says "no such key")
                continue
        elif Path(given).is_dir():
            found = sorted(f for f in Path(given).rglob("*") if listed_audio(f))
        else:  # as given: a caller's own path prints as it was written
            out.append(given if isinstance(given, Path) else Path(given))
            continue
        if not found:
            if not storage.is_url(given) and not os.access(given, os.R_OK | os.X_OK):
                raise WhichvoiceError(f"{given}: cannot read the folder (permission denied)")
            raise WhichvoiceError(
                f"{given}: no audio files ({', '.join(sorted(AUDIO_SUFFIXES))}) in the folder"
            )
        out.extend(found)
    return out

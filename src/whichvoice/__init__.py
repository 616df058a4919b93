"""whichvoice: tell which voice is speaking in a recording.

from whichvoice import load_model
load_model("runs/demo/run-voicenet-default").identify("clip.mp3")
"""

from __future__ import annotations

# first, before even typing (a Ctrl-C there printed a traceback: a full suite run): Ctrl-C
# while the command imports the rest is one line, not a traceback
from whichvoice import _startup  # noqa: F401

# isort: split
import os
from typing import TYPE_CHECKING, Any

from whichvoice.audio import SAMPLE_RATE, AudioSource, Channel, Decoded, load_audio
from whichvoice.errors import WhichvoiceError
from whichvoice.files import (
    home_where_needed,
    matplotlib_config_where_needed,
    numba_cache_where_needed,
)

home_where_needed()  # a container's user without a home: before any library asks for one
matplotlib_config_where_needed()
numba_cache_where_needed()  # before anything imports librosa (and numba): see its docstring

if TYPE_CHECKING:
    from whichvoice.runtime import Prediction, VoiceModel, load_model

__version__ = "0.1.0"

__all__ = [
    "SAMPLE_RATE",
    "Channel",
    "Decoded",
    "Prediction",
    "VoiceModel",
    "WhichvoiceError",
    "__version__",
    "identify",
    "load_audio",
    "load_model",
]

_LAZY = {"load_model", "VoiceModel", "Prediction"}  # torch loads only when asked for


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from whichvoice import runtime

        return getattr(runtime, name)
    raise AttributeError(f"module 'whichvoice' has no attribute {name!r}")


def __dir__() -> list[str]:  # the lazy names too, for a notebook's completion
    return sorted(set(globals()) | _LAZY)


def identify(run: str | os.PathLike | None, source: AudioSource) -> Prediction:
    """One-shot: load the closed-set classifier in ``run`` (None: the bundled one) and say
    which of its voices reads ``source``: what ``whichvoice predict`` answers is the
    Prediction's ``answer`` (``"unknown"`` when the open set says it is none of them;
    ``voice`` is then the nearest). Which
    *enrolled* voice (``whichvoice identify``, a gallery) is
    ``whichvoice.verification.identify(encoder, gallery, sources)``."""
    from whichvoice.runtime import load_model

    return load_model(run).identify(source)

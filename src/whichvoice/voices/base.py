"""What every TTS engine provides: its voices, whether it can run here, and sessions that speak."""

from __future__ import annotations

import shutil
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass(frozen=True)
class Voice:
    """One voice of one engine; ``id`` is ``engine:name`` (``flite:slt``, ``polly:Joanna``)."""

    engine: str
    name: str
    gender: str | None  # "female", "male" or None when unknown
    accent: str | None  # e.g. "en-US", "en-GB-scotland"
    sample_rate: int  # Hz, the rate the engine produces natively
    description: str = ""
    modes: tuple[str, ...] = field(default=())  # engine-specific (Polly: "standard", "neural")

    @property
    def id(self) -> str:
        return f"{self.engine}:{self.name}"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["modes"] = list(self.modes)
        return {"id": self.id, **d}


@dataclass(frozen=True)
class Speech:
    """What an engine returned for one sentence.

    ``wave`` is float32 mono in [-1, 1], shape (n_samples,), at ``sample_rate`` Hz.
    ``encoded`` holds the engine's own encoded bytes when it returns a file format directly
    (Polly's mp3), so they can be stored as they came; ``encoded_format`` names that format.
    """

    wave: np.ndarray
    sample_rate: int
    encoded: bytes | None = None
    encoded_format: str | None = None


class EngineSession(ABC):
    """A per-worker handle on an engine (a long-lived process, an API client...)."""

    @abstractmethod
    def synthesize(self, voice: Voice, text: str) -> Speech:
        """Speak ``text`` with ``voice``; raises SynthesisError on failure."""

    def close(self) -> None:  # noqa: B027 - most sessions hold nothing
        """Release what the session holds."""

    def stop(self) -> None:  # noqa: B027 - most sessions are never long in one call
        """Ask a call busy in another thread to give up soon (Ctrl-C): a session that waits
        between retries stops waiting. Called from any thread."""

    def __enter__(self) -> EngineSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Engine(ABC):
    """A TTS engine. Subclasses register themselves with ``@register_engine``."""

    name: str = ""
    # True: the engine can speak its voices at another pitch and rate (``voices.prosody``)
    prosody: bool = False
    # True: every request is billed (a cloud service): a corpus does not ask again for a clip
    # it failed on (the session retries what is worth retrying itself)
    billed: bool = False
    # the packages (PyPI's, else Debian's) whose versions decide the audio it makes: what a
    # corpus records of how it was made (``package_versions``)
    packages: tuple[str, ...] = ()

    @abstractmethod
    def voices(self) -> list[Voice]:
        """Every voice this engine offers, available here or not."""

    def voice(self, name: str) -> Voice | None:
        """A voice ``voices()`` does not list (made on demand: a prosody variant where the
        engine can make one), or None."""
        if self.prosody:
            from whichvoice.voices.prosody import variant_voice

            return variant_voice(self.voices(), name)
        return None

    @abstractmethod
    def unavailable_reason(self) -> str | None:
        """None when the engine can run now, else why not ("flite is not installed")."""

    def voice_unavailable_reason(self, voice: Voice) -> str | None:
        """None when ``voice`` can be used now, else why not (engines with optional voices)."""
        return self.unavailable_reason()

    @abstractmethod
    def open_session(self, *, mode: str | None = None) -> EngineSession:
        """A session for one worker; ``mode`` is engine-specific (Polly's "neural")."""


def package_versions(names: tuple[str, ...]) -> dict[str, str | None]:
    """Each package's installed version: the Python distribution's where one has the name,
    else the Debian package's (dpkg), else None (not installed, or no dpkg here)."""
    import subprocess
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = version(name)
            continue
        except PackageNotFoundError:
            pass
        try:
            done = subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Abbrev}|${Version}", name],
                                  capture_output=True, text=True, timeout=10)  # fmt: skip
        except (OSError, subprocess.TimeoutExpired):
            out[name] = None
            continue
        status, _, installed = done.stdout.partition("|")
        # "ii": installed; a removed package's left configuration ("rc") still has a version
        ok = done.returncode == 0 and status.strip() == "ii" and installed.strip()
        out[name] = installed.strip() if ok else None
    return out


def missing_program(program: str, engine: str) -> str | None:
    """The standard reason for an engine whose executable is not on PATH."""
    if shutil.which(program) is None:
        return f"{engine} is not installed ({program} not found on PATH)"
    return None

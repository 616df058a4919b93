"""The registry of TTS engines, voice ids and named voice sets."""

from __future__ import annotations

import contextlib
import difflib
import logging
import threading
from collections.abc import Callable, Iterator

from whichvoice.errors import EngineUnavailableError, UnknownVoiceError
from whichvoice.voices.base import Engine, EngineSession, Voice
from whichvoice.voices.prosody import variant_problem

log = logging.getLogger(__name__)
_ENGINES: dict[str, Engine] = {}


def register_engine(cls: type[Engine]) -> type[Engine]:
    """Class decorator: make an engine known by its ``name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no engine name")
    _ENGINES[cls.name] = cls()
    return cls


def engine_names() -> list[str]:
    return sorted(_ENGINES)


def get_engine(name: str) -> Engine:
    """The registered engine called ``name``; ValueError listing the valid names otherwise."""
    try:
        return _ENGINES[name]
    except KeyError:
        raise UnknownVoiceError(
            f"unknown engine {name!r}; valid engines: {', '.join(engine_names())}"
        ) from None


def all_voices() -> list[Voice]:
    """Every voice of every engine, in a stable order."""
    return [v for name in engine_names() for v in _ENGINES[name].voices()]


def _set_default8() -> list[str]:
    # 5 recorded speakers (slt and awb/rms/kal/ked), two of them through two engines,
    # and 2 formant voices
    return [
        "flite:slt",
        "flite:awb",
        "flite:rms",
        "flite:kal16",
        "festival:ked_diphone",
        "festival:cmu_us_slt_arctic_hts",
        "espeak-ng:en-us+f3",
        "espeak-ng:en-gb-x-rp+m3",
    ]


def _set_talk8() -> list[str]:
    names = ["Ivy", "Joanna", "Joey", "Justin", "Kendra", "Kimberly", "Matthew", "Salli"]
    return [f"polly:{n}" for n in names]


# engines whose voices are neural networks (Polly's neural mode is a mode, not a voice)
NEURAL_ENGINES = ("hibari", "piper")


def _set_neural() -> list[str]:
    return [v.id for name in NEURAL_ENGINES for v in get_engine(name).voices()]


def _set_mixed16() -> list[str]:
    # 16 voices of 8 engines: both neural voices, RHVoice and Pico's statistical voices,
    # MBROLA's diphones through espeak-ng's prosody, and a few of each older engine. Needs
    # `make voices` (Debian contrib and non-free).
    return [
        "piper:en_US-joe-medium",
        "hibari:af_heart",
        "rhvoice:bdl",
        "rhvoice:clb",
        "pico:en-US",
        "pico:en-GB",
        "mbrola:us1",
        "mbrola:en1",
        "flite:slt",
        "flite:awb",
        "flite:kal16",
        "festival:ked_diphone",
        "festival:cmu_us_slt_arctic_hts",
        "festival:rab_diphone",
        "espeak-ng:en-us+f3",
        "espeak-ng:en-gb-x-rp+m3",
    ]


def _set_espeak_all() -> list[str]:
    return [v.id for v in get_engine("espeak-ng").voices() if "+" in v.name]


VOICE_SETS: dict[str, Callable[[], list[str]]] = {
    "default8": _set_default8,
    "talk8": _set_talk8,
    "neural": _set_neural,
    "mixed16": _set_mixed16,
    "espeak-all": _set_espeak_all,
}


def find_voice(voice_id: str) -> Voice:
    """The voice with this ``engine:name`` id; UnknownVoiceError naming close matches otherwise."""
    engine_name, sep, rest = voice_id.partition(":")
    if sep and engine_name not in _ENGINES and engine_name.lower() in _ENGINES:
        engine_name = engine_name.lower()  # "FLITE:SLT": the engine's name in any case too
        voice_id = f"{engine_name}:{rest}"
    if sep and engine_name in _ENGINES:
        for voice in _ENGINES[engine_name].voices():
            if voice.id == voice_id:
                return voice
            if voice.id.lower() == voice_id.lower():
                return voice
        unlisted = _ENGINES[engine_name].voice(voice_id.partition(":")[2])
        if unlisted is not None:
            return unlisted
        why = variant_problem(voice_id.partition(":")[2], _ENGINES[engine_name].prosody)
        if why is not None:
            raise UnknownVoiceError(f"unknown voice {voice_id!r}: {why}")
    ids = [v.id for v in all_voices()]
    close = difflib.get_close_matches(voice_id, ids, n=4, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    sets = ", ".join(VOICE_SETS)
    raise UnknownVoiceError(
        f"unknown voice {voice_id!r}{hint} (ids are engine:name, see `whichvoice voices`; "
        f"sets: {sets})"
    )


def resolve_voices(spec: str | list[str]) -> list[Voice]:
    """Voices for a set name (``default8``) or comma-separated ids, in order, without repeats."""
    parts = [spec] if isinstance(spec, str) else list(spec)
    items = [item for part in parts for item in part.split(",")]
    out: list[Voice] = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        ids = VOICE_SETS[item]() if item in VOICE_SETS else [item]
        for voice_id in ids:
            voice = find_voice(voice_id)
            if voice not in out:
                out.append(voice)
    if not out:
        raise UnknownVoiceError(f"no voices in {spec!r}")
    return out


def require_available(voices: list[Voice]) -> None:
    """Raise EngineUnavailableError for the first of ``voices`` that cannot be used here."""
    for voice in voices:
        reason = get_engine(voice.engine).voice_unavailable_reason(voice)
        if reason:
            raise EngineUnavailableError(f"cannot use {voice.id}: {reason}")


REMOTE_ENGINES = frozenset({"polly"})  # sessions that wait on a service, not on a core


class SessionPool:
    """Engine sessions (festival keeps its process, piper its network), closed together: one
    per thread and engine, for a job's own worker threads; or, with ``shared`` N, at most N
    per engine, lent to whichever thread asks (``using``) and taken back after: a server's
    threads come and go (anyio retires an idle one after 10 s), and one session per thread
    left a festival process (300 MB) or a piper network behind each one (a review: 9 GB
    after four bursts of 8 requests)."""

    def __init__(self, polly_engine: str = "standard", *, shared: int | None = None) -> None:
        if shared is not None and shared < 1:
            raise ValueError(f"shared: at least 1 session an engine, not {shared}")
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: list[EngineSession] = []
        self._polly_engine = polly_engine
        self._shared = shared
        self._free: dict[str, list[EngineSession]] = {}
        self._slots: dict[str, threading.BoundedSemaphore] = {}
        self._lent: set[int] = set()  # id(session) of those lent now (close() leaves them)
        self._retired: set[int] = set()  # lent when the pool was closed: closed on return

    def engine_label(self, voice: Voice) -> str:
        """What a clip's manifest records as its engine: the voice's engine, and Polly's mode
        when it is neural (``polly-neural``: its own engine family)."""
        if voice.engine == "polly" and (
            self._polly_engine == "neural" or "standard" not in voice.modes
        ):  # a neural-only voice is spoken by the neural engine whatever the mode
            return "polly-neural"
        return voice.engine

    def _open(self, engine: str) -> EngineSession:
        mode = self._polly_engine if engine == "polly" else None
        session = get_engine(engine).open_session(mode=mode)
        with self._lock:
            self._all.append(session)
        return session

    def get(self, engine: str) -> EngineSession:
        """This thread's session of ``engine`` (a pool of ``shared`` sessions: ``using``)."""
        if self._shared is not None:
            raise RuntimeError("a shared pool lends its sessions: use `with pool.using(...)`")
        sessions = self._local.__dict__.setdefault("sessions", {})
        if engine not in sessions:
            sessions[engine] = self._open(engine)
        return sessions[engine]

    @contextlib.contextmanager
    def using(self, engine: str) -> Iterator[EngineSession]:
        """A session of ``engine`` for the ``with`` block: this thread's own, or one lent from
        a shared pool (waiting while all N are lent) and taken back after it."""
        if self._shared is None:
            yield self.get(engine)
            return
        with self._lock:
            # a remote engine's session is a client waiting on the network, not a process
            # working on a core: it gets more at once (a retry's wait holds its slot)
            limit = max(self._shared, 32) if engine in REMOTE_ENGINES else self._shared
            slots = self._slots.setdefault(engine, threading.BoundedSemaphore(limit))
        with slots:
            with self._lock:
                free = self._free.setdefault(engine, [])
                session = free.pop() if free else None
            if session is None:
                session = self._open(engine)
            with self._lock:
                self._lent.add(id(session))
            try:
                yield session
            finally:
                with self._lock:
                    self._lent.discard(id(session))
                    kept = id(session) not in self._retired
                    if kept:
                        self._free.setdefault(engine, []).append(session)
                    else:  # the pool was closed while it was lent: closed now, not lent again
                        self._retired.discard(id(session))
                        self._all = [x for x in self._all if x is not session]
                if not kept:
                    with contextlib.suppress(Exception):
                        session.close()

    def sessions_open(self) -> int:
        """How many sessions the pool holds (for checks and tests)."""
        with self._lock:
            return len(self._all)

    def stop(self) -> None:
        """Every session's ``stop`` (Ctrl-C: a session waiting to retry gives up)."""
        with self._lock:
            sessions = list(self._all)
        for session in sessions:
            session.stop()

    def close(self) -> None:
        """Every session closed; a shared pool opens new ones if asked again (a server's
        lifespan entered anew), and a session lent now is closed when it comes back."""
        with self._lock:
            self._free.clear()
            self._retired |= self._lent  # closed when they come back
            lent = [x for x in self._all if id(x) in self._lent]
            for session in self._all:
                if id(session) in self._lent:
                    continue
                try:
                    session.close()
                except Exception as e:  # closing must not hide the caller's own outcome
                    log.debug("closing a session failed: %s", e)
            self._all = lent
            self._local = threading.local()  # a thread's own session is not given again

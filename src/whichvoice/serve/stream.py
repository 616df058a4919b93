"""``/v1/stream``: live "who is speaking now" over a WebSocket.

The client sends binary messages of 16-bit little-endian mono PCM at the ``rate`` it names in
the query (``/v1/stream?rate=48000``; the page sends its microphone's). Every ``STEP_S`` of
audio received the server looks at the last ``WINDOW_S``: no speech there answers ``{"speaker":
null}``; speech is embedded with the server's encoder and named after the enrolled voice that
the last window, or else the turn so far, reaches at its live threshold (``LiveThresholds``:
one for one-second windows and one for turn means, each set on dev data by
``benchmarks/diarize.py``, else the verification threshold; and, where ``data/diarize``
ships them for the encoder, one for each amount of speech under ``SPEECH_BIN_END`` in a
window, set by ``benchmarks/live.py``; see ``LiveSpeakers.answer``), else
after the connection's own unknown voices (``unknown-1``, ...: an embedding within the live
join distance (the shipped ``live_join``, else the diarization clustering distance) of one
joins it, else a window with ``NEW_VOICE_S`` of speech, in a turn ``NEW_VOICE_AFTER_S`` past
its first answer, starts the next, up to ``MAX_UNKNOWN``). A window with less than
``MIN_SPEECH_S`` of speech answers no one. Each answer is ``{"speaker", "score", "speech",
"t"}`` (``speech``: whether the window held speech, so that no one named while someone
speaks, as in the first second of a new voice's turn, is told from silence; ``t``: seconds
of audio received when the window it answers ended). Audio is read while an answer is
being made: a step that has waited ``MAX_LAG_S`` for its answer is skipped when a newer one
waits too, so a busy server answers about now, not ever later.

State per connection is bounded: the last ``WINDOW_S`` of audio, the turn's window embeddings
over its last ``TURN_S``, at most ``MAX_UNKNOWN`` centroids. A connection idle for ``IDLE_S``
or open for ``MAX_SESSION_S`` is closed by the server; with an API key set, the query's
``key`` (browsers cannot send headers on a WebSocket) or the usual headers must carry it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.concurrency import run_in_threadpool

from whichvoice.audio import (
    SAMPLE_RATE,
    Decoded,
    frame_db,
    is_steady,
    only_a_steady_sound,
    without_dc,
)
from whichvoice.errors import WhichvoiceError
from whichvoice.fusion import embedding_dim
from whichvoice.prototypes import VoiceRefs, voice_refs
from whichvoice.serve.service import (
    HTTPProblem,
    error_status,
    foreign_origin,
    key_matches,
    presented_key,
    repeated_parameter,
)

router = APIRouter(tags=["diarization"])
log = logging.getLogger(__name__)

STREAM_PARAMETERS = {"rate", "key"}  # the query a stream takes
WINDOW_S = 1.0  # the audio an answer looks at
STEP_S = 0.1  # an answer every this much audio (or every message, if they are longer)
IDLE_S = 10.0  # no audio for this long: closed
MAX_SESSION_S = 3600.0
MAX_UNKNOWN = 8
MAX_MESSAGE = 1 << 20  # bytes of one message: a bigger one is answered with a JSON error
# (uvicorn closes the socket with 1009 past cli/serve.py's MAX_WS_MESSAGE, 16 MB)
MAX_CONNECTIONS = 8  # live connections a server process holds at once; more are refused
_LIVE = [0]  # open live connections in this process (the event loop's thread only)
RATES = range(8_000, 192_001)
SPEECH_DB = -50.0  # a 10 ms frame quieter than this (dBFS, RMS) is silence
MIN_SPEECH_S = 0.4  # a window with less speech answers no one
NEW_VOICE_S = 0.7  # an unknown voice is started only from a window with this much speech
NEW_VOICE_AFTER_S = 1.0  # and a turn this long past its first answer
FIRST_ANSWER_SAMPLES = int(0.5 * WINDOW_S * SAMPLE_RATE)  # half a window heard first
TURN_S = 2.7  # a turn is named from the mean of its windows over its last 2.7 s of audio
MAX_LAG_S = 0.5  # a step that has waited this long (wall clock) is skipped for a newer one
MAX_PENDING = 16  # steps waiting for an answer, at most (the oldest are dropped)
GALLERY_CHECK_S = 1.0  # how often a stream looks whether the gallery changed (a stat or two)
# windows with less speech than this have thresholds of their own (``accept_by_speech``)
SPEECH_BIN_END = 0.8


@dataclass(frozen=True)
class LiveThresholds:
    """What a live answer is held to: ``accept``, the score one window needs to name an
    enrolled voice; ``turn_accept``, the score a turn's mean needs (None: ``accept``);
    ``join``, the cosine distance within which a window joins an unknown voice;
    ``accept_by_speech``, (seconds of speech, threshold) pairs in ascending order: a window
    with at least that much speech (and less than the next pair's) is held to that threshold
    instead of ``accept`` (a window of less speech scores lower against its own voice and
    against others alike: each threshold is set on dev windows of that much speech at the same
    false acceptances; ``benchmarks/live.py --split dev --write``); past the last pair's
    range, ``accept``. ``unnamed_streak``, a margin (None: off): speech answered with no one for
    ``new_voice_after_s`` also becomes an unknown voice, however often its turn restarted, when
    the mean of those windows scores this much under every enrolled voice's threshold (shipped
    per encoder as its dev rule chose: ``benchmarks/live.py --split dev --write``)."""

    accept: float
    turn_accept: float | None
    join: float
    accept_by_speech: tuple[tuple[float, float], ...] = ()
    unnamed_streak: float | None = None

    def accept_for(self, speech_s: float) -> float:
        """The threshold one window with ``speech_s`` seconds of speech needs."""
        if speech_s < SPEECH_BIN_END:
            for low, threshold in reversed(self.accept_by_speech):
                if speech_s >= low:
                    return threshold
        return self.accept


class LiveSpeakers:
    """One connection's state: the last window of audio, the current turn's window
    embeddings and its unknown voices. The defaults are the shipped rule; ``benchmarks/live.py``
    also runs stop 33's beside it (an answer every 0.25 s, ``last_window`` off: turns split
    on their mean only and the last window never names alone; unknown voices after 0.5 s),
    at today's answer pacing (stop 33 restarted the count at each answer, so 0.1 s messages
    got an answer every 0.3 s)."""

    def __init__(
        self,
        rate: int,
        *,
        step_s: float = STEP_S,
        last_window: bool = True,
        new_voice_after_s: float = NEW_VOICE_AFTER_S,
    ) -> None:
        import soxr

        self.step = round(step_s * SAMPLE_RATE)  # samples at 16 kHz between answers
        self.new_voice_windows = 1 + round(new_voice_after_s / step_s)
        self.turn_windows = 1 + round((TURN_S - WINDOW_S) / step_s)
        if self.new_voice_windows > self.turn_windows:
            raise ValueError(
                f"an unknown voice after {new_voice_after_s} s of turn needs a turn that long: "
                f"turns keep {TURN_S - WINDOW_S:g} s past their first answer"
            )
        self.last_window = last_window
        self.resampler = soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32")
        self.buffer = np.zeros(int(WINDOW_S * SAMPLE_RATE), np.float32)
        self.received = 0  # samples at 16 kHz
        self.since_answer = 0
        self.unknown: list[np.ndarray] = []  # each unknown voice's sum of embeddings
        self.turn: list[np.ndarray] = []  # the current turn's last window embeddings
        # the window embeddings of the answers since speech was last named (or silent)
        self.unnamed: list[np.ndarray] = []
        self.odd = b""  # a byte left over from an odd-sized message
        self.speech = False  # whether the last answer's window held speech (see ``answer``)

    def feed(self, pcm: bytes) -> bool:
        """Take a message; returns whether an answer is due. A message of an odd number of
        bytes keeps its last byte for the next one, so samples stay aligned."""
        pcm = self.odd + pcm
        self.odd = pcm[len(pcm) // 2 * 2 :]
        x = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2").astype(np.float32) / 32768
        y = self.resampler.resample_chunk(x)
        if y.size:
            keep = self.buffer.shape[0]
            self.buffer = np.r_[self.buffer, y][-keep:]
            self.received += y.size
            self.since_answer += y.size
        if self.since_answer >= self.step and self.received >= FIRST_ANSWER_SAMPLES:
            self.since_answer %= self.step  # messages off the step keep its pace on average
            return True
        return False

    def _another_voice(self, emb: np.ndarray, join: float) -> bool:
        """Whether the last window is farther than ``join`` from the turn so far, or (with the
        shipped rule) from the turn's oldest window kept (up to ``TURN_S - WINDOW_S`` back):
        windows 0.1 s apart share most of their audio, so across a change of speaker each
        stays near the mean of those before it, and only the turn's start shows how far the
        voice has moved."""
        if 1 - float(_unit(np.mean(self.turn, axis=0)) @ emb) > join:
            return True
        return self.last_window and 1 - float(self.turn[0] @ emb) > join

    def answer(
        self, encoder, refs: VoiceRefs, thresholds: LiveThresholds, wave: np.ndarray | None = None
    ):
        """Who speaks in the last window (``wave``, else the audio held now): (name or None, score),
        among the enrolled voices' prototypes ``refs``. Consecutive windows of one voice (each
        within ``thresholds.join`` of the turn so far) are one turn, named from the mean of its
        windows over its last ``TURN_S`` of audio (a second of speech is too little to name a voice
        at the verification threshold, a few seconds are not) when it reaches
        ``thresholds.turn_accept``. The last window alone names the voice at its threshold
        (``thresholds.accept_for`` its seconds of speech) when the turn names no one, or another
        voice: just after a change of speaker the turn still
        holds windows that straddle it, so it starts again from the last window. (A turn that
        straddles two enrolled voices names neither, and would otherwise become an unknown voice.)
        Each threshold is set for its own evidence: ``accept`` on one-second windows (or the one
        for the window's seconds of speech: ``LiveThresholds.accept_for``), ``turn_accept`` on turn
        means, each at the same false acceptances on dev (a mean of windows scores higher against a
        voice like it than one window does); ``turn_accept`` None: ``accept`` for both. Speech
        answered with no one for ``new_voice_after_s`` becomes the next unknown voice (see
        ``_name``)."""
        # the window less its baseline: a microphone's DC offset would count as speech
        wave = without_dc(self.buffer if wave is None else wave)
        speech_s = _speech_seconds(wave)
        self.speech = False
        if speech_s < MIN_SPEECH_S:
            self.turn.clear()
            self.unnamed.clear()
            return None, None
        accept = thresholds.accept_for(speech_s)
        try:
            emb, _ = encoder.embed(Decoded(wave.copy(), SAMPLE_RATE, "live"))
        except WhichvoiceError:
            self.unnamed.clear()
            return None, None  # the encoder found no speech in it
        name, score = self._name(emb, speech_s, accept, refs, thresholds)
        if name is None:
            self.unnamed.append(emb)
            keep = self.new_voice_windows - 1  # the next answer adds its own
            self.unnamed = self.unnamed[max(0, len(self.unnamed) - keep) :] if keep > 0 else []
        else:
            self.unnamed.clear()
        return name, score

    def _name(
        self,
        emb: np.ndarray,
        speech_s: float,
        accept: float,
        refs: VoiceRefs,
        thresholds: LiveThresholds,
    ) -> tuple[str | None, float | None]:
        """``answer``'s name for a window with speech (embedded as ``emb``)."""
        join = thresholds.join
        turn_accept = (
            thresholds.accept if thresholds.turn_accept is None else thresholds.turn_accept
        )
        # someone speaks: an answer of no one from here on means "not known yet" (a turn
        # just begun, or past MAX_UNKNOWN voices), not silence
        self.speech = True
        if self.turn and self._another_voice(emb, join):
            self.turn.clear()  # another voice: a new turn
        self.turn.append(emb)
        del self.turn[: -self.turn_windows]
        voice = _unit(np.mean(self.turn, axis=0))
        names = refs.names
        if names:
            turn_scores = refs.scores(voice)
            by_turn = int(np.argmax(turn_scores))
            turn_named = turn_scores[by_turn] >= turn_accept
            if self.last_window:
                last_scores = refs.scores(emb)
                by_last = int(np.argmax(last_scores))
                if last_scores[by_last] >= accept and (not turn_named or by_last != by_turn):
                    self.turn = [emb]  # the turn straddles a change of speaker: start again
                    return names[by_last], float(last_scores[by_last])
            if turn_named:
                return names[by_turn], float(turn_scores[by_turn])
        if self.unknown:
            cents = np.stack([_unit(total) for total in self.unknown])
            sims = cents @ voice
            k = int(np.argmax(sims))
            if 1 - sims[k] <= join:
                self.unknown[k] = self.unknown[k] + emb
                return f"unknown-{k + 1}", float(sims[k])
        # a voice of its own once its turn has ``new_voice_after_s`` of windows; or (where the
        # encoder has ``thresholds.unnamed_streak``, a margin: stop 58) once speech has been
        # answered with no one that long, however often the turn restarted (it restarts
        # whenever the last window drifts past ``join`` from its first, which a voice's windows
        # a second apart may do all along its turn), when their mean scores under every
        # enrolled voice's ``accept`` by the margin
        unnamed = [*self.unnamed, emb]
        enough, seed = len(self.turn) >= self.new_voice_windows, voice * len(self.turn)
        margin = thresholds.unnamed_streak
        if margin is not None and not enough:
            mean = _unit(np.sum(unnamed, axis=0))
            near = bool(names) and float(np.max(refs.scores(mean))) >= accept - margin
            if len(unnamed) >= self.new_voice_windows and not near:
                enough, seed = True, np.sum(unnamed, axis=0)
        if not enough or speech_s < NEW_VOICE_S:
            return None, None  # a voice just begun: not yet a voice of its own
        if len(self.unknown) < MAX_UNKNOWN:
            self.unknown.append(seed)
            return f"unknown-{len(self.unknown)}", 1.0
        return None, None


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)


def _speech_seconds(wave: np.ndarray) -> float:
    """Seconds of 10 ms frames louder than ``SPEECH_DB`` and within 30 dB of the loudest;
    none in a steady sound (a tone, a hum, a fan, two tones beating: ``audio.is_steady``,
    ``audio.only_a_steady_sound``)."""
    db = frame_db(wave)
    if db.size == 0 or is_steady(db) or only_a_steady_sound(wave, db=db):
        return 0.0
    return float((db > max(SPEECH_DB, db.max() - 30)).sum()) * 0.01


@router.get("/v1/stream", include_in_schema=False)
async def stream_over_http() -> None:
    """A plain request to the WebSocket's address: 426, saying how to connect."""
    raise HTTPProblem(
        426, "upgrade_required", "/v1/stream is a WebSocket: connect with ws:// (or wss://)"
    ).with_headers({"Upgrade": "websocket", "Connection": "Upgrade"})


@router.websocket("/v1/stream")
async def stream(websocket: WebSocket) -> None:
    service = websocket.app.state.service
    # in the order of HTTP's checks: another site's page, then the key, then the query
    if origin := foreign_origin(websocket.headers, service.cfg.allow_origins):
        # browsers let any site's page open a WebSocket anywhere: it would hear the names
        await websocket.accept()
        message = (
            f"a stream from another site's page ({origin}) is refused; "
            "serve --allow-origin ORIGIN lets that site's pages in"
        )
        await _refuse(websocket, message, "cross_origin", 1008)
        return
    expected = service.cfg.api_key
    keys = websocket.query_params.getlist("key")  # given twice: no key (which one is meant?)
    presented = (keys[0] or presented_key(websocket)) if len(keys) == 1 else None
    if not keys:
        presented = presented_key(websocket)
    if expected and not key_matches(presented, expected):
        # accepted first: a browser sees the close code and reason, not a failed handshake
        await websocket.accept()
        await websocket.close(code=1008, reason="missing or wrong API key")
        return
    if twice := repeated_parameter(websocket.scope.get("query_string", b"")):
        # as over HTTP (a 422 there): taking the last one could take another key or rate
        # than the client means
        await websocket.accept()
        message = f"{twice}: a query parameter given more than once; send it once"
        await _refuse(websocket, message, "invalid", 1008)
        return
    if unknown := sorted(set(websocket.query_params) - STREAM_PARAMETERS):
        # as over HTTP: `rat=8000` would stream at 16000 Hz without a word
        await websocket.accept()
        message = f"{unknown[0][:50]!r}: not a query parameter here; it takes rate and key"
        await _refuse(websocket, message, "invalid", 1008)
        return
    asked = websocket.query_params.get("rate", str(SAMPLE_RATE))
    # ASCII digits only: int() would also take "16_000" and other scripts' digits; and few
    # of them: int() of over 4,300 digits raised, a 500 and a traceback (fuzzing)
    digits = asked.isascii() and asked.isdigit() and len(asked) <= 9
    rate = int(asked) if digits else -1
    await websocket.accept()
    if rate not in RATES:
        shown = asked if len(asked) <= 40 else f"{asked[:40]}..."
        message = f"rate {shown!r}: a whole number of Hz, 8000 to 192000"
        # as a query parameter it does not take, or one given twice (422 over HTTP)
        await _refuse(websocket, message, "invalid", 1008)
        return
    if _LIVE[0] >= MAX_CONNECTIONS:
        message = "too many live connections; try later"
        await _refuse(websocket, message, "too_many_connections", 1013)
        return
    _LIVE[0] += 1
    try:
        try:
            encoder = await run_in_threadpool(service.encoder)  # 503 no_encoder over HTTP
            # marked before it is read: a write between the two is seen at the next check
            mark = await run_in_threadpool(_gallery_mark, service.gallery_path)
            refs, thresholds = await run_in_threadpool(_gallery_refs, service, encoder)
        except (HTTPProblem, WhichvoiceError) as e:
            if isinstance(e, WhichvoiceError) and error_status(e)[0] >= 500:
                log.error("/v1/stream: %s", e)  # the server's fault: the whole message
            message, kind = (
                (e.message, e.kind)
                if isinstance(e, HTTPProblem)
                else (e.public_message(), error_status(e)[1])
            )
            await _refuse(websocket, message, kind, 1011)
            return
        watch = GalleryWatch(service, encoder, refs, mark)
        await _serve(websocket, LiveSpeakers(rate), encoder, watch, thresholds)
    finally:
        _LIVE[0] -= 1


def _gallery_mark(path: Path) -> tuple:
    """What changes when the gallery is written: the file's and its write-ahead log's size,
    time and inode (a commit lands in the log, a checkpoint in the file)."""
    mark = []
    for p in (path, path.with_name(path.name + "-wal")):
        try:
            st = os.stat(p)
        except OSError:
            mark.append(None)
            continue
        mark.append((st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(mark)


class GalleryWatch:
    """A stream's enrolled voices, read again when the gallery changed: a voice removed
    stops being named (and one enrolled starts) within GALLERY_CHECK_S of the write, as a
    request would see it. A gallery that cannot be read any more names no one (logged)."""

    def __init__(self, service, encoder, refs: VoiceRefs, mark: tuple) -> None:
        self.service, self.encoder, self.refs, self.mark = service, encoder, refs, mark
        self.checked = time.monotonic()

    async def current(self) -> VoiceRefs:
        now = time.monotonic()
        if now - self.checked < GALLERY_CHECK_S:
            return self.refs
        self.checked = now
        mark = await run_in_threadpool(_gallery_mark, self.service.gallery_path)  # NFS may stall
        if mark != self.mark:
            self.mark = mark
            try:
                self.refs, _ = await run_in_threadpool(_gallery_refs, self.service, self.encoder)
            except WhichvoiceError as e:
                log.warning("/v1/stream: the gallery cannot be read again (%s): no one named", e)
                self.refs = voice_refs([], embedding_dim(self.encoder.model))
        return self.refs


async def _refuse(websocket: WebSocket, message: str, kind: str, code: int) -> None:
    """An accepted connection's one error, ``{"error", "kind"}``, then closed with ``code``."""
    await websocket.send_text(json.dumps({"error": message, "kind": kind}))
    await websocket.close(code=code)


async def _serve(
    websocket: WebSocket, state, encoder, watch: GalleryWatch, thresholds: LiveThresholds
) -> None:
    """Answer one connection's audio until it ends, idles or reaches the session limit. One
    task reads (so a client's pings and audio are taken while an answer is made), another
    answers the steps in order, skipping those that waited ``MAX_LAG_S`` when a newer one
    waits too."""
    opened = heard = time.monotonic()  # heard: the last audio (other messages do not count)
    pending: collections.deque = collections.deque(maxlen=MAX_PENDING)
    due = asyncio.Event()
    stopping = False

    async def answers() -> None:
        """Answer the pending steps until told to stop; an answer under way is finished
        first (the thread making it cannot be stopped, and the connection limit must bound
        the work). A failure is logged and closes the connection (1011)."""
        while not stopping:
            await due.wait()
            due.clear()
            while pending and not stopping:
                arrived, wave, received = pending.popleft()
                if pending and time.monotonic() - arrived > MAX_LAG_S:
                    continue  # stale, and a newer step waits
                try:
                    refs = await watch.current()
                    speaker, score = await run_in_threadpool(
                        state.answer, encoder.model, refs, thresholds, wave
                    )
                except Exception:
                    log.exception("a live answer failed")
                    with contextlib.suppress(Exception):
                        await websocket.send_text(json.dumps(
                            {"error": "the server could not answer", "kind": "internal"}
                        ))  # fmt: skip
                        await websocket.close(code=1011)
                    return
                try:
                    await websocket.send_text(json.dumps({
                        "speaker": speaker,
                        "score": None if score is None else round(score, 4),
                        "speech": state.speech,
                        "t": round(received / SAMPLE_RATE, 2),
                    }))  # fmt: skip
                except (WebSocketDisconnect, RuntimeError):  # the client went away
                    return

    answering = asyncio.create_task(answers())
    try:
        while time.monotonic() - opened < MAX_SESSION_S:
            try:
                wait = max(IDLE_S - (time.monotonic() - heard), 0.0)
                receiving = asyncio.ensure_future(websocket.receive())
                done, _ = await asyncio.wait(
                    {receiving, answering}, timeout=wait, return_when=asyncio.FIRST_COMPLETED
                )
            except BaseException:
                receiving.cancel()
                raise
            if answering in done:  # it failed, or the client went away while it sent
                receiving.cancel()
                return
            if receiving not in done:
                receiving.cancel()
                await websocket.close(code=1000, reason="idle")
                return
            message = receiving.result()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("bytes")
            if not data or len(data) > MAX_MESSAGE:
                await websocket.send_text(json.dumps(
                    {"error": f"send binary PCM messages of 1 to {MAX_MESSAGE} bytes",
                     "kind": "bad_request"}
                ))  # fmt: skip
                continue
            heard = time.monotonic()
            if state.feed(data):
                pending.append((heard, state.buffer, state.received))
                due.set()
        await websocket.close(code=1000, reason="session limit")
    except (WebSocketDisconnect, RuntimeError):  # RuntimeError: sent to a closed socket
        return
    finally:
        stopping = True
        due.set()
        await asyncio.wait({answering})  # its answer under way finishes; it then returns


def live_thresholds(encoder) -> LiveThresholds:
    """``encoder``'s live thresholds: the shipped ones (``data/diarize``, set on dev by
    ``benchmarks/diarize.py``), else its verification threshold for both answers and its
    clustering distance for keeping windows in one turn and joining unknown voices (the
    shipped ``live_join`` where there is one); the speech thresholds and the unnamed-streak
    margin where ``benchmarks/live.py --split dev --write`` shipped them."""
    from whichvoice.diarize import default_threshold, shipped_settings
    from whichvoice.verification import operating_point

    shipped = shipped_settings(encoder)  # once: an encoder's id hashes its weights
    accept, turn = shipped.get("live_accept"), shipped.get("live_turn_accept")
    accept = operating_point(encoder).threshold if accept is None else float(accept)
    join = shipped.get("live_join")
    join = default_threshold(encoder, shipped)[0] if join is None else float(join)
    pairs = shipped.get("accept_by_speech", [])
    by_speech = tuple((float(low), float(threshold)) for low, threshold in pairs)
    lows = [low for low, _ in by_speech]
    if lows != sorted(set(lows)) or any(not MIN_SPEECH_S <= x < SPEECH_BIN_END for x in lows):
        log.warning("ignoring live speech thresholds out of order or range: %s", pairs)
        by_speech = ()
    streak = shipped.get("unnamed_streak")
    if streak is not None and not (isinstance(streak, int | float) and 0 <= streak < 1):
        log.warning("ignoring a live unnamed-streak margin out of range: %s", streak)
        streak = None
    return LiveThresholds(
        accept,
        None if turn is None else float(turn),
        join,
        by_speech,
        None if streak is None else float(streak),
    )


def _gallery_refs(service, encoder) -> tuple[VoiceRefs, LiveThresholds]:
    """The enrolled voices' prototypes (with their names) and the live thresholds (off the
    event loop: the encoder's id hashes a run's weights)."""
    from whichvoice.gallery import Gallery

    with Gallery(service.gallery_path, encoder.id, create=False) as g:
        voices = g.voices()
    return voice_refs(voices, embedding_dim(encoder.model)), live_thresholds(encoder.model)

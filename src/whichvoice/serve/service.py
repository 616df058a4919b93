"""What the routes share: the config, the classifier and the encoder, limits, uploads, metrics,
TTS sessions and the gallery."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import functools
import hmac
import json
import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import Depends, Request
from prometheus_client import CollectorRegistry, Counter, Histogram

from whichvoice.audio import Decoded, check_judgeable, check_not_silent, read_audio
from whichvoice.errors import (
    AudioDecodeError,
    AudioTooLongError,
    EngineFaultError,
    NoSuchChannelError,
    SetupError,
    SilentAudioError,
    SynthesisError,
    WhichvoiceError,
)
from whichvoice.gallery import (
    AlreadyEnrolledError,
    Gallery,
    GalleryError,
    GalleryModelError,
    GalleryUnusableError,
    NotEnrolledError,
    VoiceExistsError,
    default_gallery_path,
)
from whichvoice.runtime import Prediction, VoiceModel
from whichvoice.serve.batching import MicroBatcher
from whichvoice.tracing import EngineHead, head_for
from whichvoice.verification import gallery_encoder, model_id
from whichvoice.voices import SessionPool

log = logging.getLogger(__name__)


def repeated_parameter(query_string: bytes) -> str | None:
    """The first query parameter given more than once (``?name=a&name=b``), else None: the
    routes read each parameter once, and taking the last one would enroll into or check
    another voice than the client may mean."""
    seen: set[str] = set()
    for key, _ in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if key in seen:
            return key
        seen.add(key)
    return None


DEFAULT_MAX_BYTES = 20 * 1024 * 1024  # bytes of one request body
DEFAULT_MAX_SECONDS = 600.0  # s of audio in one file
# the files of one request (enroll, verify) hold this many times that together, at most
REQUEST_FILES_SECONDS = 4
DEFAULT_UPLOAD_TIMEOUT_S = 30.0  # s an upload may send nothing before it is answered 408
DEFAULT_SYNTH_PER_MINUTE = 30.0  # synthesis requests a minute per client, in bursts of as many
RAW_NAME = "the audio"  # how a raw (not multipart) body is named in answers
TRIM_EVERY_S = 30.0  # s between handing the allocator's free memory back to the system


def _over(limit: int) -> str:
    """A 413's words: the limit as a person reads it, and in bytes."""
    mib, kib = limit / 1024 / 1024, limit / 1024
    size = (
        f"{mib:,.0f} MiB" if mib >= 100 else f"{mib:.3g} MiB" if mib >= 1
        else f"{kib:.3g} KiB"
    )  # fmt: skip
    return f"the upload is over the {size} limit ({limit:,} bytes)"


@dataclass(frozen=True)
class ServeConfig:
    run: str | None = None  # the closed-set classifier; None: answers from the gallery only
    encoder: str | None = None  # an encoder run or name; None: the bundled encoder
    gallery: str | None = None  # None: default_gallery_path()
    api_key: str | None = None
    max_bytes: int = DEFAULT_MAX_BYTES
    max_seconds: float = DEFAULT_MAX_SECONDS
    allow_polly: bool = False  # /v1/synthesize may call Amazon Polly (billed to the server)
    synth_per_minute: float = DEFAULT_SYNTH_PER_MINUTE  # per client; 0: no synthesis at all
    backend: str = "torch"  # the classifier's: "torch" or "onnx" (onnxruntime)
    batching: bool = True  # score concurrent requests' windows together (serve.batching)
    batch_wait_ms: float = 0.0  # how long a batch waits for more requests (0: it does not)
    upload_timeout_s: float = DEFAULT_UPLOAD_TIMEOUT_S  # a stalled upload's wait, at most
    # origins (scheme://host[:port]) besides the server's own whose pages may send requests
    # that change something, and open the live stream (a browser names its page's origin)
    allow_origins: tuple[str, ...] = ()

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServeConfig:
        fields = json.loads(text)
        fields["allow_origins"] = tuple(fields.get("allow_origins", ()))
        return cls(**fields)


# a gallery error's status and kind, most specific first
_GALLERY_ERRORS = (
    (NotEnrolledError, 404, "not_enrolled"),
    (GalleryModelError, 409, "model_mismatch"),
    (GalleryUnusableError, 503, "gallery"),  # the server's own file: logged in full
    (AlreadyEnrolledError, 409, "already_enrolled"),  # every recording given, by any call
    (VoiceExistsError, 409, "voice_exists"),
    # the client's mistake (an export that is not one, a name it cannot take): "gallery" is
    # the server's own file, a 503
    (GalleryError, 422, "invalid"),
    (SilentAudioError, 422, "silent"),  # a clip with too little speech to judge
    # Amazon Polly failing the server (its credentials, throttling), or a local engine that
    # did not answer in time or cannot run: not the client's fault
    (EngineFaultError, 502, "engine_failed"),
    # the voice cannot say this text (a script its engine has no rules for, nothing it can
    # pronounce): the same kind whichever engine says so (it was bad_request)
    (SynthesisError, 422, "cannot_speak"),
    # a file of the server's own setup it cannot use (an encoder's calibration)
    (SetupError, 503, "unavailable"),
)


def error_status(exc: WhichvoiceError) -> tuple[int, str]:
    """The HTTP status and kind of a whichvoice error (the live stream sends the kind too)."""
    return next(
        ((status, kind) for cls, status, kind in _GALLERY_ERRORS if isinstance(exc, cls)),
        (422, "bad_request"),
    )


def _sessions_an_engine() -> int:
    """Engine sessions a server process lends at once, per engine: the cores it may use (its
    affinity, where the system says), shared by the server's worker processes, at least 2."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    workers = max(1, int(os.environ.get("WHICHVOICE_WORKERS", "1") or 1))
    return max(2, cores // workers)


class HTTPProblem(Exception):
    """An error answered as ``{"error", "kind"}`` with its status."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message
        self.headers: dict[str, str] | None = None

    def with_headers(self, headers: dict[str, str]) -> HTTPProblem:
        self.headers = headers
        return self


# application/ types that name audio (Ogg's registered type, what a sender that knows no
# better says); any other application/ type (a PDF, JSON) is not audio
AUDIO_APPLICATION = ("application/ogg", "application/octet-stream")


def is_audio_type(media: str) -> bool:
    """Whether a declared media type may be audio: audio/*, video/* (a recording's
    container), or AUDIO_APPLICATION."""
    return media.startswith(("audio/", "video/")) or media in AUDIO_APPLICATION


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def named_type(media: str) -> str:
    """A request's content type as an error names it."""
    return f"content type {media!r}" if media else "no content type"


def presented_key(request: Request) -> str | None:
    """The API key a request carries: ``X-API-Key: KEY`` or ``Authorization: Bearer KEY``."""
    key = request.headers.get("x-api-key")
    if key:  # an empty one is no key: a Bearer token beside it still counts
        return key
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def check_api_key(key: str) -> None:
    """ValueError unless ``key`` can travel in an HTTP header: printable ASCII, no spaces
    around it (a browser's fetch refuses any other character in a header)."""
    if not key or not key.isascii() or not key.isprintable() or key != key.strip():
        raise ValueError(
            "an API key is printable ASCII without spaces around it: HTTP headers carry "
            "no other characters"
        )


def foreign_origin(headers, allowed: tuple[str, ...]) -> str | None:
    """The ``Origin`` of a request a browser sent from another site's page, when it is not
    one of ``allowed``; None for the server's own page and for clients that are no browser
    page (curl, scripts: no Origin). A page of another site may send a form to this server,
    or open its live stream, with the user's browser: what it sends must not enroll, remove
    or listen. The browser's ``Sec-Fetch-Site`` decides where it is sent (``same-origin``
    even behind a proxy that rewrites ``Host``, and for a page whose referrer policy makes
    its Origin ``null``); without it, the Origin against the ``Host`` asked."""
    origin = headers.get("origin")
    site = headers.get("sec-fetch-site")
    if site in ("same-origin", "none"):  # its own page, or typed by the user
        return None
    if origin is None:
        return None if site is None else site
    if normal_origin(origin) in allowed:
        return None
    if site is None:
        scheme, sep, _ = origin.lower().partition("://")
        host = headers.get("host", "")
        if sep and normal_origin(f"{scheme}://{host}") == normal_origin(origin):
            return None
    return origin


def normal_origin(origin: str) -> str:
    """An origin as a browser writes it: lower case, no path, no default port."""
    scheme, sep, rest = origin.strip().lower().rstrip("/").partition("://")
    if not sep:
        return origin.strip().lower()
    for default in (":80",) if scheme == "http" else (":443",) if scheme == "https" else ():
        rest = rest.removesuffix(default)
    return f"{scheme}://{rest}"


def key_matches(presented: str | None, expected: str) -> bool:
    """Compared in constant time, so the answer's timing says nothing of the key."""
    if presented is None:
        return False
    return hmac.compare_digest(presented.encode("utf-8"), expected.encode("utf-8"))


class RateLimiter:
    """A token bucket per client: ``per_minute`` requests a minute, bursts of as many.
    Thread-safe; past MAX_CLIENTS it forgets the clients whose bucket has refilled, then the
    longest idle ones, so memory stays bounded however many addresses ask."""

    MAX_CLIENTS = 10_000

    def __init__(self, per_minute: float, clock=time.monotonic) -> None:
        self.rate = per_minute / 60.0  # tokens per second
        self.burst = max(per_minute, 1.0)
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, when)
        self._lock = threading.Lock()

    def take(self, client: str) -> float:
        """0 when ``client`` may go ahead now (a token is taken), else the seconds to wait."""
        if self.rate <= 0:
            return float("inf")
        now = self.clock()
        with self._lock:
            tokens, when = self._buckets.get(client, (self.burst, now))
            tokens = min(self.burst, tokens + (now - when) * self.rate)
            if tokens < 1.0:
                self._buckets[client] = (tokens, now)
                return (1.0 - tokens) / self.rate
            self._buckets[client] = (tokens - 1.0, now)
            if len(self._buckets) > self.MAX_CLIENTS:
                self._forget_full(now)
            return 0.0

    def _forget_full(self, now: float) -> None:
        for client, (tokens, when) in list(self._buckets.items()):
            if tokens + (now - when) * self.rate >= self.burst:
                del self._buckets[client]
        if len(self._buckets) > self.MAX_CLIENTS // 2:
            by_age = sorted(self._buckets, key=lambda c: self._buckets[c][1])
            for client in by_age[: len(by_age) - self.MAX_CLIENTS // 2]:
                del self._buckets[client]


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


def release_free_memory() -> bool:
    """Hand the memory the C allocator holds free back to the system (glibc's
    ``malloc_trim``); False where there is no such call.

    Why: requests decode and embed audio in many threads, and glibc keeps the freed blocks
    of each thread's arena. Measured on the server at concurrency 16, resident memory grew
    ~0.8 KiB a request without it and came back to its start after a trim (nothing leaked:
    the Python heap stayed flat)."""
    libc = _libc()
    return bool(libc.malloc_trim(0)) if libc is not None else False


@dataclass(frozen=True)
class Encoder:
    model: VoiceModel  # whatever verification.load_encoder returns
    id: str  # what galleries record, see verification.model_id
    engine_head: EngineHead | None = None  # the shipped engine head, when it reads this model


def query_names(dependant) -> set[str]:
    """The query parameters a route's handler and its dependencies declare."""
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= query_names(sub)
    return names


def _form_field_refused(request: Request, name: str) -> HTTPProblem:
    """422 for a form field other than ``file``: it was ignored, as a query parameter a route
    does not take once was (``-F channel=2`` answered for the channels mixed: a review)."""
    dependant = getattr(request.scope.get("route"), "dependant", None)
    taken = query_names(dependant) if dependant is not None else set()
    name = name[:50]
    hint = (
        f"give it in the URL (?{name}=...)" if name in taken
        else "the form takes its audio as 'file' alone; settings go in the URL"
    )  # fmt: skip
    return HTTPProblem(422, "invalid", f"the form's field {name!r} is not taken: {hint}")


class Service:
    """What the routes share. The classifier is loaded by ``create_app``; the encoder on first
    use (once per worker process); the gallery is opened per request."""

    def __init__(self, cfg: ServeConfig, model: VoiceModel | None) -> None:
        self.cfg = cfg
        self.model = model
        self.gallery_path = Path(cfg.gallery) if cfg.gallery else default_gallery_path()
        self._encoder: Encoder | None = None
        self._encoder_lock = threading.Lock()
        # lent to the request threads, at most one per core an engine (synthesis is CPU
        # bound; more would only hold more engine processes)
        self.sessions = SessionPool(shared=_sessions_an_engine())
        self.synth_limiter = RateLimiter(cfg.synth_per_minute)
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "whichvoice_requests",
            "HTTP requests",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "whichvoice_request_seconds",
            "Request latency",
            ["route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.errors = Counter(
            "whichvoice_errors", "Errors answered, by kind", ["kind"], registry=self.registry
        )
        self.batches = Counter(
            "whichvoice_batches",
            "Calls of the classifier's network (micro-batching: one call scores many requests)",
            registry=self.registry,
        )
        self.batched = Counter(
            "whichvoice_batched_requests",
            "Requests the classifier's network scored, counted once per batch",
            registry=self.registry,
        )
        self.batcher = (
            MicroBatcher(
                model.input_scores, wait_s=cfg.batch_wait_ms / 1000, on_batch=self._count_batch
            )
            if model is not None and cfg.batching
            else None
        )
        # the open set's encoder (one window a request) is batched the same way, on a
        # scoring thread of its own
        self.probe_batcher = (
            MicroBatcher(
                lambda inputs: model.probe_encoder().input_embeddings(inputs),
                wait_s=cfg.batch_wait_ms / 1000,
            )
            if self.batcher is not None and model.reads_encoder
            else None
        )

    def _count_batch(self, requests: int) -> None:
        self.batches.inc()
        self.batched.inc(requests)

    def classifier(self) -> VoiceModel:
        """The closed-set classifier; 503 when the server was started with --no-classifier."""
        if self.model is None:
            raise HTTPProblem(
                503,
                "no_classifier",
                "this server has no classifier (started with --no-classifier): "
                "POST /v1/identify answers from the enrolled voices",
            )
        return self.model

    def load_encoder(self) -> Encoder:
        """The encoder, loaded once; raises WhichvoiceError when it cannot be."""
        with self._encoder_lock:
            if self._encoder is None:
                model = gallery_encoder(self.cfg.encoder, self.gallery_path)
                self._encoder = Encoder(model, model_id(model), head_for(model))
            return self._encoder

    def encoder(self) -> Encoder:
        """``load_encoder`` for a route: 503 when there is no usable encoder."""
        try:
            return self.load_encoder()
        except WhichvoiceError as e:
            log.error("no voice encoder: %s", e)  # the detail names the server's files
            why = f": {e.public}" if e.public else ""
            raise HTTPProblem(503, "no_encoder", f"no voice encoder on this server{why}") from e

    @contextmanager
    def gallery(self, *, create: bool = False) -> Iterator[tuple[Encoder, Gallery]]:
        """The encoder and the gallery, opened for one request (the file is made only when
        ``create``: reading a gallery that does not exist reads an empty one). A SQLite
        connection belongs to the thread that opened it, so call this inside the request's
        worker thread."""
        encoder = self.encoder()
        with Gallery(self.gallery_path, encoder.id, create=create) as g:
            yield encoder, g

    async def body(self, request: Request, limit: int | None = None) -> bytes:
        """The request body, refused with 413 as soon as it passes ``limit`` (None: the
        upload limit)."""
        limit = min(self.cfg.max_bytes, limit or self.cfg.max_bytes)
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and (len(declared) > 18 or int(declared) > limit):
            raise HTTPProblem(413, "too_large", _over(limit))
        chunks, size = [], 0
        stream = request.stream().__aiter__()
        wait = self.cfg.upload_timeout_s
        while True:
            try:
                # a client that stops sending would otherwise hold its connection, and a
                # worker's attention, for ever
                chunk = await asyncio.wait_for(stream.__anext__(), timeout=wait)
            except StopAsyncIteration:
                break
            except TimeoutError:
                raise HTTPProblem(
                    408, "timeout", f"the upload sent nothing for {wait:g} s: send it whole"
                ) from None
            size += len(chunk)
            if size > limit:
                raise HTTPProblem(413, "too_large", _over(limit))
            chunks.append(chunk)
        return b"".join(chunks)

    async def uploads(self, request: Request, *, many: bool) -> list[tuple[str, bytes]]:
        """(file name, bytes) of the audio sent: multipart field ``file`` (every one when
        ``many``, else exactly one: 422 for more) or the raw body of any audio type. 413 over
        the upload limit (the whole request), 415 when not audio (the body, or the one file
        when not ``many``: of several, each file's bytes say), 422 without a file."""
        media = media_type(request)
        if is_audio_type(media):
            return [(RAW_NAME, await self.body(request))]
        if media != "multipart/form-data":
            raise HTTPProblem(
                415,
                "unsupported_type",
                f"{named_type(media)} is not audio: send a file or an audio/* body",
            )
        body = await self.body(request)  # the limit holds however the form is sent
        boundary = re.search(r'boundary="?([^";]+)', request.headers.get("content-type", ""))
        if boundary and b"--" + boundary.group(1).strip().encode("latin-1") + b"--" not in body:
            # the form's parser drops a part cut off before its end without a word
            raise HTTPProblem(
                422, "bad_request", "the form is cut off (no closing boundary): send it whole"
            )

        async def receive() -> dict:
            return {"type": "http.request", "body": body, "more_body": False}

        form = await Request(request.scope, receive).form()
        try:
            if others := sorted(k for k in form if k != "file"):
                raise _form_field_refused(request, others[0])
            fields = form.getlist("file")
            files = [f for f in fields if not isinstance(f, str)]
            if not files and fields:  # curl -F "file=<clip.mp3" sends the bytes as text
                raise HTTPProblem(
                    422,
                    "invalid",
                    "the form's field 'file' is text, not a file: send it as a file "
                    "(a filename in its part: curl -F file=@clip.mp3)",
                )
            if not files:
                raise HTTPProblem(422, "invalid", "the form has no file field named 'file'")
            if not many and len(files) > 1:
                raise HTTPProblem(
                    422, "invalid", f"one file a request here, and the form has {len(files)}"
                )
            out = []
            for upload in files if many else files[:1]:
                name = upload.filename or "the file"
                # of several files, each is judged by its bytes (a text part is that file's
                # error, as an undecodable one is); one file declared as text is refused
                declared = (upload.content_type or "").split(";")[0].strip().lower()
                if not many and declared and not is_audio_type(declared):
                    raise HTTPProblem(
                        415, "unsupported_type", f"{name}: {upload.content_type} is not audio"
                    )
                out.append((name, await upload.read()))
            return out
        finally:
            await form.close()

    def decode(
        self,
        data: bytes,
        name: str = RAW_NAME,
        *,
        judged: bool = True,
        channel: int | None = None,
    ) -> Decoded:
        """The upload decoded once, for every later step (float32 mono at its own rate, its
        ``channel`` alone where one is asked for; named ``name`` in errors); 413 over the
        duration limit, 422 if not usable: silent, and when it is to be ``judged`` (one
        voice's clip, not a recording to diarize) a steady sound too
        (``audio.check_judgeable``); 422 ``invalid`` for a channel it does not have."""
        if not data:
            # as the command line says of an empty file
            empty = "the body is empty" if name == RAW_NAME else "not audio (an empty file)"
            raise HTTPProblem(422, "empty", f"{name}: {empty}")
        try:
            wave, rate = read_audio(
                data, max_seconds=self.cfg.max_seconds, name=name, channel=channel
            )
            (check_judgeable if judged else check_not_silent)(wave, rate, name)
        except AudioTooLongError as e:
            raise HTTPProblem(
                413, "too_long", f"{name}: over the {self.cfg.max_seconds:g} s limit"
            ) from e
        except NoSuchChannelError as e:
            raise HTTPProblem(422, "invalid", str(e)) from e
        except (AudioDecodeError, SilentAudioError) as e:
            kind = "silent" if isinstance(e, SilentAudioError) else "undecodable"
            raise HTTPProblem(422, kind, str(e)) from e
        return Decoded(wave, rate, name)

    def decode_all(
        self, files: list[tuple[str, bytes]], channel: int | None = None
    ) -> list[Decoded | str]:
        """Each file decoded (its ``channel`` alone, where one is asked for), or why it cannot
        be used (not audio, empty, silent, no such channel), in the order sent. Over the
        duration limit is still a 413 for the whole request, and so are files that hold
        more than ``REQUEST_FILES_SECONDS`` times the limit together: they are held decoded
        at once (40 small FLACs of 10 minutes of silence took 2.3 GB: fuzzing)."""
        out: list[Decoded | str] = []
        total, limit = 0.0, REQUEST_FILES_SECONDS * self.cfg.max_seconds
        for name, data in files:
            try:
                out.append(self.decode(data, name, channel=channel))
            except HTTPProblem as e:
                if e.status == 413:
                    raise
                out.append(e.message)
                continue
            total += out[-1].wave.shape[0] / out[-1].rate
            if total > limit:
                raise HTTPProblem(
                    413,
                    "too_long",
                    f"the files hold over {limit:g} s of audio together ({len(out)} of "
                    f"{len(files)} read): send fewer at a time",
                )
        return out

    def identify(self, data: bytes, name: str = RAW_NAME) -> Prediction:
        return self.classify(self.decode(data, name))

    def classify(self, audio: Decoded) -> Prediction:
        """The classifier's answer for a decoded upload; its windows are scored with the
        other requests' in flight (micro-batching) unless the server was told not to."""
        model, batcher, probes = self.classifier(), self.batcher, self.probe_batcher
        # the log-mels are made on the request's thread, the networks run in the batches
        score = batcher.score if batcher is not None else None
        embed = probes.score if probes is not None else None
        return model.identify_clip(audio, score=score, embed=embed)


def get_service(request: Request) -> Service:
    """What the routes share, set on the app by ``create_app``."""
    return request.app.state.service


def get_classifier(request: Request) -> VoiceModel:
    """The closed-set classifier; 503 ``no_classifier`` when the server has none."""
    return get_service(request).classifier()


ServiceDep = Annotated[Service, Depends(get_service)]
ClassifierDep = Annotated[VoiceModel, Depends(get_classifier)]

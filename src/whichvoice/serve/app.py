"""FastAPI app: the talk's ``/invocations``, the ``/v1`` JSON API, metrics and the web page.

``create_app(ServeConfig(run=...))`` loads the model once; ``whichvoice serve`` runs it under
uvicorn (one model per worker process). Inference and synthesis run in worker threads, off
the event loop. Bad input always gets a 4xx with ``{"error", "kind"}``, never a 500.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from starlette.concurrency import run_in_threadpool

from whichvoice import __version__
from whichvoice.audio import check_not_silent, read_audio, resample
from whichvoice.corpus import speak
from whichvoice.errors import AudioDecodeError, SilentAudioError, UnknownVoiceError, WhichvoiceError
from whichvoice.predict import Prediction, VoiceModel, load_model
from whichvoice.serve.schemas import IdentifyResponse, SynthesizeRequest, VoicesResponse
from whichvoice.voices import SessionPool, all_voices, find_voice, get_engine, resolve_voices

STATIC = Path(__file__).parent / "static"
DEFAULT_MAX_BYTES = 20 * 1024 * 1024  # bytes of one request body
DEFAULT_MAX_SECONDS = 600.0  # s of audio in one request
ENV_CONFIG = "WHICHVOICE_SERVE_CONFIG"  # how `whichvoice serve` hands the config to workers
OPEN_PATHS = ("/healthz", "/static/", "/favicon.ico")  # no API key needed
_AUDIO_BODY = {
    "content": {
        "audio/mpeg": {"schema": {"type": "string", "format": "binary"}},
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {"file": {"type": "string", "format": "binary"}},
            }
        },
    }
}


@dataclass(frozen=True)
class ServeConfig:
    run: str
    api_key: str | None = None
    max_bytes: int = DEFAULT_MAX_BYTES
    max_seconds: float = DEFAULT_MAX_SECONDS

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServeConfig:
        return cls(**json.loads(text))


class HTTPProblem(Exception):
    """An error answered as ``{"error", "kind"}`` with its status."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


class _Service:
    """What the routes share: the model, limits, metrics, a pool of TTS sessions."""

    def __init__(self, cfg: ServeConfig, model: VoiceModel) -> None:
        self.cfg = cfg
        self.model = model
        self.sessions = SessionPool()
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

    async def body(self, request: Request) -> bytes:
        """The request body, refused with 413 as soon as it passes the upload limit."""
        limit = self.cfg.max_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise HTTPProblem(413, "too_large", f"the upload is over the {limit} byte limit")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise HTTPProblem(413, "too_large", f"the upload is over the {limit} byte limit")
            chunks.append(chunk)
        return b"".join(chunks)

    def decode(self, data: bytes, name: str = "the audio") -> tuple[np.ndarray, int]:
        """Decoded float32 mono and its rate; 413 over the duration limit, 422 if not usable."""
        if not data:
            raise HTTPProblem(422, "empty", f"{name}: the body is empty")
        try:
            info = sf.info(io.BytesIO(data))
        except Exception as e:
            raise HTTPProblem(
                422, "undecodable", f"{name}: not a decodable audio file ({e})"
            ) from e
        if info.duration > self.cfg.max_seconds:
            raise HTTPProblem(
                413,
                "too_long",
                f"{name}: {info.duration:.0f} s of audio is over the "
                f"{self.cfg.max_seconds:.0f} s limit",
            )
        try:
            wave, rate = read_audio(data)
            check_not_silent(wave, rate, name)
        except (AudioDecodeError, SilentAudioError) as e:
            kind = "silent" if isinstance(e, SilentAudioError) else "undecodable"
            raise HTTPProblem(422, kind, str(e).replace(f"<{len(data)} bytes>", name)) from e
        if wave.shape[0] / rate > self.cfg.max_seconds:  # the header may understate it
            raise HTTPProblem(
                413, "too_long", f"{name}: over the {self.cfg.max_seconds:.0f} s limit"
            )
        return wave, rate

    def identify(
        self, data: bytes, name: str = "the audio"
    ) -> tuple[Prediction, float, np.ndarray, int]:
        wave, rate = self.decode(data, name)
        return self.model.identify_wave(wave, rate, name), wave.shape[0] / rate, wave, rate


def _maybe_base64(body: bytes) -> bytes:
    """The talk posted base64 text; raw audio bytes are accepted too."""
    text = body.strip()
    if not text:
        return b""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return body


def spectrogram_png(wave: np.ndarray, rate: int) -> bytes:
    """A log-mel picture of what was sent, as PNG bytes (for the page)."""
    import torch
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from whichvoice.features import FeatureConfig, LogMel

    wave16 = resample(wave, rate, 16_000)[: 16_000 * 30]
    with torch.inference_mode():
        mel = LogMel(FeatureConfig())(torch.from_numpy(wave16)[None])[0].numpy()
    fig = Figure(figsize=(6, 1.8), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.axis("off")
    ax.imshow(mel, origin="lower", aspect="auto", cmap="magma", vmin=mel.max() - 12, vmax=mel.max())
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def create_app(cfg: ServeConfig, model: VoiceModel | None = None) -> FastAPI:
    """The app for one model; ``model`` may be given when it is already loaded."""
    import torch

    service = _Service(cfg, model or load_model(cfg.run))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        service.sessions.close()

    app = FastAPI(
        title="whichvoice",
        version=__version__,
        lifespan=lifespan,
        description="Which voice is speaking: the talk's endpoint and a JSON API.",
    )
    app.state.service = service
    workers = int(os.environ.get("WHICHVOICE_WORKERS", "1"))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(workers, 1)))

    @app.exception_handler(HTTPProblem)
    async def _problem(request: Request, exc: HTTPProblem) -> JSONResponse:
        service.errors.labels(exc.kind).inc()
        return JSONResponse({"error": exc.message, "kind": exc.kind}, status_code=exc.status)

    @app.exception_handler(WhichvoiceError)
    async def _known(request: Request, exc: WhichvoiceError) -> JSONResponse:
        service.errors.labels("bad_request").inc()
        return JSONResponse({"error": str(exc), "kind": "bad_request"}, status_code=422)

    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException as StarletteHTTPException

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {404: "not_found", 405: "method_not_allowed", 400: "bad_request"}.get(
            exc.status_code, "http"
        )
        service.errors.labels(kind).inc()
        return JSONResponse(
            {"error": str(exc.detail), "kind": kind},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        service.errors.labels("invalid").inc()
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()) if x != "body")
        message = (
            f"{where}: {first.get('msg', 'invalid request')}"
            if where
            else first.get("msg", "invalid")
        )
        return JSONResponse({"error": message, "kind": "invalid"}, status_code=422)

    @app.middleware("http")
    async def _guard_and_measure(request: Request, call_next):
        t0 = time.perf_counter()
        path = request.url.path
        if (
            cfg.api_key
            and path != "/"
            and not path.startswith(OPEN_PATHS)
            and request.headers.get("x-api-key") != cfg.api_key
        ):
            service.errors.labels("unauthorized").inc()
            response = JSONResponse(
                {"error": "missing or wrong X-API-Key header", "kind": "unauthorized"},
                status_code=401,
            )
        else:
            try:
                response = await call_next(request)
            except Exception as e:  # the last line of defence: still JSON, still counted
                service.errors.labels("internal").inc()
                response = JSONResponse(
                    {"error": f"internal error: {type(e).__name__}", "kind": "internal"},
                    status_code=500,
                )
        route = request.scope.get("route")
        label = getattr(route, "path", "other")
        service.requests.labels(label, request.method, str(response.status_code)).inc()
        service.latency.labels(label).observe(time.perf_counter() - t0)
        return response

    @app.post(
        "/invocations",
        summary="The talk's endpoint",
        openapi_extra={
            "requestBody": {
                "content": {
                    "audio/mpeg": {
                        "schema": {"type": "string", "description": "base64 mp3 (or raw audio)"}
                    },
                    "application/json": {"schema": {"type": "array", "items": {"type": "string"}}},
                }
            }
        },
    )
    async def invocations(request: Request) -> JSONResponse:
        """`audio/mp3` or `audio/mpeg` body of base64 mp3 -> `"Joanna"`; a JSON list of base64
        mp3s -> a list of names. Raw audio bodies (any `audio/*`) are accepted too."""
        media = _media_type(request)
        body = await service.body(request)
        if media == "application/json":
            try:
                items = json.loads(body)
            except ValueError as e:
                raise HTTPProblem(422, "invalid", f"the body is not JSON ({e})") from e
            if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
                raise HTTPProblem(
                    422, "invalid", "expected a JSON list of base64-encoded audio strings"
                )
            datas = []
            for n, item in enumerate(items):
                try:
                    datas.append(base64.b64decode(item, validate=True))
                except (binascii.Error, ValueError) as e:
                    raise HTTPProblem(422, "invalid", f"item {n}: not base64 ({e})") from e
            preds = await run_in_threadpool(
                lambda: [service.identify(d, f"item {n}")[0] for n, d in enumerate(datas)]
            )
            return JSONResponse([service.model.display_name(p.voice) for p in preds])
        if media.startswith("audio/") or media == "application/octet-stream":
            pred = (await run_in_threadpool(service.identify, _maybe_base64(body)))[0]
            return JSONResponse(service.model.display_name(pred.voice))
        raise HTTPProblem(
            415,
            "unsupported_type",
            f"content type {media or 'none'!r} is not audio: send audio/mpeg or application/json",
        )

    @app.post(
        "/v1/identify",
        response_model=IdentifyResponse,
        summary="Which voice is this?",
        openapi_extra={"requestBody": _AUDIO_BODY},
    )
    async def identify(request: Request, spectrogram: bool = False) -> IdentifyResponse:
        """One file, as multipart field `file` or as the raw body (any audio type)."""
        media = _media_type(request)
        if media == "multipart/form-data":
            declared = request.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > cfg.max_bytes:
                raise HTTPProblem(
                    413, "too_large", f"the upload is over the {cfg.max_bytes} byte limit"
                )
            form = await request.form()
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise HTTPProblem(422, "invalid", "the form has no file field named 'file'")
            data = await upload.read()
            if len(data) > cfg.max_bytes:
                raise HTTPProblem(
                    413, "too_large", f"the upload is over the {cfg.max_bytes} byte limit"
                )
            if upload.content_type and not upload.content_type.startswith(
                ("audio/", "video/", "application/")
            ):
                raise HTTPProblem(
                    415,
                    "unsupported_type",
                    f"{upload.filename}: {upload.content_type} is not audio",
                )
            name = upload.filename or "the file"
        elif media.startswith(("audio/", "video/")) or media == "application/octet-stream":
            data, name = await service.body(request), "the audio"
        else:
            raise HTTPProblem(
                415,
                "unsupported_type",
                f"content type {media or 'none'!r} is not audio: send a file or an audio/* body",
            )

        def work() -> IdentifyResponse:
            pred, seconds, wave, rate = service.identify(data, name)
            png = spectrogram_png(wave, rate) if spectrogram else None
            return IdentifyResponse(
                voice=pred.voice,
                name=service.model.display_name(pred.voice),
                confidence=pred.confidence,
                probabilities=pred.probabilities,
                top=[{"voice": v, "p": p} for v, p in pred.top],
                duration_s=round(seconds, 3),
                windows=pred.windows,
                speech_s=pred.speech_s,
                spectrogram_png=("data:image/png;base64," + base64.b64encode(png).decode())
                if png
                else None,
            )

        return await run_in_threadpool(work)

    @app.post(
        "/v1/synthesize",
        summary="Speak a phrase with a local voice",
        responses={200: {"content": {"audio/mpeg": {}}}},
    )
    async def synthesize(req: SynthesizeRequest) -> Response:
        """`{"text", "voice"}` -> the clip as mp3."""
        try:
            voice = find_voice(req.voice)
        except UnknownVoiceError as e:
            raise HTTPProblem(422, "unknown_voice", str(e)) from e
        reason = get_engine(voice.engine).voice_unavailable_reason(voice)
        if reason:
            raise HTTPProblem(422, "unavailable_voice", f"{voice.id}: {reason}")
        data, _ = await run_in_threadpool(speak, service.sessions, voice, req.text, "mp3")
        return Response(
            data,
            media_type="audio/mpeg",
            headers={"Content-Disposition": 'inline; filename="whichvoice.mp3"'},
        )

    @app.get(
        "/v1/voices",
        response_model=VoicesResponse,
        summary="What the model knows and what can be synthesized",
    )
    async def voices() -> VoicesResponse:
        def listing() -> VoicesResponse:
            first = [v.id for v in resolve_voices("default8")]
            usable = [
                v for v in all_voices() if v.engine != "polly" or v.id in service.model.labels
            ]
            usable = [v for v in usable if get_engine(v.engine).voice_unavailable_reason(v) is None]
            usable.sort(key=lambda v: (v.id not in service.model.labels, v.id not in first, v.id))
            return VoicesResponse(
                model=service.model.config["model"],
                labels=service.model.labels,
                synthesis=[
                    {"id": v.id, "engine": v.engine, "gender": v.gender, "accent": v.accent}
                    for v in usable
                ],
            )

        return await run_in_threadpool(listing)

    @app.get("/healthz", summary="Liveness")
    async def healthz() -> dict:
        return {
            "status": "ok",
            "model": service.model.config["model"],
            "voices": len(service.model.labels),
            "version": __version__,
        }

    @app.get("/metrics", summary="Prometheus metrics")
    async def metrics() -> Response:
        return Response(generate_latest(service.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    return app


def app_from_env() -> FastAPI:
    """The uvicorn factory used by ``whichvoice serve`` (config in $WHICHVOICE_SERVE_CONFIG)."""
    return create_app(ServeConfig.from_json(os.environ[ENV_CONFIG]))

"""FastAPI app: the talk's ``/invocations``, the ``/v1`` JSON API, metrics and the web page.

``create_app(ServeConfig(run=...))`` loads the classifier once; ``whichvoice serve`` runs it
under uvicorn (one model per worker process). The voice encoder of the enrollment routes
(``enrollment.py``) loads on first use. Inference and synthesis run in worker threads, off
the event loop. Bad input always gets a 4xx with ``{"error", "kind"}``, never a 500.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import io
import json
import os
import time
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from whichvoice import __version__
from whichvoice.audio import resample
from whichvoice.corpus import speak
from whichvoice.errors import UnknownVoiceError, WhichvoiceError
from whichvoice.gallery import GalleryError, GalleryModelError, NotEnrolledError
from whichvoice.runtime import VoiceModel, load_model
from whichvoice.serve import enrollment
from whichvoice.serve.schemas import IdentifyResponse, SynthesizeRequest, VoicesResponse
from whichvoice.serve.service import (
    TRIM_EVERY_S,
    HTTPProblem,
    ServeConfig,
    Service,
    key_matches,
    media_type,
    presented_key,
    release_free_memory,
)
from whichvoice.voices import all_voices, find_voice, get_engine, resolve_voices

STATIC = Path(__file__).parent / "static"
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
# a gallery error's status and kind, most specific first
_GALLERY_ERRORS = (
    (NotEnrolledError, 404, "not_enrolled"),
    (GalleryModelError, 409, "model_mismatch"),
    (GalleryError, 422, "gallery"),
)


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
    """The app for one classifier (``cfg.run``; ``model`` may be given when it is already
    loaded) and one gallery. Without a classifier the encoder is loaded now: the app must be
    able to answer something."""
    import torch

    service = Service(cfg, model or (load_model(cfg.run) if cfg.run else None))
    if service.model is None:
        service.load_encoder()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        async def trim() -> None:
            while True:
                await asyncio.sleep(TRIM_EVERY_S)
                await run_in_threadpool(release_free_memory)

        trimmer = asyncio.create_task(trim())
        try:
            yield
        finally:
            trimmer.cancel()
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
        return JSONResponse(
            {"error": exc.message, "kind": exc.kind}, status_code=exc.status, headers=exc.headers
        )

    @app.exception_handler(WhichvoiceError)
    async def _known(request: Request, exc: WhichvoiceError) -> JSONResponse:
        status, kind = next(
            ((status, kind) for cls, status, kind in _GALLERY_ERRORS if isinstance(exc, cls)),
            (422, "bad_request"),
        )
        service.errors.labels(kind).inc()
        # a remote client reads only the public message: no server paths, no other voices
        return JSONResponse({"error": exc.public_message(), "kind": kind}, status_code=status)

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
            and not key_matches(presented_key(request), cfg.api_key)
        ):
            service.errors.labels("unauthorized").inc()
            response = JSONResponse(
                {
                    "error": "missing or wrong API key (X-API-Key or Authorization: Bearer)",
                    "kind": "unauthorized",
                },
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
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
        media = media_type(request)
        model = service.classifier()
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
                lambda: [service.identify(d, f"item {n}") for n, d in enumerate(datas)]
            )
            return JSONResponse([model.display_name(p.voice) for p in preds])
        if media.startswith("audio/") or media == "application/octet-stream":
            pred = await run_in_threadpool(service.identify, _maybe_base64(body))
            return JSONResponse(model.display_name(pred.voice))
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
        """One file, as multipart field `file` or as the raw body (any audio type). The
        classifier's answer and, when voices are enrolled, the gallery's (`gallery`); a server
        without a classifier answers from the gallery alone (409 when it is empty)."""
        ((name, data),) = await service.uploads(request, many=False)

        def work() -> IdentifyResponse:
            audio = service.decode(data, name)
            wave, rate = audio.wave, audio.rate
            png = spectrogram_png(wave, rate) if spectrogram else None
            picture = "data:image/png;base64," + base64.b64encode(png).decode() if png else None
            match = enrollment.gallery_answer(service, audio, required=service.model is None)
            common = {
                "duration_s": round(wave.shape[0] / rate, 3),
                "spectrogram_png": picture,
                "gallery": match,
            }
            if service.model is None:
                return IdentifyResponse(
                    voice=match.voice,
                    name=match.voice,
                    confidence=None,
                    probabilities={},
                    top=[],
                    windows=None,
                    speech_s=None,
                    **common,
                )
            pred = service.model.identify_wave(wave, rate, name)
            return IdentifyResponse(
                voice=pred.voice,
                name=service.model.display_name(pred.voice),
                confidence=pred.confidence,
                probabilities=pred.probabilities,
                top=[{"voice": v, "p": p} for v, p in pred.top],
                windows=pred.windows,
                speech_s=pred.speech_s,
                **common,
            )

        return await run_in_threadpool(work)

    @app.post(
        "/v1/synthesize",
        summary="Speak a phrase with a local voice",
        responses={200: {"content": {"audio/mpeg": {}}}},
    )
    async def synthesize(req: SynthesizeRequest, request: Request) -> Response:
        """`{"text", "voice"}` -> the clip as mp3. Each client may ask `--synth-per-minute`
        times a minute (429 past that); Amazon Polly voices only on a server started with
        `--allow-polly` (403 otherwise: Polly is billed to the server's AWS account)."""
        client = request.client.host if request.client else "unknown"
        wait = service.synth_limiter.take(client)
        if wait:
            retry = "3600" if wait == float("inf") else str(max(1, round(wait)))
            raise HTTPProblem(
                429, "rate_limited", f"too many synthesis requests: retry in {retry} s"
            ).with_headers({"Retry-After": retry})
        try:
            voice = find_voice(req.voice)
        except UnknownVoiceError as e:
            raise HTTPProblem(422, "unknown_voice", str(e)) from e
        if voice.engine == "polly" and not cfg.allow_polly:
            raise HTTPProblem(
                403,
                "polly_disabled",
                f"{voice.id}: Amazon Polly is not offered by this server (serve --allow-polly)",
            )
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
            labels = service.model.labels if service.model else []
            first = [v.id for v in resolve_voices("default8")]
            usable = [
                v
                for v in all_voices()
                if v.engine != "polly" or (cfg.allow_polly and v.id in labels)
            ]
            usable = [v for v in usable if get_engine(v.engine).voice_unavailable_reason(v) is None]
            usable.sort(key=lambda v: (v.id not in labels, v.id not in first, v.id))
            return VoicesResponse(
                model=service.model.config["model"] if service.model else None,
                labels=labels,
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
            "model": service.model.config["model"] if service.model else None,
            "voices": len(service.model.labels) if service.model else 0,
            "version": __version__,
        }

    enrollment.add_routes(app, service)

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

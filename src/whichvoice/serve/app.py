"""FastAPI app: the talk's ``/invocations``, the ``/v1`` JSON API, metrics and the web page.

``create_app(ServeConfig(run=...))`` loads the classifier once and assembles the routers, one
module per area: ``talk`` (/invocations), ``identify``, ``enrollment`` (enroll, verify, the
gallery), ``synthesis`` (synthesize, voices) and ``ops`` (healthz, metrics, the page). What they
share (the Service: config, models, gallery, limits, metrics) reaches them as a dependency
(``service.ServiceDep``). ``whichvoice serve`` runs the app under uvicorn, one model per
worker process. Inference and synthesis run in worker threads, off the event loop. Bad input
always gets a 4xx with ``{"error", "kind"}``, never a 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import errno
import logging
import os
import time

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect, HTTPConnection

from whichvoice import __version__
from whichvoice.errors import WhichvoiceError
from whichvoice.runtime import VoiceModel, load_model
from whichvoice.serve import diarization, enrollment, identify, ops, stream, synthesis, talk
from whichvoice.serve.docs import add_docs
from whichvoice.serve.ops import STATIC
from whichvoice.serve.schemas import ErrorResponse
from whichvoice.serve.service import (
    TRIM_EVERY_S,
    HTTPProblem,
    ServeConfig,
    Service,
    error_status,
    foreign_origin,
    key_matches,
    presented_key,
    query_names,
    release_free_memory,
    repeated_parameter,
)

log = logging.getLogger(__name__)
ENV_CONFIG = "WHICHVOICE_SERVE_CONFIG"  # how `whichvoice serve` hands the config to workers
OPEN_PATHS = ("/healthz", "/ping", "/favicon.ico")  # no API key needed (and "/", "/static/")


def open_path(path: str) -> bool:
    """Whether ``path`` is answered without the API key: those routes exactly (``/healthzX``
    is not ``/healthz``), and the page's files under ``/static/``."""
    return path in OPEN_PATHS or path.startswith("/static/")


# change nothing; another site's page cannot read their answers (no CORS headers are sent)
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def create_app(cfg: ServeConfig, model: VoiceModel | None = None) -> FastAPI:
    """The app for one classifier (``cfg.run``; ``model`` may be given when it is already
    loaded) and one gallery. Without a classifier the encoder is loaded now: the app must be
    able to answer something."""
    import torch

    workers = int(os.environ.get("WHICHVOICE_WORKERS", "1"))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(workers, 1)))
    if model is None and cfg.run:
        model = load_model(cfg.run, backend=cfg.backend).ready()  # no slow first request
    service = Service(cfg, model)
    if service.model is None:
        service.load_encoder()
    app = FastAPI(
        title="whichvoice",
        version=__version__,
        lifespan=_lifespan,
        dependencies=[Depends(_known_query)],
        description="Which voice is speaking: the talk's endpoint and a JSON API.",
        docs_url=None,  # served by whichvoice.serve.docs, with local assets
        redoc_url=None,
    )
    app.state.service = service
    app.add_exception_handler(HTTPProblem, _problem)
    app.add_exception_handler(WhichvoiceError, _known)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_middleware(GuardAndMeasure, service=service)
    for router in (
        talk.router, identify.router, synthesis.router, ops.router, enrollment.router,
        diarization.router, stream.router,
    ):  # fmt: skip
        app.include_router(router, responses=ERROR_RESPONSES)
    add_docs(app)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


# every route's errors, as the handlers above answer them (FastAPI's own 422 schema, a list
# of "detail"s, is not what this server sends)
ERROR_RESPONSES: dict = {
    "4XX": {
        "model": ErrorResponse,
        "description": "The request cannot be answered: why, and its kind",
    },
    "5XX": {"model": ErrorResponse, "description": "The server cannot answer now (e.g. 503)"},
}


def app_from_env() -> FastAPI:
    """The uvicorn factory used by ``whichvoice serve`` (config in $WHICHVOICE_SERVE_CONFIG)."""
    return create_app(ServeConfig.from_json(os.environ[ENV_CONFIG]))


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI):
    service: Service = app.state.service

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
        for batcher in (service.batcher, service.probe_batcher):
            if batcher is not None:
                batcher.close()


MAX_ERROR_CHARS = 500  # an error echoing a client's input (a name, a file name) is cut here


def _answer(request: Request, status: int, kind: str, message: str, headers=None) -> JSONResponse:
    request.app.state.service.errors.labels(kind).inc()
    if len(message) > MAX_ERROR_CHARS:
        message = message[: MAX_ERROR_CHARS - 3] + "..."
    return JSONResponse({"error": message, "kind": kind}, status_code=status, headers=headers)


async def _problem(request: Request, exc: HTTPProblem) -> JSONResponse:
    return _answer(request, exc.status, exc.kind, exc.message, exc.headers)


async def _known(request: Request, exc: WhichvoiceError) -> JSONResponse:
    status, kind = error_status(exc)
    if status >= 500:  # the server's fault: its operator needs the whole message
        log.error("%s %s: %s", request.method, request.url.path, exc)
    # a remote client reads only the public message: no server paths, no other voices
    return _answer(request, status, kind, exc.public_message())


async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    # the framework's 400s (a multipart body without its boundary, too many parts, a JSON
    # body that does not parse) are malformed requests: 422, as every other one
    status = 422 if exc.status_code == 400 else exc.status_code
    kind = {404: "not_found", 405: "method_not_allowed", 422: "bad_request"}.get(status, "http")
    return _answer(request, status, kind, str(exc.detail), getattr(exc, "headers", None))


def _known_query(connection: HTTPConnection) -> None:
    """A query parameter the route does not take is refused (422 ``invalid``), not ignored:
    ``/v1/diarize?num_speaker=2`` diarized with no count asked (a review)."""
    if connection.scope["type"] != "http" or not connection.query_params:
        return
    path = connection.scope["path"]
    if not (path.startswith("/v1/") or path == "/invocations") or path == "/v1/stream":
        # the page, /healthz, the docs: a link's tracking tag or a probe's is harmless; the
        # live stream's address over plain HTTP answers 426 whatever its query (its
        # WebSocket checks its own, rate and key)
        return
    route = connection.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    taken = getattr(route, "whichvoice_query", None)
    if taken is None:  # once a route: its declared parameters do not change
        taken = query_names(dependant)
        route.whichvoice_query = taken
    unknown = sorted(set(connection.query_params) - taken)
    if not unknown:
        return
    name = unknown[0][:50]
    near = difflib.get_close_matches(name, sorted(taken), n=1)
    hint = (
        f"did you mean {near[0]!r}?" if near
        else f"it takes {', '.join(sorted(taken))}" if taken else "it takes none"
    )  # fmt: skip
    raise HTTPProblem(422, "invalid", f"{name!r}: not a query parameter here; {hint}")


async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(x) for x in first.get("loc", ()) if x != "body")
    message = first.get("msg", "invalid request")
    # pydantic prefixes a validator's own words with its kind of error
    message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return _answer(request, 422, "invalid", f"{where}: {message}" if where else message)


class GuardAndMeasure:
    """The API key, checked here rather than as a route dependency so that it also guards
    /docs, /openapi.json and unknown paths; then the request counted and timed.

    A plain ASGI middleware: Starlette's ``BaseHTTPMiddleware`` (``app.middleware("http")``)
    runs every request through an extra task and memory streams, which cost about a
    millisecond of CPU a request here."""

    def __init__(self, app, service: Service) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        service = self.service
        t0 = time.perf_counter()
        path = scope["path"]
        status = 500
        started = False

        async def measured_send(message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
            await send(message)

        inner = scope  # what the app is given (the router names its route in it)
        headers = Headers(scope=scope)
        if scope["method"] not in SAFE_METHODS and (
            origin := foreign_origin(headers, service.cfg.allow_origins)
        ):
            message = (
                f"a request from another site's page ({origin}) is refused; "
                "serve --allow-origin ORIGIN lets that site's pages in"
            )
            response = _answer(Request(scope), 403, "cross_origin", message)
            await response(scope, receive, measured_send)
        elif (
            service.cfg.api_key
            and path != "/"
            and not open_path(path)
            and not key_matches(presented_key(Request(scope)), service.cfg.api_key)
        ):
            response = _answer(
                Request(scope),
                401,
                "unauthorized",
                "missing or wrong API key (X-API-Key or Authorization: Bearer)",
                {"WWW-Authenticate": "Bearer"},
            )
            await response(scope, receive, measured_send)
        elif scope.get("query_string") and (twice := repeated_parameter(scope["query_string"])):
            message = f"{twice}: a query parameter given more than once; send it once"
            response = _answer(Request(scope), 422, "invalid", message)
            await response(scope, receive, measured_send)
        else:
            # HEAD is answered as GET would be, without the body (uvicorn drops it, reading
            # its own scope): every page and GET route answers a probe's or a link checker's
            # HEAD, not 405
            inner = {**scope, "method": "GET"} if scope["method"] == "HEAD" else scope
            try:
                await self.app(inner, receive, measured_send)
            except ClientDisconnect:
                # the client hung up before its request was read: no one to answer, and no
                # bug (nginx's 499, "client closed request", in the request counts)
                status = 499
                log.info("%s %s: the client went away before sending its whole request",
                         scope["method"], path)  # fmt: skip
            except Exception as e:  # the last line of defence: still JSON, still counted
                if started:
                    raise
                if isinstance(e, OSError) and e.errno in (errno.EMFILE, errno.ENFILE):
                    # the process out of open files (ulimit -n): the server's state, not a
                    # bug, and gone once other requests end (it was a 500: a review)
                    log.warning("%s %s: out of open files (%s): raise `ulimit -n`",
                                scope["method"], path, e)  # fmt: skip
                    await _answer(Request(scope), 503, "busy",
                                  "the server is out of open files; try again")(
                        scope, receive, measured_send
                    )  # fmt: skip
                else:
                    # the client gets the error's kind; the log gets the whole story
                    log.exception("internal error on %s %s", scope["method"], path)
                    message = f"internal error: {type(e).__name__}"
                    await _answer(Request(scope), 500, "internal", message)(
                        scope, receive, measured_send
                    )
        label = getattr(inner.get("route"), "path", "other")
        service.requests.labels(label, scope["method"], str(status)).inc()
        service.latency.labels(label).observe(time.perf_counter() - t0)

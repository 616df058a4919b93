"""The serve command: the HTTP service and its page."""

from __future__ import annotations

import contextlib
import socket
import sys
from pathlib import Path

import click
from click.core import ParameterSource

from whichvoice.cli.common import (
    FiniteRange,
    app,
    gallery_option,
)
from whichvoice.errors import OutputError, WhichvoiceError

# several workers listen on sockets of their own, bound to one port (SO_REUSEPORT), and the
# kernel spreads new connections over them. Sharing one listening socket (uvicorn's way),
# whichever worker woke first accepted a burst of connections and kept them (keep-alive): at
# concurrency 8 one of 2 workers often did all the work (measured at stop 41)
REUSEPORT = hasattr(socket, "SO_REUSEPORT") and sys.platform.startswith("linux")
BACKLOG = 2048


def _set_options(sock: socket.socket, *, reuseport: bool) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuseport:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        # answers leave at once: accepted connections inherit it. Without it an answer's
        # body waited for the client's delayed ACK of its headers, ~45 ms a request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _PortSocket(socket.socket):
    """The port of several workers, bound (not listening) in the parent: a worker process
    receives it as a listening socket of its own on that port (see REUSEPORT)."""

    def __reduce__(self):
        return (_listening_twin, (self.family, self.getsockname()))


def _listening_twin(family: int, address: tuple) -> socket.socket:
    """In a worker: a socket on the parent's port, beside the other workers'. Bound only:
    uvicorn makes it listen once the worker's app has loaded, so the kernel sends a starting
    (or restarted) worker no connection before it can answer."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    _set_options(sock, reuseport=True)
    sock.bind(address)
    return sock


def _free_address(family: int, address: tuple) -> tuple:
    """``address`` (port 0: with a free port), once a probe without SO_REUSEPORT could bind
    it: sockets with SO_REUSEPORT would otherwise share a port another server listens on
    (another model, another gallery) instead of being refused. OSError when it is taken."""
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(address)
        return probe.getsockname()


def _listen(host: str, port: int, workers: int = 1, *, listen: bool = True):
    """The server's socket, bound here (port 0: any free port), so the port is known before
    the workers start and no other process can take it meanwhile. One worker: it listens
    here (``listen``), or later (``_start_listening``, once the models have loaded: until
    then a connection is refused rather than left unanswered; the port is held all the
    same, its SO_REUSEADDR off while it only is bound, since two sockets with it on may bind
    one port until either listens). Several (on Linux): each listens on its own socket on
    this port, once it has started."""
    several = workers > 1 and REUSEPORT
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        sock = (_PortSocket if several else socket.socket)(infos[0][0], socket.SOCK_STREAM)
    except OSError as e:
        raise WhichvoiceError(f"cannot listen on {host}:{port} ({e.strerror or e})") from e
    try:
        address = _free_address(infos[0][0], infos[0][4]) if several else infos[0][4]
        _set_options(sock, reuseport=several)
        sock.bind(address)
        if not several:  # held: another socket with SO_REUSEADDR on cannot bind it too
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 0)
        if listen:
            _start_listening(sock, workers)
    except OSError as e:
        sock.close()
        raise WhichvoiceError(f"cannot listen on {host}:{port} ({e.strerror or e})") from e
    return sock


def _start_listening(sock: socket.socket, workers: int) -> None:
    """One worker: the bound socket takes connections from now on (several workers listen
    each on its own, once started)."""
    if not (workers > 1 and REUSEPORT):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.listen(BACKLOG)
        sock.set_inheritable(True)  # the worker processes serve it


@app.command("serve")
@click.argument("run", required=False, type=click.Path(path_type=Path))
@click.option(
    "--no-classifier",
    is_flag=True,
    help="Serve no classifier: /v1/identify answers from the enrolled voices alone.",
)
@click.option(
    "--encoder",
    default=None,
    help="The voice encoder of the enroll/verify/gallery routes: `auto`, `bundled`, "
    "`resemblyzer`, `dvector` or a run [default: the encoder that made the gallery, else "
    "auto].",
)
@gallery_option
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8000,
    show_default=True,
    help="0: any free port (see --port-file).",
)
@click.option(
    "--port-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the port to this file once bound (for --port 0); with several workers, "
    "connections are taken once a worker has started.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Server processes, each with its own copy of the models.",
)
@click.option(
    "--api-key",
    default=None,
    envvar="WHICHVOICE_API_KEY",
    show_envvar=True,
    help="Require this key (X-API-Key or Authorization: Bearer) on every route but "
    "/healthz, /ping and the page's files.",
)
@click.option(
    "--allow-origin",
    "allow_origins",
    multiple=True,
    metavar="ORIGIN",
    help="Let pages of this origin (https://example.org) besides the server's own send "
    "requests that change something and open the live stream; repeatable. Others' are "
    "refused (403, a stream closed 1008): a page of any site could otherwise enroll or "
    "remove voices with its visitor's browser.",
)
@click.option(
    "--allow-polly",
    is_flag=True,
    help="Let /v1/synthesize speak with Amazon Polly voices (billed to this server's AWS "
    "account); without it only local engines speak over HTTP.",
)
@click.option(
    "--synth-per-minute",
    type=FiniteRange(min=0),
    default=30,
    show_default=True,
    help="Synthesis requests each client may make a minute, per worker (0: none).",
)
@click.option(
    "--max-upload-mb",
    type=FiniteRange(min=0, min_open=True),
    default=20,
    show_default=True,
    help="Largest request body accepted, in MiB (1 MiB = 1,048,576 bytes); larger: 413.",
)
@click.option(
    "--max-duration",
    type=FiniteRange(min=0, min_open=True),
    default=600,
    show_default=True,
    help="Longest audio accepted, in seconds.",
)
@click.option(
    "--upload-timeout",
    type=FiniteRange(min=0, min_open=True),
    default=30,
    show_default=True,
    help="Seconds an upload may send nothing before it is answered 408.",
)
@click.option(
    "--backend",
    type=click.Choice(["torch", "onnx", "onnx-int8"]),
    default="torch",
    show_default=True,
    help="Run the classifier's network with torch, onnxruntime, or onnxruntime quantised to "
    "int8 (RUN/model.int8.onnx; see `export --int8`).",
)
@click.option(
    "--batching/--no-batching",
    default=True,
    show_default=True,
    help="Score the windows of concurrent requests in one call of the network.",
)
@click.option(
    "--batch-wait-ms",
    type=FiniteRange(0, 100),
    default=0,
    show_default=True,
    help="How long a batch waits for more requests (0: it takes what is queued).",
)
@click.option("--quiet", "-q", is_flag=True, help="No access log.")
def serve_cmd(
    run: Path | None,
    no_classifier: bool,
    encoder: str | None,
    gallery: Path | None,
    host: str,
    port: int,
    port_file: Path | None,
    workers: int,
    api_key: str | None,
    allow_origins: tuple[str, ...],
    allow_polly: bool,
    synth_per_minute: float,
    max_upload_mb: float,
    max_duration: float,
    upload_timeout: float,
    backend: str,
    batching: bool,
    batch_wait_ms: float,
    quiet: bool,
) -> None:
    """Serve over HTTP: the talk's /invocations and /v1/identify with the classifier RUN
    (default: the bundled one, the default8 voices), enrollment, verification and the
    gallery with the encoder, /metrics and the page at /. With --no-classifier,
    /v1/identify answers from the enrolled voices alone."""
    import os

    from whichvoice.gallery import default_gallery_path
    from whichvoice.runtime import load_model
    from whichvoice.serve.app import ENV_CONFIG, ServeConfig

    if run is not None and no_classifier:
        raise click.UsageError("RUN or --no-classifier, not both")
    source = click.get_current_context().get_parameter_source("backend")
    if no_classifier and source not in (None, ParameterSource.DEFAULT):
        # the backend runs the classifier: with none, the option did nothing (a CLI review)
        raise click.UsageError("--backend runs the classifier: not with --no-classifier")
    api_key = api_key or None  # an empty key (or $WHICHVOICE_API_KEY) is no key, as before
    if api_key is not None:
        from whichvoice.serve.service import check_api_key

        try:
            check_api_key(api_key)
        except ValueError as e:
            source = click.get_current_context().get_parameter_source("api_key")
            hint = "WHICHVOICE_API_KEY" if source == ParameterSource.ENVIRONMENT else "'--api-key'"
            raise click.BadParameter(str(e), param_hint=hint) from None
    if run is None and not no_classifier:
        from whichvoice.runtime import bundled_classifier

        run = bundled_classifier()
    # the port first: one taken is said at once, not after the models load (seconds); it
    # takes connections once they have (a TCP probe saw it up while it could not answer)
    sock = _listen(host, port, workers, listen=False)
    port = sock.getsockname()[1]
    try:
        if run is not None:
            # fail here, in one line, rather than in every worker (and export to ONNX once,
            # the open set's encoder too)
            load_model(run, backend=backend).ready()
        if encoder is not None and Path(encoder).exists():
            encoder = str(Path(encoder).resolve())
        gallery = (gallery or default_gallery_path()).resolve()
        _check_encoder(encoder, gallery, needed=run is None or encoder is not None)
        _warn_if_unwritable(gallery)
    except BaseException:
        sock.close()
        raise
    try:
        _start_listening(sock, workers)
    except OSError as e:
        sock.close()
        raise WhichvoiceError(f"cannot listen on {host}:{port} ({e.strerror or e})") from e
    cfg = ServeConfig(
        run=str(run.resolve()) if run is not None else None,
        encoder=encoder,
        gallery=str(gallery),
        api_key=api_key,
        allow_origins=_origins(allow_origins),
        max_bytes=int(max_upload_mb * 1024 * 1024),
        max_seconds=max_duration,
        upload_timeout_s=upload_timeout,
        allow_polly=allow_polly,
        synth_per_minute=synth_per_minute,
        backend=backend,
        batching=batching,
        batch_wait_ms=batch_wait_ms,
    )
    os.environ[ENV_CONFIG] = cfg.to_json()
    os.environ["WHICHVOICE_WORKERS"] = str(workers)
    if port_file is not None:
        _write_port(port_file, port, sock)
    if api_key is None and not _loopback(host):  # said even with --quiet
        click.echo(
            f"warning: serving on {host} without --api-key: anyone who can reach port {port} "
            "can enroll and remove voices",
            err=True,
        )
    if not quiet:
        what = f"{run} and the gallery" if run is not None else "the gallery (no classifier)"
        key = "an API key required" if api_key is not None else "no API key"
        click.echo(
            f"serving {what} {gallery} on http://{host}:{port}/ ({workers} worker(s), {key}); "
            "docs at /docs",
            err=True,
        )
    _run_uvicorn(sock, host, port, workers, quiet)


def _loopback(host: str) -> bool:
    """Whether ``host`` is reached from this machine alone (127.0.0.0/8, ::1, localhost)."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def _write_port(port_file: Path, port: int, sock: socket.socket) -> None:
    """``--port-file``: the bound port, for a script that asked for port 0."""
    from whichvoice.errors import OutputError
    from whichvoice.files import write_atomic

    try:
        write_atomic(port_file.resolve(), f"{port}\n".encode(), durable=False)
    except OSError as e:
        sock.close()
        raise OutputError(f"{port_file}: cannot write the port ({e.strerror or e})") from e


# bytes: uvicorn refuses a bigger WebSocket message before buffering it (close 1009, no
# JSON); the live stream answers one between its own limit (1 MB) and this with a JSON error
# and reads on. At most 8 live connections: 128 MB held at worst, for a moment
MAX_WS_MESSAGE = 16 << 20


class _RedactKey:
    """A logging filter: an API key in a query string (``key=...``, the live stream's way to
    carry it) never reaches the access log, however its name is spelled (``k%65y`` is
    ``key`` to the server too)."""

    pattern = None

    def filter(self, record) -> bool:
        import re

        if self.pattern is None:
            type(self).pattern = re.compile(r"([?&])([^=&\s\"']*)=([^&\s\"']*)")
        if record.args:
            record.args = tuple(self._redact(a) if isinstance(a, str) else a for a in record.args)
        record.msg = self._redact(str(record.msg))
        return True

    def _redact(self, text: str) -> str:
        from urllib.parse import unquote_plus

        def one(m) -> str:
            if unquote_plus(m.group(2)) != "key":
                return m.group(0)
            return f"{m.group(1)}{m.group(2)}=REDACTED"

        return self.pattern.sub(one, text)


def _log_config(quiet: bool) -> dict:
    """uvicorn's logging, as every worker process sets it up again (a filter added in the
    parent alone left a key in clear in the workers' access lines with --workers 2): each
    handler redacts keys, and whichvoice's own lines (a gallery that cannot answer, a client
    that went away) get their level, as uvicorn's do (they went through Python's last
    resort, bare, and its INFO lines were dropped)."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {"redact_key": {"()": f"{__name__}._RedactKey"}}
    for handler in config["handlers"].values():
        handler["filters"] = ["redact_key"]
    config["loggers"]["whichvoice"] = {
        "handlers": ["default"],
        "level": "WARNING" if quiet else "INFO",
        "propagate": False,
    }
    return config


def _run_uvicorn(sock: socket.socket, host: str, port: int, workers: int, quiet: bool) -> None:
    """Serve the app (``app_from_env``, configured through the environment) on the bound
    socket: one process, or ``workers`` processes, each on its own socket on that port (see
    REUSEPORT; where SO_REUSEPORT is missing, sharing it)."""
    import uvicorn

    config = uvicorn.Config(
        "whichvoice.serve.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="warning" if quiet else "info",
        access_log=not quiet,
        ws_max_size=MAX_WS_MESSAGE,  # the live stream's messages (serve/stream.py)
        log_config=_log_config(quiet),
        # a stop waits this long for requests in flight (a client uploading 1 byte a second
        # held it until the client gave up)
        timeout_graceful_shutdown=GRACEFUL_STOP_S,
    )
    if workers > 1:
        from uvicorn.supervisors import Multiprocess

        Multiprocess(config, sockets=[sock]).run()
    else:
        _one_server(config).run(sockets=[sock])


GRACEFUL_STOP_S = 30


def _one_server(config):
    """uvicorn's server, stopped by SIGTERM or SIGINT as several workers are (requests in
    flight answered, then exit 0; uvicorn raised the signal again once stopped: exit 143,
    which systemd counts as a failed stop), and by SIGHUP the same way (it was killed at
    once, mid-request: 129; several workers are restarted on SIGHUP instead, which one
    process cannot do). (A class made here: uvicorn is imported by `serve` alone.)"""
    import signal
    import threading

    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self):
            hup = None
            if threading.current_thread() is threading.main_thread():
                hup = signal.signal(signal.SIGHUP, self.handle_exit)
            try:
                with super().capture_signals():
                    try:
                        yield
                    finally:  # stopped: the signal is not raised again
                        getattr(self, "_captured_signals", []).clear()
            finally:
                if hup is not None:
                    signal.signal(signal.SIGHUP, hup)

    return Server(config)


def _check_encoder(encoder: str | None, gallery: Path, *, needed: bool) -> None:
    """Load the encoder and check that an existing gallery is its own, so that `serve` fails
    in one line; a missing encoder only warns when the classifier can serve alone."""
    from whichvoice.gallery import Gallery, GalleryModelError
    from whichvoice.verification import calibration_of, gallery_encoder, model_id

    try:
        model = gallery_encoder(encoder, gallery)
        calibration_of(model)  # verify and identify need its threshold
    except GalleryModelError:
        raise  # a gallery no encoder here can use: never served
    except WhichvoiceError as e:
        if needed:
            raise
        click.echo(f"warning: {e}; the enrollment and gallery routes will answer 503", err=True)
        return
    if gallery.exists():
        Gallery(gallery, model_id(model)).close()


def _warn_if_unwritable(gallery: Path) -> None:
    """Say at the start, where the deployer reads it, that enrollments will be refused: a
    gallery (or its folder) that cannot be written served reads and answered every
    enrollment 503 with no word at start (review); the CLI's enroll refuses it before any
    work."""
    import os

    from whichvoice.files import check_creatable

    try:
        if gallery.exists():
            if not os.access(gallery, os.W_OK) or not os.access(gallery.parent, os.W_OK | os.X_OK):
                raise OutputError(f"{gallery}: read-only")
        else:
            check_creatable(gallery.parent, "gallery")
    except OutputError:
        click.echo(
            f"warning: {gallery}: the gallery cannot be written here; enrollments and the "
            "gallery's changes will answer 503 (give another with --gallery or "
            "WHICHVOICE_GALLERY)",
            err=True,
        )


def _origins(given: tuple[str, ...]) -> tuple[str, ...]:
    """``--allow-origin`` values as a browser writes an Origin (lower case, no path, no
    default port), or a usage error naming the one that is not an origin."""
    from urllib.parse import urlsplit

    from whichvoice.serve.service import normal_origin

    origins = []
    for origin in given:
        parts = urlsplit(origin.strip().lower())
        if origin.strip().lower() == "null":  # sandboxed frames and local files send "null"
            origins.append("null")
            continue
        if (
            parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc
            or parts.path.strip("/") or parts.query or parts.fragment
        ):  # fmt: skip
            raise click.BadParameter(
                f"{origin!r}: an origin is http(s)://host[:port], no path",
                param_hint="'--allow-origin'",
            )
        origins.append(normal_origin(f"{parts.scheme}://{parts.netloc}"))
    return tuple(origins)

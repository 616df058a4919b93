"""What the server lets a client do and learn: the API key, billable synthesis, rate limits,
error bodies that name only the request's own things, and uploads decoded once."""

from __future__ import annotations

import functools
import io
import json
from collections.abc import Iterator
from pathlib import Path

import click
import httpx
import numpy as np
import pytest
import soundfile as sf

from whichvoice.voices.registry import find_voice, get_engine

from . import server as server_process
from .test_serve import assert_error

KEY = "s3cret-key"
SYNTH_PER_MINUTE = 5


@functools.cache
def wav(freq: float = 220.0) -> bytes:
    """A short clip of speech (enrollment refuses clips without any), one voice a ``freq``:
    flite's slt at a pitch that follows it (a prosody variant)."""
    pitch = max(50, min(200, round(100 * freq / 220)))
    voice = find_voice(f"flite:slt+p{pitch}r100")
    with get_engine("flite").open_session() as session:
        speech = session.synthesize(voice, "One, two, three, four, five, six, seven, eight.")
    buf = io.BytesIO()
    sf.write(buf, speech.wave, speech.sample_rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A server with no classifier, an API key and a strict synthesis limit: (URL, gallery)."""
    gallery = tmp_path_factory.mktemp("secured") / "private" / "g.sqlite"
    args = ["--gallery", str(gallery), "--api-key", KEY]
    args += ["--synth-per-minute", str(SYNTH_PER_MINUTE)]
    with server_process.serving(None, *args) as started:
        yield started.url, gallery


def bearer(key: str = KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.slow
def test_the_key_as_header_or_bearer_token(secured) -> None:
    url, _ = secured
    assert httpx.get(f"{url}/v1/gallery", headers={"X-API-Key": KEY}).status_code == 200
    assert httpx.get(f"{url}/v1/gallery", headers=bearer()).status_code == 200
    for headers in (
        {},
        bearer("wrong"),
        bearer(KEY[:-1]),
        bearer(KEY + "x"),
        {"Authorization": f"Basic {KEY}"},
        {"X-API-Key": ""},
    ):
        r = httpx.get(f"{url}/v1/gallery", headers=headers)
        assert_error(r, 401, "unauthorized")
        assert r.headers["www-authenticate"] == "Bearer"
    assert httpx.get(f"{url}/healthz").status_code == 200  # open
    assert httpx.get(f"{url}/ping").status_code == 200  # open: the talk's health check


@pytest.mark.slow
def test_another_sites_page_cannot_change_anything_or_listen(secured) -> None:
    """A page of another site could enroll voices (a no-cors form POST) and open the live
    stream with its visitor's browser (review). What changes something, and the stream,
    are refused for a foreign Origin; the server's own page, and clients that send no
    Origin (curl, scripts), are not."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    url, _ = secured
    files = [("file", (f"c{i}.wav", wav(freq=200 + 30 * i), "audio/wav")) for i in range(2)]
    enroll = f"{url}/v1/enroll?name=planted"
    for origin in ("http://evil.example", "null", url.replace("127.0.0.1", "localhost")):
        r = httpx.post(enroll, files=files, headers={**bearer(), "Origin": origin})
        assert_error(r, 403, "cross_origin", "--allow-origin")
        r = httpx.delete(f"{url}/v1/gallery/anyone", headers={**bearer(), "Origin": origin})
        assert_error(r, 403, "cross_origin")
    listed = httpx.get(f"{url}/v1/gallery", headers={**bearer(), "Origin": "http://evil.example"})
    assert listed.status_code == 200 and "planted" not in listed.text  # reading: its own
    assert "access-control-allow-origin" not in listed.headers  # ... and unreadable there
    ws_url = url.replace("http", "ws") + f"/v1/stream?rate=16000&key={KEY}"
    with connect(ws_url, origin="http://evil.example", open_timeout=30) as ws:
        assert json.loads(ws.recv(timeout=30))["kind"] == "cross_origin"
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=30)
    assert closed.value.rcvd.code == 1008
    # a stream's misspelt parameter is refused as over HTTP (rat=8000 streamed at 16 kHz)
    with connect(ws_url + "&rat=8000", open_timeout=30) as ws:
        assert json.loads(ws.recv(timeout=30))["kind"] == "invalid"
    # a link to the page or a probe with a query of its own is answered as without it
    assert httpx.get(f"{url}/?utm_source=mail").status_code == 200
    assert httpx.get(f"{url}/healthz?probe=1").status_code == 200
    # the server's own page (its Origin is the Host it asked) goes through
    r = httpx.post(enroll, files=files, headers={**bearer(), "Origin": url}, timeout=60)
    assert r.status_code == 200, r.text
    assert httpx.delete(f"{url}/v1/gallery/planted", headers=bearer()).status_code == 200


def test_a_key_in_a_query_never_reaches_the_log_however_it_is_spelled() -> None:
    """``k%65y=`` is ``key=`` to the server: its value reached the access log (review)."""
    import logging

    from whichvoice.cli.serve import _RedactKey

    for query in ("key=s3cret", "k%65y=s3cret", "%6B%65%79=s3cret", "ke%79=s3cret"):
        record = logging.LogRecord("uvicorn.access", logging.INFO, "", 0, "%s %s",
                                   (f"/v1/stream?rate=16000&{query}", 101), None)  # fmt: skip
        _RedactKey().filter(record)
        assert "s3cret" not in record.getMessage() and "REDACTED" in record.getMessage()
    kept = logging.LogRecord("x", logging.INFO, "", 0, "/v1/x?monkey=1&rate=8000", (), None)
    _RedactKey().filter(kept)
    assert kept.getMessage() == "/v1/x?monkey=1&rate=8000"


def test_origins_and_keys_the_server_takes() -> None:
    from whichvoice.cli.serve import _origins
    from whichvoice.serve.service import check_api_key, foreign_origin

    assert _origins(("HTTPS://Example.org/", "null", "https://e.org:443", "http://e.org:80")) == (
        "https://example.org", "null", "https://e.org", "http://e.org"
    )  # fmt: skip
    for bad in ("example.org", "ftp://x", "https://x/path", "https://user@x.org", "https://x?a"):
        with pytest.raises(click.BadParameter, match="an origin is"):
            _origins((bad,))
    allowed = ("https://example.org",)
    assert foreign_origin({"origin": "https://example.org", "host": "h:1"}, allowed) is None
    assert foreign_origin({"origin": "http://H:1", "host": "h:1"}, ()) is None
    assert foreign_origin({"origin": "http://h", "host": "h:80"}, ()) is None
    assert foreign_origin({"host": "h:1"}, ()) is None
    assert foreign_origin({"origin": "https://h:1", "host": "h:2"}, ()) == "https://h:1"
    # the browser's word on where it sends from: the server's own page behind a proxy that
    # rewrites Host, or under a referrer policy that makes its Origin "null"
    own = {"origin": "null", "host": "backend:8000", "sec-fetch-site": "same-origin"}
    assert foreign_origin(own, ()) is None
    other = {"origin": "http://127.0.0.1:9", "host": "127.0.0.1:8", "sec-fetch-site": "same-site"}
    assert foreign_origin(other, ()) == "http://127.0.0.1:9"
    check_api_key(KEY)
    check_api_key("two words")  # a space inside travels in a header
    for bad in ("sécret€1", " key", "", "tab\tkey"):
        with pytest.raises(ValueError, match="printable ASCII"):
            check_api_key(bad)


def test_a_bad_key_from_the_environment_is_named_as_such(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """WHICHVOICE_API_KEY's bad value was refused as "Invalid value for '--api-key'" with no
    --api-key given (environment review); and a gallery that cannot be written is said at
    the start, not at the first enrollment's 503."""
    from click.testing import CliRunner

    from whichvoice.cli import app
    from whichvoice.cli.serve import _warn_if_unwritable

    monkeypatch.setenv("WHICHVOICE_API_KEY", "sécret")
    said = CliRunner().invoke(app, ["serve", "--port", "0"])
    assert said.exit_code == 2 and "Invalid value for WHICHVOICE_API_KEY" in said.output
    said = CliRunner().invoke(app, ["serve", "--port", "0", "--api-key", " key"])
    assert said.exit_code == 2 and "Invalid value for '--api-key'" in said.output
    (tmp_path / "file").write_text("")
    _warn_if_unwritable(tmp_path / "file" / "g.sqlite")  # a file where its folder would be
    err = capsys.readouterr().err
    assert err.startswith("warning: ") and "cannot be written here" in err and "503" in err
    _warn_if_unwritable(tmp_path / "g.sqlite")
    assert capsys.readouterr().err == ""


@pytest.mark.slow
def test_the_live_stream_closes_with_1008_for_a_wrong_key(secured) -> None:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    url, _ = secured
    ws_url = url.replace("http", "ws") + "/v1/stream?rate=16000"
    for query in ("", "&key=wrong"):
        # the socket opens, then closes with the code and reason a browser can read
        with connect(ws_url + query, open_timeout=30) as ws, pytest.raises(ConnectionClosed) as e:
            ws.recv(timeout=30)
        closed = e
        assert closed.value.rcvd.code == 1008 and "API key" in closed.value.rcvd.reason
    with connect(f"{ws_url}&key={KEY}", open_timeout=30) as ws:
        ws.send(b"\0\0" * 1600)  # accepted: audio goes through


@pytest.mark.slow
def test_polly_is_not_offered_without_allow_polly(secured) -> None:
    url, _ = secured
    r = httpx.post(
        f"{url}/v1/synthesize", json={"text": "Hello there.", "voice": "polly:Joanna"},
        headers=bearer(),
    )  # fmt: skip
    assert_error(r, 403, "polly_disabled", "--allow-polly")
    listed = httpx.get(f"{url}/v1/voices", headers=bearer()).json()["synthesis"]
    assert listed and not [v for v in listed if v["engine"] == "polly"]


@pytest.mark.slow
def test_synthesis_is_rate_limited_per_client(secured) -> None:
    url, _ = secured
    too_long = {"text": "a" * 1001, "voice": "flite:slt"}
    assert_error(httpx.post(f"{url}/v1/synthesize", json=too_long, headers=bearer()), 422)
    cut = httpx.post(f"{url}/v1/synthesize", content=b'{"text": ',
                     headers={**bearer(), "Content-Type": "application/json"})  # fmt: skip
    assert_error(cut, 422, "invalid", "the body is not JSON (")  # as the other JSON routes say
    statuses = []
    for _ in range(SYNTH_PER_MINUTE + 1):  # a voice nobody has: refused fast, yet counted
        r = httpx.post(
            f"{url}/v1/synthesize", json={"text": "Hi.", "voice": "flite:nobody"},
            headers=bearer(),
        )  # fmt: skip
        statuses.append(r.status_code)
        if r.status_code == 429:
            break
    assert statuses[-1] == 429 and set(statuses[:-1]) <= {422}, statuses
    assert_error(r, 429, "rate_limited")
    assert 1 <= int(r.headers["retry-after"]) <= 60


@pytest.mark.slow
def test_errors_name_only_the_requests_own_things(secured) -> None:
    url, gallery = secured
    sent = [("file", (f"c{i}.wav", wav(freq=200 + 30 * i), "audio/wav")) for i in range(2)]
    r = httpx.post(
        f"{url}/v1/enroll", params={"name": "private-voice"}, files=sent, headers=bearer(),
        timeout=60,
    )  # fmt: skip
    assert r.status_code == 200, r.text
    answers = [
        httpx.get(f"{url}/v1/gallery/nobody", headers=bearer()),
        httpx.delete(f"{url}/v1/gallery/nobody", headers=bearer()),
        httpx.post(
            f"{url}/v1/verify", params={"name": "nobody"}, files=sent[:1], headers=bearer(),
            timeout=60,
        ),
    ]  # fmt: skip
    for answer in answers:
        assert_error(answer, 404, "not_enrolled", "'nobody' is not enrolled")
        for secret in ("private-voice", str(gallery), "private", "sqlite", str(Path.home())):
            assert secret not in answer.text, answer.text


@pytest.mark.slow
def test_import_keeps_enrollments_rules(secured) -> None:
    url, _ = secured
    export = httpx.get(f"{url}/v1/gallery/export", headers=bearer()).json()
    assert export["voices"], "the previous test enrolled a voice"
    before = [v["name"] for v in export["voices"]]
    for bad in ("unknown", " Unknown ", "x" * 201, "", "new\nline"):
        forged = {**export, "voices": [{**export["voices"][0], "name": bad}]}
        r = httpx.post(f"{url}/v1/gallery/import", json=forged, headers=bearer())
        assert_error(r, 422, "voice name")
    listed = httpx.get(f"{url}/v1/gallery", headers=bearer()).json()["voices"]
    assert [v["name"] for v in listed] == before
    for bad in ("unknown", "x" * 201):
        r = httpx.post(
            f"{url}/v1/enroll", params={"name": bad}, content=wav(),
            headers={**bearer(), "Content-Type": "audio/wav"},
        )  # fmt: skip
        assert_error(r, 422, "invalid")


@pytest.mark.slow
def test_skipped_uploads_carry_their_index(secured) -> None:
    url, _ = secured
    good = wav()
    junk = b"\0" * len(good)  # the same size as the good one
    sent = [
        ("file", ("same.wav", good, "audio/wav")),
        ("file", ("same.wav", junk, "audio/wav")),
        ("file", ("other.wav", wav(230.0), "audio/wav")),  # another recording of the voice
        ("file", ("again.wav", good, "audio/wav")),  # the first again: counted once
    ]
    r = httpx.post(
        f"{url}/v1/enroll", params={"name": "indexed"}, files=sent, headers=bearer(), timeout=60
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["added"] == 2
    assert [(s["index"], s["file"]) for s in body["skipped"]] == [(1, "same.wav"), (3, "again.wav")]
    assert "same recording as an earlier file" in body["skipped"][1]["error"]
    # a later request with a recording the voice already holds: counted once there too
    sent = [
        ("file", ("later.wav", good, "audio/wav")),
        ("file", ("new.wav", wav(250.0), "audio/wav")),
    ]
    r = httpx.post(
        f"{url}/v1/enroll", params={"name": "indexed"}, files=sent, headers=bearer(), timeout=60
    )
    assert r.status_code == 200, r.text
    assert (r.json()["added"], r.json()["clips"]) == (1, body["clips"] + 1)
    assert r.json()["skipped"] == [
        {"index": 0, "file": "later.wav", "error": "already enrolled into indexed; counted once"}
    ]
    r = httpx.post(
        f"{url}/v1/enroll", params={"name": "indexed"}, files=sent[:1], headers=bearer(), timeout=60
    )
    assert_error(r, 409, "already_enrolled")
    assert "already enrolled into indexed (nothing changed)" in r.json()["error"]


def test_each_upload_is_decoded_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process, to count the decoder's calls: enroll, verify and identify decode each
    upload once, however many steps use it."""
    from fastapi.testclient import TestClient

    from whichvoice import audio, pretrained
    from whichvoice.runtime import model as runtime_model
    from whichvoice.serve import service
    from whichvoice.serve.app import create_app

    decoded: list[int] = []
    real = audio.read_audio

    def counting(source, **kw):
        if isinstance(source, bytes | bytearray):
            decoded.append(len(source))
        return real(source, **kw)

    for module in (audio, runtime_model, pretrained, service):
        monkeypatch.setattr(module, "read_audio", counting)
    # the bundled encoder alone here: the fastest
    app = create_app(service.ServeConfig(gallery=str(tmp_path / "g.sqlite"), encoder="bundled"))
    clips = [wav(freq=f) for f in (180.0, 240.0, 300.0)]
    with TestClient(app) as client:
        sent = [("file", (f"{i}.wav", c, "audio/wav")) for i, c in enumerate(clips)]
        assert client.post("/v1/enroll?name=tone", files=sent).status_code == 200
        assert sorted(decoded) == sorted(len(c) for c in clips)
        decoded.clear()
        assert client.post("/v1/verify?name=tone", files=sent[:2]).status_code == 200
        assert len(decoded) == 2
        decoded.clear()
        r = client.post("/v1/identify", content=clips[0], headers={"Content-Type": "audio/wav"})
        # the nearest enrolled voice: whether a tone passes a voice threshold is the encoder's
        # business, not this test's
        assert r.status_code == 200 and r.json()["gallery"]["nearest"] == "tone"
        assert len(decoded) == 1
    assert np.isfinite(r.json()["gallery"]["score"])


def test_allow_polly_lets_polly_voices_through(tmp_path: Path, monkeypatch) -> None:
    """With --allow-polly the request reaches the Polly engine (here: no AWS credentials,
    so the voice is unavailable, 422), where without it the server refuses first (403)."""
    from fastapi.testclient import TestClient

    from whichvoice.serve.app import create_app
    from whichvoice.serve.service import ServeConfig

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    body = {"text": "Hello.", "voice": "polly:Joanna"}
    for allow, status, kind in ((False, 403, "polly_disabled"), (True, 422, "unavailable_voice")):
        app = create_app(ServeConfig(gallery=str(tmp_path / "g.sqlite"), allow_polly=allow))
        with TestClient(app) as client:
            r = client.post("/v1/synthesize", json=body)
        assert (r.status_code, r.json()["kind"]) == (status, kind), r.text
    # credentials, but a region botocore refuses: unavailable too, not a 500 (review)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us east 1")
    app = create_app(ServeConfig(gallery=str(tmp_path / "g.sqlite"), allow_polly=True))
    with TestClient(app) as client:
        r = client.post("/v1/synthesize", json=body)
    assert (r.status_code, r.json()["kind"]) == (422, "unavailable_voice"), r.text
    assert "region" in r.json()["error"]


def test_the_rate_limiter_refills_and_stays_bounded() -> None:
    from whichvoice.serve.service import RateLimiter

    now = [0.0]
    limiter = RateLimiter(6, clock=lambda: now[0])  # 6 a minute: one every 10 s
    assert [limiter.take("a") for _ in range(6)] == [0.0] * 6  # a burst of 6
    assert limiter.take("a") == pytest.approx(10.0)
    assert limiter.take("b") == 0.0  # each client its own bucket
    now[0] += 10.0
    assert limiter.take("a") == 0.0 and limiter.take("a") > 0
    for i in range(RateLimiter.MAX_CLIENTS + 10):
        limiter.take(f"client{i}")
    assert len(limiter._buckets) <= RateLimiter.MAX_CLIENTS
    assert RateLimiter(0).take("a") == float("inf")  # synthesis off


def test_free_memory_goes_back_to_the_system_on_glibc() -> None:
    import platform

    from whichvoice.serve.service import _libc, release_free_memory

    if platform.libc_ver()[0] != "glibc":
        assert release_free_memory() is False  # nothing to call elsewhere
        return
    assert _libc() is not None
    blocks = [bytearray(4096) for _ in range(20_000)]  # 80 MB in small blocks, then freed
    del blocks
    assert isinstance(release_free_memory(), bool)


def test_an_internal_error_is_a_json_500_and_logged_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The client learns the error's kind only; the server's log has the traceback."""
    from fastapi.testclient import TestClient

    from whichvoice.serve import enrollment
    from whichvoice.serve.app import create_app
    from whichvoice.serve.service import ServeConfig

    def broken(service) -> dict:
        raise RuntimeError("secret detail of /srv/whichvoice")

    monkeypatch.setattr(enrollment, "_listing", broken)
    app = create_app(ServeConfig(gallery=str(tmp_path / "g.sqlite")))
    with TestClient(app, raise_server_exceptions=False) as client:
        r = client.get("/v1/gallery")
    assert r.status_code == 500
    assert r.json() == {"error": "internal error: RuntimeError", "kind": "internal"}
    logged = [rec for rec in caplog.records if rec.name == "whichvoice.serve.app"]
    assert logged and "GET /v1/gallery" in logged[0].getMessage()
    assert "secret detail" in str(logged[0].exc_info[1])


def test_a_live_answer_that_fails_is_logged_and_closes_the_socket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """In-process: an answer that raises is not swallowed: the server logs it, the client gets
    {"error", "kind": "internal"} and the close code 1011."""
    from fastapi.testclient import TestClient
    from starlette.websockets import WebSocketDisconnect

    from whichvoice.serve import service, stream
    from whichvoice.serve.app import create_app

    def broken(self, *args, **kwargs):
        raise RuntimeError("the network broke")

    monkeypatch.setattr(stream.LiveSpeakers, "answer", broken)
    app = create_app(service.ServeConfig(gallery=str(tmp_path / "g.sqlite"), encoder="bundled"))
    pcm = (np.sin(np.arange(16_000) / 8) * 8000).astype("<i2").tobytes()
    with TestClient(app) as client, client.websocket_connect("/v1/stream?rate=16000") as ws:
        ws.send_bytes(pcm)
        assert ws.receive_json() == {"error": "the server could not answer", "kind": "internal"}
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
    assert closed.value.code == 1011
    assert "a live answer failed" in caplog.text and "the network broke" in caplog.text


def test_every_worker_redacts_keys_and_gives_whichvoice_lines_their_level() -> None:
    """With --workers 2 a key in a query string reached the access log in clear: the filter
    was added to the parent's loggers, and each worker sets up logging again from uvicorn's
    config (a review). The config each process applies now carries it; whichvoice's own
    lines (INFO ones were dropped, others bare) get their level."""
    import subprocess
    import sys

    script = (
        "import logging, logging.config\n"
        "from whichvoice.cli.serve import _log_config\n"
        "logging.config.dictConfig(_log_config(False))\n"
        "logging.getLogger('uvicorn.access').info('%s - \"%s %s HTTP/%s\" %d', '127.0.0.1:9',"
        " 'GET', '/v1/gallery?k%65y=s3cret&x=1', '1.1', 401)\n"
        "logging.getLogger('uvicorn.error').info('WebSocket /v1/stream?key=s3cret [accepted]')\n"
        "logging.getLogger('whichvoice.serve.app').info('the client went away')\n"
        "logging.getLogger('whichvoice.serve.identify').warning('no gallery answer: x')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, check=True)  # fmt: skip
    both = done.stdout + done.stderr
    assert "s3cret" not in both and both.count("REDACTED") == 2, both
    assert "INFO:     the client went away" in done.stderr, done.stderr
    assert "WARNING:  no gallery answer: x" in done.stderr, done.stderr


def test_a_calibration_the_server_cannot_read_is_its_own_fault_and_path(tmp_path: Path) -> None:
    """A damaged calibration.json was 422 bad_request, not logged, its server path in the
    answer (a review): 503 unavailable, the path for the log alone."""
    from whichvoice.encoders import _read_calibration
    from whichvoice.errors import SetupError
    from whichvoice.serve.service import error_status

    broken = tmp_path / "calibration.json"
    broken.write_text('{"threshold": 0.5')
    with pytest.raises(SetupError) as e:
        _read_calibration(broken)
    assert str(broken) in str(e.value) and str(tmp_path) not in e.value.public_message()
    assert error_status(e.value) == (503, "unavailable")


def test_a_verdict_of_a_voice_without_digests_is_answered() -> None:
    """enrolled_recording is null for a voice that keeps no digests (imported, or enrolled
    before galleries kept them): the response model refused it, a 500 (a code review)."""
    from whichvoice.serve.schemas import VerifyResponse

    row = {"path": "a.wav", "claimed": "ann", "accept": True, "score": 0.9, "probability": 0.9,
           "threshold": 0.75, "threshold_source": "calibrated", "dev_false_acceptance": 0.001,
           "dev_false_rejection": 0.07, "speech_s": 3.0, "enrolled_recording": None}  # fmt: skip
    answer = VerifyResponse(results=[row]).model_dump()["results"][0]
    assert answer["enrolled_recording"] is None and answer["accept"] is True

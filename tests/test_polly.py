"""Amazon Polly backend, offline: a real boto3 client answered by botocore's Stubber.

The stubbed responses carry real mp3 (and raw PCM) made from a flite clip, so decoding, the
stored bytes and the corpus manifest are exercised as they are with the real service. Fake
credentials in the environment and no shared files mean nothing can reach AWS.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import numpy as np
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from whichvoice.audio import SILENCE_PEAK, encode_audio, read_audio, resample
from whichvoice.corpus import MANIFEST, SynthConfig, plan, synthesize_corpus
from whichvoice.errors import (
    EngineAccessError,
    EngineServiceError,
    EngineUnavailableError,
    SynthesisError,
    TextTooLongError,
)
from whichvoice.sentences import Sentence, sentence_id
from whichvoice.voices import EngineSession, find_voice, polly, resolve_voices
from whichvoice.voices.polly import PollyEngine, PollySession

TEXT = "The quick brown fox jumps over the lazy dog."
MP3_RATE = {"standard": 22_050, "neural": 24_000}  # Hz, Polly's mp3 rates per engine
STANDARD_MP3_RATE = MP3_RATE["standard"]


@dataclass(frozen=True)
class SourceClip:
    """The flite recording every stubbed Polly answer is made from."""

    wave: np.ndarray  # float32 mono
    rate: int  # Hz

    @property
    def duration_s(self) -> float:
        return self.wave.shape[0] / self.rate


@pytest.fixture(scope="module")
def flite_clip(tmp_path_factory: pytest.TempPathFactory) -> SourceClip:
    if shutil.which("flite") is None:
        pytest.skip("flite is not installed")
    wav = tmp_path_factory.mktemp("polly-src") / "clip.wav"
    subprocess.run(
        ["flite", "-voice", "slt", "-t", TEXT, "-o", str(wav)], check=True, capture_output=True
    )
    wave, rate = read_audio(wav)
    return SourceClip(wave, rate)


@pytest.fixture(scope="module")
def polly_mp3(flite_clip: SourceClip) -> bytes:
    """Real mp3 bytes at the rate Polly's standard voices use."""
    wave = resample(flite_clip.wave, flite_clip.rate, STANDARD_MP3_RATE)
    return encode_audio(wave, STANDARD_MP3_RATE, "mp3")


@pytest.fixture(scope="module")
def polly_pcm(flite_clip: SourceClip) -> bytes:
    """Raw signed 16-bit little-endian PCM at ``polly.PCM_RATE``, as Polly sends it."""
    wave = resample(flite_clip.wave, flite_clip.rate, polly.PCM_RATE)
    return (np.clip(wave, -1.0, 1.0) * 32767).astype("<i2").tobytes()


def _clear_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No credentials anywhere: no AWS_* variables, and every config file a missing path."""
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.delenv("WHICHVOICE_AWS_IMDS", raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("BOTO_CONFIG", str(tmp_path / "no-boto-config"))


@pytest.fixture
def no_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _clear_aws_env(monkeypatch, tmp_path)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _clear_aws_env(monkeypatch, tmp_path)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture
def stubber(aws_env: None) -> Iterator[Stubber]:
    """An active Stubber on a real Polly client; ``stubber.client`` is the client."""
    client = boto3.client("polly", region_name="us-east-1")
    with Stubber(client) as stub:
        yield stub


def _request(text: str, voice: str, engine: str, rate: int, output: str = "mp3") -> dict[str, str]:
    """The SynthesizeSpeech parameters PollySession is expected to send."""
    return {
        "OutputFormat": output,
        "Text": text,
        "TextType": "text",
        "VoiceId": voice,
        "Engine": engine,
        "SampleRate": str(rate),
    }


def _audio(data: bytes, content_type: str = "audio/mpeg") -> dict:
    """A SynthesizeSpeech response whose AudioStream streams ``data``."""
    return {
        "AudioStream": StreamingBody(io.BytesIO(data), len(data)),
        "ContentType": content_type,
        "RequestCharacters": len(TEXT),
    }


def _throttle(stubber: Stubber, code: str = "ThrottlingException") -> None:
    stubber.add_client_error(
        "synthesize_speech",
        service_error_code=code,
        service_message="Rate exceeded",
        http_status_code=400,
    )


def test_synthesize_sends_standard_request_and_returns_the_mp3(
    stubber: Stubber, polly_mp3: bytes, flite_clip: SourceClip
) -> None:
    stubber.add_response(
        "synthesize_speech",
        _audio(polly_mp3),
        _request(TEXT, "Joanna", "standard", STANDARD_MP3_RATE),
    )
    waits: list[float] = []
    session = PollySession(client=stubber.client, sleep=waits.append)

    speech = session.synthesize(find_voice("polly:Joanna"), TEXT)

    stubber.assert_no_pending_responses()
    assert speech.encoded == polly_mp3
    assert speech.encoded_format == "mp3"
    assert speech.sample_rate == STANDARD_MP3_RATE
    assert speech.wave.dtype == np.float32 and speech.wave.ndim == 1
    assert np.max(np.abs(speech.wave)) > SILENCE_PEAK
    assert np.max(np.abs(speech.wave)) <= 1.0
    # an mp3 frame is ~50 ms: the decoded clip may differ from the source by about that
    assert abs(speech.wave.shape[0] / speech.sample_rate - flite_clip.duration_s) < 0.1
    assert waits == []


@pytest.mark.parametrize(
    ("mode", "voice", "engine"),
    [
        ("neural", "Joanna", "neural"),  # offered with both engines: the mode decides
        ("standard", "Ruth", "neural"),  # neural-only voice: neural whatever the mode
        ("neural", "Ruth", "neural"),
    ],
)
def test_engine_choice(
    stubber: Stubber, polly_mp3: bytes, mode: str, voice: str, engine: str
) -> None:
    rate = MP3_RATE[engine]
    stubber.add_response(
        "synthesize_speech", _audio(polly_mp3), _request(TEXT, voice, engine, rate)
    )
    speech = PollySession(mode, client=stubber.client).synthesize(
        find_voice(f"polly:{voice}"), TEXT
    )
    stubber.assert_no_pending_responses()
    assert speech.encoded == polly_mp3


def test_neural_mode_on_a_standard_only_voice_is_refused_without_a_request(
    stubber: Stubber, polly_mp3: bytes
) -> None:
    nicole = find_voice("polly:Nicole")
    assert "neural" not in nicole.modes
    # queued for the standard request below: a neural request would have taken it first
    stubber.add_response(
        "synthesize_speech",
        _audio(polly_mp3),
        _request(TEXT, "Nicole", "standard", STANDARD_MP3_RATE),
    )

    with pytest.raises(SynthesisError, match=r"polly:Nicole.*neural"):
        PollySession("neural", client=stubber.client).synthesize(nicole, TEXT)

    PollySession("standard", client=stubber.client).synthesize(nicole, TEXT)
    stubber.assert_no_pending_responses()


@pytest.mark.parametrize("code", ["ThrottlingException", "ServiceUnavailableException"])
def test_throttled_requests_are_retried_with_growing_waits(
    stubber: Stubber, polly_mp3: bytes, code: str
) -> None:
    _throttle(stubber, code)
    _throttle(stubber, code)
    stubber.add_response(
        "synthesize_speech",
        _audio(polly_mp3),
        _request(TEXT, "Joanna", "standard", STANDARD_MP3_RATE),
    )
    waits: list[float] = []

    speech = PollySession(client=stubber.client, sleep=waits.append).synthesize(
        find_voice("polly:Joanna"), TEXT
    )

    stubber.assert_no_pending_responses()
    assert speech.encoded == polly_mp3
    assert len(waits) == 2
    assert 0 < waits[0] < waits[1]


def test_gives_up_after_max_attempts(stubber: Stubber) -> None:
    for _ in range(polly.MAX_ATTEMPTS):
        _throttle(stubber)
    waits: list[float] = []

    with pytest.raises(SynthesisError, match=r"polly:Joanna.*ThrottlingException"):
        PollySession(client=stubber.client, sleep=waits.append).synthesize(
            find_voice("polly:Joanna"), TEXT
        )

    # every attempt was made, with a wait between two attempts and none after the last
    stubber.assert_no_pending_responses()
    assert len(waits) == polly.MAX_ATTEMPTS - 1
    assert waits == sorted(waits)


@pytest.mark.parametrize(
    "code", ["InvalidSsmlException", "TextLengthExceededException", "LexiconNotFoundException"]
)
def test_other_errors_are_not_retried(stubber: Stubber, polly_mp3: bytes, code: str) -> None:
    stubber.add_client_error(
        "synthesize_speech", service_error_code=code, service_message="bad", http_status_code=400
    )
    stubber.add_response(
        "synthesize_speech",
        _audio(polly_mp3),
        _request(TEXT, "Joanna", "standard", STANDARD_MP3_RATE),
    )
    waits: list[float] = []
    session = PollySession(client=stubber.client, sleep=waits.append)
    joanna = find_voice("polly:Joanna")

    with pytest.raises(SynthesisError, match=rf"polly:Joanna.*{code}"):
        session.synthesize(joanna, TEXT)
    assert waits == []

    # the error cost one request only: the next one gets the next response
    assert session.synthesize(joanna, TEXT).encoded == polly_mp3
    stubber.assert_no_pending_responses()


def test_text_over_the_limit_is_refused_without_a_request(
    stubber: Stubber, polly_mp3: bytes
) -> None:
    at_limit = "a" * polly.MAX_CHARS
    stubber.add_response(
        "synthesize_speech",
        _audio(polly_mp3),
        _request(at_limit, "Joanna", "standard", STANDARD_MP3_RATE),
    )
    session = PollySession(client=stubber.client)
    joanna = find_voice("polly:Joanna")

    with pytest.raises(TextTooLongError) as info:
        session.synthesize(joanna, at_limit + "a")
    message = str(info.value)
    assert "polly:Joanna" in message
    assert str(polly.MAX_CHARS + 1) in message and str(polly.MAX_CHARS) in message

    # the limit itself is accepted, and it is this request that takes the queued response
    session.synthesize(joanna, at_limit)
    stubber.assert_no_pending_responses()


def test_pcm_output(stubber: Stubber, polly_pcm: bytes, flite_clip: SourceClip) -> None:
    stubber.add_response(
        "synthesize_speech",
        _audio(polly_pcm, "audio/pcm"),
        _request(TEXT, "Joanna", "standard", polly.PCM_RATE, output="pcm"),
    )

    speech = PollySession(client=stubber.client, output="pcm").synthesize(
        find_voice("polly:Joanna"), TEXT
    )

    stubber.assert_no_pending_responses()
    assert speech.sample_rate == polly.PCM_RATE
    assert speech.encoded is None
    assert speech.wave.dtype == np.float32
    assert speech.wave.shape[0] * 2 == len(polly_pcm)
    assert np.max(np.abs(speech.wave)) > SILENCE_PEAK
    expected = resample(flite_clip.wave, flite_clip.rate, polly.PCM_RATE)
    np.testing.assert_allclose(speech.wave, expected, atol=2 / 32768)


def test_empty_pcm_is_an_error(stubber: Stubber) -> None:
    stubber.add_response("synthesize_speech", _audio(b"", "audio/pcm"))
    with pytest.raises(SynthesisError, match=r"polly:Joanna.*no audio"):
        PollySession(client=stubber.client, output="pcm").synthesize(
            find_voice("polly:Joanna"), TEXT
        )


@pytest.mark.parametrize(
    ("kwargs", "word"), [({"mode": "generative"}, "engine"), ({"output": "ogg"}, "output")]
)
def test_bad_session_settings(kwargs: dict[str, str], word: str) -> None:
    with pytest.raises(ValueError, match=word):
        PollySession(client=object(), **kwargs)


@pytest.mark.parametrize(("region", "expected"), [("eu-west-1", "eu-west-1"), (None, "us-east-1")])
def test_default_client_uses_the_configured_region(
    aws_env: None, monkeypatch: pytest.MonkeyPatch, region: str | None, expected: str
) -> None:
    if region is None:
        monkeypatch.delenv("AWS_DEFAULT_REGION")
    else:
        monkeypatch.setenv("AWS_DEFAULT_REGION", region)
    assert PollySession()._client.meta.region_name == expected


def test_unavailable_without_credentials(no_aws_env: None) -> None:
    reason = PollyEngine().unavailable_reason()
    assert isinstance(reason, str)
    assert "no AWS credentials" in reason


def test_available_with_env_credentials(aws_env: None) -> None:
    assert PollyEngine().unavailable_reason() is None


def test_available_with_a_shared_credentials_file(
    no_aws_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    creds = tmp_path / "credentials"
    creds.write_text("[default]\naws_access_key_id = testing\naws_secret_access_key = testing\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
    assert PollyEngine().unavailable_reason() is None


def test_talk8_is_the_talks_polly_voices() -> None:
    voices = resolve_voices("talk8")
    names = ["Ivy", "Joanna", "Joey", "Justin", "Kendra", "Kimberly", "Matthew", "Salli"]
    assert [v.id for v in voices] == [f"polly:{n}" for n in names]
    assert all(v.engine == "polly" and "standard" in v.modes for v in voices)


def test_corpus_of_talk8_voices(
    stubber: Stubber, polly_mp3: bytes, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    texts = ["Hello there.", "It rained all day in Seattle.", "Which voice is this?", TEXT]
    sentences = [Sentence(sentence_id(t), t) for t in texts]
    cfg = SynthConfig(voices=("talk8",), assign="random", workers=1)
    talk8 = resolve_voices("talk8")
    # one worker makes the clips in plan order, so each request gets its own response
    jobs = plan(sentences, talk8, cfg.assign, cfg.seed, cfg.format)
    for job in jobs:
        request = _request(job.sentence.text, job.voice.name, "standard", STANDARD_MP3_RATE)
        stubber.add_response("synthesize_speech", _audio(polly_mp3), request)
    modes: list[str | None] = []

    def open_session(self: PollyEngine, *, mode: str | None = None) -> EngineSession:
        modes.append(mode)
        return PollySession(mode or "standard", client=stubber.client, sleep=lambda s: None)

    monkeypatch.setattr(PollyEngine, "open_session", open_session)
    out = tmp_path / "c"

    summary = synthesize_corpus(out, sentences, cfg, progress=False)

    stubber.assert_no_pending_responses()
    assert summary.failed == []
    assert summary.made == len(sentences)
    assert modes == ["standard"]  # one session for the one worker
    rows = [json.loads(line) for line in (out / MANIFEST).read_text("utf-8").splitlines()]
    assert sorted(r["text"] for r in rows) == sorted(texts)
    spoken_by = {job.sentence.text: job.voice.id for job in jobs}
    digest = hashlib.sha256(polly_mp3).hexdigest()
    for row in rows:
        assert row["voice"] in {v.id for v in talk8}
        assert row["voice"] == spoken_by[row["text"]]
        assert row["engine"] == "polly"
        stored = (out / row["path"]).read_bytes()
        assert stored == polly_mp3  # Polly's mp3 is kept as it came, not re-encoded
        assert row["sha256"] == digest
        assert row["sample_rate"] == STANDARD_MP3_RATE
        assert row["duration_s"] > 0


def test_a_region_botocore_refuses_is_a_reason_not_a_traceback(
    aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AWS_DEFAULT_REGION='us east 1' gave botocore's InvalidRegionError traceback from synth,
    a warning per clip in a corpus and a 500 over HTTP (review): it is the engine's
    unavailable reason, checked before any clip, and a session says it in one line."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us east 1")
    reason = PollyEngine().unavailable_reason()
    assert reason is not None and "region" in reason and "us east 1" in reason
    with pytest.raises(EngineUnavailableError, match="cannot use polly"):
        PollySession()


class FakePolly:
    """Amazon Polly's SynthesizeSpeech on 127.0.0.1, for the whole botocore stack (its own
    retries included, which the Stubber skips). ``answers``: what each request gets in turn
    (the last one repeats): an error code, or "audio" (``mp3``)."""

    def __init__(self, mp3: bytes) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.mp3, self.answers, self.requests = mp3, ["audio"], []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                fake.requests.append(json.loads(body or b"{}"))
                n = len(fake.requests)
                answer = fake.answers[min(n, len(fake.answers)) - 1]
                if answer == "reset":  # the connection closed without an answer
                    self.close_connection = True
                    return
                status = {"audio": 200, "ServiceFailureException": 500}.get(answer, 400)
                status = 403 if answer in ("UnrecognizedClientException",) else status
                data = fake.mp3 if answer == "audio" else json.dumps({"message": "no"}).encode()
                self.send_response(status)
                if answer != "audio":
                    self.send_header("x-amzn-ErrorType", f"{answer}:")
                self.send_header(
                    "Content-Type", "audio/mpeg" if status == 200 else "application/json"
                )
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def fake_polly(
    aws_env: None, polly_mp3: bytes, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FakePolly]:
    fake = FakePolly(polly_mp3)
    monkeypatch.setenv("AWS_ENDPOINT_URL_POLLY", fake.url)
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def test_throttling_costs_max_attempts_requests_in_all(fake_polly: FakePolly) -> None:
    """botocore's own retries under the session's made 18 requests of one sentence (review);
    the requests reach a real endpoint here, which the Stubber cannot show."""
    fake_polly.answers = ["ThrottlingException"]
    session = PollySession(sleep=lambda s: None)
    with pytest.raises(EngineServiceError, match=r"polly:Joanna: ThrottlingException.*6 requests"):
        session.synthesize(find_voice("polly:Joanna"), TEXT)
    assert len(fake_polly.requests) == polly.MAX_ATTEMPTS
    fake_polly.answers = ["ThrottlingException", "audio"]  # throttling that clears
    fake_polly.requests.clear()
    assert session.synthesize(find_voice("polly:Joanna"), TEXT).encoded == fake_polly.mp3
    assert len(fake_polly.requests) == 2
    # a connection reset is passing too: it was no longer retried once botocore's retries
    # were off (a review)
    fake_polly.answers = ["reset", "audio"]
    fake_polly.requests.clear()
    assert session.synthesize(find_voice("polly:Joanna"), TEXT).encoded == fake_polly.mp3
    assert len(fake_polly.requests) == 2


def test_stop_ends_a_session_waiting_to_retry(fake_polly: FakePolly) -> None:
    """SIGTERM during throttling took 71 s and 72 requests to end a run (review)."""
    import threading
    import time

    fake_polly.answers = ["ThrottlingException"]
    session = PollySession()  # the real waits, 0.5 s doubled
    raised: list[BaseException] = []

    def speak() -> None:
        try:
            session.synthesize(find_voice("polly:Joanna"), TEXT)
        except SynthesisError as e:
            raised.append(e)

    worker = threading.Thread(target=speak)
    worker.start()
    while not fake_polly.requests:
        time.sleep(0.01)
    session.stop()
    worker.join(timeout=30)
    assert not worker.is_alive()
    assert len(fake_polly.requests) == 1 and "stopped" in str(raised[0])


def test_refused_credentials_stop_a_corpus_at_the_first_clip(
    fake_polly: FakePolly, tmp_path: Path
) -> None:
    """Bad credentials made 2 requests and a warning for every clip of a corpus (review): the
    first refusal stops the run, in one line, the clips made before kept."""
    fake_polly.answers = ["audio", "audio", "UnrecognizedClientException"]
    sentences = [Sentence(sentence_id(t), t) for t in (f"Sentence number {i}." for i in range(8))]
    cfg = SynthConfig(voices=("polly:Joanna",), assign="all", workers=1)
    with pytest.raises(EngineAccessError, match=r"refuses these AWS credentials.*kept"):
        synthesize_corpus(tmp_path / "c", sentences, cfg, progress=False)
    assert len(fake_polly.requests) <= 3 + cfg.workers  # a worker may have started the next
    assert len((tmp_path / "c" / MANIFEST).read_text().splitlines()) == 2
    fake_polly.answers = ["audio"]
    summary = synthesize_corpus(tmp_path / "c", sentences, cfg, progress=False)
    assert (summary.made, summary.skipped) == (6, 2)


def test_a_clip_polly_answers_badly_is_asked_for_once(
    fake_polly: FakePolly, tmp_path: Path
) -> None:
    """A silent answer was asked for again, and billed, before it was reported (review)."""
    silent = encode_audio(np.zeros(STANDARD_MP3_RATE, np.float32), STANDARD_MP3_RATE, "mp3")
    fake_polly.mp3 = silent
    cfg = SynthConfig(voices=("polly:Joanna",), assign="all", workers=1)
    summary = synthesize_corpus(tmp_path / "c", [Sentence("s1", "Hello.")], cfg, progress=False)
    assert len(summary.failed) == 1 and len(fake_polly.requests) == 1


@pytest.mark.slow  # the server loads the bundled encoder: 8 s
def test_polly_failing_a_server_is_not_the_clients_fault(
    fake_polly: FakePolly, tmp_path: Path
) -> None:
    """Credentials refused and throttling were 422 bad_request, unlogged (review): 502
    engine_failed, the message for a client naming no account details."""
    from fastapi.testclient import TestClient

    from whichvoice.serve.app import create_app
    from whichvoice.serve.service import ServeConfig

    fake_polly.answers = ["UnrecognizedClientException"]
    cfg = ServeConfig(gallery=str(tmp_path / "g.sqlite"), encoder="bundled", allow_polly=True)
    app = create_app(cfg)
    with TestClient(app) as client:
        r = client.post("/v1/synthesize", json={"text": "Hello.", "voice": "polly:Joanna"})
    assert (r.status_code, r.json()["kind"]) == (502, "engine_failed"), r.text
    assert "AWS_ACCESS_KEY_ID" not in r.json()["error"] and "refused" in r.json()["error"]


def test_a_neural_only_voice_is_labelled_neural(
    stubber: Stubber, polly_mp3: bytes, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """polly:Ruth in the default mode is spoken by the neural engine: its clips were labelled
    polly, family polly-standard (review)."""
    stubber.add_response(
        "synthesize_speech", _audio(polly_mp3), _request("Hello.", "Ruth", "neural", 24_000)
    )
    monkeypatch.setattr(
        PollyEngine,
        "open_session",
        lambda self, *, mode=None: PollySession(mode or "standard", client=stubber.client),
    )
    cfg = SynthConfig(voices=("polly:Ruth",), assign="all", workers=1)
    synthesize_corpus(tmp_path / "c", [Sentence("s1", "Hello.")], cfg, progress=False)
    row = json.loads((tmp_path / "c" / MANIFEST).read_text())
    assert row["engine"] == "polly-neural"
    from whichvoice.voices.families import engine_family

    # its family without the label, or under the label older corpora gave it
    assert engine_family("polly:Ruth") == engine_family("polly:Ruth", "polly") == "polly-neural"
    assert engine_family("polly:Joanna") == "polly-standard"


def test_a_corpus_resumed_in_the_other_polly_mode_is_refused(aws_env: None, tmp_path: Path) -> None:
    """A neural resume of a standard corpus mixed 22 and 24 kHz clips under one voice."""
    from whichvoice.corpus import SynthConfigError

    out = tmp_path / "c"
    out.mkdir()
    (out / "synth.json").write_text(
        json.dumps({"format": "mp3", "assign": "all", "polly_engine": "standard"})
    )
    cfg = SynthConfig(voices=("polly:Joanna",), assign="all", polly_engine="neural")
    with pytest.raises(SynthConfigError, match="--polly-engine standard, not neural"):
        synthesize_corpus(out, [Sentence("s1", "Hello.")], cfg, progress=False)
    # a run without a Polly voice changes nothing of it (it was refused: "not (none)")
    from whichvoice.corpus import _check_settings

    _check_settings(out, SynthConfig(voices=("flite:slt",), assign="all"), [])
    # a corpus with no mode recorded yet (older, or no Polly voice so far) records the first
    (out / "synth.json").write_text(json.dumps({"format": "mp3", "assign": "all"}))
    joanna = [find_voice("polly:Joanna")]
    _check_settings(out, SynthConfig(voices=("polly:Joanna",), assign="all"), joanna)
    assert json.loads((out / "synth.json").read_text())["polly_engine"] == "standard"
    with pytest.raises(SynthConfigError, match="--polly-engine standard, not neural"):
        _check_settings(out, cfg, joanna)
    # made before the key, with Polly clips: their labels say the mode they were made in
    (out / "synth.json").write_text(json.dumps({"format": "mp3", "assign": "all"}))
    row = {"id": "a", "path": "audio/a.mp3", "voice": "polly:Joanna", "engine": "polly",
           "sentence_id": "s1", "text": "Hello.", "sample_rate": 22050, "duration_s": 1.0,
           "sha256": "0"}  # fmt: skip
    (out / MANIFEST).write_text(json.dumps(row) + "\n")
    with pytest.raises(SynthConfigError, match="--polly-engine standard, not neural"):
        _check_settings(out, cfg, joanna)


def test_neural_mode_with_standard_only_voices_is_refused_before_any_request(
    aws_env: None, tmp_path: Path
) -> None:
    from whichvoice.corpus import SynthConfigError

    cfg = SynthConfig(voices=("polly:Joanna,polly:Nicole",), polly_engine="neural")
    with pytest.raises(SynthConfigError, match="no neural engine for polly:Nicole"):
        synthesize_corpus(tmp_path / "c", [Sentence("s1", "Hello.")], cfg, progress=False)
    assert not (tmp_path / "c").exists()
    with pytest.raises(SynthConfigError, match="polly_engine must be one of"):
        SynthConfig(polly_engine="neurall")

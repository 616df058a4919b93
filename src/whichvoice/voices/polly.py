"""Amazon Polly through boto3: the talk's voices, for users with AWS credentials.

Credentials and region come from the standard chain (environment, shared files, SSO, ...).
The standard engine is used by default; ``mode="neural"`` asks for the neural one, and voices
that exist only as neural use it whatever the mode.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from whichvoice.audio import read_audio
from whichvoice.errors import (
    EngineAccessError,
    EngineServiceError,
    EngineUnavailableError,
    SynthesisError,
    TextTooLongError,
)
from whichvoice.voices.base import Engine, EngineSession, Speech, Voice
from whichvoice.voices.registry import register_engine

MAX_CHARS = 3000  # Polly's limit on billed characters in one request
MAX_ATTEMPTS = 6  # requests per sentence when Polly throttles or cannot be reached
BACKOFF_S = 0.5  # s; first wait, doubled on every retry, with jitter
CONNECT_TIMEOUT_S = 10.0  # s a try may wait to connect (botocore's default: 60)
READ_TIMEOUT_S = 30.0  # s a try may wait for Polly's answer (a sentence takes about 1 s)
_THROTTLED = {
    "ThrottlingException",
    "TooManyRequestsException",
    "Throttling",
    "ServiceUnavailableException",
    "ServiceFailureException",
}
# the account's fault, the same for every request: a corpus stops at the first
_REFUSED = {
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "MissingAuthenticationToken",
    "ExpiredToken",
    "ExpiredTokenException",
    "RequestExpired",
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
}
_STD, _NEU = ("standard", "neural"), ("neural",)

# name, gender, accent, engines it is offered with
_VOICES: list[tuple[str, str, str, tuple[str, ...]]] = [
    ("Ivy", "female", "en-US", _STD),
    ("Joanna", "female", "en-US", _STD),
    ("Joey", "male", "en-US", _STD),
    ("Justin", "male", "en-US", _STD),
    ("Kendra", "female", "en-US", _STD),
    ("Kimberly", "female", "en-US", _STD),
    ("Matthew", "male", "en-US", _STD),
    ("Salli", "female", "en-US", _STD),
    ("Danielle", "female", "en-US", _NEU),
    ("Gregory", "male", "en-US", _NEU),
    ("Kevin", "male", "en-US", _NEU),
    ("Ruth", "female", "en-US", _NEU),
    ("Stephen", "male", "en-US", _NEU),
    ("Amy", "female", "en-GB", _STD),
    ("Brian", "male", "en-GB", _STD),
    ("Emma", "female", "en-GB", _STD),
    ("Arthur", "male", "en-GB", _NEU),
    ("Geraint", "male", "en-GB-WLS", ("standard",)),
    ("Nicole", "female", "en-AU", ("standard",)),
    ("Russell", "male", "en-AU", ("standard",)),
    ("Olivia", "female", "en-AU", _NEU),
    ("Aditi", "female", "en-IN", ("standard",)),
    ("Raveena", "female", "en-IN", ("standard",)),
    ("Kajal", "female", "en-IN", _NEU),
    ("Niamh", "female", "en-IE", _NEU),
    ("Aria", "female", "en-NZ", _NEU),
    ("Ayanda", "female", "en-ZA", _NEU),
    ("Jasmine", "female", "en-SG", _NEU),
]
# the voices Polly speaks with its neural engine only, whatever the mode asked for
NEURAL_ONLY = frozenset(name for name, _, _, modes in _VOICES if "standard" not in modes)
# Polly's mp3 rates: 22.05 kHz for standard voices, 24 kHz for neural ones
_MP3_RATE = {"standard": 22_050, "neural": 24_000}
PCM_RATE = 16_000  # Hz, the rate asked for when raw PCM is wanted


_CREDENTIALS_TTL = 60.0  # s: a listing asks for every voice, a server on every request
_credentials_seen: dict[tuple, str | None] = {}


def _credentials_reason() -> str | None:
    """None when credentials are configured; never probes the EC2 metadata address. The
    answer is kept a minute for the same AWS settings (making a botocore session costs
    ~30 ms, and a listing asks once per voice)."""
    key = (
        tuple(
            sorted(
                (k, v) for k, v in os.environ.items() if k.startswith(("AWS_", "WHICHVOICE_AWS"))
            )
        ),
        int(time.monotonic() // _CREDENTIALS_TTL),
    )
    if key not in _credentials_seen:
        _credentials_seen.clear()
        _credentials_seen[key] = _load_credentials_reason()
    return _credentials_seen[key]


def _load_credentials_reason() -> str | None:
    try:
        import botocore.session
    except ImportError:
        return "boto3 is not installed"
    try:
        resolver = botocore.session.get_session().get_component("credential_provider")
        if os.environ.get("WHICHVOICE_AWS_IMDS") != "1":
            # the instance-metadata lookup is a network call that hangs off EC2
            resolver.remove("iam-role")
        creds = resolver.load_credentials()
    except Exception as e:  # a broken profile or SSO cache: report it, do not crash a listing
        return f"AWS credentials could not be loaded ({e})"
    if creds is None:
        return "no AWS credentials (set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)"
    return _region_reason()


def _region_reason() -> str | None:
    """Why the configured AWS region cannot be used (a name botocore refuses), else None."""
    import botocore.session
    from botocore.exceptions import BotoCoreError
    from botocore.utils import validate_region_name

    try:
        region = botocore.session.get_session().get_config_variable("region")
        if region:
            validate_region_name(region)
    except BotoCoreError as e:
        why = str(e).rstrip(".")
        return f"the AWS region cannot be used ({why}; set AWS_DEFAULT_REGION)"
    return None


class PollySession(EngineSession):
    """Speaks through one boto3 Polly client.

    ``client`` may be given (a stubbed one in tests, or one built with custom settings);
    ``sleep`` is the wait used between throttled attempts (by default one that ``stop``
    ends). The session retries throttling and an unreachable endpoint itself, MAX_ATTEMPTS
    requests in all: the client it makes does not retry (botocore's own retries under these
    made 18 requests of one sentence).
    """

    def __init__(
        self,
        mode: str = "standard",
        *,
        client: Any = None,
        output: str = "mp3",
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        if mode not in _STD:
            raise ValueError(f"unknown Polly engine {mode!r}; valid: standard, neural")
        if output not in ("mp3", "pcm"):
            raise ValueError(f"unknown Polly output {output!r}; valid: mp3, pcm")
        self.mode = mode
        self.output = output
        self._stopped = threading.Event()
        self._sleep = sleep or self._stopped.wait
        if client is None:
            import boto3
            from botocore.config import Config

            # a session of its own: sessions are opened from worker threads, and boto3's
            # shared default session (behind boto3.client) is not thread-safe
            from botocore.exceptions import BotoCoreError

            try:
                aws = boto3.Session()
                client = aws.client(
                    "polly",
                    region_name=aws.region_name or "us-east-1",
                    config=Config(
                        retries={"mode": "standard", "total_max_attempts": 1},
                        # an endpoint that does not answer costs 10 s a try, not botocore's 60
                        connect_timeout=CONNECT_TIMEOUT_S,
                        read_timeout=READ_TIMEOUT_S,
                    ),
                )
            except BotoCoreError as e:  # a region or profile botocore refuses
                raise EngineUnavailableError(f"cannot use polly: {e}") from e
        self._client = client

    def _engine_for(self, voice: Voice) -> str:
        if self.mode in voice.modes:
            return self.mode
        if self.mode == "neural":
            raise SynthesisError(f"{voice.id}: Polly offers no neural engine for this voice")
        return voice.modes[0]

    def synthesize(self, voice: Voice, text: str) -> Speech:
        if len(text) > MAX_CHARS:
            raise TextTooLongError(
                f"{voice.id}: text of {len(text)} characters is over Polly's limit of {MAX_CHARS}"
            )
        engine = self._engine_for(voice)
        rate = _MP3_RATE[engine] if self.output == "mp3" else PCM_RATE
        body = self._call(
            OutputFormat=self.output,
            Text=text,
            TextType="text",
            VoiceId=voice.name,
            Engine=engine,
            SampleRate=str(rate),
        )
        if self.output == "pcm":
            if len(body) < 2:
                raise SynthesisError(f"{voice.id}: Polly returned no audio")
            pcm = np.frombuffer(body[: len(body) // 2 * 2], dtype="<i2")
            return Speech(pcm.astype(np.float32) / 32768.0, rate)
        wave, got_rate = read_audio(body)
        return Speech(wave, got_rate, encoded=body, encoded_format="mp3")

    def stop(self) -> None:
        self._stopped.set()

    def _call(self, **request: str) -> bytes:
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectionError,
            EndpointConnectionError,
            HTTPClientError,
        )

        who = f"polly:{request['VoiceId']}"
        delay = BACKOFF_S
        for attempt in range(1, MAX_ATTEMPTS + 1):
            last = attempt == MAX_ATTEMPTS
            try:
                response = self._client.synthesize_speech(**request)
                stream = response["AudioStream"]
                try:
                    return stream.read()
                finally:
                    stream.close()
            except ClientError as e:
                error = e.response.get("Error", {})
                code = error.get("Code", "")
                said = f"{who}: {code}: {error.get('Message', '') or code}"
                if code in _REFUSED:
                    raise EngineAccessError(
                        f"{said} (Amazon Polly refuses these AWS credentials: check "
                        "AWS_PROFILE or AWS_ACCESS_KEY_ID and the account's permissions)",
                        public=f"{who}: Amazon Polly refused the server's AWS account ({code})",
                    ) from e
                status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
                if code not in _THROTTLED and status < 500:  # the request's own fault
                    raise SynthesisError(said) from e
                if last:
                    raise EngineServiceError(
                        f"{said} ({attempt} requests)",
                        public=f"{who}: Amazon Polly failed ({code})",
                    ) from e
            except (EndpointConnectionError, ConnectionError) as e:
                if last:
                    raise EngineAccessError(
                        f"{who}: cannot reach Amazon Polly ({e}; check the network and "
                        "AWS_DEFAULT_REGION)",
                        public=f"{who}: the server cannot reach Amazon Polly",
                    ) from e
            except HTTPClientError as e:  # a read timeout, a connection reset: passing
                if last:
                    raise EngineServiceError(
                        f"{who}: {e} ({attempt} requests)",
                        public=f"{who}: Amazon Polly did not answer ({type(e).__name__})",
                    ) from e
            except BotoCoreError as e:
                raise EngineServiceError(
                    f"{who}: {e}", public=f"{who}: Amazon Polly failed ({type(e).__name__})"
                ) from e
            self._sleep(delay * (1 + random.random()))
            delay *= 2
            if self._stopped.is_set():  # Ctrl-C: no more requests
                raise SynthesisError(f"{who}: stopped before Amazon Polly answered")
        raise AssertionError("unreachable")


@register_engine
class PollyEngine(Engine):
    name = "polly"
    packages = ()  # Amazon makes the audio: no version here decides it
    billed = True

    def voices(self) -> list[Voice]:
        return [
            Voice(self.name, n, g, a, _MP3_RATE[modes[0]], "Amazon Polly", modes)
            for n, g, a, modes in _VOICES
        ]

    def unavailable_reason(self) -> str | None:
        return _credentials_reason()

    def open_session(self, *, mode: str | None = None) -> EngineSession:
        return PollySession(mode or "standard")

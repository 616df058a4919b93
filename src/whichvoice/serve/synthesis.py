"""``POST /v1/synthesize`` (the talk's live demo: type a phrase, pick a voice) and
``GET /v1/voices``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from whichvoice.corpus import speak
from whichvoice.errors import UnknownVoiceError
from whichvoice.serve.schemas import SynthesizeRequest, VoicesResponse
from whichvoice.serve.service import HTTPProblem, ServiceDep, media_type, named_type
from whichvoice.voices import all_voices, find_voice, get_engine, resolve_voices

router = APIRouter(tags=["synthesis"])


# a request's bytes at most: 1,000 characters of text, each up to a 12-byte JSON escape
# (a surrogate pair), and a voice id; read under this limit before it is parsed
MAX_REQUEST_BYTES = 16 * 1024


MP3_RESPONSE = {
    "description": "The phrase spoken, as mp3",
    "content": {"audio/mpeg": {"schema": {"type": "string", "format": "binary"}}},
}


@router.post(
    "/v1/synthesize",
    summary="Speak a phrase with a local voice",
    # the clip's type alone: the default JSON type listed beside it sent generated clients
    # to parse the mp3 as JSON
    response_class=Response,
    responses={200: MP3_RESPONSE},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": SynthesizeRequest.model_json_schema()}},
        }
    },
)
async def synthesize(request: Request, service: ServiceDep) -> Response:
    """`{"text", "voice"}` -> the clip as mp3. Each client may ask `--synth-per-minute`
    times a minute (429 past that); Amazon Polly voices only on a server started with
    `--allow-polly` (403 otherwise: Polly is billed to the server's AWS account). 413 for a
    request over 16 KiB (more than the longest text)."""
    media = media_type(request)
    if media != "application/json":  # a form or text/plain body: a page elsewhere may send one
        raise HTTPProblem(415, "unsupported_type", f"{named_type(media)}: send application/json")
    body = await service.body(request, limit=MAX_REQUEST_BYTES)
    try:
        req = SynthesizeRequest.model_validate_json(body)
    except ValidationError as e:
        first = e.errors(include_url=False)[0] if e.errors() else {}
        if first.get("type") == "json_invalid":  # worded as the other JSON routes word it
            reason = first.get("ctx", {}).get("error") or first.get("msg", "")
            raise HTTPProblem(422, "invalid", f"the body is not JSON ({reason})") from None
        raise RequestValidationError(
            [{**err, "loc": ("body", *err["loc"])} for err in e.errors(include_url=False)]
        ) from None
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
    if voice.engine == "polly" and not service.cfg.allow_polly:
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


def voice_listing(service) -> VoicesResponse:
    """The classifier's voices, and the voices this server can synthesize now (the
    classifier's first, then default8's, then the rest; espeak-ng's hundreds of variants
    last)."""
    labels = service.model.labels if service.model else []
    first = [v.id for v in resolve_voices("default8")]
    usable = [
        v
        for v in all_voices()
        if v.engine != "polly" or (service.cfg.allow_polly and v.id in labels)
    ]
    usable = [v for v in usable if get_engine(v.engine).voice_unavailable_reason(v) is None]
    usable.sort(
        key=lambda v: (
            v.id not in labels,
            v.id not in labels and v.engine == "espeak-ng",
            v.id not in first,
            v.id,
        )
    )
    return VoicesResponse(
        model=service.model.config["model"] if service.model else None,
        labels=labels,
        synthesis=[
            {"id": v.id, "engine": v.engine, "gender": v.gender, "accent": v.accent} for v in usable
        ],
    )


@router.get(
    "/v1/voices",
    response_model=VoicesResponse,
    summary="What the model knows and what can be synthesized",
)
async def voices(service: ServiceDep) -> VoicesResponse:
    return await run_in_threadpool(voice_listing, service)

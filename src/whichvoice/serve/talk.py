"""The talk's endpoint: ``POST /invocations`` (base64 mp3 in, voice names out)."""

from __future__ import annotations

import base64
import binascii
import json

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from whichvoice.serve.service import (
    ClassifierDep,
    HTTPProblem,
    ServiceDep,
    is_audio_type,
    media_type,
    named_type,
)

router = APIRouter(tags=["the talk"])


def maybe_base64(body: bytes) -> bytes:
    """The talk posted base64 text (wrapped in lines or not); raw audio bytes are accepted
    too. A text body that is not base64 is a 422 that says so."""
    text = b"".join(body.split())  # base64 tools wrap lines at 76 columns
    if not text:
        return b""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        if body[:4096].isascii() and b"\0" not in body[:4096]:  # text, not audio bytes
            raise HTTPProblem(422, "invalid", f"the body is text but not base64 ({e})") from e
        return body


def base64_items(body: bytes) -> list[bytes]:
    """The decoded items of a JSON list of base64 strings; 422 for anything else."""
    try:
        items = json.loads(body)
    except RecursionError:
        raise HTTPProblem(422, "invalid", "the body is not JSON (nested too deeply)") from None
    except ValueError as e:
        raise HTTPProblem(422, "invalid", f"the body is not JSON ({e})") from e
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise HTTPProblem(422, "invalid", "expected a JSON list of base64-encoded audio strings")
    datas = []
    for n, item in enumerate(items):
        try:
            # as the raw form: line breaks of a wrapping encoder are not part of the data
            datas.append(base64.b64decode("".join(item.split()), validate=True))
        except (binascii.Error, ValueError) as e:
            raise HTTPProblem(422, "invalid", f"item {n}: not base64 ({e})") from e
    return datas


@router.get("/ping", summary="The talk's health check")
async def ping() -> dict:
    """200 while the server answers: what a SageMaker-style host asks before sending
    `/invocations` (no API key needed, as for `/healthz`)."""
    return {"status": "ok"}


@router.post(
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
async def invocations(request: Request, service: ServiceDep, model: ClassifierDep) -> JSONResponse:
    """`audio/mp3` or `audio/mpeg` body of base64 mp3 -> `"Joanna"`; a JSON list of base64
    mp3s -> a list of names. Raw audio bodies (any `audio/*`) are accepted too."""
    media = media_type(request)
    body = await service.body(request)
    if media == "application/json":
        datas = base64_items(body)
        preds = await run_in_threadpool(
            lambda: [service.identify(d, f"item {n}") for n, d in enumerate(datas)]
        )
        return JSONResponse([model.display_name(p.answer) for p in preds])
    if is_audio_type(media):
        pred = await run_in_threadpool(service.identify, maybe_base64(body))
        return JSONResponse(model.display_name(pred.answer))
    raise HTTPProblem(
        415,
        "unsupported_type",
        f"{named_type(media)} is not audio: send audio/mpeg or application/json",
    )

"""``POST /v1/diarize``: who speaks when in one upload, naming the enrolled voices."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from whichvoice.serve.enrollment import CHANNEL
from whichvoice.serve.identify import AUDIO_BODY
from whichvoice.serve.schemas import DiarizeResponse
from whichvoice.serve.service import HTTPProblem, ServiceDep

router = APIRouter(tags=["diarization"])


def diarize_upload(
    service, data: bytes, name: str, settings: dict, channel: int | None = None
) -> DiarizeResponse:
    from whichvoice.diarize import (
        DiarizeConfig,
        DiarizeError,
        DiarizeUnavailableError,
        check_installed,
        diarize,
    )

    try:
        cfg = DiarizeConfig(**settings).check()
        check_installed(cfg)
    except DiarizeUnavailableError as e:  # the server's lack, not the client's mistake
        raise HTTPProblem(503, "unavailable", str(e)) from e
    except DiarizeError as e:
        raise HTTPProblem(422, "invalid", str(e)) from e
    # a tone holds no turns: none answered
    audio = service.decode(data, name, judged=False, channel=channel)
    with service.gallery() as (encoder, g):
        result = diarize(audio, encoder.model, gallery=g if g.voices() else None, config=cfg)
    return DiarizeResponse(**result.to_dict())


@router.post(
    "/v1/diarize",
    response_model=DiarizeResponse,
    summary="Who speaks when?",
    openapi_extra={"requestBody": AUDIO_BODY},
)
async def diarize_route(
    request: Request,
    service: ServiceDep,
    num_speakers: int | None = Query(None, ge=1, le=50, description="Exactly N voices"),
    min_speakers: int | None = Query(None, ge=1, le=50, description="At least A voices"),
    max_speakers: int | None = Query(None, ge=1, le=50, description="At most B voices"),
    threshold: float | None = Query(
        None,
        gt=0,
        lt=2,
        allow_inf_nan=False,
        description="Clustering distance; default: calibrated per encoder",
    ),
    vad: Literal["energy", "silero"] = Query(
        "energy",
        description="Speech detector: `energy` (fast; music, applause or laughter count as "
        "sound to cluster, answered as unknown voices) or `silero` (slower; speech alone)",
    ),
    channel: int | None = CHANNEL,
) -> DiarizeResponse:
    """One recording, as multipart field `file` or as the raw body (any audio type, up to the
    server's duration limit). Its turns (`segments`: start, end, speaker, score, overlap),
    each voice named after the enrolled voice it matches at the diarization naming threshold
    (set on dev conversations, above the verification threshold; `settings.naming_threshold`
    says which), else `unknown-1`, `unknown-2`, ...; `speakers` sums each voice's speech;
    `settings.warning` says when fewer voices were found than asked for."""
    if num_speakers is not None and (min_speakers is not None or max_speakers is not None):
        raise HTTPProblem(422, "invalid", "num_speakers goes without min_speakers and max_speakers")
    if num_speakers is not None and threshold is not None:  # the count decides, not a distance
        raise HTTPProblem(422, "invalid", "num_speakers goes without threshold")
    if max_speakers is not None and max_speakers < (min_speakers or 1):
        raise HTTPProblem(
            422, "invalid", f"max_speakers {max_speakers} is under min_speakers {min_speakers}"
        )
    ((name, data),) = await service.uploads(request, many=False)
    settings = {"num_speakers": num_speakers, "min_speakers": min_speakers or 1,
                "max_speakers": max_speakers, "threshold": threshold, "vad": vad}  # fmt: skip
    return await run_in_threadpool(diarize_upload, service, data, name, settings, channel)

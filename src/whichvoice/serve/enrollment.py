"""The routes of enrolled voices: enroll, verify, the gallery, and the open-set answer that
``POST /v1/identify`` adds. Each calls the library (``whichvoice.verification``,
``whichvoice.gallery``), as the CLI's commands do."""

from __future__ import annotations

import json
import logging

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from whichvoice.audio import Channel, Decoded
from whichvoice.errors import AudioDecodeError, SilentAudioError, WhichvoiceError
from whichvoice.fusion import embedding_dim
from whichvoice.gallery import MAX_NAME, VoiceNameError, voice_name
from whichvoice.serve.schemas import (
    EnrolledVoice,
    EnrollResponse,
    GalleryAnswer,
    GalleryResponse,
    ImportResponse,
    RemovedResponse,
    RenameRequest,
    VerifyResponse,
)
from whichvoice.serve.service import (
    HTTPProblem,
    Service,
    ServiceDep,
    media_type,
    named_type,
)
from whichvoice.verification import (
    NoUsableRecordings,
    TooLittleSpeech,
    content_digest,
    enroll,
    identify,
    verify,
)

log = logging.getLogger(__name__)
router = APIRouter(tags=["enrolled voices"])

AUDIO_FILES_BODY = {
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {
                    "file": {"type": "array", "items": {"type": "string", "format": "binary"}}
                },
            }
        },
        "audio/mpeg": {"schema": {"type": "string", "format": "binary"}},
    }
}
# the name's length is checked after it is normalised (spaces stripped, composed), as the CLI
# checks it: a combining accent typed apart is one character; this bound only limits the work
NAME = Query(
    min_length=1,
    max_length=8 * MAX_NAME,
    description=f"The enrolled voice's name: 1 to {MAX_NAME} characters once spaces at its ends "
    "are stripped and it is put in Unicode's composed form",
)
THRESHOLD = Query(
    default=None,
    ge=-1.0,
    le=1.0,
    allow_inf_nan=False,
    description="Accept at this cosine score instead of the encoder's calibrated threshold",
)
CHANNEL = Query(
    default=None,
    ge=1,
    le=1024,
    description="Read this channel of each file alone (1: the first, left): a call recorded "
    "with a party on each channel; default: the channels mixed into one",
)


def _name(name: str) -> str:
    try:
        return voice_name(name)
    except VoiceNameError as e:
        raise HTTPProblem(422, "invalid", f"name: {e}") from e


def gallery_answer(
    service: Service, audio: Decoded, *, required: bool, threshold: float | None = None
) -> GalleryAnswer | None:
    """Which enrolled voice ``data`` is (``"unknown"`` under the threshold). None when no voice
    is enrolled or the gallery cannot be used, unless ``required`` (the server has no
    classifier): then 409 for an empty gallery and the gallery's own error otherwise."""
    if not required and not service.gallery_path.exists():
        return None  # nothing enrolled: no need to load the encoder
    try:
        with service.gallery() as (encoder, g):
            if not g.names():
                if required:
                    raise HTTPProblem(
                        409,
                        "empty_gallery",
                        "no voices enrolled: enroll one from a few clips first "
                        "(the page, or POST /v1/enroll?name=NAME)",
                    )
                return None
            result = identify(
                encoder.model, g, [audio], threshold=threshold, engine_head=encoder.engine_head
            )[0]
    except (HTTPProblem, WhichvoiceError) as e:
        if required:
            raise
        log.warning("no gallery answer: %s", e)
        return None
    if isinstance(result, WhichvoiceError):
        # the classifier answered and the encoder could not use this input: its answer
        # stands, unless the clip holds too little speech for either to judge
        if not required and not isinstance(result, SilentAudioError):
            log.warning("no gallery answer: %s", result)
            return None
        raise result  # the app answers it (error_status) and logs a 5xx
    d = {**result.to_dict(), "encoder": g.model_id}
    return GalleryAnswer(**{k: v for k, v in d.items() if k in GalleryAnswer.model_fields})


def enroll_files(
    service: Service, name: str, files: list[tuple[str, bytes]], channel: int | None = None
) -> EnrollResponse:
    """Enroll the usable ``files`` (their ``channel`` alone, where one is asked for) into
    ``name``; the others are reported by their index."""
    decoded = service.decode_all(files, channel)
    good = [i for i, d in enumerate(decoded) if isinstance(d, Decoded)]
    why = {i: d for i, d in enumerate(decoded) if isinstance(d, str)}
    if not good:
        raise _no_speech(name, files, why)
    # the uploads' own bytes, as the CLI keeps a file's: the same recording sent again, or
    # enrolled from the command line before, counts once
    # (one channel of a recording is another recording than its other channel, or the mix)
    digests = [content_digest(_on_channel(files[i][1], channel)) for i in good]
    warnings: list[str] = []  # what looks wrong but was enrolled, said to the client too
    # (its public message: the request's own files and voice, nothing else of the gallery)
    try:
        with service.gallery(create=True) as (encoder, g):
            voice, failed = enroll(
                encoder.model, g, name, [decoded[i] for i in good], digests=digests,
                warn=lambda w: warnings.append(w.public_message()),
            )  # fmt: skip
    except NoUsableRecordings as e:  # no file decoded had speech: every file's reason
        why.update({good[j]: err.public_message() for j, err in e.failed})
        raise _no_speech(name, files, why) from e
    except TooLittleSpeech as e:  # speech, but too little in all; and the files not used
        why.update({good[j]: err.public_message() for j, err in e.failed})
        reasons = _reasons(files, why)
        message = e.public_message() + (f"; not used: {reasons}" if reasons else "")
        raise HTTPProblem(422, "no_speech", message) from e
    except (AudioDecodeError, SilentAudioError) as e:  # the one file decoded had none
        if len(good) != 1:
            raise
        why[good[0]] = e.public_message()
        raise _no_speech(name, files, why) from e
    why.update({good[j]: e.public_message() for j, e in failed})  # j: index among good
    s = voice.summary()
    return EnrollResponse(
        name=s["name"],
        clips=s["clips"],
        seconds=s["seconds"],
        model=s["model"],
        added=len(good) - len(failed),
        skipped=[{"index": i, "file": files[i][0], "error": why[i]} for i in sorted(why)],
        warnings=warnings,
    )


def _no_speech(name: str, files: list[tuple[str, bytes]], why: dict[int, str]) -> HTTPProblem:
    """422 ``no_speech``: no file sent to ``name`` could be enrolled, with each one's reason
    (the request's own files: named by the names they were sent under)."""
    return HTTPProblem(
        422,
        "no_speech",
        f"{name}: no usable speech in the {len(files)} file(s) sent: {_reasons(files, why)}",
    )


def _reasons(files: list[tuple[str, bytes]], why: dict[int, str]) -> str:
    """Each file's reason, in order, named by the name it was sent under."""
    return "; ".join(
        why[i] if why[i].startswith(f"{files[i][0]}:") else f"{files[i][0]}: {why[i]}"
        for i in sorted(why)
    )


def _on_channel(data: bytes, channel: int | None) -> bytes | Channel:
    """An upload's bytes, or its ``channel`` (``audio.Channel``): what its digest is of."""
    return data if channel is None else Channel(data, channel)


def verify_files(
    service: Service,
    name: str,
    files: list[tuple[str, bytes]],
    threshold: float | None = None,
    channel: int | None = None,
) -> VerifyResponse:
    """A verdict per file, in order; a file that cannot be used gets its error. 404 for a
    name that is not enrolled, before any file is decoded."""
    with service.gallery() as (_, g):
        g.get(name)  # NotEnrolledError
    decoded = service.decode_all(files, channel)
    good = [d for d in decoded if isinstance(d, Decoded)]
    # as enrollment digests an upload: its bytes (a replay of an enrolled one says so)
    digests = [
        content_digest(_on_channel(data, channel))
        for (_, data), d in zip(files, decoded, strict=True)
        if isinstance(d, Decoded)
    ]
    with service.gallery() as (encoder, g):
        verdicts = iter(verify(encoder.model, g, name, good, threshold=threshold, digests=digests))
    results = []
    for (path, _), d in zip(files, decoded, strict=True):
        v = d if isinstance(d, str) else next(verdicts)  # in the good files' order
        if isinstance(v, str | WhichvoiceError):
            error = v if isinstance(v, str) else v.public_message()
            results.append({"path": path, "error": error})
        else:
            results.append({**v.to_dict(), "path": path, "encoder": g.model_id, "channel": channel})
    return VerifyResponse(results=results)


@router.post(
    "/v1/enroll",
    response_model=EnrollResponse,
    summary="Enroll a voice from a few recordings",
    openapi_extra={"requestBody": AUDIO_FILES_BODY},
)
async def enroll_voice(
    request: Request, service: ServiceDep, name: str = NAME, channel: int | None = CHANNEL
) -> EnrollResponse:
    """Files as multipart field `file` (repeat it), or one raw audio body. Adds to the
    voice when it is already enrolled. 422 when no file has usable speech."""
    name = _name(name)
    files = await service.uploads(request, many=True)
    return await run_in_threadpool(enroll_files, service, name, files, channel)


@router.post(
    "/v1/verify",
    response_model=VerifyResponse,
    summary="Is this the enrolled voice it claims to be?",
    openapi_extra={"requestBody": AUDIO_FILES_BODY},
)
async def verify_claim(
    request: Request,
    service: ServiceDep,
    name: str = NAME,
    threshold: float | None = THRESHOLD,
    channel: int | None = CHANNEL,
) -> VerifyResponse:
    """One result per file, in order: the verdict, or the file's error. 404 when `name`
    is not enrolled."""
    name = _name(name)
    files = await service.uploads(request, many=True)
    return await run_in_threadpool(verify_files, service, name, files, threshold, channel)


def _export(service: Service) -> dict:
    with service.gallery() as (_, g):
        return g.export_json()


def _import(service: Service, data: dict, replace: bool) -> ImportResponse:
    with service.gallery(create=True) as (encoder, g):
        dim = embedding_dim(encoder.model)
        return ImportResponse(imported=g.import_json(data, replace=replace, dim=dim))


def _listing(service: Service) -> GalleryResponse:
    with service.gallery() as (encoder, g):
        return GalleryResponse(
            model=encoder.id, voices=[EnrolledVoice(**v.summary()) for v in g.voices()]
        )


def _one(service: Service, name: str) -> EnrolledVoice:
    with service.gallery() as (_, g):
        return EnrolledVoice(**g.get(name).summary())


def _remove(service: Service, name: str) -> RemovedResponse:
    with service.gallery() as (_, g):
        stored = g.remove(name)
    return RemovedResponse(removed=stored)


def _rename(service: Service, name: str, new: str) -> EnrolledVoice:
    with service.gallery() as (_, g):
        return EnrolledVoice(**g.rename(name, new).summary())


# /v1/gallery/export is declared before /v1/gallery/{name} so it is not taken for a name
@router.get(
    "/v1/gallery/export",
    summary="Every enrolled voice as JSON (the `whichvoice gallery export` format)",
)
async def export_gallery(service: ServiceDep) -> JSONResponse:
    return JSONResponse(await run_in_threadpool(_export, service))


@router.post(
    "/v1/gallery/import",
    response_model=ImportResponse,
    summary="Add the voices of an export (voices already enrolled: only with replace=true)",
    openapi_extra={
        "requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}}
    },
)
async def import_gallery(
    request: Request, service: ServiceDep, replace: bool = False
) -> ImportResponse:
    """409 `model_mismatch` when the export was made with another encoder; 409
    `voice_exists` (nothing imported) when it names a voice already enrolled, unless
    `replace=true`."""
    media = media_type(request)
    if media != "application/json":  # as /v1/synthesize: a form or text is another mistake
        raise HTTPProblem(415, "unsupported_type", f"{named_type(media)}: send application/json")
    try:
        data = json.loads(await service.body(request))
    except RecursionError:
        raise HTTPProblem(422, "invalid", "the body is not JSON (nested too deeply)") from None
    except ValueError as e:
        raise HTTPProblem(422, "invalid", f"the body is not JSON ({e})") from e
    return await run_in_threadpool(_import, service, data, replace)


@router.get("/v1/gallery", response_model=GalleryResponse, summary="The enrolled voices")
async def list_gallery(service: ServiceDep) -> GalleryResponse:
    return await run_in_threadpool(_listing, service)


@router.get("/v1/gallery/{name:path}", response_model=EnrolledVoice, summary="One voice")
async def get_voice(name: str, service: ServiceDep) -> EnrolledVoice:
    return await run_in_threadpool(_one, service, name)


@router.delete("/v1/gallery/{name:path}", response_model=RemovedResponse, summary="Forget a voice")
async def remove_voice(name: str, service: ServiceDep) -> RemovedResponse:
    return await run_in_threadpool(_remove, service, name)


RENAME_BYTES = 4096  # a rename's body at most: {"name": ...} of MAX_NAME characters


@router.patch(
    "/v1/gallery/{name:path}",
    response_model=EnrolledVoice,
    summary="Rename a voice (its enrollment kept)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": RenameRequest.model_json_schema()}},
        }
    },
)
async def rename_voice(name: str, request: Request, service: ServiceDep) -> EnrolledVoice:
    """`{"name": NEW}`: 404 `not_enrolled` for an unknown voice; 409 `voice_exists` when NEW
    is another voice's; 422 `invalid` for a name that cannot be one; 413 for a body over
    4 KiB (read as the other routes read theirs, not whole first: a review)."""
    media = media_type(request)
    if media != "application/json":
        raise HTTPProblem(415, "unsupported_type", f"{named_type(media)}: send application/json")
    body = await service.body(request, limit=RENAME_BYTES)
    try:
        new = json.loads(body)["name"]
    except (ValueError, KeyError, TypeError) as e:
        raise HTTPProblem(422, "invalid", 'the body is not {"name": NEW}') from e
    return await run_in_threadpool(_rename, service, name, new)

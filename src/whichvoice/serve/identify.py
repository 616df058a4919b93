"""``POST /v1/identify``: the classifier's answer and the enrolled voices' (open set)."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from whichvoice.audio import resample
from whichvoice.errors import WhichvoiceError
from whichvoice.gallery import UNKNOWN
from whichvoice.serve.enrollment import CHANNEL, THRESHOLD, gallery_answer
from whichvoice.serve.schemas import IdentifyResponse, TraceResponse
from whichvoice.serve.service import HTTPProblem, ServiceDep

router = APIRouter(tags=["identification"])

AUDIO_BODY = {
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


def identify_upload(
    service,
    data: bytes,
    name: str,
    spectrogram: bool,
    threshold: float | None = None,
    channel: int | None = None,
) -> IdentifyResponse:
    """The answer to one upload (its ``channel`` alone, where one is asked for): the
    classifier's, with the gallery's beside it; without a classifier, the gallery's alone."""
    audio = service.decode(data, name, channel=channel)
    wave, rate = audio.wave, audio.rate
    png = spectrogram_png(wave, rate) if spectrogram else None
    picture = "data:image/png;base64," + base64.b64encode(png).decode() if png else None
    match = gallery_answer(service, audio, required=service.model is None, threshold=threshold)
    common = {
        "duration_s": round(wave.shape[0] / rate, 3),
        "channel": channel,
        "spectrogram_png": picture,
        "gallery": match,
    }
    if service.model is None:
        return IdentifyResponse(
            voice=match.voice,
            answer_source="gallery" if match.voice != UNKNOWN else "none",
            name=match.voice,
            confidence=None,
            probabilities={},
            top=[],
            windows=None,
            speech_s=None,
            **common,
        )
    pred = service.classify(audio)
    voice, source = one_answer(pred, match)
    return IdentifyResponse(
        voice=voice,
        answer_source=source,
        name=service.model.display_name(voice) if source == "classifier" else voice,
        classifier={
            k: v
            for k, v in pred.to_dict().items()
            if k
            in (
                "voice",
                "confidence",
                "known",
                "openset_score",
                "openset_threshold",
                "engine",
                "engine_confidence",
                "engine_known",
            )
        },
        # to 6 places, as `classifier` and the command line give them (a review); only when
        # the answer is the classifier's: beside an enrolled voice or "unknown" its probability
        # of another voice read as the answer's (a review: "unknown, confidence 0.99")
        confidence=round(pred.confidence, 6) if source == "classifier" else None,
        probabilities={v: round(p, 6) for v, p in pred.probabilities.items()},
        top=[{"voice": v, "p": round(p, 6)} for v, p in pred.top],
        windows=pred.windows,
        speech_s=pred.speech_s,
        **common,
    )


def one_answer(pred, match) -> tuple[str, str]:
    """(the answer, who gave it) from the classifier's prediction and the gallery's answer
    (None when nothing is enrolled): an enrolled voice that reaches its threshold first (the
    user enrolled it by name), else the classifier's voice unless its open-set score says
    unknown, else "unknown" (docs/http-api.md)."""
    if match is not None and match.voice != UNKNOWN:
        return match.voice, "gallery"
    if pred.known is not False:
        return pred.voice, "classifier"
    return UNKNOWN, "none"


@router.post(
    "/v1/identify",
    response_model=IdentifyResponse,
    summary="Which voice is this?",
    openapi_extra={"requestBody": AUDIO_BODY},
)
async def identify(
    request: Request,
    service: ServiceDep,
    spectrogram: bool = False,
    threshold: float | None = THRESHOLD,
    channel: int | None = CHANNEL,
) -> IdentifyResponse:
    """One file, as multipart field `file` or as the raw body (any audio type). The
    classifier's answer and, when voices are enrolled, the gallery's (`gallery`); a server
    without a classifier answers from the gallery alone (409 when it is empty)."""
    ((name, data),) = await service.uploads(request, many=False)
    return await run_in_threadpool(
        identify_upload, service, data, name, spectrogram, threshold, channel
    )


def _no_head_why(service, encoder) -> str:
    """Why no engine head reads this server's encoder, and what to do: from what was asked
    (``--encoder``), whether a gallery's voices chose the encoder, and whether resemblyzer is
    installed (looked for, not imported: the page asks /v1/trace after each identification)."""
    from importlib.util import find_spec

    from whichvoice.pretrained import INSTALL

    what = (
        f"no engine head reads this server's encoder ({encoder.id}); the shipped "
        "one reads resemblyzer's embedding (a part of auto)"
    )
    if find_spec("resemblyzer") is None:
        return f"{what}: {INSTALL.replace('`', '')}, then start the server again"
    if service.cfg.encoder is not None:
        return f"{what}: start the server with the default encoder (auto) or --encoder resemblyzer"
    if Path(service.gallery_path).is_file():  # its voices' encoder answers (gallery_encoder)
        return (
            f"{what}: this server answers with the encoder its gallery's voices were enrolled "
            "with; serve another --gallery (or enroll them again) to trace clips"
        )
    return f"{what}: the default encoder fell back to another (the server's log says why)"


def trace_upload(service, data: bytes, name: str, channel: int | None = None) -> TraceResponse:
    """Which engine family made one upload, with or without enrolled voices (``gallery``'s
    answer carries the engine too, but only once a voice is enrolled)."""
    from whichvoice.tracing import embed_and_trace

    encoder = service.encoder()
    if encoder.engine_head is None:
        raise HTTPProblem(409, "no_engine_head", _no_head_why(service, encoder))
    audio = service.decode(data, name, channel=channel)
    ((result, answer, _),) = embed_and_trace(
        encoder.model, encoder.engine_head, [audio], hear_speech=True
    )
    if isinstance(result, WhichvoiceError):
        raise result  # the app answers it (error_status) and logs a 5xx
    return TraceResponse(**answer.to_dict(), duration_s=round(audio.wave.shape[0] / audio.rate, 3))


@router.post(
    "/v1/trace",
    response_model=TraceResponse,
    summary="Which engine made this clip?",
    openapi_extra={"requestBody": AUDIO_BODY},
)
async def trace(
    request: Request, service: ServiceDep, channel: int | None = CHANNEL
) -> TraceResponse:
    """One file, as multipart field `file` or as the raw body (any audio type): the engine
    family that made it, or "unknown" (an engine the head never saw, or a person), as
    `whichvoice trace` answers. 409 when no engine head reads the server's encoder."""
    ((name, data),) = await service.uploads(request, many=False)
    return await run_in_threadpool(trace_upload, service, data, name, channel)

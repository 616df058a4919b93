"""``POST /v1/identify``: the classifier's answer and the enrolled voices' (open set)."""

from __future__ import annotations

import base64
import io

import numpy as np
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from whichvoice.audio import resample
from whichvoice.gallery import UNKNOWN
from whichvoice.serve.enrollment import THRESHOLD, gallery_answer
from whichvoice.serve.schemas import IdentifyResponse
from whichvoice.serve.service import ServiceDep

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
    service, data: bytes, name: str, spectrogram: bool, threshold: float | None = None
) -> IdentifyResponse:
    """The answer to one upload: the classifier's, with the gallery's beside it; without a
    classifier, the gallery's alone."""
    audio = service.decode(data, name)
    wave, rate = audio.wave, audio.rate
    png = spectrogram_png(wave, rate) if spectrogram else None
    picture = "data:image/png;base64," + base64.b64encode(png).decode() if png else None
    match = gallery_answer(service, audio, required=service.model is None, threshold=threshold)
    common = {
        "duration_s": round(wave.shape[0] / rate, 3),
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
        confidence=pred.confidence,
        probabilities=pred.probabilities,
        top=[{"voice": v, "p": p} for v, p in pred.top],
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
) -> IdentifyResponse:
    """One file, as multipart field `file` or as the raw body (any audio type). The
    classifier's answer and, when voices are enrolled, the gallery's (`gallery`); a server
    without a classifier answers from the gallery alone (409 when it is empty)."""
    ((name, data),) = await service.uploads(request, many=False)
    return await run_in_threadpool(identify_upload, service, data, name, spectrogram, threshold)

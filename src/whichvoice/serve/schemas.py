"""Request and response bodies of the HTTP API (what /docs shows)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class VoiceScore(BaseModel):
    voice: str
    p: float


class IdentifyResponse(BaseModel):
    voice: str = Field(description="The most likely voice id, e.g. flite:slt")
    name: str = Field(description="The voice as the talk's endpoint names it, e.g. slt or Joanna")
    confidence: float
    probabilities: dict[str, float] = Field(description="Every voice the model knows")
    top: list[VoiceScore]
    duration_s: float = Field(description="Seconds of audio received")
    windows: int = Field(description="Windows of audio the model scored")
    speech_s: float = Field(description="Seconds of speech used (silence and pauses dropped)")
    spectrogram_png: str | None = Field(
        default=None, description="data: URL of the log-mel spectrogram, when asked for"
    )


class SynthesizeRequest(BaseModel):
    text: str = Field(min_length=1, max_length=1000)
    voice: str = Field(description="A voice id, e.g. flite:slt (see GET /v1/voices)")


class SynthVoice(BaseModel):
    id: str
    engine: str
    gender: str | None
    accent: str | None


class VoicesResponse(BaseModel):
    model: str
    labels: list[str] = Field(description="The voices the model can recognise")
    synthesis: list[SynthVoice] = Field(description="Voices that can be synthesized here now")


class ErrorResponse(BaseModel):
    error: str
    kind: str

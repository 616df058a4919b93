"""Request and response bodies of the HTTP API (what /docs shows)."""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator


class VoiceScore(BaseModel):
    voice: str
    p: float


THRESHOLD_SOURCE = 'Where the threshold came from: "calibrated" (the encoder\'s) or "given"'
QUALITY = "How fit the upload is to be judged (whichvoice.quality; warnings only)"
ENCODER = "The encoder that scored it: the gallery's (an id)"
CHANNEL_READ = "The channel read alone (channel=N); null: the mix"


class RecordingQuality(BaseModel):
    """How fit the recording is to be judged (``whichvoice.quality``): warnings only, no
    decision reads it."""

    speech_s: float = Field(description="Seconds of speech the encoder kept")
    snr_db: float | None = Field(
        description="Estimated signal-to-noise ratio, dB (null: too little sound)"
    )
    clipped: float = Field(description="Share of the samples in flat tops at the peak, 0-1")
    bandwidth_hz: float | None = Field(
        description="Highest frequency within 50 dB of the spectrum's peak, Hz"
    )
    warnings: list[str] = Field(
        description="noisy, clipped, narrow band, short: each a phrase with its figure"
    )


class GalleryAnswer(BaseModel):
    voice: str = Field(description='The closest enrolled voice, or "unknown" under the threshold')
    nearest: str = Field(description="The closest enrolled voice, whether or not it passed")
    score: float = Field(description="Cosine similarity to the closest enrolled voice")
    probability: float = Field(
        description="P(the nearest voice), >= 0.5 exactly when the score reaches the threshold"
    )
    scores: dict[str, float] = Field(description="Every enrolled voice's score")
    threshold: float = Field(
        description="The accept threshold on the score: stricter the more voices are enrolled"
    )
    threshold_source: str = Field(description=THRESHOLD_SOURCE)
    dev_false_acceptance: float | None = Field(
        default=None, description="The calibrated threshold's false acceptance rate on dev trials"
    )
    dev_false_rejection: float | None = Field(
        default=None, description="The calibrated threshold's false rejection rate on dev trials"
    )
    voice_known: bool = Field(description="Whether the voice is an enrolled one")
    engine: str | None = Field(
        default=None,
        description='Which engine family made the clip (espeak-ng, piper, ...), "unknown" for '
        "one the engine head never saw; null when no engine head reads this server's encoder",
    )
    engine_confidence: float | None = Field(
        default=None, description="The engine head's probability of its most likely family"
    )
    engine_known: bool | None = Field(
        default=None, description="Whether the engine is one of the head's families"
    )
    engine_nearest: str | None = Field(
        default=None, description="The most likely known family, also when engine is unknown"
    )
    engine_score: float | None = Field(
        default=None, description="The open-set score, compared with the head's threshold"
    )
    engine_threshold: float | None = Field(
        default=None, description="The head's threshold: the engine is known from it up"
    )
    quality: RecordingQuality | None = Field(default=None, description=QUALITY)
    encoder: str | None = Field(default=None, description=ENCODER)


class ClassifierAnswer(BaseModel):
    voice: str = Field(description="The classifier's nearest voice (closed set)")
    confidence: float = Field(description="Its probability among the classifier's voices")
    known: bool | None = Field(
        description="Whether the open-set score says it is one of the classifier's voices at "
        "all (null: the classifier has no open-set threshold)"
    )
    openset_score: float | None = Field(
        default=None, description="Cosine of the clip to the voice's prototype"
    )
    openset_threshold: float | None = Field(
        default=None, description="Under it the classifier answers unknown (fitted on dev data)"
    )


class TraceResponse(BaseModel):
    """Which engine family made the clip: the engine head that reads the server's encoder
    (the shipped one reads auto's and resemblyzer's embeddings), as ``whichvoice trace``."""

    engine: str = Field(
        description='The engine family (espeak-ng, piper, ...), or "unknown" for one the head '
        "never saw (and for people: the head has no human family)"
    )
    engine_confidence: float = Field(description="The head's probability of its likeliest family")
    engine_known: bool = Field(description="Whether the score reaches the threshold")
    engine_nearest: str = Field(description="The likeliest known family, also when unknown")
    engine_score: float = Field(description="The open-set score, compared with the threshold")
    engine_threshold: float | None = Field(
        description="The head's threshold (null: a head that names a family for every clip)"
    )
    duration_s: float = Field(description="Seconds of audio received")


class IdentifyResponse(BaseModel):
    """With a classifier (``whichvoice serve RUN``): its answer, and ``gallery`` when a voice is
    enrolled. Without one: ``voice`` and ``name`` are the gallery's answer, ``confidence``,
    ``windows`` and ``speech_s`` are null, ``probabilities`` and ``top`` are empty."""

    voice: str = Field(
        description="The answer: an enrolled voice whose score reaches the threshold, else the "
        'classifier\'s voice when its open-set score says it knows it, else "unknown"'
    )
    answer_source: str = Field(
        description='Which answered: "gallery", "classifier" or "none" (unknown to both)'
    )
    classifier: ClassifierAnswer | None = Field(
        default=None, description="The classifier's own answer; null without a classifier"
    )
    name: str = Field(description="The voice as the talk's endpoint names it, e.g. slt or Joanna")
    confidence: float | None = Field(
        description="The classifier's probability of `voice` when the classifier gave the "
        "answer; null when an enrolled voice or nothing did (the classifier's probability of "
        "its own nearest voice is `classifier.confidence`; an enrolled voice's is "
        "`gallery.probability`)"
    )
    probabilities: dict[str, float] = Field(description="Every voice the classifier knows")
    top: list[VoiceScore]
    duration_s: float = Field(description="Seconds of audio received")
    channel: int | None = Field(default=None, description=CHANNEL_READ)
    windows: int | None = Field(description="Windows of audio the classifier scored")
    speech_s: float | None = Field(
        description="Seconds of speech the classifier used (silence and pauses dropped)"
    )
    spectrogram_png: str | None = Field(
        default=None, description="data: URL of the log-mel spectrogram, when asked for"
    )
    gallery: GalleryAnswer | None = Field(
        default=None,
        description="The open-set answer among the enrolled voices; null when none is enrolled",
    )


class SynthesizeRequest(BaseModel):
    text: str = Field(min_length=1, max_length=1000)
    voice: str = Field(description="A voice id, e.g. flite:slt (see GET /v1/voices)")

    @field_validator("text")
    @classmethod
    def _says_something(cls, text: str) -> str:
        # spaces or punctuation alone synthesize silence: refused before an engine runs
        if not any(c.isalnum() for c in text):
            raise ValueError("the text has no letter or digit to say")
        return text


class SynthVoice(BaseModel):
    id: str
    engine: str
    gender: str | None
    accent: str | None


class VoicesResponse(BaseModel):
    model: str | None = Field(description="The classifier's network; null without a classifier")
    labels: list[str] = Field(description="The voices the classifier can recognise")
    synthesis: list[SynthVoice] = Field(description="Voices that can be synthesized here now")


class Skipped(BaseModel):
    index: int = Field(description="Which file of the request, counted from 0")
    file: str
    error: str


class EnrollResponse(BaseModel):
    name: str
    clips: int = Field(description="Clips enrolled in this voice in all")
    seconds: float = Field(description="Seconds of speech enrolled in this voice in all")
    model: str = Field(description="The encoder the gallery belongs to")
    added: int = Field(description="Clips of this request that were enrolled")
    skipped: list[Skipped] = Field(description="Files of this request that could not be used")
    warnings: list[str] = Field(
        default=[],
        description="What looks wrong but was enrolled: a file the voice as enrolled before "
        "would not verify, or the voice verifying as another enrolled one",
    )


class Verdict(BaseModel):
    path: str = Field(description="The uploaded file's name")
    claimed: str
    accept: bool
    score: float = Field(description="Cosine similarity to the claimed voice")
    probability: float = Field(
        description="The calibrated posterior at the prior for which the threshold is the "
        "decision: >= 0.5 exactly when accepted; it moves with the threshold, and is no "
        "estimate of the chance that it is the voice on other data"
    )
    threshold: float = Field(
        description="The accept threshold on the score: stricter the more voices are enrolled"
    )
    threshold_source: str = Field(description=THRESHOLD_SOURCE)
    dev_false_acceptance: float | None = Field(
        default=None, description="The calibrated threshold's false acceptance rate on dev trials"
    )
    dev_false_rejection: float | None = Field(
        default=None, description="The calibrated threshold's false rejection rate on dev trials"
    )
    speech_s: float = Field(default=0.0, description="Seconds of speech the file held")
    enrolled_recording: bool | None = Field(
        default=False,
        description="The file is one of the recordings the voice was enrolled from: a replay "
        "scores as the voice itself (nothing checks liveness); null: the voice keeps no "
        "digests of its recordings (enrolled before galleries kept them), so it cannot be told",
    )
    quality: RecordingQuality | None = Field(default=None, description=QUALITY)
    encoder: str | None = Field(default=None, description=ENCODER)
    channel: int | None = Field(default=None, description=CHANNEL_READ)


class FileError(BaseModel):
    path: str
    error: str


class VerifyResponse(BaseModel):
    results: list[Verdict | FileError] = Field(description="One per file, in the order sent")


class EnrolledVoice(BaseModel):
    name: str
    clips: int
    seconds: float
    model: str
    created: float = Field(description="Unix time")
    updated: float = Field(description="Unix time")
    dim: int = Field(description="Embedding size")


class GalleryResponse(BaseModel):
    model: str = Field(description="The encoder the gallery belongs to")
    voices: list[EnrolledVoice]


class ImportResponse(BaseModel):
    imported: int


class RemovedResponse(BaseModel):
    removed: str


class RenameRequest(BaseModel):
    name: str = Field(description="The voice's new name (not another voice's)")


class ErrorResponse(BaseModel):
    error: str
    kind: str


class DiarizedSegment(BaseModel):
    start: float = Field(description="Seconds from the start of the recording")
    end: float = Field(description="Seconds from the start of the recording")
    speaker: str = Field(description='An enrolled voice\'s name, or "unknown-1", "unknown-2", ...')
    score: float = Field(
        description="Cosine of the turn's voice to the enrolled voice it is named after, else "
        "to its own cluster's centre"
    )
    overlap: bool = Field(description="Another voice speaks at the same time (its own segment)")


class DiarizedSpeaker(BaseModel):
    enrolled: bool = Field(description="Named after an enrolled voice")
    score: float | None = Field(description="Cosine to the nearest enrolled voice (null: none)")
    nearest: str | None = Field(description="The nearest enrolled voice, named or not")
    speech_s: float = Field(description="Seconds of speech given to this voice")


class DiarizeResponse(BaseModel):
    path: str = Field(description="The upload's name")
    duration_s: float
    speakers: dict[str, DiarizedSpeaker]
    segments: list[DiarizedSegment]
    settings: dict = Field(description="The encoder, speech detector, windows and threshold used")

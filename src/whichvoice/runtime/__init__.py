"""A trained run, loaded: ``load_model(RUN).identify("clip.mp3")``. The model, its feature
pipeline and its two backends: torch, and onnxruntime on the run's ONNX export (written by
``whichvoice.export``, cached and checked here). Prediction, evaluation, batch inference,
verification and the server all score through ``VoiceModel``.

``model`` holds VoiceModel (torch), ``onnx_backend`` the onnxruntime backend and its export
cache, ``load`` rebuilds a run on either and checks that they agree."""

from whichvoice.runtime.load import (
    BACKENDS,
    bundled_classifier,
    bundled_encoder_dir,
    check_export,
    check_windows,
    load_model,
    max_difference,
)
from whichvoice.runtime.model import (
    ModelLoadError,
    Prediction,
    VoiceModel,
    batched,
    embeddings_together,
    prepared_chunks,
    unit,
)
from whichvoice.runtime.onnx_backend import (
    OnnxVoiceModel,
    cache_path,
    ensure_export,
    import_onnxruntime,
    mismatch,
    providers,
    read_metadata,
    session,
    session_metadata,
)

__all__ = [
    "BACKENDS",
    "ModelLoadError",
    "OnnxVoiceModel",
    "Prediction",
    "VoiceModel",
    "batched",
    "bundled_classifier",
    "bundled_encoder_dir",
    "cache_path",
    "check_export",
    "check_windows",
    "embeddings_together",
    "ensure_export",
    "import_onnxruntime",
    "load_model",
    "max_difference",
    "mismatch",
    "prepared_chunks",
    "providers",
    "read_metadata",
    "session",
    "session_metadata",
    "unit",
]

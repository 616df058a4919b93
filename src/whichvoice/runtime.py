"""A trained run, loaded: ``load_model(RUN).identify("clip.mp3")``. The model, its feature
pipeline and its two backends: torch, and onnxruntime on the run's ONNX export (written by
``whichvoice.export``, cached and checked here). Prediction, evaluation, batch inference,
verification and the server all score through ``VoiceModel``."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from whichvoice import storage
from whichvoice.audio import AudioSource, check_not_silent, describe_source, read_audio, resample
from whichvoice.errors import WhichvoiceError
from whichvoice.export import (
    INSTALL,
    META_PREFIX,
    ExportError,
    OnnxUnavailableError,
    export_model,
    metadata,
    weights_digest,
)
from whichvoice.features import (
    TARGET_RMS,
    FeatureConfig,
    model_inputs,
    seed_windows,
    speech_of,
    wave_windows,
)
from whichvoice.models import build_model

log = logging.getLogger(__name__)


class ModelLoadError(WhichvoiceError):
    """A run directory that does not hold a usable model."""


@dataclass(frozen=True)
class Prediction:
    """One file's answer. ``top``: (voice, probability) best first; ``windows``: inputs scored."""

    path: str
    voice: str
    confidence: float
    top: list[tuple[str, float]]
    probabilities: dict[str, float] = field(repr=False)
    windows: int
    speech_s: float = 0.0  # seconds of speech the windows were cut from (silence trimmed)
    window_voices: list[str] = field(repr=False, default_factory=list)

    def to_dict(self, k: int = 3) -> dict:
        return {
            "path": self.path,
            "voice": self.voice,
            "confidence": round(self.confidence, 6),
            "top": [{"voice": v, "p": round(p, 6)} for v, p in self.top[:k]],
            "speech_s": self.speech_s,
            "windows": self.windows,
        }


class VoiceModel:
    """A trained model with its feature pipeline and labels; thread-safe for inference."""

    def __init__(
        self, root: Path, config: dict, net: torch.nn.Module, device: torch.device
    ) -> None:
        self.root = root
        self.config = config
        self.labels: list[str] = list(config["labels"])
        self.features = FeatureConfig.from_dict(config["features"])
        self.net = net.eval()
        self.device = device

    def windows(self, source: AudioSource) -> tuple[np.ndarray, float]:
        """Stored-form windows for one file or bytes, float32 (n_windows, *stored_shape), and
        the seconds of speech they were cut from. Raises AudioDecodeError / SilentAudioError
        naming the input."""
        wave, rate = read_audio(source)
        check_not_silent(wave, rate, describe_source(source))
        return self.windows_of(wave, rate)

    def windows_of(self, wave: np.ndarray, rate: int) -> tuple[np.ndarray, float]:
        """Like ``windows`` for a decoded waveform (float32 mono at ``rate`` Hz)."""
        if self.features.name == "seed-image":
            return seed_windows(wave, rate, self.features), wave.shape[0] / rate
        speech = speech_of(resample(wave, rate, self.features.sample_rate), self.features)
        return wave_windows(speech, self.features), speech.shape[0] / self.features.sample_rate

    @torch.inference_mode()
    def window_log_probs(self, windows: np.ndarray) -> np.ndarray:
        """Log-probabilities per stored window, float32 (n_windows, n_labels)."""
        x = torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32)).to(self.device)
        return F.log_softmax(self.net(model_inputs(x, self.features)), dim=1).float().cpu().numpy()

    def _combine(self, name: str, logp: np.ndarray, speech_s: float) -> Prediction:
        # the file's answer: the mean of its windows' log-probabilities, renormalised
        mean = logp.mean(axis=0)
        probs = np.exp(mean - mean.max())
        probs /= probs.sum()
        order = np.argsort(-probs)
        top = [(self.labels[i], float(probs[i])) for i in order]
        return Prediction(
            path=name,
            voice=top[0][0],
            confidence=top[0][1],
            top=top,
            probabilities={v: float(p) for v, p in zip(self.labels, probs, strict=True)},
            windows=int(logp.shape[0]),
            speech_s=round(speech_s, 3),
            window_voices=[self.labels[i] for i in logp.argmax(axis=1)],
        )

    def identify(self, source: AudioSource, name: str | None = None) -> Prediction:
        """Which of the model's voices reads ``source`` (a path or encoded bytes), any length."""
        label = name or describe_source(source)
        windows, speech_s = self.windows(source)
        return self._combine(label, self.window_log_probs(windows), speech_s)

    def identify_wave(self, wave: np.ndarray, rate: int, name: str = "<audio>") -> Prediction:
        """Like ``identify`` for a decoded waveform (float32 mono at ``rate`` Hz)."""
        windows, speech_s = self.windows_of(wave, rate)
        return self._combine(name, self.window_log_probs(windows), speech_s)

    @property
    def has_embedding(self) -> bool:
        return hasattr(self.net, "embed")

    @torch.inference_mode()
    def window_embeddings(self, windows: np.ndarray) -> np.ndarray:
        """L2-normalised embedding per stored window, float32 (n_windows, dim)."""
        if not self.has_embedding:
            raise WhichvoiceError(f"model {self.config['model']!r} has no embedding (use voicenet)")
        x = torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32)).to(self.device)
        return self.net.embed(model_inputs(x, self.features)).float().cpu().numpy()

    def embed(self, source: AudioSource) -> tuple[np.ndarray, float]:
        """A recording's embedding: the mean of its windows' embeddings, L2-normalised,
        float32 (dim,); and the seconds of speech it used."""
        windows, speech_s = self.windows(source)
        return unit(self.window_embeddings(windows).mean(axis=0)), speech_s

    def embed_many(
        self, sources: Iterable[AudioSource], *, batch: int = 32, workers: int = 0
    ) -> Iterator[tuple[np.ndarray, float] | WhichvoiceError]:
        """``embed`` for many inputs, in order; an unreadable one yields its error instead."""
        for _, scored, speech_s in self._batched(sources, self.window_embeddings, batch, workers):
            yield (
                scored
                if isinstance(scored, WhichvoiceError)
                else (unit(scored.mean(axis=0)), speech_s)
            )

    def _batched(self, sources, score, batch: int, workers: int):
        return batched(self.windows, score, sources, batch, workers)

    def display_name(self, voice: str) -> str:
        """A voice as the talk's endpoint answered it: its name ("Joanna", "slt"), or the full
        id when two engines of the model share that name."""
        name = voice.split(":", 1)[-1]
        same = [label for label in self.labels if label.split(":", 1)[-1] == name]
        return name if len(same) <= 1 else voice

    def identify_many(
        self, sources: Iterable[AudioSource], *, batch: int = 32, workers: int = 0
    ) -> Iterator[Prediction | WhichvoiceError]:
        """Predictions in input order; a file that cannot be read yields its error instead."""
        for src, scored, speech_s in self._batched(sources, self.window_log_probs, batch, workers):
            yield (
                scored
                if isinstance(scored, WhichvoiceError)
                else self._combine(str(src), scored, speech_s)
            )


def batched(windows, score, sources: Iterable[AudioSource], batch: int, workers: int):
    """(source, per-window output of ``score`` or the input's error, speech seconds) for each
    source, in order. ``windows(source) -> (windows, speech_s)`` runs on ``workers`` threads
    (decoding, features); ``score`` sees the windows of ``batch`` files at once."""
    workers = workers or os.cpu_count() or 1

    def prepare(src: AudioSource) -> tuple[np.ndarray, float] | WhichvoiceError:
        try:
            return windows(src)
        except WhichvoiceError as e:
            return e

    sources = list(sources)
    workers = min(workers, len(sources)) or 1
    # one input (a request's upload) is prepared in this thread: no pool, no thread churn
    with ThreadPoolExecutor(workers) if workers > 1 else contextlib.nullcontext() as pool:
        for i in range(0, len(sources), batch):
            chunk = sources[i : i + batch]
            prepared = list(pool.map(prepare, chunk) if pool else map(prepare, chunk))
            good = [p[0] for p in prepared if isinstance(p, tuple)]
            out = score(np.concatenate(good)) if good else None
            at = 0
            for src, p in zip(chunk, prepared, strict=True):
                if isinstance(p, WhichvoiceError):
                    yield src, p, 0.0
                    continue
                n = len(p[0])
                yield src, out[at : at + n], p[1]
                at += n


def unit(v: np.ndarray) -> np.ndarray:
    """``v`` scaled to length 1, float32."""
    return (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)


class OnnxVoiceModel(VoiceModel):
    """A VoiceModel that scores with onnxruntime on the run's ONNX export (see
    ``ensure_export``); features, combination and output formats are VoiceModel's."""

    def __init__(
        self,
        root: Path,
        config: dict,
        net: torch.nn.Module,
        device: torch.device,
        session,
        onnx_path: Path,
    ) -> None:
        super().__init__(root, config, net, device)
        self.session = session  # an onnxruntime InferenceSession; its run() is thread-safe
        self.onnx_path = onnx_path
        self._outputs = [o.name for o in session.get_outputs()]

    @property
    def has_embedding(self) -> bool:
        return "embeddings" in self._outputs

    def _run(self, output: str, windows: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(windows, dtype=np.float32)
        return self.session.run([output], {"windows": x})[0]

    def window_log_probs(self, windows: np.ndarray) -> np.ndarray:
        """Log-probabilities per stored window, float32 (n_windows, n_labels)."""
        return self._run("log_probs", windows)

    def window_embeddings(self, windows: np.ndarray) -> np.ndarray:
        """L2-normalised embedding per stored window, float32 (n_windows, dim)."""
        if not self.has_embedding:
            raise WhichvoiceError(f"model {self.config['model']!r} has no embedding (use voicenet)")
        return self._run("embeddings", windows)


BACKENDS = ("torch", "onnx")


def load_model(
    run: str | os.PathLike,
    device: str = "cpu",
    backend: str = "torch",
    *,
    onnx_path: str | os.PathLike | None = None,
    threads: int | None = None,
) -> VoiceModel:
    """Rebuild a trained model from its run directory alone (config.json + model.safetensors);
    ``run`` may be a URL (``s3://...``), mirrored locally.

    ``backend``: "torch", or "onnx" to score with onnxruntime (``pip install
    'whichvoice[onnx]'``) on the run's export: ``onnx_path``, else a cache (``RUN/model.onnx``,
    or a user folder for the bundled encoder) exported again when the run changed.
    ``threads``: onnxruntime's intra-op threads, default ``torch.get_num_threads()``.
    """
    if backend not in BACKENDS:
        raise ModelLoadError(f"unknown backend {backend!r}; valid backends: {', '.join(BACKENDS)}")
    model = _load_torch(storage.local_path(run), device)
    if backend == "torch":
        return model
    path = ensure_export(model, onnx_path)
    return OnnxVoiceModel(
        model.root, model.config, model.net, model.device, session(path, device, threads), path
    )


def _load_torch(root: Path, device: str) -> VoiceModel:
    from safetensors.torch import load_file

    try:
        config = json.loads((root / "config.json").read_text())
        state = load_file(str(root / "model.safetensors"), device=device)
    except FileNotFoundError as e:
        raise ModelLoadError(f"{root}: not a trained run ({Path(e.filename).name} missing)") from e
    except Exception as e:  # safetensors raises its own error type for damaged files
        raise ModelLoadError(f"{root}: cannot load the model ({e})") from e
    try:
        net = build_model(config["model"], tuple(config["input_shape"]), len(config["labels"]))
        net.load_state_dict(state)
        return VoiceModel(root, config, net.to(device), torch.device(device))
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise ModelLoadError(
            f"{root}: config.json and the weights do not make a model ({e})"
        ) from e


def import_onnxruntime():
    """The onnxruntime module, or OnnxUnavailableError saying how to install it."""
    try:
        import onnxruntime
    except ImportError as e:
        raise OnnxUnavailableError(f"the ONNX backend needs onnxruntime: {INSTALL} ({e})") from e
    return onnxruntime


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The whichvoice metadata of an ONNX file (empty when it has none or cannot be read)."""
    ort = import_onnxruntime()
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception:  # onnxruntime raises its own types for missing and damaged files
        return {}
    return session_metadata(session)


def session_metadata(session) -> dict[str, str]:
    meta = session.get_modelmeta().custom_metadata_map
    return {k: v for k, v in meta.items() if k.startswith(META_PREFIX)}


def cache_path(model: VoiceModel) -> Path:
    """Where ``load_model(run, backend="onnx")`` keeps a run's export: ``RUN/model.onnx``; for a
    run shipped in the package (the bundled encoder) or a read-only one, a user folder:
    ``$XDG_DATA_HOME/whichvoice/onnx/<model>-<digest>.onnx``."""
    import whichvoice

    package = Path(whichvoice.__file__).resolve().parent
    root = model.root.resolve()
    if not root.is_relative_to(package) and os.access(root, os.W_OK):
        return root / "model.onnx"
    from whichvoice.files import data_home

    return data_home() / "onnx" / f"{model.config['model']}-{weights_digest(root)[:16]}.onnx"


def mismatch(model: VoiceModel, meta: dict[str, str]) -> str | None:
    """Why an ONNX file with metadata ``meta`` is not an export of ``model`` (None if it is)."""
    if not meta:
        return "it holds no whichvoice metadata"
    want = metadata(model)
    for key in want:
        if meta.get(key) != want[key]:
            return f"its {key.removeprefix(META_PREFIX)} differs from the run's"
    return None


def ensure_export(model: VoiceModel, path: str | os.PathLike | None = None) -> Path:
    """An up-to-date ONNX export of ``model``. ``path=None``: the cache (``cache_path``),
    exported again when missing or stale (other weights, labels, features or format); an
    explicit ``path`` is exported to when missing and must otherwise match the run."""
    target = Path(path) if path is not None else cache_path(model)
    if target.exists():
        why = mismatch(model, read_metadata(target))
        if why is None:
            return target
        if path is not None:
            raise ExportError(f"{target}: not an export of {model.root} ({why})")
        log.info("re-exporting %s: %s", target, why)
    return export_model(model, target)


def providers(device: str = "cpu") -> list:
    """onnxruntime execution providers for a torch-style device: CUDA first for "cuda[:N]"
    when onnxruntime has it, CPU always."""
    ort = import_onnxruntime()
    if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
        index = int(device.split(":", 1)[1]) if ":" in device else 0
        return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    if device.startswith("cuda"):
        log.warning("onnxruntime has no CUDA here (onnxruntime-gpu is not installed): using CPU")
    return ["CPUExecutionProvider"]


def session(path: str | os.PathLike, device: str = "cpu", threads: int | None = None):
    """An onnxruntime InferenceSession on ``path``. ``threads``: intra-op threads, default
    ``torch.get_num_threads()`` so that both backends use the same number."""
    ort = import_onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), options, providers=providers(device))
    except Exception as e:  # onnxruntime's own exception types
        raise ModelLoadError(f"{path}: onnxruntime cannot load it ({e})") from e


def check_windows(model: VoiceModel, n: int = 8, seed: int = 0) -> np.ndarray:
    """Inputs to compare the backends on, float32 (n, *stored_shape): windows of the run's
    held-out clips when its prepared dataset is on this machine, else seeded noise (at the
    speech level for waveforms, uniform [0, 1] for images)."""
    data = model.config.get("data")
    if data and Path(data).is_dir():
        from whichvoice.dataset import open_prepared

        try:
            x = open_prepared(data).arrays("test")[0]
            if len(x) and x.shape[1:] == model.features.stored_shape:
                rows = np.unique(np.linspace(0, len(x) - 1, n).astype(int))
                return np.asarray(x[rows], dtype=np.float32)
        except (WhichvoiceError, OSError, ValueError) as e:
            log.info("%s: no stored windows to check on (%s); using noise", model.root, e)
    rng = np.random.default_rng(seed)
    shape = (n, *model.features.stored_shape)
    if model.features.name == "seed-image":
        return rng.random(shape, dtype=np.float32)
    return (TARGET_RMS * rng.standard_normal(shape)).astype(np.float32)


def max_difference(
    torch_model: VoiceModel, onnx_model: VoiceModel, windows: np.ndarray
) -> dict[str, float]:
    """Largest absolute difference per output between two backends on ``windows``:
    {"log_probs": ..., "embeddings": ...} (embeddings only for embedding models)."""
    diff = {
        "log_probs": float(
            np.abs(
                torch_model.window_log_probs(windows) - onnx_model.window_log_probs(windows)
            ).max()
        )
    }
    if torch_model.has_embedding:
        a, b = torch_model.window_embeddings(windows), onnx_model.window_embeddings(windows)
        diff["embeddings"] = float(np.abs(a - b).max())
    return diff


def check_export(run: str | os.PathLike, path: str | os.PathLike) -> dict[str, float]:
    """Check the ONNX file ``path`` against run ``run``: its metadata must match, and its
    outputs are compared with torch's on ``check_windows``. Returns ``max_difference``."""
    torch_model = load_model(run)
    onnx_model = load_model(run, backend="onnx", onnx_path=path)
    return max_difference(torch_model, onnx_model, check_windows(torch_model))

"""A trained run written as an ONNX file (``whichvoice.runtime`` scores with it).

The exported graph is the whole path from stored windows to outputs, so onnxruntime needs no
torch at inference:

- input ``windows``: float32 (batch, *stored_shape): 16 kHz waveform windows for ``logmel``
  runs (the log-mel is inside the graph), RGB images (batch, 3, 140, 140) for ``seed-image``;
- output ``log_probs``: float32 (batch, n_labels), log-softmax over the run's labels;
- output ``embeddings`` (models with ``embed``): float32 (batch, dim), L2-normalised.

Inside the graph the STFT is a convolution with a windowed DFT basis, not ONNX's ``STFT``
operator: onnxruntime's STFT differs from ``torch.stft`` by ~2e-3 in the log-mel, the DFT
convolution by ~4e-5, well inside the 1e-4 the outputs must match torch within.
The batch axis is dynamic. The run's model name, labels, feature config and weights digest
are stored in the file's metadata, so a file can be checked against the run it came from.

A second kind, ``inputs="features"``, starts after the features: input ``features``, float32
(batch, *input_shape), what ``features.model_inputs`` gives (the log-mel, per-band mean
removed). ``load_model(run, backend="onnx")`` caches and runs this kind, with the log-mel made
by torch: onnxruntime runs the network ~1.7x faster than torch on one core, but its DFT
convolution costs ~3x the network (measured by ``benchmarks/limits.py``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from whichvoice.errors import OutputError, WhichvoiceError
from whichvoice.features import VERSION as FEATURES_VERSION
from whichvoice.features import FeatureConfig, mel_filterbank
from whichvoice.files import check_target

if TYPE_CHECKING:
    from whichvoice.runtime import VoiceModel

log = logging.getLogger(__name__)

INSTALL = "pip install 'whichvoice[onnx]'"
MIN_OPSET = 18  # torch's ONNX exporter writes opset 18; converting down fails for this graph
DEFAULT_OPSET = 18
# bump when the exported graph changes for the same run: cached exports are rebuilt. A
# network-only graph records 2, so that whichvoice versions before it, which knew only the
# whole-path graph, find it stale instead of feeding it windows
FORMAT_VERSION = 1
FEATURES_FORMAT_VERSION = 2
INPUT = "windows"
INPUT_KINDS = {"windows": INPUT, "features": "features"}  # what a graph starts from: its input
OUTPUTS = ("log_probs", "embeddings")
META_PREFIX = "whichvoice."


class OnnxUnavailableError(WhichvoiceError):
    """onnx / onnxruntime (the ``onnx`` extra) is not installed here."""


class ExportError(WhichvoiceError):
    """A run that could not be exported, or an ONNX file that does not match its run."""


class DftLogMel(nn.Module):
    """``features.LogMel`` with the STFT as a convolution (exports to plain ONNX Conv), per-band
    mean removed as ``model_inputs`` does: (batch, n_samples) -> (batch, n_mels, n_frames)."""

    def __init__(self, cfg: FeatureConfig) -> None:
        super().__init__()
        self.cfg = cfg
        n = cfg.n_fft
        # built in float64 and rounded once, so the basis is as exact as float32 allows
        t = np.arange(n)
        window = 0.5 - 0.5 * np.cos(2 * np.pi * t / n)  # periodic Hann, as torch.hann_window
        angle = 2 * np.pi * np.arange(n // 2 + 1)[:, None] * t[None, :] / n
        basis = np.concatenate([np.cos(angle) * window, -np.sin(angle) * window])
        self.register_buffer("basis", torch.from_numpy(basis[:, None, :].astype(np.float32)))
        fb = mel_filterbank(cfg.n_mels, n, cfg.sample_rate)
        self.register_buffer("fb", torch.from_numpy(fb))

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        pad = self.cfg.n_fft // 2  # torch.stft(center=True) pads by reflection
        x = F.pad(wave[:, None, :], (pad, pad), mode="reflect")
        real, imag = F.conv1d(x, self.basis, stride=self.cfg.frame_hop).chunk(2, dim=1)
        mel = torch.log(torch.matmul(self.fb, real.square() + imag.square()) + 1e-6)
        return mel - mel.mean(dim=2, keepdim=True) if self.cfg.cmn else mel


class ExportGraph(nn.Module):
    """Stored windows -> (log-probabilities, [embeddings]): what the ONNX file computes."""

    def __init__(self, net: nn.Module, features: FeatureConfig, inputs: str = "windows") -> None:
        super().__init__()
        self.net = net
        inside = features.name == "logmel" and inputs == "windows"
        self.features = DftLogMel(features) if inside else nn.Identity()
        self.has_embedding = hasattr(net, "embed")

    def forward(self, windows: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self.features(windows)
        if not self.has_embedding:
            return (F.log_softmax(self.net(x), dim=1),)
        emb = self.net.embed(x)
        # an EmbeddingClassifier's logits are head(embedding): run the embedder once
        logits = self.net.head(emb) if hasattr(self.net, "head") else self.net(x)
        return F.log_softmax(logits, dim=1), emb


def weights_digest(root: Path) -> str:
    """sha256 of the run's model.safetensors (hex)."""
    return hashlib.sha256((root / "model.safetensors").read_bytes()).hexdigest()


def metadata(model: VoiceModel, inputs: str = "windows") -> dict[str, str]:
    """What an export of ``model`` records about its run (ONNX metadata_props, strings);
    ``inputs``: the graph's kind (see the module docstring)."""
    meta = {
        "format_version": str(FORMAT_VERSION),
        "model": model.config["model"],
        "labels": json.dumps(model.labels),
        "features": json.dumps(model.features.to_dict(), sort_keys=True),
        "features_version": str(FEATURES_VERSION),
        "weights_sha256": weights_digest(model.root),
        "outputs": ",".join(OUTPUTS[: 2 if model.has_embedding else 1]),
    }
    if inputs != "windows":  # a whole-path export records nothing more, as it always did
        meta["inputs"] = inputs
        meta["format_version"] = str(FEATURES_FORMAT_VERSION)
    return {META_PREFIX + k: v for k, v in meta.items()}


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The exporter logs every torchvision op it skips and warns about torch internals: noise
    on a user's terminal. Errors still come through as exceptions."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def export_model(
    model: VoiceModel,
    out: str | os.PathLike,
    *,
    opset: int = DEFAULT_OPSET,
    inputs: str = "windows",
) -> Path:
    """Write ``model`` (a torch-backed VoiceModel) as ONNX to ``out``, atomically; check it
    with onnx.checker. ``inputs``: "windows" (the whole path) or "features" (the network
    alone; see the module docstring). Returns the path written."""
    if inputs not in INPUT_KINDS:
        raise ValueError(f"inputs must be one of {', '.join(INPUT_KINDS)}, not {inputs!r}")
    try:
        import onnx  # noqa: F401  (checked here: _save needs it)
        import onnxscript  # noqa: F401  (torch's exporter needs it; say so before it fails)
    except ImportError as e:
        raise OnnxUnavailableError(
            f"exporting to ONNX needs onnx and onnxscript: {INSTALL} ({e})"
        ) from e
    if opset < MIN_OPSET:
        raise ValueError(f"opset {opset} is too old; the export needs {MIN_OPSET} or newer")
    out = Path(out)
    check_target(out)  # before the export's work: a folder or a device is not a file
    graph = ExportGraph(model.net, model.features, inputs).to("cpu").eval()
    shape = model.features.stored_shape if inputs == "windows" else model.features.input_shape
    example = torch.zeros(2, *shape)
    name = INPUT_KINDS[inputs]
    try:
        with _quiet_exporter():
            program = torch.onnx.export(
                graph,
                (example,),
                None,
                dynamo=True,
                opset_version=opset,
                input_names=[name],
                output_names=list(OUTPUTS[: 2 if graph.has_embedding else 1]),
                dynamic_shapes={"windows": {0: torch.export.Dim("batch", min=1)}},
                verbose=False,
            )
        proto = program.model_proto
    except Exception as e:  # the exporter raises many types; all mean the same to a user
        raise ExportError(f"{model.root}: cannot export to ONNX ({type(e).__name__}: {e})") from e
    finally:
        graph.to(model.device)
    written = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    if written != opset:
        raise ExportError(f"{model.root}: asked for opset {opset}, the exporter wrote {written}")
    _save(model, proto, out, metadata(model, inputs))
    log.info("exported %s to %s", model.root, out)
    return out


def _save(model: VoiceModel, proto, out: Path, meta: dict[str, str]) -> None:
    """``proto`` with ``meta`` as its only metadata, checked by onnx.checker and written to
    ``out`` atomically."""
    import onnx

    del proto.metadata_props[:]
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    quantized = meta.get(META_PREFIX + "quantized")
    proto.doc_string = f"whichvoice {model.config['model']} run {model.root.name}" + (
        f", {quantized}" if quantized else ""
    )
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        onnx.save_model(proto, str(tmp))
        onnx.checker.check_model(str(tmp), full_check=True)
        os.replace(tmp, out)
    except OSError as e:
        raise OutputError(f"{out}: cannot write the ONNX file ({e.strerror or e})") from e
    except onnx.checker.ValidationError as e:
        raise ExportError(f"{model.root}: the exported ONNX does not validate ({e})") from e
    finally:
        with contextlib.suppress(OSError):  # a folder that is not one: the error above says
            tmp.unlink(missing_ok=True)


def export_onnx(model: VoiceModel, out: str | os.PathLike, *, opset: int = DEFAULT_OPSET) -> Path:
    """Export a loaded run (``runtime.load_model``) to the ONNX file ``out`` (see the module
    docstring for its inputs, outputs and metadata); ``out`` may be a URL (``s3://...``): the
    file is then made in the local mirror and uploaded. Returns the local file."""
    from whichvoice import storage

    if not storage.is_url(out):
        return export_model(model, out, opset=opset)
    local = export_model(model, storage.mirror_path(os.fspath(out)), opset=opset)
    storage.put_into(local, os.fspath(out))  # into a run on s3: listed where readers look
    return local


INT8_WINDOWS = 256  # calibration windows: enough for stable activation ranges, quick to run


def quantize_int8(
    model: VoiceModel,
    out: str | os.PathLike,
    calibration: np.ndarray,
    *,
    opset: int = DEFAULT_OPSET,
) -> Path:
    """Write ``model``'s network, quantised to int8, as ONNX to ``out`` (atomically).

    The network-only graph (``inputs="features"``: the log-mel is made by torch) with static
    quantisation: per-channel int8 weights and uint8 activations whose ranges come from
    ``calibration``, the network's inputs (``VoiceModel.inputs``) of real speech of the kind
    it will score (float32, (n, *input_shape)). Quantize/dequantize nodes (QDQ) around each
    operator, which onnxruntime fuses into integer kernels. The metadata is the float export's
    plus ``quantized: int8``. Measured on the test pool by ``benchmarks/limits.py``."""
    import tempfile

    import onnx

    try:
        from onnxruntime.quantization import (
            CalibrationDataReader,
            QuantFormat,
            QuantType,
            quantize_static,
        )
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as e:
        raise OnnxUnavailableError(f"quantising needs onnxruntime: {INSTALL} ({e})") from e
    if calibration.ndim != 1 + len(model.features.input_shape) or not len(calibration):
        raise ValueError(f"calibration must be network inputs, not shape {calibration.shape}")

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            batches = range(0, len(calibration), 16)
            self.batches = iter([{"features": calibration[i : i + 16]} for i in batches])

        def get_next(self) -> dict | None:
            return next(self.batches, None)

    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="whichvoice-int8-") as tmp:
        fp32 = export_model(model, Path(tmp) / "fp32.onnx", opset=opset, inputs="features")
        pre = Path(tmp) / "pre.onnx"
        with _quiet_exporter():
            quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
            quantize_static(
                str(pre),
                str(Path(tmp) / "int8.onnx"),
                Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
            )
        proto = onnx.load(str(Path(tmp) / "int8.onnx"))
    meta = {**metadata(model, "features"), META_PREFIX + "quantized": "int8"}
    _save(model, proto, out, meta)
    log.info("quantised %s to %s", model.root, out)
    return out


def calibration_inputs(model: VoiceModel, sources, n_windows: int = INT8_WINDOWS) -> np.ndarray:
    """Network inputs of up to ``n_windows`` windows of ``sources`` (audio paths), spread
    over as many files as it takes; unreadable files are skipped. WhichvoiceError when none
    has speech."""
    got, total = [], 0
    for source in sources:
        try:
            x = model.inputs(model.windows(source)[0])
        except WhichvoiceError:
            continue
        got.append(x)
        total += len(x)
        if total >= n_windows:
            break
    if not got:
        raise WhichvoiceError("no calibration audio with speech: give clips of the voices to score")
    return np.concatenate(got)[:n_windows]

"""The onnxruntime backend: ``OnnxVoiceModel`` scores a run through its ONNX export (written
by ``whichvoice.export``), which is cached, checked against the run and re-exported when stale.

The cache holds the network alone (``inputs="features"``): the log-mel is made by torch, which
is ~8x faster at it than onnxruntime's DFT convolution, and onnxruntime runs the network, ~1.7x
faster than torch on one core. An export given by path (``whichvoice export``'s whole-path
graph, or a network-only one) is run as it is."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch

from whichvoice.errors import OutputError, WhichvoiceError
from whichvoice.export import (
    INPUT_KINDS,
    INSTALL,
    META_PREFIX,
    ExportError,
    OnnxUnavailableError,
    export_model,
    metadata,
    weights_digest,
)
from whichvoice.files import data_home, private_temp_folder
from whichvoice.runtime.model import ModelLoadError, VoiceModel

CACHE_INPUTS = "features"  # the kind of graph the backend's cache holds (see the docstring)

log = logging.getLogger(__name__)


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
        *,
        openset: bool = True,
        engine_head: bool = True,
    ) -> None:
        super().__init__(root, config, net, device, openset=openset, engine_head=engine_head)
        self.session = session  # an onnxruntime InferenceSession; its run() is thread-safe
        self.onnx_path = onnx_path
        self._outputs = [o.name for o in session.get_outputs()]
        self._input = session.get_inputs()[0].name  # "windows" or "features"

    @property
    def has_embedding(self) -> bool:
        return "embeddings" in self._outputs

    def set_threads(self, n: int) -> None:
        """onnxruntime's intra-op threads (a new session on the same file)."""
        if self.session.get_session_options().intra_op_num_threads != n:
            self.session = session(self.onnx_path, self.device.type, n)

    @property
    def takes_logmel(self) -> bool:
        """A whole-path export takes the windows themselves, not their log-mel."""
        return super().takes_logmel and self._input != INPUT_KINDS["windows"]

    def inputs(self, windows: np.ndarray) -> np.ndarray:
        """What the graph takes: the windows themselves (a whole-path export) or their
        log-mel made by torch (the cache's network-only graph)."""
        if self._input == INPUT_KINDS["windows"]:
            return np.ascontiguousarray(windows, dtype=np.float32)
        return super().inputs(windows)

    def input_scores(self, inputs: np.ndarray) -> np.ndarray:
        if not self.needs_own_embedding:
            return self._run_inputs(["log_probs"], inputs)[0]
        if not self.has_embedding:
            raise WhichvoiceError(f"model {self.config['model']!r} has no embedding (use voicenet)")
        return np.concatenate(self._run_inputs(["log_probs", "embeddings"], inputs), axis=1)

    def _run_inputs(self, outputs: list[str], inputs: np.ndarray) -> list[np.ndarray]:
        x = np.ascontiguousarray(inputs, dtype=np.float32)
        return self.session.run(outputs, {self._input: x})

    def window_log_probs(self, windows: np.ndarray) -> np.ndarray:
        """Log-probabilities per stored window, float32 (n_windows, n_labels)."""
        return self._run_inputs(["log_probs"], self.inputs(windows))[0]

    def input_embeddings(self, inputs: np.ndarray) -> np.ndarray:
        if not self.has_embedding:
            raise WhichvoiceError(f"model {self.config['model']!r} has no embedding (use voicenet)")
        return self._run_inputs(["embeddings"], inputs)[0]


def import_onnxruntime():
    """The onnxruntime module, or OnnxUnavailableError saying how to install it."""
    try:
        import onnxruntime
    except ImportError as e:
        raise OnnxUnavailableError(f"the ONNX backend needs onnxruntime: {INSTALL} ({e})") from e
    return onnxruntime


def read_metadata(path: str | os.PathLike) -> dict[str, str] | None:
    """The whichvoice metadata of an ONNX file (empty when it has none; None when it cannot
    be read as ONNX: damaged, cut short, or not ONNX at all)."""
    ort = import_onnxruntime()
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception:  # onnxruntime raises its own types for missing and damaged files
        return None
    return session_metadata(session)


def session_metadata(session) -> dict[str, str]:
    meta = session.get_modelmeta().custom_metadata_map
    return {k: v for k, v in meta.items() if k.startswith(META_PREFIX)}


CACHE_FILE = "model.network.onnx"  # in a run: the network alone, exported for the onnx backend


def cache_path(model: VoiceModel) -> Path:
    """Where ``load_model(run, backend="onnx")`` keeps a run's export (the network alone):
    ``RUN/model.network.onnx`` (never ``RUN/model.onnx``, the name a user gives ``export``);
    for a run shipped in the package (the bundled encoder) or a read-only one, a user folder:
    ``$XDG_DATA_HOME/whichvoice/onnx/<model>-<digest>.onnx``."""
    import whichvoice

    package = Path(whichvoice.__file__).resolve().parent
    root = model.root.resolve()
    if not root.is_relative_to(package) and os.access(root, os.W_OK):
        return root / CACHE_FILE
    return data_home() / "onnx" / f"{model.config['model']}-{weights_digest(root)[:16]}.onnx"


def mismatch(model: VoiceModel, meta: dict[str, str] | None) -> str | None:
    """Why an ONNX file with metadata ``meta`` (``read_metadata``'s) is not an export of
    ``model`` (None if it is)."""
    if meta is None:
        return "not a readable ONNX file: damaged, cut short, or not ONNX"
    if not meta:
        return "it holds no whichvoice metadata"
    kind = meta.get(META_PREFIX + "inputs", "windows")
    if kind not in INPUT_KINDS:
        return f"its inputs ({kind!r}) are none whichvoice knows"
    want = metadata(model, kind)
    for key in want:
        if meta.get(key) != want[key]:
            name = key.removeprefix(META_PREFIX)
            return f"its {name} {'differ' if name.endswith('s') else 'differs'} from the run's"
    return None


def ensure_export(model: VoiceModel, path: str | os.PathLike | None = None) -> Path:
    """An up-to-date ONNX export of ``model``. ``path=None``: the cache (``cache_path``, the
    network alone), exported again when missing or stale (other weights, labels, features,
    format or kind); an explicit ``path`` is exported to (the whole path) when missing and
    must otherwise match the run (either kind)."""
    target = Path(path) if path is not None else cache_path(model)
    if target.exists():
        meta = read_metadata(target)
        why = mismatch(model, meta)
        if (
            why is None
            and path is None
            and (meta or {}).get(META_PREFIX + "inputs") != CACHE_INPUTS
        ):
            why = "it is a whole-path export; the cache holds the network alone"
        if why is None:
            return target
        if path is not None:
            raise ExportError(f"{target}: not an export of {model.root} ({why})")
        log.info("re-exporting %s: %s", target, why)
    if path is not None:
        return export_model(model, target, inputs="windows")
    try:
        return export_model(model, target, inputs=CACHE_INPUTS)
    except OutputError as e:
        # the cache's folder cannot be written (a home that cannot): the export is made for
        # this process alone, as resemblyzer's is, not refused (review)
        try:
            where = private_temp_folder("whichvoice-onnx-")
        except OSError:
            raise e from None
        log.warning("the ONNX export is not kept (%s): made again next time", e)
        return export_model(model, where / target.name, inputs=CACHE_INPUTS)


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
    # no busy-waiting between runs: the threads that decode the next files need the cores
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), options, providers=providers(device))
    except Exception as e:  # onnxruntime's own exception types
        raise ModelLoadError(f"{path}: onnxruntime cannot load it ({e})") from e

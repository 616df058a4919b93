"""``load_model(RUN)``: a run directory (or URL) rebuilt into a VoiceModel on either backend;
and the check that both backends agree on a run."""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
import os
from pathlib import Path

import numpy as np
import torch

from whichvoice import storage
from whichvoice.errors import WhichvoiceError
from whichvoice.features import TARGET_RMS
from whichvoice.files import shipped_model
from whichvoice.models import build_model
from whichvoice.runtime.model import ModelLoadError, VoiceModel, guard_forks, run_id
from whichvoice.runtime.onnx_backend import OnnxVoiceModel, ensure_export, session

log = logging.getLogger(__name__)

BACKENDS = ("torch", "onnx", "onnx-int8")
INT8_FILE = "model.int8.onnx"  # a run's int8 network (``whichvoice export --int8``)


def bundled_classifier() -> Path:
    """The classifier shipped inside the package: the default model trained on the
    ``default8`` voices (``whichvoice/data/classifier``, its card in MODEL_CARD.md)."""
    return shipped_model(
        "classifier", "give a RUN (train one with `whichvoice demo` or `whichvoice train`)"
    )


def bundled_encoder_dir() -> Path:
    """The speaker encoder shipped inside the package (``whichvoice/data/encoder``, made by
    `whichvoice recipe encoder`): what ``--model bundled`` and the bundled classifier's open
    set read."""
    return shipped_model(
        "encoder", "pass --model RUN (make one with `whichvoice recipe encoder --out DIR`)"
    )


def check_run_path(run: object) -> None:
    """ModelLoadError in one line when ``run`` cannot name a run (None is the shipped one)."""
    if run is None:
        return
    if not isinstance(run, str | os.PathLike):
        raise ModelLoadError(f"a run is a folder path or URL, not {type(run).__name__}")
    if not os.fspath(run).strip():
        raise ModelLoadError("a run's folder path is empty")
    if not storage.is_url(run) and Path(run).is_file():  # an audio file given for the run
        raise ModelLoadError(f"{run}: a file, not a run's folder (config.json + weights)")


def check_device(device: str) -> None:
    """ModelLoadError for a device this machine does not have (torch's own error for it
    spoke of pinned memory)."""
    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError) as e:
        raise ModelLoadError(f"unknown device {device!r}: cpu, cuda or cuda:N") from e
    if kind == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(f"device {device!r}: CUDA is not available here (use cpu)")


def load_model(
    run: str | os.PathLike | None = None,
    device: str = "cpu",
    backend: str = "torch",
    *,
    onnx_path: str | os.PathLike | None = None,
    threads: int | None = None,
    openset: bool = True,
    engine_head: bool = True,
) -> VoiceModel:
    """Rebuild a trained model from its run directory alone (config.json + model.safetensors);
    ``run`` may be a URL (``s3://...``), mirrored locally; None: the bundled classifier
    (``default8`` voices).

    ``backend``: "torch", or "onnx" to score with onnxruntime (``pip install
    'whichvoice[onnx]'``) on the run's export: ``onnx_path``, else a cache
    (``RUN/model.network.onnx``, or a user folder for the bundled encoder) exported again when
    the run changed.
    ``threads``: onnxruntime's intra-op threads, default ``torch.get_num_threads()``.
    ``openset`` False: the run's ``openset.json`` is not read (answers are closed-set): what
    fitting it again loads, so that an open set that cannot be used any more can be replaced.
    ``engine_head`` False: nor is its engine head (``RUN/engine``): what an encoder loads.
    "onnx-int8": the run's network quantised to int8, ``RUN/model.int8.onnx`` (made by
    ``whichvoice export RUN --onnx RUN/model.int8.onnx --int8``; shipped with the bundled
    classifier), refused when missing or made from other weights.
    """
    guard_forks()  # its torch threads would hang a forked child's first call
    if backend not in BACKENDS:
        raise ModelLoadError(f"unknown backend {backend!r}; valid backends: {', '.join(BACKENDS)}")
    check_device(device)
    check_run_path(run)
    if onnx_path is not None and backend != "onnx":
        raise ModelLoadError(
            f"onnx_path is the float export backend='onnx' runs; {backend!r} "
            + ("reads RUN/model.int8.onnx" if backend == "onnx-int8" else "reads none")
        )
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)):
        raise ModelLoadError(f"threads must be a whole number of threads, not {threads!r}")
    if threads is not None and threads < 1:
        raise ModelLoadError(f"threads must be 1 or more, not {threads}")
    model = _load_torch(
        storage.local_path(run if run is not None else bundled_classifier()),
        device,
        openset,
        engine_head,
    )
    if backend != "torch":
        path = _int8_file(model) if backend == "onnx-int8" else ensure_export(model, onnx_path)
        model = OnnxVoiceModel(
            model.root,
            model.config,
            model.net,
            model.device,
            session(path, device, threads),
            path,
            openset=openset,
            engine_head=engine_head,
        )
    if model.reads_encoder:
        _check_probe_encoder(model, model.openset.encoder)
        # the encoder, as fast as this install runs it (``_probe_encoder``), on one thread: it
        # embeds one window a clip on the thread that decoded the clip (batch inference's
        # decoding threads, a server request's thread), side by side; loaded when first
        # needed (``VoiceModel.ready`` loads it now)
        model.probe_loader = functools.partial(_probe_encoder, device, backend)
    return model


def _probe_encoder(device: str, backend: str) -> VoiceModel:
    """The bundled encoder on one thread, as fast as this install runs it: quantised to int8
    for the int8 backend (``model.int8.onnx``, shipped beside it); else in onnxruntime where it
    is installed (its ONNX export, made once in a user folder, or for the process where none
    can be kept: the same numbers as torch's to 1e-5, in two thirds of the time), also for
    the torch backend; else in torch. Each step that
    cannot be taken is said in a warning (the int8 backend needed no export, and the torch
    backend no onnxruntime, before the open set read the encoder) and the next is taken."""
    tried = ["onnx-int8"] if backend == "onnx-int8" else []
    if backend != "torch" or importlib.util.find_spec("onnxruntime") is not None:
        tried.append("onnx")
    for each in tried:
        try:
            return load_model(bundled_encoder_dir(), device, each, threads=1)
        except (WhichvoiceError, OSError) as e:
            log.warning("the open set's encoder: no %s model of it (%s)", each, e)
    if tried:
        log.warning("the open set's encoder runs in torch")
    return load_model(bundled_encoder_dir(), device)


def _check_probe_encoder(model: VoiceModel, expected: str) -> None:
    """Refuse a run whose open set reads other encoder weights than the bundled encoder's (a
    digest of its weights file: no model is built), or whose windows the encoder cannot
    read."""
    from whichvoice.features import FeatureConfig
    from whichvoice.openset import same_windows

    root = model.root
    own, features = encoder_identity(bundled_encoder_dir())
    refit = f"fit it again with `whichvoice openset {root} --known DEV.csv`"
    if own != expected:
        raise ModelLoadError(
            f"{root}/openset.json reads the embeddings of encoder {expected}, not of the "
            f"bundled encoder ({own}); {refit}"
        )
    a = model.features
    if not same_windows(a, FeatureConfig.from_dict(features)):
        instead = (
            f"fit one on the run's own embedding (`whichvoice openset {root} --known DEV.csv "
            "--encoder own`) or remove it"
            if model.has_embedding
            else "remove it (this run has no embedding of its own for an open set)"
        )
        raise ModelLoadError(
            f"{root}/openset.json reads the bundled encoder, which cannot read this run's "
            f"{a.name} windows; {instead}"
        )


@functools.cache
def encoder_identity(encoder: Path) -> tuple[str, dict]:
    """(model id, features) of an encoder folder shipped in the package: its weights are
    hashed once a process, not at every load of a run whose open set reads it."""
    config = json.loads((encoder / "config.json").read_text())
    return run_id(encoder, config), config["features"]


def _int8_file(model: VoiceModel) -> Path:
    from whichvoice.export import META_PREFIX
    from whichvoice.runtime.onnx_backend import mismatch, read_metadata

    path = model.root / INT8_FILE
    make = (
        f"make it with `whichvoice export {model.root} --onnx {path} --int8 --calibration "
        "CLIPS` (clips of the voices it will score)"
    )
    if not path.is_file():
        raise ModelLoadError(f"{model.root}: no int8 model ({INT8_FILE}): {make}")
    meta = read_metadata(path)
    why = mismatch(model, meta)
    if why is None and (meta or {}).get(META_PREFIX + "quantized") != "int8":
        why = "it is not quantised"
    if why is not None:
        raise ModelLoadError(f"{path}: not this run's int8 model ({why}): {make}")
    return path


def _load_torch(
    root: Path, device: str, openset: bool = True, engine_head: bool = True
) -> VoiceModel:
    from safetensors.torch import load_file

    try:
        config = json.loads((root / "config.json").read_text())
        state = load_file(str(root / "model.safetensors"), device=device)
    except FileNotFoundError as e:  # safetensors' own error names no file
        missing = Path(e.filename).name if e.filename else "model.safetensors"
        raise ModelLoadError(f"{root}: not a trained run ({missing} missing)") from e
    except Exception as e:  # safetensors raises its own error type for damaged files
        raise ModelLoadError(f"{root}: cannot load the model ({e})") from e
    if (root / "checkpoint.pt").is_file() and not (root / "metrics.json").is_file():
        _say_interrupted(root, config)
    try:
        net = build_model(config["model"], tuple(config["input_shape"]), len(config["labels"]))
        net.load_state_dict(state)
        return VoiceModel(
            root, config, net.to(device), torch.device(device), openset=openset,
            engine_head=engine_head,
        )  # fmt: skip
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise ModelLoadError(
            f"{root}: config.json and the weights do not make a model ({e})"
        ) from e


_INTERRUPTED_SAID: set[Path] = set()


def _say_interrupted(root: Path, config: dict) -> None:
    """A warning (once a process for each run) that the run at ``root`` stopped before its
    last epoch: its weights are those of an unfinished training (a checkpoint, no
    metrics.json)."""
    if root in _INTERRUPTED_SAID:
        return
    _INTERRUPTED_SAID.add(root)
    try:
        done = sum(1 for _ in (root / "epochs.jsonl").open())
    except OSError:
        done = 0
    planned = (config.get("train") or {}).get("epochs")
    of = f" of {planned}" if planned else ""
    log.warning(
        "%s: an interrupted run (%d%s epochs, no metrics.json): its weights are unfinished; "
        "`whichvoice train CORPUS --out %s --resume` finishes it",
        root, done, of, root,
    )  # fmt: skip


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
    torch_model = load_model(run, openset=False)  # the network alone is compared
    onnx_model = load_model(run, backend="onnx", onnx_path=path, openset=False)
    return max_difference(torch_model, onnx_model, check_windows(torch_model))

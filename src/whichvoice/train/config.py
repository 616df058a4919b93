"""Training settings: ``TrainConfig`` and its checks, the augmentation parts, ``TrainJob`` (one
call of ``train``) and the run directory's file names."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from whichvoice import storage
from whichvoice.augment import BAND_P, NO_AUGMENT, AugmentConfig
from whichvoice.errors import WhichvoiceError
from whichvoice.features import FeatureConfig

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
CHECKPOINT = "checkpoint.pt"
EPOCHS = "epochs.jsonl"
METRICS = "metrics.json"
RUN_FILES = (CONFIG, WEIGHTS, CHECKPOINT, EPOCHS, METRICS)  # any of them: the folder holds a run
# what other stages write into a run: export (and --int8), openset, --target both's engine head,
# demo's own report, a recipe's calibration; none of it describes a new run trained there
DERIVED_FILES = (
    "model.onnx",
    "model.network.onnx",
    "model.int8.onnx",
    "openset.json",
    "engine",
    "report.md",
    "confusion.png",
    "evaluation.json",
    "calibration.json",
    "det.png",
    "recipe.json",
)


class TrainError(WhichvoiceError):
    """A training run that cannot start or resume."""


@dataclass(frozen=True)
class TrainConfig:
    model: str = "voicenet"
    epochs: int | None = None  # None: the model's default
    batch_size: int = 64
    lr: float = 1e-3
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    patience: int | None = None  # stop after this many epochs without a better val accuracy
    schedule: str | None = None  # "cosine" | "constant"; None: the model's own
    augment: str | None = None  # "default", "none" or parts, e.g. "noise,clip"
    precision: str = "auto"  # auto (bf16 on CUDA and AMX CPUs) | bf16 | fp32
    # fine-tuning: start from this run's weights (a path or URL), the tensors that fit
    init: str | None = None
    margin: float | None = None  # the margin heads' final angular margin; None: the model's
    cmn: bool | None = None  # per-band mean removal (FeatureConfig.cmn); None: the data's
    keep: str = "best"  # the weights kept: the "best" epoch's by validation accuracy, or "last"
    # what the network learns to name: the "voice", the "engine" family, or "both" (the voice,
    # then an engine head fitted on the trained embedding: ``whichvoice.tracing``)
    target: str = "voice"

    def to_dict(self) -> dict:
        return asdict(self)


AUGMENT_PARTS = {
    "noise": "noise_p",
    "gain": "gain_db",
    "telephone": "telephone_p",
    "reverb": "reverb_p",
    "mp3": "mp3_p",
    "clip": "clip_p",
    "speed": "speed_p",
    "band": "band_p",
}


def augment_config(spec: str | None, model_default: bool) -> AugmentConfig:
    """``--augment``: None (the model's default), "default", "none", or a list of parts."""
    if spec is None:
        spec = "default" if model_default else "none"
    if spec == "none":
        return NO_AUGMENT
    full = AugmentConfig()
    if spec == "default":
        return full
    parts = {p.strip() for p in spec.split(",") if p.strip()}
    unknown = parts - set(AUGMENT_PARTS)
    if unknown & {"default", "none"}:
        raise TrainError(
            f"--augment {spec}: {' and '.join(sorted(unknown & {'default', 'none'}))} stands "
            f"alone; a list names parts: {', '.join(AUGMENT_PARTS)}"
        )
    if unknown:
        raise TrainError(
            f"unknown augmentation {', '.join(sorted(unknown))}; valid: default, none, "
            f"{', '.join(AUGMENT_PARTS)}"
        )
    chosen = replace(
        full, **{field: 0 for part, field in AUGMENT_PARTS.items() if part not in parts}
    )
    return replace(chosen, band_p=BAND_P) if "band" in parts else chosen


def check_features(model: str, wanted: str, given: str) -> None:
    if wanted != given:
        raise TrainError(
            f"model {model} takes {wanted} features, not {given}; "
            f"use --features {wanted} or a dataset prepared with it"
        )


PRECISIONS = ("auto", "bf16", "fp32")
KEEPS = ("best", "last")
TARGETS = ("voice", "engine", "both")


def check_target(name: str) -> str:
    if name not in TARGETS:
        raise TrainError(f"unknown target {name!r}; valid: {', '.join(TARGETS)}")
    return name


def check_precision(name: str) -> str:
    if name not in PRECISIONS:
        raise TrainError(f"unknown precision {name!r}; valid: {', '.join(PRECISIONS)}")
    return name


def check_margin(margin: float | None) -> float | None:
    if margin is not None and not 0 <= margin < np.pi / 2:
        raise TrainError(f"margin {margin} is out of range: 0 to pi/2 radians")
    return margin


def check_keep(name: str) -> str:
    if name not in KEEPS:
        raise TrainError(f"unknown keep {name!r}; valid: {', '.join(KEEPS)}")
    return name


@dataclass(frozen=True)
class TrainJob:
    """One call of ``train``: the data, the run directory and how to train."""

    source: str | os.PathLike
    out: str | os.PathLike
    cfg: TrainConfig
    features: FeatureConfig | None = None  # None: the model's own
    prepare_seed: int | None = None  # None: cfg.seed
    resume: bool = False
    progress: bool = True
    shown: str | None = None  # how the run is named to the user: its URL, when out mirrors one


def held_run(out: str | os.PathLike) -> list[str]:
    """The run files (``RUN_FILES``) that folder ``out`` (a path or URL) already holds."""
    return [name for name in RUN_FILES if storage.exists(storage.join(out, name))]


def check_out(out: str | os.PathLike, *, resume: bool, overwrite: bool) -> None:
    """Refuse, before any work, to train into a folder that holds a run unless the run is
    resumed or ``overwrite`` replaces it; a TrainError says which of them fits."""
    held = [] if resume or overwrite else held_run(out)
    if METRICS in held:
        raise TrainError(f"{out} holds a trained run: --overwrite to replace it, or another --out")
    if CHECKPOINT in held:
        raise TrainError(
            f"{out} holds an interrupted run: --resume to continue it, or --overwrite to replace it"
        )
    if held:
        raise TrainError(
            f"{out} holds the start of a run (no {CHECKPOINT} to resume): --overwrite to replace it"
        )


def run_complete(out: Path, epochs: int, patience: int | None = None) -> bool:
    """Whether the run in ``out`` ended (metrics.json written): it ran its ``epochs``, or it
    stopped early, ``patience`` epochs past its best. Resuming it has nothing to train."""
    try:
        metrics = json.loads((out / METRICS).read_text())
        run, best = int(metrics["epochs_run"]), int(metrics["best_epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return run >= epochs or (patience is not None and run - best >= patience)


def _say_what_resume_ignores(out: Path, asked: TrainConfig, saved: dict) -> None:
    """A warning naming each setting given with --resume that differs from the run's own
    (a resume trains the interrupted run, as it was), and one when the run is complete."""
    import logging

    log = logging.getLogger("whichvoice.train")
    defaults = asdict(TrainConfig())
    given = json.loads(json.dumps(asdict(asked)))  # tuples as lists, as the run saved them
    ignored = [
        f"--{name.replace('_', '-')} {given[name]} (the run's: {saved[name]})"
        for name in saved
        if name != "device" and given[name] != defaults[name] and given[name] != saved[name]
    ]
    if ignored:
        log.warning("--resume keeps the run's own settings; ignored: %s", ", ".join(ignored))
    if run_complete(out, int(saved.get("epochs", 0)), saved.get("patience")):
        log.warning(
            "%s is complete: nothing to train (--resume continues an interrupted run; for more "
            "epochs, train a new run with --init %s)",
            out,
            out,
        )


def resumed(job: TrainJob) -> TrainJob:
    """``job`` with the settings saved by the run it resumes (only ``cfg.device`` is kept
    from the call), so the resumed run is the run that was interrupted."""
    out = Path(job.out)
    if not (out / CHECKPOINT).is_file():
        raise TrainError(f"{out}: nothing to resume (no {CHECKPOINT})")
    try:
        saved = json.loads((out / CONFIG).read_text())
        kept = {k: v for k, v in saved["train"].items() if k in TrainConfig.__dataclass_fields__}
        _say_what_resume_ignores(out, job.cfg, kept)
        return replace(
            job,
            cfg=replace(TrainConfig(**kept), device=job.cfg.device),
            features=FeatureConfig.from_dict(saved["features"]),
            prepare_seed=saved["prepare"]["seed"],
        )
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise TrainError(f"{out}: cannot resume, its {CONFIG} is missing or damaged ({e})") from e

"""The training loop, in every process of a torchrun job (or the only one), read top to bottom:
plan the run, start its state (fresh, ``--init`` or resumed), then per epoch set the schedule,
train, validate, keep the best weights and checkpoint; finally write the run's metrics."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch.nn.parallel import DistributedDataParallel

import whichvoice.train.steps as steps
from whichvoice.dataset import PrepareConfig, Prepared, ensure_prepared
from whichvoice.features import FeatureConfig
from whichvoice.files import ensure_dir, write_json
from whichvoice.models import model_spec
from whichvoice.provenance import provenance
from whichvoice.train.config import (
    CONFIG,
    EPOCHS,
    METRICS,
    WEIGHTS,
    TrainError,
    TrainJob,
    augment_config,
    check_features,
)
from whichvoice.train.data import TrainSet
from whichvoice.train.device import precision_used, train_threads
from whichvoice.train.distributed import Ranks, barrier
from whichvoice.train.state import Plan, RunState, new_state, saving

log = logging.getLogger(__name__)


def run(job: TrainJob, ranks: Ranks, device: torch.device) -> Path:
    """Train ``job`` into its run directory (a local path) and return it."""
    made = provenance()  # the code that runs this session, before the work
    plan = make_plan(job, ranks, device)
    state = new_state(plan)
    if ranks.main:
        _write_config(plan, state)
    if ranks.world > 1:  # DDP wraps the model for the steps; validation uses the plain one
        ids = [device.index] if device.type == "cuda" else None
        state.net = DistributedDataParallel(state.model, device_ids=ids)

    started = time.perf_counter()
    for epoch in range(state.epoch, plan.epochs):
        t0 = time.perf_counter()
        lr = state.begin_epoch(epoch, plan)
        loss, acc = steps.train_one_epoch(plan, state, epoch)
        val_loss, val_acc, val_file_acc = steps.validate(plan, state)
        row = {
            "epoch": epoch + 1,
            "loss": round(loss, 5),
            "train_acc": round(acc, 5),
            "val_loss": _measured(val_loss),
            "val_acc": _measured(val_acc),
            "val_file_acc": _measured(val_file_acc),
            "lr": lr,
            "seconds": round(time.perf_counter() - t0, 2),
        }
        improved = state.record(val_acc, val_loss)
        if ranks.main:
            _log_epoch(row, plan.epochs)
            if improved or plan.cfg.keep == "last":
                state.save_weights(plan.out / WEIGHTS, epoch)
            state.save_checkpoint(plan.out, epoch, row)
        if plan.cfg.patience is not None and state.stale >= plan.cfg.patience:
            if ranks.main:
                log.info("no better validation accuracy for %d epochs: stopping early", state.stale)
            break

    if ranks.main:
        metrics = _finish(plan, state, time.perf_counter() - started, made)
        # the run as the user named it (a URL), not its local mirror
        log.info("%s; run in %s", test_line(metrics), job.shown or plan.out)
    barrier(ranks)  # every rank returns once the run directory is complete
    return plan.out


def _check_families(manifest: Path, source, target: str) -> None:
    """TrainError when a corpus's manifest names clips of fewer than 2 engine families: said
    before its clips are decoded (a prepared folder is checked once loaded, in make_plan)."""
    if not manifest.is_file():
        return
    from whichvoice.corpus import read_manifest
    from whichvoice.voices.families import engine_family

    families = sorted({engine_family(c.voice, c.engine) for c in read_manifest(manifest)})
    if len(families) < 2:
        raise TrainError(
            f"{source}: --target {target} needs clips of 2 engine families or more, found "
            f"{', '.join(families) or 'none'}"
        )


def make_plan(job: TrainJob, ranks: Ranks, device: torch.device) -> Plan:
    """The run's settings with the model's defaults filled in, and its data in memory."""
    cfg, out = job.cfg, Path(job.out)
    spec = model_spec(cfg.model)
    augment = augment_config(cfg.augment, spec.augment)
    wanted = (job.features or FeatureConfig(name=spec.features)).name
    if augment.enabled and wanted != "logmel":  # said before the data is prepared (review)
        raise TrainError(f"augmentation needs logmel features (not {wanted}); use --augment none")
    if cfg.target in ("engine", "both"):
        _check_families(Path(job.source) / "manifest.jsonl", job.source, cfg.target)
    made = not out.exists()
    ensure_dir(out, "run")  # after the checks of the settings: a refused run makes no folder
    try:
        return _plan_in(job, out, spec, augment, ranks, device)
    except BaseException:
        if made:  # refused (no data, one voice, ...): no empty run folder left behind
            with contextlib.suppress(OSError):
                out.rmdir()
        raise


def _plan_in(job: TrainJob, out: Path, spec, augment, ranks: Ranks, device) -> Plan:
    """``make_plan``'s work once the run's folder exists."""
    cfg = job.cfg
    torch.set_num_threads(train_threads(ranks.local_world))
    data = _prepare(job, spec.features, ranks)
    if ranks.main:
        _warn_of_empty_splits(data, job.source)
    if cfg.target in ("engine", "both"):
        families = data.by_engine().labels
        if "unknown" in families:  # the answer for an engine the run does not know
            raise TrainError(
                f"{job.source}: a family called 'unknown', which is the answer for an engine "
                "the run does not know: import it under another name"
            )
        if len(families) < 2:
            raise TrainError(
                f"{job.source}: --target {cfg.target} needs clips of 2 engine families or "
                f"more, found {', '.join(families)}"
            )
        if cfg.target == "engine":
            data = data.by_engine()
    features = data.cfg.features if cfg.cmn is None else replace(data.cfg.features, cmn=cfg.cmn)
    if augment.enabled and features.name != "logmel":
        raise TrainError(
            f"augmentation needs logmel features (not {features.name}); use --augment none"
        )
    return Plan(
        job=job,
        cfg=cfg,
        out=out,
        epochs=cfg.epochs or spec.epochs,
        schedule=cfg.schedule or spec.schedule,
        augment=augment,
        features=features,
        data=data,
        train_set=TrainSet.load(data, augment, job.source),
        ranks=ranks,
        device=device,
    )


def _prepare(job: TrainJob, wanted: str, ranks: Ranks) -> Prepared:
    """The prepared data: rank 0 prepares (and caches) a corpus, the others open the cache
    once it is complete."""
    features = job.features or FeatureConfig(name=wanted)
    check_features(job.cfg.model, wanted, features.name)
    seed = job.cfg.seed if job.prepare_seed is None else job.prepare_seed
    if not ranks.main:
        barrier(ranks)
    data = ensure_prepared(
        job.source,
        PrepareConfig(features=features, seed=seed),
        progress=job.progress and ranks.main,
    )
    if ranks.main:
        barrier(ranks)
    check_features(job.cfg.model, wanted, data.cfg.features.name)  # a folder prepared before
    return data


def _write_config(plan: Plan, state: RunState) -> None:
    """config.json: what a loaded run needs (model, features, labels) and how it was trained."""
    cfg = replace(plan.cfg, epochs=plan.epochs, schedule=plan.schedule)
    write_json(
        plan.out / CONFIG,
        {
            "model": cfg.model,
            "features": plan.features.to_dict(),
            "prepare": plan.data.cfg.to_dict(),
            "labels": plan.data.labels,
            "input_shape": list(plan.features.input_shape),
            "train": cfg.to_dict(),
            "augment": plan.augment.to_dict(),
            "margin_warmup": state.warmup,
            "data": str(plan.data.root.resolve()),
        },
    )


def _measured(value: float, digits: int = 5) -> float | None:
    """``value`` rounded, or None for a split without clips (NaN is not JSON)."""
    return None if math.isnan(value) else round(value, digits)


def _warn_of_empty_splits(data: Prepared, source) -> None:
    """A warning for each held-out split without clips: a corpus too small (too few
    sentences or voices) to hold any out trains on everything and measures nothing."""
    for split, what in (
        ("val", "each epoch's weights replace the last's, and --patience is not used"),
        ("test", "the run's test accuracy is not measured"),
    ):
        if data.arrays(split)[0].shape[0] == 0:
            log.warning(
                "%s: no %s clips (too few sentences to hold any out): %s",
                source,
                "validation" if split == "val" else split,
                what,
            )


def _log_epoch(row: dict, epochs: int) -> None:
    val = (
        "no validation clips"
        if row["val_acc"] is None
        else f"val acc {row['val_acc']:.4f} (files {row['val_file_acc']:.4f})"
    )
    log.info(
        "epoch %d/%d  loss %.4f  train acc %.4f  %s  %.1f s",
        row["epoch"],
        epochs,
        row["loss"],
        row["train_acc"],
        val,
        row["seconds"],
    )


def _finish(plan: Plan, state: RunState, session_seconds: float, made: dict) -> dict:
    """metrics.json: the kept weights (the best epoch's, or the last's) on the validation and
    test splits, and how this (last) session ran: its code, machine and library versions
    (``provenance``), and the device, precision and threads the steps ran with (the weights
    depend on them: a review found a run that recorded none)."""
    model, data, device = state.model, plan.data, plan.device
    model.load_state_dict(load_file(str(plan.out / WEIGHTS), device=str(device)))
    _, test_acc, test_file_acc = steps.accuracy(model, data, "test", device, plan.features)
    _, val_acc, val_file_acc = steps.accuracy(model, data, "val", device, plan.features)
    rows = [json.loads(line) for line in (plan.out / EPOCHS).read_text().splitlines()]
    validated = [r for r in rows if r["val_acc"] is not None]
    metrics = {
        # without validation clips every epoch was kept in turn: the last one is the best
        "best_epoch": (
            max(validated, key=lambda r: (r["val_acc"], -r["val_loss"]))["epoch"]
            if validated
            else rows[-1]["epoch"]
        ),
        "kept": plan.cfg.keep,
        "epochs_run": len(rows),
        "train_seconds": round(sum(r["seconds"] for r in rows), 2),
        "this_session_seconds": round(session_seconds, 2),
        "world_size": plan.ranks.world,
        "train_clips": plan.train_set.clips,
        "val_acc": _measured(val_acc, 17),
        "val_file_acc": _measured(val_file_acc, 17),
        "test_acc": _measured(test_acc, 17),
        "test_file_acc": _measured(test_file_acc, 17),
        "made": {
            **made,
            "device": device.type,
            "precision": precision_used(device, plan.cfg.precision),
            "threads": torch.get_num_threads(),
        },
    }
    with saving(plan.out, "metrics.json", len(rows)):  # every epoch's checkpoint is there
        write_json(plan.out / METRICS, metrics)
    return metrics


def test_line(metrics: dict) -> str:
    """The run's test accuracy as the end of training says it."""
    if metrics["test_acc"] is None:
        return "no test clips: test accuracy not measured"
    return (
        f"test accuracy {metrics['test_acc']:.4f} (windows), {metrics['test_file_acc']:.4f} (files)"
    )

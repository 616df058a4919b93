"""Training: ``train(source, out, cfg) -> run directory``.

A run directory describes itself:

    config.json         model name, features, labels, prepare and train settings
    model.safetensors   the weights of the best epoch by validation accuracy (or the last's)
    checkpoint.pt       the last epoch's full state, for --resume (tensors only)
    epochs.jsonl        one line per epoch: loss, accuracies, seconds
    metrics.json        best epoch, validation and test accuracy, world size

Under torchrun (``torchrun --nproc_per_node N -m whichvoice train ...``) every process runs
``train``: DistributedDataParallel over nccl (GPUs) or gloo (CPUs), each global batch split
across the processes, and rank 0 alone validates and writes the run directory.

The modules, from the bottom up: ``config`` (settings, checks, file names), ``schedule`` (LR and
margin per epoch), ``device`` (device, autocast), ``distributed`` (the torchrun job, the local
mirrors of URLs), ``data`` (the training split in memory), ``state`` (the run's ``Plan`` and
``RunState``, checkpoints, ``--init``), ``steps`` (``train_one_epoch``, ``validate``) and
``loop`` (``run``: the training loop itself, read top to bottom).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import torch

from whichvoice import storage
from whichvoice.features import FeatureConfig
from whichvoice.files import ensure_dir, held_alone
from whichvoice.train.config import (
    CHECKPOINT,
    CONFIG,
    EPOCHS,
    METRICS,
    WEIGHTS,
    TrainConfig,
    TrainError,
    TrainJob,
    augment_config,
    check_keep,
    check_margin,
    check_out,
    check_precision,
    check_target,
    resumed,
    run_complete,
)
from whichvoice.train.device import pick_device
from whichvoice.train.distributed import (
    Ranks,
    process_group,
    ranks_from_env,
    through_mirrors,
)
from whichvoice.train.loop import run
from whichvoice.train.schedule import lr_at, margin_at
from whichvoice.train.state import read_init
from whichvoice.train.steps import accuracy

__all__ = [
    "CHECKPOINT",
    "CONFIG",
    "EPOCHS",
    "METRICS",
    "WEIGHTS",
    "Ranks",
    "TrainConfig",
    "TrainError",
    "accuracy",
    "augment_config",
    "lr_at",
    "margin_at",
    "pick_device",
    "ranks_from_env",
    "train",
]


def train(
    source: str | os.PathLike,
    out: str | os.PathLike,
    cfg: TrainConfig,
    *,
    features: FeatureConfig | None = None,
    prepare_seed: int | None = None,
    resume: bool = False,
    overwrite: bool = True,
    progress: bool = True,
) -> Path | str:
    """Train ``cfg.model`` on a corpus or prepared folder; returns the run directory ``out``.

    With ``resume``, the run's own saved settings are used (only ``cfg.device`` is taken from
    the call), so the resumed run is the run that was interrupted (``overwrite`` is then
    ignored). Otherwise a run that ``out`` already holds is replaced when ``overwrite`` (its
    files go as the new run starts: ``state.clear_run``), and refused with a TrainError before
    any work when not (the CLI's default).

    Under torchrun (WORLD_SIZE > 1) every process calls this and ``cfg.batch_size`` is the
    global batch, split across them: N processes train as one with the same batch would.
    """
    ranks = ranks_from_env()
    with contextlib.ExitStack() as alone:
        if not storage.is_url(out) and ranks.local_rank == 0:
            # one job at a time on a run: two trained side by side into one folder, each
            # writing its epochs and weights (the second told to --resume the first)
            ensure_dir(Path(out).parent, "run")
            alone.enter_context(held_alone(run_lock(Path(out)), str(out)))
        check_out(out, resume=resume, overwrite=overwrite)
        if cfg.init is not None and not resume:
            read_init(cfg.init)  # a bad --init is one line now, not after preparing the data
        job = TrainJob(source, out, cfg, features, prepare_seed, resume, progress)
        if storage.is_url(source) or storage.is_url(out):
            return through_mirrors(job, ranks, _train_local)
        return _train_local(job, ranks)


def _say_other_data(out: Path, source) -> None:
    """A warning when a complete run is resumed with data other than its own corpus or
    prepared data (an interrupted one is refused: ``state._check_same_data``); it said
    "complete" and its old figures without a word (review)."""
    import json
    import logging

    try:
        data = Path(json.loads((out / CONFIG).read_text())["data"])
        corpus = json.loads((data / "dataset.json").read_text()).get("corpus")
    except (OSError, ValueError, KeyError, TypeError):
        return
    if storage.is_url(source):
        return
    own = {os.path.realpath(p) for p in (data, corpus) if isinstance(p, (str, Path))}
    if os.path.realpath(source) not in own:
        logging.getLogger("whichvoice.train").warning(
            "%s was trained on %s, not %s: nothing was trained, and its figures are of its own "
            "data", out, corpus or data, source,
        )  # fmt: skip


def run_lock(out: Path) -> Path:
    """The lock a training job holds on its run folder: ``.NAME.lock`` beside it."""
    return out.with_name(f".{out.name}.lock")


def _train_local(job: TrainJob, ranks: Ranks) -> Path:
    """``train`` with a local source and run directory."""
    if job.resume:
        job = resumed(job)
        if run_complete(Path(job.out), job.cfg.epochs, job.cfg.patience):
            _say_other_data(Path(job.out), job.source)
            # complete (resumed() said so): nothing trained, nothing rewritten; but a
            # --target both run whose engine head was never fitted (scikit-learn missing
            # then, or stopped after the training) gets it now
            from whichvoice.enginehead import ENGINE_JSON, RUN_HEAD, require_fit_packages

            head = Path(job.out) / RUN_HEAD / ENGINE_JSON
            if job.cfg.target == "both" and ranks.main and not head.is_file():
                require_fit_packages(fingerprint=False)
                fit_run_engine_head(Path(job.out), progress=job.progress)
            return Path(job.out)
    batch = job.cfg.batch_size
    if batch < 2 * ranks.world:
        raise TrainError(
            f"batch size {batch} is too small for {ranks.world} process(es): it is the global "
            f"batch and batch norm needs 2 samples a process (at least {2 * ranks.world})"
        )
    device = pick_device(job.cfg.device)
    check_precision(job.cfg.precision)
    check_keep(job.cfg.keep)
    check_margin(job.cfg.margin)
    check_target(job.cfg.target)
    if job.cfg.target == "both":  # its engine head is fitted after the training: said first
        from whichvoice.enginehead import require_fit_packages

        require_fit_packages(fingerprint=False)
    if device.type == "cuda" and ranks.world > 1:
        device = torch.device("cuda", ranks.local_rank)
        torch.cuda.set_device(device)
    with process_group(ranks, device):
        out = run(job, ranks, device)
    if job.cfg.target == "both" and ranks.main:
        fit_run_engine_head(out, progress=job.progress)
    return out


def fit_run_engine_head(run_dir: Path, *, progress: bool = True) -> Path:
    """``--target both``: an engine head (``whichvoice.tracing``) fitted on the trained run's
    embeddings of its corpus's clips (a third of each large family's voices, or a fifth of a
    small family's clips, set its threshold), saved in ``RUN/engine``; the run's predictions
    and identifications then name the engine family too."""
    import json

    from whichvoice.encoders import load_encoder
    from whichvoice.tracing import RUN_HEAD, RUN_HEAD_C, corpus_clips, fit_from_clips, split_dev

    data = json.loads((Path(run_dir) / CONFIG).read_text())["data"]
    corpus = json.loads((Path(data) / "dataset.json").read_text())["corpus"]
    train_clips, dev_clips = split_dev(corpus_clips(corpus))
    # no fingerprint: ``predict`` answers from the run's embedding alone
    head = fit_from_clips(load_encoder(run_dir), train_clips, dev_clips, fingerprint=False,
                          c=RUN_HEAD_C, progress=progress)  # fmt: skip
    return head.save(Path(run_dir) / RUN_HEAD)

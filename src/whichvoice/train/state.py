"""What a run knows: its ``Plan`` (fixed once the run starts) and its ``RunState`` (what changes
epoch by epoch, and what ``checkpoint.pt`` holds); starting the state fresh, from ``--init``, or
from the checkpoint of an interrupted run."""

from __future__ import annotations

import contextlib
import glob
import io
import json
import logging
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load, save

from whichvoice import storage
from whichvoice.augment import AugmentConfig
from whichvoice.dataset import Prepared
from whichvoice.errors import OutputLostError
from whichvoice.features import FeatureConfig
from whichvoice.files import write_atomic
from whichvoice.models import build_model
from whichvoice.train.config import (
    CHECKPOINT,
    CONFIG,
    DERIVED_FILES,
    EPOCHS,
    METRICS,
    WEIGHTS,
    TrainConfig,
    TrainError,
    TrainJob,
    held_run,
)
from whichvoice.train.data import TrainSet
from whichvoice.train.distributed import Ranks
from whichvoice.train.schedule import lr_at, margin_at, margin_heads

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Plan:
    """What the run was asked for and what it found: settings with the model's defaults filled
    in, the prepared data, and the processes it runs in."""

    job: TrainJob
    cfg: TrainConfig
    out: Path
    epochs: int
    schedule: str
    augment: AugmentConfig
    features: FeatureConfig  # the data's, with --cmn applied
    data: Prepared
    train_set: TrainSet
    ranks: Ranks
    device: torch.device


@dataclass
class RunState:
    """The model, its optimizer and the run's progress: the next epoch, the best validation
    score so far (accuracy, -loss) and the epochs since it."""

    model: torch.nn.Module  # the plain module: validation and the saved weights
    optimizer: torch.optim.Optimizer
    warmup: bool  # the margin is warmed up, unless a fine-tuning starts from its --init's head
    margins: list[tuple[torch.nn.Module, float]] = field(default_factory=list)
    net: torch.nn.Module | None = None  # what the steps call: the model, or DDP around it
    epoch: int = 0
    best: tuple[float, float] = (-1.0, float("-inf"))
    stale: int = 0

    def begin_epoch(self, epoch: int, plan: Plan) -> float:
        """Set the epoch's learning rate and margins; returns the learning rate."""
        lr = lr_at(epoch, plan.epochs, plan.cfg.lr, plan.schedule)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        for head, final_margin in self.margins:
            head.margin = margin_at(epoch, plan.epochs, final_margin, self.warmup)
        return lr

    def record(self, val_acc: float, val_loss: float) -> bool:
        """Take an epoch's validation score; returns whether it is the best so far (a NaN
        accuracy, no validation split, counts as better: the last epoch is kept)."""
        score = (val_acc, -val_loss)
        improved = score > self.best or bool(np.isnan(val_acc))
        self.best, self.stale = (score, 0) if improved else (self.best, self.stale + 1)
        return improved

    def save_checkpoint(self, out: Path, epoch: int, row: dict) -> None:
        """Checkpoint first, then the epoch's log line: a logged epoch is always a resumable one."""
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epoch": epoch,
            "stale": self.stale,
            "best_acc": self.best[0],
            "best_neg_loss": self.best[1],
            "row": json.dumps(row),
        }
        buffer = io.BytesIO()
        torch.save(state, buffer)
        with saving(out, f"epoch {epoch + 1}'s checkpoint", epoch):
            # torch.save into the folder left a temporary file of the checkpoint's size on a
            # full disk, and a traceback (a review): the file is written whole, or not at all
            write_atomic(out / CHECKPOINT, buffer.getbuffer(), durable=False)
        # the checkpoint holds this epoch now
        with saving(out, "the epoch log", epoch + 1), open(out / EPOCHS, "a") as f:
            f.write(json.dumps(row) + "\n")

    def save_weights(self, path: Path, epoch: int | None = None) -> None:
        """The weights as safetensors, written atomically with the usual file mode
        (safetensors' own ``save_file`` makes its files readable by their owner only)."""
        weights = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        with saving(path.parent, "the weights", epoch):
            write_atomic(path, save(weights), durable=False)  # the checkpoint is what resumes


@contextlib.contextmanager
def saving(out: Path, what: str, epoch: int | None) -> Iterator[None]:
    """OutputLostError (one line, exit 1) for a run file that could not be written: a full
    disk, say, which was a traceback. ``epoch``: the epochs the run's checkpoint holds (the
    epoch being saved, counted from 0), from which --resume goes on."""
    try:
        yield
    except OSError as e:
        reason = e.strerror or str(e)
        go_on = (
            f"the run is kept up to epoch {epoch}: free some space and go on with --resume"
            if epoch
            else "no epoch was kept: free some space and run it again with --overwrite"
        )
        raise OutputLostError(f"{out}: cannot write {what} ({reason}); {go_on}") from e


def new_state(plan: Plan) -> RunState:
    """A fresh model and optimizer, seeded; then the interrupted run's checkpoint (resume) or
    the weights of ``--init``. Every rank does the same, so all start from the same weights."""
    cfg, features, n_voices = plan.cfg, plan.features, len(plan.data.labels)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, features.input_shape, n_voices).to(plan.device)
    margins = [
        (head, final if cfg.margin is None else cfg.margin) for head, final in margin_heads(model)
    ]
    if cfg.margin is not None and not margins:
        raise TrainError(f"--margin: model {cfg.model} has no margin head")
    state = RunState(model, torch.optim.Adam(model.parameters(), lr=cfg.lr), True, margins)
    plan.out.mkdir(parents=True, exist_ok=True)
    if plan.job.resume:
        _restore(state, plan)
    else:
        if cfg.init is not None:
            head = head_keys(cfg.model, features.input_shape, n_voices)
            state.warmup = not init_from(model, cfg.init, plan.data.labels, head, plan.ranks.main)
        if plan.ranks.main:
            clear_run(plan.out)
    return state


# what ``whichvoice evaluate`` writes into its report folder (by default ``RUN-eval-WHAT``)
EVAL_FILES = {"report.md", "confusion.png", "evaluation.json"}


def clear_run(out: Path) -> None:
    """Before a new run starts in ``out``: remove the run it held (its ``RUN_FILES``, the
    completeness mark first, and what other stages wrote into it, ``DERIVED_FILES``) and the
    evaluation reports beside it that name it (``OUT-eval-*`` folders holding nothing else),
    so no file left there claims to describe the new run. Other files are left alone."""
    if not held_run(out):
        return
    log.info("replacing the run in %s", out)
    for name in (METRICS, *DERIVED_FILES, EPOCHS, CHECKPOINT, WEIGHTS, CONFIG):
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    for report in out.parent.glob(f"{glob.escape(out.name)}-eval-*"):
        try:
            named = json.loads((report / "evaluation.json").read_text())["run"]
            names = {p.name for p in report.iterdir()}
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if isinstance(named, str) and Path(named).name == out.name and names <= EVAL_FILES:
            shutil.rmtree(report)
            log.info("removed %s: an evaluation of the run replaced", report)


def _restore(state: RunState, plan: Plan) -> None:
    """Load the checkpoint into ``state``: weights, optimizer, the next epoch, the best score and
    the epochs since it; rank 0 trims the epoch log to the checkpointed epoch."""
    out = plan.out
    _check_same_data(plan)
    try:
        saved = torch.load(out / CHECKPOINT, weights_only=True, map_location=plan.device)
        state.model.load_state_dict(saved["model"])
        state.optimizer.load_state_dict(saved["optimizer"])
    except (RuntimeError, OSError, KeyError, ValueError) as e:
        raise TrainError(f"{out}: cannot resume, {CHECKPOINT} is damaged ({e})") from e
    state.epoch = int(saved["epoch"]) + 1
    state.best = (float(saved["best_acc"]), float(saved["best_neg_loss"]))
    state.stale = int(saved["stale"])
    state.warmup = bool(json.loads((out / CONFIG).read_text()).get("margin_warmup", True))
    if plan.ranks.main:
        # the log must end with the checkpointed epoch: a kill between the checkpoint and its
        # log line leaves the line out; one from a later, lost epoch cannot exist
        log_path = out / EPOCHS
        lines = log_path.read_text().splitlines() if log_path.exists() else []
        kept = [ln for ln in lines if (row := _epoch_row(ln)) is not None and row < state.epoch]
        kept.append(saved["row"])
        write_atomic(log_path, "".join(line + "\n" for line in kept).encode())
        log.info("resuming %s at epoch %d", out, state.epoch + 1)


def _epoch_row(line: str) -> int | None:
    """The epoch a line of the epoch log records; None for a line a kill or a full disk cut
    short (the checkpoint's own row replaces what it held)."""
    try:
        return int(json.loads(line)["epoch"])
    except (ValueError, KeyError, TypeError):
        return None


def _check_same_data(plan: Plan) -> None:
    """TrainError when the data given to resume a run is not the data it was trained on
    (other voices, or other clips: the prepared data's name holds its content's hash): the
    run would go on under other labels."""
    try:
        saved = json.loads((plan.out / CONFIG).read_text())
        labels, data = list(saved["labels"]), Path(saved["data"])
    except (OSError, ValueError, KeyError, TypeError):
        return  # resumed() refused a damaged config.json already
    if labels != list(plan.data.labels) or data.name != plan.data.root.name:
        source = plan.job.source
        with contextlib.suppress(OSError, ValueError, KeyError):
            source = json.loads((data / "dataset.json").read_text())["corpus"]
        raise TrainError(
            f"{plan.out}: trained on other data ({source}, {len(labels)} voices), not "
            f"{plan.job.source}: resume it with its own corpus, or train a new run"
        )


def head_keys(model: str, input_shape: tuple[int, ...], n_classes: int) -> set[str]:
    """The state-dict keys of a registered model's head: those whose shape follows the number
    of voices (``head.weight``, an ensemble's ``members.0.head.weight``, talk-cnn's
    ``output.*``)."""
    a = build_model(model, input_shape, n_classes).state_dict()
    b = build_model(model, input_shape, n_classes + 1).state_dict()
    return {k for k in a if a[k].shape != b[k].shape}


def read_init(init: str | os.PathLike) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The weights and labels of run ``init`` (a path or URL); TrainError when they cannot be
    read (``train`` calls it before preparing any data, to fail early)."""
    try:
        state = load(storage.read_bytes(storage.join(init, WEIGHTS)))
        labels = json.loads(storage.read_bytes(storage.join(init, CONFIG)))["labels"]
        if not isinstance(labels, list):
            raise TypeError("its labels are not a list")
    except (OSError, ValueError, KeyError, TypeError, SafetensorError, storage.StorageError) as e:
        raise TrainError(f"--init {init}: cannot read its weights and config ({e})") from e
    return state, labels


def init_from(
    model: torch.nn.Module,
    init: str | os.PathLike,
    labels: list[str],
    head: set[str],
    report: bool,
) -> bool:
    """Load into ``model`` the weights of run ``init`` (a path or URL): every tensor but the
    ``head`` keys, and the head's rows of every voice ``init`` was also trained on (matched by
    label; the rows of new voices keep their fresh weights). Returns whether the head came along
    for most of the voices (then the margin needs no warm-up). TrainError when the weights
    cannot be read or do not fit."""
    state, init_labels = read_init(init)
    own = model.state_dict()
    take = set(own) - head
    missing = sorted(k for k in take if k not in state or state[k].shape != own[k].shape)
    if missing:
        raise TrainError(
            f"--init {init}: its weights do not fit this model ({len(missing)} "
            f"tensors missing or of another shape, e.g. {missing[0]})"
        )
    rows, shared = _head_rows(own, state, head, labels, init_labels)
    model.load_state_dict({k: state[k] for k in take} | rows, strict=False)
    if report:
        log.info(
            "started from %s: every tensor but the head, and the head's rows of %d of %d voices",
            init,
            shared,
            len(labels),
        )
    return shared > 0 and shared >= len(labels) / 2


def _head_rows(
    own: dict[str, torch.Tensor],
    state: dict[str, torch.Tensor],
    head: set[str],
    labels: list[str],
    init_labels: list[str],
) -> tuple[dict[str, torch.Tensor], int]:
    """The head tensors with the rows of the voices both runs know copied from ``state`` (one
    row a voice, in label order), and how many voices that is; none when a head tensor's rows
    are not one a voice or its other dimensions differ."""
    where = {label: i for i, label in enumerate(init_labels)}
    pairs = [(i, where[label]) for i, label in enumerate(labels) if label in where]
    fits = all(
        k in state
        and own[k].shape[0] == len(labels)
        and state[k].shape[0] == len(init_labels)
        and own[k].shape[1:] == state[k].shape[1:]
        for k in head
    )
    if not pairs or not head or not fits:
        return {}, 0
    to_rows = torch.tensor([i for i, _ in pairs])
    from_rows = torch.tensor([j for _, j in pairs])
    out = {}
    for k in head:
        tensor = own[k].clone()
        tensor[to_rows] = state[k][from_rows].to(tensor.dtype)
        out[k] = tensor
    return out, len(pairs)

"""The training loop, in every process of a torchrun job (or the only one): data, model,
epochs, checkpoints, the run's metrics."""

from __future__ import annotations

import json
import logging
import os
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load, load_file, save_file
from torch import distributed as dist
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from whichvoice import storage
from whichvoice.augment import AugmentConfig, augment_batch
from whichvoice.dataset import PrepareConfig, Prepared, ensure_prepared
from whichvoice.features import FeatureConfig, model_inputs
from whichvoice.files import ensure_dir, write_atomic
from whichvoice.models import build_model, model_spec
from whichvoice.train.config import (
    CHECKPOINT,
    CONFIG,
    EPOCHS,
    METRICS,
    WEIGHTS,
    Job,
    TrainError,
    augment_config,
    check_features,
    lr_at,
    margin_at,
    write_json,
)
from whichvoice.train.distributed import Ranks, barrier

log = logging.getLogger(__name__)


@dataclass
class _TrainSet:
    """The training split in memory (float16 windows, read every epoch), with the rows of
    their mp3 copies when mp3 augmentation is on."""

    x: np.ndarray  # (n, *input_shape) float16
    y: np.ndarray  # (n,) int64
    clip: np.ndarray  # (n,) the clip of each window
    x_mp3: np.ndarray | None = None  # windows of the mp3 copies
    mp3_row: np.ndarray | None = None  # (n,) row in x_mp3 of each window's copy, -1: none
    mp3_draw: float = 0.0  # probability to use a window's copy, when it has one

    @classmethod
    def load(cls, data: Prepared, augment: AugmentConfig, source: object) -> _TrainSet:
        x, y, clip = data.arrays("train")
        if x.shape[0] == 0:
            raise TrainError(f"{source}: the training split is empty")
        train = cls(np.asarray(x), y, clip)
        copies = data.mp3_copies() if augment.enabled and augment.mp3_p > 0 else None
        if copies is not None and len(copies[0]):
            # copies are drawn so that a window is replaced with probability mp3_p overall
            train.mp3_row = np.full(x.shape[0], -1, np.int64)
            train.mp3_row[copies[0]] = np.arange(len(copies[0]))
            train.x_mp3 = np.asarray(copies[1])
            train.mp3_draw = min(1.0, augment.mp3_p * x.shape[0] / len(copies[0]))
        return train

    def batch(
        self, batch: np.ndarray, part: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """This rank's ``part`` of a global ``batch`` (sorted row indices): float32 windows
        (with mp3 copies drawn for the whole batch, as one process draws them) and labels."""
        use = (
            (rng.random(len(batch)) < self.mp3_draw) & (self.mp3_row[batch] >= 0)
            if self.x_mp3 is not None
            else None
        )
        idx = batch[part]
        x = self.x[idx].astype(np.float32)
        if use is not None:
            x[use[part]] = self.x_mp3[self.mp3_row[idx[use[part]]]]
        return x, self.y[idx]


def run(job: Job, ranks: Ranks, device: torch.device) -> Path:
    """Train ``job`` into its run directory (a local path) and return it."""
    cfg, out = job.cfg, Path(job.out)
    ensure_dir(out, "run")
    spec = model_spec(cfg.model)
    epochs = cfg.epochs or spec.epochs
    schedule = cfg.schedule or spec.schedule
    augment = augment_config(cfg.augment, spec.augment)
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // ranks.local_world))

    data = _prepare(job, spec.features, ranks)
    features = data.cfg.features if cfg.cmn is None else replace(data.cfg.features, cmn=cfg.cmn)
    if augment.enabled and features.name != "logmel":
        raise TrainError(
            f"augmentation needs logmel features (not {features.name}); use --augment none"
        )
    train_set = _TrainSet.load(data, augment, job.source)

    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, features.input_shape, len(data.labels)).to(device)
    margins = [
        (head, final if cfg.margin is None else cfg.margin) for head, final in margin_heads(model)
    ]
    if cfg.margin is not None and not margins:
        raise TrainError(f"--margin: model {cfg.model} has no margin head")
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    out.mkdir(parents=True, exist_ok=True)
    start, best, stale = 0, (-1.0, float("-inf")), 0
    # the margin is warmed up unless a fine-tuning starts with the head of its --init
    warmup = True
    if job.resume:  # every rank loads the checkpoint: the same weights and optimizer state
        start, best, stale = _restore(out, model, optimizer, device, ranks)
        warmup = bool(json.loads((out / CONFIG).read_text()).get("margin_warmup", True))
    else:
        if cfg.init is not None:  # every rank: the same starting weights
            head = head_keys(cfg.model, features.input_shape, len(data.labels))
            warmup = not init_from(model, cfg.init, data.labels, head, ranks.main)
        if ranks.main:
            (out / EPOCHS).unlink(missing_ok=True)
    if ranks.main:
        write_json(
            out / CONFIG,
            {
                "model": cfg.model,
                "features": features.to_dict(),
                "prepare": data.cfg.to_dict(),
                "labels": data.labels,
                "input_shape": list(features.input_shape),
                "train": replace(cfg, epochs=epochs, schedule=schedule).to_dict(),
                "augment": augment.to_dict(),
                "margin_warmup": warmup,
                "data": str(data.root.resolve()),
            },
        )
    # ``model`` stays the plain module, for validation and the saved weights (no "module."
    # prefix); ``net`` is what the training steps call
    net: torch.nn.Module = model
    if ranks.world > 1:
        net = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    t_run = time.perf_counter()
    for epoch in range(start, epochs):
        t0 = time.perf_counter()
        rng = np.random.default_rng(cfg.seed * 1000 + epoch)  # resumable: no RNG state to save
        # the same shuffle on every rank; dropout and augmentation of its own on each
        torch.manual_seed((cfg.seed * 1000 + epoch) * ranks.world + ranks.rank)
        g = torch.Generator().manual_seed((cfg.seed * 1000 + epoch) * ranks.world + ranks.rank)
        lr = lr_at(epoch, epochs, cfg.lr, schedule)
        for group in optimizer.param_groups:
            group["lr"] = lr
        for head, final_margin in margins:
            head.margin = margin_at(epoch, epochs, final_margin, warmup)
        bar = tqdm(
            desc=f"epoch {epoch + 1}/{epochs}",
            unit="batch",
            leave=False,
            disable=not (job.progress and ranks.main),
            dynamic_ncols=True,
        )
        loss, acc = _epoch(
            net,
            optimizer,
            train_set,
            features,
            augment,
            cfg.batch_size,
            rng,
            g,
            ranks,
            device,
            cfg.precision,
            bar,
        )
        bar.close()
        # rank 0 validates; every rank takes its result, so that all make the same decisions
        # on the best epoch and early stopping, and stop together
        scores = [accuracy(model, data, "val", device, features) if ranks.main else None]
        if ranks.world > 1:
            dist.broadcast_object_list(scores, src=0)
        val_loss, val_acc, val_file_acc = scores[0]
        row = {
            "epoch": epoch + 1,
            "loss": round(loss, 5),
            "train_acc": round(acc, 5),
            "val_loss": round(val_loss, 5),
            "val_acc": round(val_acc, 5),
            "val_file_acc": round(val_file_acc, 5),
            "lr": lr,
            "seconds": round(time.perf_counter() - t0, 2),
        }
        if ranks.main:
            log.info(
                "epoch %d/%d  loss %.4f  train acc %.4f  val acc %.4f (files %.4f)  %.1f s",
                epoch + 1,
                epochs,
                loss,
                acc,
                val_acc,
                val_file_acc,
                row["seconds"],
            )
        score = (val_acc, -val_loss)
        improved = score > best or np.isnan(val_acc)
        best, stale = (score, 0) if improved else (best, stale + 1)
        if ranks.main and (improved or cfg.keep == "last"):
            _save_weights(model, out / WEIGHTS)
        if ranks.main:
            _checkpoint(out, model, optimizer, epoch, stale, best, row)
        if cfg.patience is not None and stale >= cfg.patience:
            if ranks.main:
                log.info("no better validation accuracy for %d epochs: stopping early", stale)
            break

    if ranks.main:
        seconds = time.perf_counter() - t_run
        _finish(out, model, data, features, train_set, device, ranks, cfg.keep, seconds)
    barrier(ranks)  # every rank returns once the run directory is complete
    return out


def _prepare(job: Job, wanted: str, ranks: Ranks) -> Prepared:
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


def _restore(
    out: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    ranks: Ranks,
) -> tuple[int, tuple[float, float], int]:
    """Load the checkpoint into ``model`` and ``optimizer``; returns (first epoch to run,
    best (val acc, -val loss), epochs since the best)."""
    try:
        state = torch.load(out / CHECKPOINT, weights_only=True, map_location=device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, OSError, KeyError, ValueError) as e:
        raise TrainError(f"{out}: cannot resume, {CHECKPOINT} is damaged ({e})") from e
    start = int(state["epoch"]) + 1
    if ranks.main:
        # the log must end with the checkpointed epoch: a kill between the checkpoint and its
        # log line leaves the line out; one from a later, lost epoch cannot exist
        log_path = out / EPOCHS
        lines = log_path.read_text().splitlines() if log_path.exists() else []
        kept = [line for line in lines if line.strip() and json.loads(line)["epoch"] < start]
        kept.append(state["row"])
        write_atomic(log_path, "".join(line + "\n" for line in kept).encode())
        log.info("resuming %s at epoch %d", out, start + 1)
    return start, (float(state["best_acc"]), float(state["best_neg_loss"])), int(state["stale"])


def head_keys(model: str, input_shape: tuple[int, ...], n_classes: int) -> set[str]:
    """The state-dict keys of a registered model's head: those whose shape follows the number
    of voices (``head.weight``, an ensemble's ``members.0.head.weight``, seed's ``output.*``)."""
    a = build_model(model, input_shape, n_classes).state_dict()
    b = build_model(model, input_shape, n_classes + 1).state_dict()
    return {k for k in a if a[k].shape != b[k].shape}


def init_from(
    model: torch.nn.Module,
    init: str | os.PathLike,
    labels: list[str],
    head: set[str],
    report: bool,
) -> bool:
    """Load into ``model`` the weights of run ``init`` (a path or URL): every tensor but the
    ``head`` keys, and those too when ``init`` was trained on the same ``labels`` (else the
    head keeps its fresh weights). Returns whether the head was loaded. TrainError when the
    weights cannot be read or do not fit."""
    try:
        state = load(storage.read_bytes(storage.join(init, WEIGHTS)))
        same_labels = json.loads(storage.read_bytes(storage.join(init, CONFIG)))["labels"] == labels
    except (OSError, ValueError, KeyError, TypeError, SafetensorError, storage.StorageError) as e:
        raise TrainError(f"--init {init}: cannot read its weights and config ({e})") from e
    own = model.state_dict()
    take = set(own) if same_labels else set(own) - head
    missing = sorted(k for k in take if k not in state or state[k].shape != own[k].shape)
    if missing:
        raise TrainError(
            f"--init {init}: its weights do not fit this model ({len(missing)} "
            f"tensors missing or of another shape, e.g. {missing[0]})"
        )
    model.load_state_dict({k: state[k] for k in take}, strict=False)
    if report:
        log.info(
            "started from %s: %d of %d tensors, %s",
            init,
            len(take),
            len(own),
            "head included" if same_labels else "a fresh head (other voices)",
        )
    return same_labels


def margin_heads(model: torch.nn.Module) -> list[tuple[torch.nn.Module, float]]:
    """Every margin head of a model (an ensemble has one a member) with its final margin,
    which the training loop warms up to epoch by epoch."""
    return [(m, float(m.margin)) for m in model.modules() if float(getattr(m, "margin", 0)) > 0]


def _epoch(
    net: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    train_set: _TrainSet,
    features: FeatureConfig,
    augment: AugmentConfig,
    batch_size: int,
    rng: np.random.Generator,
    g: torch.Generator,
    ranks: Ranks,
    device: torch.device,
    precision: str,
    bar: tqdm,
) -> tuple[float, float]:
    """One pass over one window of each training clip; returns (mean loss, accuracy) over
    every rank."""
    order = _one_window_per_clip(train_set.clip, rng)
    margin_head = hasattr(getattr(net, "module", net), "embed")
    net.train()
    total_loss, correct, seen = 0.0, 0, 0
    bar.reset(total=-(-len(order) // batch_size))
    for i in range(0, len(order), batch_size):
        bar.update()
        batch = np.sort(order[i : i + batch_size])
        # batch norm needs two samples on each rank; decided from the global batch, so
        # that every rank takes the same steps
        if len(batch) < 2 * ranks.world:
            continue
        part = np.array_split(np.arange(len(batch)), ranks.world)[ranks.rank]
        x, y = train_set.batch(batch, part, rng)
        xb = augment_batch(_to_device(x, device), augment, g)
        yb = _to_device(y, device)
        inputs = model_inputs(xb, features)
        with _autocast(device, precision):
            # margin heads need the labels while training; plain classifiers ignore them
            logits = net(inputs, yb) if margin_head else net(inputs)
            if logits.dim() == 3:
                # an ensemble while training: (batch, classes, members); each member's loss
                loss = F.cross_entropy(logits, yb[:, None].expand(-1, logits.shape[2]))
                logits = logits.detach().mean(dim=2)
            else:
                loss = F.cross_entropy(logits, yb)
        optimizer.zero_grad(set_to_none=True)
        # DDP averages the ranks' gradients; weighting each rank's mean loss by its share
        # of the batch makes that the gradient of the whole batch's mean loss
        (loss * (len(part) * ranks.world / len(batch))).backward()
        optimizer.step()
        total_loss += float(loss.detach()) * len(part)
        correct += int((logits.argmax(1) == yb).sum())
        seen += len(part)
        bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.3f}", refresh=False)
    if ranks.world > 1:
        sums = torch.tensor([total_loss, correct, seen], dtype=torch.float64, device=device)
        dist.all_reduce(sums)
        total_loss, correct, seen = float(sums[0]), int(sums[1]), int(sums[2])
    return total_loss / max(seen, 1), correct / max(seen, 1)


def _checkpoint(
    out: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    epoch: int,
    stale: int,
    best: tuple[float, float],
    row: dict,
) -> None:
    """Checkpoint first, then the epoch's log line: a logged epoch is always a resumable one."""
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "epoch": epoch,
        "stale": stale,
        "best_acc": best[0],
        "best_neg_loss": best[1],
        "row": json.dumps(row),
    }
    tmp = out / f".{CHECKPOINT}.tmp"
    torch.save(state, tmp)
    os.replace(tmp, out / CHECKPOINT)
    with open(out / EPOCHS, "a") as f:
        f.write(json.dumps(row) + "\n")


def _finish(
    out: Path,
    model: torch.nn.Module,
    data: Prepared,
    features: FeatureConfig,
    train_set: _TrainSet,
    device: torch.device,
    ranks: Ranks,
    keep: str,
    session_seconds: float,
) -> None:
    """metrics.json: the kept weights (the best epoch's, or the last's) on the validation and
    test splits."""
    model.load_state_dict(load_file(str(out / WEIGHTS), device=str(device)))
    _, test_acc, test_file_acc = accuracy(model, data, "test", device, features)
    _, val_acc, val_file_acc = accuracy(model, data, "val", device, features)
    rows = [json.loads(line) for line in (out / EPOCHS).read_text().splitlines()]
    metrics = {
        "best_epoch": max(rows, key=lambda r: (r["val_acc"], -r["val_loss"]))["epoch"],
        "kept": keep,
        "epochs_run": len(rows),
        "train_seconds": round(sum(r["seconds"] for r in rows), 2),
        "this_session_seconds": round(session_seconds, 2),
        "world_size": ranks.world,
        "train_clips": int(np.unique(train_set.clip).shape[0]),
        "val_acc": val_acc,
        "val_file_acc": val_file_acc,
        "test_acc": test_acc,
        "test_file_acc": test_file_acc,
    }
    write_json(out / METRICS, metrics)
    log.info("test accuracy %.4f (windows), %.4f (files); run in %s", test_acc, test_file_acc, out)


def _to_device(a: np.ndarray, device: torch.device) -> torch.Tensor:
    """A host array on ``device``; to a GPU through pinned memory, so the copy is async."""
    t = torch.from_numpy(a)
    return t.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else t


def _autocast(device: torch.device, precision: str = "auto") -> AbstractContextManager:
    """bf16 autocast (no loss scaling needed; margin heads keep float32 themselves) when asked
    for, or with ``auto`` on CUDA and on CPUs with AMX tiles. AVX512-BF16 alone is not enough:
    on such a CPU (a Xeon without AMX) bf16 steps measured 1.07x slower than float32 for
    voicenet-aam-wide and 1.38x for the x2 ensemble, where an AMX machine measured 1.8x faster."""
    if precision == "fp32":
        return nullcontext()
    if precision == "bf16" or device.type == "cuda" or _cpu_amx():
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


def _cpu_amx() -> bool:
    return bool(getattr(getattr(torch, "cpu", None), "_is_amx_tile_supported", lambda: False)())


def _one_window_per_clip(clip_rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices of one random window of each clip, shuffled: every clip counts once an epoch,
    and each epoch sees other windows of long clips (a random crop)."""
    order = rng.permutation(clip_rows.shape[0])
    _, first = np.unique(clip_rows[order], return_index=True)
    return order[first][rng.permutation(first.shape[0])]


@torch.inference_mode()
def _scores(
    model: torch.nn.Module,
    x: np.ndarray,
    features: FeatureConfig,
    device: torch.device,
    batch: int = 256,
) -> np.ndarray:
    """Log-probabilities of each stored window, float32 (n, n_classes)."""
    model.eval()
    out = []
    for i in range(0, x.shape[0], batch):
        xb = torch.from_numpy(np.asarray(x[i : i + batch], dtype=np.float32)).to(device)
        out.append(F.log_softmax(model(model_inputs(xb, features)), dim=1).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def accuracy(
    model: torch.nn.Module,
    data: Prepared,
    split: str,
    device: torch.device,
    features: FeatureConfig | None = None,
) -> tuple[float, float, float]:
    """(loss, window accuracy, file accuracy) on a split; files average their windows' log-probs."""
    x, y, clip = data.arrays(split)
    if x.shape[0] == 0:
        return float("nan"), float("nan"), float("nan")
    logp = _scores(model, x, features or data.cfg.features, device)
    loss = float(-logp[np.arange(len(y)), y].mean())
    window_acc = float((logp.argmax(1) == y).mean())
    clips, inverse = np.unique(clip, return_inverse=True)
    summed = np.zeros((len(clips), logp.shape[1]), np.float64)
    np.add.at(summed, inverse, logp)
    file_y = np.zeros(len(clips), np.int64)
    file_y[inverse] = y
    file_acc = float((summed.argmax(1) == file_y).mean())
    return loss, window_acc, file_acc


def _save_weights(model: torch.nn.Module, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp))
    os.replace(tmp, path)

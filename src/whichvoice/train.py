"""The training loop: ``train(source, out, cfg) -> run directory``, read top to bottom.

A run directory describes itself:

    config.json         model name, features, labels, prepare and train settings
    model.safetensors   the weights of the best epoch (by validation accuracy)
    checkpoint.pt       the last epoch's full state, for --resume (tensors only)
    epochs.jsonl        one line per epoch: loss, accuracies, seconds
    metrics.json        best epoch, validation and test accuracy, world size

Under torchrun (``torchrun --nproc_per_node N -m whichvoice train ...``) every process runs
``train``: DistributedDataParallel over nccl (GPUs) or gloo (CPUs), each global batch split
across the processes, and rank 0 alone validates and writes the run directory.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import asdict, dataclass, replace
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch import distributed as dist
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from whichvoice import storage
from whichvoice.audio import ensure_dir, write_atomic
from whichvoice.augment import NO_AUGMENT, AugmentConfig, augment_batch
from whichvoice.dataset import PrepareConfig, Prepared, ensure_prepared
from whichvoice.errors import WhichvoiceError
from whichvoice.features import FeatureConfig, model_inputs
from whichvoice.models import build_model, model_spec

log = logging.getLogger(__name__)

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
CHECKPOINT = "checkpoint.pt"
EPOCHS = "epochs.jsonl"
METRICS = "metrics.json"


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
    augment: str | None = None  # "default", "none" or parts "noise,gain,telephone,reverb,mp3"

    def to_dict(self) -> dict:
        return asdict(self)


AUGMENT_PARTS = {
    "noise": "noise_p",
    "gain": "gain_db",
    "telephone": "telephone_p",
    "reverb": "reverb_p",
    "mp3": "mp3_p",
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
    if unknown:
        raise TrainError(
            f"unknown augmentation {', '.join(sorted(unknown))}; valid: default, none, "
            f"{', '.join(AUGMENT_PARTS)}"
        )
    return replace(full, **{field: 0 for part, field in AUGMENT_PARTS.items() if part not in parts})


def _check_features(model: str, wanted: str, given: str) -> None:
    if wanted != given:
        raise TrainError(
            f"model {model} takes {wanted} features, not {given}; "
            f"use --features {wanted} or a dataset prepared with it"
        )


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainError("--device cuda: no CUDA device is available")
    if name not in ("cpu", "cuda"):
        raise TrainError(f"unknown device {name!r}; valid: auto, cpu, cuda")
    return torch.device(name)


@dataclass(frozen=True)
class Ranks:
    """This process's place in a torchrun job; one process (world 1) outside torchrun."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0  # the GPU of this process on its node
    local_world: int = 1  # processes on this node, sharing its CPU cores

    @property
    def main(self) -> bool:
        """Rank 0: the process that validates, logs and writes the run directory."""
        return self.rank == 0


def ranks_from_env() -> Ranks:
    """The torchrun job this process belongs to, from the variables torchrun sets."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Ranks()
    return Ranks(
        rank=int(os.environ["RANK"]),
        world=world,
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        local_world=int(os.environ.get("LOCAL_WORLD_SIZE", str(world))),
    )


@contextmanager
def _process_group(ranks: Ranks, device: torch.device) -> Iterator[None]:
    """torch.distributed's default group for a torchrun job, destroyed however the run ends;
    nothing for one process or a group the caller made."""
    if ranks.world == 1 or dist.is_initialized():
        yield
        return
    cuda = device.type == "cuda"
    # the other ranks wait at a barrier while rank 0 prepares a corpus, which can take hours;
    # torchrun ends every rank when one fails, so a long timeout hides no crash
    dist.init_process_group(
        "nccl" if cuda else "gloo", timeout=timedelta(hours=6), device_id=device if cuda else None
    )
    try:
        yield
    finally:
        dist.destroy_process_group()


def _barrier(ranks: Ranks) -> None:
    if ranks.world > 1:
        dist.barrier()


def _to_device(a: np.ndarray, device: torch.device) -> torch.Tensor:
    """A host array on ``device``; to a GPU through pinned memory, so the copy is async."""
    t = torch.from_numpy(a)
    return t.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else t


def _autocast(device: torch.device) -> AbstractContextManager:
    """bf16 autocast on CUDA (no loss scaling needed; margin heads keep float32 themselves);
    none on CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


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
    model: torch.nn.Module, data: Prepared, split: str, device: torch.device
) -> tuple[float, float, float]:
    """(loss, window accuracy, file accuracy) on a split; files average their windows' log-probs."""
    x, y, clip = data.arrays(split)
    if x.shape[0] == 0:
        return float("nan"), float("nan"), float("nan")
    logp = _scores(model, x, data.cfg.features, device)
    loss = float(-logp[np.arange(len(y)), y].mean())
    window_acc = float((logp.argmax(1) == y).mean())
    clips, inverse = np.unique(clip, return_inverse=True)
    summed = np.zeros((len(clips), logp.shape[1]), np.float64)
    np.add.at(summed, inverse, logp)
    file_y = np.zeros(len(clips), np.int64)
    file_y[inverse] = y
    file_acc = float((summed.argmax(1) == file_y).mean())
    return loss, window_acc, file_acc


def lr_at(epoch: int, total: int, base: float, schedule: str = "cosine") -> float:
    """The learning rate of an epoch: ``constant``, or ``cosine`` decay to base/20 at the end."""
    if schedule not in ("cosine", "constant"):
        raise TrainError(f"unknown schedule {schedule!r}; valid: cosine, constant")
    if total <= 1 or schedule == "constant":
        return base
    return float(base * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * epoch / (total - 1)))))


def margin_at(epoch: int, total: int, final: float) -> float:
    """The angular margin of an epoch: raised linearly over the first fifth of the run, so
    the embedding first learns to tell voices apart at all (a full margin from the start
    leaves a many-voice model stuck near chance)."""
    warm = max(1, round(0.2 * total))
    return final * min(1.0, (epoch + 1) / warm)


def write_json(path: Path, obj: dict) -> None:
    write_atomic(path, (json.dumps(obj, indent=2) + "\n").encode())


def train(
    source: str | os.PathLike,
    out: str | os.PathLike,
    cfg: TrainConfig,
    *,
    features: FeatureConfig | None = None,
    prepare_seed: int | None = None,
    resume: bool = False,
    progress: bool = True,
) -> Path:
    """Train ``cfg.model`` on a corpus or prepared folder; returns the run directory ``out``.

    With ``resume``, the run's own saved settings are used (only ``cfg.device`` is taken from
    the call), so the resumed run is the run that was interrupted.

    Under torchrun (WORLD_SIZE > 1) every process calls this and ``cfg.batch_size`` is the
    global batch, split across them: N processes train as one with the same batch would.
    """
    ranks = ranks_from_env()
    if storage.is_url(source) or storage.is_url(out):
        return _train_staged(source, out, cfg, features, prepare_seed, resume, progress, ranks)
    out = Path(out)
    if resume:
        cfg, features, prepare_seed = _saved_settings(out, cfg)
    if cfg.batch_size < 2 * ranks.world:
        raise TrainError(
            f"batch size {cfg.batch_size} is too small for {ranks.world} process(es): it is "
            f"the global batch and batch norm needs 2 samples a process (at least "
            f"{2 * ranks.world})"
        )
    device = pick_device(cfg.device)
    if device.type == "cuda" and ranks.world > 1:
        device = torch.device("cuda", ranks.local_rank)
        torch.cuda.set_device(device)
    with _process_group(ranks, device):
        return _train(source, out, cfg, features, prepare_seed, resume, progress, ranks, device)


def _train_staged(
    source: str | os.PathLike,
    out: str | os.PathLike,
    cfg: TrainConfig,
    features: FeatureConfig | None,
    prepare_seed: int | None,
    resume: bool,
    progress: bool,
    ranks: Ranks,
) -> str | Path:
    """``train`` with a source or run directory at a URL: through local mirrors (see
    whichvoice.storage). The first process of each node downloads while the others wait
    (for files: the mirror is named after the URL alone); rank 0 uploads the run, its
    metrics.json last, also when training fails or is interrupted, so --resume from
    another machine finds the last checkpoint."""
    remote_out = storage.is_url(out)

    def local(path: str | os.PathLike) -> Path:
        return storage.mirror_path(os.fspath(path)) if storage.is_url(path) else Path(path)

    if ranks.local_rank == 0:
        storage.local_path(source)  # a clear StorageError, before any process group
        if remote_out:
            storage.download(os.fspath(out), strict=False, progress=progress and ranks.main)
    if ranks.world > 1:  # the others wait for the mirrors: a file appears once complete
        run_id = os.environ.get("TORCHELASTIC_RUN_ID", "run")
        # the node's torchrun agent (the parent of its ranks) tells this job from earlier ones
        key = hashlib.sha256(f"{run_id} {os.getppid()} {source} {out}".encode()).hexdigest()[:16]
        marker = storage.cache_root() / f".staged-{key}"
        if ranks.local_rank == 0:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
        while not marker.exists():
            time.sleep(0.5)
    try:
        train(local(source), local(out), cfg, features=features, prepare_seed=prepare_seed,
              resume=resume, progress=progress)  # fmt: skip
        if storage.is_url(source) and ranks.main and not (local(source) / "dataset.json").is_file():
            # the corpus as the user named it, where evaluate finds the test split later
            config = json.loads((local(out) / CONFIG).read_text())
            write_json(local(out) / CONFIG, {**config, "corpus": os.fspath(source)})
    finally:
        if remote_out and ranks.main:
            storage.upload(local(out), os.fspath(out), last=[METRICS], progress=progress)
    return out


def _saved_settings(out: Path, cfg: TrainConfig) -> tuple[TrainConfig, FeatureConfig, int]:
    """The settings of the run to resume in ``out``, with ``cfg.device`` from the call."""
    if not (out / CHECKPOINT).is_file():
        raise TrainError(f"{out}: nothing to resume (no {CHECKPOINT})")
    try:
        saved = json.loads((out / CONFIG).read_text())
        kept = {k: v for k, v in saved["train"].items() if k in TrainConfig.__dataclass_fields__}
        return (
            replace(TrainConfig(**kept), device=cfg.device),
            FeatureConfig.from_dict(saved["features"]),
            saved["prepare"]["seed"],
        )
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise TrainError(f"{out}: cannot resume, its {CONFIG} is missing or damaged ({e})") from e


def _train(
    source: str | os.PathLike,
    out: Path,
    cfg: TrainConfig,
    features: FeatureConfig | None,
    prepare_seed: int | None,
    resume: bool,
    progress: bool,
    ranks: Ranks,
    device: torch.device,
) -> Path:
    """The run itself, in every process of a torchrun job (or the only one)."""
    ensure_dir(out, "run")
    spec = model_spec(cfg.model)
    epochs = cfg.epochs or spec.epochs
    schedule = cfg.schedule or spec.schedule
    augment = augment_config(cfg.augment, spec.augment)
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // ranks.local_world))

    features = features or FeatureConfig(name=spec.features)
    _check_features(cfg.model, spec.features, features.name)
    prep_cfg = PrepareConfig(
        features=features, seed=cfg.seed if prepare_seed is None else prepare_seed
    )
    # rank 0 prepares (and caches) a corpus, the others open the cache once it is complete
    if not ranks.main:
        _barrier(ranks)
    data = ensure_prepared(source, prep_cfg, progress=progress and ranks.main)
    if ranks.main:
        _barrier(ranks)
    features = data.cfg.features
    _check_features(cfg.model, spec.features, features.name)
    labels = data.labels
    x_train, y_train, clip_train = data.arrays("train")
    if x_train.shape[0] == 0:
        raise TrainError(f"{source}: the training split is empty")
    x_train = np.asarray(x_train)  # into memory once: float16, read every epoch
    # row of each train window's mp3 copy (-1: none); copies are drawn so that a window is
    # replaced with probability mp3_p overall
    copies = data.mp3_copies() if augment.enabled and augment.mp3_p > 0 else None
    if copies is not None and len(copies[0]):
        mp3_row = np.full(x_train.shape[0], -1, np.int64)
        mp3_row[copies[0]] = np.arange(len(copies[0]))
        x_mp3, mp3_draw = (
            np.asarray(copies[1]),
            min(1.0, augment.mp3_p * x_train.shape[0] / len(copies[0])),
        )
    else:
        x_mp3 = None
    if augment.enabled and features.name != "logmel":
        raise TrainError(
            f"augmentation needs logmel features (not {features.name}); use --augment none"
        )

    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, features.input_shape, len(labels)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    out.mkdir(parents=True, exist_ok=True)
    run_config = {
        "model": cfg.model,
        "features": features.to_dict(),
        "prepare": data.cfg.to_dict(),
        "labels": labels,
        "input_shape": list(features.input_shape),
        "train": replace(cfg, epochs=epochs, schedule=schedule).to_dict(),
        "augment": augment.to_dict(),
        "data": str(data.root.resolve()),
    }
    start, best, stale = 0, (-1.0, float("-inf")), 0
    if resume:  # every rank loads the checkpoint: the same weights and optimizer state
        try:
            state = torch.load(out / CHECKPOINT, weights_only=True, map_location=device)
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, OSError, KeyError, ValueError) as e:
            raise TrainError(f"{out}: cannot resume, {CHECKPOINT} is damaged ({e})") from e
        start, stale = int(state["epoch"]) + 1, int(state["stale"])
        best = (float(state["best_acc"]), float(state["best_neg_loss"]))
    if ranks.main and resume:
        # the log must end with the checkpointed epoch: a kill between the checkpoint and its
        # log line leaves the line out; one from a later, lost epoch cannot exist
        log_path = out / EPOCHS
        lines = log_path.read_text().splitlines() if log_path.exists() else []
        kept = [line for line in lines if line.strip() and json.loads(line)["epoch"] < start]
        kept.append(state["row"])
        write_atomic(log_path, "".join(line + "\n" for line in kept).encode())
        log.info("resuming %s at epoch %d", out, start + 1)
    if ranks.main and not resume:
        (out / EPOCHS).unlink(missing_ok=True)
    if ranks.main:
        write_json(out / CONFIG, run_config)
    # ``model`` stays the plain module, for validation and the saved weights (no "module."
    # prefix); ``net`` is what the training steps call
    net: torch.nn.Module = model
    if ranks.world > 1:
        net = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    head = getattr(model, "head", None)
    final_margin = float(getattr(head, "margin", 0.0))
    t_run = time.perf_counter()
    for epoch in range(start, epochs):
        t0 = time.perf_counter()
        rng = np.random.default_rng(cfg.seed * 1000 + epoch)  # resumable: no RNG state to save
        # the same shuffle on every rank; dropout and augmentation of its own on each
        torch.manual_seed((cfg.seed * 1000 + epoch) * ranks.world + ranks.rank)
        g = torch.Generator().manual_seed((cfg.seed * 1000 + epoch) * ranks.world + ranks.rank)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(epoch, epochs, cfg.lr, schedule)
        if final_margin > 0:
            head.margin = margin_at(epoch, epochs, final_margin)
        order = _one_window_per_clip(clip_train, rng)
        net.train()
        total_loss, correct, seen = 0.0, 0, 0
        bar = tqdm(
            range(0, len(order), cfg.batch_size),
            desc=f"epoch {epoch + 1}/{epochs}",
            unit="batch",
            leave=False,
            disable=not (progress and ranks.main),
            dynamic_ncols=True,
        )
        for i in bar:
            batch = np.sort(order[i : i + cfg.batch_size])
            # batch norm needs two samples on each rank; decided from the global batch, so
            # that every rank takes the same steps
            if len(batch) < 2 * ranks.world:
                continue
            # mp3 copies drawn for the whole batch, as one process draws them
            use = (
                (rng.random(len(batch)) < mp3_draw) & (mp3_row[batch] >= 0)
                if x_mp3 is not None
                else None
            )
            part = np.array_split(np.arange(len(batch)), ranks.world)[ranks.rank]
            idx = batch[part]
            batch_x = x_train[idx].astype(np.float32)
            if use is not None:
                batch_x[use[part]] = x_mp3[mp3_row[idx[use[part]]]]
            xb = augment_batch(_to_device(batch_x, device), augment, g)
            yb = _to_device(y_train[idx], device)
            inputs = model_inputs(xb, features)
            with _autocast(device):
                # margin heads need the labels while training; plain classifiers ignore them
                logits = net(inputs, yb) if hasattr(model, "embed") else net(inputs)
                loss = F.cross_entropy(logits, yb)
            optimizer.zero_grad(set_to_none=True)
            # DDP averages the ranks' gradients; weighting each rank's mean loss by its share
            # of the batch makes that the gradient of the whole batch's mean loss
            (loss * (len(idx) * ranks.world / len(batch))).backward()
            optimizer.step()
            total_loss += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(1) == yb).sum())
            seen += len(idx)
            bar.set_postfix(
                loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.3f}", refresh=False
            )
        bar.close()
        if ranks.world > 1:
            sums = torch.tensor([total_loss, correct, seen], dtype=torch.float64, device=device)
            dist.all_reduce(sums)
            total_loss, correct, seen = float(sums[0]), int(sums[1]), int(sums[2])
        # rank 0 validates; every rank takes its result, so that all make the same decisions
        # on the best epoch and early stopping, and stop together
        scores = [accuracy(model, data, "val", device) if ranks.main else None]
        if ranks.world > 1:
            dist.broadcast_object_list(scores, src=0)
        val_loss, val_acc, val_file_acc = scores[0]
        row = {
            "epoch": epoch + 1,
            "loss": round(total_loss / max(seen, 1), 5),
            "train_acc": round(correct / max(seen, 1), 5),
            "val_loss": round(val_loss, 5),
            "val_acc": round(val_acc, 5),
            "val_file_acc": round(val_file_acc, 5),
            "lr": lr_at(epoch, epochs, cfg.lr, schedule),
            "seconds": round(time.perf_counter() - t0, 2),
        }
        if ranks.main:
            log.info(
                "epoch %d/%d  loss %.4f  train acc %.4f  val acc %.4f (files %.4f)  %.1f s",
                epoch + 1,
                epochs,
                row["loss"],
                row["train_acc"],
                val_acc,
                val_file_acc,
                row["seconds"],
            )
        score = (val_acc, -val_loss)
        if score > best or np.isnan(val_acc):
            best, stale = score, 0
            if ranks.main:
                _save_weights(model, out / WEIGHTS)
        else:
            stale += 1
        if ranks.main:
            state = {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "epoch": epoch,
                "stale": stale,
                "best_acc": best[0],
                "best_neg_loss": best[1],
                "row": json.dumps(row),
            }
            # checkpoint first, then the log line: a logged epoch is always a resumable one
            tmp = out / f".{CHECKPOINT}.tmp"
            torch.save(state, tmp)
            os.replace(tmp, out / CHECKPOINT)
            with open(out / EPOCHS, "a") as f:
                f.write(json.dumps(row) + "\n")
        if cfg.patience is not None and stale >= cfg.patience:
            if ranks.main:
                log.info("no better validation accuracy for %d epochs: stopping early", stale)
            break

    train_seconds = time.perf_counter() - t_run
    if ranks.main:
        model.load_state_dict(_load_weights(out / WEIGHTS, device))
        _, test_acc, test_file_acc = accuracy(model, data, "test", device)
        _, val_acc, val_file_acc = accuracy(model, data, "val", device)
        rows = [json.loads(line) for line in (out / EPOCHS).read_text().splitlines()]
        metrics = {
            "best_epoch": max(rows, key=lambda r: (r["val_acc"], -r["val_loss"]))["epoch"],
            "epochs_run": len(rows),
            "train_seconds": round(sum(r["seconds"] for r in rows), 2),
            "this_session_seconds": round(train_seconds, 2),
            "world_size": ranks.world,
            "train_clips": int(np.unique(clip_train).shape[0]),
            "val_acc": val_acc,
            "val_file_acc": val_file_acc,
            "test_acc": test_acc,
            "test_file_acc": test_file_acc,
        }
        write_json(out / METRICS, metrics)
        log.info(
            "test accuracy %.4f (windows), %.4f (files); run in %s", test_acc, test_file_acc, out
        )
    _barrier(ranks)  # every rank returns once the run directory is complete
    return out


def _save_weights(model: torch.nn.Module, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp))
    os.replace(tmp, path)


def _load_weights(path: Path, device: torch.device) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path), device=str(device))

"""The training loop: ``train(source, out, cfg) -> run directory``, read top to bottom.

A run directory describes itself:

    config.json         model name, features, labels, prepare and train settings
    model.safetensors   the weights of the best epoch (by validation accuracy)
    checkpoint.pt       the last epoch's full state, for --resume (tensors only)
    epochs.jsonl        one line per epoch: loss, accuracies, seconds
    metrics.json        best epoch, validation and test accuracy
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch.nn import functional as F
from tqdm import tqdm

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
    """
    out = Path(out)
    if resume:
        if not (out / CHECKPOINT).is_file():
            raise TrainError(f"{out}: nothing to resume (no {CHECKPOINT})")
        try:
            saved = json.loads((out / CONFIG).read_text())
            kept = {
                k: v for k, v in saved["train"].items() if k in TrainConfig.__dataclass_fields__
            }
            cfg = replace(TrainConfig(**kept), device=cfg.device)
            features = FeatureConfig.from_dict(saved["features"])
            prepare_seed = saved["prepare"]["seed"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise TrainError(
                f"{out}: cannot resume, its {CONFIG} is missing or damaged ({e})"
            ) from e
    ensure_dir(out, "run")
    spec = model_spec(cfg.model)
    epochs = cfg.epochs or spec.epochs
    schedule = cfg.schedule or spec.schedule
    augment = augment_config(cfg.augment, spec.augment)
    device = pick_device(cfg.device)
    torch.set_num_threads(os.cpu_count() or 1)

    features = features or FeatureConfig(name=spec.features)
    _check_features(cfg.model, spec.features, features.name)
    prep_cfg = PrepareConfig(
        features=features, seed=cfg.seed if prepare_seed is None else prepare_seed
    )
    data = ensure_prepared(source, prep_cfg, progress=progress)
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
    if resume:
        try:
            state = torch.load(out / CHECKPOINT, weights_only=True, map_location=device)
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, OSError, KeyError, ValueError) as e:
            raise TrainError(f"{out}: cannot resume, {CHECKPOINT} is damaged ({e})") from e
        start, stale = int(state["epoch"]) + 1, int(state["stale"])
        best = (float(state["best_acc"]), float(state["best_neg_loss"]))
        # the log must end with the checkpointed epoch: a kill between the checkpoint and its
        # log line leaves the line out; one from a later, lost epoch cannot exist
        log_path = out / EPOCHS
        lines = log_path.read_text().splitlines() if log_path.exists() else []
        kept = [line for line in lines if line.strip() and json.loads(line)["epoch"] < start]
        kept.append(state["row"])
        write_atomic(log_path, "".join(line + "\n" for line in kept).encode())
        log.info("resuming %s at epoch %d", out, start + 1)
    else:
        (out / EPOCHS).unlink(missing_ok=True)
    write_json(out / CONFIG, run_config)

    head = getattr(model, "head", None)
    final_margin = float(getattr(head, "margin", 0.0))
    t_run = time.perf_counter()
    for epoch in range(start, epochs):
        t0 = time.perf_counter()
        rng = np.random.default_rng(cfg.seed * 1000 + epoch)  # resumable: no RNG state to save
        torch.manual_seed(cfg.seed * 1000 + epoch)
        g = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(epoch, epochs, cfg.lr, schedule)
        if final_margin > 0:
            head.margin = margin_at(epoch, epochs, final_margin)
        order = _one_window_per_clip(clip_train, rng)
        model.train()
        total_loss, correct, seen = 0.0, 0, 0
        bar = tqdm(
            range(0, len(order), cfg.batch_size),
            desc=f"epoch {epoch + 1}/{epochs}",
            unit="batch",
            leave=False,
            disable=not progress,
            dynamic_ncols=True,
        )
        for i in bar:
            idx = np.sort(order[i : i + cfg.batch_size])
            if len(idx) < 2:  # batch norm needs two samples
                continue
            batch_x = x_train[idx].astype(np.float32)
            if x_mp3 is not None:
                use = (rng.random(len(idx)) < mp3_draw) & (mp3_row[idx] >= 0)
                batch_x[use] = x_mp3[mp3_row[idx[use]]]
            xb = augment_batch(torch.from_numpy(batch_x).to(device), augment, g)
            yb = torch.from_numpy(y_train[idx]).to(device)
            # margin heads need the labels while training; plain classifiers ignore them
            logits = (
                model(model_inputs(xb, features), yb)
                if hasattr(model, "embed")
                else model(model_inputs(xb, features))
            )
            loss = F.cross_entropy(logits, yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total_loss += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(1) == yb).sum())
            seen += len(idx)
            bar.set_postfix(
                loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.3f}", refresh=False
            )
        bar.close()
        val_loss, val_acc, val_file_acc = accuracy(model, data, "val", device)
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
            _save_weights(model, out / WEIGHTS)
        else:
            stale += 1
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
            log.info("no better validation accuracy for %d epochs: stopping early", stale)
            break

    train_seconds = time.perf_counter() - t_run
    model.load_state_dict(_load_weights(out / WEIGHTS, device))
    _, test_acc, test_file_acc = accuracy(model, data, "test", device)
    _, val_acc, val_file_acc = accuracy(model, data, "val", device)
    rows = [json.loads(line) for line in (out / EPOCHS).read_text().splitlines()]
    metrics = {
        "best_epoch": max(rows, key=lambda r: (r["val_acc"], -r["val_loss"]))["epoch"],
        "epochs_run": len(rows),
        "train_seconds": round(sum(r["seconds"] for r in rows), 2),
        "this_session_seconds": round(train_seconds, 2),
        "train_clips": int(np.unique(clip_train).shape[0]),
        "val_acc": val_acc,
        "val_file_acc": val_file_acc,
        "test_acc": test_acc,
        "test_file_acc": test_file_acc,
    }
    write_json(out / METRICS, metrics)
    log.info("test accuracy %.4f (windows), %.4f (files); run in %s", test_acc, test_file_acc, out)
    return out


def _save_weights(model: torch.nn.Module, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp))
    os.replace(tmp, path)


def _load_weights(path: Path, device: torch.device) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path), device=str(device))

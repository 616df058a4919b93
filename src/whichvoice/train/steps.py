"""One epoch of training steps, and validation: what the loop calls each epoch."""

from __future__ import annotations

import numpy as np
import torch
from torch import distributed as dist
from torch.nn import functional as F
from tqdm import tqdm

from whichvoice.augment import augment_batch
from whichvoice.dataset import Prepared
from whichvoice.features import FeatureConfig, model_inputs
from whichvoice.train.device import autocast, to_device
from whichvoice.train.state import Plan, RunState


def train_one_epoch(plan: Plan, state: RunState, epoch: int) -> tuple[float, float]:
    """One pass over one window of each training clip; returns (mean loss, accuracy) over
    every rank.

    The shuffle is the same on every rank (seeded by the epoch: a resumed run needs no RNG
    state); dropout and augmentation draw on each rank's own seed."""
    cfg, ranks, device = plan.cfg, plan.ranks, plan.device
    seed = cfg.seed * 1000 + epoch
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed * ranks.world + ranks.rank)
    g = torch.Generator().manual_seed(seed * ranks.world + ranks.rank)
    net = state.net or state.model
    margin_head = hasattr(getattr(net, "module", net), "embed")
    order = plan.train_set.epoch_order(rng)
    net.train()
    total_loss, correct, seen = 0.0, 0, 0
    bar = tqdm(
        total=-(-len(order) // cfg.batch_size),
        desc=f"epoch {epoch + 1}/{plan.epochs}",
        unit="batch",
        leave=False,
        disable=None if plan.job.progress and ranks.main else True,
        dynamic_ncols=True,
    )
    for i in range(0, len(order), cfg.batch_size):
        bar.update()
        batch = np.sort(order[i : i + cfg.batch_size])
        # batch norm needs two samples on each rank; decided from the global batch, so
        # that every rank takes the same steps
        if len(batch) < 2 * ranks.world:
            continue
        part = np.array_split(np.arange(len(batch)), ranks.world)[ranks.rank]
        x, y = plan.train_set.batch(batch, part, rng)
        xb = augment_batch(to_device(x, device), plan.augment, g)
        yb = to_device(y, device)
        inputs = model_inputs(xb, plan.features)
        with autocast(device, cfg.precision):
            # margin heads need the labels while training; plain classifiers ignore them
            logits = net(inputs, yb) if margin_head else net(inputs)
            if logits.dim() == 3:
                # an ensemble while training: (batch, classes, members); each member's loss
                loss = F.cross_entropy(logits, yb[:, None].expand(-1, logits.shape[2]))
                logits = logits.detach().mean(dim=2)
            else:
                loss = F.cross_entropy(logits, yb)
        state.optimizer.zero_grad(set_to_none=True)
        # DDP averages the ranks' gradients; weighting each rank's mean loss by its share
        # of the batch makes that the gradient of the whole batch's mean loss
        (loss * (len(part) * ranks.world / len(batch))).backward()
        state.optimizer.step()
        total_loss += float(loss.detach()) * len(part)
        correct += int((logits.argmax(1) == yb).sum())
        seen += len(part)
        bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.3f}", refresh=False)
    bar.close()
    if ranks.world > 1:
        sums = torch.tensor([total_loss, correct, seen], dtype=torch.float64, device=device)
        dist.all_reduce(sums)
        total_loss, correct, seen = float(sums[0]), int(sums[1]), int(sums[2])
    return total_loss / max(seen, 1), correct / max(seen, 1)


def validate(plan: Plan, state: RunState) -> tuple[float, float, float]:
    """(loss, window accuracy, file accuracy) on the validation split. Rank 0 computes it and
    every rank takes its result, so that all make the same decisions on the best epoch and
    early stopping, and stop together."""
    ranks = plan.ranks
    scores = [
        accuracy(state.model, plan.data, "val", plan.device, plan.features) if ranks.main else None
    ]
    if ranks.world > 1:
        dist.broadcast_object_list(scores, src=0)
    return scores[0]


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
    logp = _log_probs(model, x, features or data.cfg.features, device)
    loss = float(-logp[np.arange(len(y)), y].mean())
    window_acc = float((logp.argmax(1) == y).mean())
    clips, inverse = np.unique(clip, return_inverse=True)
    summed = np.zeros((len(clips), logp.shape[1]), np.float64)
    np.add.at(summed, inverse, logp)
    file_y = np.zeros(len(clips), np.int64)
    file_y[inverse] = y
    file_acc = float((summed.argmax(1) == file_y).mean())
    return loss, window_acc, file_acc


@torch.inference_mode()
def _log_probs(
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

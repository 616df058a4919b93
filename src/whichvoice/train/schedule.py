"""What changes from epoch to epoch: the learning rate and the margin heads' angular margin."""

from __future__ import annotations

import numpy as np
import torch

from whichvoice.train.config import TrainError


def lr_at(epoch: int, total: int, base: float, schedule: str = "cosine") -> float:
    """The learning rate of an epoch: ``constant``, or ``cosine`` decay to base/20 at the end."""
    if schedule not in ("cosine", "constant"):
        raise TrainError(f"unknown schedule {schedule!r}; valid: cosine, constant")
    if total <= 1 or schedule == "constant":
        return base
    return float(base * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * epoch / (total - 1)))))


def margin_at(epoch: int, total: int, final: float, warmup: bool = True) -> float:
    """The angular margin of an epoch: raised linearly over the first fifth of the run, so
    the embedding first learns to tell voices apart at all (a full margin from the start
    leaves a many-voice model stuck near chance); ``warmup=False`` (a fine-tuned model,
    which tells them apart already): the full margin from the start."""
    warm = max(1, round(0.2 * total)) if warmup else 1
    return final * min(1.0, (epoch + 1) / warm)


def margin_heads(model: torch.nn.Module) -> list[tuple[torch.nn.Module, float]]:
    """Every margin head of a model (an ensemble has one a member) with its final margin,
    which the training loop warms up to epoch by epoch."""
    return [(m, float(m.margin)) for m in model.modules() if float(getattr(m, "margin", 0)) > 0]

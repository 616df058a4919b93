"""The training split in memory, and the windows each epoch draws from it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from whichvoice.augment import AugmentConfig
from whichvoice.dataset import Prepared
from whichvoice.train.config import TrainError


@dataclass
class TrainSet:
    """The training split in memory (float16 windows, read every epoch), with the rows of
    their mp3 copies when mp3 augmentation is on."""

    x: np.ndarray  # (n, *input_shape) float16
    y: np.ndarray  # (n,) int64
    clip: np.ndarray  # (n,) the clip of each window
    x_mp3: np.ndarray | None = None  # windows of the mp3 copies
    mp3_row: np.ndarray | None = None  # (n,) row in x_mp3 of each window's copy, -1: none
    mp3_draw: float = 0.0  # probability to use a window's copy, when it has one

    @classmethod
    def load(cls, data: Prepared, augment: AugmentConfig, source: object) -> TrainSet:
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

    @property
    def clips(self) -> int:
        return int(np.unique(self.clip).shape[0])

    def epoch_order(self, rng: np.random.Generator) -> np.ndarray:
        """Indices of one random window of each clip, shuffled: every clip counts once an
        epoch, and each epoch sees other windows of long clips (a random crop)."""
        order = rng.permutation(self.clip.shape[0])
        _, first = np.unique(self.clip[order], return_index=True)
        return order[first][rng.permutation(first.shape[0])]

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

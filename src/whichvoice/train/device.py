"""Where the steps run: the device, host-to-device copies, and bf16 autocast."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import numpy as np
import torch

from whichvoice.train.config import TrainError


def pick_device(name: str) -> torch.device:
    """``--device``: auto (CUDA when there is one), cpu or cuda."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainError("--device cuda: no CUDA device is available")
    if name not in ("cpu", "cuda"):
        raise TrainError(f"unknown device {name!r}; valid: auto, cpu, cuda")
    return torch.device(name)


def to_device(a: np.ndarray, device: torch.device) -> torch.Tensor:
    """A host array on ``device``; to a GPU through pinned memory, so the copy is async."""
    t = torch.from_numpy(a)
    return t.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else t


def autocast(device: torch.device, precision: str = "auto") -> AbstractContextManager:
    """bf16 autocast (no loss scaling needed; margin heads keep float32 themselves) when asked
    for, or with ``auto`` on CUDA and on CPUs with AMX tiles. AVX512-BF16 alone is not enough:
    on such a CPU (a Xeon without AMX) bf16 steps measured 1.07x slower than float32 for
    voicenet-aam-wide and 1.38x for the x2 ensemble, where an AMX machine measured 1.8x faster."""
    if precision_used(device, precision) == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


def precision_used(device: torch.device, precision: str = "auto") -> str:
    """What ``autocast`` runs the steps in: "bf16" or "fp32" (``auto`` resolved)."""
    if precision == "fp32":
        return "fp32"
    if precision == "bf16" or device.type == "cuda" or _cpu_amx():
        return "bf16"
    return "fp32"


def train_threads(local_world: int) -> int:
    """Threads for each training process: ``WHICHVOICE_THREADS`` where set, else (one
    process on the machine) ``OMP_NUM_THREADS`` where set, else the machine's cores shared
    among the processes on it. torchrun sets ``OMP_NUM_THREADS`` to 1 for several processes
    whether the user asked or not, so there it is not read (a review). The weights depend on
    the threads (float sums split differently): a run records them, and a rerun elsewhere
    can ask for the same."""
    import os

    from whichvoice.errors import WhichvoiceError

    ours = os.environ.get("WHICHVOICE_THREADS", "").strip()
    if ours:  # a typo fell back to every core without a word, and 99999 was taken (review)
        if not (ours.isascii() and ours.isdigit() and 1 <= int(ours) <= MAX_THREADS):
            raise WhichvoiceError(
                f"WHICHVOICE_THREADS={ours!r}: a whole number of threads, 1 to {MAX_THREADS}"
            )
        return int(ours)
    asked = os.environ.get("OMP_NUM_THREADS", "").strip() if local_world == 1 else ""
    if asked.isascii() and asked.isdigit() and int(asked) > 0:  # OpenMP's own: as it reads it
        return int(asked)
    return max(1, (os.cpu_count() or 1) // local_world)


MAX_THREADS = 1024


def _cpu_amx() -> bool:
    return bool(getattr(getattr(torch, "cpu", None), "_is_amx_tile_supported", lambda: False)())

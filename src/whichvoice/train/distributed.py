"""Where a run happens: the processes of a torchrun job, and local mirrors of a source or run
directory at a URL (see whichvoice.storage)."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

import torch
from torch import distributed as dist

from whichvoice import storage
from whichvoice.dataset import DatasetError
from whichvoice.files import write_json
from whichvoice.train.config import CONFIG, METRICS, TrainJob


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
def process_group(ranks: Ranks, device: torch.device) -> Iterator[None]:
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


def barrier(ranks: Ranks) -> None:
    """Wait for every process. One that stopped (rank 0 refusing the data or the run
    folder, said in its own line) closes the group: the others stop with one line too,
    rather than a gloo traceback each."""
    if ranks.world > 1:
        try:
            dist.barrier()
        except RuntimeError:  # DistBackendError among them: the group went away
            from whichvoice.train.config import TrainError

            raise TrainError(
                f"rank {ranks.rank}: another process stopped; its own error says why"
            ) from None


def through_mirrors(
    job: TrainJob, ranks: Ranks, train_local: Callable[[TrainJob, Ranks], Path]
) -> str | os.PathLike:
    """Run ``train_local`` on local mirrors of a source or run directory at a URL.

    The first process of each node downloads while the others wait (for files: the mirror is
    named after the URL alone); rank 0 uploads the run, its metrics.json last, also when
    training fails or is interrupted, so --resume from another machine finds the last
    checkpoint. Returns the run's URL."""
    source, out = job.source, job.out
    remote_out = storage.is_url(out)

    def local(path: str | os.PathLike) -> Path:
        return storage.mirror_path(os.fspath(path)) if storage.is_url(path) else Path(path)

    if ranks.local_rank == 0:
        storage.local_path(source)  # a clear StorageError, before any process group
        if remote_out:
            storage.download(os.fspath(out), strict=False, progress=job.progress and ranks.main)
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
        try:
            shown = os.fspath(out) if remote_out else None
            train_local(replace(job, source=local(source), out=local(out), shown=shown), ranks)
        except DatasetError as e:  # named as the user gave it, not as its local mirror
            if not storage.is_url(source):
                raise
            raise DatasetError(str(e).replace(str(local(source)), os.fspath(source))) from e
        if storage.is_url(source) and ranks.main and not (local(source) / "dataset.json").is_file():
            # the corpus as the user named it, where evaluate finds the test split later
            config = json.loads((local(out) / CONFIG).read_text())
            write_json(local(out) / CONFIG, {**config, "corpus": os.fspath(source)})
    finally:
        if remote_out and ranks.main:
            storage.upload(local(out), os.fspath(out), last=[METRICS], progress=job.progress)
    return out

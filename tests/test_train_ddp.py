"""Distributed training: ``torchrun -m whichvoice train`` with 2 CPU processes (gloo)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from whichvoice.runtime import load_model
from whichvoice.train import TrainConfig, TrainError, train


def torchrun(*args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node 2 -m whichvoice ARGS``, one thread a process."""
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "whichvoice", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert proc.returncode == 0 or not check, (
        f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    )
    return proc


@pytest.fixture(scope="module")
def ddp_run(small_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``trained_run``'s settings (8 epochs, global batch 16, seed 0) under torchrun, on a copy
    of the corpus without its prepared cache, so that rank 0 prepares while rank 1 waits."""
    root = tmp_path_factory.mktemp("ddp")
    corpus = shutil.copytree(
        small_corpus, root / "corpus", ignore=shutil.ignore_patterns("prepared")
    )
    run = root / "run"
    proc = torchrun("train", str(corpus), "--out", str(run), "--epochs", "8", "--batch-size", "16")
    # rank 1 logs nothing: the summary comes once
    assert proc.stdout.count("test accuracy") == 1, proc.stdout
    return run


def epochs_of(run: Path) -> list[int]:
    return [json.loads(line)["epoch"] for line in (run / "epochs.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_two_processes_train_as_one_with_the_same_global_batch(
    trained_run: Path, ddp_run: Path
) -> None:
    assert epochs_of(ddp_run) == list(range(1, 9))  # one writer: no line twice
    one = json.loads((trained_run / "metrics.json").read_text())
    two = json.loads((ddp_run / "metrics.json").read_text())
    assert (one["world_size"], two["world_size"]) == (1, 2)
    assert two["train_seconds"] > 0
    model = load_model(ddp_run)
    assert model.labels == json.loads((ddp_run / "config.json").read_text())["labels"]
    # chance is 0.25 (4 voices). The test split holds ~40 windows (one is ~0.025); the runs
    # differ only in each process's batch-norm statistics and augmentation draws, which moves
    # a few windows: 0.15 (~6 windows) is within noise, a DDP run that learnt less is not
    assert two["test_acc"] >= 0.8 and one["test_acc"] >= 0.8, (one, two)
    assert abs(two["test_acc"] - one["test_acc"]) <= 0.15, (one, two)


@pytest.mark.slow
def test_a_ddp_checkpoint_resumes_in_one_process_and_under_torchrun(
    ddp_run: Path, tmp_path: Path
) -> None:
    state = torch.load(ddp_run / "checkpoint.pt", weights_only=True)
    assert not any(k.startswith("module.") for k in state["model"])
    corpus = ddp_run.parent / "corpus"
    for name in ("one", "two"):
        # the finished 8-epoch run, as if it had been started for 9 and stopped after 8
        run = shutil.copytree(ddp_run, tmp_path / name)
        config = json.loads((run / "config.json").read_text())
        config["train"]["epochs"] = 9
        (run / "config.json").write_text(json.dumps(config))
        if name == "one":
            train(corpus, run, TrainConfig(), resume=True, progress=False)
        else:
            torchrun("train", str(corpus), "--out", str(run), "--resume", "--quiet")
        assert epochs_of(run) == list(range(1, 10)), name
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["world_size"] == (1 if name == "one" else 2)
        assert metrics["test_acc"] >= 0.8
        load_model(run)


def test_a_global_batch_too_small_for_the_processes_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for k, v in {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(TrainError, match="at least 4"):
        train(tmp_path, tmp_path / "run", TrainConfig(batch_size=3), progress=False)


@pytest.mark.slow
def test_a_refused_corpus_is_one_line_from_each_process(tmp_path: Path) -> None:
    """Rank 0 refuses the corpus in one line; rank 1, left waiting at the barrier, died in a
    gloo traceback of whichvoice's own (torchrun's summary of the failure is its own)."""
    proc = torchrun("train", str(tmp_path / "none"), "--out", str(tmp_path / "r"), check=False)
    assert proc.returncode != 0
    assert "not a corpus" in proc.stderr
    # rank 1 says "another process stopped" unless torchrun stops it first: never a frame
    assert "whichvoice/train" not in proc.stderr, proc.stderr
    # one line a process, not the same line twice (review): the others name their rank
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == len(set(errors)), errors


@pytest.mark.slow  # runs CLI processes
def test_under_torchrun_rank_0_alone_warns_and_the_others_name_their_rank(
    cli, tmp_path: Path
) -> None:
    """Every warning and error line came twice under torchrun with 2 processes (review)."""
    import logging

    from whichvoice.cli.common import setup_logging

    for rank, level in (("0", logging.WARNING), ("1", logging.ERROR)):
        env = {"RANK": rank, "LOCAL_RANK": rank, "WORLD_SIZE": "2"}
        with pytest.MonkeyPatch.context() as mp:
            for k, v in env.items():
                mp.setenv(k, v)
            setup_logging(False)
            assert logging.getLogger("whichvoice").level == level
        proc = cli("evaluate", str(tmp_path / "none"), env=env)
        assert proc.returncode == 2
        assert proc.stderr.startswith("error: rank 1: " if rank == "1" else "error: /")
    logging.getLogger("whichvoice").setLevel(logging.WARNING)

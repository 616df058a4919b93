import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from whichvoice.runtime import load_model
from whichvoice.train import TrainConfig, lr_at, train


def test_lr_schedule_decays() -> None:
    lrs = [lr_at(e, 6, 1e-3) for e in range(6)]
    assert lrs[0] == pytest.approx(1e-3)
    assert all(a > b for a, b in itertools.pairwise(lrs))
    assert lrs[-1] == pytest.approx(5e-5)


@pytest.mark.slow
def test_trained_run_describes_itself_and_beats_chance(trained_run: Path) -> None:
    for name in (
        "model.safetensors",
        "config.json",
        "metrics.json",
        "epochs.jsonl",
        "checkpoint.pt",
    ):
        assert (trained_run / name).is_file(), name
    # the weights are as readable as the rest of the run (safetensors' save_file made 0600)
    modes = {(trained_run / n).stat().st_mode & 0o777 for n in ("model.safetensors", "config.json")}
    assert len(modes) == 1, modes
    config = json.loads((trained_run / "config.json").read_text())
    assert config["model"] == "voicenet" and len(config["labels"]) == 4
    epochs = [json.loads(x) for x in (trained_run / "epochs.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in epochs] == list(range(1, 9))
    assert {"loss", "train_acc", "val_acc", "seconds"} <= set(epochs[0])
    assert epochs[-1]["loss"] < epochs[0]["loss"]
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert metrics["test_file_acc"] >= 0.8  # chance is 0.25
    model = load_model(trained_run)
    assert model.labels == config["labels"]


@pytest.mark.slow
def test_resume_after_kill_matches_an_uninterrupted_run(small_corpus: Path, tmp_path: Path) -> None:
    args = [
        sys.executable,
        "-m",
        "whichvoice",
        "train",
        str(small_corpus),
        "--epochs",
        "4",
        "--batch-size",
        "16",
        "--quiet",
    ]
    proc = subprocess.Popen([*args, "--out", str(tmp_path / "a")])
    log = tmp_path / "a" / "epochs.jsonl"
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if log.exists() and log.read_text().count("\n") >= 1:
            proc.kill()
            break
        time.sleep(0.02)
    proc.wait()
    # killed after its first epoch; on a machine fast enough to finish first, the resume
    # below must then change nothing (the comparison with run b still holds it to that)
    assert proc.returncode in (-signal.SIGKILL, 0), proc.returncode
    subprocess.run([*args, "--out", str(tmp_path / "a"), "--resume"], check=True)
    epochs = [json.loads(x)["epoch"] for x in log.read_text().splitlines()]
    assert epochs == [1, 2, 3, 4]
    subprocess.run([*args, "--out", str(tmp_path / "b")], check=True)
    # every epoch draws its own seeded shuffle and dropout: the resumed run is the same run
    last_a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)["model"]
    last_b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["model"]
    for k in last_a:
        assert np.allclose(last_a[k].float().numpy(), last_b[k].float().numpy(), atol=1e-4), k


@pytest.mark.slow  # several CLI processes: 5 s of the fast subset's minute
def test_a_run_in_out_is_refused_unless_resumed_or_overwritten(cli, tmp_path: Path) -> None:
    from whichvoice.train import TrainError

    runs = {
        "trained": ("config.json", "model.safetensors", "checkpoint.pt", "metrics.json"),
        "interrupted": ("config.json", "model.safetensors", "checkpoint.pt", "epochs.jsonl"),
        "started": ("config.json",),
    }
    for state, names in runs.items():
        out = tmp_path / state
        out.mkdir()
        for name in (*names, "model.onnx"):
            (out / name).write_text(name)
    for state, needle in [
        ("trained", "holds a trained run: --overwrite to replace it"),
        ("interrupted", "holds an interrupted run: --resume to continue it, or --overwrite"),
        ("started", "holds the start of a run (no checkpoint.pt to resume): --overwrite"),
    ]:
        out = tmp_path / state
        before = {p.name: p.read_bytes() for p in out.iterdir()}
        # refused before any work: the source is not even looked at
        proc = cli("train", str(tmp_path / "no-corpus"), "--out", str(out), "--init", "nosuch")
        assert proc.returncode == 2 and needle in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before
        with pytest.raises(TrainError, match="holds"):
            train(tmp_path / "no-corpus", out, TrainConfig(), overwrite=False, progress=False)
    proc = cli("train", str(tmp_path), "--out", str(tmp_path / "trained"), "--resume",
               "--overwrite")  # fmt: skip
    assert proc.returncode == 2 and "--resume or --overwrite, not both" in proc.stderr


def test_a_run_being_trained_is_not_trained_again_beside_it(tmp_path: Path) -> None:
    """A second `train --resume` into a run still training trained side by side with it,
    each writing the epochs and weights (review); the second is told it is busy."""
    from whichvoice.errors import OutputError
    from whichvoice.files import held_alone
    from whichvoice.train import run_lock

    out = tmp_path / "run"
    with held_alone(run_lock(out), str(out)):  # the first job, still training
        for resume in (True, False):
            with pytest.raises(OutputError, match=f"another whichvoice is writing {out} now"):
                train(tmp_path / "corpus", out, TrainConfig(), resume=resume, progress=False)
    assert not run_lock(out).exists()


@pytest.mark.slow
def test_a_bad_init_is_refused_before_the_data_is_prepared(cli, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "manifest.jsonl").write_text("")
    proc = cli("train", str(corpus), "--out", str(tmp_path / "r"), "--init", "nosuch")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == (
        "error: --init nosuch: cannot read its weights and config "
        "([Errno 2] No such file or directory: 'nosuch/model.safetensors')"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus"]  # no run folder
    assert [p.name for p in corpus.iterdir()] == ["manifest.jsonl"]  # nothing prepared


@pytest.mark.slow  # CLI processes
def test_evaluate_names_a_folder_that_is_no_run_and_makes_no_report_folder(
    cli, tmp_path: Path
) -> None:
    for args in ([], ["--labels", str(tmp_path / "human.csv")]):
        proc = cli("evaluate", str(tmp_path / "nosuch"), *args)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip() == f"error: {tmp_path / 'nosuch'}: not a trained run " \
            "(config.json missing)"  # fmt: skip
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_evaluate_with_a_missing_labels_csv_makes_no_report_folder(cli, trained_run: Path) -> None:
    proc = cli("evaluate", str(trained_run), "--labels", str(trained_run.parent / "none.csv"))
    assert proc.returncode == 2 and "none.csv: cannot read" in proc.stderr, proc.stderr
    assert not Path(f"{trained_run}-eval-none").exists()


@pytest.mark.slow
def test_overwrite_replaces_the_run_and_what_described_it(
    cli, small_corpus: Path, tmp_path: Path
) -> None:
    run = tmp_path / "r"
    args = ["train", str(small_corpus), "--out", str(run), "--epochs", "1", "--batch-size", "16",
            "--quiet"]  # fmt: skip
    cli(*args, check=True)
    (run / "model.onnx").write_text("an export of the first run")
    (run / "engine").mkdir()
    (run / "engine" / "engine.json").write_text("{}")
    (run / "notes.txt").write_text("mine")
    ours, kept = tmp_path / "r-eval-corpus-test", tmp_path / "r-eval-annotated"
    for report in (ours, kept):
        report.mkdir()
        (report / "evaluation.json").write_text(json.dumps({"run": str(run)}))
        (report / "report.md").write_text("accuracy of the first run")
    (kept / "annotations.txt").write_text("not evaluate's: the folder stays")
    first = (run / "model.safetensors").read_bytes()
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}

    proc = cli(*args, "--seed", "1")
    assert proc.returncode == 2 and "holds a trained run" in proc.stderr, proc.stderr
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before

    cli(*args, "--seed", "1", "--overwrite", check=True)
    assert (run / "model.safetensors").read_bytes() != first
    assert sorted(p.name for p in run.iterdir()) == [
        "checkpoint.pt", "config.json", "epochs.jsonl", "metrics.json", "model.safetensors",
        "notes.txt",
    ]  # fmt: skip
    assert json.loads((run / "config.json").read_text())["train"]["seed"] == 1
    assert len((run / "epochs.jsonl").read_text().splitlines()) == 1
    assert not ours.exists() and (kept / "annotations.txt").exists()


@pytest.mark.slow
def test_resume_without_a_checkpoint_is_a_clear_error(cli, tmp_path: Path) -> None:
    proc = cli("train", str(tmp_path), "--out", str(tmp_path / "run"), "--resume")
    assert proc.returncode == 2 and "nothing to resume" in proc.stderr


@pytest.mark.slow
def test_early_stopping(small_corpus: Path, tmp_path: Path) -> None:
    train(
        small_corpus,
        tmp_path / "r",
        TrainConfig(epochs=30, batch_size=16, patience=1),
        progress=False,
    )
    epochs = (tmp_path / "r" / "epochs.jsonl").read_text().splitlines()
    assert len(epochs) < 30
    # it stops the epoch after the best one (patience 1), not an epoch later (a test-suite
    # review: `stale > patience` passed)
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert metrics["epochs_run"] == len(epochs) == metrics["best_epoch"] + 1


def test_a_resumed_run_keeps_its_epochs_without_improvement(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checkpoint's count of epochs without a better validation score is the resumed
    run's: --patience goes on counting, not from 0 (a test-suite review's mutant passed)."""
    from types import SimpleNamespace

    from whichvoice.train import state as st

    monkeypatch.setattr(st, "_check_same_data", lambda plan: None)
    row = json.dumps({"epoch": 4})
    torch.save({"model": {}, "optimizer": {}, "epoch": 3, "best_acc": 0.9, "best_neg_loss": -0.2,
                "stale": 2, "row": row}, tmp_path / st.CHECKPOINT)  # fmt: skip
    (tmp_path / st.CONFIG).write_text("{}")
    (tmp_path / st.EPOCHS).write_text(
        "".join(json.dumps({"epoch": e}) + "\n" for e in (1, 2, 3, 4))
    )
    loads = SimpleNamespace(load_state_dict=lambda d: None)
    state = SimpleNamespace(model=loads, optimizer=loads)
    plan = SimpleNamespace(out=tmp_path, device="cpu", ranks=SimpleNamespace(main=True))
    st._restore(state, plan)
    assert (state.epoch, state.best, state.stale) == (4, (0.9, -0.2), 2)


def test_constant_schedule_for_the_seed_model() -> None:
    from whichvoice.models import model_spec

    assert model_spec("seed").schedule == "constant"
    assert {lr_at(e, 5, 1e-3, "constant") for e in range(5)} == {1e-3}


@pytest.mark.slow
def test_the_talks_model_trains_on_seed_images_and_predicts(
    small_corpus: Path, tmp_path: Path
) -> None:
    from whichvoice.corpus import read_manifest
    from whichvoice.features import FeatureConfig

    run = train(
        small_corpus,
        tmp_path / "seed",
        TrainConfig(model="seed", epochs=1),
        features=FeatureConfig(name="seed-image"),
        progress=False,
    )
    config = json.loads((run / "config.json").read_text())
    assert config["features"]["name"] == "seed-image" and config["input_shape"] == [3, 140, 140]
    assert config["augment"]["enabled"] is False and config["train"]["schedule"] == "constant"
    clip = read_manifest(small_corpus / "manifest.jsonl")[0]
    result = load_model(run).identify(small_corpus / clip.path)
    assert result.voice in config["labels"] and result.windows >= 1


@pytest.mark.slow
def test_misuse_is_one_line(cli, small_corpus: Path, trained_run: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    for args, needle in [
        (["train", str(small_corpus), "--out", str(blocker / "run")], "cannot write"),
        (
            [
                "train",
                str(Path(json.loads((trained_run / "config.json").read_text())["data"])),
                "--out",
                str(tmp_path / "r"),
                "--model",
                "seed",
            ],
            "takes seed-image features",
        ),
        (["prepare", str(small_corpus), str(blocker / "prep")], "cannot write"),
        (
            [
                "train",
                str(Path(json.loads((trained_run / "config.json").read_text())["data"])),
                "--out",
                str(tmp_path / "r"),
                "--window",
                "1.5",
            ],
            "is a prepared dataset",  # its windows are set: --window was ignored
        ),
        (
            [
                "evaluate",
                str(trained_run),
                "--corpus",
                str(small_corpus),
                "--conditions",
                "clean,bogus",
            ],
            "unknown condition bogus",
        ),
        (  # scored no condition, silently (review)
            ["evaluate", str(trained_run), "--corpus", str(small_corpus), "--conditions", " "],
            "names no condition",
        ),
        (  # all and a misspelt one: the misspelt one is said
            [
                "evaluate",
                str(trained_run),
                "--corpus",
                str(small_corpus),
                "--conditions",
                "all,nois",
            ],
            "unknown condition nois",
        ),
    ]:
        proc = cli(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1 and needle in proc.stderr, proc.stderr


@pytest.mark.slow
def test_resume_keeps_the_runs_own_settings(
    small_corpus: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    train(
        small_corpus, tmp_path / "r", TrainConfig(epochs=2, batch_size=16, lr=2e-3), progress=False
    )
    run_files = {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir() if p.is_file()}
    with caplog.at_level("WARNING", logger="whichvoice.train"):
        train(
            small_corpus, tmp_path / "r", TrainConfig(epochs=9, lr=0.5), resume=True, progress=False
        )
    # a complete run resumed is left as it was: nothing trained, nothing rewritten
    assert {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir() if p.is_file()} == run_files
    # and so is one that stopped early (2 epochs past its best of 30)
    early = tmp_path / "early"
    train(small_corpus, early, TrainConfig(epochs=30, patience=2, lr=0.5), progress=False)
    metrics = json.loads((early / "metrics.json").read_text())
    assert metrics["epochs_run"] < 30, metrics
    kept = {p.name: p.read_bytes() for p in early.iterdir() if p.is_file()}
    train(small_corpus, early, TrainConfig(), resume=True, progress=False)
    assert {p.name: p.read_bytes() for p in early.iterdir() if p.is_file()} == kept
    saved = json.loads((tmp_path / "r" / "config.json").read_text())["train"]
    assert (saved["epochs"], saved["batch_size"], saved["lr"]) == (2, 16, 2e-3)
    # and says so: what it ignored, and that the run was complete
    said = caplog.text
    assert "ignored: --epochs 9 (the run's: 2), --lr 0.5 (the run's: 0.002)" in said
    assert "is complete: nothing to train" in said and "batch-size" not in said
    assert "was trained on" not in said  # its own corpus
    # a complete run resumed with other data says so (an interrupted one is refused)
    caplog.clear()
    other = tmp_path / "other"
    other.mkdir()
    with caplog.at_level("WARNING", logger="whichvoice.train"):
        train(other, tmp_path / "r", TrainConfig(), resume=True, progress=False)
    said = f"was trained on {small_corpus.resolve()}, not {other}: nothing was trained"
    assert said in caplog.text


def test_bf16_autocast_only_where_the_cpu_has_amx(monkeypatch) -> None:
    from contextlib import nullcontext

    from whichvoice.train import device

    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        monkeypatch.setattr(torch.cpu, name, lambda: False, raising=False)
    assert isinstance(device.autocast(torch.device("cpu")), nullcontext)
    # AVX512-BF16 without AMX trains slower in bf16 than in float32: auto keeps float32
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    assert isinstance(device.autocast(torch.device("cpu")), nullcontext)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    ctx = device.autocast(torch.device("cpu"))
    assert isinstance(ctx, torch.autocast) and ctx.fast_dtype == torch.bfloat16
    # asked for: fp32 always is, bf16 always is
    assert isinstance(device.autocast(torch.device("cpu"), "fp32"), nullcontext)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert isinstance(device.autocast(torch.device("cpu"), "bf16"), torch.autocast)


def test_precision_is_recorded_and_checked(small_corpus: Path, tmp_path: Path) -> None:
    from whichvoice.train import TrainConfig, TrainError, train

    with pytest.raises(TrainError, match="unknown precision 'fp16'; valid: auto, bf16, fp32"):
        train(small_corpus, tmp_path / "bad", TrainConfig(precision="fp16"), progress=False)
    with pytest.raises(TrainError, match="unknown keep 'first'; valid: best, last"):
        train(small_corpus, tmp_path / "bad", TrainConfig(keep="first"), progress=False)
    run = train(
        small_corpus, tmp_path / "a", TrainConfig(epochs=1, precision="fp32"), progress=False
    )
    assert json.loads((run / "config.json").read_text())["train"]["precision"] == "fp32"


def test_a_run_records_how_it_was_made(
    small_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review (reproducibility): a run recorded no code, versions, device, precision or
    thread count, and the weights depend on the threads; OMP_NUM_THREADS was overridden by
    the machine's core count, so a rerun on another machine could not ask for the same."""
    from whichvoice.train import TrainConfig, train

    before = torch.get_num_threads()
    monkeypatch.setenv("WHICHVOICE_THREADS", "1")
    try:
        run = train(small_corpus, tmp_path / "a", TrainConfig(epochs=1), progress=False)
    finally:
        torch.set_num_threads(before)
    made = json.loads((run / "metrics.json").read_text())["made"]
    assert made["threads"] == 1 and made["device"] == "cpu"
    assert made["precision"] in ("fp32", "bf16")  # auto, resolved
    assert made["commit"] and made["machine"]["cpus"] >= 1
    assert {"whichvoice", "torch", "numpy"} <= set(made["versions"])
    from whichvoice.train.device import train_threads

    monkeypatch.delenv("WHICHVOICE_THREADS")
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert train_threads(1) == 3  # one process: the user's OMP_NUM_THREADS
    assert train_threads(2) == max(1, (os.cpu_count() or 1) // 2)  # torchrun's own 1 is not
    # ours mistyped or absurd: one line (it fell back to every core, or took 99999: review)
    from whichvoice.errors import WhichvoiceError

    for bad in ("abc", "-1", "0", "1e3", "99999", "²"):
        monkeypatch.setenv("WHICHVOICE_THREADS", bad)
        with pytest.raises(WhichvoiceError, match=r"WHICHVOICE_THREADS=.*a whole number"):
            train_threads(1)
    monkeypatch.setenv("WHICHVOICE_THREADS", " 2 ")
    assert train_threads(1) == 2


def _saved_run(
    folder: Path, model: str, labels: list[str], shape: tuple[int, ...] = (64, 201)
) -> torch.nn.Module:
    """A run folder with fresh weights of ``model`` for ``labels`` (what --init reads)."""
    from safetensors.torch import save_file

    from whichvoice.models import build_model

    net = build_model(model, shape, len(labels))
    folder.mkdir(parents=True)
    save_file(
        {k: v.contiguous() for k, v in net.state_dict().items()}, folder / "model.safetensors"
    )
    (folder / "config.json").write_text(json.dumps({"model": model, "labels": labels}))
    return net


def test_init_takes_the_embedder_and_the_head_only_for_the_same_voices(tmp_path: Path) -> None:
    from whichvoice.models import build_model
    from whichvoice.train import TrainError
    from whichvoice.train.state import head_keys, init_from

    source = _saved_run(tmp_path / "src", "voicenet-aam", ["a", "b", "c"])
    want = source.state_dict()
    for labels, head_kept in ((["a", "b", "c"], True), (["x", "y", "z"], False)):
        torch.manual_seed(1)
        net = build_model("voicenet-aam", (64, 201), 3)
        head = head_keys("voicenet-aam", (64, 201), 3)
        assert head == {"head.weight"}
        assert init_from(net, tmp_path / "src", labels, head, report=False) is head_kept
        got = net.state_dict()
        assert all(torch.equal(got[k], want[k]) for k in want if k not in head)
        assert torch.equal(got["head.weight"], want["head.weight"]) is head_kept
    # more voices, in another order: the rows of the voices both know come along, by label
    torch.manual_seed(2)
    net = build_model("voicenet-aam", (64, 201), 5)
    fresh = net.head.weight.detach().clone()
    kept = init_from(
        net, tmp_path / "src", list("dcbae"), head_keys("voicenet-aam", (64, 201), 5), False
    )
    assert kept is True  # 3 of 5 voices: most of the head is trained
    assert torch.equal(net.embedder.project[0].weight, source.embedder.project[0].weight)
    rows = net.head.weight.detach()
    for i, j in ((1, 2), (2, 1), (3, 0)):  # c, b, a
        assert torch.equal(rows[i], want["head.weight"][j])
    assert torch.equal(rows[0], fresh[0]) and torch.equal(rows[4], fresh[4])  # d, e: fresh
    # a wider network's weights do not fit
    with pytest.raises(TrainError, match="do not fit this model"):
        init_from(build_model("voicenet-aam-wide", (64, 201), 3), tmp_path / "src", [], head, False)
    with pytest.raises(TrainError, match="cannot read its weights"):
        init_from(net, tmp_path / "missing", [], head, report=False)
    (tmp_path / "src" / "config.json").write_text("[1, 2]")  # JSON, but not a run's config
    with pytest.raises(TrainError, match="cannot read its weights and config"):
        init_from(net, tmp_path / "src", [], head, report=False)


def test_every_models_head_is_found_by_its_shape(tmp_path: Path) -> None:
    """The talk's CNN names its classifier ``output``; an ensemble has one head a member: the
    rest of the network is taken, and the head's rows of the voices both runs know."""
    from whichvoice.models import build_model
    from whichvoice.train.state import head_keys, init_from

    assert head_keys("seed", (3, 140, 140), 4) == {"output.weight", "output.bias"}
    assert head_keys("voicenet-aam-wide-x2", (64, 201), 4) == {
        "members.0.head.weight",
        "members.1.head.weight",
    }
    source = _saved_run(tmp_path / "seed", "seed", list("abcd"), (3, 140, 140))
    net = build_model("seed", (3, 140, 140), 6)
    head = head_keys("seed", (3, 140, 140), 6)
    # 4 of 6 voices known: their weights and biases come along, the other two stay fresh
    assert init_from(net, tmp_path / "seed", list("abcdef"), head, report=False) is True
    assert torch.equal(net.features[0].weight, source.features[0].weight)
    assert net.output.weight.shape[0] == 6
    assert torch.equal(net.output.bias[:4], source.output.bias)
    assert init_from(net, tmp_path / "seed", list("uvwxyz"), head, report=False) is False


def test_margin_without_warmup_is_full_from_the_first_epoch() -> None:
    from whichvoice.train import margin_at

    assert margin_at(0, 10, 0.3) < 0.3
    assert [margin_at(e, 10, 0.3, warmup=False) for e in range(10)] == [0.3] * 10


@pytest.mark.slow
def test_fine_tuning_starts_where_the_run_left_off(
    cli, small_corpus: Path, trained_run: Path, tmp_path: Path
) -> None:
    first = json.loads((trained_run / "epochs.jsonl").read_text().splitlines()[0])
    tuned = tmp_path / "tuned"
    proc = cli(
        "train", str(small_corpus), "--out", str(tuned), "--init", str(trained_run),
        "--epochs", "1", "--lr", "1e-4", "--batch-size", "16", "--quiet",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    row = json.loads((tuned / "epochs.jsonl").read_text())
    # one epoch at a tenth of the rate beats the original run's first epoch from scratch
    assert row["val_acc"] >= max(0.8, first["val_acc"])
    config = json.loads((tuned / "config.json").read_text())
    assert config["train"]["init"] == str(trained_run)
    assert config["margin_warmup"] is False  # the head came along: the margin is full at once
    # misuse is one line, and an existing run given as --out is left as it was, even the
    # one --overwrite would replace
    existing = tmp_path / "existing"
    shutil.copytree(trained_run, existing)
    before = {p.name: p.read_bytes() for p in existing.iterdir()}
    for args, needle in [
        (["--init", str(tmp_path / "nothing")], "cannot read its weights"),
        (["--margin", "0.3"], "model voicenet has no margin head"),
        (["--model", "voicenet-aam", "--margin", "2"], "not in the range"),
    ]:
        proc = cli(
            "train", str(small_corpus), "--out", str(existing), *args, "--overwrite", "--quiet"
        )  # fmt: skip
        assert proc.returncode == 2, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and needle in proc.stderr, proc.stderr
        assert {p.name: p.read_bytes() for p in existing.iterdir()} == before


@pytest.mark.slow
def test_keep_last_keeps_the_last_epoch_even_when_it_is_worse(
    small_corpus: Path, trained_run: Path, tmp_path: Path, monkeypatch
) -> None:
    from safetensors.torch import load_file

    from whichvoice.train import steps

    for keep in ("best", "last"):
        falling = iter([0.9, 0.5, 0.4, 0.4])  # epoch 1, epoch 2, then the final test and val
        monkeypatch.setattr(steps, "accuracy", lambda *a, f=falling: (1.0, (v := next(f)), v))
        out = tmp_path / keep
        cfg = TrainConfig(epochs=2, batch_size=16, lr=1e-3, init=str(trained_run), keep=keep)
        train(small_corpus, out, cfg, progress=False)
        kept = load_file(out / "model.safetensors")
        last = torch.load(out / "checkpoint.pt", weights_only=True)["model"]
        assert all(torch.equal(v, last[k]) for k, v in kept.items()) is (keep == "last")
        assert json.loads((out / "metrics.json").read_text())["kept"] == keep


@pytest.mark.slow
def test_no_cmn_is_recorded_and_shares_the_prepared_data(
    small_corpus: Path, tmp_path: Path
) -> None:
    cached = (
        set((small_corpus / "prepared").iterdir())
        if (small_corpus / "prepared").exists()
        else set()
    )
    run = train(
        small_corpus,
        tmp_path / "r",
        TrainConfig(epochs=1, batch_size=16, cmn=False),
        progress=False,
    )
    assert json.loads((run / "config.json").read_text())["features"]["cmn"] is False
    assert load_model(run).features.cmn is False  # predict reads windows as training did
    train(small_corpus, tmp_path / "on", TrainConfig(epochs=1, batch_size=16), progress=False)
    assert json.loads((tmp_path / "on" / "config.json").read_text())["features"]["cmn"] is True
    # the stored windows do not depend on it: at most one prepared copy was added for both
    assert len(set((small_corpus / "prepared").iterdir()) - cached) <= 1


@pytest.mark.slow
def test_resume_refuses_other_data_and_mends_a_cut_log(
    small_corpus: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An interrupted run resumed on another corpus went on under the other voices' labels;
    a line of the epoch log cut short (a kill, a full disk) stopped the resume with a raw
    JSONDecodeError; a damaged cached dataset stopped every later train with a raw error."""
    from whichvoice.train import TrainError

    run = tmp_path / "r"
    train(small_corpus, run, TrainConfig(epochs=2, batch_size=16), progress=False)
    (run / "metrics.json").unlink()  # as a kill before the end leaves it
    other = tmp_path / "other"  # the same clips less one voice: other labels
    shutil.copytree(small_corpus, other, ignore=shutil.ignore_patterns("prepared"))
    lines = (other / "manifest.jsonl").read_text().splitlines()
    kept = [line for line in lines if json.loads(line)["voice"] != "flite:slt"]
    assert 0 < len(kept) < len(lines)
    (other / "manifest.jsonl").write_text("".join(line + "\n" for line in kept))
    config = (run / "config.json").read_bytes()
    with pytest.raises(TrainError, match="trained on other data"):
        train(other, run, TrainConfig(), resume=True, progress=False)
    assert (run / "config.json").read_bytes() == config
    with (run / "epochs.jsonl").open("a") as f:
        f.write('{"epoch": 3, "lo')
    train(small_corpus, run, TrainConfig(), resume=True, progress=False)
    epochs = [json.loads(x)["epoch"] for x in (run / "epochs.jsonl").read_text().splitlines()]
    assert epochs == [1, 2] and (run / "metrics.json").is_file()
    # a cached dataset cut short is prepared again, with a warning
    train(other, tmp_path / "o1", TrainConfig(epochs=1, batch_size=16), progress=False)
    (x,) = (other / "prepared").glob("*/train_x.npy")
    x.write_bytes(x.read_bytes()[:2000])
    with caplog.at_level("WARNING"):
        train(other, tmp_path / "o2", TrainConfig(epochs=1, batch_size=16), progress=False)
    assert "damaged prepared data" in caplog.text and "preparing it again" in caplog.text


def test_default_or_none_in_a_list_of_augmentations_is_said_so() -> None:
    from whichvoice.train import TrainError
    from whichvoice.train.config import augment_config

    with pytest.raises(TrainError, match="none stands alone; a list names parts: noise"):
        augment_config("none,noise", True)  # it said "unknown augmentation none; valid: none"


@pytest.mark.slow  # a corpus synthesised and two CLI processes: about 10 s
def test_a_corpus_too_small_to_hold_out_says_so_and_writes_valid_json(cli, tmp_path: Path) -> None:
    """Three sentences leave no validation or test clips: the run says so, keeps its last
    epoch, and its metrics and epoch log are JSON (null, not NaN)."""
    corpus, out = tmp_path / "tiny", tmp_path / "run"
    cli("synth", str(corpus), "--voices", "flite:slt,flite:rms", "--sentences", "3",
        "--assign", "all", "--quiet", check=True)  # fmt: skip
    r = cli("train", str(corpus), "--out", str(out), "--epochs", "2", check=True)
    assert "no validation clips (too few sentences" in r.stderr, r.stderr
    assert "no test clips" in r.stderr and "test accuracy is not measured" in r.stderr
    assert "nan" not in (r.stdout + r.stderr).lower(), r.stdout
    metrics = json.loads((out / "metrics.json").read_text(), parse_constant=pytest.fail)
    assert metrics["best_epoch"] == 2 and metrics["test_acc"] is None
    for line in (out / "epochs.jsonl").read_text().splitlines():
        assert json.loads(line, parse_constant=pytest.fail)["val_acc"] is None
    r = cli("train", str(corpus), "--out", str(out), "--resume", "--quiet")
    assert r.returncode == 0 and "test accuracy not measured" in r.stdout, r.stderr
    assert "is complete: nothing to train" in r.stderr  # --quiet drops progress, not warnings


@pytest.mark.slow  # CLI processes
def test_a_run_refused_for_its_data_leaves_no_folder(cli, tmp_path: Path) -> None:
    """A missing corpus (and any corpus refused once read) left an empty --out folder."""
    r = cli("train", str(tmp_path / "nope"), "--out", str(tmp_path / "run"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert not (tmp_path / "run").exists()
    (tmp_path / "mine").mkdir()  # a folder of the user's own is kept, refused or not
    r = cli("train", str(tmp_path / "nope"), "--out", str(tmp_path / "mine"))
    assert r.returncode == 2 and (tmp_path / "mine").is_dir()


@pytest.mark.slow
def test_an_interrupted_run_is_said_to_be_one_when_used(
    trained_run: Path, tmp_path: Path, caplog
) -> None:
    """A run killed before its last epoch (a checkpoint, no metrics.json) was used by predict,
    evaluate, export and calibrate without a word (review)."""
    from whichvoice.runtime import load_model

    run = tmp_path / "cut"
    shutil.copytree(trained_run, run)
    assert (run / "checkpoint.pt").is_file()
    with caplog.at_level("WARNING"):
        load_model(run)
    assert "interrupted" not in caplog.text  # a finished run
    (run / "metrics.json").unlink()
    with caplog.at_level("WARNING"):
        load_model(run)
    assert "cut: an interrupted run (8 of 8 epochs, no metrics.json)" in caplog.text
    assert "--resume` finishes it" in caplog.text


def test_augmentation_of_a_network_without_log_mels_is_refused_before_the_data(
    tmp_path: Path,
) -> None:
    """train --model talk-cnn --augment noise prepared the dataset, then refused (review)."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    from whichvoice.train import TrainError

    with pytest.raises(TrainError, match="augmentation needs logmel features"):
        train(corpus, tmp_path / "run", TrainConfig(model="talk-cnn", augment="noise"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus"]
    assert not any(corpus.iterdir())


def test_a_full_disk_while_saving_keeps_the_last_checkpoint_and_says_so(
    small_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review (resources): torch.save into a full disk was a traceback and left a temporary
    file of the checkpoint's size; now one line (exit 1), nothing half-written, and --resume
    goes on from the last checkpoint."""
    import errno

    from whichvoice.errors import OutputLostError
    from whichvoice.train import TrainConfig, state, train

    real, calls = state.write_atomic, []

    def full_at_the_second_checkpoint(path: Path, data: bytes, **kw) -> None:
        calls.append(path.name)
        if path.name == "checkpoint.pt" and calls.count("checkpoint.pt") == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, data, **kw)

    monkeypatch.setattr(state, "write_atomic", full_at_the_second_checkpoint)
    run = tmp_path / "run"
    with pytest.raises(OutputLostError, match=r"cannot write epoch 2's checkpoint \(No space "
                       r"left on device\); the run is kept up to epoch 1: .*--resume"):  # fmt: skip
        train(small_corpus, run, TrainConfig(epochs=3, keep="last"), progress=False)
    assert not list(run.glob(".*tmp*")), list(run.iterdir())
    assert len((run / "epochs.jsonl").read_text().splitlines()) == 1
    monkeypatch.setattr(state, "write_atomic", real)
    train(small_corpus, run, TrainConfig(epochs=3, keep="last"), resume=True, progress=False)
    assert len((run / "epochs.jsonl").read_text().splitlines()) == 3

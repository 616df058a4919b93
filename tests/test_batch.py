"""Batch inference: inputs, the three output formats, resume, workers, Dask, the CLI."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from whichvoice.batch import (
    BatchInput,
    BatchInputError,
    labelled_inputs,
    made_by_path,
    manifest_inputs,
    path_inputs,
    predict_batch,
)
from whichvoice.corpus import read_manifest
from whichvoice.errors import OutputError, WhichvoiceError
from whichvoice.predict import expand_paths
from whichvoice.runtime import bundled_classifier, load_model

from .conftest import run_cli


def read_rows(path: Path) -> list[dict]:
    """An output's rows as dicts of Python values, whatever its format."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines()]
    rows = list(csv.DictReader(path.open(newline="")))
    for r in rows:
        r["top"] = json.loads(r["top"])
        for key, kind in (("confidence", float), ("speech_s", float), ("windows", int),
                          ("engine_confidence", float), ("openset_score", float),
                          ("openset_threshold", float)):  # fmt: skip
            r[key] = kind(r[key]) if r[key] else None
        for key in ("correct", "engine_known"):
            if key in r:
                r[key] = {"true": True, "false": False, "": None}[r[key]]
        r["error"] = r["error"] or None  # an empty cell: no error
    return rows


def same_predictions(a: list[dict], b: list[dict]) -> None:
    assert [r["path"] for r in a] == [r["path"] for r in b]
    assert [r["voice"] for r in a] == [r["voice"] for r in b]
    for x, y in zip(a, b, strict=True):
        assert x["confidence"] == pytest.approx(y["confidence"], abs=1e-4)
        assert [t["voice"] for t in x["top"]] == [t["voice"] for t in y["top"]]


@pytest.fixture(scope="module")
def reference(trained_run: Path, small_corpus: Path, tmp_path_factory) -> list[dict]:
    """The corpus manifest predicted in this process (workers=1), as JSONL rows."""
    out = tmp_path_factory.mktemp("batch-ref") / "ref.jsonl"
    predict_batch(
        trained_run, manifest_inputs(small_corpus / "manifest.jsonl"), out, progress=False
    )
    return read_rows(out)


def test_manifest_inputs(tmp_path: Path) -> None:
    (tmp_path / "corpus.jsonl").write_text(
        '{"id": "a", "path": "audio/a.mp3", "voice": "flite:slt"}\n\n{"path": "/abs/b.wav"}\n'
    )
    (tmp_path / "list.txt").write_text("audio/a.mp3\n  \n/abs/b.wav\ns3://bucket/c.mp3\n")
    expected = [
        BatchInput("audio/a.mp3", str(tmp_path / "audio/a.mp3")),
        BatchInput("/abs/b.wav", "/abs/b.wav"),
    ]
    jsonl = manifest_inputs(tmp_path / "corpus.jsonl")
    assert list(jsonl) == expected and list(jsonl) == expected  # read again on every pass
    assert list(manifest_inputs(tmp_path / "list.txt")) == [
        *expected,
        BatchInput("s3://bucket/c.mp3", "s3://bucket/c.mp3"),
    ]
    (tmp_path / "bad.jsonl").write_text('{"path": "a.mp3"}\n{"id": "b"}\n')
    with pytest.raises(BatchInputError, match=r'bad\.jsonl:2: no "path"'):
        list(manifest_inputs(tmp_path / "bad.jsonl"))
    with pytest.raises(BatchInputError, match=r"missing\.jsonl: cannot read"):
        list(manifest_inputs(tmp_path / "missing.jsonl"))


def test_labelled_inputs(tmp_path: Path) -> None:
    (tmp_path / "labels.csv").write_text("path,voice\nx/a.mp3,slt\n\n/abs/b.mp3, flite:rms\n")
    assert list(labelled_inputs(tmp_path / "labels.csv")) == [
        BatchInput("x/a.mp3", str(tmp_path / "x/a.mp3"), "slt"),
        BatchInput("/abs/b.mp3", "/abs/b.mp3", "flite:rms"),
    ]
    (tmp_path / "bad.csv").write_text("a.mp3,slt\nb.mp3\n")
    with pytest.raises(BatchInputError, match=r"bad\.csv:2: expected 'path,voice'"):
        list(labelled_inputs(tmp_path / "bad.csv"))
    # a folder of <speaker>/<clips>: each folder names its clips' voice, as import-corpus
    # names it (a held-out split kept as folders needed a CSV written first: a review)
    from .conftest import HUMAN_DEV

    for speaker, clip in (("theo", "1_theo_0.wav"), ("Zoë B", "1_lucas_0.wav")):
        (tmp_path / "held" / speaker / "s1").mkdir(parents=True)
        shutil.copy(HUMAN_DEV / clip, tmp_path / "held" / speaker / "s1" / "a.wav")
    held = tmp_path / "held"
    assert list(labelled_inputs(held)) == [
        BatchInput(str(held / "Zoë B/s1/a.wav"), str(held / "Zoë B/s1/a.wav"), "Zoë_B"),
        BatchInput(str(held / "theo/s1/a.wav"), str(held / "theo/s1/a.wav"), "theo"),
    ]
    (tmp_path / "flat").mkdir()
    with pytest.raises(BatchInputError, match="no audio in <speaker>/ folders"):
        list(labelled_inputs(tmp_path / "flat"))


def test_path_inputs_walk_folders_as_predict_does(tmp_path: Path) -> None:
    for name in ["b/z.mp3", "b/a.wav", "a.mp3", "b.flac", "c/d/e.ogg", "notes.txt", "B/x.mp3"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    found = [Path(i.path) for i in path_inputs([tmp_path, tmp_path / "notes.txt"])]
    assert found == expand_paths([tmp_path, tmp_path / "notes.txt"])
    assert len(found) == 7
    # a folder without audio among the inputs is named before any input is read
    (tmp_path / "empty").mkdir()
    for expand in (lambda ps: list(path_inputs(ps)), expand_paths):
        with pytest.raises(WhichvoiceError, match=r"empty: no audio files"):
            expand([tmp_path / "a.mp3", tmp_path / "empty"])


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_each_format_has_a_row_per_input_as_predict_says(
    trained_run: Path, small_corpus: Path, reference: list[dict], tmp_path: Path, suffix: str
) -> None:
    clips = read_manifest(small_corpus / "manifest.jsonl")
    out = tmp_path / "sub" / f"preds{suffix}"
    summary = predict_batch(
        trained_run, manifest_inputs(small_corpus / "manifest.jsonl"), out, progress=False
    )
    assert (summary.predicted, summary.rows, summary.failed) == (len(clips), len(clips), 0)
    rows = read_rows(out)
    assert list(rows[0]) == [
        "path", "answer", "voice", "confidence", "top", "speech_s", "windows", "known",
        "openset_score", "openset_threshold", "engine", "engine_confidence", "engine_known",
        "error",
    ]  # fmt: skip
    assert [r["path"] for r in rows] == [c.path for c in clips]  # input order, as spelled
    assert all(r["error"] is None and len(r["top"]) == 3 for r in rows)
    if suffix == ".jsonl":  # null, as in --json, not an empty string
        assert '"error": null' in out.read_text().splitlines()[0]
    # a voice run without an engine head: the family of its likeliest voices, no open set
    assert all(r["engine"] in ("flite", "espeak-ng", "festival-diphone") for r in rows)
    assert all(r["engine_known"] is None for r in rows)
    assert all(r["openset_score"] is None and r["openset_threshold"] is None for r in rows)
    same_predictions(rows, reference)
    # the same answers as `predict` gives file by file
    model = load_model(trained_run)
    plain = list(model.identify_many([small_corpus / c.path for c in clips]))
    assert [r["voice"] for r in rows] == [p.voice for p in plain]
    assert [r["windows"] for r in rows] == [p.windows for p in plain]
    # no journal or temporary file is left beside it: the output and the record of its maker
    assert sorted(p.name for p in out.parent.iterdir()) == sorted(
        [out.name, made_by_path(out).name]
    )


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_resume_after_a_cut_line(
    trained_run: Path, small_corpus: Path, reference: list[dict], tmp_path: Path, suffix: str
) -> None:
    inputs = manifest_inputs(small_corpus / "manifest.jsonl")
    out = tmp_path / f"preds{suffix}"
    predict_batch(trained_run, inputs, out, progress=False)
    whole = out.read_bytes()
    # a kill mid-write leaves a prefix of the rows and a cut line
    out.write_bytes(whole[: len(whole) // 3 + 11])
    with pytest.raises(OutputError, match=r"resume=True to complete it, or overwrite=True"):
        predict_batch(trained_run, inputs, out, progress=False)
    summary = predict_batch(trained_run, inputs, out, resume=True, progress=False)
    assert 0 < summary.skipped < len(reference)
    assert summary.skipped + summary.predicted == summary.rows == len(reference)
    assert out.read_bytes() == whole  # complete, in order, no duplicate
    again = predict_batch(trained_run, inputs, out, resume=True, progress=False)
    assert (again.predicted, again.skipped) == (0, len(reference))
    assert out.read_bytes() == whole
    # another model never adds its rows to the same file
    with pytest.raises(OutputError, match=r"was made by voicenet-\w+ \(torch\), not"):
        predict_batch(bundled_classifier(), inputs, out, resume=True, progress=False)
    assert out.read_bytes() == whole
    # --overwrite starts again
    assert predict_batch(trained_run, inputs, out, overwrite=True, progress=False).predicted == (
        len(reference)
    )
    # an output named by a symbolic link: the file it points to is written, the link stays
    link = tmp_path / f"latest{suffix}"
    link.symlink_to(out.name)
    out.write_bytes(b"")
    predict_batch(trained_run, inputs, link, overwrite=True, progress=False)
    assert link.is_symlink() and out.read_bytes() == whole


@pytest.mark.slow  # five runs over the corpus
def test_overwrite_keeps_the_previous_output_until_the_run_completes(
    trained_run: Path, small_corpus: Path, tmp_path: Path
) -> None:
    """Found by a review: --overwrite removed the complete output before any work, so a kill
    (or an OOM) left a header where 1,600 rows had been. It is set aside now, and goes when
    the run completes; a run that fails before its first row puts it back."""
    from whichvoice.batch import Inputs

    inputs = manifest_inputs(small_corpus / "manifest.jsonl")
    out = tmp_path / "preds.csv"
    aside = tmp_path / ".preds.csv.previous"
    predict_batch(trained_run, inputs, out, progress=False)
    whole = out.read_bytes()
    n = sum(1 for _ in inputs)

    def failing(after: int, error: type[BaseException]) -> Inputs:
        passes = []

        def read():
            passes.append(1)
            for i, item in enumerate(inputs):
                if len(passes) > 1 and i == after:  # the first pass counts them
                    raise error("stopped")
                yield item

        return Inputs("failing", read, labelled=inputs.labelled)

    # fails before its first row: the previous output is back, whole, with its record
    with pytest.raises(RuntimeError):
        predict_batch(trained_run, failing(0, RuntimeError), out, overwrite=True,
                      progress=False)  # fmt: skip
    assert out.read_bytes() == whole and not aside.exists()
    assert (tmp_path / ".preds.csv.whichvoice.json").is_file()
    # a full disk before the first row: the previous output is back, and the message says
    # to run the same command again (it said --resume, which went on from the previous
    # output, mixing the two: a review)
    import errno

    import whichvoice.batch.sinks as sinks
    from whichvoice.errors import OutputLostError

    def full(*args, **kw):  # the output's file cannot be opened or its header written
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.MonkeyPatch.context() as m:
        m.setattr(sinks, "open", full, raising=False)
        said = r"no row of this run was written and preds.csv is as it was; .* \(--overwrite\)"
        with pytest.raises(OutputLostError, match=said) as lost:
            predict_batch(trained_run, inputs, out, overwrite=True, progress=False)
    assert "--resume" not in str(lost.value)
    assert out.read_bytes() == whole and not aside.exists()
    # interrupted after some rows: those rows stay for --resume, the previous output aside
    with pytest.raises(KeyboardInterrupt):
        predict_batch(trained_run, failing(n - 1, KeyboardInterrupt), out, overwrite=True,
                      progress=False, chunk=1)  # fmt: skip
    assert aside.read_bytes() == whole and 0 < len(out.read_bytes()) < len(whole)
    # another --overwrite keeps that previous output, not the interrupted rows
    with pytest.raises(KeyboardInterrupt):
        predict_batch(trained_run, failing(n - 1, KeyboardInterrupt), out, overwrite=True,
                      progress=False, chunk=1)  # fmt: skip
    assert aside.read_bytes() == whole
    # a completed run: the new output, nothing aside
    predict_batch(trained_run, inputs, out, overwrite=True, progress=False)
    assert out.read_bytes() == whole and not aside.exists()
    assert not (tmp_path / ".preds.csv.previous.whichvoice.json").exists()


@pytest.mark.slow
def test_parquet_resumes_from_its_journal(
    trained_run: Path, small_corpus: Path, reference: list[dict], tmp_path: Path
) -> None:
    inputs = manifest_inputs(small_corpus / "manifest.jsonl")
    out = tmp_path / "preds.parquet"

    def interrupted():
        for n, item in enumerate(inputs):
            if n == 70:
                raise KeyboardInterrupt
            yield item

    with pytest.raises(KeyboardInterrupt):
        predict_batch(trained_run, interrupted(), out, chunk=16, progress=False)
    journal = tmp_path / ".preds.parquet.jsonl"
    # whole chunks written in order (the ones decoded ahead of the interrupt are lost)
    written = len(journal.read_text().splitlines())
    assert not out.exists() and written % 16 == 0 and 16 <= written <= 64
    with pytest.raises(OutputError, match=r"an interrupted .*preds\.parquet exists: resume=True"):
        predict_batch(trained_run, inputs, out, progress=False)  # no such file yet: says why
    with journal.open("a") as f:
        f.write('{"path": "audio/cut')  # and a line cut short
    summary = predict_batch(trained_run, inputs, out, resume=True, progress=False)
    assert (summary.skipped, summary.rows) == (written, len(reference))
    assert not journal.exists()
    same_predictions(read_rows(out), reference)
    # a complete Parquet file takes more inputs on --resume
    extra = [*inputs, BatchInput("again.mp3", str(small_corpus / reference[0]["path"]))]
    summary = predict_batch(trained_run, extra, out, resume=True, progress=False)
    assert (summary.predicted, summary.rows) == (1, len(reference) + 1)
    rows = read_rows(out)
    assert rows[-1]["path"] == "again.mp3" and rows[-1]["voice"] == reference[0]["voice"]
    same_predictions(rows[:-1], reference)


@pytest.mark.slow
def test_workers_change_nothing_but_the_speed(
    trained_run: Path, small_corpus: Path, reference: list[dict], tmp_path: Path
) -> None:
    out = tmp_path / "preds.jsonl"
    summary = predict_batch(
        trained_run, manifest_inputs(small_corpus / "manifest.jsonl"), out, workers=2,
        progress=False,
    )  # fmt: skip
    assert summary.workers == 2 and summary.rows == len(reference)
    same_predictions(read_rows(out), reference)
    # no run: the bundled classifier, in worker processes as in this one
    clips = [small_corpus / r["path"] for r in read_rows(out)[:4]]
    alone, spread = tmp_path / "alone.csv", tmp_path / "spread.csv"
    predict_batch(None, clips, alone, workers=1, progress=False)
    assert predict_batch(None, clips, spread, workers=2, progress=False).failed == 0
    assert [r["voice"] for r in read_rows(spread)] == [r["voice"] for r in read_rows(alone)]


@pytest.mark.slow
def test_dask_local_cluster(
    trained_run: Path,
    small_corpus: Path,
    reference: list[dict],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import distributed

    import whichvoice.batch as batch

    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=2,  # the summary counts workers, not their threads (it said 4)
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
    )
    try:
        out = tmp_path / "preds.csv"
        summary = predict_batch(
            trained_run,
            manifest_inputs(small_corpus / "manifest.jsonl"),
            out,
            dask_scheduler=cluster.scheduler_address,
            progress=False,
        )
        # a file given by a relative path: its error names it so, as a local run's does (it
        # named the absolute path the worker was sent)
        monkeypatch.chdir(tmp_path)
        (tmp_path / "bad.mp3").write_text("not audio at all")
        predict_batch(trained_run, ["bad.mp3"], tmp_path / "rel.csv",
                      dask_scheduler=cluster.scheduler_address, progress=False)  # fmt: skip
        (bad,) = read_rows(tmp_path / "rel.csv")
        assert bad["error"].startswith("bad.mp3: not audio"), bad
        # --overwrite with a scheduler that cannot be reached: the finished output is kept
        # (it was removed before the connection failed)
        before = out.read_bytes()
        with pytest.raises(WhichvoiceError, match="cannot reach the Dask scheduler"):
            predict_batch(trained_run, manifest_inputs(small_corpus / "manifest.jsonl"), out,
                          overwrite=True, dask_scheduler="tcp://127.0.0.1:1",
                          progress=False)  # fmt: skip
        assert out.read_bytes() == before
        # a run the workers cannot read (moved once this process had loaded it): the error
        # says where it happened, and the output it had begun is not left to block a rerun
        moved, lost = tmp_path / "run-copy", tmp_path / "lost.csv"
        shutil.copytree(trained_run, moved)
        load = batch.load_model

        def load_then_move(run, **kw):
            model = load(run, **kw)
            assert model.model_id  # read from the files, once
            shutil.move(run, tmp_path / "gone")
            return model

        monkeypatch.setattr(batch, "load_model", load_then_move)
        with pytest.raises(WhichvoiceError, match=r"^on a Dask worker: "):
            predict_batch(
                moved, manifest_inputs(small_corpus / "manifest.jsonl"), lost,
                dask_scheduler=cluster.scheduler_address, progress=False,
            )  # fmt: skip
        assert not lost.exists() and not made_by_path(lost).exists()
    finally:
        cluster.close()
    assert summary.workers == 2 and summary.rows == len(reference)
    same_predictions(read_rows(out), reference)


@pytest.mark.slow
def test_cli_labels_accuracy_and_a_corrupt_file(
    trained_run: Path, small_corpus: Path, tmp_path: Path
) -> None:
    clips = read_manifest(small_corpus / "manifest.jsonl")[::8]
    (tmp_path / "in").mkdir()
    lines = ["path,voice"]
    for c in clips:
        shutil.copy(small_corpus / c.path, tmp_path / "in" / f"{c.id}.mp3")
        lines.append(f"in/{c.id}.mp3,{c.voice.split(':')[1]}")  # voices by name
    (tmp_path / "in" / "corrupt.mp3").write_bytes(b"ID3 this is not an mp3" * 20)
    lines.append("in/corrupt.mp3,flite:slt")
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "preds.csv"
    proc = run_cli("predict", str(trained_run), "--labels", str(tmp_path / "labels.csv"),
                   "--output", str(out))  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    summary = proc.stderr.strip().splitlines()[-1]
    assert f"{len(clips) + 1} rows, 1 failed, accuracy" in summary
    rows = read_rows(out)
    assert list(rows[0])[-2:] == ["true_voice", "correct"]
    assert [r["path"] for r in rows] == [f"in/{c.id}.mp3" for c in clips] + ["in/corrupt.mp3"]
    assert [r["true_voice"] for r in rows[:-1]] == [c.voice for c in clips]
    assert all(r["correct"] == (r["voice"] == r["true_voice"]) for r in rows[:-1])
    accuracy = sum(r["correct"] for r in rows[:-1]) / len(clips)
    assert accuracy > 0.5  # four voices: far above chance
    assert f"accuracy {accuracy:.4f} on {len(clips)} labelled" in summary
    bad = rows[-1]
    assert "corrupt.mp3" in bad["error"] and bad["voice"] in ("", None)
    assert bad["correct"] is None
    again = run_cli("predict", str(trained_run), "--labels", str(tmp_path / "labels.csv"),
                    "--output", str(out))  # fmt: skip
    assert again.returncode == 2 and again.stderr.strip().endswith(
        "preds.csv exists: --resume to complete it, or --overwrite to replace it"
    ), again.stderr  # the options' words (Python's keywords are for predict_batch)


@pytest.mark.slow
def test_cli_kill_then_resume(trained_run: Path, small_corpus: Path, tmp_path: Path) -> None:
    # 640 inputs: the corpus four times, spelled four ways from the manifest's folder
    (tmp_path / "corpus").symlink_to(small_corpus)
    clips = read_manifest(small_corpus / "manifest.jsonl")
    spellings = [f"{prefix}{c.path}" for prefix in ("corpus/", "./corpus/", "corpus/audio/../",
                 "corpus/./") for c in clips]  # fmt: skip
    (tmp_path / "inputs.txt").write_text("\n".join(spellings) + "\n")
    out = tmp_path / "preds.jsonl"
    args = ["predict", str(trained_run), "--manifest", str(tmp_path / "inputs.txt"),
            "--output", str(out), "--quiet"]  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "whichvoice", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300
        while proc.poll() is None and not (out.exists() and out.read_bytes().count(b"\n") >= 32):
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    written = out.read_text().splitlines()
    if len(written) == len(spellings):  # a fast machine finished first: cut it as a kill would
        written = written[: len(spellings) // 2]
        out.write_text("\n".join(written) + "\n")
    assert 32 <= len(written) < len(spellings)  # rows appear as the run goes
    with out.open("a") as f:
        f.write('{"path": "corpus/cut sh')  # a line cut by the kill, at worst
    run_cli(*args, "--resume", "--workers", "2", check=True)
    rows = read_rows(out)
    assert [r["path"] for r in rows] == spellings  # each input once, in order
    assert rows[: len(written) - 1] == [json.loads(x) for x in written[:-1]]
    voices: dict[str, set[str]] = {}
    for r in rows:
        voices.setdefault(os.path.normpath(r["path"]), set()).add(r["voice"])
    assert len(voices) == len(clips)
    assert all(len(v) == 1 for v in voices.values())  # one answer per file, however spelled


@pytest.mark.slow
def test_cli_errors_are_one_line_exit_2(
    trained_run: Path, small_corpus: Path, tmp_path: Path
) -> None:
    (tmp_path / "nopath.jsonl").write_text('{"path": "a.mp3"}\n{"id": "x"}\n')
    manifest = str(small_corpus / "manifest.jsonl")
    out = ["-o", str(tmp_path / "p.csv")]
    # an output onto the list of inputs would empty it (found by a review): refused
    (tmp_path / "own.jsonl").write_text('{"path": "a.mp3"}\n')
    (tmp_path / "own.csv").write_text("path,voice\na.mp3,x\n")
    own = {p: p.read_bytes() for p in (tmp_path / "own.jsonl", tmp_path / "own.csv")}
    cases = [
        (
            [
                "--manifest",
                str(tmp_path / "own.jsonl"),
                "-o",
                str(tmp_path / "own.jsonl"),
                "--overwrite",
            ],
            "is --manifest's file",
        ),
        (
            ["--labels", str(tmp_path / "own.csv"), "-o", str(tmp_path / "own.csv"), "--overwrite"],
            "is --labels's file",
        ),
        (["--manifest", str(tmp_path / "missing.jsonl"), *out], "missing.jsonl: cannot read"),
        (["--manifest", str(tmp_path / "nopath.jsonl"), *out], 'nopath.jsonl:2: no "path"'),
        (["--manifest", manifest, "-o", str(tmp_path / "p.txt")], "name it .csv, .jsonl or"),
        (["clip.mp3", "--workers", "2"], "--workers needs --output"),
    ]
    for args, message in cases:
        proc = run_cli("predict", str(trained_run), *args)
        assert proc.returncode == 2 and proc.stdout == "", (args, proc.stderr)
        assert proc.stderr.startswith("error: ") and message in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    assert {p: p.read_bytes() for p in own} == own
    proc = run_cli("predict", str(tmp_path), "--manifest", manifest, "-o", str(tmp_path / "p.csv"))
    assert proc.returncode == 2 and "not a trained run" in proc.stderr
    assert not (tmp_path / "p.csv").exists()


@pytest.mark.slow
def test_onnx_backend_gives_the_same_answers(
    trained_run: Path, small_corpus: Path, reference: list[dict], tmp_path: Path
) -> None:
    run = tmp_path / "run"  # the export is cached in the run: keep the shared one as it is
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("*.onnx", "checkpoint.pt"))
    out = tmp_path / "preds.jsonl"
    inputs = [BatchInput(r["path"], str(small_corpus / r["path"])) for r in reference[:48]]
    predict_batch(run, inputs, out, workers=2, backend="onnx", progress=False)
    same_predictions(read_rows(out), reference[:48])


def test_dask_missing_is_a_clear_error(
    trained_run: Path, small_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if not installed
    with pytest.raises(WhichvoiceError, match=r"needs dask\.distributed: pip install"):
        predict_batch(
            trained_run,
            manifest_inputs(small_corpus / "manifest.jsonl"),
            tmp_path / "p.csv",
            dask_scheduler="tcp://127.0.0.1:8786",
            progress=False,
        )


def test_prepared_chunks_keep_order_and_errors_and_prepare_one_chunk_ahead() -> None:
    import threading

    from whichvoice.runtime import prepared_chunks

    started: list[int] = []
    lock = threading.Lock()

    def prepare(i: int) -> int:
        with lock:
            started.append(i)
        if i % 4 == 3:
            raise WhichvoiceError(f"input {i}")
        return 10 * i

    seen = []
    for chunk, prepared in prepared_chunks(prepare, range(10), 3, 2):
        if chunk[0] + 3 < 10:  # the next chunk is under way while this one is handed out
            deadline = time.monotonic() + 5
            while chunk[0] + 3 not in started and time.monotonic() < deadline:
                time.sleep(0.001)
            assert chunk[0] + 3 in started
        seen += [
            (c, p if isinstance(p, int) else str(p)) for c, p in zip(chunk, prepared, strict=True)
        ]
    assert seen == [(i, f"input {i}" if i % 4 == 3 else 10 * i) for i in range(10)]
    # one worker: in this thread, in order
    assert [p for _, ps in prepared_chunks(lambda i: i, range(5), 2, 1) for p in ps] == [
        0, 1, 2, 3, 4
    ]  # fmt: skip


def test_numpy_blas_runs_on_one_thread_while_a_pipeline_runs_and_is_restored_after() -> None:
    import scipy.linalg  # noqa: F401 - scipy's own OpenBLAS, loaded after numpy's
    from threadpoolctl import threadpool_info, threadpool_limits

    from whichvoice.runtime import prepared_chunks

    def blas_threads() -> set[int]:
        return {i["num_threads"] for i in threadpool_info() if i["internal_api"] == "openblas"}

    with threadpool_limits(limits=2, user_api="blas"):
        assert blas_threads() == {2}
        inside = [blas_threads() for _ in prepared_chunks(lambda i: i, range(6), 2, 2)]
        assert inside == [{1}] * 3
        assert blas_threads() == {2}
        # two pipelines at once: restored when the last one ends, not the first
        first = prepared_chunks(lambda i: i, range(4), 2, 1)
        second = prepared_chunks(lambda i: i, range(4), 2, 1)
        next(first), next(second)
        list(first)
        assert blas_threads() == {1}
        list(second)
        assert blas_threads() == {2}


def test_a_labels_csv_header_names_its_columns(tmp_path: Path) -> None:
    from whichvoice.evaluate import labelled_files

    labels = ["flite:awb", "flite:slt"]
    swapped = tmp_path / "swapped.csv"
    swapped.write_text("voice,speaker,path\nflite:slt,ann,a.mp3\nawb,bob,b.mp3\n")
    rows = list(labelled_inputs(swapped))
    assert [(r.path, r.voice) for r in rows] == [("a.mp3", "flite:slt"), ("b.mp3", "awb")]
    assert [(f.path.name, f.voice) for f in labelled_files(swapped, labels)] == [
        ("a.mp3", "flite:slt"), ("b.mp3", "flite:awb"),
    ]  # fmt: skip
    plain = tmp_path / "plain.csv"  # no header: path,voice
    plain.write_text("a.mp3,flite:slt\n")
    assert [(r.path, r.voice) for r in labelled_inputs(plain)] == [("a.mp3", "flite:slt")]
    other = tmp_path / "other.csv"  # a header without path and voice is not read as data
    other.write_text("file,speaker\na.mp3,flite:slt\n")
    with pytest.raises(BatchInputError, match="header naming the columns path and voice"):
        list(labelled_inputs(other))
    with pytest.raises(WhichvoiceError, match="header naming the columns path and voice"):
        labelled_files(other, labels)


def _children(pid: int) -> list[int]:
    """The child processes of ``pid`` (Linux /proc)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


@pytest.mark.slow
@pytest.mark.parametrize("when", ["workers starting", "workers working"])
def test_ctrl_c_stops_a_run_with_workers_in_one_line_and_it_resumes(
    tmp_path: Path, when: str
) -> None:
    """A terminal's Ctrl-C reaches every process of the group, and `timeout -s INT` sends a
    second one: the run with 2 workers ends at once with one line and status 130 (no
    traceback from a worker importing torch, no hang in the interpreter's exit), and
    ``--resume`` finishes the same output."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from .conftest import HUMAN_DEV

    out = tmp_path / "preds.csv"
    argv = [sys.executable, "-m", "whichvoice", "predict", str(HUMAN_DEV), "--output", str(out),
            "--workers", "2", "--quiet"]  # fmt: skip
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a process group of its own, as a terminal's job
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if when == "workers starting" and len(_children(proc.pid)) >= 2:
            break  # spawned: importing torch and loading the model
        if when == "workers working" and out.exists() and out.read_text().count("\n") > 50:
            break
        time.sleep(0.01)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)  # the second one
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # anything left of the group
    if proc.returncode == 0:
        pytest.skip("the run finished before Ctrl-C (a fast machine)")
    assert proc.returncode == 130, (proc.returncode, err)
    # one line, saying how to go on (after click's newline, ending a "^C")
    assert err.strip() == (
        "interrupted: with --output, the rows written are kept: the same command with "
        "--resume goes on"
    ), err
    done = subprocess.run([*argv[:-1], "--resume", "--quiet"], capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    # a few single digits hold under 0.2 s of speech: their rows say "no speech found", and
    # the run ends 1 for them (as for any input it could not answer)
    rows = out.read_text().splitlines()
    assert len(rows) == 1 + len(list(HUMAN_DEV.glob("*.wav")))
    errors = [r for r in rows[1:] if not r.endswith(",")]
    assert len(errors) < len(rows) // 20 and all("no speech found" in r for r in errors)
    assert done.returncode == (1 if errors else 0), done.stderr  # 1 exactly when a row failed


@pytest.mark.slow  # CLI processes
def test_resume_counts_an_input_given_twice_once_a_row(tmp_path: Path) -> None:
    """An input named twice has a row each time; a resume skips only as many of its
    occurrences as there are rows already written, so the finished file is the same as an
    uninterrupted run's (numbers to 1e-5: the engine head's part of ``auto`` embeds the
    files of a batch together, and a resumed run's batches hold other files, which moves a
    confidence in its sixth decimal now and then)."""
    from .conftest import HUMAN_DEV

    a, b = sorted(HUMAN_DEV.glob("*.wav"))[:2]
    inputs = [str(a), str(a), str(b), str(a)]
    out = tmp_path / "p.csv"
    model = bundled_classifier()
    predict_batch(model, inputs, out, progress=False)
    whole = out.read_text().splitlines()
    assert len(whole) == 1 + len(inputs)
    out.write_text("\n".join(whole[:2]) + "\n")  # the header and the first row
    summary = predict_batch(model, inputs, out, resume=True, progress=False)
    assert (summary.skipped, summary.predicted) == (1, 3)
    assert _same_rows(out.read_text().splitlines(), whole)


def _same_rows(got: list[str], want: list[str]) -> bool:
    """CSV lines equal field by field, numbers within 1e-5."""

    def near(x, y) -> bool:
        if isinstance(x, list) and isinstance(y, list):
            return len(x) == len(y) and all(near(a, b) for a, b in zip(x, y, strict=True))
        if isinstance(x, dict) and isinstance(y, dict):
            return x.keys() == y.keys() and all(near(x[k], y[k]) for k in x)
        if isinstance(x, float | int) and isinstance(y, float | int):
            return abs(x - y) <= 1e-5
        return x == y

    def close(x: str, y: str) -> bool:
        try:
            return abs(float(x) - float(y)) <= 1e-5
        except ValueError:
            pass
        try:  # a JSON list of top answers
            return near(json.loads(x), json.loads(y))
        except ValueError:
            return x == y

    rows, expected = list(csv.reader(got)), list(csv.reader(want))
    return len(rows) == len(expected) and all(
        len(r) == len(e) and all(close(x, y) for x, y in zip(r, e, strict=True))
        for r, e in zip(rows, expected, strict=True)
    )


@pytest.mark.slow  # CLI processes, synthesis or imports
def test_quiet_is_taken_without_an_output(cli) -> None:
    from .conftest import HUMAN_DEV

    clip = sorted(HUMAN_DEV.glob("*.wav"))[0]
    r = cli("predict", "-q", str(clip))
    assert r.returncode == 0 and r.stdout.startswith(str(clip)), r.stderr


@pytest.mark.slow  # several CLI processes: 5 s of the fast subset's minute
def test_a_file_name_with_a_newline_stays_on_its_line(cli, tmp_path: Path) -> None:
    from .conftest import HUMAN_DEV

    odd = tmp_path / "two\nlines.wav"
    odd.write_bytes(sorted(HUMAN_DEV.glob("*.wav"))[0].read_bytes())
    r = cli("predict", str(odd))
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("\n") == 1 and r.stdout.startswith(str(odd).replace("\n", "\\n"))
    assert json.loads(cli("predict", str(odd), "--json").stdout)["path"] == str(odd)
    bad = tmp_path / "not\naudio.wav"  # its error line names it too: escaped there as well
    bad.write_text("hello")
    r = cli("predict", str(bad))
    assert r.returncode == 1 and r.stdout.count("\n") == 1, r.stdout  # among the answers
    assert r.stdout.count("not\\naudio.wav") == 2, r.stdout


@pytest.mark.slow  # Dask's client and a timeout: 6 s of the fast subset's minute
def test_a_port_that_never_answers_is_no_dask_scheduler(monkeypatch: pytest.MonkeyPatch) -> None:
    """Another service on the port (an HTTP server) takes the connection and says nothing:
    the Dask client's own timeout then waited for ever (predict hung with no output)."""
    import socket
    import threading
    import time

    from distributed import Client

    from whichvoice.batch import runners

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held = []
    threading.Thread(target=lambda: held.extend(listener.accept() for _ in range(4)),
                     daemon=True).start()  # fmt: skip
    monkeypatch.setattr(runners, "DASK_CONNECT_S", 0.5)
    started = time.monotonic()
    address = f"tcp://127.0.0.1:{listener.getsockname()[1]}"
    with pytest.raises(WhichvoiceError, match="cannot reach the Dask scheduler"):
        runners._connect(Client, address)
    assert time.monotonic() - started < 30
    listener.close()


@pytest.mark.slow  # three CLI processes a format: 23 s of the fast subset's minute
@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_retry_failed_identifies_the_failed_inputs_again(cli, tmp_path: Path, suffix: str) -> None:
    """A file that failed (unreadable then: an outage, a file still being copied) keeps its
    error row on --resume; --retry-failed drops those rows and tries their inputs again, the
    good rows kept as they were."""
    from .conftest import HUMAN_DEV

    a, b = sorted(HUMAN_DEV.glob("*.wav"))[:2]
    late = tmp_path / "late.wav"
    late.write_bytes(b"RIFF not yet copied")
    inputs = tmp_path / "inputs.txt"
    inputs.write_text(f"{a}\n{late}\n{b}\n")
    out = tmp_path / f"p{suffix}"
    args = ["predict", "--manifest", str(inputs), "-o", str(out), "-q"]
    assert cli(*args).returncode == 1
    first = read_rows(out)
    assert [r["error"] is not None for r in first] == [False, True, False]
    late.write_bytes(a.read_bytes())  # the copy has finished
    r = cli(*args, "--resume")
    assert r.returncode == 1 and read_rows(out) == first, r.stderr  # failed rows count as done
    r = cli(*args, "--retry-failed")
    assert r.returncode == 0, r.stderr
    assert "1 failed before and tried again" in r.stderr and "3 rows, 0 failed" in r.stderr
    rows = read_rows(out)
    assert [x["path"] for x in rows] == [str(a), str(b), str(late)]  # the retried one last
    assert rows[:2] == [first[0], first[2]] and rows[2]["error"] is None
    assert rows[2]["voice"] == rows[0]["voice"]
    assert cli(*args, "--retry-failed", "--overwrite").returncode == 2


def test_an_output_that_is_a_folder_is_named_as_one(tmp_path: Path) -> None:
    (tmp_path / "preds.csv").mkdir()
    with pytest.raises(OutputError, match=r"preds\.csv is a folder: name a \.csv"):
        predict_batch(bundled_classifier(), ["a.wav"], tmp_path / "preds.csv", progress=False)


@pytest.mark.slow
def test_a_stranger_labelled_unknown_is_right_when_answered_unknown(tmp_path: Path) -> None:
    """--labels can name a clip of none of the model's voices: `unknown`, the open set's
    answer (it was refused as a voice the model does not know)."""
    from .conftest import HUMAN_DEV

    a, b = sorted(HUMAN_DEV.glob("*.wav"))[:2]
    (tmp_path / "labels.csv").write_text(f"path,voice\n{a},unknown\n{b}, Unknown \n")
    out = tmp_path / "p.jsonl"
    summary = predict_batch(
        bundled_classifier(), labelled_inputs(tmp_path / "labels.csv"), out, progress=False
    )
    rows = read_rows(out)
    assert [r["true_voice"] for r in rows] == ["unknown", "unknown"]
    # two people: the open set turns both away (scores about 0.1 and -0.1 against its 0.71),
    # and each is right (a test-suite review: a model naming every stranger passed)
    assert [r["answer"] for r in rows] == ["unknown", "unknown"]
    assert all(r["known"] is False and r["correct"] is True for r in rows)
    assert summary.labelled == 2 and summary.correct == 2


def test_one_job_writes_an_output_at_a_time_and_a_copy_without_its_record_is_refused(
    tmp_path: Path,
) -> None:
    """Two jobs on one output (a run and a --resume of it) appended the same rows twice;
    a resume of rows whose maker is not recorded mixed two models' answers (review)."""
    from whichvoice.batch import lock_path
    from whichvoice.files import held_alone

    from .conftest import HUMAN_DEV

    a = sorted(HUMAN_DEV.glob("*.wav"))[0]
    out = tmp_path / "p.csv"
    with (
        held_alone(lock_path(out), str(out)),  # as a job writing it holds it
        pytest.raises(OutputError, match=r"another whichvoice is writing .*p\.csv now"),
    ):
        predict_batch(bundled_classifier(), [a], out, progress=False)
    assert not out.exists() and not lock_path(out).exists()
    predict_batch(bundled_classifier(), [a], out, progress=False)
    assert not lock_path(out).exists()  # removed once done
    made_by_path(out).unlink()  # the output copied without its record
    with pytest.raises(OutputError, match=r"no record of the model that wrote it"):
        predict_batch(bundled_classifier(), [a, a], out, resume=True, progress=False)
    assert len(out.read_text().splitlines()) == 2  # untouched


def test_a_csv_row_cut_inside_a_quoted_path_is_dropped_on_resume(tmp_path: Path) -> None:
    """A path holding a newline is a quoted CSV field over two lines: a kill between them
    left half a row that --resume kept, and the CSV no longer parsed as its rows (review)."""
    from .conftest import HUMAN_DEV

    a, b = sorted(HUMAN_DEV.glob("*.wav"))[:2]
    odd = tmp_path / "new\nline.wav"
    shutil.copy(b, odd)
    inputs = [str(a), str(odd), str(a)]
    out = tmp_path / "p.csv"
    predict_batch(bundled_classifier(), inputs, out, progress=False)
    whole = out.read_bytes()
    cut = whole.index(b"new\n") + len(b"new\n")  # inside the quoted path
    out.write_bytes(whole[:cut])
    summary = predict_batch(bundled_classifier(), inputs, out, resume=True, progress=False)
    assert (summary.skipped, summary.predicted) == (1, 2)
    assert [r["path"] for r in read_rows(out)] == inputs
    assert _same_rows(out.read_text().splitlines(True), whole.decode().splitlines(True))


def test_a_row_cut_inside_a_character_is_dropped_not_a_traceback(tmp_path: Path) -> None:
    """A kill may cut a UTF-8 character in two (a path such as 李明2.wav): the complete rows
    are read, the cut one dropped (decoding it raised UnicodeDecodeError)."""
    from whichvoice.batch.sinks import _Lines

    out = tmp_path / "p.csv"
    whole = "path,error\n李明1.wav,\n李明2.wav,\n".encode()
    out.write_bytes(whole[: whole.index("李明2".encode()) + 2])  # inside 李
    sink = _Lines(out, "csv")
    assert [r["path"] for r in sink.scan()] == ["李明1.wav"]
    sink.open(("path", "error"))
    sink.close()
    assert out.read_bytes() == "path,error\n李明1.wav,\n".encode()


@pytest.mark.parametrize("how", ["removed", "replaced", "folder removed"])
def test_an_output_removed_while_written_is_said_not_counted(tmp_path: Path, how: str) -> None:
    """Found by a review: the output (or its folder) removed mid-run, `predict --output` still
    said "1600 rows, 0 failed" and exited 0, the rows gone into a file no path named."""
    import shutil

    from whichvoice.batch.sinks import _Lines
    from whichvoice.errors import OutputLostError

    folder = tmp_path / "out"
    folder.mkdir()
    out = folder / "p.jsonl"
    sink = _Lines(out, "jsonl")
    sink.open(("path", "error"))
    sink.write([{"path": "a.wav", "error": None}])
    if how == "removed":
        out.unlink()
    elif how == "replaced":
        out.unlink()
        out.write_text("someone else's\n")
    else:
        shutil.rmtree(folder)
    with pytest.raises(OutputLostError, match="removed or replaced while this run wrote it"):
        sink.finish()
    assert OutputLostError.exit_status == 1
    # untouched, it finishes as before
    kept = _Lines(tmp_path / "q.jsonl", "jsonl")
    kept.open(("path", "error"))
    kept.write([{"path": "a.wav", "error": None}])
    kept.finish()
    assert [r["path"] for r in kept.scan()] == ["a.wav"]


@pytest.mark.slow  # CLI processes
@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_a_name_not_in_utf8_and_a_link_to_nothing_are_rows_of_their_own(
    cli, tmp_path: Path, suffix: str
) -> None:
    """A file name in Latin-1 (byte 0xE9) gave a traceback mid-run and lost the inputs after
    it (no UTF-8 file or Parquet string holds it); a link to nothing in the folder was left
    out without a word, so a run over a store not yet mounted passed as complete (review)."""
    from .conftest import HUMAN_DEV

    good = sorted(HUMAN_DEV.glob("*.wav"))[0].read_bytes()
    folder = tmp_path / "in"
    folder.mkdir()
    for name in (b"a.wav", b"caf\xe9.wav", b"z.wav"):
        (folder / os.fsdecode(name)).write_bytes(good)
    (folder / os.fsdecode(b"d\xe9g\xe2t.wav")).write_bytes(b"RIFF, but damaged")
    (folder / "gone.wav").symlink_to(tmp_path / "unmounted" / "x.wav")
    out = tmp_path / f"p{suffix}"
    r = cli("predict", str(folder), "-o", str(out), "-q")
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    rows = read_rows(out)
    names = ["a.wav", "caf\\xe9.wav", "d\\xe9g\\xe2t.wav", "gone.wav", "z.wav"]
    assert [Path(x["path"]).name for x in rows] == names
    assert [x["error"] is None for x in rows] == [True, True, False, False, True]
    assert "no such file" in rows[3]["error"]
    assert rows[2]["error"].startswith(rows[2]["path"])  # its error names it as its row does
    assert rows[1]["voice"] == rows[0]["voice"]
    again = cli("predict", str(folder), "-o", str(out), "-q", "--resume")
    assert again.returncode == 1 and read_rows(out) == rows, again.stderr  # matched, not redone
    # the same folder without an output: a line each (the name's own bytes, as ls prints
    # them), the dangling link's an error
    text = cli("predict", str(folder), errors="surrogateescape")
    assert text.returncode == 1 and text.stdout.count("\n") == 5, text.stdout
    assert "caf\udce9.wav\t" in text.stdout and "gone.wav: cannot read" in text.stdout
    # --json lines name them as the output's rows do: UTF-8 a reader such as jq can take
    lines = cli("predict", str(folder), "--json").stdout.encode("utf-8").splitlines()
    by_json = [json.loads(line.decode("utf-8", "strict"))["path"] for line in lines]
    assert by_json == [x["path"] for x in rows]
    # diarize reads such a file too (soundfile took its name as UTF-8: a traceback)
    odd = folder / os.fsdecode(b"caf\xe9.wav")
    turns = cli("diarize", str(odd), "--model", "bundled", "--json", "-q")
    assert turns.returncode == 0 and json.loads(turns.stdout)["path"].endswith("caf\\xe9.wav")


@pytest.mark.slow  # a run loaded
def test_a_full_disk_mid_run_names_the_output_keeps_its_rows_and_resumes(
    trained_run: Path, small_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk gave "error: No space left on device" (no path) and exit 2, the status of a
    bad option before any work (review); it is now OutputLostError, exit 1, naming the output,
    and --resume completes it."""
    import errno

    from whichvoice.batch import sinks
    from whichvoice.errors import OutputLostError

    inputs = manifest_inputs(small_corpus / "manifest.jsonl")
    out = tmp_path / "p.csv"
    real, calls = sinks._Lines.write, []

    def full(self, rows):
        calls.append(len(rows))
        if len(calls) == 2:  # the second chunk: half its rows reach the disk, then it is full
            real(self, rows[: len(rows) // 2])
            self.file.write("cut,")
            raise OSError(errno.ENOSPC, "No space left on device")
        real(self, rows)

    monkeypatch.setattr(sinks._Lines, "write", full)
    with pytest.raises(OutputLostError, match=r"p\.csv: No space left on device: .*--resume"):
        predict_batch(trained_run, inputs, out, progress=False, chunk=4)
    assert OutputLostError.exit_status == 1
    monkeypatch.setattr(sinks._Lines, "write", real)
    summary = predict_batch(trained_run, inputs, out, progress=False, chunk=4, resume=True)
    rows = read_rows(out)
    assert len(rows) == len(read_manifest(small_corpus / "manifest.jsonl")) == summary.rows
    assert len({r["path"] for r in rows}) == len(rows) and summary.failed == 0


@pytest.mark.slow  # the bundled classifier loaded
def test_predict_batch_from_python_takes_a_folder_as_a_string(tmp_path: Path) -> None:
    """A folder in a list of paths became one failed row ("is a folder"), where predict's
    paths expand it (review); the summary holds its figures as JSON does."""
    from .conftest import HUMAN_DEV

    folder = tmp_path / "clips"
    folder.mkdir()
    for p in sorted(HUMAN_DEV.glob("*.wav"))[:2]:
        shutil.copy(p, folder)
    extra = sorted(HUMAN_DEV.glob("*.wav"))[2]
    out = tmp_path / "p.csv"
    summary = predict_batch(None, [str(folder), extra], out, progress=False)
    rows = read_rows(out)
    assert [Path(r["path"]).name for r in rows] == [*sorted(p.name for p in folder.iterdir()),
                                                    extra.name]  # fmt: skip
    assert all(r["error"] is None for r in rows)
    d = json.loads(json.dumps(summary.to_dict()))
    assert d["rows"] == 3 and d["failed"] == 0 and d["output"] == str(out)
    with pytest.raises(WhichvoiceError, match="at least 1"):
        predict_batch(None, [extra], tmp_path / "q.csv", workers=0, progress=False)
    with pytest.raises(OutputError, match=r"resume=True"):
        predict_batch(None, [extra], out, progress=False)


def _children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


@pytest.mark.slow  # worker processes load the model
def test_workers_stop_when_their_parent_is_killed(
    trained_run: Path, small_corpus: Path, tmp_path: Path
) -> None:
    """`predict --workers 2` killed with -9 left its two workers (280 MB each) and the
    resource tracker running for good (a review): a worker dies with its parent."""
    import time

    proc = subprocess.Popen(
        [sys.executable, "-m", "whichvoice", "predict", str(trained_run), str(small_corpus),
         "--output", str(tmp_path / "o.csv"), "--workers", "2", "--quiet"],
        start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while len(children := _children(proc.pid)) < 2 and time.monotonic() < deadline:
            assert proc.poll() is None, "it finished before its workers were seen"
            time.sleep(0.05)
        assert len(children) >= 2
    finally:
        proc.kill()
        proc.wait()

    def running(pid: int) -> bool:  # a zombie no init has reaped yet has stopped
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    deadline = time.monotonic() + 30
    while any(map(running, children)) and time.monotonic() < deadline:
        time.sleep(0.2)
    alive = [c for c in children if running(c)]
    for c in alive:  # not left behind by the test either
        with contextlib.suppress(OSError):
            os.kill(c, signal.SIGKILL)
    assert not alive

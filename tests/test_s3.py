"""The pipeline with every location on s3:// (moto_server on 127.0.0.1): each step runs in its
own process with its own empty cache, as if on another machine."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest

from whichvoice import storage

VOICES = "flite:slt,flite:rms,espeak-ng:en-us+f3"


def _keys(url: str) -> set[str]:
    bucket, _, prefix = url[len("s3://") :].partition("/")
    pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket)
    keys = {o["Key"] for page in pages for o in page.get("Contents", [])}
    return {k[len(prefix) + 1 :] for k in keys if k.startswith(prefix + "/")}


@pytest.mark.slow
def test_synth_train_evaluate_predict_on_s3(bucket: str, cli, tmp_path: Path) -> None:
    def machine(name: str) -> dict[str, str]:
        return {"env": {"WHICHVOICE_CACHE": str(tmp_path / name)}}

    corpus, run = f"{bucket}/corpus", f"{bucket}/runs/voicenet"
    cli("synth", corpus, "--voices", VOICES, "--sentences", "30", "--assign", "all", "--quiet",
        check=True, **machine("synth"))  # fmt: skip
    keys = _keys(corpus)
    assert {"manifest.jsonl", storage.RECORD} <= keys
    assert sum(k.endswith(".mp3") for k in keys) == 90

    # calibrate reads a corpus on s3:// (it read the URL as the local folder "s3:")
    calibrated = cli("calibrate", "--model", "bundled", "--corpus", corpus, "--force", "--json",
                     env={"WHICHVOICE_CACHE": str(tmp_path / "cal"),
                          "WHICHVOICE_ENCODER_DIR": str(tmp_path / "encoder")})  # fmt: skip
    assert calibrated.returncode == 0, calibrated.stderr
    assert json.loads(calibrated.stdout)["target_trials"] > 0
    assert (tmp_path / "encoder" / "calibration.json").is_file()
    trials = cli("calibrate", "--model", "bundled", "--trials", f"{corpus}/trials.txt")
    assert trials.returncode == 2 and "a local file, not a URL" in trials.stderr, trials.stderr

    train = cli("train", corpus, "--out", run, "--epochs", "10", "--batch-size", "16", "--quiet",
                check=True, **machine("train"))  # fmt: skip
    assert train.returncode == 0 and train.stdout.startswith("test accuracy ")  # even --quiet
    assert {"model.safetensors", "config.json", "metrics.json", "epochs.jsonl"} <= _keys(run)

    evaluated = cli("evaluate", run, "--json", check=True, **machine("evaluate"))
    metrics = json.loads(evaluated.stdout)
    assert metrics["files"] > 0 and metrics["file_accuracy"] > 0.6  # 3 voices: chance is 1/3
    # the report goes beside the run, named after what was scored; the run is untouched
    assert {"report.md", "confusion.png", "evaluation.json"} <= _keys(f"{run}-eval-corpus-test")
    assert "evaluation" not in json.loads(storage.read_bytes(f"{run}/metrics.json"))

    clip = next(k for k in sorted(_keys(corpus)) if k.startswith("audio/flite/slt/"))
    predicted = cli("predict", run, f"{corpus}/{clip}", "--json", check=True, **machine("p"))
    answer = json.loads(predicted.stdout)
    assert answer["path"] == f"{corpus}/{clip}" and answer["voice"] == "flite:slt"

    # a mistyped run on s3:// is refused, as a local one is (it was read as an input, the
    # clips answered by the bundled classifier)
    typo = cli("predict", f"{run}-typo", f"{corpus}/{clip}", **machine("p"))
    assert typo.returncode == 2 and "voicenet-typo: no such run or audio file" in typo.stderr
    # a key that does not exist is one input that fails (a row saying why, exit 1), as a
    # missing local file is; it was dropped without a word (--output) or stopped the command
    missing = f"{corpus}/audio/flite/slt/nothere.mp3"
    one = cli("predict", run, missing, f"{corpus}/{clip}", **machine("p"))
    assert one.returncode == 1 and f"{missing}\terror:" in one.stdout, one.stdout + one.stderr
    assert "\tflite:slt\t" in one.stdout
    rows_out = tmp_path / "with-missing.csv"
    batch = cli("predict", run, missing, f"{corpus}/{clip}", "--output", str(rows_out),
                "--quiet", **machine("p"))  # fmt: skip
    assert batch.returncode == 1 and rows_out.read_text().count("\n") == 3, batch.stderr
    assert "nothere.mp3" in rows_out.read_text()
    empty = cli("predict", run, f"{bucket}/no-prefix/", "--output", str(tmp_path / "e.csv"),
                **machine("p"))  # fmt: skip
    assert empty.returncode == 2 and "no audio files" in empty.stderr, empty.stderr
    folder = cli("predict", run, f"{corpus}/audio/flite/rms", "--json", check=True, **machine("p"))
    voices = [json.loads(line)["voice"] for line in folder.stdout.splitlines()]
    assert len(voices) == 30 and voices.count("flite:rms") >= 27

    preds = f"{bucket}/out/preds.jsonl"
    cli("predict", run, "--manifest", f"{corpus}/manifest.jsonl", "--output", preds, "--quiet",
        check=True, **machine("batch"))  # fmt: skip
    rows = [json.loads(line) for line in storage.read_bytes(preds).decode().splitlines()]
    assert len(rows) == 90 and all(not r.get("error") for r in rows)
    assert {r["path"] for r in rows} == {k for k in _keys(corpus) if k.endswith(".mp3")}

    cli("export", run, "--onnx", f"{bucket}/onnx/voicenet.onnx", check=True, **machine("onnx"))
    assert "voicenet.onnx" in _keys(f"{bucket}/onnx")
    # an object already there is replaced only with --overwrite, as a local file is
    again = cli("export", run, "--onnx", f"{bucket}/onnx/voicenet.onnx", **machine("onnx2"))
    assert again.returncode == 2 and "exists; --overwrite" in again.stderr, again.stderr
    # a '..' in a URL: its key would hold it while the local copy folds it away
    dots = cli("predict", run, f"{corpus}/{clip}", "--output", f"{bucket}/../x.csv", "--quiet",
               **machine("dots"))  # fmt: skip
    assert dots.returncode == 2 and "'..' in a URL is refused" in dots.stderr, dots.stderr
    assert not any(".." in k for k in _keys(bucket))
    # the int8 network, into the run on s3, and used by another machine from there
    cli("export", run, "--onnx", f"{run}/model.int8.onnx", "--int8", "--calibration",
        f"{corpus}/audio", check=True, **machine("int8"))  # fmt: skip
    assert "model.int8.onnx" in _keys(run)
    int8 = cli("predict", run, f"{corpus}/{clip}", "--backend", "onnx-int8", "--json",
               check=True, **machine("int8-user"))  # fmt: skip
    assert json.loads(int8.stdout)["voice"] == "flite:slt"


@pytest.mark.slow
def test_prepare_and_gallery_exports_on_s3(bucket: str, cli, tmp_path: Path) -> None:
    from tests.conftest import voice_clips

    clips = voice_clips(tmp_path / "local", "flite:slt,flite:rms", sentences=3)
    corpus = f"{bucket}/corpus"
    cli("synth", corpus, "--voices", "flite:slt,flite:rms", "--sentences", "12", "--assign",
        "all", "--quiet", check=True)  # fmt: skip
    prepared = f"{bucket}/prepared"
    cli("prepare", corpus, prepared, "--quiet", check=True)
    assert {"dataset.json", "train_x.npy", storage.RECORD} <= _keys(prepared)
    # a URL that holds no corpus is named as given, not as its local mirror (review)
    nothing = cli("train", f"{bucket}/nothing", "--out", str(tmp_path / "run"))
    assert nothing.returncode == 2 and f"{bucket}/nothing: not a corpus" in nothing.stderr

    # a bucket that does not exist: said before anything is synthesized (it was said after)
    nowhere = cli("synth", "s3://no-such-bucket-here/corpus", "--voices", "flite:slt",
                  "--sentences", "3", "--assign", "all", "--quiet",
                  env={"WHICHVOICE_CACHE": str(tmp_path / "nb")})  # fmt: skip
    assert nowhere.returncode == 2 and "there is no bucket 'no-such-bucket-here'" in nowhere.stderr
    assert not list((tmp_path / "nb").rglob("*.mp3"))

    gallery = tmp_path / "g.sqlite"
    slt = [str(p) for p in clips["flite:slt"]]
    # a gallery is a local file: a URL made a folder named "s3:" and "enrolled"
    url = cli("enroll", "slt", *slt, "--gallery", f"{bucket}/g.sqlite", cwd=tmp_path)
    assert url.returncode == 2 and "a local path, not a URL" in url.stderr, url.stderr
    env = cli("enroll", "slt", *slt, cwd=tmp_path, env={"WHICHVOICE_GALLERY": f"{bucket}/e.sqlite"})
    assert env.returncode == 2 and "not a URL" in env.stderr, env.stderr
    for command in ("identify", "trace", "diarize"):  # they read local files: said so
        proc = cli(command, f"{bucket}/clip.mp3", cwd=tmp_path)
        assert proc.returncode == 2 and "a local path, not a URL" in proc.stderr, proc.stderr
    assert not (tmp_path / "s3:").exists()
    cli("enroll", "slt", *slt, "--gallery", str(gallery), check=True)
    export = f"{bucket}/exports/gallery.json"
    cli("gallery", "export", export, "--gallery", str(gallery), check=True)
    assert json.loads(storage.read_bytes(export))["voices"][0]["name"] == "slt"
    # a prefix that holds objects (an S3 "folder") is no object to write: an object of its
    # name hid the folder from every later read of the URL; nor is a URL ending in /
    for folder in (f"{bucket}/exports", f"{bucket}/exports/"):
        onto = cli("gallery", "export", folder, "--overwrite", "--gallery", str(gallery))
        assert onto.returncode == 2 and "a folder" in onto.stderr, onto.stderr
        assert len(onto.stderr.strip().splitlines()) == 1
    # an RTTM named as a folder was refused only when written, after the diarization
    for folder in (f"{bucket}/exports", f"{bucket}/exports/"):
        turns = cli("diarize", slt[0], "--rttm", folder, "--gallery", str(gallery), "--quiet")
        assert turns.returncode != 0 and "a folder" in turns.stderr, turns.stderr
        assert not turns.stdout and len(turns.stderr.strip().splitlines()) == 1, turns.stderr
    assert _keys(f"{bucket}/exports") == {"gallery.json"}
    other = tmp_path / "other.sqlite"
    imported = cli("gallery", "import", export, "--gallery", str(other), check=True)
    assert "imported 1" in imported.stdout
    missing = cli("gallery", "import", f"{bucket}/exports/none.json", "--gallery", str(other))
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_batch_parquet_output_on_s3_is_complete_and_resumable(
    bucket: str, trained_run: Path, small_corpus: Path, cli, tmp_path: Path
) -> None:
    import io

    import pyarrow.parquet as pq

    out = f"{bucket}/preds/p.parquet"
    manifest = small_corpus / "manifest.jsonl"
    n = sum(1 for line in manifest.read_text().splitlines() if line.strip())
    args = ("predict", str(trained_run), "--manifest", str(manifest), "--output", out, "--quiet")
    cli(*args, check=True, env={"WHICHVOICE_CACHE": str(tmp_path / "a")})
    table = pq.read_table(io.BytesIO(storage.read_bytes(out)))
    assert table.num_rows == n and not any(table.column("error").to_pylist())
    # the journal is gone once complete; the record of the model that wrote it stays beside
    assert _keys(f"{bucket}/preds") == {"p.parquet", ".p.parquet.whichvoice.json"}

    again = cli(*args, env={"WHICHVOICE_CACHE": str(tmp_path / "b")})  # another machine
    assert again.returncode == 2 and "--resume" in again.stderr
    assert f"{out} exists" in again.stderr and str(tmp_path) not in again.stderr  # its URL
    resumed = cli(*args, "--resume", check=True, env={"WHICHVOICE_CACHE": str(tmp_path / "c")})
    assert f"{n} already done" in resumed.stderr and f"{n} rows, 0 failed" in resumed.stderr
    assert pq.read_table(io.BytesIO(storage.read_bytes(out))).num_rows == n
    # on another machine too, another model cannot add its rows
    other = cli("predict", "--manifest", str(manifest), "--output", out, "--resume", "--quiet",
                env={"WHICHVOICE_CACHE": str(tmp_path / "d")})  # fmt: skip
    assert other.returncode == 2 and "was made by" in other.stderr

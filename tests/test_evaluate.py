import json
import os
import shutil
from pathlib import Path

import pytest

from whichvoice.corpus import read_manifest
from whichvoice.evaluate import confusion, per_voice_table


def test_per_voice_table_and_confusion() -> None:
    truth = ["a", "a", "b", "b", "c"]
    pred = ["a", "b", "b", "b", "a"]
    table = {r["voice"]: r for r in per_voice_table(truth, pred, ["a", "b", "c"])}
    assert table["a"]["recall"] == 0.5 and table["a"]["precision"] == 0.5
    assert table["b"]["precision"] == pytest.approx(2 / 3) and table["b"]["recall"] == 1.0
    assert table["c"]["f1"] == 0.0 and table["c"]["precision"] is None  # never predicted
    absent = per_voice_table(truth, pred, ["a", "b", "c", "d"])[3]
    assert absent["support"] == 0 and absent["recall"] is absent["f1"] is None
    m = confusion(truth, pred, ["a", "b", "c"])
    assert m.sum() == 5 and m.trace() == 3 and m[2, 0] == 1


@pytest.mark.slow
def test_cli_evaluate_on_the_test_split(
    cli, trained_run: Path, small_corpus: Path, tmp_path: Path
) -> None:
    proc = cli(
        "evaluate",
        str(trained_run),
        "--corpus",
        str(small_corpus),
        "--json",
        "--report",
        str(tmp_path / "rep"),
        check=True,
    )
    metrics = json.loads(proc.stdout)
    assert metrics["files"] > 0 and metrics["errors"] == 0
    assert metrics["file_accuracy"] >= 0.8
    assert 0 <= metrics["window_accuracy"] <= 1
    assert {r["voice"] for r in metrics["per_voice"]} == set(metrics["voices"])
    assert (tmp_path / "rep" / "report.md").read_text().count("|") > 20
    assert (tmp_path / "rep" / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    saved = json.loads((tmp_path / "rep" / "evaluation.json").read_text())
    assert saved["file_accuracy"] == metrics["file_accuracy"]
    lo, hi = metrics["file_accuracy_ci95"]
    assert lo <= metrics["file_accuracy"] <= hi and hi - lo > 0
    assert "trained_sentence_files" not in metrics  # its own test split: held out
    val = cli("evaluate", str(trained_run), "--corpus", str(small_corpus), "--split", "val",
              "--json", "--report", str(tmp_path / "val"), check=True)  # fmt: skip
    assert "trained_sentence_files" not in json.loads(val.stdout)  # made for choices, not trained
    assert "trained_files" not in json.loads(val.stdout)  # nor are its clips training clips
    assert "trained_files" not in metrics
    # --quiet drops the progress bar, not the result
    quiet = cli("evaluate", str(trained_run), "--corpus", str(small_corpus), "--quiet",
                "--report", str(tmp_path / "rep"), check=True)  # fmt: skip
    assert f"report: {tmp_path / 'rep'}" in quiet.stdout and "accuracy" in quiet.stdout
    assert quiet.stderr == ""


@pytest.mark.slow
def test_dev_and_test_splits_hold_other_sentences_and_conditions_have_intervals(
    trained_run: Path, small_corpus: Path, tmp_path: Path
) -> None:
    from whichvoice.evaluate import evaluate, held_out_split
    from whichvoice.runtime import load_model

    model = load_model(trained_run)
    by_split = {s: held_out_split(model, small_corpus, s) for s in ("val", "test")}
    manifest = {str(small_corpus / c.path): c.sentence_id for c in read_manifest(
        small_corpus / "manifest.jsonl")}  # fmt: skip
    sentences = {s: {manifest[str(f.path)] for f in files} for s, files in by_split.items()}
    assert sentences["val"] and sentences["test"] and not sentences["val"] & sentences["test"]
    metrics = evaluate(
        trained_run,
        corpus=small_corpus,
        split="val",
        conditions=["clipping", "long"],
        report_dir=tmp_path,
        progress=False,
    )
    assert metrics["data"].startswith("val split") and metrics["files"] == len(by_split["val"])
    for c in metrics["conditions"].values():
        lo, hi = c["ci95"]
        assert 0 <= lo <= c["accuracy"] <= hi <= 1 and c["correct"] <= c["files"]
        # each copy's answer, so the figure can be recomputed (it had counts alone: review)
        assert len(c["sources"]) == len(c["truth"]) == len(c["predicted"]) == c["files"]
        assert c["seed"] == 0
        assert sum(map(str.__eq__, c["truth"], c["predicted"])) == c["correct"]
    assert "95 % interval" in (tmp_path / "report.md").read_text()
    # how it was made, as a benchmark's result records it (nothing of it before: review)
    saved = json.loads((tmp_path / "evaluation.json").read_text())
    assert {"commit", "dirty", "date", "machine", "versions"} <= saved.keys()
    assert saved["versions"]["whichvoice"] and len(saved["weights_sha256"]) == 64
    right = sum(r["voice"] == r["predicted"] for r in saved["per_file"])
    assert len(saved["per_file"]) == metrics["files"] + metrics["errors"]
    assert right / metrics["files"] == pytest.approx(metrics["file_accuracy"])


def test_the_bundled_classifier_says_its_training_sentences() -> None:
    """evaluate of the bundled classifier on its own training sentences gave no warning
    (review): its shipped sentences.json lists the corpus it was made from."""
    from whichvoice.evaluate import trained_sentences
    from whichvoice.runtime import load_model
    from whichvoice.sentences import load_sentences

    seen = trained_sentences(load_model(None, openset=False))
    assert seen == {s.id for s in load_sentences(400).sentences}


@pytest.mark.slow
def test_cli_evaluate_on_a_labels_csv(
    cli, trained_run: Path, small_corpus: Path, tmp_path: Path
) -> None:
    every = read_manifest(small_corpus / "manifest.jsonl")
    left_out = sorted({c.voice for c in every})[-1]  # a voice with no file in the labels
    clips = [c for c in every if c.voice != left_out][:6]
    csv = tmp_path / "labels.csv"
    rows = [
        f"{small_corpus / c.path},{c.voice.split(':', 1)[1] if i % 2 else c.voice}"
        for i, c in enumerate(clips)
    ]
    csv.write_text("path,voice\n" + "\n".join(rows) + "\n")
    own = {p.name: p.read_bytes() for p in trained_run.iterdir() if p.is_file()}
    proc = cli("evaluate", str(trained_run), "--labels", str(csv), check=True)
    assert "file-level accuracy" in proc.stdout
    # clips the run trained on (its train and val splits) are named as such (review: a CSV
    # of the training clips scored 100 % without a word), in the corpus or copied elsewhere
    data = Path(json.loads((trained_run / "config.json").read_text())["data"])
    index = [json.loads(x) for x in (data / "index.jsonl").read_text().splitlines()]
    trained = {r["id"] for r in index if r["split"] in ("train", "val")}
    seen = sum(c.id in trained for c in clips)
    assert seen > 0  # the first clips of the corpus: most are train or val clips
    warned = f"warning: {seen} of the 6 files scored are clips the run was trained on"
    assert warned in proc.stderr, proc.stderr
    copied = tmp_path / "copies"
    copied.mkdir()
    copies = []
    for c in clips:
        shutil.copy(small_corpus / c.path, copied / Path(c.path).name)
        copies.append(f"{copied / Path(c.path).name},{c.voice}")
    (tmp_path / "copies.csv").write_text("path,voice\n" + "\n".join(copies) + "\n")
    moved = cli("evaluate", str(trained_run), "--labels", str(tmp_path / "copies.csv"),
                "--report", str(tmp_path / "copies-report"), "--json", check=True)  # fmt: skip
    assert json.loads(moved.stdout)["trained_files"] == seen
    # the report says it too, where it is shared (a review: only stderr did, and --json
    # said nothing), counting the files scored: an unreadable one is not among them
    report = (tmp_path / "copies-report" / "report.md").read_text()
    assert f"**Warning:** {seen} of the 6 files scored are clips the run was trained" in report
    assert "Closed set" in report and "as if independent" in report
    (copied / "bad.wav").write_bytes(b"not audio")
    (tmp_path / "bad.csv").write_text("path,voice\n" + "\n".join(copies) + "\n"
                                      f"{copied / 'bad.wav'},{clips[0].voice}\n")  # fmt: skip
    bad = cli("evaluate", str(trained_run), "--labels", str(tmp_path / "bad.csv"),
              "--report", str(tmp_path / "bad-report"), "--json")  # fmt: skip
    assert bad.returncode == 1, bad.stderr
    warned_json = json.loads(bad.stdout)["warnings"]
    assert warned_json == [f"{seen} of the 6 files scored are clips the run was trained on (its "
                           "train or val split; the same bytes): these figures are not held "
                           "out"], warned_json  # fmt: skip
    # the report goes to a new folder beside the run, named after the labels; the run's own
    # files (its report and metrics among them) are untouched
    beside = trained_run.parent / f"{trained_run.name}-eval-labels"
    assert f"report: {beside / 'report.md'}" in proc.stdout
    assert json.loads((beside / "evaluation.json").read_text())["files"] == 6
    assert {p.name: p.read_bytes() for p in trained_run.iterdir() if p.is_file()} == own
    # a voice with no file in the labels has no figures: a dash, not 0.0000
    line = next(x for x in proc.stdout.splitlines() if x.startswith(left_out + " "))
    assert line.split()[1:3] == ["0", "–"], line
    assert f"| {left_out} | 0 | – |" in (beside / "report.md").read_text()
    # a file that cannot be read: the others are scored, the report written, and exit 1
    gap = tmp_path / "gap.csv"
    gap.write_text(csv.read_text() + f"{tmp_path / 'missing.mp3'},{clips[0].voice}\n")
    partial = cli("evaluate", str(trained_run), "--labels", str(gap), "--report",
                  str(tmp_path / "gap"), "--json")  # fmt: skip
    assert partial.returncode == 1 and json.loads(partial.stdout)["errors"] == 1
    # files of one voice alone: the figure is that voice's recall, and evaluate says so
    one = tmp_path / "one.csv"
    first = [c for c in every if c.voice == clips[0].voice][:3]
    one.write_text("path,voice\n" + "".join(f"{small_corpus / c.path},{c.voice}\n" for c in first))
    alone = cli("evaluate", str(trained_run), "--labels", str(one), "--report",
                str(tmp_path / "one"), "--json")  # fmt: skip
    assert "every file scored is of one voice" in alone.stderr, alone.stderr
    assert "every file scored is of one voice" not in proc.stderr
    # labels (so the report names them) and a report folder named in bytes that are not
    # UTF-8: written, not a traceback
    odd_csv = tmp_path / os.fsdecode(b"l\xffabels.csv")
    shutil.copy(csv, odd_csv)
    odd = tmp_path / os.fsdecode(b"r\xffep")
    named = cli("evaluate", str(trained_run), "--labels", str(odd_csv), "--report", str(odd),
                "--json", errors="surrogateescape")  # fmt: skip
    assert named.returncode == 0 and (odd / "report.md").is_file(), named.stderr
    # --json spells the name's bytes \xNN, as identify's and predict's lines do (was \udcNN)
    assert json.loads(named.stdout)["report"].endswith("r\\xffep/report.md"), named.stdout
    assert b"l\xffabels.csv" in (odd / "report.md").read_bytes()
    assert (tmp_path / "gap" / "report.md").is_file()
    # the text names each unreadable file, as predict does (it named the first, "e.g.")
    gaps = gap.read_text() + f"{tmp_path / 'lost.mp3'},{clips[0].voice}\n"
    gap.write_text(gaps)
    text = cli("evaluate", str(trained_run), "--labels", str(gap), "--report",
               str(tmp_path / "gap2"))  # fmt: skip
    assert text.returncode == 1 and "warning: 2 files could not be read:" in text.stderr
    assert "missing.mp3" in text.stderr and "lost.mp3" in text.stderr, text.stderr
    # none readable: inputs given right that could not be used, exit 1 as for one (not 2)
    none = tmp_path / "none.csv"
    none.write_text(f"{tmp_path / 'lost.mp3'},{clips[0].voice}\n")
    nothing = cli("evaluate", str(trained_run), "--labels", str(none))
    assert nothing.returncode == 1 and "none of the" not in nothing.stdout, nothing.stderr
    assert nothing.stderr.startswith("error: ") and "could be read" in nothing.stderr
    # a path holding a newline, quoted as the csv module writes it (predict read it; evaluate
    # split the line)
    import csv as csv_module

    odd = tmp_path / "new\nline.mp3"
    shutil.copyfile(small_corpus / clips[0].path, odd)
    quoted = tmp_path / "quoted.csv"
    with quoted.open("w", newline="") as f:
        csv_module.writer(f).writerows([("path", "voice"), (str(odd), clips[0].voice)])
    proc = cli("evaluate", str(trained_run), "--labels", str(quoted), "--report",
               str(tmp_path / "quoted"), "--json")  # fmt: skip
    assert proc.returncode == 0 and json.loads(proc.stdout)["files"] == 1, proc.stdout + proc.stderr
    split = cli("evaluate", str(trained_run), "--labels", str(csv), "--split", "val")
    assert split.returncode == 2 and "--split goes with a corpus" in split.stderr  # was ignored
    bad = tmp_path / "bad.csv"
    bad.write_text("only-one-column\n")
    proc = cli("evaluate", str(trained_run), "--labels", str(bad))
    assert proc.returncode == 2 and "bad.csv:1" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_cli_demo_end_to_end(cli, tmp_path: Path) -> None:
    proc = cli(
        "demo", "--sentences", "20", "--epochs", "4", "--out", str(tmp_path / "demo"), check=True
    )
    assert "test accuracy" in proc.stdout
    for voice in ("flite:slt", "espeak-ng:en-gb-x-rp+m3", "festival:cmu_us_slt_arctic_hts"):
        assert voice in proc.stdout
    assert list((tmp_path / "demo").rglob("report.md"))


@pytest.mark.slow
def test_cli_demo_on_other_voices(cli, tmp_path: Path) -> None:
    voices = "piper:en_US-joe-medium,pico:en-GB,mbrola:us1,rhvoice:clb"
    proc = cli("demo", "--sentences", "10", "--epochs", "2", "--voices", voices,
               "--out", str(tmp_path / "demo"), "--quiet", check=True)  # fmt: skip
    # --quiet: no steps, bars or table, but the result
    lines = proc.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("test accuracy "), proc.stdout
    assert "95 % interval" in lines[0] and "report.md" in lines[0]
    report = next((tmp_path / "demo").rglob("report.md")).read_text()
    for voice in voices.split(","):
        assert voice in report


@pytest.mark.slow
def test_labels_csv_with_an_unknown_voice(
    cli, trained_run: Path, small_corpus: Path, tmp_path: Path
) -> None:
    clip = read_manifest(small_corpus / "manifest.jsonl")[0]
    csv = tmp_path / "labels.csv"
    csv.write_text(f"{small_corpus / clip.path},flite:bogus\n")
    proc = cli("evaluate", str(trained_run), "--labels", str(csv))
    assert proc.returncode == 2 and "does not know voice 'flite:bogus'" in proc.stderr


@pytest.mark.slow
def test_cli_evaluate_every_condition(cli, trained_run: Path, small_corpus: Path, tmp_path):
    from whichvoice.conditions import CONDITIONS

    proc = cli("evaluate", str(trained_run), "--corpus", str(small_corpus), "--conditions",
               "all", "--report", str(tmp_path), check=True)  # fmt: skip
    for name in CONDITIONS:
        assert f"  {name} " in proc.stdout, name
    assert "[95 % interval" in proc.stdout


@pytest.mark.slow
def test_evaluate_says_when_a_corpus_reads_sentences_the_run_trained_on(
    cli, trained_run: Path, small_corpus: Path, tmp_path: Path
) -> None:
    from whichvoice.dataset import load_corpus, split_clips

    # another corpus of the same sentences, split its own way: some of its test sentences
    # are the run's training sentences
    other = tmp_path / "other"
    other.mkdir()
    lines = (small_corpus / "manifest.jsonl").read_text().splitlines()
    ids = sorted({json.loads(line)["sentence_id"] for line in lines})[:24]
    (other / "manifest.jsonl").write_text(
        "".join(f"{x}\n" for x in lines if json.loads(x)["sentence_id"] in ids)
    )
    (other / "audio").symlink_to(small_corpus / "audio")
    seed = json.loads((trained_run / "config.json").read_text())["prepare"]["seed"]
    mine = split_clips(load_corpus(small_corpus), seed)
    theirs = split_clips(clips := load_corpus(other), seed)
    trained = {c.sentence_id for c in load_corpus(small_corpus) if mine[c.id] != "test"}
    expected = sum(c.sentence_id in trained for c in clips if theirs[c.id] == "test")
    assert expected > 0
    proc = cli("evaluate", str(trained_run), "--corpus", str(other), "--report",
               str(tmp_path / "rep"), check=True)  # fmt: skip
    assert f"warning: {expected} of the" in proc.stderr and "not held out" in proc.stderr
    metrics = json.loads((tmp_path / "rep" / "evaluation.json").read_text())
    assert metrics["trained_sentence_files"] == expected
    assert metrics["sentences"] == len({c.sentence_id for c in clips if theirs[c.id] == "test"})
    assert not any("one sentence" in w for w in metrics["warnings"])
    # a test split of one sentence: said in the JSON and the report, not only on stderr
    for n in range(4, 24):
        keep = [x for x in lines if json.loads(x)["sentence_id"] in ids[:n]]
        (other / "manifest.jsonl").write_text("".join(f"{x}\n" for x in keep))
        split = split_clips(clips := load_corpus(other), seed)
        if len({c.sentence_id for c in clips if split[c.id] == "test"}) == 1:
            break
    proc = cli("evaluate", str(trained_run), "--corpus", str(other), "--report",
               str(tmp_path / "rep1"), "--json", check=True)  # fmt: skip
    metrics = json.loads(proc.stdout)
    assert metrics["sentences"] == 1
    one = "every file scored reads one sentence: the accuracy is of that sentence"
    assert any(w.startswith(one) for w in metrics["warnings"]), metrics["warnings"]
    assert one in (tmp_path / "rep1" / "report.md").read_text()


@pytest.mark.slow
def test_an_evaluation_stopped_under_conditions_leaves_no_report_folder(
    trained_run: Path, small_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C while the conditions' copies are scored left an empty report folder (only the
    first pass cleaned up after itself)."""
    import whichvoice.evaluate as ev

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ev, "condition_accuracy", stopped)
    report = tmp_path / "report"
    with pytest.raises(KeyboardInterrupt):
        ev.evaluate(trained_run, corpus=small_corpus, report_dir=report, conditions=["clean"],
                    progress=False)  # fmt: skip
    assert not report.exists()


@pytest.mark.slow
def test_a_report_never_replaces_another_evaluation_or_a_users_file(
    cli, trained_run: Path, small_corpus: Path, tmp_path: Path
) -> None:
    """Two labels CSVs of one name in two folders wrote one default report folder, the second
    replacing the first; --report replaced a report.md of the user's own (review)."""
    clips = read_manifest(small_corpus / "manifest.jsonl")
    for folder, some in (("a", clips[:2]), ("b", clips[2:4])):
        (tmp_path / folder).mkdir()
        rows = "".join(f"{small_corpus / c.path},{c.voice}\n" for c in some)
        (tmp_path / folder / "rel.csv").write_text("path,voice\n" + rows)
    first = cli("evaluate", str(trained_run), "--labels", str(tmp_path / "a" / "rel.csv"))
    beside = trained_run.parent / f"{trained_run.name}-eval-rel"
    assert first.returncode == 0 and f"report: {beside / 'report.md'}" in first.stdout
    second = cli("evaluate", str(trained_run), "--labels", str(tmp_path / "b" / "rel.csv"))
    assert f"report: {beside}-2/report.md" in second.stdout, second.stdout
    assert str(tmp_path / "a") in json.loads((beside / "evaluation.json").read_text())["data"]
    again = cli("evaluate", str(trained_run), "--labels", str(tmp_path / "a" / "rel.csv"))
    assert f"report: {beside / 'report.md'}" in again.stdout  # its own folder, replaced
    # the same CSV typed as a relative path is the same data: its folder, not a -3
    typed = cli("evaluate", str(trained_run), "--labels", "./rel.csv", cwd=tmp_path / "a")
    assert f"report: {beside / 'report.md'}" in typed.stdout, typed.stdout + typed.stderr
    told = cli("evaluate", str(trained_run), "--labels", str(tmp_path / "b" / "rel.csv"),
               "--report", str(beside))  # fmt: skip
    assert told.returncode == 2 and "holds the evaluation of" in told.stderr, told.stderr
    # another run's evaluation of the same data is not replaced either (review)
    other = tmp_path / "other-run"
    shutil.copytree(trained_run, other)
    told = cli("evaluate", str(other), "--labels", str(tmp_path / "a" / "rel.csv"),
               "--report", str(beside))  # fmt: skip
    assert told.returncode == 2 and "another run" in told.stderr, told.stderr
    assert json.loads((beside / "evaluation.json").read_text())["run"] == str(trained_run)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "report.md").write_text("my notes")
    told = cli("evaluate", str(trained_run), "--labels", str(tmp_path / "a" / "rel.csv"),
               "--report", str(tmp_path / "mine"))  # fmt: skip
    assert told.returncode == 2 and "that evaluate did not write" in told.stderr
    assert (tmp_path / "mine" / "report.md").read_text() == "my notes"


@pytest.mark.slow  # a CLI process loading a run
def test_a_corpus_with_voices_the_model_does_not_know_is_refused_as_a_labels_csv_is(
    cli, trained_run: Path, small_corpus: Path, tmp_path: Path
) -> None:
    """A corpus of other voices scored 0 % (and a mixed one a lower accuracy) without a word,
    where a labels CSV naming the same voices is refused (review)."""

    corpus = tmp_path / "other"
    shutil.copytree(small_corpus, corpus)
    lines = (corpus / "manifest.jsonl").read_text().splitlines()
    first = json.loads(lines[0])["voice"]
    renamed = [
        json.dumps({**row, "voice": "pico:en-US"}) if row["voice"] == first else json.dumps(row)
        for row in map(json.loads, lines)
    ]
    (corpus / "manifest.jsonl").write_text("\n".join(renamed) + "\n")
    r = cli("evaluate", str(trained_run), "--corpus", str(corpus), "--report", str(tmp_path / "r"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "does not know 1 voice of the test split (pico:en-US); it knows" in r.stderr
    assert not (tmp_path / "r").exists()
    # the same recordings under other sentence ids (imported again another way): its test
    # split holds the run's training clips, which no sentence check sees; their bytes do
    twin = tmp_path / "twin"
    shutil.copytree(small_corpus, twin)
    rows = [json.loads(x) for x in (twin / "manifest.jsonl").read_text().splitlines()]
    (twin / "manifest.jsonl").write_text(
        "".join(json.dumps({**r, "sentence_id": "rec" + r["id"]}) + "\n" for r in rows)
    )
    r = cli("evaluate", str(trained_run), "--corpus", str(twin), "--report",
            str(tmp_path / "t"), "--json")  # fmt: skip
    assert r.returncode == 0 and json.loads(r.stdout).get("trained_files", 0) > 0, r.stderr
    assert "trained_sentence_files" not in json.loads(r.stdout)


def test_the_runs_own_corpus_keeps_its_splits_when_clips_are_added(
    trained_run: Path, small_corpus: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Clips added to the corpus after training re-split it: `evaluate RUN` then scored
    trained sentences as its test split (review). The run's own corpus keeps the splits it
    was trained with (its prepared index); the added clips are in none, with a warning."""
    import dataclasses

    from whichvoice.dataset import split_clips
    from whichvoice.evaluate import held_out_split
    from whichvoice.runtime import load_model

    model = load_model(trained_run, openset=False)
    corpus, data = tmp_path / "corpus", tmp_path / "prepared"
    corpus.mkdir()
    data.mkdir()
    manifest = (small_corpus / "manifest.jsonl").read_text()
    (corpus / "manifest.jsonl").write_text(manifest)
    prepared = Path(model.config["data"])
    shutil.copy(prepared / "index.jsonl", data / "index.jsonl")
    meta = json.loads((prepared / "dataset.json").read_text())
    (data / "dataset.json").write_text(json.dumps({**meta, "corpus": str(corpus)}))
    model.config = {**model.config, "data": str(data)}
    before = held_out_split(model, corpus)
    added = [
        json.dumps({**dataclasses.asdict(c), "id": f"new{i}", "sentence_id": f"snew{i // 4}"})
        for i, c in enumerate(read_manifest(small_corpus / "manifest.jsonl")[:40])
    ]
    (corpus / "manifest.jsonl").write_text(manifest + "\n".join(added) + "\n")
    with caplog.at_level("WARNING"):
        after = held_out_split(model, corpus)
    assert after == before
    assert "40 clips added since the run was trained are in none of its splits" in caplog.text
    # split afresh, the grown corpus would have put other sentences in the test split
    prep = model.config["prepare"]
    grown = read_manifest(corpus / "manifest.jsonl")
    afresh = split_clips(grown, prep["seed"], prep["val_fraction"], prep["test_fraction"])
    assert {c.path for c in grown if afresh[c.id] == "test"} != {str(f.path.relative_to(corpus))
                                                                 for f in before}  # fmt: skip


def test_a_report_of_the_bundled_classifier_goes_to_the_current_folder(
    tmp_path: Path, monkeypatch
) -> None:
    """Without --report, evaluating the bundled classifier by its path wrote into the
    installed package's folder (site-packages; a review)."""
    from whichvoice.evaluate import default_report_dir
    from whichvoice.runtime import bundled_classifier

    monkeypatch.chdir(tmp_path)
    assert default_report_dir(bundled_classifier(), None, "human.csv") == (
        tmp_path / "classifier-eval-human"
    )
    assert default_report_dir(tmp_path / "runs" / "r", None, "human.csv") == (
        tmp_path / "runs" / "r-eval-human"
    )


def test_the_metrics_of_known_answers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """evaluate's figures on answers chosen by hand (a stub model): each voice once in the
    list and the matrix, windows counted right against the truth (not the answer), the
    confusion picture's counts in their cells (a test-suite review: every voice listed twice,
    window accuracy against the answer, counts drawn in the wrong cells all passed)."""
    import matplotlib.axes
    import numpy as np

    import whichvoice.evaluate as ev
    from whichvoice.runtime.model import Prediction

    answers = {  # path: (answer, its windows' answers)
        "a1": ("a", ["a", "a"]), "a2": ("b", ["b", "a"]), "b1": ("b", ["b", "b"]),
        "c1": ("a", ["a", "c"]), "d1": ("a", ["a", "a"]),
    }  # fmt: skip

    class Stub:
        def __init__(self) -> None:
            self.labels = ["a", "b", "c"]

        def identify_many(self, paths: list) -> list:
            return [
                Prediction(
                    p,
                    answers[p][0],
                    0.9,
                    [(answers[p][0], 0.9)],
                    {},
                    2,
                    window_voices=answers[p][1],
                )
                for p in paths
            ]

    monkeypatch.setattr(ev, "trained_files", lambda *a, **k: 0)
    files = [ev.LabelledFile(p, p[0]) for p in answers]
    m = ev._measure(Stub(), tmp_path, files, None, "x", "test", None, False)
    assert m["voices"] == ["a", "b", "c", "d"] and len(m["confusion"]) == 4
    assert m["file_accuracy"] == pytest.approx(2 / 5)
    # windows right against the truth: a1 2, a2 1, b1 2, c1 1, d1 0
    assert m["windows"] == 10 and m["window_accuracy"] == pytest.approx(6 / 10)
    assert m["confusion"][2] == [1, 0, 0, 0] and m["confusion"][0] == [1, 1, 0, 0]
    drawn: list[tuple] = []
    monkeypatch.setattr(
        matplotlib.axes.Axes, "text", lambda self, x, y, s, **k: drawn.append((x, y, s))
    )
    ev.plot_confusion(np.asarray(m["confusion"]), m["voices"], tmp_path / "c.png")
    # column x = predicted, row y = true: c read as a is at (0, 2)
    assert (0, 2, "1") in drawn and (1, 0, "1") in drawn and (2, 0, "1") not in drawn

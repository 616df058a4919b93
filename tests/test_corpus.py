import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import sine
from whichvoice.audio import read_audio
from whichvoice.corpus import (
    MANIFEST,
    SynthConfig,
    plan,
    read_manifest,
    speak,
    synthesize_corpus,
)
from whichvoice.sentences import load_sentences, parse_sentences
from whichvoice.voices import resolve_voices
from whichvoice.voices.base import Speech

FIELDS = {
    "id",
    "path",
    "voice",
    "engine",
    "sentence_id",
    "text",
    "sample_rate",
    "duration_s",
    "sha256",
}


def check_corpus(out: Path, *, temps: bool = False) -> list[dict]:
    """Every manifest line is complete and describes its file; returns the lines. No temporary
    file is left, unless ``temps`` (a run killed with SIGKILL in the middle of writing one: the
    next run removes it)."""
    rows = [json.loads(line) for line in (out / MANIFEST).read_text().splitlines()]
    for row in rows:
        assert set(row) == FIELDS
        data = (out / row["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == row["sha256"]
        wave, rate = read_audio(data)
        assert rate == row["sample_rate"]
        assert abs(wave.shape[0] / rate - row["duration_s"]) < 1e-3
        words = len(row["text"].split())
        assert 0.12 * words < row["duration_s"] < 1.2 * words + 1.0, row
        assert float(abs(wave).max()) > 0.05
    assert temps or not list(out.rglob("*.tmp"))
    return rows


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["mp3", "wav"])
def test_default8_every_voice_every_sentence_then_no_new_work(
    tmp_path: Path, sentences_file: Path, fmt: str
) -> None:
    sentences = load_sentences(sentences_file).sentences
    cfg = SynthConfig(voices=("default8",), assign="all", format=fmt, workers=2)
    summary = synthesize_corpus(tmp_path, sentences, cfg, progress=False)
    assert (summary.made, summary.skipped, summary.failed) == (24, 0, [])
    rows = check_corpus(tmp_path)
    assert len(rows) == 24
    assert {r["voice"] for r in rows} == {v.id for v in resolve_voices("default8")}
    assert all(r["path"].endswith("." + fmt) for r in rows)
    assert {r["engine"] for r in rows} == {"flite", "festival", "espeak-ng"}
    assert set(summary.per_engine) == {"flite", "festival", "espeak-ng"}

    mtimes = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.*") if "audio" in p.parts}
    again = synthesize_corpus(tmp_path, sentences, cfg, progress=False)
    assert (again.made, again.skipped, again.failed) == (0, 24, [])
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes


def test_random_assignment_is_seeded_and_stable_under_growth() -> None:
    voices = resolve_voices("default8")
    sentences = load_sentences(200).sentences
    a = plan(sentences, voices, "random", 7, "mp3")
    assert len(a) == 200
    assert a == plan(sentences, voices, "random", 7, "mp3")
    assert a != plan(sentences, voices, "random", 8, "mp3")
    assert a[:100] == plan(sentences[:100], voices, "random", 7, "mp3")
    assert len({j.voice.id for j in a}) == 8
    assert len(plan(sentences[:3], voices, "all", 0, "wav")) == 24


@pytest.mark.slow  # synthesis or training
def test_a_damaged_clip_is_made_again(tmp_path: Path) -> None:
    sentences = parse_sentences("A short test sentence.\nAnother short one here.").sentences
    cfg = SynthConfig(voices=("flite:slt",), assign="all", workers=1)
    synthesize_corpus(tmp_path, sentences, cfg, progress=False)
    row = json.loads((tmp_path / MANIFEST).read_text().splitlines()[0])
    (tmp_path / row["path"]).write_bytes(b"garbage")
    summary = synthesize_corpus(tmp_path, sentences, cfg, progress=False)
    assert (summary.made, summary.skipped) == (1, 1)
    check_corpus(tmp_path)


@pytest.mark.slow  # synthesis or training
def test_a_failing_clip_is_retried_reported_and_not_fatal(tmp_path: Path) -> None:
    # flite speaks Chinese as near-silence: a real engine failure ("..." was one until lines
    # with nothing to speak became blank)
    sentences = parse_sentences("A good sentence to speak.\n你好世界\n").sentences
    cfg = SynthConfig(voices=("flite:slt",), assign="all", workers=1)
    summary = synthesize_corpus(tmp_path, sentences, cfg, progress=False)
    assert summary.made == 1
    assert len(summary.failed) == 1
    assert "silent" in summary.failed[0].reason or "short" in summary.failed[0].reason
    failures = [json.loads(x) for x in (tmp_path / "failures.jsonl").read_text().splitlines()]
    assert failures[0]["text"] == "你好世界"
    assert len(check_corpus(tmp_path)) == 1


def test_a_full_disk_stops_the_run_at_once_and_keeps_what_was_made(
    tmp_path: Path, monkeypatch
) -> None:
    """A full disk was each clip's own failure: every later clip was tried (three times)
    and failed alike, a line each (review). It stops the run in one error, exit 1."""
    import errno

    from whichvoice import corpus
    from whichvoice.errors import OutputLostError

    written = []
    real = corpus.write_atomic

    def filling(path, data, **kw):  # room for two clips (and the manifest, written apart)
        if Path(path).suffix == ".mp3":
            if len(written) >= 2:
                raise OSError(errno.ENOSPC, "No space left on device")
            written.append(path)
        real(path, data, **kw)

    monkeypatch.setattr(corpus, "write_atomic", filling)
    sentences = parse_sentences("One two three.\nFour five six.\nSeven eight.\nNine ten.").sentences
    cfg = SynthConfig(voices=("flite:slt",), assign="all", workers=1)
    with pytest.raises(OutputLostError, match=r"cannot write the corpus \(No space left") as e:
        synthesize_corpus(tmp_path, sentences, cfg, progress=False)
    assert e.value.exit_status == 1 and "run the same command again" in str(e.value)
    assert len(written) == 2 and len(check_corpus(tmp_path)) == 2  # what was made is kept
    assert not (tmp_path / "failures.jsonl").exists()  # no clip's own failure
    monkeypatch.setattr(corpus, "write_atomic", real)
    again = synthesize_corpus(tmp_path, sentences, cfg, progress=False)
    assert (again.made, again.skipped) == (2, 2) and len(check_corpus(tmp_path)) == 4


def test_a_corpus_resumes_only_with_its_own_settings_and_one_run_at_a_time(
    tmp_path: Path,
) -> None:
    """Another seed or voice set under --assign random drew other voices for sentences
    already read (14 clips for 10 sentences), another format left the first files beside
    the new ones, and two runs at once lost each other's manifest rows (review)."""
    from whichvoice.corpus import LOCK, SynthConfigError
    from whichvoice.errors import OutputError
    from whichvoice.files import held_alone

    sentences = parse_sentences("One two three.\nFour five six.").sentences
    cfg = SynthConfig(voices=("flite:slt", "flite:awb"), workers=1)  # assign random
    first = synthesize_corpus(tmp_path, sentences, cfg, progress=False)
    assert first.made == 2 and json.loads((tmp_path / "synth.json").read_text())["seed"] == 0
    for changed, said in (
        ({"seed": 1}, "--seed 0, not 1"),
        ({"format": "wav"}, "--format mp3, not wav"),
        ({"voices": ("flite:slt", "flite:awb", "flite:rms")}, "--voices flite:awb,flite:slt, not"),
        ({"assign": "all"}, "--assign random, not all"),
    ):
        other = SynthConfig(**{**{"voices": cfg.voices, "workers": 1}, **changed})
        with pytest.raises(SynthConfigError, match=f"made with other settings .*{said}"):
            synthesize_corpus(tmp_path, sentences, other, progress=False)
    assert len(check_corpus(tmp_path)) == 2 and len(list(tmp_path.rglob("*.mp3"))) == 2
    again = synthesize_corpus(tmp_path, sentences, cfg, progress=False)  # the same: resumes
    assert (again.made, again.skipped) == (0, 2)
    # each run says how it made clips (a review: neither the code nor the engine's version
    # was recorded): the two that ran, flite's package version among them
    made = json.loads((tmp_path / "synth.json").read_text())["made"]
    # the first run made 2 clips; the resume made none and is not recorded (a review)
    assert len(made) == 1 and made[0]["commit"] and made[0]["whichvoice"]
    assert made[0]["clips"] == 2
    assert set(made[-1]["engines"]) == {"flite"} and "flite" in made[-1]["engines"]["flite"]
    if shutil.which("dpkg-query"):  # Debian, where make setup installs flite
        assert made[-1]["engines"]["flite"]["flite"]
    with held_alone(tmp_path / LOCK, "a test"), pytest.raises(OutputError, match="another"):
        synthesize_corpus(tmp_path, sentences, cfg, progress=False)
    assert not (tmp_path / LOCK).exists()


@pytest.mark.slow  # synthesis or training
def test_a_cut_manifest_line_is_dropped_on_resume(tmp_path: Path) -> None:
    sentences = parse_sentences("A short test sentence.\nAnother short one here.").sentences
    cfg = SynthConfig(voices=("espeak-ng:en-us+f3",), assign="all", workers=1)
    synthesize_corpus(tmp_path, sentences, cfg, progress=False)
    manifest = tmp_path / MANIFEST
    manifest.write_text(manifest.read_text()[:-40])  # as if killed mid-line
    assert len(read_manifest(manifest)) == 1
    summary = synthesize_corpus(tmp_path, sentences, cfg, progress=False)
    assert (summary.made, summary.skipped) == (1, 1)
    assert len(check_corpus(tmp_path)) == 2


def _start(out: Path, n: int) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "whichvoice",
        "synth",
        str(out),
        "--voices",
        "default8",
        "--sentences",
        str(n),
        "--assign",
        "all",
        "--quiet",
    ]
    # a run started in the background by a shell (nohup ... &) inherits SIGINT ignored, and
    # Python then installs no Ctrl-C handler: give the child the default disposition back
    return subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _wait_for_lines(out: Path, n: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        manifest = out / MANIFEST
        if manifest.exists() and manifest.read_text().count("\n") >= n:
            return
        time.sleep(0.05)
    raise AssertionError("the run never got going")


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM])
def test_killed_run_leaves_a_clean_manifest_and_resumes(
    tmp_path: Path, sig: signal.Signals
) -> None:
    n = 12
    proc = _start(tmp_path, n)
    _wait_for_lines(tmp_path, 10, proc)
    os.kill(proc.pid, sig)
    _, err = proc.communicate(timeout=60)
    if sig in (signal.SIGINT, signal.SIGTERM):  # SIGTERM (kill, timeout, a scheduler) as Ctrl-C
        word, status = ("interrupted", 130) if sig == signal.SIGINT else ("terminated", 143)
        assert proc.returncode == status, (proc.returncode, err)
        assert "Traceback" not in err
        assert err.strip().startswith(f"{word}: ") and "resume" in err, err
    else:
        assert proc.returncode == -signal.SIGKILL
    killed = sig == signal.SIGKILL  # no clean-up possible: the resumed run does it
    partial = len(check_corpus(tmp_path, temps=killed)) if (tmp_path / MANIFEST).exists() else 0
    assert partial >= 10

    proc = _start(tmp_path, n)
    _out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    rows = check_corpus(tmp_path)
    assert len(rows) == n * 8
    assert len({r["id"] for r in rows}) == n * 8


def test_sample_assignment_gives_each_voice_its_own_sentences() -> None:
    voices = resolve_voices("flite:slt,flite:rms,espeak-ng:en-us+f3")
    sentences = load_sentences(100).sentences
    jobs = plan(sentences, voices, "sample", 0, "mp3", per_voice=7)
    assert len(jobs) == 21 and len({j.clip_id for j in jobs}) == 21
    by_voice = {v.id: {j.sentence.id for j in jobs if j.voice == v} for v in voices}
    assert all(len(s) == 7 for s in by_voice.values())
    assert len(set.union(*by_voice.values())) > 7  # different draws per voice
    more = plan(sentences, [*voices, *resolve_voices("flite:awb")], "sample", 0, "mp3", per_voice=7)
    assert more[:21] == jobs  # adding a voice keeps the others' draws


class _Engine:
    """An engine stand-in: records what it is asked to say, then raises ``error`` or says a
    tone."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error, self.texts = error, []

    def synthesize(self, voice, text: str) -> Speech:
        self.texts.append(text)
        if self.error is not None:
            raise self.error
        return Speech(sine(seconds=0.5), 16_000)


class _Sessions:
    def __init__(self, engine: _Engine) -> None:
        self.engine = engine

    def get(self, name: str) -> _Engine:
        return self.engine

    @contextlib.contextmanager
    def using(self, name: str):
        yield self.engine

    def engine_label(self, voice) -> str:
        return voice.engine

    def stop(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_an_unexpected_engine_error_is_a_readable_reason(tmp_path: Path, monkeypatch) -> None:
    engine = _Engine(KeyError())
    monkeypatch.setattr("whichvoice.corpus.SessionPool", lambda *a: _Sessions(engine))
    sentences = parse_sentences("Say this.").sentences
    cfg = SynthConfig(voices=("flite:slt",), assign="all", format="wav", workers=1)
    summary = synthesize_corpus(tmp_path, sentences, cfg, progress=False)
    reason = "flite:slt on 'Say this.': the engine failed unexpectedly (KeyError: no message)"
    assert [f.reason for f in summary.failed] == [reason]
    assert json.loads((tmp_path / "failures.jsonl").read_text())["reason"] == reason
    assert engine.texts == ["Say this."] * 2  # tried twice

    engine.error = None
    again = synthesize_corpus(tmp_path, sentences, cfg, progress=False)
    assert (again.made, again.failed) == (1, [])
    voice = resolve_voices("flite:slt")[0]
    speak(_Sessions(engine), voice, "a\x00b\x1bc", "wav")  # a NUL cannot reach a command line
    assert engine.texts[-1] == "a b c"


def test_a_sentence_file_that_is_not_text_is_refused_before_anything(cli, tmp_path: Path) -> None:
    mp3 = tmp_path / "some.mp3"
    mp3.write_bytes(b"ID3\x04\x00\x00\x00\x00\x00\x00\xff\xfb\x90\x64" + bytes(400))
    proc = cli("synth", str(tmp_path / "c"), "--voices", "flite:slt", "--sentences", str(mp3))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: {mp3}: not a text file (NUL bytes); --sentences takes UTF-8 or Latin-1 text"
    ]
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["--sentences", "3"], "--sentences"),
        (["--sentences", "100"], "--sentences"),  # the default, given: still refused
        (["--assign", "sample", "--per-voice", "2"], "--assign, --per-voice"),
    ],
)
def test_text_with_sentences_is_refused(cli, tmp_path: Path, extra: list, named: str) -> None:
    for out in (tmp_path / "c", tmp_path / "one.wav"):
        proc = cli("synth", str(out), "--voices", "flite:slt", "--text", "Hi there.", *extra)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        (line,) = proc.stderr.strip().splitlines()
        assert "--text takes the place of --sentences" in line and f"(leave out {named})" in line
        assert not out.exists()


@pytest.mark.slow  # CLI processes, synthesis or imports
def test_text_options_that_would_be_ignored_are_refused(cli, tmp_path: Path) -> None:
    """--format wav into a.mp3 wrote mp3, --max-chars held for a folder but not a file and
    named an internal temporary file, an empty --text into a folder said 'one line' (review)."""
    cases = (
        ([str(tmp_path / "a.mp3"), "--text", "Hello", "--format", "wav"],
         "--format wav, but OUT ends in .mp3"),
        ([str(tmp_path / "a.wav"), "--text", "Hello there", "--max-chars", "3"],
         "--text is 11 characters, over --max-chars 3"),
        ([str(tmp_path / "c"), "--text", "Hello there", "--max-chars", "3"],
         "--text is 11 characters, over --max-chars 3"),
        ([str(tmp_path / "c"), "--text", " "], "nothing to say: the text is empty"),
    )  # fmt: skip
    for args, said in cases:
        proc = cli("synth", *args, "--voices", "flite:slt")
        assert proc.returncode == 2 and said in proc.stderr, proc.stderr
        assert "whichvoice-text-" not in proc.stderr and "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow  # CLI processes, synthesis or imports
def test_sentences_skipped_for_their_length_are_a_warning_even_quiet(cli, tmp_path: Path) -> None:
    """--quiet dropped the line saying a sentence was too long to speak: it was left out
    without a word, exit 0 (review)."""
    text = tmp_path / "s.txt"
    text.write_text("A short one.\n" + "A sentence far too long to be spoken here. " * 3 + "\n")
    proc = cli("synth", str(tmp_path / "c"), "--voices", "flite:slt", "--sentences", str(text),
               "--max-chars", "40", "--quiet")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "warning: 1 sentence over 40 characters skipped" in proc.stderr


def test_per_voice_without_assign_sample_is_refused(cli, tmp_path: Path) -> None:
    proc = cli("synth", str(tmp_path / "c"), "--voices", "flite:slt", "--per-voice", "3")
    assert proc.returncode == 2 and "--per-voice goes with --assign sample" in proc.stderr
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize(
    ("name", "text", "says"),
    [
        ("x.flac", ["--text", "Hi there."], "one phrase goes into a .mp3 or .wav file"),
        ("x.mp3", ["--sentences", "1"], "--text PHRASE speaks one into it"),
    ],
)
def test_a_corpus_named_like_an_audio_file_is_refused(
    cli, tmp_path: Path, name: str, text: list, says: str
) -> None:
    proc = cli("synth", str(tmp_path / name), "--voices", "flite:slt", *text)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert says in line and not (tmp_path / name).exists()


@pytest.mark.slow  # synthesis or training
def test_synth_exits_1_when_clips_failed_and_resumes(cli, tmp_path: Path) -> None:
    # flite speaks Chinese as near-silence: a real engine failure, next to a clip that works
    sentences = tmp_path / "mixed.txt"
    sentences.write_text("A good sentence to speak.\n你好世界\n", encoding="utf-8")
    out = tmp_path / "c"
    args = ("synth", str(out), "--voices", "flite:slt", "--sentences", str(sentences))
    proc = cli(*args)
    assert proc.returncode == 1, proc.stderr
    assert "1 clip made, 0 skipped (already done), 1 failed" in proc.stdout
    assert proc.stderr.count("silent") == 1  # warned as it happened, not again in the summary
    assert proc.stderr.strip().endswith(f"the failures are above and in {out / 'failures.jsonl'}")
    assert len(check_corpus(out)) == 1  # what could be made is kept
    quiet = cli(*args, "--quiet")  # resumes: the good clip is not made again
    assert quiet.returncode == 1 and quiet.stdout == ""
    (line,) = quiet.stderr.strip().splitlines()
    assert line.startswith("0 clips made, 1 skipped (already done), 1 failed")
    assert line.endswith(f"the reasons: {out / 'failures.jsonl'}")
    assert len((out / "failures.jsonl").read_text().splitlines()) == 1
    assert len(check_corpus(out)) == 1


def test_synth_settings_a_notebook_may_get_wrong() -> None:
    from whichvoice.errors import WhichvoiceError

    assert SynthConfig(voices="flite:slt").voices == ("flite:slt",)  # one id, not its letters
    for kw, why in (({"assign": "x"}, "assign must be one of"), ({"format": "ogg3"}, "format"),
                    ({"per_voice": 2.5}, "per_voice must be a whole number"),
                    ({"workers": 0}, "workers must be at least 1")):  # fmt: skip
        with pytest.raises(WhichvoiceError, match=why):
            SynthConfig(**kw)


def test_a_manifest_that_is_not_text_is_one_error(tmp_path: Path) -> None:
    """Found by a review: bytes that are not UTF-8 were a traceback in trace-fit and synth."""
    from whichvoice.corpus import read_manifest
    from whichvoice.errors import WhichvoiceError

    (tmp_path / "manifest.jsonl").write_bytes(b"\xff\xfe garbage\n")
    with pytest.raises(WhichvoiceError, match=r"not a manifest \(not UTF-8 text"):
        read_manifest(tmp_path / "manifest.jsonl")


def test_an_engine_that_cannot_run_here_stops_the_run_at_once(tmp_path: Path, monkeypatch) -> None:
    """An engine fault that no clip escapes (its program or data missing) was each clip's own
    failure, tried twice a clip: it stops the run in one error, what was made kept (a
    review), as refused credentials do."""
    from whichvoice.errors import EngineBrokenError

    engine = _Engine(EngineBrokenError("espeak-ng: its data folder was not found"))
    monkeypatch.setattr("whichvoice.corpus.SessionPool", lambda *a: _Sessions(engine))
    sentences = parse_sentences("Say this.\nAnd this.\nAnd that.\n").sentences
    cfg = SynthConfig(voices=("flite:slt",), assign="all", format="wav", workers=1)
    with pytest.raises(EngineBrokenError, match="data folder was not found; the clips made so"):
        synthesize_corpus(tmp_path, sentences, cfg, progress=False)
    assert engine.texts == ["Say this."]  # not tried again, nor the next clips


def test_two_engines_voices_of_one_name_make_two_clips() -> None:
    """flite:slt and rhvoice:slt (both trained on) read the same sentence: two clip ids and
    two files (a review's mutant leaving the engine out of the id lost one clip, and made it
    again on every resume, with every fast test passing)."""
    from whichvoice.corpus import plan
    from whichvoice.sentences import load_sentences
    from whichvoice.voices import resolve_voices

    sentences = load_sentences(3).sentences
    jobs = plan(sentences, resolve_voices("flite:slt,rhvoice:slt"), "all", 0, "mp3")
    assert len(jobs) == 6
    assert len({j.clip_id for j in jobs}) == len({j.path for j in jobs}) == 6

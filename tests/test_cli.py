import itertools
import json
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

from .conftest import SENTENCES


def no_aws(tmp_path: Path) -> dict:
    """An environment with no AWS credentials anywhere."""
    names = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"]
    return {
        **dict.fromkeys(names),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
    }


def test_help_is_instant_and_lists_commands(cli) -> None:
    proc = cli("--help", check=True)
    for command in ("voices", "synth", "demo"):
        assert command in proc.stdout


@pytest.mark.slow  # CLI processes
def test_a_reader_that_goes_away_is_exit_141_not_a_failed_input() -> None:
    """`| head` under `set -o pipefail`: click's own main turned the broken pipe into exit 1,
    the status of a failed input; the shell's status of a command SIGPIPE stopped is 141."""
    import sys

    proc = subprocess.run(
        ["bash", "-c", f"set -o pipefail; {sys.executable} -m whichvoice voices --json | head -1"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 141, proc.stderr
    assert json.loads(proc.stdout)["id"] and proc.stderr == ""
    # --help prints while click makes its context: the same status (a closed pipe at once)
    closed = subprocess.run(
        ["bash", "-c", f"set -o pipefail; {sys.executable} -m whichvoice --help | true"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert closed.returncode in (0, 141) and "Traceback" not in closed.stderr, closed.stderr


def test_voices_json_lists_every_voice_with_availability(cli) -> None:
    proc = cli("voices", "--json", check=True)
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    by_id = {r["id"]: r for r in rows}
    assert {"flite:slt", "festival:ked_diphone", "espeak-ng:en-us+f3", "polly:Joanna"} <= set(by_id)
    for r in rows:
        assert {
            "id",
            "engine",
            "name",
            "gender",
            "accent",
            "sample_rate",
            "available",
            "reason",
        } <= set(r)
        assert r["available"] == (r["reason"] is None)
    assert by_id["flite:slt"]["available"]
    assert by_id["flite:kal"]["sample_rate"] == 8000


def test_voices_without_credentials_say_why_once(cli, tmp_path: Path) -> None:
    env = no_aws(tmp_path)
    proc = cli("voices", "--engine", "polly", env=env, check=True)
    # the engine's voices, missing for one reason, are one line that says how to list them
    [line] = [x for x in proc.stdout.splitlines() if "no AWS credentials" in x]
    assert line.startswith("polly: 28 voices") and "--engine polly --json" in line
    rows = [
        json.loads(x)
        for x in cli("voices", "--engine", "polly", "--json", env=env).stdout.split("\n")
        if x
    ]
    assert len(rows) == 28 and all("no AWS credentials" in r["reason"] for r in rows)
    assert "28 voices, 0 available now" in proc.stderr


def _a_gallery(path: Path) -> Path:
    """A gallery file holding one voice (of a made-up encoder: commands that only list or
    export it never compare an embedding)."""
    import numpy as np

    from whichvoice.gallery import Gallery

    with Gallery(path, "some-encoder") as g:
        g.enroll("ann", np.ones((1, 4), np.float32) / 2, 3.0)
    return path


@pytest.mark.parametrize(
    "args", [["--help"], ["voices", "--available"], ["gallery", "list"], ["gallery", "export", "-"]]
)
def test_commands_that_need_no_model_do_not_import_torch(args: list[str], tmp_path: Path) -> None:
    """Start-up stays quick: torch (~2 s to import) is loaded only by commands that run a
    model."""
    import subprocess
    import sys

    if args[-1] == "-":
        args = [*args[:-1], str(tmp_path / "g.json")]
    if args[0] == "gallery":  # a gallery named must exist (a typo is an error)
        _a_gallery(tmp_path / "g.sqlite")
    code = (
        "import sys; from whichvoice.cli import main; sys.argv = ['whichvoice', *sys.argv[1:]]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, *args, *(["--gallery", str(tmp_path / "g.sqlite")]
                                            if args[0] == "gallery" else [])],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr


def test_a_claim_of_a_name_not_enrolled_is_refused_before_a_model_loads(tmp_path: Path) -> None:
    """`verify nobody clip.wav` loaded both encoders (4 s, 400 MB) before it said that nobody
    is not enrolled (a review of scripted use)."""
    import subprocess
    import sys

    code = (
        "import sys; from whichvoice.cli import main; sys.argv = ['whichvoice', *sys.argv[1:]]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert e.code == 2, e.code\n"
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    gallery = _a_gallery(tmp_path / "g.sqlite")
    proc = subprocess.run(
        [sys.executable, "-c", code, "verify", "nobody", str(tmp_path / "clip.wav"),
         "--gallery", str(gallery)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip().endswith(
        "'nobody' is not enrolled in " + str(gallery) + " (enrolled: ann)"
    )


@pytest.mark.parametrize(
    "args",
    [
        ["serve", "--max-upload-mb", "nan", "--port", "0", "--no-classifier"],
        ["serve", "--max-duration", "inf", "--port", "0", "--no-classifier"],
        ["serve", "--batch-wait-ms", "nan", "--port", "0", "--no-classifier"],
        ["train", "corpus", "--out", "{out}", "--lr", "nan"],
        ["train", "corpus", "--out", "{out}", "--window", "inf"],
        ["calibrate", "--trials", "t.txt", "--target-far", "nan"],
    ],
)
def test_a_number_that_is_not_finite_is_refused_at_its_option(
    cli, tmp_path: Path, args: list[str]
) -> None:
    out = tmp_path / "run"
    proc = cli(*[a.format(out=out) for a in args])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert "is not a finite number" in line and not out.exists()


@pytest.mark.slow
def test_gallery_list_says_when_there_is_nothing_to_list(cli, tmp_path: Path) -> None:
    # the default gallery, not made yet: nothing to list, said
    proc = cli("gallery", "list")
    assert proc.returncode == 0 and proc.stdout == "" and "no gallery there" in proc.stderr
    # a gallery named that is not there: a typo, one line and exit 2, as every command that
    # reads a gallery says it (it listed nothing and exited 0: a CLI review)
    proc = cli("gallery", "list", "--gallery", str(tmp_path / "typo.sqlite"))
    assert proc.returncode == 2 and proc.stdout == ""
    assert "typo.sqlite: no such file" in proc.stderr and not (tmp_path / "typo.sqlite").exists()
    # so is $WHICHVOICE_GALLERY's, named as such; and enroll (and import) make either
    listed = cli("gallery", "list", env={"WHICHVOICE_GALLERY": str(tmp_path / "env.sqlite")})
    assert listed.returncode == 2 and "$WHICHVOICE_GALLERY " in listed.stderr, listed.stderr
    made = cli("gallery", "import", str(tmp_path / "none.json"), "--gallery",
               str(tmp_path / "new.sqlite"))  # fmt: skip
    assert "no such file (a gallery" not in made.stderr and "none.json" in made.stderr


def test_voices_table_for_a_set(cli) -> None:
    proc = cli("voices", "--set", "default8", check=True)
    assert len(proc.stdout.strip().splitlines()) == 9


@pytest.mark.slow
def test_synth_end_to_end_with_random_assignment(cli, tmp_path: Path, sentences_file: Path) -> None:
    out = tmp_path / "corpus"
    proc = cli(
        "synth",
        str(out),
        "--voices",
        "flite:slt,espeak-ng:en-us+f3",
        "--sentences",
        str(sentences_file),
        "--seed",
        "3",
        check=True,
    )
    assert "3 clips made" in proc.stdout
    rows = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    assert sorted(r["text"] for r in rows) == sorted(SENTENCES)
    again = cli(
        "synth",
        str(out),
        "--voices",
        "flite:slt,espeak-ng:en-us+f3",
        "--sentences",
        str(sentences_file),
        "--seed",
        "3",
        check=True,
    )
    assert "0 clips made, 3 skipped" in again.stdout
    quiet = cli(
        "synth",
        str(out),
        "--voices",
        "flite:slt,espeak-ng:en-us+f3",
        "--sentences",
        str(sentences_file),
        "--seed",
        "3",
        "--quiet",
        check=True,
    )
    assert quiet.stdout == "" and quiet.stderr == ""


def _one_line_error(proc, *needles: str) -> None:
    assert proc.returncode == 2, proc
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0]


def test_unknown_voice(cli, tmp_path: Path) -> None:
    proc = cli(
        "synth",
        str(tmp_path / "c"),
        "--voices",
        "flite:slt,festival:ked_diphon",
        "--sentences",
        "2",
    )
    _one_line_error(proc, "festival:ked_diphon", "did you mean festival:ked_diphone")


def test_unavailable_engine(cli, tmp_path: Path) -> None:
    env = no_aws(tmp_path)
    proc = cli("synth", str(tmp_path / "c"), "--voices", "talk8", "--sentences", "2", env=env)
    _one_line_error(proc, "polly:Ivy", "no AWS credentials")
    proc = cli(
        "synth",
        str(tmp_path / "c"),
        "--voices",
        "flite:slt",
        "--sentences",
        "2",
        env={"PATH": str(tmp_path)},
    )
    _one_line_error(proc, "flite is not installed")


def test_empty_sentence_file(cli, tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("\n   \n")
    proc = cli("synth", str(tmp_path / "c"), "--sentences", str(empty))
    _one_line_error(proc, "empty.txt", "no usable sentence")


def test_unwritable_out(cli, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    proc = cli("synth", str(blocker / "corpus"), "--voices", "flite:slt", "--sentences", "2")
    _one_line_error(proc, "a-file/corpus", "cannot write")


def test_a_path_that_cannot_be_made_is_one_line(cli, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    gallery = ["--gallery", str(_a_gallery(tmp_path / "g.sqlite"))]
    proc = cli("gallery", "export", str(blocker / "e.json"), *gallery)
    _one_line_error(proc, "a-file", "a file is in the way of a folder")


@pytest.mark.slow  # three CLI processes
def test_gallery_export_keeps_an_existing_file_unless_told(cli, tmp_path: Path) -> None:
    gallery = ["--gallery", str(_a_gallery(tmp_path / "g.sqlite"))]
    song = tmp_path / "song.mp3"
    song.write_bytes(b"ID3 a song of the user's")
    _one_line_error(cli("gallery", "export", str(song), *gallery), "song.mp3: exists")
    assert song.read_bytes() == b"ID3 a song of the user's"
    cli("gallery", "export", str(song), "--overwrite", *gallery, check=True)
    assert json.loads(song.read_text())["voices"][0]["name"] == "ann"


@pytest.mark.slow  # several CLI processes: 5 s of the fast subset's minute
def test_a_folder_without_audio_among_inputs_is_one_line(cli, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    clip = tmp_path / "a.wav"
    clip.write_bytes(b"RIFF")
    for command in (["enroll", "x"], ["identify"], ["verify", "x"]):
        proc = cli(*command, str(clip), str(tmp_path / "empty"), "--gallery", str(tmp_path / "g"))
        _one_line_error(proc, "empty: no audio files")
    assert not (tmp_path / "g").exists()


@pytest.mark.slow
def test_a_failed_import_leaves_no_gallery_behind(cli, tmp_path: Path) -> None:
    gallery = tmp_path / "g.sqlite"
    for text in ("{}", "[1, 2]", "null", '"text"'):  # JSON, but no export (a list: a traceback)
        (tmp_path / "not-an-export.json").write_text(text)
        proc = cli("gallery", "import", str(tmp_path / "not-an-export.json"), "--gallery",
                   str(gallery))  # fmt: skip
        _one_line_error(proc, "not a whichvoice gallery export")
        assert not list(tmp_path.glob("g.sqlite*"))
    # the bundled encoder's id over numbers no encoder of it makes (3 is no whole prototype)
    from whichvoice.encoders import load_encoder
    from whichvoice.verification import model_id

    voice = {"name": "odd", "embedding": [0.5, 0.5, 0.5], "clips": 1, "seconds": 3.0,
             "created": 1.0, "updated": 1.0}  # fmt: skip
    export = {"format": "whichvoice-gallery", "model": model_id(load_encoder("bundled")),
              "voices": [voice]}  # fmt: skip
    (tmp_path / "odd.json").write_text(json.dumps(export))
    proc = cli("gallery", "import", str(tmp_path / "odd.json"), "--gallery", str(gallery))
    _one_line_error(proc, "odd: an embedding of size 3; this encoder")
    assert not list(tmp_path.glob("g.sqlite*"))


def test_bad_option_value(cli, tmp_path: Path) -> None:
    proc = cli("synth", str(tmp_path / "c"), "--format", "ogg")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "ogg" in proc.stderr


@pytest.mark.slow  # CLI processes, synthesis or imports
def test_serve_takes_a_run_or_no_classifier_not_both(cli, tmp_path: Path) -> None:
    proc = cli("serve", str(tmp_path), "--no-classifier", "--port", "0")
    assert proc.returncode == 2 and "RUN or --no-classifier, not both" in proc.stderr


SIGTERM_SCRIPT = """
import os, signal, sys
from whichvoice.cli.common import take_sigterm_as_interrupt
take_sigterm_as_interrupt()
mine = signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
pid = os.fork()
if pid == 0:  # a forked worker (dataset's ProcessPoolExecutor): stopped as by default
    os._exit(0 if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL else 3)
_, status = os.waitpid(pid, 0)
print(mine, os.waitstatus_to_exitcode(status))
"""


def test_sigterm_is_taken_as_ctrl_c_by_the_command_alone() -> None:
    """SIGTERM raises in the command's own process; a forked child of it got the handler
    too and raised inside its queue's lock (the other workers, and timeout's command, hung);
    under torchrun a rank waits in native code, where the handler never runs and would only
    swallow the signal (a review)."""
    import subprocess
    import sys

    def run(**env: str) -> str:
        done = subprocess.run([sys.executable, "-c", SIGTERM_SCRIPT], capture_output=True,
                              text=True, timeout=60, env={**os.environ, **env})  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert run() == "True 0"  # the command's handler; its forked child has the default
    assert run(LOCAL_RANK="0", RANK="0") == "False 0"  # torchrun stops its ranks itself


@pytest.mark.slow  # CLI processes, synthesis or imports
def test_a_mistyped_run_is_refused_not_answered_by_the_bundled_model(cli, tmp_path: Path) -> None:
    clip = tmp_path / "a.wav"
    clip.write_bytes(b"RIFF")
    proc = cli("predict", str(tmp_path / "runs" / "mine-typo"), str(clip))
    _one_line_error(proc, "mine-typo: no such run or audio file")
    # an ONNX export is no run: it was one failed input, the clip answered by the bundled model
    onnx = cli("predict", str(tmp_path / "voicenet.onnx"), str(clip))
    _one_line_error(onnx, "an ONNX file is neither a run nor audio")
    missing = cli("predict", str(tmp_path / "gone.mp3"))  # a missing clip stays a failed input
    assert missing.returncode == 1 and "gone.mp3: cannot read" in missing.stdout + missing.stderr


def _as_a_user(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m whichvoice ARGS`` as root without the power to read or write any file
    (``unshare --user``), as a user is; skipped where user namespaces are not allowed."""
    import shutil
    import sys

    if shutil.which("unshare") is None or subprocess.run(["unshare", "--user", "true"]).returncode:
        pytest.skip("no user namespaces here: root reads and writes every file")
    return subprocess.run(
        ["unshare", "--user", sys.executable, "-m", "whichvoice", *args],
        capture_output=True, text=True, timeout=300, cwd=cwd,
    )  # fmt: skip


@pytest.mark.slow  # two CLI processes
def test_an_unreadable_input_is_answered_in_its_line_and_the_others_too(tmp_path: Path) -> None:
    import shutil

    from whichvoice.audio import encode_audio

    from .conftest import voice_clips

    folder = tmp_path / "inputs"
    folder.mkdir(mode=0o755)
    tmp_path.chmod(0o755)
    good = voice_clips(tmp_path / "c", "flite:slt", sentences=1)["flite:slt"][0]
    shutil.copy(good, folder / "good.mp3")
    locked = folder / "locked.wav"
    locked.write_bytes(encode_audio(np.zeros(16000, np.float32), 16000, "wav"))
    locked.chmod(0)
    for command in ("trace", "predict"):
        proc = _as_a_user(command, "locked.wav", "good.mp3", cwd=folder)
        assert proc.returncode == 1, proc.stderr
        lines = proc.stdout.splitlines()
        assert lines[0] == "locked.wav\terror: locked.wav: cannot read (Permission denied)"
        assert lines[1].startswith("good.mp3\t") and "error" not in lines[1], proc.stdout
    # a folder that cannot be listed says so (not "no audio files", nor read as a run)
    shut = folder / "shut"
    shut.mkdir()
    shutil.copy(good, shut / "a.mp3")
    shut.chmod(0)
    proc = _as_a_user("predict", "shut", cwd=folder)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == "error: shut: cannot read the folder (permission denied)"


@pytest.mark.slow  # two CLI processes
def test_a_read_only_gallery_file_says_so(tmp_path: Path) -> None:
    folder = tmp_path / "shared"
    folder.mkdir()
    for f in (tmp_path, folder):
        f.chmod(0o777)
    gallery = _a_gallery(folder / "g.sqlite")
    gallery.chmod(0o444)
    proc = _as_a_user("gallery", "remove", "ann", "--gallery", "g.sqlite", cwd=folder)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "cannot be written here (the file is read-only)" in proc.stderr, proc.stderr
    listed = _as_a_user("gallery", "list", "--gallery", "g.sqlite", cwd=folder)
    assert listed.returncode == 0 and "ann" in listed.stdout, listed.stderr


@pytest.mark.slow  # CLI processes, synthesis or imports
def test_numba_caches_where_the_user_can_write(tmp_path: Path) -> None:
    """An install the user cannot write (made by root): numba could not cache librosa's
    functions beside their source, and every command that loads resemblyzer failed with a
    traceback, "cannot cache function ... no locator available" (review)."""
    import shutil
    import sys

    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root, to run as another user (setpriv)")
    code = ("import os, whichvoice, librosa; print(os.environ.get('NUMBA_CACHE_DIR'));"
            "import librosa.core.notation;"
            "print(os.stat(os.environ['NUMBA_CACHE_DIR']).st_mode & 0o077)")  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["XDG_CACHE_HOME"] = str(tmp_path / "unwritable")  # nor can the user's home be written
    env.pop("WHICHVOICE_CACHE", None)
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    proc = subprocess.run([*nobody, sys.executable, "-c", code], env=env, cwd="/",
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    where = proc.stdout.splitlines()[0]
    assert where.startswith(tempfile.gettempdir()) and "whichvoice-numba-" in where, proc.stdout
    assert proc.stdout.splitlines()[1] == "0"  # private: numba's index is a pickle
    assert not Path(where).exists()  # removed at exit: every command left one in /tmp (review)


@pytest.mark.slow  # CLI processes as another user
def test_a_user_without_a_home_gets_answers_and_one_line(tmp_path: Path) -> None:
    """A container's user id with no passwd entry and no HOME (``docker run --user 12345``,
    OpenShift): every command that loaded a model was a traceback, "Could not determine
    home directory" (environment review). It answers as for a home it cannot write: caches
    for the process alone, an enrollment into the default gallery refused in one line, a
    gallery named elsewhere used; and whichvoice's own data folder is made private (0700, as
    XDG asks: the default gallery holds voice embeddings)."""
    import contextlib
    import pwd
    import shutil
    import sys

    from .conftest import voice_clips

    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root, to run as another user (setpriv)")
    uid = 12345
    with contextlib.suppress(KeyError):
        pwd.getpwuid(uid)
        pytest.skip(f"user id {uid} has a passwd entry here")
    tmp_path.chmod(0o777)
    clips = voice_clips(tmp_path / "c", "flite:slt", sentences=3)["flite:slt"]
    names = [f"a{i}.mp3" for i in range(len(clips))]
    for clip, name in zip(clips, names, strict=True):
        shutil.copy(clip, tmp_path / name)
        (tmp_path / name).chmod(0o644)
    unset = ("HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "WHICHVOICE_CACHE", "WHICHVOICE_GALLERY",
             "NUMBA_CACHE_DIR")  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in unset}
    user = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]

    def run(*args: str) -> subprocess.CompletedProcess:
        command = [*user, sys.executable, "-m", "whichvoice", *args]
        return subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True,
                              timeout=300)  # fmt: skip

    predicted = run("predict", "-q", "a0.mp3")
    assert predicted.returncode == 0 and "Traceback" not in predicted.stderr, predicted.stderr
    assert predicted.stdout.startswith("a0.mp3\t"), predicted.stdout
    refused = run("enroll", "-q", "ann", *names)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and "--gallery" in refused.stderr
    assert not Path("~").exists() and not (tmp_path / "~").exists()  # no folder named "~"
    # XDG_DATA_HOME given: its whichvoice folder is made 0700, the gallery in it
    data = Path(tempfile.mkdtemp())  # not under pytest's folder, which the user cannot enter
    try:
        data.chmod(0o777)
        env["XDG_DATA_HOME"] = str(data)
        enrolled = run("enroll", "-q", "ann", *names)
        assert enrolled.returncode == 0, enrolled.stderr
        own = data / "whichvoice"
        assert (own / "gallery.sqlite").is_file() and own.stat().st_mode & 0o777 == 0o700
    finally:
        shutil.rmtree(data)


def test_a_file_url_is_its_local_path_to_every_path_option() -> None:
    """file:// was read as a folder "file:" (review), then decoded as UTF-8: a Latin-1 name
    became another file; local-only options refused it as a URL."""
    import click

    from whichvoice.cli.common import LOCATION, LocalPath

    latin = Path(os.fsdecode(b"/tmp/caf\xe9.wav"))
    assert LOCATION.convert(latin.as_uri(), None, None) == latin
    assert LOCATION.convert("FILE:///tmp/a%20b.rttm", None, None) == Path("/tmp/a b.rttm")
    assert LocalPath(path_type=Path).convert("file:///tmp/g.sqlite", None, None) == Path(
        "/tmp/g.sqlite"
    )
    for bad, why in (("file://", "no path"), ("file://host/x", "another host")):
        with pytest.raises(click.BadParameter, match=why):
            LOCATION.convert(bad, None, None)
    with pytest.raises(click.BadParameter, match="a local path, not a URL"):
        LocalPath(path_type=Path).convert("s3://b/g.sqlite", None, None)


def test_an_interrupted_command_says_how_to_go_on(tmp_path: Path) -> None:
    """Ctrl-C said only "interrupted" where train and predict --output keep what they made
    (review): the line says how to go on; train before its first epoch ended has no
    checkpoint, where the line said to --resume (review)."""
    from whichvoice.cli import _how_to_go_on

    run = tmp_path / "run"
    assert _how_to_go_on(["train", "c", "--out", str(run)]).endswith("run the same command")
    run.mkdir()
    (run / "config.json").write_text("{}")
    assert "--overwrite" in _how_to_go_on(["train", "c", f"--out={run}"])
    (run / "checkpoint.pt").write_bytes(b"")
    assert "--resume" in _how_to_go_on(["train", "c", "--out", str(run)])
    assert "--resume" in _how_to_go_on(["train", "c", "--out", "s3://b/run"])
    assert "--resume" in _how_to_go_on(["predict", "run", "a.wav", "-o", "p.csv"])
    assert _how_to_go_on(["predict", "run", "a.wav"]) == ""  # nothing kept: nothing to say
    # --resume cannot be given with --overwrite: it goes in its place; the previous output
    # waits aside (a local one: a store's object is replaced when uploaded)
    said = _how_to_go_on(["predict", "run", "a.wav", "-o", "p.csv", "--overwrite"])
    assert "--resume in place of --overwrite" in said and ".NAME.previous" in said
    said = _how_to_go_on(["predict", "run", "a.wav", "-o", "s3://b/p.csv", "--overwrite"])
    assert "in place of --overwrite" in said and ".previous" not in said
    # diarize writes its RTTM when every file is done: one interrupted wrote none
    assert "no RTTM was written" in _how_to_go_on(["diarize", "a.wav", "--rttm", "o.rttm"])
    assert "no RTTM" in _how_to_go_on(["diarize", "a.wav", "--rttm=o.rttm"])
    assert _how_to_go_on(["diarize", "a.wav", "--json"]) == ""
    assert _how_to_go_on(["--quiet"]) == _how_to_go_on(["identify", "a.wav"]) == ""


@pytest.mark.slow  # a dozen commands started
def test_ctrl_c_while_the_command_starts_is_one_line() -> None:
    """Ctrl-C in the half second the command imports its modules printed a 30-line traceback
    of the imports (review); SIGTERM then said nothing."""
    import signal
    import subprocess
    import sys
    import time

    script = Path(sys.executable).parent / "whichvoice"  # the console script, where installed
    commands = [[sys.executable, "-m", "whichvoice"]]
    commands += [[str(script)]] if script.is_file() else []
    for delay, command in itertools.product((0.05, 0.1, 0.15, 0.2, 0.3, 0.4), commands):
        for signum in (signal.SIGINT, signal.SIGTERM):
            proc = subprocess.Popen(
                [*command, "voices", "--available"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
            )
            time.sleep(delay)
            proc.send_signal(signum)
            _, err = proc.communicate(timeout=60)
            if "Traceback" in err and "/whichvoice/" not in err:  # no frame of the package
                # before the package's first line ran (runpy still finding or reading it, on
                # a busy machine: two test processes): Python's own Ctrl-C, which no code of
                # the package can change
                assert signum == signal.SIGINT and err.strip().endswith("KeyboardInterrupt")
                continue
            assert "Traceback" not in err, err
            if proc.returncode == 0:
                continue  # it had ended before the signal
            # killed before Python's own handler was there, or the command's line
            assert proc.returncode in (-signum, 128 + signum), (proc.returncode, err)
            if proc.returncode > 0:
                assert err.strip().splitlines()[-1] in ("interrupted", "terminated"), err


def test_the_startup_handler_is_the_commands_alone(tmp_path: Path) -> None:
    """A process multiprocessing spawns from the command gets the command's sys.argv: it took
    the start-up handler and kept it (no main there gives it back), so a worker stopped by
    SIGTERM printed "terminated" (a review)."""
    import subprocess
    import sys

    probe = (
        "import multiprocessing as mp, signal\n"
        "def handler(_):\n"
        "    import whichvoice, signal\n"
        "    return signal.getsignal(signal.SIGTERM) is signal.SIG_DFL\n"
        "if __name__ == '__main__':\n"
        "    import sys; sys.argv[0] = '/usr/bin/whichvoice'\n"
        "    with mp.get_context('spawn').Pool(1) as pool:\n"
        "        print(pool.map(handler, [0]))\n"
    )
    script = tmp_path / "whichvoice"
    script.write_text(probe)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.stdout.strip() == "[True]", done.stderr


@pytest.mark.slow  # CLI processes, synthesis or imports
def test_output_under_a_locale_without_a_character_spells_it(cli, tmp_path: Path) -> None:
    """Under Latin-1 a voice named 李明 was a traceback and exit 1 (after `gallery import
    --replace` had committed its change): the character is written as an escape."""
    import numpy as np

    from whichvoice.gallery import Gallery

    with Gallery(tmp_path / "g.sqlite", "m") as g:
        g.enroll("李明", np.ones((1, 4), np.float32) / 2, 3.0)
        g.enroll("Zoë", np.ones((1, 4), np.float32) / 2, 3.0)
    proc = cli("gallery", "list", "--gallery", str(tmp_path / "g.sqlite"),
               env={"PYTHONIOENCODING": "latin-1"}, encoding="latin-1")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "\\u674e\\u660e\t1 clip" in proc.stdout and "Zoë\t1 clip" in proc.stdout


def test_stdout_spells_a_character_and_keeps_a_file_names_byte() -> None:
    """Under an ASCII locale without UTF-8 mode (errors surrogateescape), 李明 was still a
    traceback (a review): spelled, while a name's byte that is not UTF-8 stays that byte."""
    import codecs

    from whichvoice.cli import _spelled_out

    codecs.register_error("whichvoice-stdout", _spelled_out)
    assert "李 \udce9.wav".encode("ascii", "whichvoice-stdout") == b"\\u674e \xe9.wav"
    assert "Zoë".encode("latin-1", "whichvoice-stdout") == b"Zo\xeb"


@pytest.mark.slow  # synthesis
def test_a_gallery_exports_to_standard_output_and_imports_from_standard_input(
    tmp_path: Path,
) -> None:
    """A review: `gallery export -` wrote a file named "-", where `enroll NAME -` reads
    standard input."""
    import subprocess
    import sys

    import numpy as np

    from whichvoice.gallery import Gallery
    from whichvoice.verification import load_encoder, model_id

    from .conftest import voice_clips

    encoder = load_encoder("bundled")
    clip = voice_clips(tmp_path / "c", "flite:slt", sentences=1)["flite:slt"][0]
    dim = encoder.embed(clip)[0].shape[0]
    with Gallery(tmp_path / "g.sqlite", model_id(encoder)) as g:
        g.enroll("ann", np.ones((1, dim), np.float32) / np.sqrt(dim), 3.0)
    run = [sys.executable, "-m", "whichvoice", "gallery"]
    out = subprocess.run([*run, "export", "-", "--gallery", str(tmp_path / "g.sqlite")],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert not (tmp_path / "-").exists()
    assert json.loads(out.stdout)["format"] == "whichvoice-gallery"
    assert "exported 1 voice to standard output" in out.stderr
    back = subprocess.run([*run, "import", "-", "--gallery", str(tmp_path / "h.sqlite"),
                           "--model", "bundled"], input=out.stdout, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert back.returncode == 0, back.stderr
    with Gallery(tmp_path / "h.sqlite", None, create=False) as h:
        assert h.names() == ["ann"]


def test_a_dash_is_no_output_file_and_options_that_do_nothing_are_refused(tmp_path: Path) -> None:
    """`-` as an output made a file or folder named "-" (diarize --rttm -, export --onnx -:
    a script's pipe got nothing), predict -o - said "unknown output format"; serve took
    --backend with --no-classifier and did nothing with it; demo printed its first step
    before refusing its folder (a CLI review)."""
    from click.testing import CliRunner

    from whichvoice.cli import app

    runner = CliRunner()
    for args in (
        ["diarize", "x.wav", "--rttm", "-"],
        ["predict", "x.wav", "-o", "-"],
        ["export", "run", "--onnx", "-"],
        ["synth", "-", "--text", "hi", "--voices", "flite:slt"],
        ["train", "corpus", "--out", "-"],
        ["trace-fit", "corpus", "--out", "-"],
    ):
        said = runner.invoke(app, args)
        assert said.exit_code == 2 and "standard output cannot take this output" in said.output
    assert not Path("-").exists()
    said = runner.invoke(app, ["serve", "--no-classifier", "--backend", "onnx", "--port", "1"])
    assert said.exit_code == 2 and "not with --no-classifier" in said.output
    (tmp_path / "file").write_text("")
    said = runner.invoke(app, ["demo", "--out", str(tmp_path / "file" / "d"), "--sentences", "10"])
    assert "[1/3]" not in said.output, said.output  # refused before the first step's line
    assert "a file is in the way of a folder" in str(said.exception)
    said = runner.invoke(app, ["diarize", str(tmp_path / "file"), "--rttm",
                               str(tmp_path / "file" / "x.rttm")])  # fmt: skip
    assert "file is a file, not a folder" in str(said.exception)  # it said "no folder"


def test_a_command_group_alone_shows_its_help(cli) -> None:
    """`whichvoice gallery` alone: its help, not "error: Usage: ..." and the help after it."""
    said = cli("gallery")
    assert said.returncode == 2 and said.stderr.startswith("Usage: ")
    assert "error:" not in said.stderr and "rename" in said.stderr


def test_paths_are_answered_as_they_were_given(tmp_path: Path) -> None:
    """A script joins the answers to its inputs by path: `./a.wav` and `.//d//x.wav` came back
    as `a.wav` and `d/x.wav` (a Path folds them; a review), in text and in --json."""
    import pickle

    from whichvoice.batch.inputs import path_inputs
    from whichvoice.cli.common import LOCATION, LocalPath, as_given
    from whichvoice.predict import expand_paths

    for text in ("./a.wav", ".//d//x.wav", "../b/./c.wav", "d/e.wav", "e.wav/"):
        for kind in (LocalPath(path_type=Path, readable=False), LOCATION):
            given = kind.convert(text, None, None)
            assert isinstance(given, Path) and as_given(given) == text
            # the same file to everything else: opened (`e.wav/` is e.wav, as a Path reads
            # it: a review found it "not a directory"), compared, hashed, pickled
            assert os.fspath(given) == str(given) == os.fspath(Path(text))
            assert given == Path(text) and hash(given) == hash(Path(text))
            assert pickle.loads(pickle.dumps(given)) == Path(text)
            assert [as_given(p) for p in expand_paths([given])] == [text]
            # and predict --output's rows name it so (their key for --resume)
            assert [i.path for i in path_inputs([given]).read()] == [text]
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "y.wav").touch()  # a folder's files: as found in it
    found = expand_paths([LOCATION.convert(f"{tmp_path}//d/", None, None)])
    assert [as_given(p) for p in found] == [str(tmp_path / "d" / "y.wav")]


@pytest.mark.slow  # a CLI process
def test_predict_answers_each_path_as_it_was_given(tmp_path: Path) -> None:
    import shutil

    from .conftest import HUMAN_DEV, run_cli

    (tmp_path / "d").mkdir()
    shutil.copy(HUMAN_DEV / "0_george_0.wav", tmp_path / "a.wav")
    shutil.copy(HUMAN_DEV / "1_george_0.wav", tmp_path / "d" / "x.wav")
    given = ["./a.wav", ".//d//x.wav", "../" + tmp_path.name + "/./a.wav"]
    proc = run_cli("predict", *given, "--json", "--quiet", cwd=tmp_path, check=True)
    assert [json.loads(line)["path"] for line in proc.stdout.splitlines()] == given
    proc = run_cli("predict", *given, "--quiet", cwd=tmp_path, check=True)
    assert [line.split("\t")[0] for line in proc.stdout.splitlines()] == given


@pytest.mark.slow  # CLI processes
def test_each_party_of_a_two_channel_call_is_read_with_channel(tmp_path: Path) -> None:
    """A call with a party on each channel (two human-dev speakers): `--channel N` reads one
    alone to enroll, identify, verify and diarize; the channels mixed hold both voices (a
    review of a call centre's recordings)."""
    import soundfile as sf

    from .conftest import human_clip, run_cli

    gallery = tmp_path / "g.sqlite"
    for speaker in ("george", "jackson"):
        run_cli("enroll", speaker, str(human_clip(tmp_path, speaker, range(0, 3))),
                "--model", "bundled", "--gallery", str(gallery), "--quiet", check=True)  # fmt: skip
    george, rate = sf.read(human_clip(tmp_path, "george", range(10, 12)), dtype="float32")
    jackson, _ = sf.read(human_clip(tmp_path, "jackson", range(10, 12)), dtype="float32")
    call = np.zeros((george.shape[0] + jackson.shape[0], 2), np.float32)
    call[: george.shape[0], 0] = george  # the agent, then the customer
    call[george.shape[0] :, 1] = jackson
    sf.write(tmp_path / "call.wav", call, rate)
    g = ["--gallery", str(gallery), "--quiet"]
    proc = run_cli("identify", "call.wav", "./call.wav", "--json", *g, "--channel", "2",
                   cwd=tmp_path, check=True)  # fmt: skip
    answers = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [(a["path"], a["channel"], a["voice"]) for a in answers] == [
        ("call.wav", 2, "jackson"), ("./call.wav", 2, "jackson")
    ]  # fmt: skip
    assert list(answers[0])[:2] == ["path", "channel"]
    proc = run_cli("verify", "george", "call.wav", *g, "--channel", "1", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.startswith("call.wav\taccept"), proc.stdout
    proc = run_cli("verify", "george", "call.wav", *g, "--channel", "2", cwd=tmp_path)
    assert proc.returncode == 1 and proc.stdout.startswith("call.wav\treject"), proc.stdout
    proc = run_cli("diarize", "call.wav", *g, "--channel", "1", "--json", cwd=tmp_path,
                   check=True)  # fmt: skip
    turns = json.loads(proc.stdout)
    assert turns["channel"] == 1 and "george" in turns["speakers"]
    assert "jackson" not in turns["speakers"]
    assert all(s["end"] <= george.shape[0] / rate + 0.5 for s in turns["segments"])
    # a channel the file lacks is that file's error, named (exit 1); 0 is no channel (exit 2)
    proc = run_cli("identify", "call.wav", *g, "--channel", "3", cwd=tmp_path)
    assert proc.returncode == 1
    assert (
        proc.stdout
        == "call.wav\terror: call.wav (channel 3): has 2 channels; there is no channel 3\n"
    )
    proc = run_cli("identify", "call.wav", *g, "--channel", "3", "--json", cwd=tmp_path)
    assert json.loads(proc.stdout) == {
        "path": "call.wav", "channel": 3,
        "error": "call.wav (channel 3): has 2 channels; there is no channel 3",
    }  # fmt: skip
    proc = run_cli("trace", "call.wav", "--channel", "3", "--quiet", cwd=tmp_path)
    assert proc.returncode == 1 and "there is no channel 3" in proc.stdout, proc.stdout
    proc = run_cli("identify", "call.wav", *g, "--channel", "0", cwd=tmp_path)
    assert proc.returncode == 2 and "--channel" in proc.stderr
    # enrolling one party from its channel makes a voice of that party alone
    run_cli("enroll", "agent", "call.wav", "--channel", "1", *g, cwd=tmp_path, check=True)
    (tmp_path / "notes.wav").write_text("not audio")
    proc = run_cli("enroll", "customer", "call.wav", "notes.wav", "--channel", "2", *g,
                   cwd=tmp_path, check=True)  # fmt: skip
    assert proc.stdout.startswith("enrolled customer: 1 clip, "), proc.stdout  # not 2
    # the same channel piped in is the same recording (its digest was none: enrolled twice)
    with open(tmp_path / "call.wav", "rb") as piped:
        proc = run_cli("enroll", "agent", "-", "--channel", "1", *g, cwd=tmp_path, stdin=piped)
    assert proc.returncode == 2 and "already enrolled" in proc.stderr, proc.stderr
    proc = run_cli("gallery", "list", "--gallery", str(gallery), check=True)
    assert {line.split("\t")[0] for line in proc.stdout.splitlines()} == {
        "agent", "customer", "george", "jackson"
    }  # fmt: skip


@pytest.mark.slow  # CLI processes
def test_embed_writes_each_files_vector_for_a_users_own_analysis(tmp_path: Path) -> None:
    """`embed` gives the encoder's vector of each file (what verify and identify compare), as
    numbers on its line, JSON, or one .npz file that NumPy reads without pickle."""
    from whichvoice.encoders import load_encoder
    from whichvoice.verification import Embedding, embed

    from .conftest import human_clip, run_cli

    a1 = human_clip(tmp_path, "george", range(0, 2))
    a2 = human_clip(tmp_path, "george", range(5, 7))
    b = human_clip(tmp_path, "jackson", range(0, 2))
    names = [p.name for p in (a1, a2, b)]
    model = ["--model", "bundled", "--quiet"]
    proc = run_cli("embed", *names, "missing.wav", *model, cwd=tmp_path)
    assert proc.returncode == 1  # a file could not be read: the others are still embedded
    lines = [line.split("\t") for line in proc.stdout.splitlines()]
    assert [x[0] for x in lines] == [*names, "missing.wav"]
    vectors = np.array([[float(v) for v in x[1].split()] for x in lines[:3]])
    assert lines[3][1] == "error: missing.wav: cannot read (no such file)"
    proc = run_cli("embed", *names, *model, "--json", cwd=tmp_path, check=True)
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    keys = ["path", "speech_s", "quality", "dim", "embedding", "encoder"]
    assert [list(r) for r in records] == [keys] * 3
    assert all(3 < r["speech_s"] < 12 for r in records)  # two takes of ten digits each
    assert np.allclose([r["embedding"] for r in records], vectors, atol=1e-6)
    out = tmp_path / "e.npz"
    proc = run_cli("embed", *names, *model, "--out", str(out), cwd=tmp_path, check=True)
    assert proc.stdout.splitlines()[0].startswith(f"{names[0]}\tdim {vectors.shape[1]}\tspeech ")
    with np.load(out, allow_pickle=False) as z:
        assert list(z["paths"]) == names and str(z["encoder"]) == records[0]["encoder"]
        assert np.allclose(z["embeddings"], vectors, atol=1e-6)
        assert np.allclose(z["speech_s"], [r["speech_s"] for r in records])
    run_cli("embed", names[0], *model, "--channel", "1", "--out", str(out), cwd=tmp_path,
            check=True)  # fmt: skip
    with np.load(out, allow_pickle=False) as z:
        assert int(z["channel"]) == 1 and z["embeddings"].shape == (1, vectors.shape[1])
    # the same speaker's two recordings are nearer than another speaker's
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    assert unit[0] @ unit[1] > unit[0] @ unit[2]
    # and as the library gives them
    got = embed(load_encoder("bundled"), [a1, a2, b])
    assert all(isinstance(g, Embedding) for g in got)
    assert np.allclose(np.stack([g.vector for g in got]), vectors, atol=1e-5)
    # an output that would be an input, or not a .npz, is refused before any work
    for bad, why in ((names[0], "a .npz file"), ("e.npy", "a .npz file"), ("d", "no folder")):
        target = bad if bad != "d" else "d/e.npz"
        proc = run_cli("embed", names[0], *model, "--out", target, cwd=tmp_path)
        assert proc.returncode == 2 and why in proc.stderr, proc.stderr


@pytest.mark.slow  # a CLI process
def test_embed_stopped_keeps_what_it_embedded(tmp_path: Path) -> None:
    """Ctrl-C during a long `embed --out` lost every vector made (the file is written whole
    at the end): the files done so far are written, and the line says how many."""
    import signal
    import subprocess
    import sys

    from .conftest import human_clip

    clip = human_clip(tmp_path, "theo", range(0, 2))
    names = []
    for i in range(600):
        os.link(clip, tmp_path / f"c{i:03d}.wav")
        names.append(f"c{i:03d}.wav")
    out = tmp_path / "e.npz"
    proc = subprocess.Popen(
        [sys.executable, "-m", "whichvoice", "embed", *names, "--model", "bundled", "--out",
         str(out), "--quiet"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    first = proc.stdout.readline()  # the first files are done: stop it
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=120)
    done = [first, *rest.splitlines()]
    if proc.returncode == 0:  # a fast machine finished before the signal came
        pytest.skip("every file was embedded before the interrupt")
    assert proc.returncode == 130, err
    with np.load(out, allow_pickle=False) as z:
        kept = list(z["paths"])
    assert 0 < len(kept) < 600 and kept == names[: len(kept)]
    assert len(done) >= len(kept) - 1  # each kept file's line was printed (or is on its way)
    files = "1 file" if len(kept) == 1 else f"{len(kept)} files"
    assert f"interrupted: {files} embedded so far, written to {out}" in err, err


@pytest.mark.slow  # a CLI process
def test_sigterm_ends_a_command_waiting_on_a_named_pipe_that_nobody_writes(tmp_path: Path) -> None:
    """A decoder thread blocked on opening a FIFO held `embed` for ever past SIGTERM (the exit
    waited for the thread): it ends with its line and 143 (fuzzing)."""
    import signal
    import subprocess
    import sys
    import time

    from .conftest import human_clip

    clip = human_clip(tmp_path, "theo", range(0, 2))
    os.mkfifo(tmp_path / "pipe.wav")
    proc = subprocess.Popen(
        [sys.executable, "-m", "whichvoice", "embed", str(clip), "pipe.wav", "--model", "bundled"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # until a thread waits for the pipe's writer
            tasks = Path(f"/proc/{proc.pid}/task")
            waits = [(t / "wchan").read_text() for t in tasks.iterdir()] if tasks.is_dir() else []
            if "wait_for_partner" in waits or proc.poll() is not None:
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 143 and err.strip().splitlines()[-1].startswith("terminated"), err


def test_a_warning_or_error_naming_an_odd_file_is_one_line() -> None:
    """A decoder's warning of a file named with a newline and a byte that is not UTF-8 was two
    lines with ``\\udcfe`` in it, and so were enroll's skipped lines (fuzzing)."""
    import logging
    import os

    from whichvoice.cli.common import _LineFormatter, one_line

    name = "cut\nx" + os.fsdecode(b"\xfe") + "\t.wav"
    assert one_line(f"{name}: cut off") == "cut\\nx\\xfe\\t.wav: cut off"
    assert one_line("\ud800 alone") == "\\ud800 alone"  # a lone surrogate no name makes
    record = logging.LogRecord("whichvoice.audio", logging.WARNING, "", 0, "%s: cut", (name,), None)
    assert _LineFormatter().format(record) == "warning: cut\\nx\\xfe\\t.wav: cut"


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["python", "-m", "whichvoice", "embed"], True),
        (["python", "-X", "dev", "-W", "error", "-m", "whichvoice"], True),  # option values
        (["python", "/venv/bin/whichvoice", "-m", "x"], True),
        (["python", "-c", "import whichvoice", "-m", "whichvoice"], False),
        (["python", "-X", "whichvoice"], False),  # a value, not the script
        (["python", "script.py"], False),
        (["python", "-m", "pytest"], False),
    ],
)
def test_the_command_is_told_from_a_program_that_imports_it(monkeypatch, argv, command) -> None:
    """``python -X dev -m whichvoice`` read "dev" as the script: the command was taken for a
    program, and a stopped command then went through the interpreter's shutdown (review)."""
    import sys

    from whichvoice import _startup

    monkeypatch.setattr(sys, "orig_argv", argv)
    assert _startup.started_as_the_command() is command

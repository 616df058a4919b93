"""The classifier shipped in the package: `predict` and `serve` work right after install with
no run, on sentences it never heard; its card describes it."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import httpx
import pytest

from whichvoice.runtime import bundled_classifier, bundled_encoder_dir
from whichvoice.voices import resolve_voices

from . import server as server_process

pytestmark = pytest.mark.slow


def test_the_bundled_classifier_describes_itself() -> None:
    root = bundled_classifier()
    config = json.loads((root / "config.json").read_text())
    assert config["labels"] == sorted(v.id for v in resolve_voices("default8"))
    assert not {"data", "corpus"} & set(config)  # no path of the machine that trained it
    assert (root / "model.safetensors").stat().st_size < 2 * 1024 * 1024
    card = (root / "MODEL_CARD.md").read_text()
    for heading in ("## What it is", "## Figures", "## Limits"):
        assert heading in card
    digest = hashlib.sha256((root / "model.safetensors").read_bytes()).hexdigest()
    assert f"`{digest[:16]}…`" in card  # the card names these weights
    assert "| `clean` |" in card and "95 % interval" in card


@pytest.fixture(scope="module")
def phrases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One dev-pool sentence (never a training sentence) read by each default8 voice, made
    with `synth OUT.mp3 --text`."""
    from whichvoice.protocol import pool_sentences

    from .conftest import run_cli

    text = pool_sentences("dev", 1)[0].text
    out = tmp_path_factory.mktemp("phrases")
    clips = {}
    for voice in resolve_voices("default8"):
        path = out / f"{voice.id.replace(':', '_')}.mp3"
        run_cli("synth", str(path), "--text", text, "--voices", voice.id, "--quiet", check=True)
        clips[voice.id] = path
    return clips


def test_predict_needs_no_run(cli, phrases: dict[str, Path], tmp_path: Path) -> None:
    proc = cli("predict", *map(str, phrases.values()), "--json", check=True)
    answers = [json.loads(x)["voice"] for x in proc.stdout.splitlines()]
    assert answers == list(phrases)
    # each line says the model that answered (a review: a saved line said nothing of it)
    from whichvoice.runtime import load_model

    model = load_model(bundled_classifier()).model_id
    assert {json.loads(x)["model"] for x in proc.stdout.splitlines()} == {model}
    # a run given first, or as --model, is still the classifier
    run = bundled_classifier()
    first = cli("predict", str(run), str(phrases["flite:slt"]), check=True)
    assert "\tflite:slt\t" in first.stdout
    flag = cli("predict", str(phrases["flite:awb"]), "--model", str(run), check=True)
    assert "\tflite:awb\t" in flag.stdout
    # batch mode too
    out = tmp_path / "out.csv"
    cli("predict", *map(str, phrases.values()), "--output", str(out), "--quiet", check=True)
    assert out.read_text().count("\n") == len(phrases) + 1


def test_synth_text_into_one_file_or_a_corpus(cli, tmp_path: Path) -> None:
    one = cli(
        "synth", str(tmp_path / "a.wav"), "--text", "Good morning.", "--voices", "flite:kal16"
    )
    assert one.returncode == 0, one.stderr
    assert (tmp_path / "a.wav").read_bytes()[:4] == b"RIFF"
    # the file is there now: replaced only with --overwrite (it was replaced without a word)
    args = ("synth", str(tmp_path / "a.wav"), "--text", "Bye.", "--voices", "flite:kal16")
    again = cli(*args)
    assert again.returncode == 2 and "exists; --overwrite" in again.stderr, again.stderr
    assert cli(*args, "--overwrite").returncode == 0
    many = cli("synth", str(tmp_path / "b.mp3"), "--text", "Good morning.")  # default8: 8 voices
    assert many.returncode == 2 and "takes one voice id" in many.stderr
    assert not (tmp_path / "b.mp3").exists()
    folder = cli("synth", str(tmp_path / "c"), "--text", "Good morning.", "--voices",
                 "flite:slt,flite:awb", "--quiet")  # fmt: skip
    assert folder.returncode == 0, folder.stderr
    rows = (tmp_path / "c" / "manifest.jsonl").read_text().splitlines()
    assert [json.loads(r)["text"] for r in rows] == ["Good morning."] * 2


HUMAN = Path(__file__).resolve().parents[2] / "shared" / "data" / "human-dev" / "recordings"


@pytest.fixture(scope="module")
def person(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real person (human-dev) saying six digits, ~3 s: a voice the classifier never heard."""
    return _digits("george", tmp_path_factory.mktemp("person") / "george.wav")


def _digits(speaker: str, path: Path, first_take: int = 0) -> Path:
    """``speaker`` saying the digits 0-5 (take ``first_take`` + the digit of each), joined
    with 0.2 s pauses, written to ``path``."""
    import numpy as np
    import soundfile as sf

    from whichvoice.audio import read_audio

    parts = []
    for digit in range(6):
        wave, rate = read_audio(HUMAN / f"{digit}_{speaker}_{first_take + digit}.wav")
        parts += [wave, np.zeros(rate // 5, np.float32)]
    sf.write(path, np.concatenate(parts), rate)
    return path


@pytest.fixture(scope="module")
def other_tts(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The dev-pool sentence read by test-pool TTS voices outside default8 that espeak-ng
    speaks here (no encoder or classifier trained on them, none in the dev clips the open set
    was fitted on): the named test voice and three test-pool variants."""
    from whichvoice.protocol import OTHER_VOICES, pool_sentences, pool_voices

    from .conftest import run_cli

    text = pool_sentences("dev", 1)[0].text
    out = tmp_path_factory.mktemp("other-tts")
    clips = []
    named = [v for v in OTHER_VOICES["test"] if v.startswith("espeak-ng:")]
    for voice in [*named, *pool_voices("test", 3)]:
        path = out / f"{voice.replace(':', '_')}.mp3"
        run_cli("synth", str(path), "--text", text, "--voices", voice, "--quiet", check=True)
        clips.append(path)
    return clips


def test_the_open_set_answer(
    cli, phrases: dict[str, Path], person: Path, other_tts: list[Path], tmp_path: Path
) -> None:
    """Its own voices are named; a person it never heard is "unknown", with the nearest voice
    and the score under the threshold (fitted on dev data, shipped in openset.json); so are
    other TTS voices, which the classifier's own embedding put near its voices (the shipped
    open set scores the bundled encoder's embedding: 4 of stop 54's 4 such voices were named as
    one of its voices with the classifier's own)."""
    from whichvoice.runtime import load_model

    model = load_model()
    fitted = model.openset.fitted
    assert fitted["known_kept"]["value"] >= 0.98 and fitted["known_clips"] >= 800
    assert 0 < model.openset.short_threshold <= model.openset.threshold
    assert model.openset.encoder == load_model(bundled_encoder_dir()).model_id
    # the torch backend's open set runs the encoder in onnxruntime where it is installed
    from whichvoice.runtime import OnnxVoiceModel

    assert isinstance(model.probe_encoder(), OnnxVoiceModel)
    ours = [model.identify(p) for p in phrases.values()]
    assert [p.answer for p in ours] == list(phrases) and all(p.known for p in ours)
    stranger = model.identify(person)
    assert stranger.known is False and stranger.answer == "unknown"
    assert stranger.voice in model.labels  # the nearest, kept beside the answer
    assert stranger.openset_score < stranger.openset_threshold
    others = list(model.identify_many(other_tts))
    assert [p.answer for p in others] == ["unknown"] * len(other_tts), [
        (p.voice, p.openset_score) for p in others
    ]
    # the batch path (decoding threads, the encoder run once on a chunk's middle windows)
    # and the one-file path give the same score, with the int8 networks too
    assert abs(model.identify(other_tts[0]).openset_score - others[0].openset_score) < 1e-5
    int8 = load_model(backend="onnx-int8")
    batch = list(int8.identify_many([person, *other_tts]))
    for path, got in zip([person, *other_tts], batch, strict=True):
        assert abs(int8.identify(path).openset_score - got.openset_score) < 1e-4
    # the batch path makes the log-mel once for the classifier and the encoder: the same
    # inputs as each makes of its own
    import numpy as np

    from whichvoice.openset import probe_window

    assert model._shared_logmel() and int8._shared_logmel()
    inputs, _, probe = model.prepared(person)
    windows, _ = model.windows(person)
    assert np.array_equal(inputs, model.inputs(windows))
    assert np.array_equal(probe, model.probe_encoder().inputs(probe_window(windows)))
    line = cli("predict", str(person), check=True).stdout
    assert "\tunknown\tnearest " in line and "open-set score" in line
    row = json.loads(cli("predict", str(person), "--json", check=True).stdout)
    assert (row["answer"], row["known"]) == ("unknown", False)
    # none of its voices: their engine family says nothing of this clip (no family, not a
    # likeliest voice's at 0.99); the text line names none either
    assert (row["engine"], row["engine_confidence"], row["engine_known"]) == (None, None, None)
    assert "\tengine " not in line
    assert others[0].engine is None and phrases and ours[0].engine is not None
    # a batch output carries the score and the threshold that decided it, as --json does
    out = tmp_path / "answers.csv"
    files = [person, phrases["flite:slt"]]
    cli("predict", *map(str, files), "--output", str(out), "--quiet", check=True)
    rows = list(csv.DictReader(out.open()))
    assert [r["answer"] for r in rows] == ["unknown", "flite:slt"]
    assert [r["known"] for r in rows] == ["false", "true"]
    assert abs(float(rows[0]["openset_score"]) - row["openset_score"]) < 1e-5
    assert float(rows[0]["openset_threshold"]) == row["openset_threshold"]
    assert float(rows[1]["openset_score"]) >= float(rows[1]["openset_threshold"])
    onnx = json.loads(
        cli("predict", str(other_tts[0]), "--json", "--backend", "onnx", check=True).stdout
    )
    assert onnx["answer"] == "unknown"
    assert abs(onnx["openset_score"] - others[0].openset_score) < 1e-3


def test_whichvoice_openset_fits_a_run(cli, trained_run: Path, small_corpus: Path, tmp_path):
    """`whichvoice openset RUN` on dev clips writes RUN/openset.json; predict then answers
    with it."""
    import shutil

    from whichvoice.corpus import read_manifest

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    clips = read_manifest(small_corpus / "manifest.jsonl")
    known = tmp_path / "known.csv"
    known.write_text("".join(f"{small_corpus / c.path},{c.voice}\n" for c in clips[:40]))
    with_gone = tmp_path / "with-gone.csv"
    gone = tmp_path / "gone.mp3"  # a listed clip that cannot be read: left out, and said
    # a clip listed under another voice than its own: the classifier names it its own, so it
    # sets no threshold (one misnamed clip had set a threshold under every stranger's: review)
    other_voice = next(c.voice for c in clips if c.voice != clips[40].voice)
    mislabelled = f"{small_corpus / clips[40].path},{other_voice}\n"
    with_gone.write_text(known.read_text() + mislabelled + f"{gone},{clips[0].voice}\n")
    out = cli("openset", str(run), "--known", str(with_gone), "--unknown",
              str(HUMAN / "0_theo_0.wav"), "--json")  # fmt: skip
    # fitted from the others and saved; exit 1 for the clip left out, as every command's
    # input it could not use (it was 0: a CLI review)
    assert out.returncode == 1, out.stderr
    fitted = json.loads(out.stdout)
    assert fitted["known_clips"] == 41 and fitted["unknown_clips"] == 1
    assert fitted["clips_left_out"] == 1
    assert fitted["known_kept"]["n"] == fitted["known_scored"] <= 40
    assert "known dev clips another voice: left out of the threshold" in out.stderr, out.stderr
    # 40 clips cannot set a threshold that keeps 99 %: said, and the fit goes on
    assert "needs at least 100; expect it to keep fewer" in out.stderr
    saved_short = json.loads((run / "openset.json").read_text())["short_threshold"]
    assert fitted["short_threshold"] == saved_short  # both thresholds predict may use
    assert "1 clip of 42 could not be used, left out: " in out.stderr, out.stderr
    assert "gone.mp3" in out.stderr
    # these are mostly the run's own training clips: said (review), the fit goes on
    assert "known clips are clips the run was trained on" in out.stderr, out.stderr
    saved = json.loads((run / "openset.json").read_text())
    # none of the other voices' clips usable: one line, exit 1, the fit saved before kept
    (tmp_path / "text.wav").write_text("not audio")
    none = cli("openset", str(run), "--known", str(known), "--unknown", str(gone),
               "--unknown", str(tmp_path / "text.wav"))  # fmt: skip
    assert none.returncode == 1 and "Traceback" not in none.stderr, none.stderr
    assert none.stderr.strip().splitlines()[-1].startswith("error: none of the 2 clips of other")
    assert json.loads((run / "openset.json").read_text()) == saved
    assert saved["encoder"].startswith("voicenet-aam-wide-")  # the bundled encoder's, by default
    row = json.loads(cli("predict", str(run), str(small_corpus / clips[0].path), "--json",
                         check=True).stdout)  # fmt: skip
    assert row["known"] in (True, False) and "openset_threshold" in row
    own = cli("openset", str(run), "--known", str(known), "--encoder", "own", "--json")
    assert own.returncode == 0, own.stderr
    text = cli("openset", str(run), "--known", str(known), "--encoder", "own", check=True)
    short = json.loads((run / "openset.json").read_text())["short_threshold"]
    if short is not None:  # the text line names the short clips' threshold too
        assert f"({short:.4f} for clips of 2 windows or fewer)" in text.stdout, text.stdout
    assert json.loads((run / "openset.json").read_text())["encoder"] is None
    row = json.loads(cli("predict", str(run), str(small_corpus / clips[0].path), "--json",
                         check=True).stdout)  # fmt: skip
    assert row["known"] in (True, False) and "openset_threshold" in row
    bad = cli("openset", str(run), "--known", str(known), "--keep", "1.5")
    assert bad.returncode == 2 and "--keep" in bad.stderr
    # an open set fitted with other encoder weights than the bundled ones: one line
    saved["encoder"] = "voicenet-aam-wide-0000000000000000"
    (run / "openset.json").write_text(json.dumps(saved))
    stale = cli("predict", str(run), str(small_corpus / clips[0].path))
    assert stale.returncode != 0 and "Traceback" not in stale.stderr
    assert "fit it again with `whichvoice openset" in stale.stderr, stale.stderr
    # the run still serves as an encoder (its open set is not read for that)
    from whichvoice.encoders import model_for

    assert model_for(run).openset is None
    # ... and fitting it again, as the message says, works (it loaded the stale one first)
    cli("openset", str(run), "--known", str(known), "--json", check=True)
    cli("predict", str(run), str(small_corpus / clips[0].path), check=True)
    # an open set of other voices, or a damaged file: one line; fitting it again still works
    other = json.loads((run / "openset.json").read_text())
    other["labels"] = [f"x:{v}" for v in other["labels"]]
    (run / "openset.json").write_text(json.dumps(other))
    wrong = cli("predict", str(run), str(small_corpus / clips[0].path))
    assert wrong.returncode == 2 and "its voices are not the run's" in wrong.stderr, wrong.stderr
    (run / "openset.json").write_text('{"labels": ')
    damaged = cli("predict", str(run), str(small_corpus / clips[0].path))
    assert damaged.returncode == 2 and "not a usable open-set file" in damaged.stderr
    assert "Traceback" not in wrong.stderr + damaged.stderr
    cli("openset", str(run), "--known", str(known), "--json", check=True)
    cli("predict", str(run), str(small_corpus / clips[0].path), check=True)


def test_the_open_set_encoder_without_an_onnx_export(
    cli, other_tts: list[Path], tmp_path, monkeypatch, caplog
) -> None:
    """The int8 backend needs no writable folder: the encoder's int8 network ships beside it.
    Without that file the encoder is exported to onnxruntime, and where no export can be
    kept, for the process alone (it ran in torch before stop 61), said in a warning (not a
    traceback, not once per file)."""
    import logging
    import shutil

    from whichvoice.runtime import OnnxVoiceModel
    from whichvoice.runtime import load as load_module

    blocked = tmp_path / "file"
    blocked.write_text("")  # a file where the data folder would be: nothing can be written
    out = cli("predict", str(other_tts[0]), "--backend", "onnx-int8", "--json",
              env={"XDG_DATA_HOME": str(blocked / "x")})  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["answer"] == "unknown"
    assert (bundled_encoder_dir() / "model.int8.onnx").is_file()
    # the torch backend runs the encoder in onnxruntime: with no folder for its export, from
    # an export made for the process, and predict says so (its other warnings are quiet)
    torch_run = cli("predict", str(other_tts[0]), "--backend", "torch", "--json",
                    env={"XDG_DATA_HOME": str(blocked / "x")})  # fmt: skip
    assert torch_run.returncode == 0 and json.loads(torch_run.stdout)["answer"] == "unknown"
    assert "the ONNX export is not kept" in torch_run.stderr, torch_run.stderr
    assert "runs in torch" not in torch_run.stderr
    int8 = load_module._probe_encoder("cpu", "onnx-int8")
    assert isinstance(int8, OnnxVoiceModel) and int8.onnx_path.name == "model.int8.onnx"
    # an encoder without its int8 file, and no folder to keep its export in: onnxruntime on
    # an export for the process, with warnings
    bare = tmp_path / "encoder"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copyfile(bundled_encoder_dir() / name, bare / name)
    monkeypatch.setattr(load_module, "bundled_encoder_dir", lambda: bare)
    from whichvoice.runtime import onnx_backend

    # its export's place (a user folder, for the shipped encoder) cannot be written
    monkeypatch.setattr(onnx_backend, "cache_path", lambda model: blocked / "x" / "e.onnx")
    with caplog.at_level(logging.WARNING):
        fallback = load_module._probe_encoder("cpu", "onnx-int8")
    assert isinstance(fallback, OnnxVoiceModel) and "whichvoice-onnx-" in str(fallback.onnx_path)
    said = caplog.text
    assert "no onnx-int8 model of it" in said and "no int8 model" in said
    assert "cannot write the ONNX file (Not a directory)" in said and "not kept" in said
    assert "runs in torch" not in said


def test_an_open_set_the_encoder_cannot_read_is_one_line(tmp_path) -> None:
    """An encoder open set copied into a run whose windows the encoder cannot read (the
    talk's CNN: spectrogram images) is refused when the run is loaded, in one line that says
    what to do (it was a traceback from the log-mel of an image)."""
    from types import SimpleNamespace

    from whichvoice.features import FeatureConfig
    from whichvoice.runtime import ModelLoadError, load_model
    from whichvoice.runtime.load import _check_probe_encoder

    encoder = load_model(bundled_encoder_dir()).model_id
    image = SimpleNamespace(
        root=tmp_path, features=FeatureConfig(name="seed-image"), has_embedding=False
    )
    with pytest.raises(ModelLoadError, match="cannot read this run's seed-image windows; remove"):
        _check_probe_encoder(image, encoder)


def test_one_answer_from_the_classifier_and_the_gallery(
    phrases: dict[str, Path], person: Path, tmp_path: Path
) -> None:
    """/v1/identify gives one answer: an enrolled voice first, else the classifier's voice
    when it knows it, else unknown; each side's own answer is detail."""
    gallery = ["--gallery", str(tmp_path / "g.sqlite")]
    with server_process.serving(server_process.BUNDLED, *gallery) as started:
        url = started.url

        def ask(path: Path) -> dict:
            sent = {"file": (path.name, path.read_bytes())}
            r = httpx.post(f"{url}/v1/identify", files=sent, timeout=60)
            assert r.status_code == 200, r.text
            return r.json()

        body = ask(phrases["flite:awb"])  # nothing enrolled: the classifier answers
        assert (body["voice"], body["answer_source"], body["gallery"]) == (
            "flite:awb", "classifier", None,
        )  # fmt: skip
        assert body["classifier"]["known"] is True
        body = ask(person)
        assert (body["voice"], body["answer_source"]) == ("unknown", "none")
        assert body["classifier"]["known"] is False and body["classifier"]["voice"]
        # enroll the person: the gallery's answer comes first
        again = tmp_path / "george-again.wav"  # the same man, other takes of the digits
        _digits("george", again, first_take=10)
        clips = [("file", (p.name, p.read_bytes())) for p in (person, again)]
        r = httpx.post(f"{url}/v1/enroll", params={"name": "george"}, files=clips, timeout=60)
        assert r.status_code == 200, r.text
        body = ask(person)
        assert (body["voice"], body["answer_source"]) == ("george", "gallery")
        assert body["classifier"]["known"] is False  # the detail still says what it thinks
        body = ask(phrases["flite:awb"])
        assert (body["voice"], body["answer_source"]) == ("flite:awb", "classifier")
        assert body["gallery"]["voice"] == "unknown" and body["gallery"]["nearest"] == "george"


def test_serve_needs_no_run(phrases: dict[str, Path], other_tts: list[Path]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from whichvoice.runtime import load_model

    def ask(path: Path) -> dict:
        sent = {"file": (path.name, path.read_bytes())}
        r = httpx.post(f"{started.url}/v1/identify", files=sent, timeout=60)
        assert r.status_code == 200, r.text
        return r.json()

    paths = [*phrases.values(), *other_tts] * 2
    with server_process.serving(server_process.BUNDLED) as started:
        for voice, path in phrases.items():
            assert ask(path)["voice"] == voice
        # concurrent requests: the classifier and the open set's encoder each run once on
        # what is queued (micro-batching)
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(ask, paths))
        # the talk's endpoint answers with the voice's name
        r = httpx.post(f"{started.url}/invocations", content=phrases["flite:rms"].read_bytes(),
                       headers={"Content-Type": "audio/mpeg"}, timeout=60)  # fmt: skip
        assert r.status_code == 200 and "rms" in r.text
    # every answer's open-set score is the one the clip gets alone, whatever shared its batch
    model = load_model()
    for path, answer in zip(paths, answers, strict=True):
        alone = model.identify(path)
        assert (answer["voice"], answer["classifier"]["known"]) == (alone.answer, alone.known)
        assert abs(answer["classifier"]["openset_score"] - alone.openset_score) < 1e-4

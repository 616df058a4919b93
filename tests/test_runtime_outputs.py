"""What a loaded model answers and how its answer is written out: ``Prediction`` and its
dictionary, ``VoiceModel``'s combination of windows (one file or many at once), the backends
``load_model`` picks, and ``predict``'s lines, JSON and CSV rows. Real recordings (human-dev
digits) through the bundled classifier; nothing is synthesized or trained."""

from __future__ import annotations

import copy
import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from whichvoice.predict import looks_like_a_file
from whichvoice.runtime import ModelLoadError, Prediction, VoiceModel, load_model
from whichvoice.voices.families import engine_family

from .conftest import HUMAN_DEV


def _digits(out: Path, speaker: str, count: int) -> Path:
    """``speaker`` saying ``count`` digits (0-9, then again from the next take), one wav."""
    parts = [
        sf.read(HUMAN_DEV / f"{i % 10}_{speaker}_{i // 10}.wav", dtype="float32")[0]
        for i in range(count)
    ]
    path = out / f"{speaker}-{count}.wav"
    sf.write(path, np.concatenate(parts), 8000)
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three recordings of different lengths: 3, 2 and 1 windows of the classifier."""
    out = tmp_path_factory.mktemp("digits")
    return [_digits(out, "lucas", 12), _digits(out, "jackson", 6), _digits(out, "george", 2)]


@pytest.fixture(scope="module")
def model() -> VoiceModel:
    """The bundled classifier without its open set (closed-set answers): the open set reads
    the bundled encoder, whose ONNX export a fresh data home would make first."""
    return load_model(openset=False)


@pytest.fixture(scope="module")
def int8() -> VoiceModel:
    """The bundled classifier with its open set, on the int8 networks shipped with it (its
    encoder's too: nothing is exported)."""
    return load_model(None, backend="onnx-int8", threads=1)


def _prediction(**kw) -> Prediction:
    top = [("flite:slt", 0.7), ("flite:awb", 0.2), ("flite:rms", 0.06), ("flite:kal16", 0.04)]
    given = {
        "path": "x.wav",
        "voice": "flite:slt",
        "confidence": 0.7,
        "top": top,
        "probabilities": dict(top),
        "windows": 3,
    }
    return Prediction(**(given | kw))


def test_a_closed_set_answer_names_its_voice_not_unknown() -> None:
    """A run without an open set (``known`` None) answered "unknown" for every clip."""
    closed = _prediction(known=None)
    assert closed.answer == "flite:slt"
    assert closed.to_dict()["answer"] == "flite:slt"
    assert _prediction(known=True).answer == "flite:slt"
    assert _prediction(known=False).answer == "unknown"


def test_an_answers_dictionary_keeps_what_it_was_given() -> None:
    """A saved answer showed two of the three likeliest voices asked for, its speech rounded
    to whole seconds, or its open-set score where the threshold belongs."""
    pred = _prediction(speech_s=1.234, known=True, openset_score=0.81, openset_threshold=0.72)
    out = pred.to_dict(3)
    assert [t["voice"] for t in out["top"]] == ["flite:slt", "flite:awb", "flite:rms"]
    assert len(pred.to_dict(4)["top"]) == 4
    assert out["speech_s"] == 1.234
    assert (out["openset_score"], out["openset_threshold"]) == (0.81, 0.72)


def test_many_files_scored_together_answer_as_each_alone(model: VoiceModel, clips) -> None:
    """Every file after the first of a batch was scored on the wrong windows (its answer
    was another file's, or a mix of two)."""
    alone = [model.identify(c) for c in clips]
    assert alone[0].windows > 1 and len({p.windows for p in alone}) == 3  # offsets matter
    together = list(model.identify_many(clips))
    for a, b in zip(alone, together, strict=True):
        assert isinstance(b, Prediction) and b.path == a.path
        assert (b.voice, b.windows, b.speech_s) == (a.voice, a.windows, a.speech_s)
        for voice, p in a.probabilities.items():
            assert b.probabilities[voice] == pytest.approx(p, abs=1e-5)


def test_a_files_answer_is_the_mean_of_its_windows_log_probabilities(
    model: VoiceModel, clips
) -> None:
    """The windows of a clip are combined by their mean log-probability, renormalised (not
    the loudest window's vote); its speech is said to the millisecond."""
    windows, speech_s = model.windows(clips[0])
    pred = model.identify(clips[0])
    logp = model.window_log_probs(windows)
    assert logp.shape[0] == pred.windows > 1
    want = np.exp(logp.mean(axis=0) - logp.mean(axis=0).max())
    want /= want.sum()
    got = np.array([pred.probabilities[v] for v in model.labels])
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert pred.speech_s == round(speech_s, 3) != round(speech_s, 1)


def test_a_clips_open_set_threshold_is_the_one_for_its_windows(int8: VoiceModel, clips) -> None:
    """A clip of several windows was judged against the threshold fitted on short clips."""
    pred = int8.identify(clips[0])
    long, short = int8.openset.threshold_for(pred.windows), int8.openset.threshold_for(1)
    assert pred.windows > 1 and long != short  # the clip's own count decides which
    assert pred.openset_threshold == long
    assert int8.identify(clips[2]).openset_threshold == short


def test_a_closed_set_answer_still_names_the_engine_family(model: VoiceModel, clips) -> None:
    """Loaded without its open set, a model's answers lost their engine family (the family
    is dropped only for a clip the open set calls unknown)."""
    closed = model.identify(clips[0])
    assert closed.known is None and closed.answer == closed.voice
    families: dict[str, float] = {}
    for voice, p in closed.probabilities.items():
        families[engine_family(voice)] = families.get(engine_family(voice), 0.0) + p
    assert closed.engine == max(families, key=families.get)
    assert closed.engine_confidence == pytest.approx(families[closed.engine])


def test_a_voice_is_shown_by_its_name_unless_two_engines_share_it(model: VoiceModel) -> None:
    """The talk page showed "flite:slt" where "slt" was meant, or "slt" for two voices."""
    assert model.display_name("flite:slt") == "slt"
    assert model.display_name("festival:ked_diphone") == "ked_diphone"
    shared = copy.copy(model)
    shared.labels = ["flite:slt", "flite:awb", "polly:slt"]
    assert shared.display_name("flite:slt") == "flite:slt"
    assert shared.display_name("flite:awb") == "awb"


def test_each_onnx_backend_runs_its_own_file_and_int8_must_be_quantised(
    int8: VoiceModel, tmp_path: Path
) -> None:
    """ "onnx" and "onnx-int8" ran each other's network; an ``onnx_path`` given with the
    int8 backend was ignored without a word; a float network saved as RUN/model.int8.onnx
    ran as if it were the quantised one."""
    import onnx

    from whichvoice.runtime import bundled_classifier

    assert int8.onnx_path.name == "model.int8.onnx"
    with pytest.raises(ModelLoadError, match=r"'onnx-int8' reads RUN/model.int8.onnx"):
        load_model(None, backend="onnx-int8", onnx_path=tmp_path / "float.onnx")
    run = tmp_path / "run"
    run.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(bundled_classifier() / name, run / name)
    # the run's network as an export that does not say it is quantised (a float export's
    # metadata; exporting one would take seconds)
    network = onnx.load(bundled_classifier() / "model.int8.onnx")
    kept = [p for p in network.metadata_props if p.key != "whichvoice.quantized"]
    del network.metadata_props[:]
    network.metadata_props.extend(kept)
    unmarked = run / "model.int8.onnx"
    onnx.save(network, unmarked)
    elsewhere = tmp_path / "given.onnx"
    shutil.copy(unmarked, elsewhere)
    assert load_model(run, backend="onnx", onnx_path=elsewhere).onnx_path == elsewhere
    with pytest.raises(ModelLoadError, match="not quantised"):
        load_model(run, backend="onnx-int8")


def test_predict_prints_three_voices_names_its_model_and_writes_csv_booleans(
    int8: VoiceModel, clips, tmp_path: Path
) -> None:
    """`predict` printed two of its three likeliest voices, a --json line said nothing of
    the model that answered, and a CSV wrote True/False where JSON readers expect
    true/false."""
    from click.testing import CliRunner

    from whichvoice.cli import app

    runner = CliRunner()
    # the int8 backend: its open set's encoder is shipped int8 too (nothing is exported)
    two = [str(c) for c in clips[1:]] + ["--backend", "onnx-int8"]
    text = runner.invoke(app, ["predict", *two])
    assert text.exit_code == 0, text.output
    lines = text.stdout.splitlines()
    assert len(lines) == 2
    for line in lines:
        top = line.split("[", 1)[1].split("]", 1)[0]
        assert len(top.split(", ")) == 3
    as_json = runner.invoke(app, ["predict", *two, "--json"])
    assert as_json.exit_code == 0, as_json.output
    answers = [json.loads(x) for x in as_json.stdout.splitlines()]
    assert [a["model"] for a in answers] == [int8.model_id] * 2
    out = tmp_path / "out.csv"
    done = runner.invoke(app, ["predict", *two, "--output", str(out), "--quiet"])
    assert done.exit_code == 0, done.output
    rows = list(csv.DictReader(out.open()))
    assert {r["known"] for r in rows} <= {"true", "false"}
    assert [r["known"] for r in rows] == [str(a["known"]).lower() for a in answers]


def test_an_upper_case_audio_suffix_names_one_file() -> None:
    """`s3://b/x/CLIP.WAV` that names nothing was taken for a mistyped folder, not a missing
    file."""
    assert looks_like_a_file("s3://b/x/CLIP.WAV")
    assert looks_like_a_file("s3://b/x/clip.wav")
    assert not looks_like_a_file("s3://b/x/clips/")
    assert not looks_like_a_file("s3://b/x/clips")

import json
import shutil
from pathlib import Path

import pytest

from whichvoice.audio import encode_audio
from whichvoice.corpus import read_manifest
from whichvoice.errors import AudioDecodeError
from whichvoice.runtime import ModelLoadError, Prediction, load_model

from .conftest import sine, warble


def test_python_api_identifies_a_clip(trained_run: Path, small_corpus: Path) -> None:
    from whichvoice import load_model as api_load_model

    clip = read_manifest(small_corpus / "manifest.jsonl")[0]
    result = api_load_model(trained_run).identify(small_corpus / clip.path)
    assert isinstance(result, Prediction)
    assert result.voice in load_model(trained_run).labels
    assert 0 < result.confidence <= 1
    assert abs(sum(result.probabilities.values()) - 1) < 1e-5
    assert [p for _, p in result.top] == sorted((p for _, p in result.top), reverse=True)
    # bytes work as well as paths, and give the same answer
    again = load_model(trained_run).identify((small_corpus / clip.path).read_bytes())
    assert again.voice == result.voice


def test_a_steady_sound_is_no_speech_to_every_judge(tmp_path: Path) -> None:
    """A tone was "unknown" to predict and verify's reject while identify (with a voice
    enrolled) and trace said it held no speech: now each says so."""
    import soundfile as sf

    from whichvoice.encoders import load_encoder
    from whichvoice.errors import SilentAudioError

    tone = tmp_path / "tone.wav"
    sf.write(tone, sine(440, 5.0), 16_000)
    with pytest.raises(SilentAudioError, match=r"tone\.wav: no speech in it \(a steady sound"):
        load_model().identify(tone)
    [embedded] = load_encoder("bundled").embed_many([tone])  # verify, identify, enroll
    assert isinstance(embedded, SilentAudioError) and "a steady sound" in str(embedded)
    answer = load_model().identify(encode_audio(warble(200, 3.0), 16_000, "wav"))
    assert answer.windows >= 1  # a tone that rises and falls as syllables do is judged
    # two tones beating: loudness moving by 20 dB between 10 ms frames, yet no voice (a
    # ringback was named after a voice, and an engine, by a review)
    from whichvoice.audio import only_a_steady_sound

    # under 0.8 s of two tones beating is too short to tell from a drawn-out syllable
    assert not only_a_steady_sound(sine(440, 0.5, amp=0.3) + sine(480, 0.5, amp=0.3))
    for low, high in ((440, 480), (400, 450), (480, 620)):
        beating = tmp_path / f"beat-{low}.wav"
        sf.write(beating, sine(low, 4.0, amp=0.3) + sine(high, 4.0, amp=0.3), 8_000)
        with pytest.raises(SilentAudioError, match="a steady sound"):
            load_model().identify(beating)


def test_any_length(trained_run: Path) -> None:
    model = load_model(trained_run)
    short = model.identify(encode_audio(warble(200, 0.5), 16000, "wav"))
    long = model.identify(encode_audio(warble(200, 12.0, 44100), 44100, "wav"))
    assert short.windows == 1
    assert 0.4 <= short.speech_s <= 0.55  # says how much speech it used
    assert long.windows >= 10 and long.speech_s > 11


def test_errors(trained_run: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="not a trained run"):
        load_model(tmp_path)
    # a device this machine lacks, or a file given for the run: said plainly (torch spoke of
    # pinned memory; the file gave "[Errno 20] Not a directory": review)
    with pytest.raises(ModelLoadError, match="CUDA is not available"):
        load_model(trained_run, device="cuda")
    with pytest.raises(ModelLoadError, match="unknown device 'tpu'"):
        load_model(trained_run, device="tpu")
    clip = tmp_path / "clip.mp3"
    clip.write_bytes(encode_audio(sine(300, 1.0), 16_000, "mp3"))
    with pytest.raises(ModelLoadError, match=r"clip\.mp3: a file, not a run's folder"):
        load_model(clip)
    bad = tmp_path / "bad.mp3"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(AudioDecodeError, match=r"bad\.mp3"):
        load_model(trained_run).identify(bad)


@pytest.mark.slow
def test_cli_predict_json_with_a_corrupt_file(
    cli, trained_run: Path, small_corpus: Path, tmp_path: Path
) -> None:
    clips = read_manifest(small_corpus / "manifest.jsonl")[:3]
    folder = tmp_path / "in"
    folder.mkdir()
    for c in clips:
        shutil.copy(small_corpus / c.path, folder / f"{c.id}.mp3")
    (folder / "corrupt.mp3").write_bytes(b"ID3 this is not an mp3" * 20)
    proc = cli("predict", str(trained_run), str(folder), "--json")
    assert proc.returncode == 1, proc.stderr
    rows = [json.loads(x) for x in proc.stdout.splitlines()]
    assert len(rows) == 4
    errors = [r for r in rows if "error" in r]
    assert len(errors) == 1 and errors[0]["path"].endswith("corrupt.mp3")
    assert "corrupt.mp3" in errors[0]["error"]
    good = [r for r in rows if "error" not in r]
    for r in good:
        assert set(r) == {
            "path", "answer", "voice", "confidence", "top", "speech_s", "windows", "known",
            "engine", "engine_confidence", "engine_known", "model",
        }  # fmt: skip
        assert r["answer"] == r["voice"] and r["known"] is None  # no open-set file in the run
        assert r["model"] == load_model(trained_run).model_id  # which model answered
        assert len(r["top"]) == 3 and r["top"][0]["voice"] == r["voice"]
    ok = cli("predict", str(trained_run), str(folder / f"{clips[0].id}.mp3"), check=True)
    assert clips[0].id in ok.stdout
    # the run given first and by --model: refused, not read as an input folder
    twice = cli("predict", str(trained_run), str(folder), "--model", str(trained_run))
    assert twice.returncode == 2 and "Traceback" not in twice.stderr
    assert "is a run and --model names one too" in twice.stderr.strip().splitlines()[-1]


def test_the_library_takes_one_input_or_many_and_checks_a_waveform(
    trained_run: Path, small_corpus: Path
) -> None:
    import numpy as np

    from whichvoice.audio import Decoded, load_audio
    from whichvoice.errors import SilentAudioError

    model = load_model(trained_run)
    clip = small_corpus / read_manifest(small_corpus / "manifest.jsonl")[0].path
    data = clip.read_bytes()
    # one path (a str) is one input, not one per character; answers name inputs as identify does
    answers = list(model.identify_many(str(clip)))
    assert len(answers) == 1 and answers[0].path == str(clip)
    named = [p.path for p in model.identify_many([data, Decoded(load_audio(clip), 16000, "dd")])]
    assert named == [f"<{len(data)} bytes>", "dd"]
    # a waveform handed over is checked as a decoded file is
    with pytest.raises(SilentAudioError, match="silent"):
        model.identify_wave(np.zeros(32000, np.float32), 16000)
    with pytest.raises(AudioDecodeError, match="sample rate"):
        model.identify_wave(np.ones(16000, np.float32), 0)
    wave = load_audio(clip)
    stereo = model.identify_wave(np.stack([wave, wave], axis=1), 16000)
    assert stereo.voice == model.identify(clip).voice
    with pytest.raises(AudioDecodeError, match="sample_rate 0"):
        load_audio(clip, 0)
    with pytest.raises(AudioDecodeError, match=r"^mine: not audio"):  # the name it was given
        model.identify(b"x" * 10, name="mine")
    with pytest.raises(AudioDecodeError, match=r"^<audio>: the audio holds NaN"):
        Decoded(np.full(10, np.nan), 16000, None)  # type: ignore[arg-type]

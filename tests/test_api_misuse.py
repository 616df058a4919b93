"""The library's entry points met with a user's slips: one WhichvoiceError in one line, before
any work, never a raw TypeError or a result per character or per sample (review)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from whichvoice.audio import SAMPLE_RATE
from whichvoice.errors import AudioDecodeError, SentencesError, WhichvoiceError

from .conftest import sine


@pytest.mark.slow  # loads a model
def test_a_batch_reads_one_path_as_one_input(tmp_path: Path, monkeypatch) -> None:
    """A str was spelled out a character at a time, its '.' taking in the whole folder."""
    import soundfile as sf

    from whichvoice.batch import BatchInputError, predict_batch

    monkeypatch.chdir(tmp_path)
    sf.write("a.wav", sine(200, 2.0, amp=0.3), SAMPLE_RATE)
    sf.write("other.wav", sine(300, 2.0, amp=0.3), SAMPLE_RATE)
    summary = predict_batch(None, "a.wav", "out.csv", progress=False)
    assert summary.to_dict()["rows"] == 1
    for bad in (None, b"RIFF", [b"RIFF"], 3):
        with pytest.raises(BatchInputError, match="give"):
            predict_batch(None, bad, "bad.csv", progress=False, overwrite=True)


def test_samples_without_their_rate_are_one_error_not_one_per_sample() -> None:
    """trace(array) gave 32,000 errors for 2 s, one per sample."""
    from whichvoice.audio import inputs_of

    wave = sine(200, 2.0, amp=0.3)
    for samples in (wave, [0.1, 0.2], (0.5, 0.25)):
        with pytest.raises(AudioDecodeError, match="an array of samples needs its rate"):
            inputs_of(samples)
    for nothing in (None, 3):
        with pytest.raises(AudioDecodeError, match="a Decoded clip or a list of them"):
            inputs_of(nothing)
    assert inputs_of("a.wav") == ["a.wav"] and inputs_of([]) == []
    assert inputs_of([5, None, "a.wav"]) == [5, None, "a.wav"]  # each its own error, later
    # a web framework's upload (a file object) was read a line at a time, each line an input:
    # 962 answers for one wav; a dict by its keys
    import io

    for one in (io.BytesIO(b"RIFF" + b"\n" * 50), {"clip": "a.wav"}):
        with pytest.raises(AudioDecodeError, match=r"is not an input: pass a file's bytes"):
            inputs_of(one)


FORKED = """
import faulthandler, os, sys
from whichvoice import load_model
from whichvoice.encoders import load_encoder
clip = sys.argv[1]
model, encoder = load_model(), load_encoder()
model.identify(clip), list(encoder.embed_many([clip]))  # the parent's threads have run
pid = os.fork()
if pid == 0:
    faulthandler.dump_traceback_later(60, exit=True)  # a hang: exit 1 with where it waits
    print(model.identify(clip).voice, len(list(encoder.embed_many([clip]))), flush=True)
    os._exit(0)
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""


@pytest.mark.slow  # loads the models
def test_models_loaded_before_a_fork_answer_in_the_child() -> None:
    """gunicorn --preload, a multiprocessing "fork" pool: the child's first call waited for
    ever, in torch's thread pool (model) and in the fusion's own threads (encoder), neither of
    which a forked child has (a review)."""
    import subprocess
    import sys

    from .conftest import HUMAN_DEV

    clip = str(next(iter(sorted(HUMAN_DEV.glob("*_theo_4*.wav")))))
    done = subprocess.run([sys.executable, "-c", FORKED, clip], capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[1] == "1", done.stdout


@pytest.mark.slow  # CLI processes, synthesis or imports
def test_a_corpus_takes_text_and_refuses_what_is_no_sentence(tmp_path: Path) -> None:
    from whichvoice.corpus import SynthConfig, SynthConfigError, synthesize_corpus
    from whichvoice.sentences import parse_sentences

    cfg = SynthConfig(voices=("flite:slt",), assign="all", workers=1)
    made = synthesize_corpus(tmp_path / "a", ["Hello there, my friend."], cfg, progress=False)
    assert made.made == 1
    as_json = json.loads(json.dumps(made.to_dict()))  # asdict() failed on it
    assert as_json["made"] == 1 and as_json["per_engine"]["flite"]["clips"] == 1
    source = parse_sentences("One sentence here.\nAnd another one.")
    assert synthesize_corpus(tmp_path / "b", source, cfg, progress=False).made == 2
    with pytest.raises(SentencesError, match="a list of Sentence"):
        synthesize_corpus(tmp_path / "c", "Hello", cfg, progress=False)
    with pytest.raises(SynthConfigError, match="a SynthConfig"):
        synthesize_corpus(tmp_path / "d", source, None, progress=False)
    assert not (tmp_path / "c").exists() and not (tmp_path / "d").exists()


@pytest.mark.slow  # CLI processes, synthesis or imports
def test_an_import_refuses_bad_settings_before_writing(tmp_path: Path) -> None:
    from whichvoice.recordings import ImportConfig, RecordingsError, import_recordings

    with pytest.raises(RecordingsError, match="workers"):
        ImportConfig(workers=0)
    with pytest.raises(RecordingsError, match="an ImportConfig"):
        import_recordings(tmp_path, tmp_path / "out", None, progress=False)
    assert not (tmp_path / "out").exists()
    from .conftest import HUMAN_DEV

    (tmp_path / "src" / "theo").mkdir(parents=True)
    (tmp_path / "src" / "theo" / "a.wav").write_bytes((HUMAN_DEV / "1_theo_0.wav").read_bytes())
    summary = import_recordings(tmp_path / "src", tmp_path / "out", progress=False)
    assert json.loads(json.dumps(summary.to_dict()))["made"] == 1


@pytest.mark.slow  # loads a model
def test_identify_says_what_an_engine_head_is(tmp_path: Path) -> None:
    from whichvoice.gallery import Gallery
    from whichvoice.verification import identify, load_encoder, model_id

    encoder = load_encoder("bundled")
    with Gallery(tmp_path / "g.sqlite", model_id(encoder)) as g:
        for head in (True, "auto"):
            with pytest.raises(WhichvoiceError, match="head_for"):
                identify(encoder, g, ["x.wav"], engine_head=head)


@pytest.mark.slow  # loads a model
def test_write_rttm_takes_one_result_and_diarize_a_callable_progress(tmp_path: Path) -> None:
    from whichvoice import diarize as dz
    from whichvoice.audio import Decoded

    wave = np.r_[sine(200, 2.0, amp=0.3), np.zeros(SAMPLE_RATE, np.float32)]
    with pytest.raises(dz.DiarizeError, match="progress"):
        dz.diarize(Decoded(wave, SAMPLE_RATE, "a"), "bundled", progress=5)
    result = dz.diarize(Decoded(wave, SAMPLE_RATE, "a"), "bundled")
    dz.write_rttm(tmp_path / "one.rttm", result)
    assert (tmp_path / "one.rttm").read_text() == result.to_rttm("a")
    with pytest.raises(dz.DiarizeError, match="diarize"):
        dz.write_rttm(tmp_path / "bad.rttm", ["not a result"])


def test_the_package_lists_its_lazy_names() -> None:
    import whichvoice

    assert {"load_model", "VoiceModel", "Prediction"} <= set(dir(whichvoice))


@pytest.mark.slow  # loads a model
def test_settings_out_of_range_are_refused_before_work(tmp_path: Path) -> None:
    """load_model(threads=0) and enroll(min_seconds=-1) were taken (review)."""
    import whichvoice
    from whichvoice.gallery import Gallery
    from whichvoice.verification import enroll, load_encoder, model_id

    for threads in (0, -2, 1.5, True):
        with pytest.raises(WhichvoiceError, match="threads must"):
            whichvoice.load_model(threads=threads)
    # a float export given to the int8 backend ran the float model without a word
    for backend in ("onnx-int8", "torch"):
        with pytest.raises(WhichvoiceError, match="onnx_path is the float export"):
            whichvoice.load_model(backend=backend, onnx_path=tmp_path / "model.onnx")
    encoder = load_encoder("bundled")
    with Gallery(tmp_path / "g.sqlite", model_id(encoder)) as g:
        for bad in (-1, float("nan"), float("inf"), "3"):
            with pytest.raises(WhichvoiceError, match="min_seconds must"):
                enroll(encoder, g, "ann", ["x.wav"], min_seconds=bad)
        assert g.names() == []


@pytest.mark.slow  # a process that imports torch
def test_importing_whichvoice_leaves_a_users_forked_children_their_threads() -> None:
    """The hook that gives a forked child one torch thread (models loaded before a fork hung
    there) was registered at import: a user's own fork pool beside an import of whichvoice,
    no model loaded, ran on one thread (a review). It is registered as a model loads."""
    import subprocess
    import sys

    script = (
        "import os, torch\n"
        "torch.set_num_threads(2)\n"
        "import whichvoice.verification, whichvoice.runtime\n"
        "def child():\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        os._exit(torch.get_num_threads())\n"
        "    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])\n"
        "before = child()\n"
        "from whichvoice.runtime.model import guard_forks\n"
        "guard_forks()\n"
        "print(before, child())\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.stdout.split() == ["2", "1"], done.stderr[-2000:]


def test_a_predictions_repr_leads_with_its_answer() -> None:
    """The docs' example printed ``.voice``, a voice's name where predict says "unknown";
    the repr had no ``answer`` at all (a review)."""
    from whichvoice.runtime.model import Prediction

    p = Prediction(path="x.wav", voice="flite:kal16", confidence=0.6, top=[("flite:kal16", 0.6)],
                   probabilities={}, windows=2, known=False)  # fmt: skip
    assert repr(p).startswith("Prediction(answer='unknown', path='x.wav', voice='flite:kal16'")
    assert p.to_dict()["answer"] == "unknown"

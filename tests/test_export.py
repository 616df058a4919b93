"""ONNX export and the onnxruntime backend: same outputs as torch (within 1e-4) on real clips."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from whichvoice.corpus import read_manifest
from whichvoice.export import ExportError
from whichvoice.runtime import ModelLoadError, OnnxVoiceModel, load_model

TOLERANCE = 1e-4  # largest absolute difference allowed between the backends


def clips_of(corpus: Path, n: int = 12) -> list[Path]:
    """``n`` clips spread over the corpus (so over its voices)."""
    clips = sorted(read_manifest(corpus / "manifest.jsonl"), key=lambda c: c.id)
    return [corpus / c.path for c in clips[:: max(1, len(clips) // n)][:n]]


def assert_backends_match(torch_model, onnx_model, clips: list[Path]) -> None:
    for clip in clips:
        windows, _ = torch_model.windows(clip)
        got, want = onnx_model.window_log_probs(windows), torch_model.window_log_probs(windows)
        assert got.shape == want.shape and got.dtype == np.float32
        assert np.abs(got - want).max() < TOLERANCE, clip
        if torch_model.has_embedding:
            got, want = (
                onnx_model.window_embeddings(windows),
                torch_model.window_embeddings(windows),
            )
            assert got.shape == want.shape
            assert np.abs(got - want).max() < TOLERANCE, clip
            np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5)


@pytest.fixture
def run_copy(trained_run: Path, tmp_path: Path) -> Path:
    """The trained run copied, so its ONNX cache does not land in the shared fixture."""
    run = tmp_path / "run"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("*.onnx", "checkpoint.pt"))
    return run


@pytest.mark.slow
def test_onnx_backend_matches_torch_on_real_clips(run_copy: Path, small_corpus: Path) -> None:
    torch_model = load_model(run_copy)
    (run_copy / "model.onnx").write_bytes(b"the user's own export")  # the name export suggests
    onnx_model = load_model(run_copy, backend="onnx")
    assert isinstance(onnx_model, OnnxVoiceModel)
    assert onnx_model.onnx_path == run_copy / "model.network.onnx"
    assert (run_copy / "model.onnx").read_bytes() == b"the user's own export"  # never replaced
    assert onnx_model.has_embedding and onnx_model.labels == torch_model.labels
    clips = clips_of(small_corpus)
    assert_backends_match(torch_model, onnx_model, clips)
    # the same answers, in the same format, one file at a time and batched
    for clip in clips:
        want = torch_model.identify(clip)
        got = onnx_model.identify(clip)
        assert got.voice == want.voice and got.windows == want.windows
        assert abs(got.confidence - want.confidence) < 1e-4
        assert set(got.to_dict()) == set(want.to_dict())
    batched = [p.voice for p in onnx_model.identify_many(clips, batch=5)]
    assert batched == [p.voice for p in torch_model.identify_many(clips, batch=5)]
    got, _ = onnx_model.embed(clips[0])
    want, _ = torch_model.embed(clips[0])
    assert np.abs(got - want).max() < TOLERANCE


@pytest.mark.slow
def test_the_cache_follows_the_weights(run_copy: Path, small_corpus: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    from whichvoice.export import ExportError

    cached = load_model(run_copy, backend="onnx").onnx_path
    old = shutil.copy(cached, tmp_path / "old.onnx")
    state = load_file(str(run_copy / "model.safetensors"))
    save_file({k: v * 1.01 if v.is_floating_point() else v for k, v in state.items()},
              str(run_copy / "model.safetensors"))  # fmt: skip
    # an explicit file made from other weights is refused, naming what differs
    with pytest.raises(ExportError, match="weights_sha256"):
        load_model(run_copy, backend="onnx", onnx_path=old)
    # the stale cache is exported again and follows the new weights
    assert_backends_match(
        load_model(run_copy), load_model(run_copy, backend="onnx"), clips_of(small_corpus, 3)
    )


def seed_run(root: Path) -> Path:
    """An (untrained) seed-model run directory: the talk's CNN on spectrogram images."""
    import torch
    from safetensors.torch import save_file

    from whichvoice.features import FeatureConfig
    from whichvoice.models import build_model

    features = FeatureConfig(name="seed-image")
    labels = ["a", "b", "c", "d"]
    torch.manual_seed(0)
    net = build_model("seed", features.input_shape, len(labels))
    root.mkdir(parents=True)
    save_file(net.state_dict(), str(root / "model.safetensors"))
    config = {
        "model": "seed",
        "features": features.to_dict(),
        "labels": labels,
        "input_shape": list(features.input_shape),
    }
    (root / "config.json").write_text(json.dumps(config))
    return root


@pytest.mark.slow
def test_seed_model_through_onnx(small_corpus: Path, tmp_path: Path) -> None:
    run = seed_run(tmp_path / "seed")
    torch_model = load_model(run)
    onnx_model = load_model(run, backend="onnx")
    assert not onnx_model.has_embedding
    clips = clips_of(small_corpus, 4)
    assert_backends_match(torch_model, onnx_model, clips)
    assert [onnx_model.identify(c).voice for c in clips] == [
        torch_model.identify(c).voice for c in clips
    ]


@pytest.mark.slow
def test_bundled_encoder_embeddings_through_onnx(small_corpus: Path) -> None:
    from whichvoice.files import data_home
    from whichvoice.verification import bundled_encoder

    root = bundled_encoder()
    onnx_model = load_model(root, backend="onnx")
    # the package is never written to: the export is cached in the user's folder (the int8
    # network shipped beside the encoder, for the classifier's open set, is the only ONNX file)
    assert [p.name for p in root.glob("*.onnx")] == ["model.int8.onnx"]
    assert onnx_model.onnx_path.parent == data_home() / "onnx"
    assert_backends_match(load_model(root), onnx_model, clips_of(small_corpus, 6))


@pytest.mark.slow
def test_cli_export(cli, trained_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "exports" / "voicenet.onnx"
    proc = cli("export", str(trained_run), "--onnx", str(out), check=True)
    path, diff = proc.stdout.splitlines()
    assert Path(path) == out and not list(out.parent.glob(".*tmp"))
    onnx.checker.check_model(str(out), full_check=True)
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(meta["whichvoice.labels"]) == load_model(trained_run).labels
    assert meta["whichvoice.model"] == "voicenet"
    # "max |onnx - torch|: log_probs 1.2e-06, embeddings 3.4e-07"
    values = [float(part.split()[-1]) for part in diff.split(":", 1)[1].split(",")]
    assert len(values) == 2 and max(values) < TOLERANCE
    # a file already there is replaced only with --overwrite, refused before any work
    before = out.read_bytes()
    again = cli("export", str(trained_run), "--onnx", str(out))
    assert again.returncode == 2 and "exists; --overwrite" in again.stderr, again.stderr
    assert out.read_bytes() == before
    cli("export", str(trained_run), "--onnx", str(out), "--overwrite", check=True)
    # a folder that cannot be written is said before the export
    bad = cli("export", str(trained_run), "--onnx", "/proc/x.onnx")
    assert bad.returncode == 2 and "tmp" not in bad.stderr
    assert "not a file to write to" in bad.stderr, bad.stderr  # /proc: refused as such
    # a run without its weights: one line, as evaluate says it (it was a traceback)
    broken = tmp_path / "no-weights"
    broken.mkdir()
    (broken / "config.json").write_bytes((trained_run / "config.json").read_bytes())
    for args in (("predict", str(broken), str(out)), ("export", str(broken), "--onnx", "y.onnx")):
        proc = cli(*args, cwd=tmp_path)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert "model.safetensors missing" in proc.stderr


@pytest.mark.slow  # five CLI processes
def test_cli_export_of_a_bad_run(cli, tmp_path: Path) -> None:
    proc = cli("export", str(tmp_path / "missing"), "--onnx", str(tmp_path / "x.onnx"))
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "missing" in proc.stderr
    assert not (tmp_path / "x.onnx").exists()
    # a command that fails leaves no folder it would have written into (they were made
    # before any check)
    for args in (
        ("missing", "--onnx", "new/sub/x.onnx"),
        ("run", "--onnx", "new/y.onnx", "--int8"),
    ):
        proc = cli("export", *args, cwd=tmp_path)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert not (tmp_path / "new").exists()
    (tmp_path / "file").write_text("")
    proc = cli("export", "missing", "--onnx", "file/x.onnx", cwd=tmp_path)
    assert proc.returncode == 2 and "a file is in the way" in proc.stderr, proc.stderr


@pytest.mark.slow
def test_an_export_keeps_the_run_and_says_what_it_leaves_out(cli, run_copy: Path) -> None:
    from whichvoice.runtime import bundled_classifier

    weights = (run_copy / "model.safetensors").read_bytes()
    weights_path = str(run_copy / "model.safetensors")
    for more in ((), ("--overwrite",)):  # said first: --overwrite would not help
        over = cli("export", str(run_copy), "--onnx", weights_path, *more)
        assert over.returncode == 2 and "one of the run's own files" in over.stderr, over.stderr
    # its int8 model (but by --int8) and the ONNX backend's cache, though named .onnx
    (run_copy / "model.int8.onnx").write_bytes(b"int8")
    (run_copy / "model.network.onnx").write_bytes(b"cache")
    for name in ("model.int8.onnx", "model.network.onnx"):
        over = cli("export", str(run_copy), "--onnx", str(run_copy / name), "--overwrite")
        assert over.returncode == 2 and "one of the run's own files" in over.stderr, over.stderr
    (run_copy / "model.int8.onnx").unlink()
    (run_copy / "model.network.onnx").unlink()
    assert (run_copy / "model.safetensors").read_bytes() == weights  # it was an ONNX file
    plain = cli("export", str(run_copy), "--onnx", str(run_copy.parent / "a.onnx"), check=True)
    assert "open set" not in plain.stderr  # a run without one
    shutil.copy(Path(bundled_classifier()) / "openset.json", run_copy)
    warned = cli("export", str(run_copy), "--onnx", str(run_copy.parent / "b.onnx"), check=True)
    assert "not the run's open set" in warned.stderr and '"unknown"' in warned.stderr
    # a damaged file given as the export says so (it "held no whichvoice metadata")
    cut = run_copy.parent / "cut.onnx"
    cut.write_bytes((run_copy.parent / "a.onnx").read_bytes()[:5000])
    with pytest.raises(ExportError, match=r"cut\.onnx: not an export of .*not a readable ONNX"):
        load_model(run_copy, backend="onnx", onnx_path=cut, openset=False)


@pytest.mark.slow  # the bundled classifier exported
def test_an_onnx_cache_that_cannot_be_kept_is_made_for_the_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A home that cannot be written: `--backend onnx` was refused ("cannot write the ONNX
    file") where the int8 backend and resemblyzer's cache carried on."""
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "file" / "data"))  # even root cannot
    with caplog.at_level("WARNING"):
        model = load_model(None, backend="onnx", openset=False)
    assert isinstance(model, OnnxVoiceModel) and "not kept" in caplog.text
    assert model.onnx_path.is_file() and "whichvoice-onnx-" in str(model.onnx_path)


def test_unknown_backend(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="valid backends: torch, onnx"):
        load_model(tmp_path, backend="tensorflow")


def test_missing_onnxruntime_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from whichvoice.export import OnnxUnavailableError
    from whichvoice.runtime import import_onnxruntime

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import now raises ImportError
    with pytest.raises(OnnxUnavailableError, match=r"whichvoice\[onnx\]"):
        import_onnxruntime()


@pytest.mark.slow
def test_int8_export_answers_as_torch_and_is_checked_against_its_run(
    run_copy: Path, small_corpus: Path, cli
) -> None:
    """``export --int8`` writes the network quantised to int8, calibrated on real clips;
    ``--backend onnx-int8`` runs it and names the same voices as torch; a missing or stale
    file is refused in one line saying how to make it."""
    with pytest.raises(ModelLoadError, match=r"no int8 model.*export"):
        load_model(run_copy, backend="onnx-int8")
    out = run_copy / "model.int8.onnx"
    done = cli("export", str(run_copy), "--onnx", str(out), "--int8",
               "--calibration", str(small_corpus / "audio"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "the same top voice as torch on" in done.stdout
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta["whichvoice.quantized"] == "int8" and meta["whichvoice.inputs"] == "features"
    int8, torch_model = load_model(run_copy, backend="onnx-int8"), load_model(run_copy)
    assert isinstance(int8, OnnxVoiceModel) and int8.onnx_path == out
    clips = clips_of(small_corpus)
    assert [p.voice for p in int8.identify_many(clips)] == [
        p.voice for p in torch_model.identify_many(clips)
    ]
    got, _ = int8.embed(clips[0])
    want, _ = torch_model.embed(clips[0])
    assert float(got @ want) > 0.99  # quantised: close, not equal
    # the weights change: the int8 file no longer belongs to the run
    from safetensors.torch import load_file, save_file

    state = load_file(str(run_copy / "model.safetensors"))
    save_file({k: v * 1.01 if v.is_floating_point() else v for k, v in state.items()},
              str(run_copy / "model.safetensors"))  # fmt: skip
    with pytest.raises(ModelLoadError, match=r"not this run's int8 model.*weights_sha256"):
        load_model(run_copy, backend="onnx-int8")
    bad = cli("export", str(run_copy), "--onnx", str(out), "--calibration", str(small_corpus))
    assert bad.returncode == 2 and "--calibration goes with --int8" in bad.stderr


@pytest.mark.slow
def test_the_bundled_classifier_ships_its_int8_network(cli, tmp_path: Path) -> None:
    import soundfile as sf

    from .conftest import warble

    model = load_model(None, backend="onnx-int8", threads=1)
    assert model.onnx_path.name == "model.int8.onnx" and model.labels == load_model().labels
    clip = tmp_path / "tone.wav"
    sf.write(clip, warble(220, 2.5), 16_000)
    done = cli("predict", str(clip), "--backend", "onnx-int8", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["voice"] in model.labels


def test_an_export_of_other_weights_labels_or_features_is_not_the_runs() -> None:
    """Each thing an export records about its run is compared: weights, labels, features,
    format (a test-suite review's mutant comparing the labels alone passed the fast tests;
    an ONNX cache of other weights would have been used)."""
    from whichvoice.export import metadata
    from whichvoice.runtime import bundled_classifier, load_model
    from whichvoice.runtime.onnx_backend import META_PREFIX, mismatch

    model = load_model(bundled_classifier(), openset=False)
    own = metadata(model)
    assert mismatch(model, own) is None
    for key, said in (
        ("weights_sha256", "weights_sha256 differs"),
        ("labels", "labels differ"),
        ("features", "features differ"),
        ("format_version", "format_version differs"),
    ):
        other = {**own, META_PREFIX + key: own[META_PREFIX + key] + "x"}
        assert mismatch(model, other) == f"its {said} from the run's", key
    assert "no whichvoice metadata" in mismatch(model, {})
    assert "not a readable ONNX file" in mismatch(model, None)

"""Fused encoders: the cosine of fused embeddings is the weighted sum of the parts' cosines."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import HUMAN_DEV, human_clip, sine
from whichvoice.errors import AudioDecodeError, SilentAudioError
from whichvoice.fusion import FusedEncoder, Fusion


@pytest.fixture(scope="module")
def parts():
    from whichvoice.verification import load_encoder, model_id

    encoders = {"bundled": load_encoder("bundled"), "resemblyzer": load_encoder("resemblyzer")}
    return encoders, {k: model_id(v) for k, v in encoders.items()}


def test_fusion_weights_are_checked() -> None:
    with pytest.raises(ValueError, match="sum to 1"):
        Fusion(("a", "b"), (0.5, 0.6))
    with pytest.raises(ValueError, match="one weight per part"):
        Fusion(("a",), (0.5, 0.5))
    f = Fusion(("a", "b"), (0.25, 0.75), "dev trials")
    assert Fusion.from_dict(f.to_dict()) == f


def test_fused_cosine_is_the_weighted_sum_of_the_parts(parts, tmp_path: Path) -> None:
    encoders, ids = parts
    fused = FusedEncoder(Fusion(("bundled", "resemblyzer"), (0.3, 0.7)), encoders, ids, tmp_path)
    files = [HUMAN_DEV / f"{d}_{s}_1.wav" for d, s in ((3, "jackson"), (4, "jackson"), (3, "theo"))]
    text = tmp_path / "notes.wav"
    text.write_text("not audio")
    out = list(fused.embed_many([*files, text], batch=2))
    assert isinstance(out[3], AudioDecodeError) and "notes.wav" in str(out[3])
    emb = np.stack([o[0] for o in out[:3]])
    assert emb.shape == (3, fused.config["embedding_dim"])
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    b = np.stack([e[0] for e in encoders["bundled"].embed_many(files)])
    r = np.stack([e[0] for e in encoders["resemblyzer"].embed_many(files)])
    np.testing.assert_allclose(emb @ emb.T, 0.3 * b @ b.T + 0.7 * r @ r.T, atol=1e-5)
    scores = fused.part_scores(emb[0], emb[2])
    assert scores == pytest.approx({"bundled": b[0] @ b[2], "resemblyzer": r[0] @ r[2]}, abs=1e-5)
    assert np.allclose(fused.embed(files[0])[0], emb[0], atol=1e-6)
    assert fused.config["parts"] == ids and len(fused.digest) == 64


def test_a_part_that_hears_nothing_adds_zeros_and_no_part_is_an_error(parts, tmp_path) -> None:
    encoders, ids = parts
    fused = FusedEncoder(Fusion(("bundled", "resemblyzer"), (0.5, 0.5)), encoders, ids, tmp_path)
    # a steady tone: whichvoice's trimming keeps it, resemblyzer's voice detector keeps nothing
    tone = tmp_path / "tone.wav"
    sf.write(tone, sine(1000.0, 3.0), 16_000)
    emb, speech_s = fused.embed(tone)
    bundled_dim = fused.dims[0]
    assert np.linalg.norm(emb[bundled_dim:]) == 0 and speech_s > 2
    assert abs(float(np.linalg.norm(emb[:bundled_dim])) ** 2 - 0.5) < 1e-5
    # an engine head that reads the silent part answers unknown, not from the fingerprint
    from whichvoice.tracing import EngineHead, bind, shipped_head

    head = bind(EngineHead.load(shipped_head()), fused)
    assert head.part == (bundled_dim, fused.dims[0] + fused.dims[1])
    answer = head.answer_clip(emb, tone)
    assert answer.engine == "unknown" and not answer.known
    silence = tmp_path / "silence.wav"
    sf.write(silence, np.zeros(32_000, np.float32), 16_000)
    with pytest.raises(SilentAudioError, match=r"silence\.wav"):
        fused.embed(silence)


def test_a_fusion_folder_loads_its_parts_and_names_itself(parts, tmp_path: Path) -> None:
    import json

    from whichvoice.errors import WhichvoiceError
    from whichvoice.verification import fused_encoder, model_id

    with pytest.raises(WhichvoiceError, match="no fusion here"):
        fused_encoder(tmp_path)
    (tmp_path / "fusion.json").write_text(
        json.dumps({"parts": ["whichvoice", "resemblyzer"], "weights": [0.4, 0.6], "source": "t"})
    )
    fused = fused_encoder(tmp_path)
    _, ids = parts
    assert fused.config["parts"] == {
        "whichvoice": ids["bundled"],
        "resemblyzer": ids["resemblyzer"],
    }
    assert model_id(fused).startswith("auto-")
    other = tmp_path / "other"
    other.mkdir()
    (other / "fusion.json").write_text(
        json.dumps({"parts": ["whichvoice", "resemblyzer"], "weights": [0.5, 0.5]})
    )
    assert model_id(fused_encoder(other)) != model_id(fused)  # other weights: another model


@pytest.mark.slow  # three encoders, CLI subprocesses
def test_auto_is_the_shipped_fusion_with_its_dev_calibration(tmp_path: Path) -> None:
    import json

    from tests.conftest import run_cli
    from whichvoice.verification import calibration_of, load_encoder

    fused = load_encoder("auto")
    shipped = json.loads(
        (Path(__file__).parents[1] / "src/whichvoice/data/fusion/fusion.json").read_text()
    )
    assert list(fused.config["parts"]) == shipped["parts"]
    threshold, _ = calibration_of(fused)
    assert -1 < threshold < 1

    env = {"WHICHVOICE_AUTO_DIR": str(tmp_path / "user")}
    model = ("--model", "auto", "--gallery", str(tmp_path / "g.sqlite"))
    run_cli(
        "enroll",
        "nicolas",
        str(human_clip(tmp_path, "nicolas", range(0, 2))),
        *model,
        env=env,
        check=True,
    )
    run_cli(
        "enroll",
        "george",
        str(human_clip(tmp_path, "george", range(0, 2))),
        *model,
        env=env,
        check=True,
    )
    proc = run_cli(
        "identify", str(human_clip(tmp_path, "nicolas", range(20, 21))), *model, "--json", env=env
    )
    answer = json.loads(proc.stdout)
    assert answer["nearest"] == "nicolas" and answer["threshold"] == round(threshold, 6)


@pytest.mark.slow  # CLI subprocesses that load auto
def test_auto_is_the_default_and_a_gallery_keeps_the_encoder_that_made_it(tmp_path: Path) -> None:
    """No --model: auto for a new gallery; the gallery's own encoder for one made before
    auto was the default (or with --model); a gallery of some other run is refused."""
    from tests.conftest import run_cli
    from whichvoice.errors import WhichvoiceError
    from whichvoice.gallery import Gallery
    from whichvoice.verification import gallery_encoder, model_id

    assert gallery_encoder(None, tmp_path / "new.sqlite").name == "auto"
    # calibrate without --model: the default's calibration, in the user's folder for auto
    enrolls = {s: human_clip(tmp_path, s, range(0, 2)) for s in ("theo", "nicolas", "george")}
    # 12 same-voice trials: a calibration needs 10 of each kind
    tests = {s: [human_clip(tmp_path, s, range(k, k + 1)) for k in (5, 6, 7, 8)] for s in enrolls}
    (tmp_path / "trials.txt").write_text("".join(
        f"{enrolls[a]}|{t}|{int(a == b)}\n" for a in enrolls for b in tests for t in tests[b]
    ))  # fmt: skip
    user = tmp_path / "auto-user"
    proc = run_cli("calibrate", "--trials", str(tmp_path / "trials.txt"),
                   env={"WHICHVOICE_AUTO_DIR": str(user)}, check=True)  # fmt: skip
    assert str(user / "calibration.json") in proc.stdout
    clip = str(human_clip(tmp_path, "theo", range(0, 2)))
    old = tmp_path / "old.sqlite"
    run_cli("enroll", "theo", clip, "--model", "bundled", "--gallery", str(old), check=True)
    assert model_id(gallery_encoder(None, old)).startswith("voicenet")
    proc = run_cli("identify", clip, "--gallery", str(old), "--json", check=True)
    assert json.loads(proc.stdout)["voice"] == "theo"
    # --model auto on that gallery: refused in one line
    proc = run_cli("identify", clip, "--gallery", str(old), "--model", "auto")
    assert proc.returncode == 2 and "made with model voicenet" in proc.stderr
    assert "Traceback" not in proc.stderr
    other = tmp_path / "other.sqlite"
    with Gallery(other, "voicenet-aam-0123456789abcdef") as g:
        g.enroll("x", np.ones((1, 4), np.float32), 3.0)
    with pytest.raises(WhichvoiceError, match="pass --model with the run that made it"):
        gallery_encoder(None, other)
    # a gallery of an earlier default fusion (other weights): refused, saying to enroll again
    earlier = tmp_path / "earlier.sqlite"
    with Gallery(earlier, "auto-0123456789abcdef") as g:
        g.enroll("x", np.ones((1, 4), np.float32), 3.0)
    with pytest.raises(WhichvoiceError, match=r"another version of the default fusion.*enroll"):
        gallery_encoder(None, earlier)
    # with --model auto too (not "use the model it was made with": this one cannot be)
    proc = run_cli("identify", clip, "--gallery", str(earlier), "--model", "auto")
    assert proc.returncode == 2 and "another version of the default fusion" in proc.stderr
    # and one of resemblyzer before its input's level was normalised (same weights)
    import resemblyzer

    weights = (Path(resemblyzer.__file__).parent / "pretrained.pt").read_bytes()
    before = tmp_path / "before.sqlite"
    with Gallery(before, f"resemblyzer-{hashlib.sha256(weights).hexdigest()[:16]}") as g:
        g.enroll("x", np.ones((1, 4), np.float32), 3.0)
    with pytest.raises(WhichvoiceError, match=r"another version of the resemblyzer encoder"):
        gallery_encoder(None, before)
    with pytest.raises(WhichvoiceError, match=r"another version of the resemblyzer encoder"):
        gallery_encoder("resemblyzer", before)
    # and of dvector (its revision changed too)
    dv = tmp_path / "dvector.sqlite"
    with Gallery(dv, "dvector-0123456789abcdef") as g:
        g.enroll("x", np.ones((1, 4), np.float32), 3.0)
    with pytest.raises(WhichvoiceError, match=r"another version of the dvector encoder"):
        gallery_encoder(None, dv)

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
    # a 6 kHz tone swelling and fading (not steady: a steady tone is no speech to every
    # command): whichvoice's trimming keeps it, resemblyzer's voice detector keeps nothing
    tone = tmp_path / "tone.wav"
    t = np.arange(48_000) / 16_000
    sf.write(tone, sine(6000.0, 3.0) * np.clip(np.sin(np.pi * t), 0.05, 1), 16_000)
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
    steady = tmp_path / "steady.wav"  # a steady tone: no speech, to the fusion as to its parts
    sf.write(steady, sine(1000.0, 3.0), 16_000)
    with pytest.raises(SilentAudioError, match=r"steady\.wav: no speech in it \(a steady sound"):
        fused.embed(steady)


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


def _fused_rows(parts: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray:
    """Clip embeddings of a fusion: each part's unit rows scaled by sqrt(weight), side by side."""
    return np.concatenate([parts[n] * np.sqrt(w) for n, w in weights.items()], axis=1)


def test_an_earlier_fusions_prototypes_are_reweighed_exactly() -> None:
    from whichvoice.fusion import EarlierFusion, reweighed
    from whichvoice.runtime import unit

    rng = np.random.default_rng(0)

    def units(n: int, d: int) -> np.ndarray:
        x = rng.normal(size=(n, d)).astype(np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    dims = {"a": 4, "b": 6, "c": 3}
    ids = {n: f"{n}-1" for n in dims}
    old_w, new_w = {"a": 0.3, "b": 0.6, "c": 0.1}, {"a": 0.5, "b": 0.5}

    def record(weights: list[float], parts: dict = ids) -> EarlierFusion:
        return EarlierFusion.of({"parts": parts, "weights": weights,
                                 "part_dims": list(dims.values())})  # fmt: skip

    earlier = record(list(old_w.values()))
    assert EarlierFusion.from_dict(earlier.to_dict()) == earlier
    with pytest.raises(ValueError, match="make auto-"):  # an id its parts do not make
        EarlierFusion.from_dict(earlier.to_dict() | {"weights": [0.2, 0.7, 0.1]})
    config = {"parts": {n: ids[n] for n in new_w}, "weights": list(new_w.values()),
              "part_dims": [dims[n] for n in new_w]}  # fmt: skip
    # a voice's stored embedding: two prototypes (conditions) side by side, each the mean of
    # its clips' fused embeddings (unit length: every part heard speech)
    clips = [{n: units(3, d) for n, d in dims.items()} for _ in range(2)]
    stored = np.concatenate([_fused_rows(c, old_w).mean(axis=0) for c in clips])
    wanted = np.concatenate([_fused_rows(c, new_w).mean(axis=0) for c in clips])
    convert = reweighed(earlier, config)
    assert convert is not None
    np.testing.assert_allclose(convert(stored), wanted, atol=1e-6)
    with pytest.raises(ValueError, match="not k x 13"):
        convert(stored[:-1])
    # a clip part "b" heard nothing in: enrollment stored the other blocks made unit length,
    # whatever the weights, so its share is carried off by at most sqrt(new / old) - 1
    deaf = {n: (np.zeros_like(x) if n == "b" else x) for n, x in clips[0].items()}
    old_rows = np.stack([unit(r) for r in _fused_rows(deaf, old_w)])
    new_rows = np.stack([unit(r) for r in _fused_rows(deaf, new_w)])
    got, exact = convert(old_rows.mean(axis=0)), new_rows.mean(axis=0)
    off = np.abs(got - exact).max() / np.abs(exact).max()
    assert 0 < off <= max(np.sqrt(new_w[n] / old_w[n]) for n in new_w) - 1 + 1e-6
    # what cannot be carried over: a part the earlier fusion gave no weight, or another
    # version of a part (its id), or a part it did not have
    assert reweighed(record([0.0, 0.9, 0.1]), config) is None
    assert reweighed(record(list(old_w.values()), ids | {"b": "b-2"}), config) is None
    other = config | {"parts": {"a": "a-1", "d": "d-1"}}
    assert reweighed(earlier, other) is None


@pytest.mark.slow  # CLI subprocesses that load auto
def test_a_gallery_of_the_earlier_default_fusion_is_upgraded_as_if_enrolled_again(
    tmp_path: Path,
) -> None:
    """`gallery upgrade` carries a gallery of the fusion shipped before (its weights in
    earlier.json) over to today's: the same prototypes today's would have enrolled."""
    from tests.conftest import run_cli
    from whichvoice.encoders import fused_encoder, model_id
    from whichvoice.fusion import EARLIER
    from whichvoice.gallery import Gallery
    from whichvoice.pretrained import shipped_dir
    from whichvoice.verification import enroll

    now = fused_encoder()
    record = json.loads((shipped_dir("fusion") / EARLIER).read_text())[-1]
    loaded = dict(zip(now.fusion.parts, now.parts, strict=True))
    was = FusedEncoder(Fusion(tuple(record["parts"]), tuple(record["weights"])), loaded,
                       record["parts"], tmp_path)  # fmt: skip
    assert model_id(was) == record["id"] != model_id(now)
    clips = {s: human_clip(tmp_path, s, range(0, 2)) for s in ("theo", "nicolas")}
    old, fresh = tmp_path / "old.sqlite", tmp_path / "fresh.sqlite"
    for encoder, path in ((was, old), (now, fresh)):
        with Gallery(path, model_id(encoder)) as g:
            for name, clip in clips.items():
                enroll(encoder, g, name, [clip])
    probe = str(human_clip(tmp_path, "theo", range(3, 5)))
    proc = run_cli("identify", probe, "--gallery", str(old))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"whichvoice gallery upgrade --gallery {old}" in proc.stderr
    proc = run_cli("gallery", "upgrade", "--gallery", str(old), check=True)
    assert proc.stdout.strip() == f"upgraded 2 voices from {record['id']} to {model_id(now)}"
    with Gallery(old, None, create=False) as a, Gallery(fresh, None, create=False) as b:
        assert a.model_id == b.model_id == model_id(now)
        for x, y in zip(a.voices(), b.voices(), strict=True):
            assert (x.name, x.clips, x.seconds, x.model) == (y.name, y.clips, y.seconds, y.model)
            np.testing.assert_allclose(x.embedding, y.embedding, atol=1e-5)
    proc = run_cli("identify", probe, "--gallery", str(old), "--json", check=True)
    assert json.loads(proc.stdout)["voice"] == "theo"
    proc = run_cli("gallery", "upgrade", "--gallery", str(old), check=True)
    assert "nothing to do" in proc.stdout
    # a gallery of another encoder: nothing to carry over, it answers with its own
    bundled = tmp_path / "bundled.sqlite"
    with Gallery(bundled, "voicenet-aam-0123456789abcdef") as g:
        g.enroll("x", np.ones((1, 4), np.float32), 3.0)
    proc = run_cli("gallery", "upgrade", "--gallery", str(bundled), check=True)
    assert "not the default fusion: nothing to do" in proc.stdout
    # a fusion no earlier.json knows: refused in one line, the file untouched
    unknown = tmp_path / "unknown.sqlite"
    with Gallery(unknown, "auto-0123456789abcdef") as g:
        g.enroll("x", np.ones((1, 4), np.float32), 3.0)
    before = unknown.read_bytes()
    proc = run_cli("gallery", "upgrade", "--gallery", str(unknown))
    assert proc.returncode != 0 and "enroll its voices again" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and unknown.read_bytes() == before

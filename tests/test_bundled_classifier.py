"""The classifier shipped in the package: `predict` and `serve` work right after install with
no run, on sentences it never heard; its card describes it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import httpx
import pytest

from whichvoice.runtime import bundled_classifier
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
    many = cli("synth", str(tmp_path / "b.mp3"), "--text", "Good morning.")  # default8: 8 voices
    assert many.returncode == 2 and "takes one voice id" in many.stderr
    assert not (tmp_path / "b.mp3").exists()
    folder = cli("synth", str(tmp_path / "c"), "--text", "Good morning.", "--voices",
                 "flite:slt,flite:awb", "--quiet")  # fmt: skip
    assert folder.returncode == 0, folder.stderr
    rows = (tmp_path / "c" / "manifest.jsonl").read_text().splitlines()
    assert [json.loads(r)["text"] for r in rows] == ["Good morning."] * 2


def test_serve_needs_no_run(phrases: dict[str, Path]) -> None:
    with server_process.serving(server_process.BUNDLED) as started:
        for voice, path in phrases.items():
            r = httpx.post(f"{started.url}/v1/identify", files={"file": (path.name, path.read_bytes())},
                           timeout=60)  # fmt: skip
            assert r.status_code == 200, r.text
            assert r.json()["voice"] == voice
        # the talk's endpoint answers with the voice's name
        r = httpx.post(f"{started.url}/invocations", content=phrases["flite:rms"].read_bytes(),
                       headers={"Content-Type": "audio/mpeg"}, timeout=60)  # fmt: skip
        assert r.status_code == 200 and "rms" in r.text

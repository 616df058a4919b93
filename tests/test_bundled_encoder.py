"""The encoder shipped in the package: enroll and verify voices it never heard in training,
right after install (no --model), and answer "unknown" for a voice that is not enrolled."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from whichvoice.corpus import read_manifest
from whichvoice.verification import bundled_encoder

pytestmark = pytest.mark.slow


def test_the_bundled_encoder_describes_itself() -> None:
    root = bundled_encoder()
    assert sum(p.stat().st_size for p in root.iterdir()) <= 10 * 1024 * 1024
    recipe = json.loads((root / "recipe.json").read_text())
    assert not set(recipe["held_out_voices"]) & set(recipe["training_voices"])
    cal = json.loads((root / "calibration.json").read_text())
    assert 0 < cal["threshold"] < 1 and 0 <= cal["eer"] < 0.1


@pytest.fixture(scope="module")
def unseen(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    """Clips of voices held out of the bundled encoder's training: two recorded speakers and
    an espeak-ng voice."""
    from .conftest import run_cli

    held = json.loads((bundled_encoder() / "recipe.json").read_text())["held_out_voices"]
    espeak = next(v for v in held if v.startswith("espeak-ng:en-gb-x-rp+"))
    out = tmp_path_factory.mktemp("unseen") / "corpus"
    run_cli(
        "synth",
        str(out),
        "--voices",
        f"flite:awb,festival:ked_diphone,{espeak}",
        "--sentences",
        "7",
        "--assign",
        "all",
        "--quiet",
        check=True,
    )
    clips: dict[str, list[Path]] = {}
    for c in read_manifest(out / "manifest.jsonl"):
        clips.setdefault(c.voice, []).append(out / c.path)
    return clips


def test_unseen_voices_verify_and_identify(
    cli, unseen: dict[str, list[Path]], tmp_path: Path
) -> None:
    gallery = ["--gallery", str(tmp_path / "g.sqlite")]
    awb, ked = unseen["flite:awb"], unseen["festival:ked_diphone"]
    espeak = next(v for k, v in unseen.items() if k.startswith("espeak"))
    cli("enroll", "awb", *map(str, awb[:3]), *gallery, check=True)
    cli("enroll", "ked", *map(str, ked[:3]), *gallery, check=True)

    true_claims = cli("verify", "awb", *map(str, awb[3:]), "--json", *gallery, check=True)
    assert all(json.loads(x)["accept"] for x in true_claims.stdout.splitlines())
    false_claims = cli(
        "verify", "awb", *map(str, ked[3:] + espeak[3:]), "--json", *gallery, check=True
    )
    assert not any(json.loads(x)["accept"] for x in false_claims.stdout.splitlines())

    who = cli("identify", *map(str, ked[3:] + espeak[:4]), "--json", *gallery, check=True)
    answers = [json.loads(x)["voice"] for x in who.stdout.splitlines()]
    assert answers == ["ked"] * len(ked[3:]) + ["unknown"] * 4

"""Recording quality (``whichvoice.quality``): the measures on audio whose noise, clipping,
band and length are known, and the warnings they raise in every answer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from whichvoice import quality
from whichvoice.audio import read_audio

from .conftest import HUMAN_DEV, human_clip


def _digits(speaker: str = "george", take: int = 0) -> tuple[np.ndarray, int]:
    """A human-dev speaker saying the ten digits once (8 kHz, with the recordings' pauses)."""
    parts = [sf.read(HUMAN_DEV / f"{d}_{speaker}_{take}.wav", dtype="float32")[0]
             for d in range(10)]  # fmt: skip
    return np.concatenate(parts), 8000


def _noisy(wave: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    """``wave`` with white noise at ``snr_db`` to the speech's active level (the frames
    within 40 dB of the loudest, as the evaluation conditions mix)."""
    frames = np.square(wave[: wave.shape[0] // 400 * 400].reshape(-1, 400)).mean(axis=1)
    active = frames[frames >= frames.max() * 1e-4].mean()
    noise = np.random.default_rng(seed).standard_normal(wave.shape[0])
    noise *= np.sqrt(active / 10 ** (snr_db / 10)) / noise.std()
    return (wave + noise).astype(np.float32)


def test_the_snr_estimate_follows_the_noise_mixed_in() -> None:
    wave, rate = _digits()
    clean = quality.snr_db(wave, rate)
    estimates = {snr: quality.snr_db(_noisy(wave, snr), rate) for snr in (20, 10, 5, 0)}
    assert clean is not None and clean > 25  # people recorded in a quiet room
    # within 5 dB of what was mixed, and in order
    for snr, est in estimates.items():
        assert est is not None and abs(est - snr) < 5, (snr, est)
    assert estimates[20] > estimates[10] > estimates[5] > estimates[0]


def test_a_clean_recording_raises_no_warning_and_a_noisy_one_says_so() -> None:
    wave, rate = _digits("jackson")
    assert quality.measure(wave, rate, speech_s=3.0).warnings == ()
    noisy = quality.measure(_noisy(wave, 0), rate, speech_s=3.0)
    assert [w.split(":")[0] for w in noisy.warnings] == ["noisy"]
    assert noisy.to_dict()["warnings"] == list(noisy.warnings)


def test_clipping_is_flat_tops_at_the_peak_and_a_quiet_or_smooth_clip_is_not_clipped() -> None:
    wave, rate = _digits()
    loud = np.clip(wave * 8, -1, 1)  # recorded far too loud
    q = quality.measure(loud, rate, speech_s=3.0)
    assert q.clipped > 0.05 and any(w.startswith("clipped") for w in q.warnings)
    # clipped, then made quieter: the flat tops are still there
    assert quality.clipped_share(loud * 0.3) == pytest.approx(q.clipped)
    # as recorded, or quiet, or a low tone at 48 kHz as 16-bit samples: no flat tops
    t = np.arange(48_000) / 48_000
    tone = np.round(0.9 * np.sin(2 * np.pi * 100 * t) * 32767) / 32767
    for clean in (wave, wave * 0.01, tone.astype(np.float32)):
        assert quality.clipped_share(clean) < quality.CLIPPED_SHARE
    # one sample at the peak is no run
    spike = np.zeros(1000, np.float32)
    spike[10] = 1.0
    assert quality.clipped_share(spike) == 0.0


def test_the_band_is_what_the_recording_holds_not_its_rate() -> None:
    wave, rate = _digits()  # 8 kHz: up to 4 kHz
    up = soxr.resample(wave, rate, 16_000)
    assert 3500 <= quality.bandwidth_hz(up, 16_000) <= 4100
    narrow = soxr.resample(soxr.resample(wave, rate, 4000), 4000, 16_000)  # up to 2 kHz
    q = quality.measure(narrow, 16_000, speech_s=3.0)
    assert quality.bandwidth_hz(narrow, 16_000) < 2200
    assert any(w.startswith("narrow band") for w in q.warnings)


def test_a_long_recording_is_measured_on_blocks_spread_over_it() -> None:
    rate = 8000
    hour = np.zeros(3600 * rate, np.float32)
    hour[::1000] = 0.5  # clicks, then a last minute clipped flat
    hour[-60 * rate :] = 1.0
    part = quality.excerpt(hour, rate)
    assert part.shape[0] == int(quality.EXCERPT_S * rate)
    assert part[-1] == 1.0 and part[0] == hour[0]  # its ends are the recording's
    q = quality.measure(hour, rate, speech_s=3.0)
    assert 0 < q.clipped < 0.2  # the flat minute is seen, in proportion to its blocks
    assert q.clipped == pytest.approx(quality.clipped_share(part))  # the blocks alone are read


def test_short_speech_and_too_little_sound_to_estimate() -> None:
    wave, rate = _digits()
    q = quality.measure(wave, rate, speech_s=0.4)
    assert q.warnings[0] == "short: 0.4 s of speech (under 1.5 s)"
    silent = np.zeros(16_000, np.float32)  # digital silence: no level to read
    assert quality.snr_db(silent, 16_000) is None
    assert quality.measure(silent[:100], 16_000, 0.0).bandwidth_hz is None
    assert quality.measure(np.zeros(0, np.float32), 16_000, 0.0).clipped == 0.0


@pytest.mark.slow
def test_every_answer_carries_its_quality_in_python_json_and_on_stderr(cli, tmp_path: Path) -> None:
    from whichvoice.encoders import load_encoder
    from whichvoice.gallery import Gallery
    from whichvoice.verification import embed, enroll, identify, model_id, verify

    gallery = tmp_path / "g.sqlite"
    clean = human_clip(tmp_path, "george", range(0, 2))
    wave, rate = read_audio(human_clip(tmp_path, "george", range(5, 7)))
    noisy, clipped = tmp_path / "noisy.wav", tmp_path / "clipped.flac"
    sf.write(noisy, _noisy(wave, 0), rate)
    sf.write(clipped, np.clip(wave * 8, -1, 1), rate)
    encoder = load_encoder("bundled")
    with Gallery(gallery, model_id(encoder)) as g:
        enroll(encoder, g, "george", [clean])
        answers = [
            *verify(encoder, g, "george", [noisy, clipped]),
            *identify(encoder, g, [noisy, clipped]),
            *embed(encoder, [noisy, clipped]),
        ]
    kinds = [[w.split(":")[0] for w in a.quality.warnings] for a in answers]
    assert all(want in k for k, want in zip(kinds, ["noisy", "clipped"] * 3, strict=True)), kinds
    assert all(a.to_dict()["quality"] == a.quality.to_dict() for a in answers)
    # measured from the decode that feeds the encoder: the same vectors as embedding alone
    alone = [r[0] for r in encoder.embed_many([noisy, clipped])]
    np.testing.assert_allclose([a.vector for a in answers[4:]], alone, atol=1e-6)
    # the command line: in the JSON, and said on stderr in one line a file
    env = {"WHICHVOICE_GALLERY": str(gallery)}
    clean = human_clip(tmp_path, "george", range(8, 10))  # not one it was enrolled from
    for command in (("verify", "george"), ("identify",), ("embed",)):
        missing = tmp_path / "missing.wav"  # a file that fails among them: its own line
        proc = cli(*command, str(noisy), str(clean), str(missing), "--model", "bundled",
                   "--json", env=env)  # fmt: skip
        *rows, failed = [json.loads(line) for line in proc.stdout.splitlines()]
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert failed["path"] == str(missing) and "quality" not in failed
        assert [r["quality"]["warnings"] != [] for r in rows] == [True, False], rows
        assert rows[0]["quality"]["snr_db"] < quality.NOISY_DB < rows[1]["quality"]["snr_db"]
        said = [line for line in proc.stderr.splitlines() if "noisy" in line]
        assert len(said) == 1 and said[0].startswith(f"warning: {noisy}: noisy: "), proc.stderr
        assert str(clean) not in proc.stderr
    # an enrollment from a noisy clip: enrolled, and said (every later claim meets it)
    proc = cli("enroll", "george-noisy", str(noisy), "--model", "bundled", env=env)
    assert proc.returncode == 0 and "enrolled george-noisy" in proc.stdout, proc.stderr
    (said,) = [line for line in proc.stderr.splitlines() if "noisy:" in line]
    assert said.startswith(f"warning: {noisy}: noisy: ") and "enrolled from it" in said


def test_half_a_second_of_sound_is_too_little_to_estimate_and_16_bit_silence_is_silence() -> None:
    wave, rate = _digits()
    busy = _noisy(wave, 10)  # no pause of digital silence anywhere
    assert quality.snr_db(busy[: int(0.4 * rate)], rate) is None  # under MIN_FRAMES of sound
    assert quality.snr_db(busy[: int(0.6 * rate)], rate) is not None
    # pauses of +-1 step of 16-bit samples (dither) at 48 kHz are digital silence, as zeros
    # are: the frames' mean power is what is compared with SILENCE_DB, not their sum
    up = soxr.resample(wave, rate, 48_000).astype(np.float32)
    dither = np.random.default_rng(0).integers(-1, 2, 48_000) / 32768
    zeros = quality.snr_db(np.r_[up, np.zeros(48_000), up].astype(np.float32), 48_000)
    dithered = quality.snr_db(np.r_[up, dither, up].astype(np.float32), 48_000)
    assert zeros is not None and dithered == pytest.approx(zeros, abs=1.0)


def test_a_flat_top_is_clip_run_equal_samples_at_either_peak_from_the_first_sample() -> None:
    t = np.arange(8000)
    base = (0.5 * np.sin(2 * np.pi * t / 97)).astype(np.float32)  # peaks under 0.9
    runs = base.copy()
    for start in range(100, 8000, 400):  # runs of one fewer than a flat top: no clipping
        runs[start : start + quality.CLIP_RUN - 1] = 0.9
    assert quality.clipped_share(runs) == 0.0
    # a recording that begins clipped, then clips again: both runs are flat tops
    flat = base.copy()
    flat[:5] = -0.9
    flat[50 : 50 + quality.CLIP_RUN] = -0.9
    assert quality.clipped_share(flat) == pytest.approx((5 + quality.CLIP_RUN) / flat.shape[0])


def test_the_band_reads_the_whole_clip_past_a_dc_offset_and_silence_has_none() -> None:
    wave, rate = _digits()
    # measured at the clip's own rate: 8 kHz holds up to 4 kHz, whatever the rate it is read at
    assert quality.measure(wave, rate, speech_s=3.0).bandwidth_hz <= rate / 2
    up = soxr.resample(wave, rate, 16_000).astype(np.float32)
    band = quality.bandwidth_hz(up, 16_000)
    # a recording that opens with seconds of silence: its band is its speech's
    opening = np.r_[np.zeros(3 * 16_000, np.float32), up]
    assert quality.bandwidth_hz(opening, 16_000) == pytest.approx(band, abs=100)
    # a quiet recording from a microphone with a DC offset: not narrow band
    offset = quality.measure(0.05 * up + 0.1, 16_000, speech_s=3.0)
    assert offset.bandwidth_hz == pytest.approx(band, abs=100)
    assert not any(w.startswith("narrow band") for w in offset.warnings)
    # digital silence holds no band
    assert quality.bandwidth_hz(np.zeros(16_000, np.float32), 16_000) is None


def test_each_warning_is_raised_at_its_bound_and_the_json_keeps_the_measures() -> None:
    fine = quality.Signals(snr_db=30.0, clipped=0.0, bandwidth_hz=4000.0)
    assert quality.judged(fine, quality.SHORT_SPEECH_S).warnings == ()
    assert quality.judged(quality.Signals(None, 0.0, None), 3.0).warnings == ()
    below = {
        "short": (fine, quality.SHORT_SPEECH_S - 0.1),
        "noisy": (quality.Signals(quality.NOISY_DB - 1, 0.0, 4000.0), 3.0),
        "clipped": (quality.Signals(30.0, quality.CLIPPED_SHARE, 4000.0), 3.0),  # at: over
        "narrow band": (quality.Signals(30.0, 0.0, quality.NARROW_HZ - 100), 3.0),
    }
    for kind, (measured, speech_s) in below.items():
        (said,) = quality.judged(measured, speech_s).warnings
        assert said.startswith(f"{kind}: "), said
    at_bounds = quality.Signals(quality.NOISY_DB, quality.CLIPPED_SHARE / 2, quality.NARROW_HZ)
    assert quality.judged(at_bounds, 3.0).warnings == ()
    q = quality.judged(quality.Signals(12.34, 0.01234, 3456.7), 2.3456)
    d = q.to_dict()
    assert d["speech_s"] == pytest.approx(q.speech_s, abs=5e-4)
    assert d["snr_db"] == pytest.approx(q.snr_db, abs=0.05)
    assert d["clipped"] == pytest.approx(q.clipped, abs=5e-5)
    assert d["bandwidth_hz"] == pytest.approx(q.bandwidth_hz, abs=0.5)
    assert d["warnings"] == list(q.warnings) == [q.warnings[0]]


def test_enrollment_says_a_noisy_clip_and_never_reads_a_pipe_again(tmp_path: Path) -> None:
    """``enroll``'s quality lines: a noisy recording is said (a short one is said by the
    command's own warning, not twice); a pipe, already read for its embedding, is passed
    over: read again, it would wait for a writer for ever."""
    import os
    import threading

    from whichvoice.verification import enrollment_quality

    clean = human_clip(tmp_path, "george", range(0, 2))
    wave, rate = read_audio(clean)
    noisy = tmp_path / "noisy.wav"
    sf.write(noisy, _noisy(wave, 0), rate)
    assert enrollment_quality([clean], [0.5]) == []
    (line,) = enrollment_quality([clean, noisy], [3.0, 3.0])
    assert str(line).startswith(f"{noisy}: noisy: ") and "short" not in str(line)
    pipe = tmp_path / "pipe.wav"
    os.mkfifo(pipe)
    data = noisy.read_bytes()

    def write() -> None:
        with open(pipe, "wb") as f:
            f.write(data)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    assert enrollment_quality([pipe], [3.0]) == []
    with open(pipe, "rb") as f:  # what enroll would have read, still there
        assert f.read() == data
    writer.join(timeout=10)


def test_a_short_claim_is_said_once_and_an_accepted_one_by_its_quality(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """verify's stderr: a rejected short claim is said by the claims' warning alone; an
    accepted one, which that warning leaves out, keeps its quality's "short"."""
    from types import SimpleNamespace

    from click.testing import CliRunner

    from whichvoice.cli import app
    from whichvoice.cli.gallery import _quality_warned

    gallery = ["--gallery", str(tmp_path / "g.sqlite"), "--quiet"]
    clean = human_clip(tmp_path, "george", range(0, 2))
    short = tmp_path / "short.wav"  # a second of another speaker: short, and rejected
    sf.write(short, _digits("jackson")[0][:8000], 8000)
    runner = CliRunner()
    enrolled = runner.invoke(app, ["enroll", "george", str(clean), "--model", "bundled", *gallery])
    assert enrolled.exit_code == 0, enrolled.output
    said = runner.invoke(app, ["verify", "george", str(short), *gallery])
    assert said.exit_code == 1 and "\treject\t" in said.stdout, said.output
    lines = [line for line in said.stderr.splitlines() if str(short) in line]
    assert len(lines) == 1 and "claims under" in lines[0], said.stderr
    capsys.readouterr()
    measured = quality.Signals(snr_db=30.0, clipped=0.0, bandwidth_hz=4000.0)
    accepted = SimpleNamespace(path="a.wav", accept=True, speech_s=1.0,
                               quality=quality.judged(measured, 1.0))  # fmt: skip
    assert list(_quality_warned([accepted], short_said=True)) == [accepted]
    assert "a.wav: short: 1.0 s of speech" in capsys.readouterr().err


def test_a_dc_offset_is_no_noise() -> None:
    """A cheap sound card's offset is inaudible: the estimate reads past it (a mutation
    round: 3 % of full scale read a clean recording as noisy)."""
    wave, rate = _digits("jackson")
    clean = quality.snr_db(wave, rate)
    for offset in (0.01, 0.03):
        shifted = quality.measure(wave + np.float32(offset), rate, speech_s=3.0)
        assert abs(shifted.snr_db - clean) < 1.0 and shifted.warnings == (), offset

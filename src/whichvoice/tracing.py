"""Source tracing: which engine family made a clip, and "unknown" for one it never saw.

An *engine head* reads an encoder's clip embeddings (the encoder stays as it is): a
multinomial logistic regression over the engine families it was fitted on (scikit-learn),
and an open-set score with a threshold. A clip whose score is under the threshold is answered
``"engine": "unknown"``, with the most likely known family beside it.

Open-set scores (higher: more like the known families):
- ``prototype``: the cosine of the clip's embedding to the nearest *voice prototype* (the
  mean embedding of one training voice) of the family the regression names. A clip of an
  unseen voice of a known engine still lies near that engine's other voices; a clip of an
  engine never seen lies near none of them;
- ``energy``: the log-sum-exp of the regression's logits (Liu et al., 2020).

A head may also read each clip's spectral fingerprint (``whichvoice.fingerprint``: how its
spectrum was made, which a speaker encoder is trained to ignore) beside the embedding, each
standardised and made unit length; the shipped head does.

The threshold keeps a share ``keep`` of the *dev* clips of known families (voices the head was
not fitted on, so it is set the way unseen voices of known engines score), never test data.

Fitting degrades each training clip once more with the training augmentation
(``whichvoice.augment``: noise, telephone band, reverberation, gain, clipping, speed; mp3 a
quarter of the time), so that the head also names the engines of degraded clips; evaluation's
conditions (``whichvoice.conditions``) are other code.

A head is a folder: ``engine.json`` (families, the encoder it reads, score, threshold, how it
was fitted) and ``engine.safetensors`` (the regression and the prototypes). No pickle.
"""

from __future__ import annotations

import functools
import logging
import os
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from whichvoice.audio import (
    MIN_SPEECH_S,
    SAMPLE_RATE,
    AudioSource,
    Decoded,
    burst_error,
    check_judgeable,
    describe_source,
    inputs_of,
    read_audio,
    resample,
    with_speech,
)
from whichvoice.enginehead import (
    ENCODER_DEFAULT,
    ENGINE_JSON,
    ENGINE_WEIGHTS,
    FINGERPRINT_DEFAULT,
    KEEP,
    KEEP_DEFAULT,
    REGULARISATION_C,
    RUN_HEAD,
    RUN_HEAD_C,
    SCORE_DEFAULT,
    SCORES,
    UNKNOWN,
    EngineAnswer,
    EngineHead,
    EngineHeadError,
    fit_head,
)
from whichvoice.errors import SilentAudioError, WhichvoiceError
from whichvoice.fingerprint import recording_fingerprint
from whichvoice.quality import Signals, signals

if TYPE_CHECKING:  # for the hints only (whichvoice.encoders sits above this module)
    from whichvoice.encoders import Encoder

__all__ = [
    "ENCODER_DEFAULT",
    "ENGINE_JSON",
    "ENGINE_WEIGHTS",
    "FINGERPRINT_DEFAULT",
    "KEEP",
    "KEEP_DEFAULT",
    "REGULARISATION_C",
    "RUN_HEAD",
    "RUN_HEAD_C",
    "SCORES",
    "SCORE_DEFAULT",
    "UNKNOWN",
    "EngineAnswer",
    "EngineHead",
    "EngineHeadError",
    "embed_and_trace",
    "embed_with_fingerprints",
    "fit_head",
    "head_for",
    "trace",
]

log = logging.getLogger(__name__)


def trace(
    sources: AudioSource | Iterable[AudioSource],
    *,
    model: Encoder | str | os.PathLike = "auto",
    head: str | os.PathLike | None = None,
) -> list[EngineAnswer | WhichvoiceError]:
    """Which engine family made each of ``sources`` (paths, URLs, bytes, ``Decoded``): one
    EngineAnswer each, or the WhichvoiceError of a source that could not be used, in order, as
    ``whichvoice trace`` answers. ``model``: an encoder name (``auto``, whose resemblyzer part
    the shipped head reads), a run, or a loaded encoder; ``head``: a folder of ``trace-fit``'s
    (default: the head that reads ``model``, ``head_for``). Raises EngineHeadError when no
    head reads the encoder."""
    from whichvoice.encoders import load_encoder, model_id

    encoder = model if hasattr(model, "embed_many") else load_encoder(model)
    fitted = head_for(encoder, head)
    if fitted is None:
        raise EngineHeadError(
            f"no engine head reads {model_id(encoder)}'s embeddings: use model='auto' (or "
            "'resemblyzer'), or a head fitted on it (trace-fit)"
        )
    return [r if isinstance(r, WhichvoiceError) else a
            for r, a, _ in embed_and_trace(encoder, fitted, sources, hear_speech=True)]  # fmt: skip


def embed_and_trace(
    encoder: Encoder,
    head: EngineHead | None,
    sources: Iterable[AudioSource],
    *,
    batch: int = 32,
    hear_speech: bool = False,
    measure: bool = False,
) -> Iterator[
    tuple[tuple[np.ndarray, float] | WhichvoiceError, EngineAnswer | None, Signals | None]
]:
    """Each source's ``encoder.embed_many`` result, with a ``head`` its engine answer (None
    without a head or for an input that failed), and with ``measure`` what its samples read
    (``quality.signals``; None otherwise or for an input that failed), in order; a clip with
    too little speech is a SilentAudioError (``audio.with_speech``), for identify and trace
    alike. A head that reads fingerprints takes them from the same decode as the embedding,
    and the measures too (``embed_with_fingerprints``). ``hear_speech`` (trace): a clip of a
    second or more in which silero-vad, when installed, hears no speech is a SilentAudioError too
    (``prototypes.hears_no_speech``, enrollment's rule): the head knows TTS voices and
    people, not music, which it named after an engine with a probability over 0.9 (a
    review). Identify leaves it out: it costs about 11 ms of CPU a second of audio."""
    sources = list(inputs_of(sources))  # each result is checked against its source
    reads_fingerprint = head is not None and head.reads_fingerprint
    if not (reads_fingerprint or (head is not None and hear_speech) or measure):
        results = ((r, None, None) for r in encoder.embed_many(sources, batch=batch))
    else:
        results = embed_with_fingerprints(
            encoder, sources, batch=batch, hear_speech=head is not None and hear_speech,
            fingerprint=reads_fingerprint, measure=measure,
        )  # fmt: skip
    for src, (r, fp, measured) in zip(sources, results, strict=True):
        r = with_speech(src, r)
        if isinstance(r, WhichvoiceError):
            yield r, None, None
        elif head is None:
            yield r, None, measured
        else:
            yield r, head.answer(r[0], None if fp is None else fp[None])[0], measured


def embed_with_fingerprints(
    encoder,
    sources: Iterable[AudioSource],
    *,
    batch: int = 32,
    hear_speech: bool = False,
    fingerprint: bool = True,
    measure: bool = False,
) -> Iterator[tuple[tuple[np.ndarray, float] | WhichvoiceError, np.ndarray | None, Signals | None]]:
    """Each source's ``encoder.embed_many`` result, its spectral fingerprint (None for an
    input that failed, and without ``fingerprint``: decoded here for silero-vad or the
    measures alone) and with ``measure`` what its samples read (``quality.signals``), in
    order, from one decode: sources are decoded and fingerprinted on worker threads a chunk
    of ``batch`` ahead, and the decoded audio feeds one ``embed_many`` pipeline (each file is
    read once; a few chunks of decoded audio are held at a time)."""
    from whichvoice.runtime import VoiceModel  # modules that load torch: only when used
    from whichvoice.runtime.model import prepared_chunks

    native = isinstance(encoder, VoiceModel)  # a trained run reads each file at its own rate
    waiting: deque = deque()  # each source read so far: its fingerprint, or its error

    def decoded() -> Iterator[Decoded]:
        prepare = functools.partial(
            _decoded_fingerprint, native=native, hear_speech=hear_speech,
            fingerprint=fingerprint, measure=measure,
        )  # fmt: skip
        for _, prepared in prepared_chunks(prepare, sources, batch, 0):
            for p in prepared:
                waiting.append(p if isinstance(p, WhichvoiceError) else p[1:])
                if not isinstance(p, WhichvoiceError):
                    yield p[0]

    for r in encoder.embed_many(decoded()):  # its own batches; ``batch`` paces the decoding
        while isinstance(waiting[0], WhichvoiceError):
            yield waiting.popleft(), None, None
        fp, measured = waiting.popleft()
        yield (r, None, None) if isinstance(r, WhichvoiceError) else (r, fp, measured)
    for left in waiting:  # the inputs after the last one embedded could not be read
        if not isinstance(left, WhichvoiceError):
            raise EngineHeadError("the encoder answered fewer inputs than it was given")
        yield left, None, None


def _decoded_fingerprint(
    source: AudioSource,
    *,
    native: bool,
    hear_speech: bool = False,
    fingerprint: bool = True,
    measure: bool = False,
) -> tuple[Decoded, np.ndarray | None, Signals | None]:
    """A source decoded for the encoder (at 16 kHz, or at its own rate when ``native``;
    named as the source), its fingerprint (None without ``fingerprint``) and with
    ``measure`` what its samples read at their own rate (``quality.signals``);
    ``hear_speech``: see ``embed_and_trace``. Decoded for the measures alone, its speech is
    the encoder's to find, as in the file itself; held at 16 kHz, a few chunks of long
    recordings at 48 kHz held 1 GB more (a review)."""
    name = describe_source(source)
    wave, rate = read_audio(source)
    measured = signals(wave, rate) if measure else None
    if not (fingerprint or hear_speech):  # the encoder judges it, as it judges its file
        if native:
            return Decoded(wave, rate, name), None, measured
        return Decoded(resample(wave, rate, SAMPLE_RATE), SAMPLE_RATE, name), None, measured
    check_judgeable(wave, rate, name)  # a tone, a hum, noise: no engine for a square wave
    at16k = resample(wave, rate, SAMPLE_RATE)
    decoded = Decoded(wave, rate, name) if native else Decoded(at16k, SAMPLE_RATE, name)
    from whichvoice.features import FeatureConfig, trim_silence

    # the speech as the bundled encoder keeps it, whatever the encoder: resemblyzer's own
    # measure kept 50 ms of sound in a second of silence as enough, and the head named it
    speech_s = trim_silence(at16k, FeatureConfig()).shape[0] / SAMPLE_RATE
    if speech_s < MIN_SPEECH_S:
        raise burst_error(name, speech_s)
    if hear_speech:
        from whichvoice.prototypes import hears_no_speech

        if hears_no_speech(at16k):
            raise SilentAudioError(f"{name}: no speech found (silero-vad hears none)")
    fp = recording_fingerprint(at16k) if fingerprint else None
    return decoded, fp, measured


def augmented(source, seed: int) -> Decoded:
    """A copy of a clip degraded by the training augmentation (one draw of
    ``whichvoice.augment``'s parts, mp3 at 16-48 kbit/s a quarter of the time), 16 kHz."""
    import torch

    from whichvoice.augment import AugmentConfig, augment_batch, mp3_roundtrip

    wave, rate = read_audio(source)
    wave = resample(wave, rate, SAMPLE_RATE)
    rng = np.random.default_rng(seed)
    if rng.random() < 0.25:
        wave, rate = mp3_roundtrip(wave, SAMPLE_RATE, int(rng.choice([16, 24, 32, 48])))
        wave = resample(wave, rate, SAMPLE_RATE)
    g = torch.Generator().manual_seed(seed)
    x = augment_batch(torch.from_numpy(np.ascontiguousarray(wave))[None], AugmentConfig(), g)
    y = x[0].numpy()
    peak = float(np.abs(y).max())
    return Decoded((y / peak * 0.9 if peak > 1 else y).astype(np.float32), SAMPLE_RATE,
                   f"{source} (augmented)")  # fmt: skip


def embed_all(
    encoder,
    sources: Iterable,
    *,
    progress: bool = False,
    what: str = "clips",
    fingerprint: bool = False,
    left_out: list[str] | None = None,
):
    """(embeddings (n, dim) of the inputs that have speech, their indices in ``sources``,
    their fingerprints (n, fingerprint.DIM) from the same decode, or None without
    ``fingerprint``); each input left out adds why to ``left_out``."""
    left_out = [] if left_out is None else left_out
    from tqdm import tqdm

    sources = list(sources)
    rows, kept, fps = [], [], []
    results = (embed_with_fingerprints(encoder, sources) if fingerprint
               else ((r, None, None) for r in encoder.embed_many(sources)))  # fmt: skip
    for i, (r, fp, _) in enumerate(tqdm(results, total=len(sources), desc=what,
                                     disable=None if progress else True)):  # fmt: skip
        if isinstance(r, WhichvoiceError):
            left_out.append(str(r))
            continue
        rows.append(r[0])
        kept.append(i)
        fps.append(fp)
    if not rows:
        raise EngineHeadError(f"no {what} with speech to embed")
    return np.stack(rows).astype(np.float32), kept, np.stack(fps) if fingerprint else None


@dataclass(frozen=True)
class Labelled:
    """Clips with their two-level labels."""

    paths: list[Path]
    families: list[str]
    voices: list[str]

    def subset(self, keep: Sequence[int]) -> Labelled:
        return Labelled([self.paths[i] for i in keep], [self.families[i] for i in keep],
                        [self.voices[i] for i in keep])  # fmt: skip


def corpus_clips(corpus: str | os.PathLike) -> Labelled:
    """A corpus's clips (its ``manifest.jsonl``) with their families and voices."""
    from whichvoice.corpus import MANIFEST, read_manifest
    from whichvoice.voices.families import engine_family

    corpus = Path(corpus)
    if not (corpus / MANIFEST).is_file():
        raise EngineHeadError(f"{corpus}: no {MANIFEST} (make a corpus with `whichvoice synth` "
                              "or `whichvoice import-corpus`)")  # fmt: skip
    clips = read_manifest(corpus / MANIFEST)
    families = [engine_family(c.voice, c.engine) for c in clips]
    if UNKNOWN in families:
        raise EngineHeadError(
            f"{corpus}: a family called {UNKNOWN!r}, which is the answer for an engine the "
            "head does not know: import it under another name"
        )
    return Labelled([corpus / c.path for c in clips], families, [c.voice for c in clips])


def split_dev(clips: Labelled, seed: int = 0) -> tuple[Labelled, Labelled]:
    """(train, dev) from one corpus: a family of 3 voices or more gives a third of its voices
    (at least one) to dev, so dev holds voices the head never saw; a family of fewer voices
    gives a fifth of each voice's clips."""
    rng = np.random.default_rng(seed)
    by_family: dict[str, list[str]] = {}
    for f, v in zip(clips.families, clips.voices, strict=True):
        if v not in by_family.setdefault(f, []):
            by_family[f].append(v)
    dev_voices: set[str] = set()
    for voices in by_family.values():
        if len(voices) >= 3:
            dev_voices |= set(rng.permutation(sorted(voices))[: max(1, len(voices) // 3)])
    train, dev = [], []
    for i, (f, v) in enumerate(zip(clips.families, clips.voices, strict=True)):
        if v in dev_voices or (len(by_family[f]) < 3 and rng.random() < 0.2):
            dev.append(i)
        else:
            train.append(i)
    return clips.subset(train), clips.subset(dev)


def fit_from_clips(
    encoder,
    train: Labelled,
    dev: Labelled,
    *,
    keep: float = KEEP,
    score_kind: str = "prototype",
    c: float = RUN_HEAD_C,
    augment: bool = True,
    fingerprint: bool = FINGERPRINT_DEFAULT,
    progress: bool = False,
) -> EngineHead:
    """An engine head for ``encoder``: fitted on ``train``'s clips (and, with ``augment``, one
    degraded copy of each) with the regression's inverse regularisation ``c``, its threshold
    set on ``dev``'s; with ``fingerprint``, a head that reads each clip's spectral fingerprint
    beside its embedding."""
    from whichvoice.encoders import model_id
    from whichvoice.enginehead import require_fit_packages

    require_fit_packages(fingerprint=fingerprint)  # before any embedding
    left_out: list[str] = []  # why each clip could not be embedded
    emb, kept, fp = embed_all(encoder, train.paths, progress=progress, what="training clips",
                              fingerprint=fingerprint, left_out=left_out)  # fmt: skip
    families = [train.families[i] for i in kept]
    voices = [train.voices[i] for i in kept]
    if augment:
        copies = (augmented(train.paths[i], seed=i) for i in kept)
        aug, got, aug_fp = embed_all(encoder, copies, progress=progress, what="degraded copies",
                                     fingerprint=fingerprint)  # fmt: skip
        emb = np.concatenate([emb, aug])
        fp = None if fp is None else np.concatenate([fp, aug_fp])
        families += [train.families[kept[j]] for j in got]
        voices += [train.voices[kept[j]] for j in got]
    head = fit_head(emb, families, voices, model_id(encoder), c=c, score_kind=score_kind,
                    fingerprints=fp)  # fmt: skip
    dev_emb, dev_kept, dev_fp = embed_all(encoder, dev.paths, progress=progress,
                                          what="dev clips", fingerprint=fingerprint,
                                          left_out=left_out)  # fmt: skip
    head = head.with_threshold(dev_emb, [dev.families[i] for i in dev_kept], keep,
                               fingerprints=dev_fp)  # fmt: skip
    unseen = sorted({dev.voices[i] for i in dev_kept} - set(voices))
    if not unseen:  # a threshold set on voices it trained on keeps nearly everything
        log.warning(
            "the engine head's threshold was set on clips of voices it was trained on (no "
            "family has 3 voices or more, or no --dev-corpus of other voices): it will answer "
            'few clips of an engine it never saw "unknown"; give each family 3 voices or '
            "more, or a dev corpus of voices it never heard"
        )
    fitted = {"augmented": augment, "left_out": left_out, "dev_unseen_voices": len(unseen)}
    return replace(head, fitted=head.fitted | fitted)


def shipped_head() -> Path:
    """The engine head shipped with the package (``benchmarks/trace.py --write``)."""
    from importlib import resources

    return Path(str(resources.files("whichvoice").joinpath("data/engine")))


def load_head(folder: str | os.PathLike | None, encoder) -> EngineHead:
    """The head in ``folder`` (None: the shipped one), checked against the encoder whose
    embeddings it will read."""
    return bind(EngineHead.load(folder if folder is not None else shipped_head()), encoder)


def trace_fit_settings(model) -> dict:
    """``trace-fit``'s settings where it is not told them (``fit_from_clips``'s keywords):
    for a trained run (``model`` a run folder rather than the name of a shipped encoder) a
    run head's, as ``train --target both`` fits it and as ``predict`` can read it (no
    fingerprint); else the shipped head's."""
    from whichvoice.encoders import BUNDLED_NAMES, PRETRAINED
    from whichvoice.fusion import AUTO

    if model is not None and str(model) not in (AUTO, *BUNDLED_NAMES, *PRETRAINED):
        return {"keep": KEEP, "score_kind": "prototype", "c": RUN_HEAD_C, "fingerprint": False}
    return {"keep": KEEP_DEFAULT, "score_kind": SCORE_DEFAULT, "c": REGULARISATION_C,
            "fingerprint": FINGERPRINT_DEFAULT}  # fmt: skip


def trace_fit_encoder(model):
    """``trace-fit``'s encoder: ``model``'s; without one the shipped head's
    (``ENCODER_DEFAULT``), else, where that one is not installed, the bundled encoder (with a
    warning)."""
    from whichvoice.encoders import load_encoder
    from whichvoice.pretrained import EncoderUnavailableError

    if model is not None:
        return load_encoder(model)
    try:
        return load_encoder(ENCODER_DEFAULT)
    except EncoderUnavailableError as e:
        log.warning("using the bundled encoder: %s", e)
        return load_encoder("bundled")


def bind(head: EngineHead, encoder) -> EngineHead:
    """``head``, checked against the encoder whose embeddings it will read (reading its
    columns of a fused encoder's embedding when it was fitted on one of the parts)."""
    from whichvoice.encoders import model_id

    part = _part_of(encoder, head.encoder)
    if part is not None:  # a part of a fused encoder: the head reads its columns
        return replace(head, part=part)
    if head.encoder != model_id(encoder):
        raise EngineHeadError(
            f"the engine head reads embeddings of {head.encoder}, not of {model_id(encoder)}: "
            "pass the --model it was fitted with, or fit one for this encoder (`whichvoice "
            "trace-fit`)"
        )
    return head


def _part_of(encoder, owner: str) -> tuple[int, int] | None:
    """The columns of ``encoder``'s embedding made by the part whose model id is ``owner``,
    when ``encoder`` is a fused one holding it; else None."""
    from whichvoice.fusion import FusedEncoder

    if not isinstance(encoder, FusedEncoder):
        return None
    at = 0
    for part_id, dim in zip(encoder.config["parts"].values(), encoder.dims, strict=True):
        if part_id == owner:
            return at, at + dim
        at += dim
    return None


def head_for(encoder: Encoder, folder: str | os.PathLike | None = None) -> EngineHead | None:
    """The engine head to answer with beside ``encoder``'s identifications: ``folder``'s
    (which must read this encoder's embeddings), else the run's own (``RUN/engine``, from
    ``train --target both``), else the shipped one when it reads them, else None."""
    if folder is not None:
        return load_head(folder, encoder)
    own = getattr(encoder, "root", None)
    if own is not None and (Path(own) / RUN_HEAD / ENGINE_JSON).is_file():
        return load_head(Path(own) / RUN_HEAD, encoder)  # a run's own (``train --target both``)
    try:
        return load_head(None, encoder)
    except EngineHeadError:
        return None

"""The classifier's open-set answer: is a clip one of the model's voices at all?

A closed-set classifier always names one of its voices, also for a voice it never heard. The
open-set score of a clip is a cosine between an embedding of the clip and the *prototype* of
the voice the classifier named: the mean embedding of that voice's dev clips. A clip under the
threshold is answered ``unknown``, with the nearest voice named beside it.

Which embedding (``OpenSet.encoder``): by default the bundled speaker encoder's embedding of the
clip's middle window (``probe_window``). The encoder was trained on many voices to tell voices
apart, also voices it never heard, where the classifier's own embedding only ever separated its
own few and puts a stranger near one of them: on dev, the encoder's cosine turned away every
clip of 16 other TTS voices (160 of 160, whole clips and 2 s phrases) against 74 % and 49 % for
the classifier's own embedding, at the same 99 % of the classifier's own voices kept (stop 55,
``/work/notes/s55``). Its cost: the encoder on one window a clip (about 1.8 ms in
onnxruntime or torch, 0.8 ms int8, one thread: ``benchmarks/limits.py``). ``encoder``
None: the run's own embedding (the mean of its windows'), as every open set was fitted before.

The prototypes and the threshold are fitted on dev data only (clips of the model's voices on
dev sentences, and clips of other voices) and stored with the run as ``openset.json``; the
threshold keeps a chosen share of the known voices' dev clips (``keep``, 99 % by default).
Each dev clip is scored against its voice's prototype made without it (leave one out): a
clip inside the mean it is scored against scores higher than a new clip of its voice, so a
threshold set on those scores turned away many new clips when a voice had few dev clips (a
review: 6 a voice, 10 of 24 new clips of known voices answered unknown). Only clips the
classifier names right set the threshold: a misnamed clip's score is against another voice's
prototype, and one such clip had set a threshold under every stranger's score.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from whichvoice.audio import Decoded, describe_source, read_audio
from whichvoice.errors import NothingReadError, WhichvoiceError
from whichvoice.files import write_json
from whichvoice.scoring import proportion
from whichvoice.text import counted

log = logging.getLogger(__name__)

OPENSET = "openset.json"
KEEP = 0.99  # share of the known voices' dev clips kept by the default threshold
UNKNOWN = "unknown"


@dataclass(frozen=True)
class OpenSet:
    """Prototypes (one L2-normalised embedding per label, in the model's label order), the
    threshold on the cosine to the named voice's prototype, and how it was fitted."""

    labels: list[str]
    prototypes: np.ndarray  # float32 (n_labels, dim)
    threshold: float  # for clips of more than SHORT_WINDOWS windows
    fitted: dict  # counts and dev rates: what the threshold does on the data it came from
    short_threshold: float | None = None  # for clips of SHORT_WINDOWS windows or fewer
    # the model id of the encoder whose embedding of the middle window is scored (the bundled
    # encoder's, ``runtime.load``); None: the run's own embedding, the mean of its windows'
    encoder: str | None = None

    def score(self, embedding: np.ndarray, voice: str) -> float:
        """The cosine of a clip's L2-normalised embedding to ``voice``'s prototype."""
        return float(self.prototypes[self.labels.index(voice)] @ embedding)

    def threshold_for(self, windows: int) -> float:
        """The threshold for a clip of ``windows`` windows: a short clip's embedding is the
        mean of fewer windows (the run's own embedding), or the encoder's of a window cut
        from less speech, so it has its own threshold, fitted on 2 s cuts."""
        if windows <= SHORT_WINDOWS and self.short_threshold is not None:
            return self.short_threshold
        return self.threshold

    def to_dict(self) -> dict:
        return {
            "score": "cosine to the prototype of the voice the classifier names",
            "embedding": "the run's own, mean of the windows"
            if self.encoder is None
            else "the encoder's, of the middle window",
            "encoder": self.encoder,
            "threshold": round(self.threshold, 6),
            "short_threshold": None
            if self.short_threshold is None
            else round(self.short_threshold, 6),
            "short_windows": SHORT_WINDOWS,
            "labels": self.labels,
            "prototypes": np.round(self.prototypes.astype(np.float64), 7).tolist(),
            "fitted": self.fitted,
        }

    @classmethod
    def from_dict(cls, d: dict) -> OpenSet:
        short = d.get("short_threshold")
        return cls(
            list(d["labels"]),
            np.asarray(d["prototypes"], np.float32),
            float(d["threshold"]),
            dict(d.get("fitted", {})),
            None if short is None else float(short),
            None if d.get("encoder") is None else str(d["encoder"]),
        )


def load_openset(run: str | os.PathLike) -> OpenSet | None:
    """The run's ``openset.json``, or None when it has none (then every answer is closed-set)."""
    import json

    path = Path(run) / OPENSET
    if not path.is_file():
        return None
    try:
        return OpenSet.from_dict(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError) as e:
        raise WhichvoiceError(f"{path}: not a usable open-set file ({e})") from e


def probe_window(windows: np.ndarray) -> np.ndarray:
    """The window of a clip's windows that an encoder open set embeds: the middle one,
    (1, *window_shape)."""
    mid = len(windows) // 2
    return windows[mid : mid + 1]


def _embeddings(model, sources: list, encoder=None) -> tuple[np.ndarray, list[str], list[int]]:
    """(L2-normalised embeddings, the classifier's answers, indices of usable sources): the
    run's own file embeddings, or with ``encoder`` its embedding of each clip's middle window
    (``probe_window``)."""
    embs, named, used = [], [], []
    if encoder is None:
        embedded = model.embed_many(sources)
    else:

        def probe(src):
            try:
                windows, _ = model.windows(src)
            except WhichvoiceError as e:
                return e
            return (encoder.window_embeddings(probe_window(windows))[0], 0.0)

        embedded = map(probe, sources)
    left_out: list[WhichvoiceError] = []
    for i, (emb, pred) in enumerate(zip(embedded, model.identify_many(sources), strict=True)):
        if isinstance(emb, WhichvoiceError) or isinstance(pred, WhichvoiceError):
            left_out.append(emb if isinstance(emb, WhichvoiceError) else pred)
            continue
        embs.append(emb[0])
        named.append(pred.voice)
        used.append(i)
    if left_out:  # named, as every command names what it cannot read
        shown = "; ".join(str(e) for e in left_out[:3]) + ("; ..." if len(left_out) > 3 else "")
        log.warning("%s of %d could not be used, left out: %s",
                    counted(len(left_out), "clip"), len(sources), shown)  # fmt: skip
    if not embs:  # none usable (reshape(-1, 0) raised: a traceback, review)
        return np.zeros((0, 0), np.float32), named, used
    return np.stack(embs).astype(np.float32), named, used


SHORT_S = 2.0  # s: short dev clips (a phrase, not a sentence) fit the short threshold
SHORT_WINDOWS = 2  # clips of this many windows or fewer are judged by the short threshold


def _middle(source, seconds: float):
    """The middle ``seconds`` of a recording, as a Decoded source (the whole when shorter)."""
    wave, rate = read_audio(source)
    n = int(seconds * rate)
    start = max(0, (wave.shape[0] - n) // 2)
    return Decoded(wave[start : start + n], rate, f"{describe_source(source)} (middle {seconds} s)")


def fit_openset(
    model,
    known: list[tuple[Path | str, str]],
    unknown: list[Path | str],
    *,
    keep: float = KEEP,
    encoder=None,
) -> OpenSet:
    """Prototypes from ``known`` (path, voice) dev clips of the model's voices, and the
    threshold that keeps ``keep`` of them; a short threshold that keeps ``keep`` of them cut
    to their middle ``SHORT_S`` seconds (a short clip's embedding is noisier: a threshold
    fitted on whole sentences alone would turn short phrases of known voices away).
    ``unknown`` dev clips of other voices give the share rejected at each (recorded, not
    used to set them). ``encoder``: a model with an embedding whose embedding of each clip's
    middle window is scored (the bundled encoder: ``load_model(runtime.bundled_encoder_dir())``);
    None: the model's own embedding."""
    if encoder is None and not model.has_embedding:
        raise WhichvoiceError(f"model {model.config['model']!r} has no embedding")
    if encoder is not None:
        check_probe_encoder(model, encoder)
    if not 0 < keep < 1:
        raise WhichvoiceError(f"keep {keep}: a share, between 0 and 1")
    embs, named, used = _embeddings(model, [p for p, _ in known], encoder)
    truth = [known[i][1] for i in used]
    short_embs, short_named, short_used = _embeddings(
        model, [_middle(known[i][0], SHORT_S) for i in used], encoder
    )
    missing = sorted(set(model.labels) - set(truth))
    if missing:
        raise WhichvoiceError(f"no usable dev clip of {', '.join(missing)}")
    prototypes = np.stack(
        [_unit(embs[[t == label for t in truth]].mean(axis=0)) for label in model.labels]
    )
    index = {label: i for i, label in enumerate(model.labels)}
    whole_scores = _held_out_scores(embs, truth, embs, named, range(len(used)))
    short_scores = _held_out_scores(embs, truth, short_embs, short_named, short_used)
    if not whole_scores.size:
        raise WhichvoiceError(
            "no voice has 2 dev clips that the classifier names right: each is scored against "
            "its voice's other clips; give more dev clips"
        )
    threshold = float(np.quantile(whole_scores, 1 - keep, method="lower"))
    short_threshold = (
        float(np.quantile(short_scores, 1 - keep, method="lower")) if short_scores.size else None
    )
    _warn_fit(len(used), sum(map(str.__eq__, named, truth)), whole_scores.size, keep)
    out_embs, out_named, out_used = (
        _embeddings(model, list(unknown), encoder) if unknown else (None, [], [])
    )
    if unknown and not out_used:
        raise NothingReadError(
            f"none of the {counted(len(unknown), 'clip')} of other voices could be used "
            "(named above); nothing was saved"
        )
    short_rule = threshold if short_threshold is None else short_threshold  # as threshold_for
    out_scores = (
        np.einsum("nd,nd->n", out_embs, prototypes[[index[v] for v in out_named]])
        if out_named
        else np.zeros(0)
    )
    short_out_embs, short_out_named, _ = (
        _embeddings(model, [_middle(unknown[i], SHORT_S) for i in out_used], encoder)
        if out_named
        else (None, [], [])
    )
    short_out_scores = (
        np.einsum("nd,nd->n", short_out_embs, prototypes[[index[v] for v in short_out_named]])
        if short_out_named
        else np.zeros(0)
    )
    fitted = {
        "rule": f"keep {keep:g} of the known voices' dev clips (whole) that the classifier "
        f"names right, each scored against its voice's other clips; the short threshold "
        f"keeps {keep:g} of their middle {SHORT_S:g} s",
        "known_clips": len(used),
        # the clips that set the thresholds, each scored against its voice's other clips
        "known_scored": int(whole_scores.size),
        "known_kept": proportion(int((whole_scores >= threshold).sum()), whole_scores.size),
        "known_short_kept": proportion(
            int((short_scores >= short_threshold).sum()), short_scores.size
        )
        if short_threshold is not None
        else None,
        "known_short_scored": int(short_scores.size),
        "known_named_right": proportion(sum(map(str.__eq__, named, truth)), len(used)),
        "unknown_clips": len(out_named),
        # clips named in a warning and left out: the command exits 1 for them, as any
        # command does for an input it could not use (it exited 0: review)
        "clips_left_out": len(known) - len(used) + len(unknown) - len(out_used),
        "unknown_rejected": proportion(int((out_scores < threshold).sum()), len(out_named))
        if out_named
        else None,
        "unknown_short_rejected": proportion(  # by the threshold predict would use
            int((short_out_scores < short_rule).sum()), len(short_out_named)
        )
        if short_out_named
        else None,
    }
    return OpenSet(
        list(model.labels),
        prototypes.astype(np.float32),
        threshold,
        fitted,
        short_threshold,
        None if encoder is None else encoder.model_id,
    )


def _held_out_scores(
    embs: np.ndarray, truth: list[str], probes: np.ndarray, named: list[str], rows
) -> np.ndarray:
    """The cosine of each probe (an embedding of the clip
    ``embs[rows[k]]``, or of its middle) to the prototype of its voice made without that clip,
    for the probes the classifier named right (``named``) of voices with 2 clips or more."""
    truth_arr = np.asarray(truth)
    sums = {label: embs[truth_arr == label].sum(axis=0) for label in set(truth)}
    counts = {label: int((truth_arr == label).sum()) for label in set(truth)}
    scores = [
        float(probes[k] @ _unit(sums[truth[row]] - embs[row]))
        for k, row in enumerate(rows)
        if named[k] == truth[row] and counts[truth[row]] >= 2
    ]
    return np.asarray(scores, np.float64)


def _warn_fit(clips: int, named_right: int, scored: int, keep: float) -> None:
    """Say what the threshold could not use, and when it is the lowest of too few scores."""
    if named_right < clips:
        log.warning("the classifier names %d of the %s another voice: left out of the threshold "
                    "(a misnamed clip is wrong whether kept or not)", clips - named_right,
                    counted(clips, "known dev clip"))  # fmt: skip
    if named_right > scored:
        log.warning("%s of voices with one dev clip named right: no clip of that voice is left "
                    "to score it against; left out of the threshold",
                    counted(named_right - scored, "clip"))  # fmt: skip
    needed = int(np.ceil(1 / (1 - keep) - 1e-9))
    if scored < needed:
        log.warning("the threshold is the lowest score of %s: a threshold that keeps %g of "
                    "new clips of the run's voices needs at least %d; expect it to keep fewer "
                    "of them", counted(scored, "known dev clip"), keep, needed)  # fmt: skip


def same_windows(a, b) -> bool:
    """Whether an encoder of features ``b`` can embed the stored windows of a model of
    features ``a`` (``FeatureConfig``s): the same kind, sample rate and window length."""
    return (a.name, a.sample_rate, a.window_s) == (b.name, b.sample_rate, b.window_s)


def check_probe_encoder(model, encoder) -> None:
    """Refuse an encoder whose windows are not the model's: the encoder embeds the model's
    own stored windows (``same_windows``)."""
    a, b = model.features, encoder.features
    if not encoder.has_embedding:
        raise WhichvoiceError(f"encoder {encoder.config['model']!r} has no embedding")
    if not same_windows(a, b):
        instead = (
            "use --encoder own" if model.has_embedding else "and it has no embedding of its own"
        )
        raise WhichvoiceError(
            f"the encoder takes {b.name} windows of {b.window_s:g} s at {b.sample_rate} Hz, "
            f"the model {a.name} windows of {a.window_s:g} s at {a.sample_rate} Hz: no open set "
            f"on the encoder for it; {instead}"
        )


def save_openset(run: str | os.PathLike, openset: OpenSet) -> Path:
    path = Path(run) / OPENSET
    write_json(path, openset.to_dict())
    return path


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)

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

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from whichvoice.audio import SAMPLE_RATE, Decoded, read_audio, resample
from whichvoice.errors import WhichvoiceError
from whichvoice.files import ensure_dir, write_atomic

ENGINE_JSON = "engine.json"
ENGINE_WEIGHTS = "engine.safetensors"
UNKNOWN = "unknown"
SCORES = ("prototype", "energy")
RUN_HEAD = "engine"  # a run's own head (``train --target both``), in this folder of the run
KEEP = 0.99  # share of the known families' dev clips the default threshold keeps


class EngineHeadError(WhichvoiceError):
    """An engine head that cannot be fitted, read or used with this encoder."""


@dataclass(frozen=True)
class EngineAnswer:
    """One clip's answer at the engine level."""

    engine: str  # a known family, or "unknown"
    confidence: float  # the regression's probability of the most likely known family
    known: bool
    nearest: str  # the most likely known family (also when the answer is "unknown")
    score: float  # the open-set score, compared with the head's threshold

    def to_dict(self) -> dict:
        return {
            "engine": self.engine,
            "engine_confidence": round(self.confidence, 6),
            "engine_known": self.known,
            "engine_nearest": self.nearest,
            "engine_score": round(self.score, 6),
        }


@dataclass(frozen=True)
class EngineHead:
    """A fitted engine head (see the module docstring)."""

    families: tuple[str, ...]
    coef: np.ndarray  # float32 (n_families, dim)
    intercept: np.ndarray  # float32 (n_families,)
    prototypes: np.ndarray  # float32 (n_voices, dim), unit length: one per training voice
    prototype_family: np.ndarray  # int64 (n_voices,): each prototype's family index
    encoder: str  # the model id (``encoders.model_id``) whose embeddings the head reads
    score_kind: str = "prototype"
    threshold: float = float("-inf")  # -inf: every clip is answered with a known family
    fitted: dict = field(default_factory=dict)
    # (start, stop): the columns of a fused embedding that hold the part this head reads
    # (``load_head`` with a fused encoder); None: the whole embedding
    part: tuple[int, int] | None = None

    def _view(self, embeddings: np.ndarray) -> np.ndarray:
        x = np.atleast_2d(np.asarray(embeddings, np.float32))
        return _unit(x if self.part is None else x[:, self.part[0] : self.part[1]])

    def logits(self, embeddings: np.ndarray) -> np.ndarray:
        return self._view(embeddings) @ self.coef.T + self.intercept

    def probabilities(self, embeddings: np.ndarray) -> np.ndarray:
        """Each family's probability, float (n_clips, n_families)."""
        z = self.logits(embeddings)
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)

    def scores(self, embeddings: np.ndarray, kind: str | None = None) -> np.ndarray:
        """The open-set score of each clip (higher: more like a known family)."""
        kind = kind or self.score_kind
        z = self.logits(embeddings)
        if kind == "energy":
            top = z.max(axis=1)
            return top + np.log(np.exp(z - top[:, None]).sum(axis=1))
        if kind != "prototype":
            raise EngineHeadError(f"unknown open-set score {kind!r}; valid: {', '.join(SCORES)}")
        named = z.argmax(axis=1)
        cos = self._view(embeddings) @ self.prototypes.T  # (n_clips, n_voices)
        same = self.prototype_family[None, :] == named[:, None]
        return np.where(same, cos, -np.inf).max(axis=1)

    def answer(self, embeddings: np.ndarray) -> list[EngineAnswer]:
        """The engine-level answer for each embedding, float (n_clips, dim)."""
        embeddings = np.atleast_2d(embeddings)
        probs = self.probabilities(embeddings)
        scores = self.scores(embeddings)
        out = []
        for p, s in zip(probs, scores, strict=True):
            best = int(p.argmax())
            known = bool(s >= self.threshold)
            family = self.families[best]
            out.append(EngineAnswer(family if known else UNKNOWN, float(p[best]), known,
                                    family, float(s)))  # fmt: skip
        return out

    def with_threshold(
        self, embeddings: np.ndarray, families: Sequence[str], keep: float = KEEP, kind=None
    ) -> EngineHead:
        """This head with the threshold that keeps ``keep`` of ``embeddings``' clips whose
        family is known: dev clips, never test ones."""
        kind = kind or self.score_kind
        mask = np.array([f in self.families for f in families])
        if not mask.any():
            raise EngineHeadError("no dev clip of a known engine family to set the threshold")
        scores = self.scores(np.asarray(embeddings)[mask], kind)
        threshold = float(np.quantile(scores, 1 - keep, method="lower"))
        fitted = self.fitted | {
            "threshold_rule": f"keeps {keep:.0%} of {int(mask.sum())} dev clips of known families",
            "dev_clips": int(mask.sum()),
            "keep": keep,
        }
        return replace(self, score_kind=kind, threshold=threshold, fitted=fitted)

    def to_dict(self) -> dict:
        return {
            "families": list(self.families),
            "encoder": self.encoder,
            "score": self.score_kind,
            "threshold": self.threshold,
            "fitted": self.fitted,
        }

    def save(self, folder: str | os.PathLike) -> Path:
        from safetensors.numpy import save

        folder = ensure_dir(Path(folder), "engine head")
        tensors = {
            "coef": np.ascontiguousarray(self.coef, np.float32),
            "intercept": np.ascontiguousarray(self.intercept, np.float32),
            "prototypes": np.ascontiguousarray(self.prototypes, np.float32),
            "prototype_family": np.ascontiguousarray(self.prototype_family, np.int64),
        }
        write_atomic(folder / ENGINE_WEIGHTS, save(tensors))
        write_atomic(folder / ENGINE_JSON, (json.dumps(self.to_dict(), indent=2) + "\n").encode())
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike) -> EngineHead:
        from safetensors.numpy import load

        folder = Path(folder)
        try:
            meta = json.loads((folder / ENGINE_JSON).read_text())
            t = load((folder / ENGINE_WEIGHTS).read_bytes())
        except FileNotFoundError:
            raise EngineHeadError(
                f"{folder}: no engine head here ({ENGINE_JSON} and {ENGINE_WEIGHTS}; "
                "`whichvoice trace-fit` makes one)"
            ) from None
        except (ValueError, KeyError, OSError) as e:
            raise EngineHeadError(f"{folder}: not a readable engine head ({e})") from None
        threshold = meta.get("threshold")
        return cls(
            tuple(meta["families"]),
            t["coef"],
            t["intercept"],
            t["prototypes"],
            t["prototype_family"],
            meta["encoder"],
            meta.get("score", "prototype"),
            float("-inf") if threshold is None else float(threshold),
            meta.get("fitted", {}),
        )


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def fit_head(
    embeddings: np.ndarray,
    families: Sequence[str],
    voices: Sequence[str],
    encoder: str,
    *,
    c: float = 1.0,
    score_kind: str = "prototype",
) -> EngineHead:
    """An engine head fitted on training clips' embeddings (n_clips, dim), each clip's family
    and voice; no threshold yet (``EngineHead.with_threshold``). Families weigh the same
    whatever their number of clips."""
    try:
        from sklearn.linear_model import LogisticRegression
    except ImportError:
        raise EngineHeadError(
            "fitting an engine head needs scikit-learn: `pip install whichvoice[pretrained]`"
        ) from None

    names = tuple(sorted(set(families)))
    if len(names) < 2:
        raise EngineHeadError(f"an engine head needs clips of 2 families or more, not {names}")
    x = _unit(embeddings)
    y = np.array([names.index(f) for f in families])
    # on standardised dimensions (a unit embedding's are small and unequal), folded back into
    # the weights afterwards so that the head reads unit embeddings as they come
    mean, scale = x.mean(axis=0), np.maximum(x.std(axis=0), 1e-6)
    model = LogisticRegression(C=c, class_weight="balanced", max_iter=5000)
    model.fit((x - mean) / scale, y)
    coef, intercept = model.coef_, model.intercept_
    if len(names) == 2:  # scikit-learn's binary model: one row, the log-odds of the second
        coef, intercept = (
            np.stack([-coef[0] / 2, coef[0] / 2]),
            np.r_[-intercept / 2, intercept / 2],
        )
    coef = coef / scale
    intercept = intercept - coef @ mean
    voice_names = sorted(set(voices))
    by_voice = {v: i for i, v in enumerate(voice_names)}
    idx = np.array([by_voice[v] for v in voices])
    prototypes = _unit(np.stack([x[idx == i].mean(axis=0) for i in range(len(voice_names))]))
    family_of = {v: f for v, f in zip(voices, families, strict=True)}
    proto_family = np.array([names.index(family_of[v]) for v in voice_names], np.int64)
    fitted = {
        "clips": len(y),
        "voices": len(voice_names),
        "clips_per_family": {n: int((y == i).sum()) for i, n in enumerate(names)},
        "regression": f"multinomial logistic regression on standardised dimensions, C={c}, "
        "families balanced",
    }
    return EngineHead(names, coef.astype(np.float32), intercept.astype(np.float32),
                      prototypes, proto_family, encoder, score_kind, float("-inf"),
                      fitted)  # fmt: skip


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


def embed_all(encoder, sources: Iterable, *, progress: bool = False, what: str = "clips"):
    """(embeddings (n, dim) of the inputs that have speech, their indices in ``sources``)."""
    from tqdm import tqdm

    sources = list(sources)
    rows, kept = [], []
    results = encoder.embed_many(sources)
    for i, r in enumerate(tqdm(results, total=len(sources), desc=what, disable=not progress)):
        if isinstance(r, WhichvoiceError):
            continue
        rows.append(r[0])
        kept.append(i)
    if not rows:
        raise EngineHeadError(f"no {what} with speech to embed")
    return np.stack(rows).astype(np.float32), kept


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
    return Labelled([corpus / c.path for c in clips],
                    [engine_family(c.voice, c.engine) for c in clips],
                    [c.voice for c in clips])  # fmt: skip


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
    augment: bool = True,
    progress: bool = False,
) -> EngineHead:
    """An engine head for ``encoder``: fitted on ``train``'s clips (and, with ``augment``, one
    degraded copy of each), its threshold set on ``dev``'s."""
    from whichvoice.encoders import model_id

    emb, kept = embed_all(encoder, train.paths, progress=progress, what="training clips")
    families = [train.families[i] for i in kept]
    voices = [train.voices[i] for i in kept]
    if augment:
        copies = (augmented(train.paths[i], seed=i) for i in kept)
        aug, got = embed_all(encoder, copies, progress=progress, what="degraded copies")
        emb = np.concatenate([emb, aug])
        families += [train.families[kept[j]] for j in got]
        voices += [train.voices[kept[j]] for j in got]
    head = fit_head(emb, families, voices, model_id(encoder), score_kind=score_kind)
    dev_emb, dev_kept = embed_all(encoder, dev.paths, progress=progress, what="dev clips")
    head = head.with_threshold(dev_emb, [dev.families[i] for i in dev_kept], keep)
    return replace(head, fitted=head.fitted | {"augmented": augment})


def shipped_head() -> Path:
    """The engine head shipped with the package (``benchmarks/trace.py --write``)."""
    from importlib import resources

    return Path(str(resources.files("whichvoice").joinpath("data/engine")))


def load_head(folder: str | os.PathLike | None, encoder) -> EngineHead:
    """The head in ``folder`` (None: the shipped one), checked against the encoder whose
    embeddings it will read."""
    return bind(EngineHead.load(folder if folder is not None else shipped_head()), encoder)


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


def head_for(encoder, folder: str | os.PathLike | None = None) -> EngineHead | None:
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

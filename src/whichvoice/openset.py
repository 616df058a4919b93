"""The classifier's open-set answer: is a clip one of the model's voices at all?

A closed-set classifier always names one of its voices, also for a voice it never heard. The
open-set score of a clip is the cosine between its embedding (the mean of its windows'
embeddings) and the *prototype* of the voice the classifier named: the mean embedding of
that voice's dev clips. A clip under the threshold is answered ``unknown``, with the nearest
voice named beside it.

The prototypes and the threshold are fitted on dev data only (clips of the model's voices on
dev sentences, and clips of other voices) and stored with the run as ``openset.json``; the
threshold keeps a chosen share of the known voices' dev clips (``keep``, 99 % by default).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from whichvoice.errors import WhichvoiceError
from whichvoice.files import write_json
from whichvoice.scoring import proportion

OPENSET = "openset.json"
KEEP = 0.99  # share of the known voices' dev clips kept by the default threshold
UNKNOWN = "unknown"


@dataclass(frozen=True)
class OpenSet:
    """Prototypes (one L2-normalised embedding per label, in the model's label order), the
    threshold on the cosine to the named voice's prototype, and how it was fitted."""

    labels: list[str]
    prototypes: np.ndarray  # float32 (n_labels, dim)
    threshold: float
    fitted: dict  # counts and dev rates: what the threshold does on the data it came from

    def score(self, embedding: np.ndarray, voice: str) -> float:
        """The cosine of a clip's L2-normalised embedding to ``voice``'s prototype."""
        return float(self.prototypes[self.labels.index(voice)] @ embedding)

    def to_dict(self) -> dict:
        return {
            "score": "cosine to the prototype of the voice the classifier names",
            "threshold": round(self.threshold, 6),
            "labels": self.labels,
            "prototypes": np.round(self.prototypes.astype(np.float64), 7).tolist(),
            "fitted": self.fitted,
        }

    @classmethod
    def from_dict(cls, d: dict) -> OpenSet:
        return cls(
            list(d["labels"]),
            np.asarray(d["prototypes"], np.float32),
            float(d["threshold"]),
            dict(d.get("fitted", {})),
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


def _embeddings(model, sources: list) -> tuple[np.ndarray, list[str], list[int]]:
    """(L2-normalised file embeddings, the classifier's answers, indices of usable sources)."""
    embs, named, used = [], [], []
    for i, (emb, pred) in enumerate(
        zip(model.embed_many(sources), model.identify_many(sources), strict=True)
    ):
        if isinstance(emb, WhichvoiceError) or isinstance(pred, WhichvoiceError):
            continue
        embs.append(emb[0])
        named.append(pred.voice)
        used.append(i)
    dim = embs[0].shape[0] if embs else 0
    return np.asarray(embs, np.float32).reshape(-1, dim), named, used


def fit_openset(
    model, known: list[tuple[Path | str, str]], unknown: list[Path | str], *, keep: float = KEEP
) -> OpenSet:
    """Prototypes from ``known`` (path, voice) dev clips of the model's voices, and the
    threshold that keeps ``keep`` of them; ``unknown`` dev clips of other voices give the
    share rejected at that threshold (recorded, not used to set it)."""
    if not model.has_embedding:
        raise WhichvoiceError(f"model {model.config['model']!r} has no embedding")
    if not 0 < keep < 1:
        raise WhichvoiceError(f"keep {keep}: a share, between 0 and 1")
    embs, named, used = _embeddings(model, [p for p, _ in known])
    truth = [known[i][1] for i in used]
    missing = sorted(set(model.labels) - set(truth))
    if missing:
        raise WhichvoiceError(f"no usable dev clip of {', '.join(missing)}")
    prototypes = np.stack(
        [_unit(embs[[t == label for t in truth]].mean(axis=0)) for label in model.labels]
    )
    index = {label: i for i, label in enumerate(model.labels)}
    known_scores = np.einsum("nd,nd->n", embs, prototypes[[index[v] for v in named]])
    threshold = float(np.quantile(known_scores, 1 - keep, method="lower"))
    out_embs, out_named, _ = _embeddings(model, list(unknown)) if unknown else (None, [], [])
    out_scores = (
        np.einsum("nd,nd->n", out_embs, prototypes[[index[v] for v in out_named]])
        if out_named
        else np.zeros(0)
    )
    fitted = {
        "rule": f"keep {keep:g} of the known voices' dev clips",
        "known_clips": len(used),
        "known_kept": proportion(int((known_scores >= threshold).sum()), len(used)),
        "known_named_right": proportion(sum(map(str.__eq__, named, truth)), len(used)),
        "unknown_clips": len(out_named),
        "unknown_rejected": proportion(int((out_scores < threshold).sum()), len(out_named))
        if out_named
        else None,
    }
    return OpenSet(list(model.labels), prototypes.astype(np.float32), threshold, fitted)


def save_openset(run: str | os.PathLike, openset: OpenSet) -> Path:
    path = Path(run) / OPENSET
    write_json(path, openset.to_dict())
    return path


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)

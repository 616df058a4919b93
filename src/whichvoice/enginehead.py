"""The engine head: which engine family made a clip, read from an encoder's clip embedding,
and "unknown" for a family it never saw (the model itself; fitting it on clips and binding it
to an encoder: ``whichvoice.tracing``, whose docstring describes the method).

A head is a folder: ``engine.json`` (families, the encoder it reads, score, threshold, how it
was fitted) and ``engine.safetensors`` (the regression and the prototypes). No pickle.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from whichvoice import fingerprint
from whichvoice.audio import AudioSource
from whichvoice.errors import WhichvoiceError
from whichvoice.files import ensure_dir, write_atomic
from whichvoice.fingerprint import DIM as FP_DIM
from whichvoice.fingerprint import NAME as FINGERPRINT

ENGINE_JSON = "engine.json"
ENGINE_WEIGHTS = "engine.safetensors"
UNKNOWN = "unknown"
SCORES = ("prototype", "energy")
RUN_HEAD = "engine"  # a run's own head (``train --target both``), in this folder of the run
# a head's settings unless told otherwise (``fit_head``, ``fit_from_clips``, a run's own head:
# ``train --target both``, and ``trace-fit --model RUN``): the share of the known families' dev
# clips the threshold keeps, the regression's inverse regularisation (scikit-learn's C), and
# (``EngineHead.score_kind``) the prototype open-set score; no fingerprint for a run's head,
# whose ``predict`` answers from the run's embedding alone
KEEP = 0.99
RUN_HEAD_C = 0.01
# trace-fit's defaults for a shipped encoder are the shipped head's settings, which
# benchmarks/trace.py chose on dev data (a test checks they agree): the share kept, the
# open-set score, C, whether the head reads each clip's spectral fingerprint beside its
# embedding, and the encoder whose embeddings it reads
KEEP_DEFAULT = 0.99
SCORE_DEFAULT = "energy"
REGULARISATION_C = 0.01
FINGERPRINT_DEFAULT = True
ENCODER_DEFAULT = "resemblyzer"


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
    threshold: float = float("-inf")  # the head's: known when the score reaches it

    def to_dict(self) -> dict:
        return {
            "engine": self.engine,
            "engine_confidence": round(self.confidence, 6),
            "engine_known": self.known,
            "engine_nearest": self.nearest,
            "engine_score": round(self.score, 6),
            # -inf (a head that answers every clip with a family) is no JSON number: null
            "engine_threshold": round(self.threshold, 6) if np.isfinite(self.threshold) else None,
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
    # a head that also reads the clip's spectral fingerprint (``whichvoice.fingerprint``):
    # the mean and spread of its training clips' fingerprints, float32 (fingerprint.DIM,)
    fingerprint_mean: np.ndarray | None = None
    fingerprint_scale: np.ndarray | None = None

    @property
    def reads_fingerprint(self) -> bool:
        """Whether the head reads each clip's spectral fingerprint beside its embedding."""
        return self.fingerprint_mean is not None

    def _view(self, embeddings: np.ndarray, fingerprints: np.ndarray | None = None) -> np.ndarray:
        x = np.atleast_2d(np.asarray(embeddings, np.float32))
        given = x.shape[1]  # the embedding as the caller gave it (a fused one: the whole)
        width = self.coef.shape[1] - (0 if not self.reads_fingerprint else fingerprint.DIM)
        # the numbers the caller's embedding must have: the head's own, or a fused embedding
        # holding its part
        expected = width if self.part is None else self.part[1]
        x = _unit(x if self.part is None else x[:, self.part[0] : self.part[1]])
        if x.shape[1] != width or (self.part is not None and given < expected):
            within = "" if self.part is None else " within a fused embedding's first"
            raise EngineHeadError(
                f"this engine head reads {self.encoder}'s embeddings{within} ({expected} "
                f"numbers), not embeddings of {given}: use it with the encoder it was fitted on"
            )
        if not self.reads_fingerprint:
            return x
        if fingerprints is None:
            raise EngineHeadError("this engine head reads each clip's spectral fingerprint too")
        return _joined(x, fingerprints, self.fingerprint_mean, self.fingerprint_scale)

    def logits(self, embeddings: np.ndarray, fingerprints: np.ndarray | None = None) -> np.ndarray:
        return self._view(embeddings, fingerprints) @ self.coef.T + self.intercept

    def probabilities(
        self, embeddings: np.ndarray, fingerprints: np.ndarray | None = None
    ) -> np.ndarray:
        """Each family's probability, float (n_clips, n_families)."""
        return _softmax(self.logits(embeddings, fingerprints))

    def scores(
        self,
        embeddings: np.ndarray,
        kind: str | None = None,
        fingerprints: np.ndarray | None = None,
    ) -> np.ndarray:
        """The open-set score of each clip (higher: more like a known family)."""
        view = self._view(embeddings, fingerprints)
        return self._scores(view, view @ self.coef.T + self.intercept, kind or self.score_kind)

    def _scores(self, view: np.ndarray, z: np.ndarray, kind: str) -> np.ndarray:
        """``scores`` from the head's input ``view`` and its logits ``z``."""
        if kind == "energy":
            top = z.max(axis=1)
            return top + np.log(np.exp(z - top[:, None]).sum(axis=1))
        if kind != "prototype":
            raise EngineHeadError(f"unknown open-set score {kind!r}; valid: {', '.join(SCORES)}")
        named = z.argmax(axis=1)
        cos = view @ self.prototypes.T  # (n_clips, n_voices)
        same = self.prototype_family[None, :] == named[:, None]
        return np.where(same, cos, -np.inf).max(axis=1)

    def answer(
        self, embeddings: np.ndarray, fingerprints: np.ndarray | None = None
    ) -> list[EngineAnswer]:
        """The engine-level answer for each embedding, float (n_clips, dim) (and, for a head
        that reads them, each clip's fingerprint, float (n_clips, fingerprint.DIM)). A clip in
        which the head's encoder (or its part of a fused one) heard no speech, an embedding of
        zeros, is answered unknown: the fingerprint alone names no engine."""
        view = self._view(embeddings, fingerprints)  # once: a fingerprint's view costs
        z = view @ self.coef.T + self.intercept
        probs, scores = _softmax(z), self._scores(view, z, self.score_kind)
        x = np.atleast_2d(np.asarray(embeddings, np.float32))
        norms = np.linalg.norm(
            x if self.part is None else x[:, self.part[0] : self.part[1]], axis=1
        )
        heard = np.isfinite(norms) & (norms > 0)
        out = []
        for p, s, h in zip(probs, scores, heard, strict=True):
            best = int(p.argmax())
            known = bool(s >= self.threshold and h)
            family = self.families[best]
            out.append(EngineAnswer(family if known else UNKNOWN, float(p[best]), known,
                                    family, float(s), float(self.threshold)))  # fmt: skip
        return out

    def answer_clip(self, embedding: np.ndarray, source: AudioSource) -> EngineAnswer:
        """One clip's answer from its embedding, float (dim,); the clip itself (a path, bytes
        or ``Decoded``: an ``audio.AudioSource``) is read again for its fingerprint when the head
        reads one."""
        fp = fingerprint.fingerprint_of(source)[None] if self.reads_fingerprint else None
        return self.answer(embedding, fp)[0]

    def with_threshold(
        self,
        embeddings: np.ndarray,
        families: Sequence[str],
        keep: float = KEEP,
        kind=None,
        fingerprints: np.ndarray | None = None,
    ) -> EngineHead:
        """This head with the threshold that keeps ``keep`` of ``embeddings``' clips whose
        family is known: dev clips, never test ones."""
        kind = kind or self.score_kind
        mask = np.array([f in self.families for f in families])
        if not mask.any():
            raise EngineHeadError("no dev clip of a known engine family to set the threshold")
        fp = None if fingerprints is None else np.asarray(fingerprints)[mask]
        scores = self.scores(np.asarray(embeddings)[mask], kind, fp)
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
            "fingerprint": FINGERPRINT if self.reads_fingerprint else None,
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
        if self.reads_fingerprint:
            tensors["fingerprint_mean"] = np.ascontiguousarray(self.fingerprint_mean, np.float32)
            tensors["fingerprint_scale"] = np.ascontiguousarray(self.fingerprint_scale, np.float32)
        write_atomic(folder / ENGINE_WEIGHTS, save(tensors))
        write_atomic(folder / ENGINE_JSON, (json.dumps(self.to_dict(), indent=2) + "\n").encode())
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike) -> EngineHead:
        """The head saved in ``folder``; EngineHeadError in one line when it is missing or
        damaged (cut short, a setting missing, weights that do not fit its families)."""
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
        except Exception as e:  # safetensors raises its own error type
            raise EngineHeadError(f"{folder}: not a readable engine head ({e})") from None
        why = _damage(meta, t)
        if why is not None:
            raise EngineHeadError(f"{folder}: not a readable engine head ({why})")
        reads = meta.get("fingerprint")
        if reads is not None and reads != FINGERPRINT:
            raise EngineHeadError(
                f"{folder}: the head reads the fingerprint {reads!r}, which this version "
                f"does not make ({FINGERPRINT}): fit it again with `whichvoice trace-fit`"
            )
        return cls(
            tuple(meta["families"]),
            t["coef"],
            t["intercept"],
            t["prototypes"],
            t["prototype_family"],
            meta["encoder"],
            meta.get("score", "prototype"),
            float(meta["threshold"]),
            meta.get("fitted", {}),
            fingerprint_mean=t["fingerprint_mean"] if reads else None,
            fingerprint_scale=t["fingerprint_scale"] if reads else None,
        )


def _damage(meta: object, t: dict) -> str | None:
    """What is wrong with a saved head's settings (``meta``) and weights (``t``); None when
    they make a head."""
    if not isinstance(meta, dict):
        return f"{ENGINE_JSON} holds no settings"
    families, threshold = meta.get("families"), meta.get("threshold")
    if (
        not isinstance(families, list)
        or len(families) < 2
        or not all(isinstance(f, str) and f for f in families)
    ):
        return f"{ENGINE_JSON}: its families are not a list of 2 or more names"
    if not isinstance(meta.get("encoder"), str):
        return f"{ENGINE_JSON}: no encoder named"
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, int | float)
        or threshold != threshold
    ):
        return f"{ENGINE_JSON}: no threshold"
    if meta.get("score", "prototype") not in SCORES:
        return f"{ENGINE_JSON}: an unknown score {meta.get('score')!r}"
    names = ("coef", "intercept", "prototypes", "prototype_family")
    if missing := [n for n in names if n not in t]:
        return f"{ENGINE_WEIGHTS} lacks {', '.join(missing)}"
    coef, intercept, protos, owner = (t[n] for n in names)
    n = len(families)
    if coef.ndim != 2 or coef.shape[0] != n or intercept.shape != (n,):
        return f"{ENGINE_WEIGHTS} does not match {ENGINE_JSON} ({n} families)"
    if protos.ndim != 2 or protos.shape[1] != coef.shape[1] or owner.shape != protos.shape[:1]:
        return f"{ENGINE_WEIGHTS}: its prototypes do not fit its weights"
    if owner.size and (owner.min() < 0 or owner.max() >= n):
        return f"{ENGINE_WEIGHTS}: a prototype of a family it does not have"
    if meta.get("fingerprint") is not None:
        fp = [t.get(k) for k in ("fingerprint_mean", "fingerprint_scale")]
        if any(v is None or v.shape != (FP_DIM,) for v in fp) or coef.shape[1] <= FP_DIM:
            return f"{ENGINE_WEIGHTS} does not match {ENGINE_JSON} (no fingerprint statistics)"
    return None


def _joined(
    x: np.ndarray, fingerprints: np.ndarray, mean: np.ndarray, scale: np.ndarray
) -> np.ndarray:
    """A head's input when it reads fingerprints too: the unit embedding beside each block of
    the standardised fingerprint made unit length, the whole made unit length (each part
    weighs the same)."""
    z = (np.atleast_2d(np.asarray(fingerprints, np.float32)) - mean) / scale
    if z.shape[0] != x.shape[0]:
        raise EngineHeadError(f"{x.shape[0]} embeddings but {z.shape[0]} fingerprints")
    blocks = [_unit(z[:, a:b]) for a, b in fingerprint.BLOCKS]
    return _unit(np.concatenate([x, *blocks], axis=1))


def _softmax(z: np.ndarray) -> np.ndarray:
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def require_fit_packages(*, fingerprint: bool) -> None:
    """EngineHeadError naming the extra, before any work, when fitting a head (reading
    fingerprints too, with ``fingerprint``) needs a package that is not installed (a review:
    trace-fit embedded every clip, or train --target both trained a whole run, first)."""
    from importlib.util import find_spec

    needed = ["sklearn"] + ["scipy"] * fingerprint
    missing = [m for m in needed if find_spec(m) is None]
    if missing:
        names = ", ".join("scikit-learn" if m == "sklearn" else m for m in missing)
        raise EngineHeadError(
            f"fitting an engine head needs {names}: pip install 'whichvoice[pretrained]'"
        )


def fit_head(
    embeddings: np.ndarray,
    families: Sequence[str],
    voices: Sequence[str],
    encoder: str,
    *,
    c: float = RUN_HEAD_C,
    score_kind: str = "prototype",
    fingerprints: np.ndarray | None = None,
) -> EngineHead:
    """An engine head fitted on training clips' embeddings (n_clips, dim), each clip's family
    and voice (and with ``fingerprints``, float (n_clips, fingerprint.DIM), a head that reads
    them beside the embeddings); no threshold yet (``EngineHead.with_threshold``). Families
    weigh the same whatever their number of clips."""
    require_fit_packages(fingerprint=False)
    from sklearn.linear_model import LogisticRegression

    names = tuple(sorted(set(families)))
    if len(names) < 2:
        only = f"only {names[0]}" if names else "none"
        raise EngineHeadError(f"an engine head needs clips of 2 families or more, not {only}")
    x = _unit(embeddings)
    fp_mean = fp_scale = None
    if fingerprints is not None:
        fingerprints = np.asarray(fingerprints, np.float32)
        fp_mean = fingerprints.mean(axis=0)
        fp_scale = np.maximum(fingerprints.std(axis=0), 1e-6)
        x = _joined(x, fingerprints, fp_mean, fp_scale)
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
    if fingerprints is not None:
        fitted["fingerprint"] = f"{FINGERPRINT}, standardised on these clips, joined"
    return EngineHead(names, coef.astype(np.float32), intercept.astype(np.float32),
                      prototypes, proto_family, encoder, score_kind, float("-inf"),
                      fitted, fingerprint_mean=fp_mean,
                      fingerprint_scale=fp_scale)  # fmt: skip

"""Several encoders as one: a fused embedding whose cosine is a weighted sum of theirs.

Each part's embedding is L2-normalised and scaled by the square root of its weight, and the
parts are concatenated. With weights summing to 1 the fused vector has unit length, and the
cosine of two fused vectors is ``sum_i w_i * cos_i``: score fusion, with no change to anything
that stores or compares embeddings (galleries, verify, identify, calibration). A gallery's
voice is the mean of its clips' fused vectors, re-normalised as a whole, so its score is the
weighted sum of the parts' cosines against their per-part means up to a factor close to 1.

Each input is decoded and resampled once; each part cuts its own windows from the waveform
and embeds those of ``batch`` files at once, the parts side by side on their own threads. A
part that finds no speech where the others do (resemblyzer's voice detector is stricter than
whichvoice's) contributes zeros: the score then counts only the parts that heard the voice,
which can only lower it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from whichvoice.audio import (
    SAMPLE_RATE,
    AudioSource,
    check_judgeable,
    describe_source,
    load_audio,
)
from whichvoice.errors import WhichvoiceError
from whichvoice.runtime import VoiceModel, prepared_chunks, unit

AUTO = "auto"
EARLIER = "earlier.json"  # the fusions shipped before, whose galleries `gallery upgrade` takes


@dataclass(frozen=True)
class Fusion:
    """Which encoders, with which weights (non-negative, summing to 1), learned how."""

    parts: tuple[str, ...]
    weights: tuple[float, ...]
    source: str = ""

    def __post_init__(self) -> None:
        if len(self.parts) != len(self.weights) or not self.parts:
            raise ValueError("a fusion needs one weight per part, and at least one part")
        if min(self.weights) < 0 or not math.isclose(sum(self.weights), 1.0, abs_tol=1e-6):
            raise ValueError(f"fusion weights must be >= 0 and sum to 1, not {self.weights}")

    def to_dict(self) -> dict:
        return {"parts": list(self.parts), "weights": list(self.weights), "source": self.source}

    @classmethod
    def from_dict(cls, d: dict) -> Fusion:
        return cls(tuple(d["parts"]), tuple(float(w) for w in d["weights"]), d.get("source", ""))


def fusion_digest(parts: dict[str, str], weights: list[float]) -> str:
    """The digest behind a fused encoder's gallery id (``auto-<its first 16 digits>``): of
    its parts' ids and its weights."""
    key = json.dumps(parts | {"weights": list(weights)})
    return hashlib.sha256(key.encode()).hexdigest()


def fusion_id(parts: dict[str, str], weights: list[float]) -> str:
    """The gallery id (``model_id``) of a fusion of these parts' ids and weights."""
    return f"{AUTO}-{fusion_digest(parts, weights)[:16]}"


@dataclass(frozen=True)
class EarlierFusion:
    """A fusion shipped before the current one (a record of ``EARLIER``): its gallery id,
    its parts' ids (name -> ``model_id``), weights and embedding sizes, in order."""

    id: str
    parts: dict[str, str]
    weights: tuple[float, ...]
    dims: tuple[int, ...]
    replaced_at: str = ""

    def __post_init__(self) -> None:
        if not (len(self.parts) == len(self.weights) == len(self.dims) > 0):
            raise ValueError(f"{self.id}: one weight and one size per part")
        expected = fusion_id(self.parts, list(self.weights))
        if self.id != expected:
            raise ValueError(f"{self.id}: its parts and weights make {expected}")

    @property
    def dim(self) -> int:
        return sum(self.dims)

    @classmethod
    def of(cls, config: dict, replaced_at: str = "") -> EarlierFusion:
        """The record of a fused encoder's ``config`` (``FusedEncoder.config``)."""
        parts, weights = dict(config["parts"]), tuple(config["weights"])
        return cls(fusion_id(parts, list(weights)), parts, weights,
                   tuple(config["part_dims"]), replaced_at)  # fmt: skip

    def to_dict(self) -> dict:
        return {"id": self.id, "parts": self.parts, "weights": list(self.weights),
                "dims": list(self.dims), "replaced_at": self.replaced_at}  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict) -> EarlierFusion:
        try:
            return cls(str(d["id"]), {str(k): str(v) for k, v in d["parts"].items()},
                       tuple(float(w) for w in d["weights"]),
                       tuple(int(x) for x in d["dims"]), str(d.get("replaced_at", "")))  # fmt: skip
        except (KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"not a record of an earlier fusion ({e!r})") from None


def reweighed(earlier: EarlierFusion, config: dict) -> Callable[[np.ndarray], np.ndarray] | None:
    """A function taking a stored embedding of the ``earlier`` fusion (float32
    (k * earlier.dim,): one or more prototypes side by side) to that of the fusion of
    ``config`` (``FusedEncoder.config``; float32 (k * its dim,)), or None when it cannot: a
    part now used that the earlier fusion did not use (weight 0, or another version of that
    encoder). A size that is no multiple of ``earlier.dim`` raises ValueError.

    A fused clip embedding is its parts' unit embeddings scaled by the square roots of the
    weights, side by side, and a stored prototype is a mean of such embeddings, so each
    part's block scales by ``sqrt(new / old)`` (a part dropped: its block goes). That is
    exact for every clip (and degraded copy) that each part heard speech in. One that a part
    heard nothing in was stored as the other parts' blocks made unit length, whatever the
    weights; its share of the mean is then carried with its blocks scaled too, off by that
    same factor (0.4 -> 0.5: 12 %)."""
    old_at, at = {}, 0
    for name, d in zip(earlier.parts, earlier.dims, strict=True):
        old_at[name] = (at, d)
        at += d
    old_w = dict(zip(earlier.parts, earlier.weights, strict=True))
    plan = []
    for name, w, d in zip(config["parts"], config["weights"], config["part_dims"], strict=True):
        same = earlier.parts.get(name) == config["parts"][name]
        if not same or old_w.get(name, 0) <= 0 or old_at[name][1] != d:
            return None
        plan.append((*old_at[name], math.sqrt(w / old_w[name])))

    def convert(stored: np.ndarray) -> np.ndarray:
        if stored.size == 0 or stored.size % earlier.dim:
            raise ValueError(f"an embedding of size {stored.size}, not k x {earlier.dim}")
        rows = np.asarray(stored, np.float32).reshape(-1, earlier.dim)
        parts = [rows[:, a : a + d] * np.float32(scale) for a, d, scale in plan]
        return np.concatenate(parts, axis=1).reshape(-1).astype(np.float32)

    return convert


def embedding_dim(encoder) -> int:
    """An encoder's embedding size: from its config, else measured on 2.5 s of noise."""
    if "embedding_dim" in encoder.config:
        return int(encoder.config["embedding_dim"])
    noise = np.random.default_rng(0).normal(0, 0.1, int(2.5 * SAMPLE_RATE)).astype(np.float32)
    windows, _ = encoder.windows_of(noise, SAMPLE_RATE)
    return int(encoder.window_embeddings(windows[:1]).shape[1])


class FusedEncoder:
    """The embedding interface of VoiceModel (``embed``, ``embed_many``, ``root``,
    ``config``) over several encoders. ``encoders`` maps each part of ``fusion`` to a loaded
    encoder; ``ids`` to what a gallery records for it (``verification.model_id``)."""

    has_embedding = True
    name = AUTO

    def __init__(self, fusion: Fusion, encoders: dict, ids: dict[str, str], root) -> None:
        self.fusion = fusion
        self.parts = [encoders[p] for p in fusion.parts]
        self.scales = np.sqrt(np.asarray(fusion.weights, np.float32))
        self.dims = [embedding_dim(e) for e in self.parts]
        self.root = root
        self.config = {
            "model": AUTO,
            "sample_rate": SAMPLE_RATE,
            "embedding_dim": sum(self.dims),
            "parts": {p: ids[p] for p in fusion.parts},
            "weights": list(fusion.weights),
            "part_dims": list(self.dims),
        }
        self.digest = fusion_digest(self.config["parts"], self.config["weights"])
        # the parts' networks run side by side, one thread each, for every caller
        self._threads = (
            os.getpid(),
            ThreadPoolExecutor(len(self.parts), thread_name_prefix="fusion-part"),
        )

    @property
    def _pool(self) -> ThreadPoolExecutor:
        """The parts' threads, made again in a process forked from the one that made them (a
        forked child has none of its parent's threads: its tasks waited for ever, a
        gunicorn --preload worker's first request with them; a review)."""
        if self._threads[0] != os.getpid():
            pool = ThreadPoolExecutor(len(self.parts), thread_name_prefix="fusion-part")
            self._threads = (os.getpid(), pool)
        return self._threads[1]

    def _prepare(self, source: AudioSource) -> tuple[list, float] | WhichvoiceError:
        """Each part's windows (None where that part found no speech) and the first part's
        seconds of speech; the input's error when no part can use it."""
        name = describe_source(source)
        try:
            wave = load_audio(source)
            check_judgeable(wave, SAMPLE_RATE, name)
        except WhichvoiceError as e:
            return e
        windows, speech, first_error = [], None, None
        for encoder in self.parts:
            try:
                w, s = (
                    encoder.windows_of(wave, SAMPLE_RATE)  # a trained run takes the rate
                    if isinstance(encoder, VoiceModel)
                    else encoder.windows_of(wave, name)
                )
            except WhichvoiceError as e:
                windows.append(None)
                first_error = first_error or e
                continue
            windows.append(w)
            speech = s if speech is None else speech
        if speech is None:
            return first_error
        return windows, speech

    def embed_many(
        self, sources: Iterable[AudioSource], *, batch: int = 32, workers: int = 0
    ) -> Iterator[tuple[np.ndarray, float] | WhichvoiceError]:
        """The fused embedding (float32, unit length) and seconds of speech of each input, in
        order; an input no part can use yields its error. Decoding and windows on ``workers``
        threads, a chunk ahead; the parts embed the windows of ``batch`` files at once, each
        on its own thread (each network runs on one thread: see ``pretrained``)."""
        for _, prepared in prepared_chunks(self._prepare, sources, batch, workers):
            yield from self._fuse(prepared)

    def _part_means(self, k: int, good: list) -> list[np.ndarray | None]:
        """Part ``k``'s mean embedding of each prepared input (None: it found no speech)."""
        part = self.parts[k]
        have = [p[0][k] for p in good if p[0][k] is not None]
        embedded = iter(part.embeddings_of(have))
        return [unit(next(embedded).mean(axis=0)) if p[0][k] is not None else None for p in good]

    def _fuse(self, prepared: list) -> Iterator[tuple[np.ndarray, float] | WhichvoiceError]:
        good = [p for p in prepared if not isinstance(p, WhichvoiceError)]
        per_part = list(self._pool.map(lambda k: self._part_means(k, good), range(len(self.parts))))
        j = 0
        for p in prepared:
            if isinstance(p, WhichvoiceError):
                yield p
                continue
            pieces = [
                (m[j] if m[j] is not None else np.zeros(d, np.float32)) * s
                for m, d, s in zip(per_part, self.dims, self.scales, strict=True)
            ]
            yield np.concatenate(pieces).astype(np.float32), p[1]
            j += 1

    def embed(self, source: AudioSource) -> tuple[np.ndarray, float]:
        """One input's fused embedding and seconds of speech; raises its error."""
        result = next(self.embed_many([source], workers=1))
        if isinstance(result, WhichvoiceError):
            raise result
        return result

    def part_scores(self, a: np.ndarray, b: np.ndarray) -> dict[str, float]:
        """Each part's cosine between two fused embeddings (each part re-normalised)."""
        out, at = {}, 0
        for name, d in zip(self.fusion.parts, self.dims, strict=True):
            x, y = a[at : at + d], b[at : at + d]
            nx, ny = float(np.linalg.norm(x)), float(np.linalg.norm(y))
            out[name] = float(x @ y / (nx * ny)) if nx and ny else float("nan")
            at += d
        return out

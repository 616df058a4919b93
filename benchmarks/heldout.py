"""The closed-set benchmarks' data: one training corpus and held-out dev and test sets that
share no sentence and no clip with it (docs/evaluation.md).

The default model trains on a voice set (``default8``, or ``mixed16``) x the first N bundled
sentences (its own sentence split picks the epochs). Choices are made on the same voices x
dev-pool sentences and figures reported on them x test-pool sentences
(``whichvoice.protocol``): grammar-made sentences, never bundled, never each other's.

    from heldout import train_corpus, pool_set
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from whichvoice.corpus import SynthConfig, synthesize_corpus
from whichvoice.files import write_atomic
from whichvoice.protocol import pool_sentences
from whichvoice.sentences import load_sentences

VOICES = "default8"


def _manifest(corpus: Path) -> list[dict]:
    return [json.loads(line) for line in (corpus / "manifest.jsonl").read_text().splitlines()]


def train_corpus(work: Path, sentences: int, quiet: bool, voices: str = VOICES) -> Path:
    """``work/corpus``: ``voices`` x the first ``sentences`` bundled sentences (resumable)."""
    corpus = work / "corpus"
    synthesize_corpus(
        corpus,
        load_sentences(sentences).sentences,
        SynthConfig(voices=(voices,), assign="all"),
        progress=not quiet,
    )
    return corpus


def pool_set(work: Path, pool: str, sentences: int, quiet: bool, voices: str = VOICES) -> Path:
    """``work/<pool>/labels.csv`` (``path,voice``) over ``voices`` x ``sentences`` sentences
    of the dev or test pool, synthesized beside it (resumable)."""
    corpus = work / pool
    synthesize_corpus(
        corpus,
        pool_sentences(pool, sentences),
        SynthConfig(voices=(voices,), assign="all"),
        progress=not quiet,
    )
    buf = io.StringIO()
    rows = csv.writer(buf, lineterminator="\n")
    rows.writerow(["path", "voice"])
    rows.writerows([c["path"], c["voice"]] for c in _manifest(corpus))
    labels = corpus / "labels.csv"
    write_atomic(labels, buf.getvalue().encode())
    return labels


def leakage(train: Path, *held_out: Path) -> dict:
    """Overlaps that would make a held-out figure dishonest: clips byte-identical (SHA-256)
    and sentences shared between the training corpus and each held-out set, and between the
    held-out sets. All must be 0."""
    sets = {"train": _manifest(train)} | {p.parent.name: _manifest(p.parent) for p in held_out}
    names = list(sets)
    out = {}
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            sha = {c["sha256"] for c in sets[a]} & {c["sha256"] for c in sets[b]}
            text = {c["text"] for c in sets[a]} & {c["text"] for c in sets[b]}
            out[f"{a}/{b}"] = {"identical_clips": len(sha), "shared_sentences": len(text)}
    return out

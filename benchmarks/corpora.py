"""Corpora the benchmarks synthesize: voices reading sampled sentences, grouped by voice."""

from __future__ import annotations

from pathlib import Path

from whichvoice.corpus import SynthConfig, read_manifest, synthesize_corpus


def voice_clips(
    folder: Path, voices: list[str], sentences, per_voice: int, seed: int, label: str
) -> dict[str, list]:
    """Every voice reading ``per_voice`` of ``sentences`` into the corpus ``folder``
    (resumable): {voice: sorted clip paths} of every clip the folder's manifest lists."""
    summary = synthesize_corpus(
        folder,
        sentences,
        SynthConfig(voices=(",".join(voices),), assign="sample", per_voice=per_voice, seed=seed),
        progress=False,
    )
    print(f"{label}: {summary.line()}", flush=True)
    files: dict[str, list] = {}
    for clip in read_manifest(folder / "manifest.jsonl"):
        files.setdefault(clip.voice, []).append(folder / clip.path)
    return {v: sorted(p) for v, p in sorted(files.items())}

"""``whichvoice recipe encoder``: the whole making of a voice encoder, reproducible.

1. A many-voice corpus: every espeak-ng English accent x variant and the recorded voices,
   each reading ``per_voice`` bundled sentences.
2. Voices held out for evaluation: a seeded share of espeak-ng's variants (in every accent)
   and two recorded speakers that no other voice shares (flite:awb, festival:ked_diphone).
3. A speaker dataset of the other voices, plus speed-perturbed copies of each labelled as new
   pseudo-voices (the Kaldi/WeSpeaker recipe), split by clip into train/val/test.
4. ``voicenet-aam`` trained with an additive angular margin and augmentation.
5. Calibration on trials among the held-out voices; ``recipe.json`` records how it was made.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from whichvoice.audio import SAMPLE_RATE, read_audio, resample, write_atomic
from whichvoice.corpus import SynthConfig, synthesize_corpus
from whichvoice.dataset import SPLITS, PrepareConfig, load_corpus, write_prepared
from whichvoice.features import FeatureConfig, speech_of, wave_windows
from whichvoice.sentences import bundled_sentences
from whichvoice.train import TrainConfig, train
from whichvoice.verification import calibrate, held_out_files, model_for, voice_trials
from whichvoice.voices import resolve_voices
from whichvoice.voices.espeak import variants

log = logging.getLogger(__name__)

RECORDED = [
    "flite:slt",
    "flite:awb",
    "flite:rms",
    "flite:kal16",
    "flite:kal",
    "festival:kal_diphone",
    "festival:ked_diphone",
    "festival:cmu_us_slt_arctic_hts",
]
HELD_OUT_RECORDED = ("flite:awb", "festival:ked_diphone")


@dataclass(frozen=True)
class EncoderRecipe:
    per_voice: int = 12  # sentences each voice reads
    held_out_variants: float = 0.15  # share of espeak-ng variants kept for evaluation
    speeds: tuple[float, ...] = (0.9, 1.1)  # speed perturbation: each makes a pseudo-voice
    # the recorded voices are few: more sentences and more perturbed copies of each
    recorded_per_voice: int = 40
    recorded_speeds: tuple[float, ...] = (0.85, 0.9, 0.95, 1.05, 1.1, 1.15)
    epochs: int = 12
    seed: int = 0
    max_variants: int | None = None  # fewer espeak variants (tests)

    def to_dict(self) -> dict:
        return asdict(self)


def recipe_voices(cfg: EncoderRecipe) -> tuple[list[str], list[str]]:
    """(training voice ids, held-out voice ids)."""
    names = sorted(variants())
    rng = random.Random(cfg.seed)
    if cfg.max_variants:
        names = sorted(rng.sample(names, min(cfg.max_variants, len(names))))
    held = set(rng.sample(names, max(1, round(cfg.held_out_variants * len(names)))))
    espeak = [v.id for v in resolve_voices("espeak-all") if v.name.split("+", 1)[1] in names]
    held_ids = [v for v in espeak if v.split("+", 1)[1] in held] + list(HELD_OUT_RECORDED)
    train_ids = [v for v in espeak + RECORDED if v not in held_ids]
    return train_ids, held_ids


def _speaker_dataset(
    corpus: Path, out: Path, voices: list[str], cfg: EncoderRecipe, progress: bool
) -> Path:
    """Windows of the training voices' clips and of their speed-perturbed copies, one label
    per (voice, speed), split 90/5/5 by clip."""
    feats = FeatureConfig()
    prep = PrepareConfig(features=feats, seed=cfg.seed, val_fraction=0.05, test_fraction=0.05)
    clips = [c for c in load_corpus(corpus) if c.voice in set(voices)]

    def speeds_of(voice: str) -> tuple[float, ...]:
        return cfg.recorded_speeds if voice in RECORDED else cfg.speeds

    labels = sorted(
        {c.voice for c in clips} | {f"{c.voice}@{s}" for c in clips for s in speeds_of(c.voice)}
    )
    index = {v: i for i, v in enumerate(labels)}
    rng = random.Random(cfg.seed)
    by_split: dict[str, dict[str, list]] = {s: {"x": [], "y": [], "clip": []} for s in SPLITS}
    rows: list[dict] = []

    def versions(clip) -> list[tuple[str, np.ndarray]]:
        wave, rate = read_audio(corpus / clip.path)
        out = [(clip.voice, resample(wave, rate, SAMPLE_RATE))]
        for s in speeds_of(clip.voice):  # s times faster: shorter and higher, a new "voice"
            out.append((f"{clip.voice}@{s}", resample(wave, round(rate * s), SAMPLE_RATE)))
        return [(label, wave_windows(speech_of(w, feats), feats)) for label, w in out]

    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        for clip, made in tqdm(
            zip(clips, pool.map(versions, clips), strict=True),
            total=len(clips),
            desc="speaker data",
            unit="clip",
            disable=not progress,
            dynamic_ncols=True,
        ):
            r = rng.random()
            split = (
                "val"
                if r < prep.val_fraction
                else "test"
                if r < prep.val_fraction + prep.test_fraction
                else "train"
            )
            for label, windows in made:
                part = by_split[split]
                part["x"].append(windows.astype(np.float16))
                part["y"].extend([index[label]] * len(windows))
                part["clip"].extend([len(rows)] * len(windows))
                rows.append(
                    {
                        "id": f"{clip.id}@{label}",
                        "path": clip.path,
                        "voice": label,
                        "sentence_id": clip.sentence_id,
                        "split": split,
                        "windows": len(windows),
                    }
                )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        return write_prepared(out, tmp, by_split, rows, labels, prep, corpus, progress=progress)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def encoder_recipe(
    out: str | os.PathLike, cfg: EncoderRecipe = EncoderRecipe(), *, progress: bool = True
) -> Path:
    """Run every step into ``out`` (corpus/, data/, run/); resumable step by step.
    Returns the run directory (``out/run``), calibrated."""
    out = Path(out)
    train_ids, held_ids = recipe_voices(cfg)
    corpus = out / "corpus"
    log.info(
        "corpus: %d training voices, %d held out, %d sentences each",
        len(train_ids),
        len(held_ids),
        cfg.per_voice,
    )
    recorded = [v for v in train_ids + held_ids if v in RECORDED]
    for voices, per_voice in (
        ([v for v in train_ids + held_ids if v not in RECORDED], cfg.per_voice),
        (recorded, cfg.recorded_per_voice),
    ):
        synthesize_corpus(
            corpus,
            bundled_sentences(),
            SynthConfig(
                voices=(",".join(voices),), assign="sample", per_voice=per_voice, seed=cfg.seed
            ),
            progress=progress,
        )
    data = out / "data"
    if not (data / "dataset.json").is_file():
        _speaker_dataset(corpus, data, train_ids, cfg, progress)
    run = out / "run"
    resume = (run / "checkpoint.pt").is_file() and not (run / "metrics.json").is_file()
    if not (run / "metrics.json").is_file():
        train(
            data,
            run,
            TrainConfig(model="voicenet-aam", epochs=cfg.epochs, seed=cfg.seed),
            resume=resume,
            progress=progress,
        )
    model = model_for(run)
    trials = voice_trials(model, held_out_files(corpus, held_ids), seed=cfg.seed)
    result = calibrate(run, trials, source=f"{len(held_ids)} held-out voices of {corpus}")
    write_atomic(
        run / "recipe.json",
        (
            json.dumps(
                {
                    "recipe": cfg.to_dict(),
                    "training_voices": train_ids,
                    "held_out_voices": held_ids,
                    "calibration": {
                        k: result[k] for k in ("eer", "min_dcf_0.01", "min_dcf_0.05", "threshold")
                    },
                },
                indent=2,
            )
            + "\n"
        ).encode(),
    )
    log.info(
        "held-out voices: EER %.3f %%, minDCF(0.01) %.4f",
        100 * result["eer"],
        result["min_dcf_0.01"],
    )
    return run


BUNDLE_FILES = (
    "model.safetensors",
    "config.json",
    "calibration.json",
    "recipe.json",
    "metrics.json",
    "epochs.jsonl",
)


def bundle(run: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Copy what an encoder run needs (weights, config, calibration, provenance) to ``dest``,
    e.g. the package's ``data/encoder`` folder; the training-data path is dropped."""
    run, dest = Path(run), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for name in BUNDLE_FILES:
        data = (run / name).read_bytes()
        if name == "config.json":
            config = json.loads(data)
            config["data"] = None
            data = (json.dumps(config, indent=2) + "\n").encode()
        write_atomic(dest / name, data)
    return dest

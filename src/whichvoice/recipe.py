"""``whichvoice recipe encoder``: the whole making of a voice encoder, reproducible.

1. The voices: every espeak-ng English accent x variant and the recorded (natural) voices of
   flite and festival, festival's Italian, Catalan, Czech, Russian and Finnish speakers among
   them. Voices that sound exactly alike (espeak-ng variants that change nothing) are found by
   a probe sentence and kept once.
   Issue 19's engines add their training voices (``protocol.ENGINE_VOICES["train"]``: MBROLA,
   RHVoice and festival diphones), trained on like the recorded voices; their test voices are
   never trained on.
2. Voices held out for evaluation: a seeded share of espeak-ng's variants (no accent of them
   is trained on; each is evaluated in one seeded accent, so no two held-out voices share
   their voice parameters) and four recorded speakers (HELD_OUT_RECORDED).
3. A speaker dataset of the training voices, plus speed-perturbed copies of each labelled as
   new pseudo-voices (the Kaldi/WeSpeaker recipe), and random espeak-ng variants (random
   formants, pitch and voice source: ``random_voices`` more speakers), split by clip into
   train/val/test.
4. ``voicenet-aam`` trained with an additive angular margin (warmed up) and augmentation.
5. A fine-tuning of those weights without the per-band mean removal of the log-mels
   (``tune_cmn``), so the embedding also sees each voice's average spectral envelope (what
   tells apart espeak-ng variants that differ in a few formants), into ``run-tuned``. With
   ``init`` (a trained encoder, e.g. the bundled one) step 4 is skipped and the fine-tuning
   starts from ``init``'s weights with a fresh margin head: new voices for an hour of CPU
   instead of two.
6. Calibration on trials among the held-out voices; ``recipe.json`` records how it was made.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from whichvoice.audio import SAMPLE_RATE, read_audio, resample
from whichvoice.corpus import SynthConfig, synthesize_corpus
from whichvoice.dataset import SPLITS, PrepareConfig, load_corpus, write_prepared
from whichvoice.errors import WhichvoiceError
from whichvoice.features import FeatureConfig, speech_of, wave_windows
from whichvoice.files import write_atomic, write_json
from whichvoice.pools import map_ahead, thread_pool
from whichvoice.protocol import ENGINE_VOICES
from whichvoice.sentences import bundled_sentences
from whichvoice.train import TrainConfig, train
from whichvoice.verification import (
    calibrate,
    few_trials,
    held_out_files,
    model_for,
    voice_trials,
)
from whichvoice.voices import resolve_voices
from whichvoice.voices.espeak import RANDOM, random_number, variants

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
    "festival:lp_diphone",
    "festival:pc_diphone",
    "festival:upc_ca_ona_hts",
    "festival:czech_dita",
    "festival:czech_krb",
    "festival:czech_machac",
    "festival:czech_ph",
    "festival:msu_ru_nsh_clunits",
    "festival:suo_fi_lj_diphone",
    "festival:hy_fi_mv_diphone",
]
# speakers no other voice shares: two English men, a Czech man, a Finnish woman
HELD_OUT_RECORDED = (
    "flite:awb",
    "festival:ked_diphone",
    "festival:czech_machac",
    "festival:suo_fi_lj_diphone",
)
PROBE = "Please call Stella and ask her to bring these things with her from the store."


@dataclass(frozen=True)
class EncoderRecipe:
    per_voice: int = 20  # sentences each espeak-ng training voice reads
    # random espeak-ng variants (rand<K>, each in a seeded accent): more voices, each a
    # pseudo-speaker of its own, so that close voices are told apart; no speed copies
    random_voices: int = 0
    held_out_variants: float = 0.2  # share of espeak-ng variants kept for evaluation
    held_out_per_voice: int = 30  # sentences each held-out voice reads (the trials)
    speeds: tuple[float, ...] = (0.9, 1.1)  # speed perturbation: each makes a pseudo-voice
    # the recorded voices are few: more sentences and more perturbed copies of each
    recorded_per_voice: int = 80
    recorded_speeds: tuple[float, ...] = (0.85, 0.9, 0.95, 1.05, 1.1, 1.15)
    model: str = "voicenet-aam-wide"  # a registered embedding model with a margin head
    epochs: int = 50
    cmn: bool = True  # per-band mean removal of the log-mels (FeatureConfig.cmn)
    # then a fine-tuning (0 epochs: none) from the trained weights, keeping its last epoch
    tune_epochs: int = 6
    tune_lr: float = 3e-4
    tune_cmn: bool = False
    # the threshold: a 0.1 % false-acceptance rate on held-out trials rather than the EER
    # point, since identify compares a stranger with every enrolled voice
    target_far: float | None = 0.001
    seed: int = 0
    max_variants: int | None = None  # fewer espeak variants (tests)
    # voices of other engines trained on like the recorded ones (more sentences, speed copies)
    engine_voices: tuple[str, ...] = ENGINE_VOICES["train"]
    init: str | None = None  # fine-tune from this encoder run instead of training from scratch

    def to_dict(self) -> dict:
        return asdict(self)


def distinct_voices(voice_ids: list[str], *, progress: bool = False) -> dict[str, str]:
    """Voice id -> the id kept for it: voices whose audio for a probe sentence is identical
    (espeak-ng variants that change nothing for an accent) are one voice, kept once (the
    first in order)."""
    import hashlib

    from whichvoice.voices import SessionPool

    voices = resolve_voices(",".join(voice_ids))
    sessions = SessionPool()

    def digest(voice) -> str:
        speech = sessions.get(voice.engine).synthesize(voice, PROBE)
        pcm = np.round(np.asarray(speech.wave, np.float32) * 32767).astype(np.int16)
        return hashlib.sha256(pcm.tobytes() + str(speech.sample_rate).encode()).hexdigest()

    try:
        with thread_pool(os.cpu_count() or 1) as pool:
            digests = list(
                tqdm(
                    map_ahead(pool, digest, voices, 2 * (os.cpu_count() or 1)),
                    total=len(voices),
                    desc="probing voices",
                    unit="voice",
                    disable=None if progress else True,
                    dynamic_ncols=True,
                )
            )
    finally:
        sessions.close()
    first: dict[str, str] = {}
    return {v.id: first.setdefault(d, v.id) for v, d in zip(voices, digests, strict=True)}


def recipe_voices(
    cfg: EncoderRecipe, same_as: dict[str, str] | None = None
) -> tuple[list[str], list[str]]:
    """(training voice ids, held-out voice ids). ``same_as`` (from ``distinct_voices``) drops
    the repeats of a voice."""
    names = sorted(variants())
    rng = random.Random(cfg.seed)
    if cfg.max_variants:
        names = sorted(rng.sample(names, min(cfg.max_variants, len(names))))
    # 2 held out at least, and 1 trained on at least (--max-variants 2 trained on none)
    held_n = min(max(2, round(cfg.held_out_variants * len(names))), len(names) - 1)
    held = sorted(rng.sample(names, held_n))
    accents = sorted({v.name.split("+", 1)[0] for v in resolve_voices("espeak-all")})
    espeak = [v.id for v in resolve_voices("espeak-all") if "+" in v.name]
    espeak = [v for v in espeak if v.split("+", 1)[1] in names]
    held_ids = [f"espeak-ng:{rng.choice(accents)}+{name}" for name in held]
    held_ids += list(HELD_OUT_RECORDED)
    train_ids = [v for v in espeak if v.split("+", 1)[1] not in held]
    train_ids += [v for v in RECORDED if v not in held_ids]
    train_ids += [v for v in cfg.engine_voices if v not in held_ids and v not in train_ids]
    # their own generator: the other voices are the same with or without them
    accent_of = random.Random(f"{cfg.seed} random voices")
    train_ids += [
        f"espeak-ng:{accent_of.choice(accents)}+{RANDOM}{k}" for k in range(cfg.random_voices)
    ]
    if same_as is not None:
        kept = set(same_as.values())
        held_ids = [v for v in held_ids if v in kept]
        train_ids = [v for v in train_ids if v in kept]
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
        if voice in RECORDED or voice in cfg.engine_voices:
            return cfg.recorded_speeds
        return () if random_number(voice.partition("+")[2]) is not None else cfg.speeds

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

    with thread_pool(os.cpu_count() or 1) as pool:
        for clip, made in tqdm(
            zip(clips, map_ahead(pool, versions, clips, 2 * (os.cpu_count() or 1)), strict=True),
            total=len(clips),
            desc="speaker data",
            unit="clip",
            disable=None if progress else True,
            dynamic_ncols=True,
        ):
            split = _split_of(rng.random(), prep)
            for label, windows in made:
                row = {
                    "id": f"{clip.id}@{label}",
                    "path": clip.path,
                    "voice": label,
                    "sentence_id": clip.sentence_id,
                    "split": split,
                }
                _add_windows(by_split[split], rows, windows, index[label], row)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        return write_prepared(out, tmp, by_split, rows, labels, prep, corpus, progress=progress)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _split_of(r: float, prep: PrepareConfig) -> str:
    """The split of a clip drawn ``r`` (uniform in [0, 1))."""
    if r < prep.val_fraction:
        return "val"
    return "test" if r < prep.val_fraction + prep.test_fraction else "train"


def _add_windows(
    part: dict[str, list], rows: list[dict], windows: np.ndarray, label: int, row: dict
) -> None:
    """Append one clip version's windows to a split, and its manifest ``row``."""
    part["x"].append(windows.astype(np.float16))
    part["y"].extend([label] * len(windows))
    part["clip"].extend([len(rows)] * len(windows))
    rows.append({**row, "windows": len(windows)})


def encoder_recipe(
    out: str | os.PathLike, cfg: EncoderRecipe = EncoderRecipe(), *, progress: bool = True
) -> Path:
    """Run every step into ``out`` (corpus/, data/, run/); resumable step by step.
    Returns the final run directory, calibrated: ``out/run-tuned``, or ``out/run`` when
    ``cfg.tune_epochs`` is 0."""
    out = Path(out)
    if cfg.init is not None:  # a bad --init was said after the corpus and data (review)
        from whichvoice.train.state import read_init

        read_init(cfg.init)
    out.mkdir(parents=True, exist_ok=True)
    _check_settings(out, cfg)
    train_ids, held_ids = _distinct_voices(out, cfg, progress)
    corpus = out / "corpus"
    _synthesize(corpus, train_ids, held_ids, cfg, progress)
    data = out / "data"
    if not (data / "dataset.json").is_file():
        _speaker_dataset(corpus, data, train_ids, cfg, progress)
    stages = [_train_once(data, run, train_cfg, progress) for run, train_cfg in stages_of(cfg, out)]
    run = stages[-1]
    trials = voice_trials(model_for(run), held_out_files(corpus, held_ids), seed=cfg.seed)
    few = few_trials(trials, cfg.target_far)
    if few:  # the recipe was asked for a small corpus: its threshold is stored, and rough
        log.warning("the calibration rests on few trials: %s", few)
    result = calibrate(
        run,
        trials,
        target_far=cfg.target_far,
        source=f"{len(held_ids)} held-out voices of the recipe's corpus",
        force=True,
    )
    calibration = {k: result[k] for k in RECORDED_CALIBRATION}
    write_json(
        run / "recipe.json",
        {
            "recipe": cfg.to_dict(),
            # each training stage's results (its epochs are in its own folder)
            "stages": {s.name: json.loads((s / "metrics.json").read_text()) for s in stages},
            "training_voices": train_ids,
            "held_out_voices": held_ids,
            "calibration": calibration,
        },
    )
    log.info(
        "held-out voices: EER %.3f %%, minDCF(0.01) %.4f",
        100 * result["eer"],
        result["min_dcf_0.01"],
    )
    return run


SETTINGS = "recipe-settings.json"  # what the folder's corpus, data and runs were made with


class RecipeError(WhichvoiceError):
    """A recipe folder made with other settings than the run asks for."""


def _check_settings(out: Path, cfg: EncoderRecipe) -> None:
    """RecipeError when ``out`` was made with other settings: its finished steps are kept as
    they are, so another --max-variants (say) trained nothing new yet recorded the new
    settings and voices beside the old weights (review); else the settings are recorded. A
    folder from before this file is checked against its runs' recipe.json, where there is
    one (on the settings it records). The bundled encoder as --init is named so, not by where
    this install keeps it."""
    mine = _portable(cfg.to_dict())
    try:
        before = _portable(json.loads((out / SETTINGS).read_text("utf-8")))
    except (OSError, ValueError, AttributeError):
        before = None
    compared = mine
    for run in ("run-tuned", "run"):  # a finished folder of before the settings file
        if before is None:
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError, AttributeError):
                before = _portable(json.loads((out / run / "recipe.json").read_text())["recipe"])
                compared = {k: v for k, v in mine.items() if k in before}  # what it recorded
    if isinstance(before, dict) and before != compared:
        changed = sorted(k for k in compared.keys() | before.keys()
                         if before.get(k) != compared.get(k))  # fmt: skip
        said = "; ".join(f"{k} {before.get(k)!r:.40}, not {mine.get(k)!r:.40}" for k in changed)
        raise RecipeError(
            f"{out}: a recipe folder made with other settings ({said}); run it with its own "
            "settings to resume it, or give another --out"
        )
    if not (out / SETTINGS).is_file() or before != mine:
        write_atomic(out / SETTINGS, (json.dumps(mine, indent=1) + "\n").encode())


def _portable(settings: dict) -> dict:
    """``settings`` as JSON has them (tuples as lists), --init of the bundled encoder as
    "bundled" (its path is this install's)."""
    from whichvoice.verification import bundled_encoder

    out = json.loads(json.dumps(settings))
    init = out.get("init")
    if isinstance(init, str) and os.path.realpath(init) == os.path.realpath(bundled_encoder()):
        out["init"] = "bundled"
    return out


RECORDED_CALIBRATION = (
    "eer",
    "min_dcf_0.01",
    "min_dcf_0.05",
    "threshold",
    "threshold_rule",
    "false_rejection_at_threshold",
    "false_acceptance_at_threshold",
)


def _distinct_voices(out: Path, cfg: EncoderRecipe, progress: bool) -> tuple[list[str], list[str]]:
    """The training and held-out voices, with those that sound like another left out (which
    voices are one and the same is probed once and kept in ``out/voices.json``)."""
    probe = out / "voices.json"
    every = [v for ids in recipe_voices(cfg) for v in ids]
    same_as = json.loads(probe.read_text()) if probe.is_file() else {}
    if set(every) - set(same_as):  # first run, or other settings than the probed ones
        same_as = distinct_voices(every, progress=progress)
        write_atomic(probe, (json.dumps(same_as, indent=1) + "\n").encode())
    train_ids, held_ids = recipe_voices(cfg, same_as)
    log.info(
        "corpus: %d training voices, %d held out (%d voices repeated another and were dropped)",
        len(train_ids),
        len(held_ids),
        sum(1 for k, v in same_as.items() if k != v),
    )
    return train_ids, held_ids


def _synthesize(
    corpus: Path, train_ids: list[str], held_ids: list[str], cfg: EncoderRecipe, progress: bool
) -> None:
    """The recipe's corpus: each group of voices with its own number of sentences a voice."""
    recorded = set(RECORDED) | set(cfg.engine_voices)
    groups = (
        ([v for v in train_ids if v not in recorded], cfg.per_voice),
        ([v for v in train_ids if v in recorded], cfg.recorded_per_voice),
        (held_ids, cfg.held_out_per_voice),
    )
    for voices, per_voice in groups:
        if not voices:  # --no-engine-voices, or few variants: a group may be empty
            continue
        summary = synthesize_corpus(
            corpus,
            bundled_sentences(),
            SynthConfig(
                voices=(",".join(voices),), assign="sample", per_voice=per_voice, seed=cfg.seed
            ),
            progress=progress,
        )
        if summary.interrupted:  # Ctrl-C: not the next group (it went on to it: review)
            raise KeyboardInterrupt


def stages_of(cfg: EncoderRecipe, out: Path) -> list[tuple[Path, TrainConfig]]:
    """The training stages, in order: (run directory, how it is trained)."""
    first = out / "run"
    stages = [(first, TrainConfig(model=cfg.model, epochs=cfg.epochs, seed=cfg.seed, cmn=cfg.cmn))]
    if cfg.init is not None:  # the fine-tuning alone, from a trained encoder
        stages = []
    if cfg.tune_epochs or cfg.init is not None:
        tune = TrainConfig(
            model=cfg.model,
            epochs=cfg.tune_epochs or 1,
            lr=cfg.tune_lr,
            seed=cfg.seed,
            init=str(cfg.init if cfg.init is not None else first),
            cmn=cfg.tune_cmn,
            keep="last",  # the fine-tuning's end, not the epoch it changed least
        )
        stages.append((out / "run-tuned", tune))
    return stages


def _train_once(data: Path, run: Path, cfg: TrainConfig, progress: bool) -> Path:
    """``run`` trained as ``cfg`` says: left as it is when complete, resumed when interrupted."""
    if not (run / "metrics.json").is_file():
        train(data, run, cfg, resume=(run / "checkpoint.pt").is_file(), progress=progress)
    return run


BUNDLE_FILES = (
    "model.safetensors",
    "config.json",
    "calibration.json",
    "recipe.json",
    "metrics.json",
    "epochs.jsonl",
    "det.png",
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

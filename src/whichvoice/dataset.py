"""Manifest -> features on disk: grouped, stratified splits and memory-mappable arrays.

A prepared folder holds, for each split in ``train``, ``val``, ``test``:

    <split>_x.npy     float16 windows, shape (n_windows, *stored_shape): 16 kHz waveforms
                      for logmel features (made into log-mels, augmented, at training
                      time), images for seed-image
    train_xmp3.npy    (logmel) 40 % of the train windows through an 8-32 kbit/s mp3, for
    train_mp3_index.npy  augmentation, and which windows they are
    <split>_y.npy     int64 label index of each window
    <split>_clip.npy  int64 row in index.jsonl of each window's clip

plus ``index.jsonl`` (one line per clip: id, path, voice, sentence_id, split, windows) and
``dataset.json`` (feature config, labels, counts, the corpus it came from). No pickle.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import random
import shutil
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from whichvoice import storage
from whichvoice.audio import SAMPLE_RATE, AudioDecodeError, read_audio, resample
from whichvoice.corpus import MANIFEST, Clip, read_manifest
from whichvoice.errors import OutputError, OutputLostError, WhichvoiceError
from whichvoice.features import SEED_START_S, FeatureConfig, logmel_windows, seed_windows
from whichvoice.features import VERSION as FEATURES_VERSION
from whichvoice.files import ensure_dir
from whichvoice.pools import map_ahead, process_pool, thread_pool
from whichvoice.storage.mirror import RECORD, SYNC

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
DATASET_JSON = "dataset.json"
INDEX = "index.jsonl"
BATCH = 64  # clips per feature batch


class DatasetError(WhichvoiceError):
    """A corpus or prepared folder that cannot be used."""


@dataclass(frozen=True)
class PrepareConfig:
    features: FeatureConfig = field(default_factory=FeatureConfig)
    seed: int = 0
    val_fraction: float = 0.1
    test_fraction: float = 0.1

    def to_dict(self) -> dict:
        return {**asdict(self), "features": self.features.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> PrepareConfig:
        rest = {k: v for k, v in d.items() if k in cls.__dataclass_fields__ and k != "features"}
        return cls(features=FeatureConfig.from_dict(d.get("features", {})), **rest)


def load_corpus(corpus: str | os.PathLike, *, local: Path | None = None) -> list[Clip]:
    """The clips of a corpus folder or URL (its manifest.jsonl); DatasetError when there is
    none. ``local``: the folder the corpus was already read into (a URL's mirror), so that
    it is not listed and fetched again."""
    if not storage.is_url(corpus) and not Path(corpus).is_dir():
        what = "is a file" if Path(corpus).exists() else "no such folder"
        raise DatasetError(f"{corpus}: not a corpus ({what}); make one with `whichvoice synth`")
    path = (storage.local_path(corpus) if local is None else local) / MANIFEST
    if not path.is_file():
        raise DatasetError(
            f"{corpus}: not a corpus (no {MANIFEST}); make one with `whichvoice synth`"
        )
    clips = read_manifest(path)
    if not clips:
        raise DatasetError(f"{path}: the manifest lists no clips")
    return clips


def split_clips(
    clips: list[Clip], seed: int, val: float = 0.1, test: float = 0.1
) -> dict[str, str]:
    """Clip id -> split. Grouped by sentence (a sentence's clips share a split) and stratified
    by voice: sentences are bucketed by the set of voices that read them, and each bucket is
    shuffled (seeded) and cut val/test/train. Deterministic for a given manifest and seed."""
    voices_of: dict[str, set[str]] = defaultdict(set)
    for c in clips:
        voices_of[c.sentence_id].add(c.voice)
    buckets: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for sentence_id in sorted(voices_of):
        buckets[tuple(sorted(voices_of[sentence_id]))].append(sentence_id)
    rng = random.Random(seed)
    split_of: dict[str, str] = {}
    for key in sorted(buckets):
        group = buckets[key]
        rng.shuffle(group)
        n = len(group)
        n_val = round(n * val) if n >= 3 else 0
        n_test = round(n * test) if n >= 3 else 0
        for i, sentence_id in enumerate(group):
            split_of[sentence_id] = (
                "val" if i < n_val else "test" if i < n_val + n_test else "train"
            )
    return {c.id: split_of[c.sentence_id] for c in clips}


def labels_of(clips: list[Clip]) -> list[str]:
    """The voices of a corpus, sorted: the label list of models trained on it."""
    return sorted({c.voice for c in clips})


def _manifest_digest(corpus: Path) -> str:
    return hashlib.sha256((corpus / MANIFEST).read_bytes()).hexdigest()[:16]


def cache_dir(corpus: str | os.PathLike, cfg: PrepareConfig) -> Path:
    """Where ``train`` caches the prepared data of a corpus for a given configuration."""
    # the stored windows do not depend on cmn (applied when the model reads them): one cache
    described = {
        **cfg.to_dict(),
        "features_version": FEATURES_VERSION,
        "mp3_copies_version": MP3_COPIES_VERSION,
    }
    described["features"].pop("cmn")
    key = hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:10]
    return Path(corpus) / "prepared" / f"{cfg.features.name}-{key}-{_manifest_digest(Path(corpus))}"


def _decode(path: Path, sample_rate: int | None) -> tuple[np.ndarray, int]:
    wave, rate = read_audio(path)
    if sample_rate is not None:
        return resample(wave, rate, sample_rate), sample_rate
    return wave, rate


def _seed_features(args: tuple[str, float, dict]) -> np.ndarray:
    path, start, cfg = args
    wave, rate = read_audio(path)
    return seed_windows(wave, rate, FeatureConfig.from_dict(cfg), start)


def clip_features(
    paths: list[Path], cfg: FeatureConfig, *, starts: list[float] | None = None, workers: int = 0
) -> Iterator[np.ndarray]:
    """Windows for each file, in order (float32, shape (n_windows, *cfg.stored_shape)).

    Decoding runs on ``workers`` threads (seed images on processes: matplotlib holds the GIL).
    Raises AudioDecodeError naming a file that cannot be read.
    """
    workers = workers or os.cpu_count() or 1
    if cfg.name == "seed-image":
        jobs = [
            (str(p), s, cfg.to_dict())
            for p, s in zip(paths, starts or [None] * len(paths), strict=True)
        ]
        with process_pool(workers) as pool:
            yield from pool.map(_seed_features, jobs, chunksize=8)
        return
    with thread_pool(workers) as pool:
        for i in range(0, len(paths), BATCH):
            waves = [
                w for w, _ in pool.map(lambda p: _decode(p, cfg.sample_rate), paths[i : i + BATCH])
            ]
            yield from logmel_windows(waves, cfg)


MP3_FRACTION = 0.4  # share of training windows given an mp3 copy (encoding is the slow part)
MP3_KBPS = (8, 16, 24, 32)  # bitrates of the copies, drawn uniformly
MP3_RATES = (16_000, 22_050, 24_000)  # sample rates the copies are encoded at, drawn uniformly
MP3_COPIES_VERSION = 2  # part of the cache key: bump when the copies change


def _mp3_copies(x: np.ndarray, seed: int, progress: bool) -> tuple[np.ndarray, np.ndarray]:
    """A seeded share of the 16 kHz waveform windows through an mp3 at a random bitrate
    (``MP3_KBPS``) and sample rate (``MP3_RATES``) and back. Returns (indices of the windows,
    their copies)."""
    from whichvoice.augment import mp3_roundtrip

    rng = np.random.default_rng(seed)
    index = np.sort(rng.choice(x.shape[0], size=round(MP3_FRACTION * x.shape[0]), replace=False))
    kbps = rng.choice(MP3_KBPS, size=index.shape[0])
    enc_rates = rng.choice(MP3_RATES, size=index.shape[0])
    n = x.shape[1]

    def one(k: int) -> np.ndarray:
        y, rate = mp3_roundtrip(
            np.asarray(x[index[k]], dtype=np.float32),
            SAMPLE_RATE,
            int(kbps[k]),
            enc_rate=int(enc_rates[k]),
        )
        y = resample(y, rate, SAMPLE_RATE)[:n]
        return np.pad(y, (0, n - y.shape[0])).astype(np.float16)

    copies = np.empty((index.shape[0], n), np.float16)  # filled in place: held once
    with thread_pool(os.cpu_count() or 1) as pool:
        for k, row in enumerate(
            tqdm(
                map_ahead(pool, one, range(index.shape[0]), 2 * (os.cpu_count() or 1)),
                total=index.shape[0],
                desc="mp3 copies",
                unit="window",
                disable=None if progress else True,
                dynamic_ncols=True,
            )
        ):
            copies[k] = row
    return index.astype(np.int64), copies


def prepare(
    corpus: str | os.PathLike, out: str | os.PathLike, cfg: PrepareConfig, *, progress: bool = True
) -> Path:
    """Compute features for every clip of ``corpus`` into ``out`` (see the module docstring).

    Written to a temporary folder and renamed, so ``out`` is complete or absent. Either may be
    a URL (``s3://...``): staged through a local mirror, dataset.json uploaded last.
    Returns ``out``.
    """
    if storage.is_url(out):
        with storage.local_output(out, last=[DATASET_JSON], progress=progress) as local:
            prepare(corpus, local, cfg, progress=progress)
        return out
    corpus, out = storage.local_path(corpus), Path(out)
    clips = load_corpus(corpus)
    labels = labels_of(clips)
    if len(labels) < 2:
        found = f"only {labels[0]}" if labels else "none"
        raise DatasetError(f"{corpus}: needs at least 2 voices to learn, found {found}")
    split_of = split_clips(clips, cfg.seed, cfg.val_fraction, cfg.test_fraction)
    for split in ("val", "test"):  # a tiny corpus: a split of one voice says little
        held = {c.voice for c in clips if split_of[c.id] == split}
        if len(held) < len(labels):
            log.warning(
                "%s: the %s split holds clips of %d of the %d voices (too few sentences per "
                "voice): its figures say little about the others",
                corpus, split, len(held), len(labels),
            )  # fmt: skip
    rng = random.Random(cfg.seed)
    starts = [rng.uniform(*SEED_START_S) for _ in clips]  # the talk's excerpt start, drawn once
    label_index = {v: i for i, v in enumerate(labels)}

    _check_replaceable(out)
    ensure_dir(out.parent, "prepared data")
    _remove_stale_tmp(out)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        return _prepare_into(
            corpus, out, tmp, clips, labels, split_of, starts, label_index, cfg, progress
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # left only when something failed


MIRROR_RECORDS = (RECORD, SYNC)


def _check_replaceable(out: Path) -> None:
    """DatasetError unless ``out`` may be replaced by prepared data: absent, an empty folder,
    or prepared data (its dataset.json). It was replaced whatever it held: a trained run,
    a folder of the user's, the corpus itself (a review)."""
    if not out.exists():
        return
    if not out.is_dir():
        raise DatasetError(f"{out}: a file, not a folder for the prepared data")
    # a URL's mirror holds the records of its syncing besides what was uploaded
    if (out / DATASET_JSON).is_file() or not any(
        p.name not in MIRROR_RECORDS for p in out.iterdir()
    ):
        return
    raise DatasetError(
        f"{out}: holds other files (it is no prepared data); give a new or empty folder"
    )


def _remove_stale_tmp(out: Path) -> None:
    """Remove the temporary folders of earlier runs for ``out`` whose process is gone (a
    killed run leaves one, as large as the prepared data)."""
    for tmp in out.parent.glob(f".{out.name}.tmp-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if not pid.isdigit():
            continue  # not one of ours
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:  # its run is gone
            shutil.rmtree(tmp, ignore_errors=True)
        except OSError:  # alive (another user's process, or not ours to ask)
            continue


def _prepare_into(
    corpus: Path,
    out: Path,
    tmp: Path,
    clips: list[Clip],
    labels: list[str],
    split_of: dict[str, str],
    starts: list[float],
    label_index: dict[str, int],
    cfg: PrepareConfig,
    progress: bool,
) -> Path:
    """Compute every clip's windows into ``tmp`` and publish it as ``out`` (see ``prepare``)."""
    by_split: dict[str, dict[str, list]] = {s: {"x": [], "y": [], "clip": []} for s in SPLITS}
    rows = []
    paths = [corpus / c.path for c in clips]
    bar = tqdm(
        total=len(clips),
        desc="features",
        unit="clip",
        disable=None if progress else True,
        dynamic_ncols=True,
    )
    try:
        for row, (clip, windows) in enumerate(
            zip(clips, clip_features(paths, cfg.features, starts=starts), strict=True)
        ):
            split = split_of[clip.id]
            part = by_split[split]
            part["x"].append(windows.astype(np.float16))
            part["y"].extend([label_index[clip.voice]] * len(windows))
            part["clip"].extend([row] * len(windows))
            rows.append(
                {
                    "id": clip.id,
                    "path": clip.path,
                    "voice": clip.voice,
                    "engine": clip.engine,
                    "sentence_id": clip.sentence_id,
                    "split": split,
                    "windows": len(windows),
                }
            )
            bar.update(1)
    except AudioDecodeError as e:
        raise DatasetError(f"corpus {corpus}: {e}") from e
    finally:
        bar.close()
    return write_prepared(out, tmp, by_split, rows, labels, cfg, corpus, progress=progress)


@contextlib.contextmanager
def _no_room_for(out: Path) -> Iterator[None]:
    """A full disk while writing prepared data ``out``: OutputLostError, one line (numpy's
    short write said only "N requested and M written", exit 2: a review); another fault (a
    folder another job made meanwhile, a read-only disk) as it is."""
    try:
        yield
    except OSError as e:
        if e.errno is not None and e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise
        why = e.strerror or f"{e}: is its disk full?"  # numpy's has no errno
        raise OutputLostError(
            f"{out}: cannot write the prepared data ({why}); nothing of it was kept: free "
            "some space and run it again"
        ) from e


def write_prepared(
    out: Path,
    tmp: Path,
    by_split: dict[str, dict[str, list]],
    rows: list[dict],
    labels: list[str],
    cfg: PrepareConfig,
    corpus: Path,
    *,
    progress: bool = True,
) -> Path:
    """Write split arrays (``by_split[split]`` = {"x": [windows...], "y": [...], "clip": [...]}),
    the index rows and dataset.json into ``tmp``, then rename it to ``out``. Each split's
    window list is emptied once joined into one array, so the windows are held once, not twice.
    A full disk is OutputLostError naming ``out`` (``_no_room_for``)."""
    with _no_room_for(out):
        counts = {}
        for split in SPLITS:
            part = by_split[split]
            x = (
                np.concatenate(part["x"])
                if part["x"]
                else np.zeros((0, *cfg.features.stored_shape), np.float16)
            )
            part["x"].clear()  # the windows live on in x alone: half the peak memory
            np.save(tmp / f"{split}_x.npy", x)
            np.save(tmp / f"{split}_y.npy", np.asarray(part["y"], dtype=np.int64))
            np.save(tmp / f"{split}_clip.npy", np.asarray(part["clip"], dtype=np.int64))
            counts[split] = {
                "clips": sum(r["split"] == split for r in rows),
                "windows": int(x.shape[0]),
            }
            if split == "train" and cfg.features.name == "logmel":
                index, copies = _mp3_copies(x, cfg.seed, progress)
                np.save(tmp / "train_mp3_index.npy", index)
                np.save(tmp / "train_xmp3.npy", copies)
        (tmp / INDEX).write_text("".join(json.dumps(r) + "\n" for r in rows))
        meta = {
            "prepare": cfg.to_dict(),
            "labels": labels,
            "counts": counts,
            "corpus": str(corpus.resolve()),
            "manifest_sha256": _manifest_digest(corpus),
        }
        (tmp / DATASET_JSON).write_text(json.dumps(meta, indent=2) + "\n")
        if out.exists():  # swap, then delete: the old folder is never missing before the new is in
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
        return out


@dataclass
class Prepared:
    """A prepared folder, arrays memory-mapped."""

    root: Path
    cfg: PrepareConfig
    labels: list[str]
    index: list[dict]
    # relabelled (``by_engine``): each clip row's label, replacing the stored voice labels
    clip_labels: np.ndarray | None = None

    def arrays(self, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(x float16 (n, *stored_shape), y int64 (n,), clip row int64 (n,)) of one split.
        DatasetError naming the folder when an array is missing or damaged."""
        x, y, clip = (self._load(f"{split}_{name}.npy") for name in ("x", "y", "clip"))
        if self.clip_labels is not None:
            y = self.clip_labels[np.asarray(clip)]
        return x, y, clip

    def by_engine(self) -> Prepared:
        """The same windows labelled by their engine family (``whichvoice.voices.families``)
        instead of their voice: the labels are the families present, in FAMILIES order (any
        other engine after them, sorted)."""
        from whichvoice.voices.families import FAMILIES, engine_family

        family = [engine_family(r["voice"], r.get("engine")) for r in self.index]
        present = set(family)
        labels = [f for f in FAMILIES if f in present] + sorted(present - set(FAMILIES))
        rows = np.array([labels.index(f) for f in family], np.int64)
        return replace(self, labels=labels, clip_labels=rows)

    def mp3_copies(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(train window indices, their mp3-degraded copies), if prepared."""
        path = self.root / "train_xmp3.npy"
        if not path.exists():
            return None
        return self._load("train_mp3_index.npy"), self._load("train_xmp3.npy")

    def _load(self, name: str) -> np.ndarray:
        try:
            return np.load(self.root / name, mmap_mode="r")
        except (OSError, ValueError, EOFError) as e:  # cut short, or not an array
            raise DatasetError(
                f"{self.root}: damaged prepared data ({name}: {e}); remove the folder and it is "
                "prepared again from its corpus"
            ) from e

    def check(self) -> Prepared:
        """Self, once every array opens (DatasetError otherwise)."""
        for split in ("train", "val", "test"):
            if (self.root / f"{split}_x.npy").exists():
                self.arrays(split)
        self.mp3_copies()
        return self


def open_prepared(path: str | os.PathLike) -> Prepared:
    """A prepared folder (or URL, mirrored locally), arrays memory-mapped."""
    root = storage.local_path(path)
    try:
        meta = json.loads((root / DATASET_JSON).read_text())
        index = [json.loads(line) for line in (root / INDEX).read_text().splitlines()]
    except (OSError, ValueError) as e:
        raise DatasetError(f"{root}: not a prepared dataset ({e})") from e
    return Prepared(root, PrepareConfig.from_dict(meta["prepare"]), meta["labels"], index)


def ensure_prepared(
    source: str | os.PathLike, cfg: PrepareConfig, *, progress: bool = True
) -> Prepared:
    """A prepared dataset from a prepared folder, or from a corpus (prepared once, cached);
    either may be a URL, mirrored locally (the cache then lives in the mirror)."""
    # a URL's error names the URL, not its mirror: ``train.distributed.through_mirrors``
    source = storage.local_path(source)
    if (source / DATASET_JSON).is_file():
        return open_prepared(source)
    load_corpus(source)  # a clear error when it is neither
    target = cache_dir(source, cfg)
    if (target / DATASET_JSON).is_file():
        try:
            return open_prepared(target).check()
        except DatasetError as e:  # a cache: made again rather than refused
            log.warning("%s; preparing it again", e)
    log.info("preparing %s -> %s", source, target)
    made = not target.parent.exists()
    try:
        prepare(source, target, cfg, progress=progress)
    except OutputLostError:  # a full disk: said as it is
        raise
    except OutputError as e:  # a corpus the user may not write into (read-only, shared)
        raise OutputError(
            f"{e}; prepare it elsewhere with `whichvoice prepare {source} DIR` and give DIR "
            "in its place"
        ) from e
    finally:  # a cache folder made for nothing is not left in the corpus (a review)
        if made and not (target / DATASET_JSON).is_file():
            with contextlib.suppress(OSError):
                target.parent.rmdir()  # only if empty
    return open_prepared(target)

"""Existing recordings (people, or any audio) -> a corpus with the same manifest as ``synth``.

The recordings are named by one of three layouts:

- a folder of ``<speaker>/<clips>`` (any depth below each speaker's folder);
- a flat folder whose file names carry the speaker, read by a regular expression with a
  ``speaker`` group (and optionally a ``text`` group): ``(?P<text>\\d)_(?P<speaker>[a-z]+)_``;
- a CSV file with the columns ``path,voice`` and optionally ``text`` (paths relative to the
  CSV's folder).

Each clip is decoded and checked (audio, not silent, long enough), then copied unchanged to
``OUT/audio/<engine>/<speaker>/...``; its manifest line names the voice ``<engine>:<speaker>``
(``human:jackson``). A clip whose text is known takes the text's sentence id, so every
recording of one text falls in one split; one without text is a sentence of its own. Like
synthesis, the import is parallel, resumable (clips already in the manifest with the same
bytes are kept) and never leaves a half-written file or manifest line.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import logging
import os
import re
import time
import unicodedata
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from whichvoice.audio import (
    MIN_SPEECH_S,
    SAMPLE_RATE,
    check_not_silent,
    listed_audio,
    read_audio,
    resample,
)
from whichvoice.corpus import (
    AUDIO_DIR,
    FAILURES,
    LOCK,
    MANIFEST,
    Clip,
    Failure,
    default_workers,
    read_manifest,
    write_jsonl,
)
from whichvoice.errors import WhichvoiceError
from whichvoice.files import ensure_dir, held_alone, write_atomic
from whichvoice.pools import map_ahead, thread_pool
from whichvoice.sentences import sentence_id
from whichvoice.text import counted, none_of

log = logging.getLogger(__name__)

HUMAN = "human"  # the engine label of recordings of people
_NAME = re.compile(r"[^A-Za-z0-9_.+-]+")


class RecordingsError(WhichvoiceError):
    """The recordings cannot be listed: no such folder, a bad CSV or pattern, no audio."""


@dataclass(frozen=True)
class ImportConfig:
    """How to import. ``pattern``: a regular expression searched in each file name, with a
    ``speaker`` group and optionally a ``text`` group (flat folders)."""

    engine: str = HUMAN
    pattern: str | None = None
    workers: int = field(default_factory=default_workers)

    def __post_init__(self) -> None:
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1:
            raise RecordingsError(
                f"workers must be a whole number, at least 1, not {self.workers!r}"
            )


@dataclass(frozen=True)
class Recording:
    """One source file, the speaker it is of and its text when known."""

    source: Path
    speaker: str
    text: str | None
    name: str  # the file's path below its speaker (or its name), kept in the stored path


@dataclass
class ImportSummary:
    planned: int = 0
    made: int = 0
    skipped: int = 0
    failed: list[Failure] = field(default_factory=list)
    seconds: float = 0.0
    speakers: int = 0
    # imported recordings with under MIN_SPEECH_S of speech: kept (training may learn from
    # them), but predict, evaluate, openset and the server answer them "no speech found"
    little_speech: list[str] = field(default_factory=list)
    # [copy, first]: corpus paths of recordings imported now whose samples are another's (a
    # WAV and its FLAC): the copy takes the first's sentence id, so prepare keeps them in one
    # split (they fell in train and test as two recordings: a review)
    same_audio: list[list[str]] = field(default_factory=list)

    def to_dict(self) -> dict:
        """The run as JSON-able types."""
        return {**asdict(self), "seconds": round(self.seconds, 3)}

    def line(self) -> str:
        return (
            f"{counted(self.made, 'recording')} imported, {self.skipped} skipped (already done), "
            f"{len(self.failed)} failed, {counted(self.speakers, 'voice')}, {self.seconds:.1f} s"
        )


def _safe(name: str) -> str:
    return _NAME.sub("_", name).strip("_.") or "_"


_SEPARATORS = re.compile(r"[\s:/\\\x00-\x1f\x7f]+")


def _speaker_id(name: str) -> str:
    """A speaker's name as the part of its voice id after ``engine:``: composed (NFC), runs of
    spaces, ':', slashes and control characters as one '_'; letters of any script kept
    (``李明``, ``Zoë``: replacing them merged different people into one voice)."""
    return _SEPARATORS.sub("_", unicodedata.normalize("NFC", name)).strip("_.") or "_"


def _spelling(name: str) -> str:
    """A name as written, whatever its Unicode form and runs of spaces (one person's)."""
    return " ".join(unicodedata.normalize("NFC", name).split())


def _path_part(speaker: str) -> str:
    """A speaker id as a folder and clip-id part: itself when plain ASCII, else its ASCII
    letters and a digest of it, so that two speakers never share a folder."""
    safe = _safe(speaker)
    if safe == speaker:
        return safe
    return f"{safe}-{hashlib.sha256(speaker.encode()).hexdigest()[:8]}"


def _stored_name(name: str) -> str:
    """A recording's file name as stored: its ASCII letters (``_safe``), as always; where
    that loses its audio suffix (a name of letters of another script: ``é.wav`` became
    ``wav``, a file no folder-taking command reads), its ASCII letters, a digest of the name
    and the suffix (``_-1a2b3c4d.wav``)."""
    kept = _safe(name)
    stem, suffix = os.path.splitext(name)
    if not suffix or os.path.splitext(kept)[1].lower() == suffix.lower():
        return kept
    digest = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return f"{_safe(stem)}-{digest}.{_safe(suffix[1:])}"


def _audio_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if listed_audio(p))


def list_recordings(
    source: str | os.PathLike, pattern: str | None = None, *, skip: str | os.PathLike | None = None
) -> list[Recording]:
    """The recordings ``source`` names (see the module docstring); RecordingsError when there
    are none or the layout cannot be read. ``skip``: a folder whose files are never taken
    (the corpus being made, when it lies inside ``source``: its clips were imported again as
    a speaker of their own)."""
    source = Path(source)
    recordings = _listed(source, pattern)
    if skip is None:
        return recordings
    inside = Path(os.path.abspath(skip))
    kept = [r for r in recordings if not Path(os.path.abspath(r.source)).is_relative_to(inside)]
    if not kept:
        raise RecordingsError(f"{source}: no recordings outside the corpus {skip} being made")
    return kept


def labelled_folder(folder: str | os.PathLike) -> list[tuple[Path, str]]:
    """(path, speaker) of a folder of <speaker>/<clips>, the speaker named as import-corpus
    names it after ``engine:`` (a labels list for evaluate, predict and openset: a held-out
    split kept as folders needed a CSV written first: a review)."""
    return [(r.source, _speaker_id(r.speaker)) for r in _listed(Path(folder), None)]


def _listed(source: Path, pattern: str | None) -> list[Recording]:
    if source.is_file() and source.suffix.lower() == ".csv":
        return _from_csv(source)
    if not source.is_dir():
        what = "no such file or folder" if not source.exists() else "not a folder or a .csv file"
        raise RecordingsError(f"{source}: {what}")
    if pattern is not None:
        return _from_pattern(source, pattern)
    speakers = sorted(p for p in source.iterdir() if p.is_dir())
    _check_not_splits(source, speakers)
    out = []
    for speaker in speakers:
        for path in _audio_in(speaker):
            rel = path.relative_to(speaker).as_posix()
            out.append(Recording(path, speaker.name, None, rel))
    loose = sum(1 for p in source.iterdir() if not p.is_dir() and listed_audio(p))
    if out and loose:  # as --pattern says of the files it leaves out
        words = ("file", "is", "was") if loose == 1 else ("files", "are", "were")
        log.warning(
            "%d audio %s of %s %s in no speaker folder and %s left out (give --pattern with a "
            "(?P<speaker>...) group, or a CSV, to take them)",
            loose, words[0], source, words[1], words[2],
        )  # fmt: skip
    if not out:
        loose = _audio_in(source)
        hint = (
            f"; its {len(loose)} audio files are not in speaker folders: give --pattern "
            "with a (?P<speaker>...) group, or a CSV"
            if loose
            else ""
        )
        raise RecordingsError(f"{source}: no audio in <speaker>/ folders{hint}")
    return out


# folder names of a dataset's own split: a layout of <split>/<speaker>/<clips>
SPLIT_NAMES = frozenset(
    {"train", "training", "test", "testing", "dev", "val", "valid", "validation", "eval", "holdout"}
)


def _check_not_splits(source: Path, folders: list[Path]) -> None:
    """RecordingsError when every folder of ``source`` is named as a split and holds speaker
    folders: <split>/<speaker>/<clips> was imported as the voices "train" and "test" (a
    review)."""
    splits = [f for f in folders if f.name.lower() in SPLIT_NAMES]
    if not splits or len(splits) < len(folders):
        return
    if not any(p.is_dir() and _audio_in(p) for f in splits for p in f.iterdir()):
        return
    names = ", ".join(f.name for f in splits)
    train = next((f for f in splits if f.name.lower().startswith("train")), splits[0])
    raise RecordingsError(
        f"{source}: its folders ({names}) are splits, not speakers: import {train} (its "
        "folders are the speakers), and score another split's folder with evaluate --labels"
    )


def _from_pattern(source: Path, pattern: str) -> list[Recording]:
    try:
        regex = re.compile(pattern)
    except re.error as e:
        raise RecordingsError(f"--pattern {pattern!r}: not a regular expression ({e})") from None
    if "speaker" not in regex.groupindex:
        raise RecordingsError(f"--pattern {pattern!r} has no (?P<speaker>...) group")
    out, unmatched = [], 0
    for path in _audio_in(source):
        m = regex.search(path.name)
        if m is None or not m.group("speaker"):
            unmatched += 1
            continue
        text = m.group("text") if "text" in regex.groupindex else None
        out.append(Recording(path, m.group("speaker"), text or None, path.name))
    if unmatched:
        log.warning(
            "%d %s of %s %s not match --pattern and %s left out",
            unmatched,
            *(
                ("file", source, "does", "was")
                if unmatched == 1
                else ("files", source, "do", "were")
            ),
        )
    if not out:
        raise RecordingsError(f"{source}: no audio file name matches --pattern {pattern!r}")
    return out


def _from_csv(path: Path) -> list[Recording]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise RecordingsError(f"{path}: cannot read the CSV ({e})") from None
    with contextlib.suppress(OSError, UnicodeDecodeError):
        header = path.read_text("utf-8-sig").splitlines()[:1]
        if not rows and header and {"path", "voice"} <= {c.strip() for c in header[0].split(",")}:
            raise RecordingsError(f"{path}: a header and no rows: no recording to import")
    if not rows or not {"path", "voice"} <= set(rows[0]):
        raise RecordingsError(f"{path}: needs the columns path,voice (and optionally text)")
    out = []
    for n, row in enumerate(rows, 2):
        if not (row.get("path") or "").strip() or not (row.get("voice") or "").strip():
            raise RecordingsError(f"{path}:{n}: path and voice must not be empty")
        source = (path.parent / row["path"].strip()).resolve()
        text = (row.get("text") or "").strip() or None
        out.append(Recording(source, row["voice"].strip(), text, Path(row["path"]).name))
    return out


def _plan(recordings: list[Recording], engine: str) -> list[tuple[Recording, str, str]]:
    """(recording, clip id, stored path), ids unique even when names repeat."""
    out, seen, speakers = [], set(), {}
    for rec in recordings:
        speaker_id = _speaker_id(rec.speaker)
        other = speakers.setdefault(speaker_id, rec.speaker)
        if _spelling(other) != _spelling(rec.speaker):  # two people would become one voice
            raise RecordingsError(
                f"speakers {other!r} and {rec.speaker!r} would both be voice "
                f"{engine}:{speaker_id}: rename one"
            )
        speaker = _path_part(speaker_id)
        stem = _stored_name(rec.name)
        clip_id, path = f"{engine}-{speaker}-{stem}", f"{AUDIO_DIR}/{engine}/{speaker}/{stem}"
        n = 1
        while clip_id in seen:
            n += 1
            clip_id = f"{engine}-{speaker}-{stem}-{n}"
            path = f"{AUDIO_DIR}/{engine}/{speaker}/{n}-{stem}"
        seen.add(clip_id)
        out.append((rec, clip_id, path))
    return out


def _import_one(
    rec: Recording, clip_id: str, path: str, out: Path, engine: str
) -> tuple[Clip, float, str]:
    """Check one recording and store it unchanged: (its clip, the seconds of speech the
    classifier's silence trimming keeps of it, a digest of its samples); raises
    WhichvoiceError/OSError."""
    from whichvoice.features import FeatureConfig, trim_silence

    data = rec.source.read_bytes()
    wave, rate = read_audio(data, name=str(rec.source))
    check_not_silent(wave, rate, str(rec.source))
    speech_s = trim_silence(resample(wave, rate), FeatureConfig()).shape[0] / SAMPLE_RATE
    digest = hashlib.sha256(data).hexdigest()
    samples = hashlib.sha256(np.ascontiguousarray(wave, np.float32).tobytes())
    samples.update(str(rate).encode())
    write_atomic(out / path, data, durable=False)
    clip = Clip(
        id=clip_id,
        path=path,
        voice=f"{engine}:{_speaker_id(rec.speaker)}",
        engine=engine,
        sentence_id=sentence_id(rec.text) if rec.text else f"rec{digest[:12]}",
        text=rec.text or "",
        sample_rate=rate,
        duration_s=round(wave.shape[0] / rate, 4),
        sha256=digest,
    )
    return clip, speech_s, samples.hexdigest()


def import_recordings(
    source: str | os.PathLike,
    out: str | os.PathLike,
    cfg: ImportConfig = ImportConfig(),
    *,
    progress: bool = True,
) -> ImportSummary:
    """Import (or complete the import of) ``source`` into the corpus folder ``out``.

    Raises RecordingsError before any work when the recordings cannot be listed. A file that
    is not audio, or is silent or too short (``check_not_silent``), is reported in the
    summary and in ``failures.jsonl``, never raised.
    """
    t0 = time.perf_counter()
    if not isinstance(cfg, ImportConfig):
        raise RecordingsError(f"cfg {cfg!r:.60}: an ImportConfig (ImportConfig(pattern=...))")
    if _safe(cfg.engine) != cfg.engine or ":" in cfg.engine:
        raise RecordingsError(f"--engine {cfg.engine!r}: use letters, digits, '_', '-' or '.'")
    out = Path(out)
    if Path(source).is_dir() and os.path.abspath(out) == os.path.abspath(source):
        raise RecordingsError(f"{out}: the corpus would be made inside its own recordings: "
                              "give another folder")  # fmt: skip
    jobs = _plan(list_recordings(source, cfg.pattern, skip=out), cfg.engine)
    ensure_dir(out, "corpus")
    with held_alone(out / LOCK, f"the corpus {out}"):  # two runs lost each other's rows
        _check_label(out, cfg.engine)
        return _import_alone(source, out, cfg, jobs, progress, t0)


LABEL = "import.json"  # the engine label the corpus's recordings were imported under


def _check_label(out: Path, engine: str) -> None:
    """RecordingsError when the corpus was imported under another --engine label (the same
    recordings were stored again as a second voice each); else the label is recorded."""
    try:
        before = json.loads((out / LABEL).read_text("utf-8")).get("engine")
    except (OSError, ValueError, AttributeError):
        before = None
    if before is not None and before != engine:
        raise RecordingsError(
            f"{out}: imported with --engine {before}, not {engine}; import again with "
            f"--engine {before}, or into another folder"
        )
    if before is None:
        write_atomic(out / LABEL, (json.dumps({"engine": engine}) + "\n").encode())


def _remember(
    out: Path, little: list[str], samples: dict[str, str], done: dict[str, Clip]
) -> list[str]:
    """Keep in ``import.json``, in one write, for the clips the corpus still holds: the
    recordings with too little speech to judge (``little``, found now, beside those an
    earlier run found: a resumed import names them again; returned) and the digests of the
    clips' samples (``samples``, path to digest, of the clips imported now: a copy imported
    by a later run is found by them)."""
    label = out / LABEL
    try:
        record = json.loads(label.read_text("utf-8"))
    except (OSError, ValueError):
        record = None
    if not isinstance(record, dict):
        record = None
    raw_little = record.get("little_speech", []) if record else []
    before = [str(p) for p in raw_little] if isinstance(raw_little, list) else []
    raw_samples = record.get("samples", {}) if record else {}
    samples_before = raw_samples if isinstance(raw_samples, dict) else {}
    held = {c.path for c in done.values()}
    every = sorted({p for p in [*before, *little] if p in held})
    digests = {p: d for p, d in sorted({**samples_before, **samples}.items()) if p in held}
    if record is not None and (every != before or digests != samples_before):
        kept = {**record, "little_speech": every, "samples": digests}
        write_atomic(label, (json.dumps(kept) + "\n").encode())
    return every


def _samples_before(out: Path, done: dict[str, Clip]) -> dict[str, Clip]:
    """The digest of each held clip's samples, as earlier runs recorded them in
    ``import.json`` (a copy imported by a later run, or by a resumed one, was missed: a code
    review): the clip they belong to."""
    try:
        record = json.loads((out / LABEL).read_text("utf-8")).get("samples", {})
    except (OSError, ValueError, AttributeError):
        return {}
    by_path = {c.path: c for c in done.values()}
    if not isinstance(record, dict):
        return {}
    return {d: by_path[p] for p, d in sorted(record.items()) if p in by_path and isinstance(d, str)}


def _import_alone(
    source: str | os.PathLike,
    out: Path,
    cfg: ImportConfig,
    jobs: list[tuple[Recording, str, str]],
    progress: bool,
    t0: float,
) -> ImportSummary:
    """``import_recordings``'s work once no other run writes ``out``."""
    manifest_path = out / MANIFEST
    done = {c.id: c for c in read_manifest(manifest_path)}
    summary = ImportSummary(planned=len(jobs))

    def unchanged(rec: Recording, clip_id: str) -> bool:
        clip = done.get(clip_id)
        try:
            stored = (out / clip.path).read_bytes() if clip else None
            return stored is not None and stored == rec.source.read_bytes()
        except OSError:
            return False

    todo = [(r, i, p) for r, i, p in jobs if not unchanged(r, i)]
    summary.skipped = len(jobs) - len(todo)
    # the samples' digest: the first clip of them (of an earlier run's, else of this one's)
    first_of = _samples_before(out, done)
    found: dict[str, str] = {}  # the clips imported now: their samples' digests

    def attempt(job: tuple[Recording, str, str]) -> tuple[Clip, float, str] | Failure:
        rec, clip_id, path = job
        try:
            return _import_one(rec, clip_id, path, out, cfg.engine)
        except (WhichvoiceError, OSError) as e:
            if isinstance(e, OSError):  # the system's reason, as read_audio words it
                what = "no such file" if isinstance(e, FileNotFoundError) else e.strerror or e
                e = WhichvoiceError(f"{rec.source}: cannot read ({what})")
            reason = str(e) if str(rec.source) in str(e) else f"{rec.source}: {e}"
            return Failure(clip_id, f"{cfg.engine}:{rec.speaker}", "", rec.text or "", reason)

    bar = tqdm(
        total=len(todo),
        unit="file",
        desc="import",
        disable=None if progress else True,
        dynamic_ncols=True,
    )
    try:
        with (
            thread_pool(cfg.workers, "import") as pool,
            open(manifest_path, "a", encoding="utf-8") as manifest,
        ):
            for result in map_ahead(pool, attempt, todo, 2 * cfg.workers):
                bar.update(1)
                if isinstance(result, Failure):
                    summary.failed.append(result)  # the summary names them (as synth's)
                    log.debug("%s", result.reason)
                    continue
                result, speech_s, samples = result
                if samples in first_of:  # the same audio as a recording imported before it
                    first = first_of[samples]
                    summary.same_audio.append([result.path, first.path])
                    result = replace(result, sentence_id=first.sentence_id)
                first_of.setdefault(samples, result)
                found[result.path] = samples
                if speech_s < MIN_SPEECH_S:  # kept: train learns from it; no command judges it
                    summary.little_speech.append(result.path)
                # one flushed line at a time: a kill leaves at most a cut last line
                manifest.write(json.dumps(result.to_dict(), ensure_ascii=False) + "\n")
                manifest.flush()
                done[result.id] = result
                summary.made += 1
    finally:
        bar.close()
        write_jsonl(manifest_path, (c.to_dict() for c in sorted(done.values(), key=lambda c: c.id)))
        if summary.failed or (out / FAILURES).exists():
            write_jsonl(out / FAILURES, (asdict(f) for f in summary.failed))
        summary.speakers = len({c.voice for c in done.values()})
        summary.seconds = time.perf_counter() - t0
        summary.little_speech = _remember(out, summary.little_speech, found, done)
    if summary.made + summary.skipped == 0:
        raise RecordingsError(
            f"{source}: {none_of(len(jobs), 'file')} could be imported "
            f"(first: {summary.failed[0].reason}; all in {out / FAILURES})"
        )
    return summary

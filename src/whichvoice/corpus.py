"""Sentences x voices -> audio files + ``manifest.jsonl``: resumable, parallel, never half-written.

Layout of a corpus folder OUT::

    OUT/manifest.jsonl                          one JSON object per complete clip
    OUT/failures.jsonl                          clips an engine could not make, with the reason
    OUT/audio/<engine>/<voice>/<sentence>.mp3   the clips

A clip's file is written under a temporary name and renamed before its manifest line is
appended, so the manifest only ever lists complete files. On a re-run the manifest is
checked against the files (sha256) and only missing or damaged clips are made again.
OUT may be a URL (``s3://bucket/prefix``): the corpus is made in a local mirror and uploaded,
the manifest last (see ``whichvoice.storage``).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import numbers
import os
import random
import time
import unicodedata
from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TextIO

from tqdm import tqdm

from whichvoice import storage
from whichvoice.audio import ENGINE_SILENCE_PEAK, check_not_silent, encode_audio, read_audio
from whichvoice.errors import (
    EngineAccessError,
    EngineBrokenError,
    OutputLostError,
    WhichvoiceError,
)
from whichvoice.files import ensure_dir, held_alone, write_atomic
from whichvoice.sentences import Sentence
from whichvoice.text import counted
from whichvoice.voices import SessionPool, Voice, get_engine, require_available, resolve_voices

log = logging.getLogger(__name__)
# each failed clip's line: counted in the run's summary and kept in failures.jsonl, so a
# ``--quiet`` run leaves it out (``cli.common.setup_logging``)
clip_log = logging.getLogger(f"{__name__}.clips")

MANIFEST = "manifest.jsonl"
FAILURES = "failures.jsonl"
AUDIO_DIR = "audio"
FORMATS = ("mp3", "wav")
ASSIGN_MODES = ("random", "all", "sample")
ATTEMPTS = 2  # a clip an engine fails on is tried once more, then reported


def default_workers() -> int:
    return os.cpu_count() or 1


class SynthConfigError(WhichvoiceError, ValueError):
    """Settings of a corpus that cannot be made (``SynthConfig``)."""


POLLY_ENGINES = ("standard", "neural")


@dataclass(frozen=True)
class SynthConfig:
    """How to synthesize a corpus. ``voices``: a set name or ids, as ``--voices`` takes them."""

    voices: tuple[str, ...] = ("default8",)
    assign: str = "random"  # "random": one random voice per sentence (the talk); "all";
    # "sample": every voice reads ``per_voice`` sentences drawn at random (speaker corpora)
    per_voice: int = 10
    format: str = "mp3"
    workers: int = field(default_factory=default_workers)
    seed: int = 0
    polly_engine: str = "standard"

    def __post_init__(self) -> None:
        if isinstance(self.voices, str):  # one set name or id, not its characters
            object.__setattr__(self, "voices", (self.voices,))
        if self.assign not in ASSIGN_MODES:
            raise SynthConfigError(
                f"assign must be one of {', '.join(ASSIGN_MODES)}, not {self.assign!r}"
            )
        if self.format not in FORMATS:
            raise SynthConfigError(
                f"format must be one of {', '.join(FORMATS)}, not {self.format!r}"
            )
        for name in ("per_voice", "workers", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise SynthConfigError(f"{name} must be a whole number, not {value!r}")
        if self.workers < 1:
            raise SynthConfigError(f"workers must be at least 1, not {self.workers}")
        if self.per_voice < 1:
            raise SynthConfigError(f"per_voice must be at least 1, not {self.per_voice}")
        if self.polly_engine not in POLLY_ENGINES:
            raise SynthConfigError(
                f"polly_engine must be one of {', '.join(POLLY_ENGINES)}, not {self.polly_engine!r}"
            )


@dataclass(frozen=True)
class Clip:
    """One line of the manifest. ``path`` is relative to the corpus folder."""

    id: str
    path: str
    voice: str
    engine: str
    sentence_id: str
    text: str
    sample_rate: int  # Hz, of the stored file
    duration_s: float
    sha256: str

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Clip:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class ClipJob:
    clip_id: str
    path: str
    voice: Voice
    sentence: Sentence


@dataclass
class EngineStats:
    clips: int = 0
    synth_seconds: float = 0.0  # s spent inside the engine, summed over workers
    audio_seconds: float = 0.0  # s of audio produced

    @property
    def clips_per_s(self) -> float:
        """Clips per second of one worker's engine time."""
        return self.clips / self.synth_seconds if self.synth_seconds else 0.0


@dataclass
class Failure:
    clip_id: str
    voice: str
    sentence_id: str
    text: str
    reason: str


@dataclass
class SynthSummary:
    """What a synthesis run did."""

    planned: int = 0
    made: int = 0
    skipped: int = 0  # already complete from an earlier run
    failed: list[Failure] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False
    per_engine: dict[str, EngineStats] = field(default_factory=lambda: defaultdict(EngineStats))

    def to_dict(self) -> dict:
        """The run as JSON-able types (``dataclasses.asdict`` fails on ``per_engine``)."""
        return {
            "planned": self.planned,
            "made": self.made,
            "skipped": self.skipped,
            "failed": [asdict(f) for f in self.failed],
            "seconds": round(self.seconds, 3),
            "interrupted": self.interrupted,
            "per_engine": {k: asdict(v) for k, v in sorted(self.per_engine.items())},
        }

    def line(self) -> str:
        rate = self.made / self.seconds if self.seconds else 0.0
        return (
            f"{counted(self.made, 'clip')} made, {self.skipped} skipped (already done), "
            f"{len(self.failed)} failed, {self.seconds:.1f} s ({rate:.1f} clips/s)"
        )


def plan(
    sentences: list[Sentence],
    voices: list[Voice],
    assign: str,
    seed: int,
    fmt: str,
    per_voice: int = 10,
) -> list[ClipJob]:
    """The clips to make. ``random`` draws one voice per sentence from a seeded RNG, in order,
    so adding sentences later leaves earlier draws unchanged; ``sample`` draws ``per_voice``
    sentences for each voice (seeded by the voice, so adding voices keeps earlier draws)."""
    if assign == "sample":
        pairs = []
        for voice in voices:
            rng = random.Random(f"{seed}:{voice.id}")
            pairs += [(s, voice) for s in rng.sample(sentences, min(per_voice, len(sentences)))]
    else:
        rng = random.Random(seed)
        pairs = []
        for sentence in sentences:
            chosen = [rng.choice(voices)] if assign == "random" else voices
            pairs += [(sentence, v) for v in chosen]
    jobs = []
    for sentence, voice in pairs:
        path = f"{AUDIO_DIR}/{voice.engine}/{voice.name}/{sentence.id}.{fmt}"
        jobs.append(ClipJob(f"{sentence.id}-{voice.engine}-{voice.name}", path, voice, sentence))
    return jobs


def read_manifest(path: Path) -> list[Clip]:
    """Clips listed in a manifest; a damaged line (e.g. cut by a kill) is skipped with a warning."""
    clips = []
    try:
        lines = path.read_text("utf-8").splitlines()
    except FileNotFoundError:
        return []
    except UnicodeDecodeError as e:  # not a manifest whichvoice wrote: no line of it can be read
        raise WhichvoiceError(
            f"{path}: not a manifest (not UTF-8 text: {e.reason} at byte {e.start})"
        ) from e
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            clips.append(Clip.from_dict(json.loads(line)))
        except (ValueError, KeyError, TypeError):
            log.warning("%s:%d: skipping a damaged manifest line", path, n)
    return clips


def write_jsonl(path: Path, rows: Iterable[dict]) -> None:
    """Replace ``path`` atomically with one JSON object per line."""
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    # a reason naming a file whose name is not UTF-8 (its bytes as surrogates): \udcNN
    write_atomic(path, text.encode("utf-8", "backslashreplace"))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _complete(out: Path, clip: Clip) -> bool:
    try:
        return _sha256((out / clip.path).read_bytes()) == clip.sha256
    except OSError:
        return False


def _prepare_out(out: Path) -> None:
    ensure_dir(out, "corpus")
    # temporary files of a run that was killed mid-write
    for tmp in (out / AUDIO_DIR).rglob(".*.tmp"):
        tmp.unlink(missing_ok=True)


def speak(sessions: SessionPool, voice: Voice, text: str, fmt: str) -> tuple[bytes, float]:
    """One sentence as checked, encoded ``fmt`` bytes; also returns the engine's seconds.

    Raises SynthesisError / SilentAudioError when the engine fails or says nothing.
    """
    # control characters (a NUL cannot reach a command line) are read as spaces
    text = "".join(" " if unicodedata.category(c) == "Cc" else c for c in text)
    t0 = time.perf_counter()
    with sessions.using(voice.engine) as session:
        speech = session.synthesize(voice, text)
    engine_s = time.perf_counter() - t0
    check_not_silent(
        speech.wave, speech.sample_rate, f"{voice.id} on {text!r}", ENGINE_SILENCE_PEAK
    )
    if speech.encoded is not None and speech.encoded_format == fmt:
        return speech.encoded, engine_s  # Polly's own mp3, kept as it came (as the talk did)
    return encode_audio(speech.wave, speech.sample_rate, fmt), engine_s


def say(text: str, voice_id: str, fmt: str = "mp3", *, polly_engine: str = "standard") -> bytes:
    """``text`` read by one voice, as encoded ``fmt`` bytes (``mp3`` or ``wav``).

    Raises UnknownVoiceError, EngineUnavailableError, SynthesisError or SilentAudioError."""
    if not text.strip():
        raise WhichvoiceError("nothing to say: the text is empty")
    voices = resolve_voices(voice_id)
    if len(voices) != 1:
        raise WhichvoiceError(
            f"{voice_id}: {len(voices)} voices; one phrase into one file takes one voice id "
            "(a folder as OUT takes a set: every voice reads it)"
        )
    voice = voices[0]
    require_available([voice])
    sessions = SessionPool(polly_engine)
    try:
        return speak(sessions, voice, text.strip(), fmt)[0]
    finally:
        sessions.close()


def _make_clip(job: ClipJob, out: Path, fmt: str, sessions: SessionPool) -> tuple[Clip, float]:
    """Synthesize, check, encode and store one clip; returns it and the engine's seconds."""
    voice, text = job.voice, job.sentence.text
    data, engine_s = speak(sessions, voice, text, fmt)
    # what is stored is decoded once more, so the manifest describes the file itself
    wave, rate = read_audio(data)
    write_atomic(out / job.path, data, durable=False)
    clip = Clip(
        id=job.clip_id,
        path=job.path,
        voice=voice.id,
        engine=sessions.engine_label(voice),
        sentence_id=job.sentence.id,
        text=text,
        sample_rate=rate,
        duration_s=round(wave.shape[0] / rate, 4),
        sha256=_sha256(data),
    )
    return clip, engine_s


_NO_ROOM = (errno.ENOSPC, errno.EDQUOT)  # a full disk, a quota reached


def _no_room(out: Path, e: OSError) -> OutputLostError:
    return OutputLostError(
        f"{out}: cannot write the corpus ({e.strerror or e}); the clips made so far are kept: "
        "make room and run the same command again to go on"
    )


def _attempt(
    job: ClipJob, out: Path, fmt: str, sessions: SessionPool
) -> tuple[Clip, float] | Failure:
    reason = ""
    # a billed engine's failed clip is not asked for again (Polly answers the same, and bills
    # it): its session retries throttling itself
    tries = 1 if get_engine(job.voice.engine).billed else ATTEMPTS
    for attempt in range(1, tries + 1):
        try:
            return _make_clip(job, out, fmt, sessions)
        except OSError as e:
            if e.errno in _NO_ROOM:  # every clip after it would fail the same way
                raise _no_room(out, e) from e
            reason = str(e)
        except (EngineAccessError, EngineBrokenError) as e:  # credentials refused, no
            # endpoint, an engine that cannot run here: so is every clip
            raise type(e)(
                f"{e}; the clips made so far are kept: run the same command again once fixed",
                public=e.public,
            ) from e
        except WhichvoiceError as e:
            reason = str(e)
        except Exception as e:  # an engine bug must cost one clip, not the corpus
            log.debug("unexpected error on %s", job.clip_id, exc_info=True)
            reason = (  # as readable as the engines' own reasons; the traceback at debug
                f"{job.voice.id} on {job.sentence.text!r}: the engine failed unexpectedly "
                f"({type(e).__name__}: {str(e) or 'no message'})"
            )
        log.debug("attempt %d on %s failed: %s", attempt, job.clip_id, reason)
    return Failure(job.clip_id, job.voice.id, job.sentence.id, job.sentence.text, reason)


def synthesize_corpus(
    out: str | os.PathLike,
    sentences: list[Sentence],
    cfg: SynthConfig,
    *,
    progress: bool = True,
) -> SynthSummary:
    """Make (or complete) the corpus in ``out``; see the module docstring for the layout.

    Raises UnknownVoiceError / EngineUnavailableError before any work, OutputError when
    ``out`` cannot be written. Clips that fail twice (once for a billed engine: Polly) are
    reported in the summary and in ``failures.jsonl``, never raised; an engine that refuses
    the account or cannot be reached (EngineAccessError), a local engine that cannot run here
    (EngineBrokenError) and a full disk (OutputLostError) stop the run, raised, what was made
    kept. A KeyboardInterrupt stops the run cleanly
    (``summary.interrupted``); what was complete stays in the manifest.
    """
    t_start = time.perf_counter()
    if not isinstance(cfg, SynthConfig):
        raise SynthConfigError(f"cfg {cfg!r:.60}: a SynthConfig (SynthConfig(voices=...))")
    sentences = _as_sentences(sentences)
    voices = resolve_voices(list(cfg.voices))
    _check_polly_engine(voices, cfg.polly_engine)
    require_available(voices)
    if storage.is_url(out):  # made in a local mirror, uploaded with the manifest last
        with storage.local_output(out, last=[FAILURES, MANIFEST], progress=progress) as local:
            return synthesize_corpus(local, sentences, cfg, progress=progress)
    out = Path(out)
    _prepare_out(out)
    with held_alone(out / LOCK, f"the corpus {out}"):  # two runs lost each other's rows
        _check_settings(out, cfg, voices)
        session = _session(voices)  # the code and engines that make this run's clips
        before = _lines(out / MANIFEST)
        try:
            return _synthesize_alone(out, sentences, cfg, voices, progress, t_start)
        finally:  # a run that made clips is recorded, also one stopped under way
            made = _lines(out / MANIFEST) - before
            if made > 0:
                with contextlib.suppress(OSError, ValueError):  # a record, never the failure
                    _record_session(out, {**session, "clips": made})


def _lines(path: Path) -> int:
    """Lines of a file (0 when there is none)."""
    try:
        with open(path, "rb") as f:
            return sum(1 for _ in f)
    except FileNotFoundError:
        return 0


def _check_polly_engine(voices: list[Voice], mode: str) -> None:
    """SynthConfigError, before any request, for Polly voices the mode cannot speak (a corpus
    found it clip by clip, after paying for the other voices' clips)."""
    bad = [v.id for v in voices if v.engine == "polly" and mode not in v.modes]
    if bad and mode == "neural":
        raise SynthConfigError(
            f"--polly-engine neural: Polly offers no neural engine for {_shown(bad)}; "
            "leave them out or use --polly-engine standard"
        )


def _as_sentences(sentences) -> list[Sentence]:
    """The sentences to read: Sentence objects as they are, the sentences of a
    SentenceSource (``load_sentences``), and text as the sentence it is (its id from its
    text, as a sentence file's line gets it); SentencesError for anything else, before any
    work."""
    from whichvoice.errors import SentencesError
    from whichvoice.sentences import SentenceSource, sentence_id

    if isinstance(sentences, SentenceSource):
        return list(sentences.sentences)
    if isinstance(sentences, str) or not isinstance(sentences, Iterable):
        raise SentencesError(
            f"sentences {sentences!r:.60}: a list of Sentence (load_sentences(...).sentences) "
            "or of text"
        )
    out = []
    for s in sentences:
        if isinstance(s, Sentence):
            out.append(s)
        elif isinstance(s, str) and s.strip():
            text = " ".join(s.split())
            out.append(Sentence(sentence_id(text), text))
        else:
            raise SentencesError(f"sentence {s!r:.60}: a Sentence or non-empty text")
    return out


LOCK = ".whichvoice.lock"  # held while a run writes the corpus
SETTINGS = "synth.json"  # what a corpus was made with: a resume must make the same kind


def _settings(cfg: SynthConfig, voices: list[Voice]) -> dict:
    """The settings that decide which clips a corpus holds and how they are stored."""
    out: dict = {"format": cfg.format, "assign": cfg.assign}
    if cfg.assign in ("random", "sample"):  # the draws (sample's, per voice: so a voice
        out["seed"] = cfg.seed  # added, or more sentences a voice, leaves the others')
    if cfg.assign == "random":  # each sentence's voice is drawn among them
        out["voices"] = sorted(v.id for v in voices)
    if any(v.engine == "polly" for v in voices):  # a resume in the other mode mixed the two
        out["polly_engine"] = cfg.polly_engine
    return out


def _check_settings(out: Path, cfg: SynthConfig, voices: list[Voice]) -> None:
    """SynthConfigError when the corpus in ``out`` was made with other settings (another
    format left the first files beside the new ones; another seed or voice set under
    --assign random drew other voices for the sentences already read, mixing two corpora);
    else the settings are recorded."""
    mine = _settings(cfg, voices)
    try:
        before = json.loads((out / SETTINGS).read_text("utf-8"))
    except (OSError, ValueError):
        before = None
    sessions = before.pop("made", []) if isinstance(before, dict) else []
    seen = before
    if isinstance(before, dict):
        if "polly_engine" in before and "polly_engine" not in mine:
            mine["polly_engine"] = before["polly_engine"]  # no Polly voice now: its mode stands
        if "polly_engine" in mine and "polly_engine" not in before:
            # made before the key: its Polly clips' labels say the mode; with none so far,
            # this run's mode is recorded
            made_in = _polly_mode_of(out) or mine["polly_engine"]
            seen = {**before, "polly_engine": made_in}
    if isinstance(seen, dict) and seen != mine:
        before = seen
        keys = [k for k in ("format", "assign", "seed", "voices", "polly_engine")
                if before.get(k) != mine.get(k)]  # fmt: skip
        shown = {"format": "--format", "assign": "--assign", "seed": "--seed",
                 "voices": "--voices", "polly_engine": "--polly-engine"}  # fmt: skip
        said = "; ".join(
            f"{shown[k]} {_shown(before.get(k))}, not {_shown(mine.get(k))}" for k in keys
        )
        raise SynthConfigError(
            f"{out}: a corpus made with other settings ({said}); resume it with its own "
            f"settings, or make this one in another folder"
        )
    if before != mine:  # the runs recorded stay
        made = {"made": sessions} if sessions else {}
        write_atomic(out / SETTINGS, (json.dumps({**mine, **made}, indent=1) + "\n").encode())


MAX_SESSIONS = 20  # runs of one corpus synth.json remembers (the latest that made clips)


def _session(voices: list[Voice]) -> dict:
    """How this run makes its clips, for synth.json's ``made`` (a review: a corpus recorded
    neither the code nor the engines' versions, which decide its audio): the commit,
    whichvoice's version and the date, and each engine's packages' versions."""
    from whichvoice.provenance import code_state
    from whichvoice.voices.base import package_versions
    from whichvoice.voices.registry import get_engine

    return {
        **code_state(),
        "engines": {
            e: package_versions(get_engine(e).packages) for e in sorted({v.engine for v in voices})
        },
    }


def _record_session(out: Path, session: dict) -> None:
    """``session`` (with the clips it made) added to synth.json's ``made``: the latest
    ``MAX_SESSIONS`` runs that made clips."""
    settings = json.loads((out / SETTINGS).read_text("utf-8"))
    kept = settings.get("made")
    sessions = [m for m in kept if isinstance(m, dict)] if isinstance(kept, list) else []
    settings["made"] = [*sessions, session][-MAX_SESSIONS:]
    write_atomic(out / SETTINGS, (json.dumps(settings, indent=1) + "\n").encode())


def _polly_mode_of(out: Path) -> str | None:
    """The mode the corpus's Polly clips were made in, as their engine labels say (a voice
    offered in both modes is labelled ``polly-neural`` in neural mode only); None when it has
    none, or clips of both."""
    from whichvoice.voices.polly import NEURAL_ONLY

    modes = {
        "neural" if c.engine == "polly-neural" else "standard"
        for c in read_manifest(out / MANIFEST)
        if c.voice.startswith("polly:") and c.voice.partition(":")[2] not in NEURAL_ONLY
    }
    return modes.pop() if len(modes) == 1 else None


def _shown(value) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, list):
        return ",".join(value) if len(value) <= 4 else f"{len(value)} voices"
    return str(value)


def _synthesize_alone(
    out: Path,
    sentences: list[Sentence],
    cfg: SynthConfig,
    voices: list[Voice],
    progress: bool,
    t_start: float,
) -> SynthSummary:
    """``synthesize_corpus``'s work once no other run writes ``out``."""
    manifest_path = out / MANIFEST
    done = {c.id: c for c in read_manifest(manifest_path) if _complete(out, c)}
    jobs = plan(sentences, voices, cfg.assign, cfg.seed, cfg.format, cfg.per_voice)
    todo = [j for j in jobs if j.clip_id not in done or done[j.clip_id].path != j.path]
    summary = SynthSummary(planned=len(jobs), skipped=len(jobs) - len(todo))
    write_jsonl(manifest_path, (c.to_dict() for c in sorted(done.values(), key=lambda c: c.id)))

    sessions = SessionPool(cfg.polly_engine)
    bar = tqdm(
        total=len(todo),
        unit="clip",
        desc="synth",
        disable=None if progress else True,
        dynamic_ncols=True,
    )
    try:
        with open(manifest_path, "a", encoding="utf-8") as manifest:
            _synthesize_all(todo, out, cfg, sessions, manifest, done, summary, bar)
    except OSError as e:  # the manifest's own line, on a full disk
        if e.errno not in _NO_ROOM:
            raise
        raise _no_room(out, e) from e
    finally:
        bar.close()
        sessions.close()
        try:  # the appended manifest stays whole if there is no room to rewrite it
            write_jsonl(
                manifest_path, (c.to_dict() for c in sorted(done.values(), key=lambda c: c.id))
            )
            if summary.failed or (out / FAILURES).exists():
                write_jsonl(out / FAILURES, (asdict(f) for f in summary.failed))
        except OSError as e:
            if e.errno not in _NO_ROOM:
                raise
        summary.seconds = time.perf_counter() - t_start
    return summary


def _synthesize_all(
    todo: list[ClipJob],
    out: Path,
    cfg: SynthConfig,
    sessions: SessionPool,
    manifest: TextIO,
    done: dict[str, Clip],
    summary: SynthSummary,
    bar: tqdm,
) -> None:
    """Make the ``todo`` clips on ``cfg.workers`` threads, each recorded in the manifest as it
    completes. Ctrl-C cancels what has not started and keeps what completed meanwhile."""
    with ThreadPoolExecutor(max_workers=cfg.workers, thread_name_prefix="synth") as pool:
        pending = {pool.submit(_attempt, job, out, cfg.format, sessions) for job in todo}
        unrecorded: list = []  # finished, not yet in the manifest
        try:
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                unrecorded = list(finished)
                while unrecorded:
                    future = unrecorded.pop()
                    _record(future.result(), manifest, done, summary)
                    bar.update(1)
                    bar.set_postfix(failed=len(summary.failed), refresh=False)
        except (KeyboardInterrupt, OutputLostError, EngineAccessError, EngineBrokenError) as e:
            summary.interrupted = isinstance(e, KeyboardInterrupt)
            # clips finished beside the one that stopped the run are kept too (they were
            # dropped: a resume asked, and paid, for them again)
            pending = set(pending) | set(unrecorded)
            for future in pending:
                future.cancel()
            sessions.stop()  # a session waiting to retry gives up: no request after Ctrl-C
            pool.shutdown(wait=True)
            # clips finished while stopping are complete: keep them, drop their failures
            for future in pending:
                if future.done() and not future.cancelled() and future.exception() is None:
                    result = future.result()
                    if not isinstance(result, Failure):
                        _record(result, manifest, done, summary)
            if not summary.interrupted:
                raise


def _record(
    result: tuple[Clip, float] | Failure, manifest, done: dict[str, Clip], summary: SynthSummary
) -> None:
    if isinstance(result, Failure):
        summary.failed.append(result)
        clip_log.warning("%s failed: %s", result.clip_id, result.reason)
        return
    clip, engine_s = result
    # one line at a time, flushed: a kill leaves at most a cut last line, skipped on resume
    manifest.write(json.dumps(clip.to_dict(), ensure_ascii=False) + "\n")
    manifest.flush()
    done[clip.id] = clip
    summary.made += 1
    stats = summary.per_engine[clip.engine]
    stats.clips += 1
    stats.synth_seconds += engine_s
    stats.audio_seconds += clip.duration_s

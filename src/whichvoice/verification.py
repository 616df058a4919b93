"""Verification and open-set identification with a voice encoder: calibration on held-out
voices (EER, minDCF, DET curve, threshold, score-to-probability), stored in the run as
``calibration.json``; enrollment, verify and identify. Which encoder, and where its
calibration lives: ``whichvoice.encoders`` (its names are importable from here too)."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import numbers
import os
import random
import stat
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from whichvoice.audio import (
    STDIN,
    AudioSource,
    Channel,
    Decoded,
    channel_count,
    describe_source,
    inputs_of,
    is_stdin,
    read_audio,
    read_pipe,
    split_channel,
    with_speech,
)
from whichvoice.encoders import (
    BUNDLED_DIR_ENV,
    CALIBRATION,
    PRETRAINED,
    Encoder,
    bundled_encoder,
    calibration_dir,
    calibration_file,
    calibration_of,
    calibration_read,
    fused_encoder,
    gallery_encoder,
    load_calibration,
    load_encoder,
    model_for,
    model_id,
    warn_once,
)
from whichvoice.errors import WhichvoiceError
from whichvoice.files import ensure_dir, write_atomic
from whichvoice.gallery import (
    UNKNOWN,
    AlreadyEnrolledError,
    EnrolledVoice,
    EnrollmentShortError,
    Gallery,
    NotEnrolledError,
    voice_name,
)
from whichvoice.prototypes import (
    CONDITIONS,
    MemoryVoice,
    clean_part,
    embed_enrollment,
    refs_from_clips,
    voice_refs,
)
from whichvoice.quality import Quality, Signals, judged, measure
from whichvoice.scoring import (
    Calibration,
    eer,
    error_rates,
    fit_calibration,
    identification_far,
    min_dcf,
    score_tail,
    tail_frr,
    tail_threshold,
    threshold_at_far,
)
from whichvoice.text import as_decided, counted
from whichvoice.tracing import EngineAnswer, EngineHead, embed_and_trace

# with the names of whichvoice.encoders, importable from here as before
__all__ = [
    "BUNDLED_DIR_ENV",
    "CALIBRATION",
    "PRETRAINED",
    "Encoder",
    "Identity",
    "OperatingPoint",
    "Trials",
    "Verdict",
    "bundled_encoder",
    "calibrate",
    "calibration_dir",
    "calibration_file",
    "calibration_of",
    "calibration_warnings",
    "enroll",
    "fused_encoder",
    "gallery_encoder",
    "held_out_files",
    "identification_threshold",
    "identify",
    "load_calibration",
    "load_encoder",
    "model_for",
    "model_id",
    "operating_point",
    "trials_from_list",
    "verify",
    "voice_trials",
]

log = logging.getLogger(__name__)

DET_PNG = "det.png"
ENROLL_CLIPS = 3  # clips that enroll a voice in calibration trials
# what enroll, verify and identify take: one input, or any iterable of them
Sources = AudioSource | Iterable[AudioSource]


@dataclass(frozen=True)
class Trials:
    """Scores of verification trials: same-voice (``target``) and different-voice
    (``nontarget``), as ``calibrate`` and ``evaluate`` read them."""

    target: np.ndarray  # float64 scores of same-voice trials
    nontarget: np.ndarray  # float64 scores of different-voice trials
    # seconds of speech of each test clip scored (None: not known): a threshold set on
    # clips much shorter than the claims it will judge is looser than theirs would be
    speech_s: np.ndarray | None = None


def voice_trials(
    model: Encoder,
    files: dict[str, list[Path]],
    *,
    enroll: int = ENROLL_CLIPS,
    seed: int = 0,
    progress: bool = False,
) -> Trials:
    """Trials from clips of voices (ideally unseen in training): each voice is enrolled from
    ``enroll`` clips as ``enroll`` does (a prototype per condition,
    ``whichvoice.prototypes``), every other clip is scored against every voice.
    ``progress``: a bar of the voices on a terminal."""
    rng = random.Random(seed)
    names = sorted(n for n, paths in files.items() if len(paths) > enroll)
    if len(names) < 2:
        raise WhichvoiceError(
            f"calibration needs at least 2 voices of {enroll + 1} clips or more ({enroll} to "
            f"enroll each, the rest scored); {counted(len(names), 'voice')} of "
            f"{len(files)} {'has' if len(names) == 1 else 'have'} that many"
        )
    enrolled, tests = [], []
    for name in progress_bar(names, len(names), "calibrate", progress, unit="voice"):
        paths = sorted(files[name])
        rng.shuffle(paths)
        # no speech check: a calibration's trials are the same on every machine, whether or
        # not silero-vad is installed
        embedded = embed_enrollment(model, paths[:enroll], check_speech=False)
        rows = [e[0] for e in embedded if isinstance(e, tuple)]
        if not rows:
            continue
        enrolled.append(MemoryVoice(name, np.mean(rows, axis=0)))
        tests += [
            (name, e[0], e[1]) for e in model.embed_many(paths[enroll:]) if isinstance(e, tuple)
        ]
    if not tests:
        raise WhichvoiceError("calibration found no usable test clips")
    refs = voice_refs(enrolled, tests[0][1].shape[0])
    target, nontarget = [], []
    for name, emb, _ in tests:
        for k, score in zip(refs.names, refs.scores(emb), strict=True):
            (target if k == name else nontarget).append(float(score))
    speech = np.asarray([float(s) for *_, s in tests])
    return Trials(np.asarray(target), np.asarray(nontarget), speech)


def _resolve(base: Path, p: str) -> Path:
    p = p.strip()
    return Path(p) if Path(p).is_absolute() else base / p


def trials_from_list(
    model: Encoder,
    path: str | os.PathLike,
    *,
    target_far: float | None = None,
    force: bool = True,
) -> Trials:
    """A trial list, one per line: ``enroll_path[;enroll_path...]|test_path|same(0/1)``;
    relative paths are taken from the list's folder. The whole list is read, and (unless
    ``force``) its counts checked as ``calibrate`` checks them for ``target_far``
    (``few_trials``), before anything is embedded; each
    enrollment and each test file is embedded once, however many lines name it (a list of
    288 lines took 2 minutes to be refused as too few)."""
    path = Path(path)
    try:  # utf-8-sig: a byte-order mark (as Windows editors write) is not part of a path
        text = path.read_text("utf-8-sig")
    except UnicodeDecodeError as e:
        raise WhichvoiceError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from e
    except OSError as e:
        raise WhichvoiceError(f"{path}: cannot read ({e.strerror or e})") from e
    lines = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("|")
        if len(parts) != 3 or parts[2].strip() not in ("0", "1"):
            raise WhichvoiceError(f"{path}:{n}: expected 'enroll_paths|test_path|0 or 1'")
        # a file named twice counts once, as enroll takes it (it scored otherwise here)
        enroll = tuple(  # one file by two spellings (a/../a.wav, a link) is one too
            {
                os.path.realpath(f): f
                for f in (_resolve(path.parent, p) for p in parts[0].split(";") if p.strip())
            }.values()
        )
        lines.append((n, enroll, _resolve(path.parent, parts[1]), parts[2].strip() == "1"))
    same = sum(s for *_, s in lines)
    counts = Trials(np.zeros(same), np.zeros(len(lines) - same))
    if not same or same == len(lines):  # refused whatever --force says (calibrate's rule)
        raise WhichvoiceError(
            f"{path}: calibration needs both same-voice and different-voice trials "
            f"({same} and {len(lines) - same})"
        )
    if not force and (why := few_trials(counts, target_far)):
        raise WhichvoiceError(f"{path}: {why}; nothing was stored (--force stores it anyway)")
    target, nontarget = [], []
    refs_of, embedded_of, speech_of = {}, {}, {}
    for n, enroll, test, is_same in lines:
        try:
            if enroll not in refs_of:
                refs_of[enroll] = refs_from_clips(model, {"enrolled": list(enroll)})
            if test not in embedded_of:  # under verify's rule: a burst is no voice to score
                result = with_speech(test, model.embed(test))
                if isinstance(result, WhichvoiceError):
                    raise result
                embedded_of[test], speech_of[test] = result[0], float(result[1])
        except WhichvoiceError as e:
            raise WhichvoiceError(f"{path}:{n}: {e}") from e
        score = float(refs_of[enroll].scores(embedded_of[test])[0])
        (target if is_same else nontarget).append(score)
    return Trials(np.asarray(target), np.asarray(nontarget), np.asarray(list(speech_of.values())))


def calibrate(
    run: str | os.PathLike,
    trials: Trials,
    *,
    target_far: float | None = None,
    source: str = "",
    force: bool = False,
    encoder: str = "",
) -> dict:
    """EER, minDCF at p_target 0.01 and 0.05, the threshold (EER point, or the one giving
    ``target_far``), a logistic calibration and a DET plot, saved in the run. Too few trials
    for the rule (``few_trials``) raise WhichvoiceError and store nothing, unless ``force``.
    ``encoder``: the id of the encoder the trials were scored with (``model_id``), recorded so
    that a calibration in a user folder is not used with another version of that encoder."""
    if trials.target.size == 0 or trials.nontarget.size == 0:
        raise WhichvoiceError("calibration needs both same-voice and different-voice trials")
    few = few_trials(trials, target_far)
    if few and not force:
        raise WhichvoiceError(f"{few}; nothing was stored (--force stores it anyway)")
    rate, eer_threshold = eer(trials.target, trials.nontarget)
    dcf1, _ = min_dcf(trials.target, trials.nontarget, 0.01)
    dcf5, _ = min_dcf(trials.target, trials.nontarget, 0.05)
    threshold = (
        eer_threshold if target_far is None else threshold_at_far(trials.nontarget, target_far)
    )
    cal = fit_calibration(trials.target, trials.nontarget)
    far_at = float(np.mean(trials.nontarget >= threshold))
    result = {
        "eer": rate,
        "min_dcf_0.01": dcf1,
        "min_dcf_0.05": dcf5,
        "threshold": threshold,
        "threshold_rule": "eer" if target_far is None else f"far<={target_far}",
        "false_rejection_at_threshold": float(np.mean(trials.target < threshold)),
        "false_acceptance_at_threshold": far_at,
        "calibration": cal.to_dict(),
        # identify's stricter thresholds for several enrolled voices (``operating_point``)
        "tail": score_tail(trials.target, trials.nontarget, far_at) if far_at > 0 else {},
        "target_trials": int(trials.target.size),
        "nontarget_trials": int(trials.nontarget.size),
        "source": source,
        **({"encoder": encoder} if encoder else {}),
    }
    run = ensure_dir(Path(run), "calibration")
    _plot_det(trials, run / DET_PNG)
    write_atomic(run / CALIBRATION, (json.dumps(result, indent=2) + "\n").encode())
    return result


SHORT_CALIBRATION_S = 1.5  # test clips' median speech under which a calibration is warned of


def calibration_warnings(
    new: float,
    trials: Trials,
    before: OperatingPoint | None,
    shipped: tuple[float, Calibration, dict] | None,
) -> list[str]:
    """What ``calibrate`` should say of a threshold ``new`` just stored from ``trials``:
    looser than the one it replaces (``before``, its operating point until now) or the one
    shipped with the encoder (``shipped``, ``encoders.shipped_calibration``'s; a user's
    second calibration was compared with the first alone, and a threshold looser than the
    shipped one went unsaid: a review); set on test clips of little speech (single words:
    a threshold set on them accepted 4 of 5 three-second claims of another person). A change
    under 1e-4 is none (the same trials, rounded)."""
    out, looser = [], []

    def named(what: str, threshold: float, far: float | None, of: str = "dev") -> str:
        rate = f" ({of} false acceptances {100 * far:.2f} %)" if far is not None else ""
        return f"{what}, {threshold:.4f}{rate}"

    # the one it replaces was the shipped one: named so, and its rate is a dev rate
    was_shipped = (
        before is not None and shipped is not None and abs(before.threshold - shipped[0]) <= 1e-4
    )
    if before is not None and new < before.threshold - 1e-4:
        what, of = (
            ("the shipped one", "dev") if was_shipped else ("the one it replaces", "its trials'")
        )
        looser.append(named(what, before.threshold, before.false_acceptance, of))
    if shipped is not None and not was_shipped and new < shipped[0] - 1e-4:
        far = shipped[2].get("false_acceptance_at_threshold")
        looser.append(named("the shipped one", shipped[0], far))
    if looser:
        out.append(
            f"the new threshold {new:.4f} is looser than {' and '.join(looser)}: more "
            "strangers will be accepted; --target-far F takes the loosest threshold that "
            "accepts at most F of these trials' strangers (on few trials, possibly looser "
            "still), `--threshold T` on verify is stricter for one call"
        )
    speech = trials.speech_s
    if (
        speech is not None
        and speech.size
        and (short := float(np.median(speech))) < (SHORT_CALIBRATION_S)
    ):
        out.append(
            f"the test clips hold a median of {short:.1f} s of speech: a threshold set on "
            "clips this short is looser than the claims you verify need (a few seconds "
            "each) and accepts more strangers on them; calibrate on clips as long as your "
            "claims (join short ones)"
        )
    return out


MIN_TRIALS = 10  # same-voice and different-voice trials a calibration needs, at least


def few_trials(trials: Trials, target_far: float | None) -> str:
    """Why ``trials`` are too few to set a threshold (empty: enough): fewer than
    ``MIN_TRIALS`` of a kind, or, for a false-acceptance target, fewer different-voice trials
    than it takes to see one false acceptance at that rate."""
    n_t, n_n = int(trials.target.size), int(trials.nontarget.size)
    if n_t < MIN_TRIALS or n_n < MIN_TRIALS:
        return (
            f"{n_t} same-voice and {n_n} different-voice trials: a threshold needs at least "
            f"{MIN_TRIALS} of each"
        )
    if target_far is not None and target_far > 0 and n_n * target_far < 1:
        return (
            f"{n_n} different-voice trials cannot show a false-acceptance rate of {target_far} "
            f"(it takes at least {math.ceil(1 / target_far)})"
        )
    return ""


def held_out_files(
    corpus: str | os.PathLike, voices: list[str] | None = None
) -> dict[str, list[Path]]:
    """Clips of a corpus grouped by voice (only ``voices`` when given)."""
    from whichvoice import storage
    from whichvoice.dataset import load_corpus

    files: dict[str, list[Path]] = defaultdict(list)
    root = storage.local_path(corpus)  # a URL's local mirror, fetched once
    clips = load_corpus(corpus, local=root)
    for clip in clips:
        if voices is None or clip.voice in voices:
            files[clip.voice].append(root / clip.path)
    return dict(files)


def _plot_det(trials: Trials, path: Path) -> None:
    """Miss vs false-alarm rates on normal-deviate axes (the DET curve), as PNG."""
    from statistics import NormalDist

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    _, miss, fa = error_rates(trials.target, trials.nontarget)
    probit = np.vectorize(lambda p: NormalDist().inv_cdf(min(max(p, 1e-5), 1 - 1e-5)))
    fig = Figure(figsize=(5, 5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(probit(fa), probit(miss))
    ticks = [0.001, 0.01, 0.05, 0.2, 0.5]
    ax.set_xticks(probit(ticks), [f"{t:g}" for t in ticks])
    ax.set_yticks(probit(ticks), [f"{t:g}" for t in ticks])
    ax.set_xlabel("false acceptance rate")
    ax.set_ylabel("false rejection rate")
    ax.grid(True, alpha=0.3)
    rate, _ = eer(trials.target, trials.nontarget)
    ax.set_title(f"DET (EER {100 * rate:.2f} %)")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    os.replace(tmp, path)


@dataclass(frozen=True)
class OperatingPoint:
    """Where verify and identify decide: the threshold on the cosine score, the probability
    that agrees with it (P >= 0.5 exactly when the score reaches the threshold), and, for the
    calibrated threshold, its error rates on the calibration's dev trials."""

    threshold: float
    calibration: Calibration
    source: str  # "calibrated" or "given"
    false_acceptance: float | None = None  # on the dev trials (calibrated threshold only)
    false_rejection: float | None = None
    # the calibration.json read: the package's, or a user's own (`whichvoice calibrate`),
    # so that an answer can be traced to what set its threshold and probability
    calibration_path: str | None = None

    def probability(self, score: float) -> float:
        return float(self.calibration.probability(score))

    def to_dict(self) -> dict:
        # the same keys whatever the threshold (null for one given: its dev error rates are
        # not known), as the HTTP routes answer them
        known = self.false_acceptance is not None
        return {
            "threshold": round(self.threshold, 6),
            "threshold_source": self.source,
            "dev_false_acceptance": round(self.false_acceptance, 6) if known else None,
            "dev_false_rejection": round(self.false_rejection or 0.0, 6) if known else None,
            "calibration": self.calibration_path,
        }


IDENTIFY_FAR = 0.01  # at most 1 stranger in 100 named by identify, however many voices


def identification_threshold(calibration: dict, voices: int) -> tuple[float, float | None]:
    """identify's threshold among ``voices`` enrolled voices, and the share of a voice's
    non-target trials it lets through (None: unknown), from a calibration.json's contents.

    A stranger scored against N voices is named when any one score passes, so the one-trial
    threshold, which lets ``false_acceptance_at_threshold`` (0.1 %) of non-target trials
    through, names strangers about N times as often. From the gallery size at which that
    would pass ``IDENTIFY_FAR`` (1 in 100), the threshold is raised until each voice lets
    through ``identification_far(IDENTIFY_FAR, N)`` (read off the dev trials' score tail,
    carried past its rarest point by its last decade's line, at most ``TAIL_REACH`` decades
    and only for a tail that spans a decade: a tail of few trials does not say where a
    threshold far past it lies, and its line had set thresholds of 1.0, which reject
    everyone; ``short_tail`` says so). Below that size,
    and for a calibration without a tail (made before one was stored), it is the one-trial
    threshold. The rate 1 in 100 was chosen on dev (docs/verification.md)."""
    threshold = float(calibration["threshold"])
    far = calibration.get("false_acceptance_at_threshold")
    f = _stricter_far(calibration, voices)
    tail = calibration.get("tail") or {}
    if f is not None and tail.get("far"):
        f = max(f, _reach(tail))
        raised = tail_threshold(tail, f)
        if raised > threshold:
            return raised, f
    return threshold, far


TAIL_REACH = 1.0  # decades past a score tail's rarest point that identify's threshold may go


def _reach(tail: dict) -> float:
    """The rarest false-acceptance rate a score tail sets a threshold for: ``TAIL_REACH``
    decades past its rarest point when it spans a decade or more, else that point (the line
    through two or three close points is no guide: it set 1.0 a decade on)."""
    fars = tail["far"]
    spans_a_decade = fars[0] / fars[-1] >= 10 - 1e-9
    return float(fars[-1]) * (10**-TAIL_REACH if spans_a_decade else 1.0)


def short_tail(calibration: dict, voices: int) -> str:
    """Why identify among ``voices`` voices names more strangers than 1 in 100 ("" when it
    does not): the calibration's score tail (its different-voice trials) ends too soon to set
    the threshold that many voices need."""
    f = _stricter_far(calibration, voices)
    tail = calibration.get("tail") or {}
    if f is None or not tail.get("far") or f >= _reach(tail):
        return ""
    named = 1.0 - (1.0 - _reach(tail)) ** voices
    return (
        f"identify among {_voices(voices)} names about {_pct_over(named, IDENTIFY_FAR)} of "
        f"strangers, not {100 * IDENTIFY_FAR:.0f} %: the calibration's different-voice trials "
        "are too few to set a stricter threshold; run `whichvoice calibrate` with more voices, "
        "or give --threshold"
    )


def _pct_over(share: float, target: float) -> str:
    """``share`` as a percentage with as many decimals as it takes to read above ``target``
    (1.003 % printed "1.0 %, not 1 %")."""
    for places in (1, 2, 3):
        if round(100 * share, places) > round(100 * target, places):
            return f"{100 * share:.{places}f} %"
    return f"just over {100 * target:g} %"


def _stricter_far(calibration: dict, voices: int) -> float | None:
    """The share of non-target trials each of ``voices`` voices may let through, where it is
    under the calibrated threshold's (None: the one-trial threshold names few enough). One
    voice counts too: a calibration of the user's at the EER point lets a few % of strangers
    through, and identify keeps to 1 in 100 whatever the gallery's size (a review's one-voice
    gallery named 1.9 % without a word, where two voices raised the threshold)."""
    far = calibration.get("false_acceptance_at_threshold")
    f = identification_far(IDENTIFY_FAR, voices)
    return f if far and f < far else None


def _voices(n: int) -> str:
    return "1 voice" if n == 1 else f"{n} voices"


def untailed(calibration: dict, voices: int) -> str:
    """Why identify keeps the one-trial threshold among ``voices`` voices where it should
    raise it ("" when it raises it or need not): the calibration stores no score tail."""
    if _stricter_far(calibration, voices) is None or (calibration.get("tail") or {}).get("far"):
        return ""
    far = float(calibration["false_acceptance_at_threshold"])
    named = 1.0 - (1.0 - far) ** voices
    return (
        f"identify among {_voices(voices)} at verify's threshold names about "
        f"{100 * named:.0f} % of strangers: the calibration stores no score tail to raise it "
        "(made before whichvoice stored one, or from too few different-voice trials); run "
        "`whichvoice calibrate` with more trials, or give --threshold"
    )


def operating_point(
    model: Encoder, threshold: float | None = None, *, voices: int | None = None
) -> OperatingPoint:
    """The calibrated operating point of ``model``'s encoder, or ``threshold`` given by the
    user (a cosine score in [-1, 1]) with the calibration's slope. ``voices``: how many
    enrolled voices an answer picks from (identify: ``identification_threshold``); None for
    a claim of one voice (verify: the calibration's own threshold, whatever rule set it)."""
    calibrated, cal, data, read_from = calibration_read(model)  # the file looked up once
    path = None if read_from is None else str(read_from)
    if threshold is None:
        far, frr = (
            data.get("false_acceptance_at_threshold"),
            data.get("false_rejection_at_threshold"),
        )
        if voices is not None:
            if note := untailed(data, voices) or short_tail(data, voices):
                warn_once(note)
            raised, f = identification_threshold({**data, "threshold": calibrated}, voices)
            if raised != calibrated:
                own = data.get("false_acceptance_at_threshold")
                if own and own > IDENTIFY_FAR:  # a lax calibration of the user's: said once
                    warn_once(
                        f"identify among {_voices(voices)} answers at {raised:.4f}, stricter "
                        f"than the calibration's {calibrated:.4f} (which accepts "
                        f"{100 * own:.1f} % of strangers), to name at most 1 stranger in "
                        f"{round(1 / IDENTIFY_FAR)}; verify keeps {calibrated:.4f}"
                    )
                calibrated, far = raised, f
                frr = tail_frr(data["tail"], raised)
        return OperatingPoint(calibrated, cal.at(calibrated), "calibrated", far, frr, path)
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, numbers.Real)
        or not -1.0 <= threshold <= 1.0
    ):
        raise WhichvoiceError(f"threshold {threshold!r}: a cosine score, between -1 and 1")
    # the slope of the probability is still the calibration's
    return OperatingPoint(float(threshold), cal.at(threshold), "given", calibration_path=path)


@dataclass(frozen=True)
class Verdict:
    """``verify``'s answer for one recording: whether it is the ``claimed`` voice
    (``accept``: ``score``, the cosine to the voice's nearest prototype, at or above the
    operating ``point``'s threshold) and the calibrated ``probability`` that it is."""

    path: str
    claimed: str
    accept: bool
    score: float
    # the calibrated posterior at the prior for which the threshold is the Bayes decision:
    # >= 0.5 exactly when accepted; it moves with the threshold (verification.md)
    probability: float
    point: OperatingPoint
    speech_s: float = 0.0  # seconds of speech the claim held
    # the claim is one of the recordings the voice was enrolled from (the same file bytes as
    # one enrolled from a file or an upload, or the same samples as one enrolled as samples):
    # a replay of it scores as the voice itself; nothing checks liveness. None: the voice
    # keeps no digests (enrolled before galleries kept them), or the claim's bytes cannot be
    # read twice (standard input, a pipe, a URL): it cannot be told
    enrolled_recording: bool | None = False
    # how fit the recording is to be judged (noise, clipping, band, speech): warnings only,
    # the decision does not read it; None where it was not measured
    quality: Quality | None = None

    @property
    def threshold(self) -> float:
        return self.point.threshold

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "claimed": self.claimed,
            "accept": self.accept,
            "score": as_decided(self.score, self.point.threshold, self.accept),
            "probability": as_decided(self.probability, 0.5, self.accept),
            **self.point.to_dict(),
            "speech_s": round(self.speech_s, 3),
            "enrolled_recording": self.enrolled_recording,
            **_quality_dict(self.quality),
        }


def _quality_dict(q: Quality | None) -> dict:
    return {} if q is None else {"quality": q.to_dict()}


@dataclass(frozen=True)
class Identity:
    """``identify``'s answer for one recording: the enrolled ``voice`` it is (``unknown``
    when even the ``nearest`` scores under the operating ``point``'s threshold), the cosine
    ``score`` of that nearest voice, every voice's ``scores``, and with an engine head which
    ``engine`` family made it."""

    path: str
    voice: str  # "unknown" under the threshold
    score: float  # the nearest voice's
    scores: dict[str, float]
    point: OperatingPoint
    nearest: str = ""  # the closest enrolled voice, whether or not it passed the threshold
    engine: EngineAnswer | None = None  # which engine family made it (an engine head's)
    quality: Quality | None = None  # as Verdict's

    @property
    def threshold(self) -> float:
        return self.point.threshold

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "voice": self.voice,
            "voice_known": self.voice != UNKNOWN,
            "nearest": self.nearest,
            "score": as_decided(self.score, self.point.threshold, self.voice != UNKNOWN),
            "probability": as_decided(
                self.point.probability(self.score), 0.5, self.voice != UNKNOWN
            ),
            **self.point.to_dict(),
            # each as the decision reads it: the nearest's, under the threshold when unknown
            "scores": {
                k: as_decided(v, self.point.threshold, v >= self.point.threshold)
                for k, v in self.scores.items()
            },
            **(self.engine.to_dict() if self.engine is not None else {}),
            **_quality_dict(self.quality),
        }


@dataclass(frozen=True)
class Embedding:
    """``embed``'s answer for one recording: the encoder's ``vector`` of it (float32; compare
    two by their cosine, as ``verify`` and ``identify`` score a clip's vector against a
    voice's enrolled ones), and the seconds of speech it was made from."""

    path: str
    vector: np.ndarray = field(repr=False)  # hundreds of numbers: not in a notebook's repr
    speech_s: float
    quality: Quality | None = None  # as Verdict's

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "speech_s": round(self.speech_s, 3),
            **_quality_dict(self.quality),
            "dim": int(self.vector.shape[0]),
            "embedding": [round(float(x), 6) for x in self.vector],
        }


def embed_each(
    model: Encoder, sources: Sources, *, progress: bool = False
) -> Iterator[Embedding | WhichvoiceError]:
    """Each recording's ``Embedding`` (or why it has none: unreadable, no speech), one at a
    time as they are made, in order: what ``enroll``, ``verify`` and ``identify`` compare,
    for a user's own clustering, search or plots."""
    sources = _sources(sources)
    measured = embed_and_trace(model, None, sources, measure=True)
    with progress_bar(measured, len(sources), "embed", progress) as embedded:
        for src, (result, _, signals) in zip(sources, embedded, strict=True):
            if isinstance(result, WhichvoiceError):
                yield result
                continue
            vector = np.asarray(result[0], np.float32)
            speech_s = float(result[1])
            yield Embedding(
                describe_source(src), vector, speech_s, quality=_judged(signals, speech_s)
            )


def _judged(measured: Signals | None, speech_s: float) -> Quality | None:
    return None if measured is None else judged(measured, speech_s)


def embed(model: Encoder, sources: Sources) -> list[Embedding | WhichvoiceError]:
    """``embed_each``'s answers as a list."""
    return list(embed_each(model, sources))


MIN_ENROLL_SECONDS = 3.0  # speech in all, below which enrollment is refused (docs/cli.md)


def progress_bar(
    results: Iterable, total: int, desc: str, show: bool, unit: str = "file"
) -> Iterable:
    """``results`` counted on a progress bar (of ``unit``) on standard error when ``show``
    and it is a terminal; a pipe or a log gets none."""
    from tqdm import tqdm

    return tqdm(results, total=total, desc=desc, unit=unit, leave=False, file=sys.stderr,
                disable=None if show else True)  # fmt: skip


def _sources(sources: Sources) -> list[AudioSource]:
    """The inputs as a list: one path, URL or clip is one input (a str is not read one
    character at a time), any iterable (a generator too) its items."""
    if isinstance(sources, np.ndarray):  # samples without their rate: what to do instead
        read_audio(sources)
    try:
        return list(inputs_of(sources))
    except TypeError:
        raise WhichvoiceError(
            f"{sources!r:.60}: give a file path, a URL, encoded bytes, a Decoded clip or a "
            "list of them"
        ) from None


def _copies(sources: list, digests: list[str | None], samples: list[str | None]) -> dict[int, int]:
    """{index: index of the first input with the same content} for inputs given more than
    once (the same file by two paths, the same bytes twice: the same ``digests``; the same
    audio decoded from other bytes: the same ``samples``); a URL by its address."""
    first: dict[str, int] = {}
    copies = {}
    for i, (src, *known) in enumerate(zip(sources, digests, samples, strict=True)):
        keys = {k for k in known if k is not None}
        if isinstance(src, str | os.PathLike) and "://" in os.fspath(src):
            keys.add("address:" + os.fspath(src))
        seen = [first[k] for k in keys if k in first]
        if seen:
            copies[i] = min(seen)
        for k in keys:
            first.setdefault(k, i)
    return copies


def _samples_digest(src) -> str | None:
    """``content_digest`` of what ``src`` decodes to (a Decoded clip's is already of its
    samples), so that one recording in two formats, a FLAC and its WAV, counts once as it
    does among uploads; None for what cannot be read twice or decoded (the embedding then
    says why). Decoded here and again when embedded: memory holds one file at a time."""
    if isinstance(src, Decoded):
        return content_digest(src)
    if content_digest(src) is None:  # a pipe, a URL, a missing file: not read twice
        return None
    try:
        wave, rate = read_audio(src)
    except WhichvoiceError:
        return None
    return content_digest(Decoded(wave, rate))


def content_digest(src) -> str | None:
    """The sha-256 of an input's content, what a gallery keeps of each enrolled recording:
    a regular file's bytes, encoded bytes, a Decoded clip's samples and rate; None for what
    cannot be read twice or may change (a pipe, a URL)."""
    if isinstance(src, Channel):  # one channel of a file: another recording than its mix
        inner = content_digest(src.source)
        if inner is None or (src.index == 1 and channel_count(src.source) == 1):
            return inner  # the one channel of a mono file is the file
        return hashlib.sha256(f"channel {src.index}:{inner}".encode()).hexdigest()
    digest = hashlib.sha256()
    try:
        if isinstance(src, Decoded):
            digest.update(b"decoded:" + str(src.rate).encode() + b":")
            digest.update(memoryview(np.ascontiguousarray(src.wave, np.float32)).cast("B"))
        elif isinstance(src, bytes | bytearray):
            digest.update(src)
        elif isinstance(src, str | os.PathLike) and "://" not in os.fspath(src):
            if os.fspath(src) == "-":  # standard input, not a file of that name
                return None
            if not stat.S_ISREG(os.stat(src).st_mode):
                return None
            with open(src, "rb") as f:
                while block := f.read(1 << 20):
                    digest.update(block)
        else:
            return None
    except (OSError, ValueError):
        return None  # the decoder says what is wrong with it
    return digest.hexdigest()


def check_gallery_model(model: Encoder, gallery: Gallery) -> None:
    """GalleryModelError when ``gallery`` belongs to another encoder than ``model``: its
    embeddings cannot be compared (an empty gallery opened for any model belongs to none)."""
    if not isinstance(gallery, Gallery):
        raise WhichvoiceError(
            f"{gallery!r:.60}: not a gallery; open one: with Gallery(path, model_id(encoder)) as g"
        )
    if gallery.model_id and gallery.model_id != model_id(model):
        raise gallery.model_error(model_id(model))


def short_of(seconds: float) -> str:
    """Seconds that fall short of a bound, to a tenth, rounded down: 2.97 s read "only 3.0 s
    ... needs at least 3 s" (a review); a float's 2.5999999999999996 is 2.6, not 2.5."""
    return f"{math.floor(round(seconds, 6) * 10) / 10:.1f}"


def enroll(
    model: Encoder,
    gallery: Gallery,
    name: str,
    sources: Sources,
    *,
    min_seconds: float = MIN_ENROLL_SECONDS,
    progress: bool = False,
    digests: list[str | None] | None = None,
    warn: Callable[[WhichvoiceError], None] | None = None,
) -> tuple[EnrolledVoice, list[tuple[int, WhichvoiceError]]]:
    """Add recordings to voice ``name``; returns the updated voice and the inputs that failed,
    as (index in ``sources``, error). Nothing is written when none could be used, or when the
    voice would hold less than ``min_seconds`` of speech in all (an embedding from a fraction
    of a second is not the voice; see docs/cli.md). ``progress``: a bar on a terminal.

    What looks wrong but is enrolled is given to ``warn`` (by default logged as a warning;
    ``enrollment_warnings``), as a WhichvoiceError whose ``public_message`` names nothing but
    the request's own files and voice: a recording that its voice's enrollment would not
    verify, or recordings identified as another voice (one person enrolled twice).

    A recording given twice, or enrolled into ``name`` before (the gallery keeps each
    recording's ``content_digest``), counts once: it is listed among the failed inputs with
    why; when every input was enrolled before, AlreadyEnrolledError (nothing changed: a
    notebook cell run again). ``digests``: one per source, when the caller has them (the
    server, of the uploaded bytes it decoded); else they are made here."""
    name = voice_name(name)  # before any work
    check_gallery_model(model, gallery)
    if (
        isinstance(min_seconds, bool)
        or not isinstance(min_seconds, numbers.Real)
        or not (0 <= min_seconds < math.inf)
    ):
        raise WhichvoiceError(f"min_seconds must be 0 or more seconds, not {min_seconds!r}")
    sources = _sources(sources)
    if not sources:
        raise WhichvoiceError(f"{name}: no audio files given", public="no audio files given")
    unread: dict[int, WhichvoiceError] = {}  # standard input that cannot be decoded
    if digests is None:
        digests = [content_digest(src) for src in sources]
        for i, src in enumerate(sources):
            inner, channel = split_channel(src)
            if is_stdin(inner):
                # read once, whole: its bytes are kept as a file's are (of one channel: that
                # channel's, as a file's)
                label = describe_source(src)
                try:
                    data = read_pipe("/dev/stdin", STDIN)
                    piped = data if channel is None else Channel(data, channel)
                    digests[i] = content_digest(piped)
                    sources[i] = Decoded(*read_audio(piped, name=label), label)
                except WhichvoiceError as e:
                    unread[i] = e
        samples = [None if i in unread else _samples_digest(s) for i, s in enumerate(sources)]
    elif len(digests) != len(sources):
        raise WhichvoiceError(f"{name}: {len(digests)} digests for {len(sources)} sources")
    else:  # the caller's (of the bytes it decoded): the same audio in another format too
        samples = [content_digest(s) if isinstance(s, Decoded) else None for s in sources]
    embs, seconds, errors = [], 0.0, []
    copies = _copies(sources, digests, samples)  # a recording given twice counts once
    errors += [
        (i, WhichvoiceError(
            f"{describe_source(sources[i])}: the same recording as "
            f"{describe_source(sources[j])}; counted once",
            public="the same recording as an earlier file; counted once",
        ))
        for i, j in copies.items()
    ]  # fmt: skip
    try:  # by the name it is stored under (one enrolled before names were composed too)
        existing = gallery.get(name)
    except NotEnrolledError:
        existing = None
    held = gallery.enrolled_digests(existing.name) if existing is not None else set()
    again = {i for i, d in enumerate(digests) if d in held and i not in copies}
    errors += [
        (i, WhichvoiceError(
            f"{describe_source(sources[i])}: already enrolled into {name}; counted once",
            public=f"already enrolled into {name}; counted once",
        ))
        for i in sorted(again)
    ]  # fmt: skip
    errors += sorted(unread.items())
    unique = [
        i for i in range(len(sources)) if i not in copies and i not in again and i not in unread
    ]
    if not unique and unread:  # standard input that is no audio, and nothing else new
        errors.sort(key=lambda e: e[0])
        if len(errors) == 1:
            raise errors[0][1]
        raise NoUsableRecordings(
            f"{name}: none of the {len(sources)} files could be used ({errors[0][1]})",
            public=f"none of the {len(sources)} files could be used",
            failed=errors,
        )
    if not unique:
        raise AlreadyEnrolledError(
            f"{name}: every file given is already enrolled into {name} (nothing changed)",
            public=f"every file given is already enrolled into {name} (nothing changed)",
        )
    embedding = embed_enrollment(model, [sources[i] for i in unique])
    used = []  # the digests of the recordings enrolled
    speech: dict[int, float] = {}  # each enrolled recording's seconds of speech
    with progress_bar(embedding, len(unique), "enroll", progress) as embedded:
        for i, result in zip(unique, embedded, strict=True):
            result = with_speech(sources[i], result)
            if isinstance(result, WhichvoiceError):
                errors.append((i, result))
            else:
                embs.append(result[0])
                seconds += result[1]
                speech[i] = float(result[1])
                if digests[i] is not None:
                    used.append(digests[i])
    errors.sort(key=lambda e: e[0])
    if not embs:
        if len(errors) == 1:
            raise errors[0][1]
        raise NoUsableRecordings(
            f"{name}: none of the {len(sources)} files could be used ({errors[0][1]})",
            public=f"none of the {len(sources)} files could be used",
            failed=errors,
        )
    already = existing.seconds if existing is not None else 0.0
    if already + seconds < min_seconds:
        repeated = len(copies) + len(again)
        again = f"; {repeated} of the files repeat another, counted once" if repeated else ""
        raise TooLittleSpeech(
            f"{name}: only {short_of(already + seconds)} s of speech; enrolling needs at least "
            f"{min_seconds:g} s in all (give more or longer recordings{again})",
            failed=errors,
        )
    rows = np.stack(embs)
    dim = rows.shape[1] // len(CONDITIONS)
    if existing is not None and existing.embedding.shape[0] == dim:
        rows = clean_part(rows, dim)  # a voice enrolled before prototypes: its clean mean
    try:
        voice = gallery.enroll(name, rows, seconds, used, min_seconds=min_seconds)
    except EnrollmentShortError as e:  # removed meanwhile: what it held counted for nothing
        raise TooLittleSpeech(str(e), failed=errors) from e
    kept = [i for i in unique if i not in {j for j, _ in errors}]
    try:  # advice on what was written: never a failure of the enrollment (a review)
        lines = enrollment_warnings(
            model, gallery, voice, existing, rows[:, :dim],
            [describe_source(sources[i]) for i in kept],
        )  # fmt: skip
        lines += enrollment_quality([sources[i] for i in kept], [speech[i] for i in kept])
    except WhichvoiceError as e:
        lines = [WhichvoiceError(
            f"{voice.name} is enrolled; it could not be checked against the gallery ({e})",
            public=f"{voice.name} is enrolled; it could not be checked against the gallery",
        )]  # fmt: skip
    for line in lines:
        if warn is None:
            log.warning("%s", line)
        else:
            warn(line)
    return voice, errors


def enrollment_warnings(
    model: Encoder,
    gallery: Gallery,
    voice: EnrolledVoice,
    before: EnrolledVoice | None,
    clean: np.ndarray,
    names: list[str],
) -> list[WhichvoiceError]:
    """What looks wrong in an enrollment just written, at verify's (calibrated) threshold:
    each new recording (``clean``: float (n, dim), their clean embeddings; ``names``: theirs)
    that ``before``, the voice as it was, would not verify (another person's clip added to
    it pulls the voice towards them); and the voice verifying as another enrolled one (the
    same person under two names: most of the new recordings named as one other voice at
    identify's threshold for that many voices, which names a stranger 1 time in 100). A
    review found both enrolled without a word. None where the encoder has no calibration."""
    try:  # verify's threshold and the file identify's is read from: one read
        threshold, _, calibration = calibration_file(model)
    except WhichvoiceError:
        return []
    dim = clean.shape[1]
    out = []
    unit_clean = clean / np.maximum(np.linalg.norm(clean, axis=1, keepdims=True), 1e-12)
    if before is not None and before.embedding.shape[0] % dim == 0:
        scores = voice_refs([before], dim).scores(unit_clean)[:, 0]
        out += [
            WhichvoiceError(
                f"{n}: scores {s:.3f} against {voice.name} as enrolled before, under verify's "
                f"threshold {threshold:.3f}: is it {voice.name}? (it is enrolled; to take it "
                "out, remove the voice and enroll it again)"
            )
            for n, s in zip(names, scores, strict=True)
            if s < threshold
        ]
    others = [v for v in gallery.voices() if v.name != voice.name]
    if others:
        refs = voice_refs(others, dim)
        # identify's threshold for that many voices, without its warnings: they are about
        # identify, not this enrollment
        among = identification_threshold({**calibration, "threshold": threshold}, len(others))[0]
        scores = refs.scores(unit_clean)  # (new recordings, other voices)
        best = scores.argmax(axis=1)
        named = [refs.names[b] for b, row in zip(best, scores, strict=True) if row[b] >= among]
        if named:
            other = max(set(named), key=named.count)
            if 2 * named.count(other) > len(unit_clean):
                said = (
                    f"{named.count(other)} of the {len(unit_clean)} recordings enrolled into "
                    f"{voice.name} are identified as {{}} (identify's threshold {among:.3f} "
                    f"among {len(others)} voices): the same voice enrolled twice? (renaming "
                    "or removing one of them mends it)"
                )
                # over HTTP the other voice goes unnamed, as in every answer (security.md)
                public = said.format("another enrolled voice")
                out.append(WhichvoiceError(said.format(other), public=public))
    return out


def enrollment_quality(sources: list[AudioSource], speech: list[float]) -> list[WhichvoiceError]:
    """Each enrolled recording whose quality measures warn of it (noisy, clipped, narrow
    band: ``whichvoice.quality``; short clips are said by the command's own warning), as a
    line: a voice enrolled from such a clip matches its other recordings less well, and
    every later claim is scored against it. Read again from the source (a few clips);
    what cannot be read twice, or not cheaply (standard input, a pipe, a URL), is passed
    over."""
    out = []
    for src, seconds in zip(sources, speech, strict=True):
        inner, _ = split_channel(src)
        if isinstance(inner, str | os.PathLike) and not _regular_file(inner):
            continue  # standard input, a pipe (read again: it would wait), a URL
        try:
            wave, rate = read_audio(src)
        except WhichvoiceError:
            continue
        said = measure(wave, rate, seconds).but_short()
        if said:
            out.append(WhichvoiceError(
                f"{describe_source(src)}: {'; '.join(said)}: a voice enrolled from it matches "
                "its other recordings less well (enroll from clean recordings when you can)"
            ))  # fmt: skip
    return out


def _regular_file(path: str | os.PathLike) -> bool:
    try:
        return "://" not in os.fspath(path) and stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


class TooLittleSpeech(WhichvoiceError):
    """The recordings given to ``enroll`` hold less speech in all than enrolling needs;
    ``failed``: the inputs that could not be used, each one's (index, error), as ``enroll``
    returns them (a user is told which of the files counted for nothing)."""

    def __init__(
        self, message: str, *, failed: list[tuple[int, WhichvoiceError]] | None = None
    ) -> None:
        super().__init__(message)
        self.failed = failed or []


class NoUsableRecordings(WhichvoiceError):
    """None of the recordings given to ``enroll`` could be used; ``failed``: each one's
    (index, error), as ``enroll`` returns them."""

    def __init__(
        self, message: str, *, public: str, failed: list[tuple[int, WhichvoiceError]]
    ) -> None:
        super().__init__(message, public=public)
        self.failed = failed


def verify(
    model: Encoder,
    gallery: Gallery,
    name: str,
    sources: Sources,
    *,
    threshold: float | None = None,
    progress: bool = False,
    digests: list[str | None] | None = None,
) -> list[Verdict | WhichvoiceError]:
    """Is each recording the enrolled voice ``name``? At the calibrated threshold, or at
    ``threshold`` (a cosine score). ``progress``: a bar on a terminal. ``digests``: as
    ``verify_each``'s.

    Returns one item per input, in order: a ``Verdict``, or the ``WhichvoiceError`` that
    input met (unreadable, no speech): one bad file does not stop the others, so check
    ``isinstance(item, Verdict)`` before reading ``.accept``. Errors that concern every input
    (an unknown name, a gallery of another encoder, a bad threshold) are raised.
    ``verify_each`` gives them one at a time, as they are answered."""
    return list(
        verify_each(
            model, gallery, name, sources, threshold=threshold, progress=progress, digests=digests
        )
    )


def verify_each(
    model: Encoder,
    gallery: Gallery,
    name: str,
    sources: Sources,
    *,
    threshold: float | None = None,
    progress: bool = False,
    digests: list[str | None] | None = None,
) -> Iterator[Verdict | WhichvoiceError]:
    """``verify``'s answers one at a time, each as soon as it is made (thousands of files:
    the first lines come at once, and Ctrl-C keeps those printed). What concerns every
    input is checked, and raised, before the first answer. ``digests``: each source's
    content digest as enrollment took it (the HTTP routes': of the bytes uploaded); by
    default ``content_digest``'s, so that a claim that is one of the voice's enrolled
    recordings says so (``Verdict.enrolled_recording``)."""
    check_gallery_model(model, gallery)
    sources = _sources(sources)
    point = operating_point(model, threshold)
    voice = gallery.get(name)
    held = gallery.enrolled_digests(voice.name)
    if digests is not None and len(digests) != len(sources):
        raise WhichvoiceError(f"{len(digests)} digests for {len(sources)} sources")

    def answers() -> Iterator[Verdict | WhichvoiceError]:
        refs = None
        measured = embed_and_trace(model, None, sources, measure=True)
        with progress_bar(measured, len(sources), "verify", progress) as embedded:
            for i, (src, (result, _, signals)) in enumerate(zip(sources, embedded, strict=True)):
                if isinstance(result, WhichvoiceError):
                    yield result
                    continue
                # read as each answer is made (the first lines come at once), for a voice
                # that keeps digests alone
                digest = (
                    digests[i] if digests is not None else content_digest(src) if held else None
                )
                # given the bytes' digests (an upload), samples are compared by their own too
                samples = (
                    content_digest(src)
                    if held and digests is not None and isinstance(src, Decoded)
                    else None
                )
                if refs is None:
                    refs = voice_refs([voice], result[0].shape[0])
                score = float(refs.scores(result[0])[0])
                yield Verdict(
                    describe_source(src),
                    voice.name,  # as enrolled: stripped and composed, as the gallery found it
                    score >= point.threshold,
                    score,
                    point.probability(score),
                    point,
                    speech_s=float(result[1]),
                    # None: no digests kept, or none of this input (a pipe, a URL): not told
                    enrolled_recording=(
                        (digest in held or samples in held)
                        if held and (digest is not None or samples is not None)
                        else None
                    ),
                    quality=_judged(signals, float(result[1])),
                )

    return answers()


def identify(
    model: Encoder,
    gallery: Gallery,
    sources: Sources,
    *,
    threshold: float | None = None,
    engine_head: EngineHead | None = None,
    progress: bool = False,
) -> list[Identity | WhichvoiceError]:
    """Which enrolled voice of ``gallery`` is each recording (what ``whichvoice identify``
    answers; ``whichvoice.identify`` is the closed-set classifier's, ``predict``'s), or
    ``unknown`` under the threshold (the calibrated one, or ``threshold``); the nearest voice
    is named either way. With an ``engine_head`` that reads ``model``'s embeddings
    (``tracing.head_for(model)``, as the CLI passes it), also which engine family made it.
    ``progress``: a bar on a terminal.

    Returns one item per input, in order: an ``Identity``, or the ``WhichvoiceError`` that
    input met (as ``verify``). ``identify_each`` gives them one at a time."""
    return list(
        identify_each(
            model, gallery, sources, threshold=threshold, engine_head=engine_head,
            progress=progress,
        )
    )  # fmt: skip


def identify_each(
    model: Encoder,
    gallery: Gallery,
    sources: Sources,
    *,
    threshold: float | None = None,
    engine_head: EngineHead | None = None,
    progress: bool = False,
) -> Iterator[Identity | WhichvoiceError]:
    """``identify``'s answers one at a time, each as soon as it is made (as ``verify_each``);
    what concerns every input is checked, and raised, before the first answer."""
    check_gallery_model(model, gallery)
    if engine_head is not None and not isinstance(engine_head, EngineHead):
        raise WhichvoiceError(
            f"engine_head {engine_head!r:.40}: a head, as whichvoice.tracing.head_for(encoder) "
            "gives it (or None)"
        )
    sources = _sources(sources)
    voices = gallery.voices()
    # an empty gallery is said below: no threshold (nor its warnings) for 0 voices; a
    # threshold given is still checked first
    point = operating_point(model, threshold, voices=len(voices) or None)
    if not voices:
        raise WhichvoiceError(
            f"{gallery.path}: no voices enrolled; use `whichvoice enroll NAME FILE...`",
            public="no voices enrolled",
        )

    def answers() -> Iterator[Identity | WhichvoiceError]:
        refs = None
        embedded = embed_and_trace(model, engine_head, sources, measure=True)
        with progress_bar(embedded, len(sources), "identify", progress) as answered:
            for src, (result, engine, signals) in zip(sources, answered, strict=True):
                if isinstance(result, WhichvoiceError):  # a burst is one (embed_and_trace)
                    yield result
                    continue
                if refs is None:
                    refs = voice_refs(voices, result[0].shape[0])
                scores = refs.scores(result[0])
                best = int(np.argmax(scores))
                nearest = voices[best].name
                yield Identity(
                    describe_source(src),
                    nearest if scores[best] >= point.threshold else UNKNOWN,
                    float(scores[best]),
                    {v.name: float(s) for v, s in zip(voices, scores, strict=True)},
                    point,
                    nearest,
                    engine,
                    quality=_judged(signals, float(result[1])),
                )

    return answers()

"""Metrics on held-out audio: accuracy (window and file level), the per-voice table, the
confusion matrix (PNG) and a markdown report."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from whichvoice import storage
from whichvoice.audio import read_audio
from whichvoice.batch.inputs import BatchInputError, label_rows
from whichvoice.conditions import check_conditions, long_recording
from whichvoice.conditions import make as make_condition
from whichvoice.dataset import DATASET_JSON, INDEX, DatasetError, load_corpus, split_clips
from whichvoice.errors import NothingReadError, WhichvoiceError
from whichvoice.files import write_atomic, write_json
from whichvoice.provenance import provenance
from whichvoice.runtime import Prediction, VoiceModel, load_model
from whichvoice.scoring import proportion
from whichvoice.text import counted, none_of
from whichvoice.train import METRICS

log = logging.getLogger(__name__)

REPORT = "report.md"
CONFUSION_PNG = "confusion.png"
EVALUATION = "evaluation.json"  # the metrics, in a report folder of its own


def default_report_dir(
    run: str | os.PathLike,
    corpus: str | os.PathLike | None,
    labels_csv: str | os.PathLike | None,
    split: str = "test",
) -> str | Path:
    """Where an evaluation's report goes unless told: a folder beside the run named after
    what was scored (``runs/r`` with ``human.csv`` -> ``runs/r-eval-human``), so that it
    never replaces the run's own report or another evaluation's; for a run shipped inside
    the package (the bundled classifier), in the current folder (``./classifier-eval-human``):
    an installed package's folder is no place for a user's files, and may be read-only."""
    base = os.fspath(run).rstrip("/")
    if not storage.is_url(base) and _in_package(Path(base)):
        base = str(Path.cwd() / Path(base).resolve().name)
    what = (
        Path(os.fspath(labels_csv).rstrip("/")).stem
        if labels_csv is not None
        else f"{Path(os.fspath(corpus or 'corpus').rstrip('/')).name}-{split}"
    )
    return f"{base}-eval-{what}" if storage.is_url(base) else Path(f"{base}-eval-{what}")


def _in_package(path: Path) -> bool:
    package = Path(__file__).resolve().parent
    try:
        return path.resolve().is_relative_to(package)
    except OSError:
        return False


@dataclass(frozen=True)
class LabelledFile:
    path: Path | str  # a local path or a URL
    voice: str


SPLITS = ("test", "val")


def held_out_split(
    model: VoiceModel, corpus: str | os.PathLike, split: str = "test"
) -> list[LabelledFile]:
    """A held-out split of a corpus, split as the model's training data was (same seed):
    ``test`` (report it) or ``val`` (the development split: make choices on it)."""
    if split not in SPLITS:
        raise WhichvoiceError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
    root = storage.local_path(corpus)  # a URL's mirror, listed and downloaded once
    clips = load_corpus(root)
    of = _split_of(model, root, clips)
    if getattr(model, "target", "voice") == "engine":  # a run that names engine families
        from whichvoice.voices.families import engine_family

        files = [LabelledFile(root / c.path, engine_family(c.voice, c.engine))
                 for c in clips if of[c.id] == split]  # fmt: skip
    else:
        files = [LabelledFile(root / c.path, c.voice) for c in clips if of[c.id] == split]
    if not files:
        raise DatasetError(f"{corpus}: the {split} split is empty (too few sentences per voice)")
    # a voice the model never learnt can only be an error: its accuracy would be a figure of
    # the corpus, not of the model (a labels CSV naming one is refused the same way)
    strange = sorted({f.voice for f in files} - set(model.labels))
    if strange:
        raise DatasetError(
            f"{corpus}: the model does not know {counted(len(strange), 'voice')} of the "
            f"{split} split ({', '.join(strange[:5])}{', ...' if len(strange) > 5 else ''}); "
            f"it knows {', '.join(model.labels)}"
        )
    return files


def _split_of(model: VoiceModel, root: Path, clips: list, *, warn: bool = True) -> dict:
    """{clip id: split} of ``clips``: for the run's own corpus, the splits it was trained
    with (its prepared data's index), so that clips added since change nothing (a split of
    the grown corpus put trained sentences in its test split); they are in none, with a
    warning. Another corpus is split as the run's was (same seed and fractions)."""
    recorded = _recorded_splits(model, root)
    if recorded is None:
        prep = model.config["prepare"]
        return split_clips(clips, prep["seed"], prep["val_fraction"], prep["test_fraction"])
    added = sum(c.id not in recorded for c in clips)
    if added and warn:
        log.warning(
            "%s: %s added since the run was trained %s in none of its splits: not scored "
            "(train a run on the grown corpus to use them)",
            root, counted(added, "clip"), "is" if added == 1 else "are",
        )  # fmt: skip
    return {c.id: recorded.get(c.id, "added") for c in clips}


def _prepared_rows(model: VoiceModel) -> tuple[Path | None, list[dict]] | None:
    """(the corpus it was prepared from, the index rows) of the prepared data the run's
    config names; None when it is not at hand (the corpus None when its dataset.json is
    not)."""
    data = model.config.get("data")
    if not isinstance(data, str) or "://" in data:
        return None
    try:
        rows = [json.loads(line) for line in (Path(data) / INDEX).read_text().splitlines()
                if line.strip()]  # fmt: skip
    except (OSError, ValueError):
        return None
    try:
        corpus = Path(json.loads((Path(data) / DATASET_JSON).read_text())["corpus"])
    except (OSError, ValueError, KeyError, TypeError):
        corpus = None
    return corpus, rows


def _recorded_splits(model: VoiceModel, root: Path) -> dict[str, str] | None:
    """{clip id: split} from the run's prepared data when ``root`` is the corpus it was
    prepared from; None otherwise or when that data is not at hand."""
    prepared = _prepared_rows(model)
    if prepared is None or prepared[0] is None:
        return None
    corpus, rows = prepared
    if os.path.realpath(corpus) != os.path.realpath(root):
        return None
    try:
        return {r["id"]: r["split"] for r in rows}
    except (KeyError, TypeError):
        return None


SHIPPED_SENTENCES = "sentences.json"  # a shipped run's corpus sentences (its data is not shipped)


def trained_sentences(model: VoiceModel, splits=("train", "val")) -> set[str] | None:
    """The sentence ids of the run's ``splits`` (train and val: what its weights and their
    choice saw), read from the prepared data its config names; for a shipped run without it
    (the bundled classifier), every sentence of the corpus it was made from, as its
    ``sentences.json`` lists them; None when neither is at hand."""
    prepared = _prepared_rows(model)
    if prepared is None:
        try:
            shipped = json.loads((Path(model.root) / SHIPPED_SENTENCES).read_text("utf-8"))
            return {str(s) for s in shipped["corpus_sentences"]}
        except (OSError, ValueError, KeyError, TypeError):
            return None
    try:
        return {r["sentence_id"] for r in prepared[1] if r.get("split") in splits}
    except (KeyError, TypeError, AttributeError):
        return None


def trained_files(
    model: VoiceModel, paths: list, splits: tuple[str, ...] = ("train", "val")
) -> int | None:
    """How many of ``paths`` are clips the run trained on or chose its weights by (its train
    and val splits): the same file in its corpus, or the same bytes elsewhere (the corpus
    manifest's sha256); None when the run's training data is not at hand. A labels CSV of
    them scores the training data, not what the run learnt."""
    prepared = _prepared_rows(model)
    if prepared is None or prepared[0] is None:
        return None
    corpus, rows = prepared
    try:
        seen = {r["id"]: r["path"] for r in rows if r.get("split") in splits}
    except (KeyError, TypeError, AttributeError):
        return None
    places = {os.path.realpath(corpus / path) for path in seen.values()}
    try:
        digests = {c.sha256 for c in load_corpus(corpus) if c.id in seen}
        sizes = {os.path.getsize(place) for place in places if os.path.isfile(place)}
    except (WhichvoiceError, OSError):
        digests, sizes = set(), set()  # the corpus moved: known by their place only
    count = 0
    for path in paths:
        if storage.is_url(path):
            continue
        place = os.path.realpath(path)
        if place in places:
            count += 1
            continue
        with contextlib.suppress(OSError):  # only a file of a training clip's size is read
            if digests and os.path.getsize(place) in sizes:
                with open(place, "rb") as f:
                    count += hashlib.file_digest(f, "sha256").hexdigest() in digests
    return count


def trained_overlap(
    model: VoiceModel, corpus: str | os.PathLike, split: str, scored: list | None = None
) -> tuple[int, int] | None:
    """(files of the corpus's ``split`` reading a sentence the run trained on, files), or None
    when the run's training sentences are not at hand. A ``val`` split is there to make
    choices on: only the run's train sentences count against it. ``scored``: the paths of
    the files that were scored, where some could not be read (only those count: a review
    found unreadable files counted against the files read)."""
    seen = trained_sentences(model, ("train",) if split == "val" else ("train", "val"))
    if seen is None:
        return None
    root = storage.local_path(corpus)
    clips = load_corpus(root)
    of = _split_of(model, root, clips, warn=False)
    held = [c for c in clips if of[c.id] == split]
    if scored is not None:
        places = {os.path.realpath(p) for p in scored if not storage.is_url(p)}
        held = [c for c in held if os.path.realpath(root / c.path) in places]
    return sum(c.sentence_id in seen for c in held), len(held)


def _sentences(corpus: str | os.PathLike, scored: list) -> int:
    """How many sentences the scored files of ``corpus`` read."""
    root = storage.local_path(corpus)
    places = {os.path.realpath(p) for p in scored if not storage.is_url(p)}
    return len(
        {c.sentence_id for c in load_corpus(root) if os.path.realpath(root / c.path) in places}
    )


def held_out_warnings(metrics: dict) -> list[str]:
    """What ``evaluate``'s figures are not, said where they are read (report.md, the JSON's
    ``warnings``, the command's stderr): files the run trained on, or of its sentences."""
    out = []
    if metrics.get("trained_files"):
        out.append(
            f"{metrics['trained_files']} of the {metrics['files']} files scored are clips the "
            "run was trained on (its train or val split; the same bytes): these figures are "
            "not held out"
        )
    if metrics.get("sentences") == 1:  # its interval takes the files as independent
        out.append(
            "every file scored reads one sentence: the accuracy is of that sentence, not of "
            "held-out speech in general (give the corpus more sentences)"
        )
    if metrics.get("trained_sentence_files"):
        out.append(
            f"{metrics['trained_sentence_files']} of the {metrics['files']} files scored read "
            "sentences the run was trained on (its train or val split; for the bundled "
            "classifier, its training corpus): these figures are not held out"
        )
    return out


def _match_voice(name: str, labels: list[str]) -> str:
    """``name`` as one of ``labels``: itself, its unambiguous short name (``slt``), or for a
    model of engine families (``train --target engine``) a voice id's family."""
    if name in labels:
        return name
    matches = [label for label in labels if label.split(":", 1)[-1].lower() == name.lower()]
    if len(matches) == 1:
        return matches[0]
    if ":" in name:
        from whichvoice.voices.families import FAMILIES, engine_family

        family = engine_family(name)
        if family in labels and set(labels) <= set(FAMILIES) | {family}:
            return family
    return name


def labelled_files(csv_path: str | os.PathLike, labels: list[str]) -> list[LabelledFile]:
    """Rows ``path,voice`` of a CSV (header optional; paths relative to the CSV's folder), or
    the clips of a folder of <speaker>/<clips> (``recordings.labelled_folder``).
    A voice may be named by its id (``flite:slt``) or, when unambiguous, its name (``slt``).
    The CSV and its paths may be URLs (``s3://...``); relative paths of a remote CSV are
    read from beside it."""
    remote = storage.is_url(csv_path)
    if not remote and Path(csv_path).is_dir():  # <speaker>/<clips>, as import-corpus reads
        return _folder_files(Path(csv_path), labels)
    try:
        text = storage.read_bytes(csv_path).decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"{csv_path}: cannot read ({getattr(e, 'strerror', None) or e})") from e
    base = os.fspath(csv_path).rsplit("/", 1)[0] if remote else Path(csv_path).parent
    files = []
    try:
        rows = list(label_rows(csv.reader(io.StringIO(text, newline="")), csv_path))
    except (BatchInputError, csv.Error) as e:
        raise DatasetError(str(e)) from None
    for where, given, named in rows:
        voice = _known_voice(where, named, labels)
        if storage.is_url(given) or Path(given).is_absolute():
            files.append(LabelledFile(given if storage.is_url(given) else Path(given), voice))
        else:
            files.append(LabelledFile(storage.join(base, given), voice))
    if not files:
        raise DatasetError(f"{csv_path}: no rows")
    return files


def _folder_files(folder: Path, labels: list[str]) -> list[LabelledFile]:
    from whichvoice.recordings import RecordingsError, labelled_folder

    try:
        rows = labelled_folder(folder)
    except RecordingsError as e:
        raise DatasetError(str(e)) from None
    return [LabelledFile(path, _known_voice(path, named, labels)) for path, named in rows]


def _known_voice(where: object, named: str, labels: list[str]) -> str:
    """``named`` as one of the model's ``labels`` (``_match_voice``); DatasetError naming
    ``where`` when it is none of them."""
    voice = _match_voice(named, labels)
    if voice not in labels:
        raise DatasetError(
            f"{where}: the model does not know voice {named!r}; it knows {', '.join(labels)}"
        )
    return voice


def per_voice_table(truth: list[str], pred: list[str], voices: list[str]) -> list[dict]:
    """Per voice: support, accuracy (= recall), precision, recall, F1; None where a figure is
    undefined (no file of the voice, or none predicted as it), never a made-up 0."""
    table = []
    t, p = np.asarray(truth), np.asarray(pred)
    for v in voices:
        tp = int(((t == v) & (p == v)).sum())
        support = int((t == v).sum())
        predicted = int((p == v).sum())
        recall = tp / support if support else None
        precision = tp / predicted if predicted else None
        # never predicted means recall 0 for a voice with files: its F1 is 0, as in sklearn
        f1 = (
            None
            if recall is None
            else (2 * precision * recall / (precision + recall) if precision and recall else 0.0)
        )
        table.append(
            {
                "voice": v,
                "support": support,
                "accuracy": recall,
                "precision": precision,
                "recall": recall,
                "f1": f1,
            }
        )
    return table


def figure(x: float | None, width: int = 0) -> str:
    """A per-voice figure to 4 decimals, or an en dash where it is undefined."""
    return f"{'–' if x is None else f'{x:.4f}':>{width}}"


def confusion(truth: list[str], pred: list[str], voices: list[str]) -> np.ndarray:
    """Counts, int64 (n_voices, n_voices): rows are the true voice, columns the prediction."""
    index = {v: i for i, v in enumerate(voices)}
    m = np.zeros((len(voices), len(voices)), np.int64)
    for t, p in zip(truth, pred, strict=True):
        m[index[t], index[p]] += 1
    return m


def plot_confusion(matrix: np.ndarray, voices: list[str], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    size = 2.5 + 0.55 * len(voices)
    fig = Figure(figsize=(size + 1.5, size), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    rows = matrix.sum(axis=1, keepdims=True)
    ax.imshow(matrix / np.maximum(rows, 1), cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(voices)), voices, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(voices)), voices, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(voices)):
        for j in range(len(voices)):
            if matrix[i, j]:
                frac = matrix[i, j] / max(rows[i, 0], 1)
                ax.text(
                    j,
                    i,
                    str(matrix[i, j]),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if frac > 0.5 else "black",
                )
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    # whole or not at all (a temporary file was left behind on a full disk: a review)
    write_atomic(path, buffer.getvalue(), durable=False)


def condition_accuracy(
    model: VoiceModel,
    files: list[LabelledFile],
    conditions: list[str],
    *,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, dict]:
    """File-level accuracy of ``model`` on copies of ``files`` under each condition of the
    evaluation suite (``whichvoice.conditions``, independent of training augmentation), with
    its 95 % Wilson interval. Copies are made on the fly and deterministically (the seed and the
    file's position); ``long`` joins each voice's files into ~20 s recordings. A copy the model
    cannot read counts as wrong."""
    check_conditions(conditions)
    decoded: list[tuple[np.ndarray, int] | None] = []
    for f in files:
        try:
            decoded.append(read_audio(f.path))
        except WhichvoiceError:
            decoded.append(None)
    out = {}
    for condition in conditions:
        items = _degraded(condition, files, decoded, seed)
        results = model.identify_many([data for data, _, _ in items])
        hits = n_ok = 0
        predicted: list[str | None] = []  # per copy, in order (None: it could not be read)
        for (_, voice, _), result in tqdm(
            zip(items, results, strict=True),
            total=len(items),
            desc=condition,
            unit="file",
            disable=None if progress else True,
            dynamic_ncols=True,
        ):
            predicted.append(result.voice if isinstance(result, Prediction) else None)
            if isinstance(result, Prediction):
                n_ok += 1
                hits += result.voice == voice
        out[condition] = {
            "files": len(items),
            "scored": n_ok,
            "correct": hits,
            "accuracy": hits / max(len(items), 1),
            "ci95": proportion(hits, len(items))["ci95"],
            "seed": seed,
            # each copy's files, voice and answer, in order (the readable files'; long: each
            # voice's recordings), so any figure can be recomputed
            "sources": [made_from for _, _, made_from in items],
            "truth": [voice for _, voice, _ in items],
            "predicted": predicted,
        }
    return out


def _degraded(
    condition: str,
    files: list[LabelledFile],
    decoded: list[tuple[np.ndarray, int] | None],
    seed: int,
) -> list[tuple[bytes, str, list[str]]]:
    """(audio, true voice, the files it was made from) of each degraded copy of the readable
    ``files``."""
    if condition != "long":
        return [
            (make_condition(condition, d[0], d[1], seed * 100_003 + n), f.voice, [str(f.path)])
            for n, (f, d) in enumerate(zip(files, decoded, strict=True))
            if d is not None
        ]
    by_voice: dict[str, list[tuple[LabelledFile, tuple[np.ndarray, int]]]] = {}
    for f, d in zip(files, decoded, strict=True):
        if d is not None:
            by_voice.setdefault(f.voice, []).append((f, d))
    items = []
    for voice, made in sorted(by_voice.items()):
        for i in range(0, len(made), 6):  # ~6 short sentences make 20 s
            group = made[i : i + 6]
            joined = long_recording([d for _, d in group])
            items.append((joined, voice, [str(f.path) for f, _ in group]))
    return items


def _report(metrics: dict, png: str) -> str:
    lines = [
        f"# Evaluation of `{metrics['run']}`",
        "",
        f"Data: {metrics['data']} — {counted(metrics['files'], 'file')} "
        f"({metrics['errors']} unreadable), "
        f"{counted(metrics['windows'], 'window')}.",
        "",
        *[f"**Warning:** {w}." for w in metrics.get("warnings", [])],
        "",
        f"- file-level accuracy: **{metrics['file_accuracy']:.4f}** (95 % interval "
        f"{metrics['file_accuracy_ci95'][0]:.4f}-{metrics['file_accuracy_ci95'][1]:.4f}; "
        f"{round(metrics['file_accuracy'] * metrics['files'])} of {metrics['files']} files)",
        f"- window-level accuracy: {metrics['window_accuracy']:.4f} (of "
        f"{metrics['windows']} windows)",
        "",
        "Closed set: each file is answered as the nearest of the run's voices (the open set's "
        "`unknown`, which `predict` answers, is not used). The interval is Wilson's over the "
        "files as if independent: right for sentences of these voices; files of one voice "
        "go right or wrong together, so for other voices the uncertainty is wider "
        "(docs/evaluation.md).",
        "",
        "| voice | support | accuracy | precision | recall | F1 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in metrics["per_voice"]:
        cells = " | ".join(figure(r[k]) for k in ("accuracy", "precision", "recall", "f1"))
        lines.append(f"| {r['voice']} | {r['support']} | {cells} |")
    if metrics.get("conditions"):
        lines += [
            "",
            "File-level accuracy under each condition (copies of the same files; the conditions "
            "are defined in docs/evaluation.md):",
            "",
            "| condition | files | accuracy | 95 % interval |",
            "|---|---:|---:|---|",
        ]
        for name, c in metrics["conditions"].items():
            lo, hi = c["ci95"]
            # `long` scores recordings joined from several files (one per ~20 s), not files
            n = f"{c['files']} recordings" if name == "long" else c["files"]
            lines.append(f"| {name} | {n} | {c['accuracy']:.4f} | {lo:.4f}-{hi:.4f} |")
    lines += ["", f"![confusion matrix]({png})", ""]
    if metrics["error_files"]:
        lines += ["Unreadable files:", ""] + [f"- {e}" for e in metrics["error_files"]] + [""]
    return "\n".join(lines)


def evaluate(
    run: str | os.PathLike,
    *,
    corpus: str | os.PathLike | None = None,
    labels_csv: str | os.PathLike | None = None,
    report_dir: str | os.PathLike | None = None,
    conditions: list[str] | None = None,
    split: str = "test",
    progress: bool = True,
) -> dict:
    """Evaluate a run on a corpus's held-out ``split`` (``test``, or ``val`` to make choices
    on) or on a ``path,voice`` CSV.

    Writes confusion.png, report.md and evaluation.json to ``report_dir`` (default:
    ``default_report_dir``) and returns the metrics. Only when ``report_dir`` is the run
    itself (its own report, as ``demo`` writes it) is the result also recorded under
    "evaluation" in the run's metrics.json. Every location may be a URL (``s3://...``),
    staged through a local mirror.
    """
    # a local path in full: the report folder's evaluation.json names what it scored
    data = _full(f"{split} split of {corpus}" if corpus is not None else str(labels_csv))
    if report_dir is None:
        report_dir = _free_report_dir(default_report_dir(run, corpus, labels_csv, split), data)
    if storage.is_url(run) or storage.is_url(report_dir):
        return _evaluate_remote(run, corpus, labels_csv, report_dir, conditions, split, progress)
    from whichvoice.files import ensure_dir, write_atomic

    check_conditions(conditions or [])
    if (corpus is None) == (labels_csv is None):
        raise WhichvoiceError("give exactly one of a corpus or a labels CSV")
    # closed-set figures (the voice each file is nearest): the open set is neither scored nor
    # paid for (its encoder costs about as much as the classifier)
    model = load_model(run, openset=False)
    files = _inputs(model, corpus, labels_csv, split)
    _check_report_dir(Path(report_dir), data, run)
    made = not Path(report_dir).exists()
    out = ensure_dir(Path(report_dir), "report")  # once the inputs are good, before scoring
    try:
        metrics = _measure(model, run, files, corpus, data, split, conditions, progress)
    except BaseException:  # interrupted or failed: a folder made for nothing goes again
        if made and not any(out.iterdir()):
            out.rmdir()
        raise
    plot_confusion(np.asarray(metrics["confusion"]), metrics["voices"], out / CONFUSION_PNG)
    # a file name not in UTF-8 keeps its own bytes (its surrogates have no UTF-8 of their own)
    write_atomic(out / REPORT, _report(metrics, CONFUSION_PNG).encode("utf-8", "surrogateescape"))
    metrics["report"] = str(out / REPORT)
    write_json(out / EVALUATION, metrics)
    if out.resolve() == Path(run).resolve():  # the run's own report
        metrics_path = Path(run) / METRICS
        saved = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
        write_json(metrics_path, {**saved, "evaluation": _figures(metrics)})
    return metrics


ANSWERS = ("per_file", "sources", "truth", "predicted")  # every answer: evaluation.json's


def _figures(metrics: dict) -> dict:
    """``metrics`` without the answers it was computed from (a run's metrics.json keeps the
    figures; its report's evaluation.json has the answers)."""
    out = {k: v for k, v in metrics.items() if k not in ANSWERS}
    if "conditions" in metrics:
        out["conditions"] = {
            name: {k: v for k, v in c.items() if k not in ANSWERS}
            for name, c in metrics["conditions"].items()
        }
    return out


def _evaluated(folder: Path) -> str | None:
    """What the evaluation in ``folder`` scored (its evaluation.json's "data"), or None."""
    try:
        return json.loads((folder / EVALUATION).read_text()).get("data")
    except (OSError, ValueError, AttributeError):
        return None


def _evaluated_run(folder: Path) -> str | None:
    """The run the evaluation in ``folder`` scored (its evaluation.json's "run"), or None."""
    try:
        run = json.loads((folder / EVALUATION).read_text()).get("run")
    except (OSError, ValueError, AttributeError):
        return None
    return run if isinstance(run, str) else None


def _same_run(before: str, run: str | os.PathLike) -> bool:
    """Whether ``before`` (as an evaluation.json names its run) is ``run``: a relative path
    (as evaluations recorded it before stop 60) cannot be told, and counts as the same."""
    if storage.is_url(before) or storage.is_url(run):
        return os.fspath(before).rstrip("/") == os.fspath(run).rstrip("/")
    if not os.path.isabs(before):
        return True
    return os.path.realpath(before) == os.path.realpath(run)


def _same_data(before: str | None, data: str) -> bool:
    """Whether an evaluation.json's "data" names ``data``: a local CSV or corpus typed two
    ways (``rel.csv``, ``./rel.csv``, its full path) is one data."""

    return before is not None and _full(before) == _full(data)


def _full(data: str) -> str:
    """``data`` (a path, or "SPLIT split of PATH") with a local path made absolute."""
    split, of, path = data.partition(" split of ") if " split of " in data else ("", "", data)
    if path and not storage.is_url(path):
        path = os.path.abspath(os.path.expanduser(path))
    return f"{split}{of}{path}"


def _free_report_dir(default: str | Path, data: str) -> str | Path:
    """``default``, or when it holds the evaluation of other data (two labels CSVs of one
    name in two folders), the first of ``default-2``, ``-3``, ... that does not."""
    if storage.is_url(default):
        return default
    folder, n = Path(default), 1
    while (
        folder.exists()
        and (folder / EVALUATION).exists()
        and not _same_data(_evaluated(folder), data)
    ):
        n += 1
        folder = Path(f"{default}-{n}")
    return folder


def _check_report_dir(folder: Path, data: str, run: str | os.PathLike) -> None:
    """WhichvoiceError, before any scoring, when writing the report into ``folder`` would
    replace something else: another data's evaluation, or a report.md evaluate did not write
    (the run's own folder is its report's place, as ``demo`` writes it)."""
    if not folder.is_dir() or folder.resolve() == Path(run).resolve():
        return
    before = _evaluated(folder)
    if before is not None and not _same_data(before, data):
        raise WhichvoiceError(
            f"{folder} holds the evaluation of {before}, not {data}: give another --report "
            "(or remove that folder)"
        )
    other = _evaluated_run(folder)
    if before is not None and other is not None and not _same_run(other, run):
        raise WhichvoiceError(
            f"{folder} holds the evaluation of another run ({other}): give another --report "
            "(or remove that folder)"
        )
    if before is None and any((folder / name).exists() for name in (REPORT, CONFUSION_PNG)):
        raise WhichvoiceError(
            f"{folder} holds a {REPORT} or {CONFUSION_PNG} that evaluate did not write: give "
            "another --report"
        )


def _measure(
    model: VoiceModel,
    run: str | os.PathLike,
    files: list,
    corpus: str | os.PathLike | None,
    data: str,
    split: str,
    conditions: list[str] | None,
    progress: bool,
) -> dict:
    """``evaluate``'s metrics: every file scored, then each condition's copies; ``data``:
    what was scored, as evaluate names it."""
    started = provenance()  # the code that runs: before the work, not after it
    truth, pred, errors, window_hits, windows, answers = _score(model, files, progress)
    if not truth:
        raise NothingReadError(f"{none_of(len(files), 'file')} could be read: {errors[0]}")
    if len(set(truth)) == 1 and len(model.labels) > 1:
        log.warning(
            "every file scored is of one voice (%s): the accuracy says how often that voice is "
            "recognised, not how well the %d voices are told apart",
            truth[0], len(model.labels),
        )  # fmt: skip
    voices = model.labels + sorted(set(truth) - set(model.labels))
    matrix = confusion(truth, pred, voices)
    metrics = {
        "run": _full(os.fspath(run)),  # its full path: which run a report folder holds
        "data": data,
        "files": len(truth),
        "errors": len(errors),
        "error_files": errors,
        "windows": windows,
        "file_accuracy": float(np.mean(np.asarray(truth) == np.asarray(pred))),
        "file_accuracy_ci95": proportion(sum(map(str.__eq__, truth, pred)), len(truth))["ci95"],
        "window_accuracy": window_hits / max(windows, 1),
        "per_voice": per_voice_table(truth, pred, voices),
        "voices": voices,
        "confusion": matrix.tolist(),
        # each file's answer (None: it could not be read), so any figure can be recomputed
        "per_file": [
            {"path": str(f.path), "voice": f.voice, "predicted": p}
            for f, p in zip(files, answers, strict=True)
        ],
        "weights_sha256": _weights_digest(run),
        **started,
    }
    scored = [f.path for f, p in zip(files, answers, strict=True) if p is not None]
    if corpus is not None and (sentences := _sentences(corpus, scored)):
        metrics["sentences"] = sentences  # the sentences the corpus's scored files read
    overlap = trained_overlap(model, corpus, split, scored) if corpus is not None else None
    if overlap is not None and overlap[0]:
        metrics["trained_sentence_files"] = overlap[0]  # figures that are not held out
    # the training clips themselves, by their place or bytes: a labels CSV of them, or
    # another corpus imported from the same recordings (its sentence ids may be others)
    # (a val split is there to make choices on: only the run's train clips count against it)
    splits = ("train",) if corpus is not None and split == "val" else ("train", "val")
    if trained := trained_files(model, scored, splits):
        metrics["trained_files"] = trained
    metrics["warnings"] = held_out_warnings(metrics)
    if conditions:
        metrics["conditions"] = condition_accuracy(model, files, conditions, progress=progress)
    return metrics


def _inputs(
    model: VoiceModel,
    corpus: str | os.PathLike | None,
    labels_csv: str | os.PathLike | None,
    split: str,
) -> list[LabelledFile]:
    """The files to score: the corpus's held-out ``split``, else the labels CSV's rows."""
    if corpus is not None:
        return held_out_split(model, corpus, split)
    return labelled_files(labels_csv, model.labels)


def _weights_digest(run: str | os.PathLike) -> str | None:
    """The SHA-256 of the run's weights (which model exactly was scored), when at hand."""
    try:
        with open(Path(run) / "model.safetensors", "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except (OSError, TypeError):
        return None


def _score(
    model: VoiceModel, files: list[LabelledFile], progress: bool
) -> tuple[list[str], list[str], list[str], int, int, list[str | None]]:
    """(true voices, predicted voices, errors of the unreadable files, windows right, windows,
    each file's answer in order: None for one that could not be read)."""
    truth, pred, errors, window_hits, windows = [], [], [], 0, 0
    answers: list[str | None] = []
    results = model.identify_many([f.path for f in files])
    for f, result in tqdm(
        zip(files, results, strict=True),
        total=len(files),
        desc="evaluate",
        unit="file",
        disable=None if progress else True,
        dynamic_ncols=True,
    ):
        if isinstance(result, Prediction):
            truth.append(f.voice)
            pred.append(result.voice)
            window_hits += sum(v == f.voice for v in result.window_voices)
            windows += result.windows
        else:
            errors.append(str(result))
        answers.append(result.voice if isinstance(result, Prediction) else None)
    return truth, pred, errors, window_hits, windows, answers


def _evaluate_remote(
    run: str | os.PathLike,
    corpus: str | os.PathLike | None,
    labels_csv: str | os.PathLike | None,
    report_dir: str | os.PathLike | None,
    conditions: list[str] | None,
    split: str,
    progress: bool,
) -> dict:
    """``evaluate`` with the run or the report at a URL: through local mirrors, uploaded after."""
    same = os.fspath(run).rstrip("/") == os.fspath(report_dir).rstrip("/")
    # the inputs first: a mirror of an output is uploaded however the job ends, so a bad run
    # or labels CSV found inside would leave an empty report (or run) folder at the URL
    check_conditions(conditions or [])
    if (corpus is None) == (labels_csv is None):
        raise WhichvoiceError("give exactly one of a corpus or a labels CSV")
    _inputs(load_model(run, openset=False), corpus, labels_csv, split)
    with (
        storage.local_output(run, last=[METRICS]) as local_run,
        contextlib.nullcontext(local_run)
        if same
        else storage.local_output(report_dir) as local_report,
    ):
        metrics = evaluate(
            local_run,
            corpus=corpus,
            labels_csv=labels_csv,
            report_dir=local_report,
            conditions=conditions,
            split=split,
            progress=progress,
        )
    return {**metrics, "run": str(run), "report": str(storage.join(report_dir, REPORT))}

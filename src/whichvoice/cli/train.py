"""Commands that train and evaluate: train, evaluate, export."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from whichvoice.cli.common import (
    LOCATION,
    OUTPUT,
    FiniteRange,
    LocalPath,
    app,
    check_new_file,
    feature_config,
    json_line,
    model_choice,
    print_table,
    setup_logging,
    setup_train_logging,
)
from whichvoice.errors import WhichvoiceError
from whichvoice.text import counted

SHOWN_ERRORS = 10  # unreadable files evaluate names on the terminal; its report names them all


@app.command("train")
@click.argument("source", type=LOCATION)
@click.option("--out", type=OUTPUT, required=True, help="The run directory (a path or URL).")
@click.option("--model", type=model_choice(), default="voicenet", show_default=True)
@click.option(
    "--features",
    type=click.Choice(["logmel", "seed-image"]),
    default=None,
    help="[default: the model's own: voicenet logmel, talk-cnn seed-image]",
)
@click.option(
    "--window", type=FiniteRange(min=0.1), default=None, help="Window seconds [default: 2]."
)
@click.option(
    "--epochs", type=click.IntRange(min=1), default=None, help="[default: the model's own]"
)
@click.option("--batch-size", type=click.IntRange(min=2), default=64, show_default=True)
@click.option("--lr", type=FiniteRange(min=0, min_open=True), default=1e-3, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True
)
@click.option(
    "--patience",
    type=click.IntRange(min=1),
    default=None,
    help="Early stopping after N epochs without improvement.",
)
@click.option(
    "--augment",
    default=None,
    help="Training-time augmentation: default, none, or comma-separated parts of noise, gain, "
    "telephone, reverb, mp3, clip, speed, band [default: on for voicenet, off for talk-cnn].",
)
@click.option(
    "--precision",
    type=click.Choice(["auto", "bf16", "fp32"]),
    default="auto",
    show_default=True,
    help="Training arithmetic; auto: bf16 on CUDA and on CPUs with AMX, else fp32.",
)
@click.option(
    "--init",
    type=LOCATION,
    default=None,
    help="Fine-tune: start from this run's weights (its head too when trained on the same voices).",
)
@click.option(
    "--margin",
    type=FiniteRange(0, 1.5),
    default=None,
    help="Final angular margin of a margin head (radians) [default: the model's own].",
)
@click.option(
    "--cmn/--no-cmn",
    default=None,
    help="Remove each mel band's mean over a window (a fixed channel colouring drops out, and "
    "so does the voice's average spectral envelope) [default: the data's setting, on].",
)
@click.option(
    "--keep",
    type=click.Choice(["best", "last"]),
    default="best",
    show_default=True,
    help="The weights kept: the best epoch's by validation accuracy, or the last epoch's.",
)
@click.option(
    "--target",
    type=click.Choice(["voice", "engine", "both"]),
    default="voice",
    show_default=True,
    help="What the network learns to name: the voice; the engine family that made the clip "
    "(flite, espeak-ng, piper, ...: whichvoice.voices.families); or both, the voice and then "
    "an engine head fitted on the trained embedding (saved in RUN/engine).",
)
@click.option("--resume", is_flag=True, help="Continue the interrupted run in --out.")
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace the run already in --out (its files, exports and evaluation reports go).",
)
@click.option(
    "--quiet", "-q", is_flag=True, help="No progress bars or epoch lines; the result line stays."
)
def train_cmd(
    source: Path,
    out: Path,
    model: str,
    features: str | None,
    window: float | None,
    epochs: int | None,
    batch_size: int,
    lr: float,
    seed: int,
    device: str,
    patience: int | None,
    augment: str | None,
    precision: str,
    init: Path | str | None,
    margin: float | None,
    cmn: bool | None,
    keep: str,
    target: str,
    resume: bool,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Train a model on SOURCE (a corpus, prepared once and cached, or a prepared folder).

    Under torchrun (``torchrun --nproc_per_node N -m whichvoice train ...``) it trains with
    DistributedDataParallel; --batch-size is the global batch and rank 0 alone reports.
    A run already in --out is refused unless --resume continues it or --overwrite replaces it.
    """
    if resume and overwrite:
        raise click.UsageError("--resume or --overwrite, not both")
    from whichvoice import storage
    from whichvoice.train import TrainConfig, ranks_from_env, train

    # the other ranks of a torchrun job would repeat every line: warnings only
    (setup_train_logging if ranks_from_env().main else setup_logging)(quiet)

    cfg = TrainConfig(
        model=model,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        device=device,
        patience=patience,
        augment=augment,
        precision=precision,
        init=None if init is None else str(init),
        margin=margin,
        keep=keep,
        cmn=cmn,
        target=target,
    )
    prepared = storage.exists(storage.join(source, "dataset.json"))
    if prepared and (features is not None or window is not None):
        given = " and ".join(o for o, v in (("--features", features), ("--window", window)) if v)
        raise click.UsageError(
            f"{given}: {source} is a prepared dataset, whose features are set; give the corpus "
            "to train with other features (or `whichvoice prepare` it with them)"
        )
    feats = None if prepared else feature_config(features, model, window)
    run = train(
        source, out, cfg, features=feats, resume=resume, overwrite=overwrite, progress=not quiet
    )
    if quiet and ranks_from_env().main:  # the result is still said: the bars and epochs are not
        from whichvoice.train.loop import test_line

        metrics = json.loads(storage.read_bytes(storage.join(run, "metrics.json")))
        click.echo(f"{test_line(metrics)}; run in {run}")


@app.command("evaluate")
@click.argument("run", type=LOCATION)
@click.option("--corpus", type=LOCATION, help="Evaluate on this corpus's test split.")
@click.option("--labels", "labels_csv", type=LOCATION, help="A CSV of path,voice.")
@click.option(
    "--report",
    "report_dir",
    type=OUTPUT,
    help="Where report.md, confusion.png and evaluation.json go [default: a new folder "
    "beside RUN named after what is scored, RUN-eval-LABELS or RUN-eval-CORPUS-SPLIT; for the "
    "bundled classifier, in the current folder].",
)
@click.option(
    "--conditions",
    default=None,
    help="Also score copies under these conditions of the evaluation suite (comma-separated, "
    "or 'all'): a condition (noise10, mp3-16k, phone, ...: docs/evaluation.md) or a family "
    "of them: rate, level, codec, speed, noise, babble, length (clean, clipping, room, "
    "silence, band and phone name one condition each).",
)
@click.option(
    "--split",
    type=click.Choice(["test", "val"]),
    default="test",
    show_default=True,
    help="The corpus's held-out split: test (to report) or val (to make choices on).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
@click.option(
    "--quiet", "-q", is_flag=True, help="No progress bar; the result is printed all the same."
)
def evaluate_cmd(
    run: Path,
    corpus: Path | None,
    labels_csv: Path | None,
    report_dir: Path | None,
    conditions: str | None,
    split: str,
    as_json: bool,
    quiet: bool,
) -> None:
    """Accuracy, per-voice table, confusion matrix and report of RUN on held-out audio."""
    setup_logging(quiet)
    from whichvoice.conditions import CONDITIONS, expand_conditions
    from whichvoice.evaluate import evaluate

    wanted = [c.strip() for c in conditions.split(",") if c.strip()] if conditions else None
    if conditions is not None and not wanted:  # `--conditions " "` scored none, silently
        raise click.BadParameter("names no condition", param_hint="'--conditions'")
    if wanted and "all" in wanted:  # all, and what else is named: all of them
        expand_conditions([c for c in wanted if c != "all"])  # a misspelt one is still said
        wanted = list(CONDITIONS)
    elif wanted:
        wanted = expand_conditions(wanted)
    if labels_csv is not None and click.get_current_context().get_parameter_source("split") not in (
        click.core.ParameterSource.DEFAULT,
        None,
    ):
        raise click.UsageError("--split goes with a corpus (a labels CSV is scored whole)")
    if corpus is None and labels_csv is None:
        corpus = _training_corpus(run)
    metrics = evaluate(
        run,
        corpus=corpus,
        labels_csv=labels_csv,
        report_dir=report_dir,
        conditions=wanted,
        split=split,
        progress=not (quiet or as_json),
    )
    if as_json:
        click.echo(json_line(metrics))
    else:  # --quiet drops the bar, never the result
        print_table(metrics)
        for warning in metrics.get("warnings", []):  # also in report.md and the JSON
            click.echo(f"warning: {warning}", err=True)
        if metrics["errors"]:  # each named, as predict names them (the first few here)
            named = metrics["error_files"][:SHOWN_ERRORS]
            click.echo(
                f"warning: {counted(metrics['errors'], 'file')} could not be read:", err=True
            )
            for line in named:
                click.echo(f"  {line}", err=True)
            if metrics["errors"] > len(named):
                click.echo(
                    f"  and {metrics['errors'] - len(named)} more: {metrics['report']}", err=True
                )
        for name, c in metrics.get("conditions", {}).items():
            lo, hi = c["ci95"]
            click.echo(
                f"  {name:10} {c['accuracy']:.4f}  [{lo:.4f}, {hi:.4f}]  "
                # `long` scores recordings joined from several files, as report.md says
                f"({counted(c['files'], 'recording' if name == 'long' else 'file')})"
            )
        click.echo(f"report: {metrics['report']}")
    if metrics["errors"]:  # as predict, verify, identify and trace: the figures leave files out
        sys.exit(1)


def _training_corpus(run: Path | str) -> Path | str:
    from whichvoice import storage

    for name in ("config.json", "model.safetensors"):  # as load_model says it
        if not storage.exists(storage.join(run, name)):
            raise WhichvoiceError(f"{run}: not a trained run ({name} missing)")
    try:
        config = json.loads(storage.read_bytes(storage.join(run, "config.json")))
        if config.get("corpus"):  # where the run was trained from, as given (a path or URL)
            return config["corpus"]
        return Path(json.loads((Path(config["data"]) / "dataset.json").read_text())["corpus"])
    except (OSError, KeyError, ValueError, storage.StorageError) as e:
        raise WhichvoiceError(
            f"{run}: give --corpus or --labels (the training corpus is unknown: {e})"
        ) from e


@app.command("export")
@click.argument("run", type=LOCATION)
@click.option(
    "--onnx",
    "onnx_out",
    required=True,
    type=OUTPUT,
    help="The ONNX file to write: stored windows in, log-probabilities (and embeddings) out.",
)
@click.option("--opset", type=click.IntRange(min=18), default=18, show_default=True)
@click.option(
    "--int8",
    is_flag=True,
    help="Write the network alone (the log-mel stays in torch), quantised to int8; name it "
    "RUN/model.int8.onnx for `--backend onnx-int8`.",
)
@click.option(
    "--calibration",
    "calibration",
    multiple=True,
    type=LOCATION,
    help="With --int8: audio files or folders (or s3:// prefixes) of the voices the model "
    "will score; its activation ranges are measured on them (repeatable).",
)
@click.option("--overwrite", is_flag=True, help="Replace the ONNX file if it exists.")
def export_cmd(
    run: Path,
    onnx_out: Path,
    opset: int,
    int8: bool,
    calibration: tuple[Path, ...],
    overwrite: bool,
) -> None:
    """Export a trained run to ONNX; print the file and its largest difference from torch
    (with --int8: how often its answer per window agrees with torch's). An existing file is
    replaced only with --overwrite."""
    setup_logging(True)
    from whichvoice.export import export_onnx
    from whichvoice.runtime import check_export, load_model

    if calibration and not int8:
        raise click.UsageError("--calibration goes with --int8")
    _not_the_runs_own(run, onnx_out, int8)  # before "exists": --overwrite would not help
    check_new_file(onnx_out, "--onnx", overwrite)
    if int8:
        _export_int8(run, onnx_out, opset, calibration)
        return
    # a URL: its local copy; the export holds the network, not the open set
    model = load_model(run, openset=False)
    path = export_onnx(model, onnx_out, opset=opset)
    diff = check_export(run, path)
    click.echo(onnx_out)
    click.echo("max |onnx - torch|: " + ", ".join(f"{k} {v:.2e}" for k, v in diff.items()))
    _warn_open_set_left_out(model.root)


def _not_the_runs_own(run: Path | str, out: Path | str, int8: bool) -> None:
    """An --onnx path that is one of the run's own files is refused before any work: its
    weights, config or checkpoint (the export replaced the weights and broke the run), the
    ONNX backend's cache, and its int8 model but for an --int8 export."""
    from whichvoice import storage
    from whichvoice.runtime.load import INT8_FILE
    from whichvoice.runtime.onnx_backend import CACHE_FILE

    if storage.is_url(run) or storage.is_url(out):
        return
    out = Path(out)
    if not out.exists() or out.resolve().parent != Path(run).resolve():
        return
    if (
        out.suffix.lower() != ".onnx"
        or out.name == CACHE_FILE
        or (out.name == INT8_FILE and not int8)
    ):
        raise click.UsageError(f"--onnx {out}: one of the run's own files; name a new .onnx file")


def _warn_open_set_left_out(root: Path) -> None:
    """The export holds the classifier's network: where the run answers "unknown" for voices
    it does not know (its openset.json), the exported file names the nearest of its voices."""
    if (root / "openset.json").is_file():
        click.echo(
            "warning: the ONNX file holds the classifier, not the run's open set: it names the "
            "nearest of its voices for any voice, where the run (predict, serve) answers "
            '"unknown" for voices it does not know',
            err=True,
        )


def _export_int8(run: Path, out: Path, opset: int, calibration: tuple[Path, ...]) -> None:
    import random

    from whichvoice.batch import path_inputs
    from whichvoice.export import calibration_inputs, quantize_int8
    from whichvoice.runtime import load_model
    from whichvoice.runtime.onnx_backend import OnnxVoiceModel, session

    if not calibration:
        raise click.UsageError("--int8 needs --calibration CLIPS (audio of the voices to score)")
    from whichvoice import storage

    for given in calibration:
        if not storage.is_url(given) and not Path(given).exists():
            raise click.UsageError(f"--calibration {given}: no such file or folder")
    model = load_model(run, openset=False)  # the network is quantised, not the open set
    files = sorted(str(item.source) for item in path_inputs(calibration))
    random.Random(0).shuffle(files)  # every voice, not the first few files' alone
    x = calibration_inputs(model, files[::2] or files)
    # a URL: made in its local mirror, uploaded once checked below
    local = storage.mirror_path(os.fspath(out)) if storage.is_url(out) else out
    path = quantize_int8(model, local, x, opset=opset)
    quantised = OnnxVoiceModel(model.root, model.config, model.net, model.device,
                               session(path), path)  # fmt: skip
    check = calibration_inputs(model, files[1::2] or files)  # other files where there are
    same = (quantised.input_scores(check)[:, : len(model.labels)].argmax(1)
            == model.input_scores(check)[:, : len(model.labels)].argmax(1)).mean()  # fmt: skip
    if storage.is_url(out):
        storage.put_into(path, os.fspath(out))
    click.echo(out)
    click.echo(f"calibrated on {len(x)} windows; the same top voice as torch on {100 * same:.1f} % "
               f"of {len(check)} windows")  # fmt: skip
    if Path(out).resolve().parent != model.root.resolve():  # inside the run, its backend's
        _warn_open_set_left_out(model.root)


@app.command("openset")
@click.argument("run", type=LocalPath(path_type=Path, file_okay=False))
@click.option(
    "--known",
    "known_csv",
    required=True,
    type=LOCATION,
    help="Dev clips of the run's own voices: a path,voice CSV (sentences never trained on).",
)
@click.option(
    "--unknown",
    "unknown_paths",
    multiple=True,
    type=LOCATION,
    help="Dev clips of other voices (files or folders; repeat): the share they reject is reported.",
)
@click.option(
    "--keep",
    type=FiniteRange(0, 1, min_open=True, max_open=True),
    default=0.99,
    show_default=True,
    help="Share of the known clips the threshold keeps.",
)
@click.option(
    "--encoder",
    type=click.Choice(["bundled", "own"]),
    default="bundled",
    show_default=True,
    help="Whose embedding is scored: the bundled speaker encoder's, of each clip's middle "
    "window, or the run's own (the mean of its windows').",
)
@click.option("--json", "as_json", is_flag=True, help="Print the fit as one JSON object.")
def openset_cmd(
    run: Path,
    known_csv: Path,
    unknown_paths: tuple[Path, ...],
    keep: float,
    encoder: str,
    as_json: bool,
) -> None:
    """Fit RUN's open-set answer on dev data: a clip whose embedding is far from the voice the
    classifier names is answered "unknown" (writes RUN/openset.json)."""
    setup_logging(True)
    from whichvoice.evaluate import labelled_files, trained_files
    from whichvoice.openset import fit_openset, save_openset
    from whichvoice.predict import expand_paths
    from whichvoice.runtime import bundled_encoder_dir, load_model

    model = load_model(run, openset=False)  # the open set it may have is being replaced
    known = [(f.path, f.voice) for f in labelled_files(known_csv, model.labels)]
    if trained := trained_files(model, [path for path, _ in known]):
        click.echo(
            f"warning: {trained} of the {len(known)} known clips are clips the run was trained "
            "on (its train or val split): the threshold will keep more of them than of new "
            "clips of its voices; give clips of sentences it never trained on",
            err=True,
        )
    probe = load_model(bundled_encoder_dir()) if encoder == "bundled" else None
    fitted = fit_openset(model, known, expand_paths(unknown_paths), keep=keep, encoder=probe)
    path = save_openset(run, fitted)
    short = fitted.short_threshold
    # clips named in a warning and left out: the fit is saved from the others, and the
    # command exits 1 for them, as every command does for an input it could not use
    left_out = int(fitted.fitted.get("clips_left_out", 0))
    if as_json:
        saved = fitted.to_dict()  # the short threshold as openset.json keeps it
        extra = {"threshold": saved["threshold"], "short_threshold": saved["short_threshold"]}
        click.echo(json_line(saved["fitted"] | extra))
        if left_out:
            sys.exit(1)
        return
    f = fitted.fitted
    rejected = f["unknown_rejected"]
    # the short clips' own threshold too: predict answers a clip of 2 windows or fewer by it
    # (a review saw "< 0.575" from predict where this line said only 0.6244)
    shorts = f" ({short:.4f} for clips of 2 windows or fewer)" if short is not None else ""
    click.echo(
        f"threshold {fitted.threshold:.4f}{shorts}: keeps {f['known_kept']['value']:.4f} of "
        f"{f['known_scored']} known dev clips (each against its voice's other clips)"
        + (
            f", rejects {rejected['value']:.4f} of {f['unknown_clips']} other voices' clips"
            if rejected
            else ""
        )
        + f"; saved in {path}"
    )
    if left_out:
        sys.exit(1)

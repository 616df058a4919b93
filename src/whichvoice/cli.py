"""The ``whichvoice`` command: each command parses, calls the library, formats.

Heavy modules are imported inside the commands that need them, so ``--help`` stays instant.
Known errors become one line on stderr and exit status 2.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click

from whichvoice.errors import WhichvoiceError

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


def _setup_logging(quiet: bool) -> None:
    logging.basicConfig(
        level=logging.ERROR if quiet else logging.WARNING,
        format="%(levelname)s: %(message)s",
        stream=sys.stderr,
    )


class _Location(click.ParamType):
    """A local path (a Path) or a URL such as s3://bucket/prefix (kept as a string: a Path
    would fold its '//')."""

    name = "path"

    def convert(self, value, param, ctx):
        if isinstance(value, Path) or "://" in str(value):
            return value
        return Path(value)


LOCATION = _Location()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="whichvoice")
def app() -> None:
    """Tell which voice is speaking: build TTS corpora, train, identify and verify voices."""


@app.command("voices")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per voice.")
@click.option("--engine", help="Only this engine's voices.")
@click.option("--set", "voice_set", help="Only the voices of this set or id list.")
@click.option("--available", is_flag=True, help="Only voices that can be used now.")
def voices_cmd(as_json: bool, engine: str | None, voice_set: str | None, available: bool) -> None:
    """List every voice: id, engine, gender, accent, native rate, available now (or why not)."""
    from whichvoice.voices import all_voices, get_engine, resolve_voices

    voices = resolve_voices(voice_set) if voice_set else all_voices()
    if engine:
        get_engine(engine)  # unknown engine -> error listing the valid ones
        voices = [v for v in voices if v.engine == engine]
    reasons = {}
    for v in voices:
        reasons[v.id] = get_engine(v.engine).voice_unavailable_reason(v)
    if available:
        voices = [v for v in voices if reasons[v.id] is None]
    if as_json:
        for v in voices:
            row = {**v.to_dict(), "available": reasons[v.id] is None, "reason": reasons[v.id]}
            click.echo(json.dumps(row))
        return
    click.echo(f"{'id':34} {'gender':7} {'accent':19} {'rate':>6}  available")
    for v in voices:
        status = "yes" if reasons[v.id] is None else f"no: {reasons[v.id]}"
        click.echo(
            f"{v.id:34} {v.gender or '-':7} {v.accent or '-':19} {v.sample_rate:>6}  {status}"
        )
    if not as_json:
        n_ok = sum(reasons[v.id] is None for v in voices)
        click.echo(f"{len(voices)} voices, {n_ok} available now", err=True)


def _synth(
    out: Path,
    voices: str,
    sentences: str,
    assign: str,
    fmt: str,
    workers: int | None,
    seed: int,
    quiet: bool,
    polly_engine: str,
    max_chars: int,
    per_voice: int = 10,
) -> None:
    from whichvoice.corpus import SynthConfig, default_workers, synthesize_corpus
    from whichvoice.sentences import load_sentences

    source = load_sentences(sentences, max_chars)
    if source.skipped and not quiet:
        click.echo(
            f"sentences: {len(source.sentences)} used, skipped {source.blank} blank, "
            f"{source.too_long} over {max_chars} characters, {source.duplicate} repeated",
            err=True,
        )
    cfg = SynthConfig(
        voices=(voices,),
        assign=assign,
        per_voice=per_voice,
        format=fmt,
        workers=workers or default_workers(),
        seed=seed,
        polly_engine=polly_engine,
    )
    summary = synthesize_corpus(out, source.sentences, cfg, progress=not quiet)
    if summary.interrupted:
        click.echo(f"interrupted: {summary.line()}; run the same command again to resume", err=True)
        sys.exit(EXIT_INTERRUPTED)
    if not quiet:
        click.echo(f"{summary.line()} -> {out / 'manifest.jsonl'}")
        for failure in summary.failed[:10]:
            click.echo(f"  failed {failure.clip_id}: {failure.reason}", err=True)
        if len(summary.failed) > 10:
            click.echo(
                f"  ... and {len(summary.failed) - 10} more in {out / 'failures.jsonl'}", err=True
            )


@app.command("synth")
@click.argument("out", type=LOCATION)
@click.option(
    "--voices",
    default="default8",
    show_default=True,
    help="A voice set (default8, talk8, espeak-all) or comma-separated ids.",
)
@click.option(
    "--sentences",
    default="100",
    show_default=True,
    help="N (the first N bundled sentences) or a text file, one sentence per line.",
)
@click.option(
    "--assign",
    type=click.Choice(["random", "all", "sample"]),
    default="random",
    show_default=True,
    help="random: one random voice per sentence (the talk); all: every voice reads all; "
    "sample: every voice reads --per-voice random sentences.",
)
@click.option(
    "--per-voice",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Sentences per voice with --assign sample.",
)
@click.option(
    "--format", "fmt", type=click.Choice(["mp3", "wav"]), default="mp3", show_default=True
)
@click.option(
    "--workers", type=click.IntRange(min=1), default=None, help="Parallel workers [default: cores]."
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--polly-engine",
    type=click.Choice(["standard", "neural"]),
    default="standard",
    show_default=True,
    help="Polly engine (neural-only voices always use neural).",
)
@click.option(
    "--max-chars",
    type=click.IntRange(min=1),
    default=300,
    show_default=True,
    help="Skip sentences longer than this.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or summary.")
def synth_cmd(
    out: Path,
    voices: str,
    sentences: str,
    assign: str,
    per_voice: int,
    fmt: str,
    workers: int | None,
    seed: int,
    polly_engine: str,
    max_chars: int,
    quiet: bool,
) -> None:
    """Synthesize SENTENCES with VOICES into OUT (audio + manifest.jsonl); resumable."""
    _setup_logging(quiet)
    _synth(
        out,
        voices,
        sentences,
        assign,
        fmt,
        workers,
        seed,
        quiet,
        polly_engine,
        max_chars,
        per_voice,
    )


def _setup_train_logging(quiet: bool) -> None:
    _setup_logging(quiet)
    if not quiet:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        for name in ("whichvoice.train", "whichvoice.dataset"):
            lg = logging.getLogger(name)
            lg.setLevel(logging.INFO)
            lg.addHandler(handler)
            lg.propagate = False


def _feature_config(features: str | None, model: str, window: float | None):
    from whichvoice.features import FeatureConfig
    from whichvoice.models import model_spec

    name = features or model_spec(model).features
    return FeatureConfig(name=name, **({"window_s": window} if window else {}))


def _model_choice() -> click.Choice:
    # the registry's names, without importing torch for --help
    return click.Choice(["voicenet", "seed"])


@app.command("prepare")
@click.argument("corpus", type=LOCATION)
@click.argument("out", type=LOCATION)
@click.option(
    "--features", type=click.Choice(["logmel", "seed-image"]), default="logmel", show_default=True
)
@click.option(
    "--window",
    type=click.FloatRange(min=0.1),
    default=None,
    help="Window length in seconds [default: 2].",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of the split (and seed-image excerpts).",
)
@click.option("--quiet", "-q", is_flag=True)
def prepare_cmd(
    corpus: Path, out: Path, features: str, window: float | None, seed: int, quiet: bool
) -> None:
    """Compute features of CORPUS into OUT, split 80/10/10 by voice and sentence."""
    _setup_logging(quiet)
    from whichvoice.dataset import PrepareConfig, open_prepared, prepare

    cfg = PrepareConfig(features=_feature_config(features, "voicenet", window), seed=seed)
    prepared = open_prepared(prepare(corpus, out, cfg, progress=not quiet))
    if not quiet:
        meta = json.loads((prepared.root / "dataset.json").read_text())  # the local mirror
        counts = ", ".join(
            f"{s}: {c['clips']} clips / {c['windows']} windows" for s, c in meta["counts"].items()
        )
        click.echo(f"{len(prepared.labels)} voices; {counts} -> {out}")


@app.command("train")
@click.argument("source", type=LOCATION)
@click.option("--out", type=LOCATION, required=True, help="The run directory (a path or URL).")
@click.option("--model", type=_model_choice(), default="voicenet", show_default=True)
@click.option(
    "--features",
    type=click.Choice(["logmel", "seed-image"]),
    default=None,
    help="[default: the model's own: voicenet logmel, seed seed-image]",
)
@click.option(
    "--window", type=click.FloatRange(min=0.1), default=None, help="Window seconds [default: 2]."
)
@click.option(
    "--epochs", type=click.IntRange(min=1), default=None, help="[default: the model's own]"
)
@click.option("--batch-size", type=click.IntRange(min=2), default=64, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-3, show_default=True)
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
    help="Training-time augmentation: default, none, or parts noise,gain,telephone,reverb,mp3 "
    "[default: on for voicenet, off for seed].",
)
@click.option("--resume", is_flag=True, help="Continue the interrupted run in --out.")
@click.option("--quiet", "-q", is_flag=True)
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
    resume: bool,
    quiet: bool,
) -> None:
    """Train a model on SOURCE (a corpus, prepared once and cached, or a prepared folder).

    Under torchrun (``torchrun --nproc_per_node N -m whichvoice train ...``) it trains with
    DistributedDataParallel; --batch-size is the global batch and rank 0 alone reports.
    """
    from whichvoice import storage
    from whichvoice.train import TrainConfig, ranks_from_env, train

    # the other ranks of a torchrun job would repeat every line: warnings only
    (_setup_train_logging if ranks_from_env().main else _setup_logging)(quiet)

    cfg = TrainConfig(
        model=model,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        device=device,
        patience=patience,
        augment=augment,
    )
    feats = (
        None
        if storage.exists(storage.join(source, "dataset.json"))
        else _feature_config(features, model, window)
    )
    train(source, out, cfg, features=feats, resume=resume, progress=not quiet)


def _print_table(metrics: dict) -> None:
    click.echo(f"{'voice':34} {'support':>7} {'acc':>7} {'prec':>7} {'recall':>7} {'F1':>7}")
    for r in metrics["per_voice"]:
        click.echo(
            f"{r['voice']:34} {r['support']:>7} {r['accuracy']:>7.4f} {r['precision']:>7.4f} "
            f"{r['recall']:>7.4f} {r['f1']:>7.4f}"
        )
    click.echo(
        f"file-level accuracy {metrics['file_accuracy']:.4f} on {metrics['files']} files "
        f"(window-level {metrics['window_accuracy']:.4f} on {metrics['windows']} windows)"
    )


@app.command("evaluate")
@click.argument("run", type=LOCATION)
@click.option("--corpus", type=LOCATION, help="Evaluate on this corpus's test split.")
@click.option("--labels", "labels_csv", type=LOCATION, help="A CSV of path,voice.")
@click.option(
    "--report",
    "report_dir",
    type=LOCATION,
    help="Where report.md and confusion.png go [default: RUN].",
)
@click.option(
    "--conditions",
    default=None,
    help="Also score degraded copies: clean,wav8k,wav22k,wav44k,flac48k,quiet,noise10,noise0,"
    "tel8k,mp3-24k,reverb,short1s,long (comma-separated).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
@click.option("--quiet", "-q", is_flag=True)
def evaluate_cmd(
    run: Path,
    corpus: Path | None,
    labels_csv: Path | None,
    report_dir: Path | None,
    conditions: str | None,
    as_json: bool,
    quiet: bool,
) -> None:
    """Accuracy, per-voice table, confusion matrix and report of RUN on held-out audio."""
    _setup_logging(quiet)
    from whichvoice.evaluate import evaluate

    if corpus is None and labels_csv is None:
        corpus = _training_corpus(run)
    metrics = evaluate(
        run,
        corpus=corpus,
        labels_csv=labels_csv,
        report_dir=report_dir,
        conditions=[c.strip() for c in conditions.split(",") if c.strip()] if conditions else None,
        progress=not (quiet or as_json),
    )
    if as_json:
        click.echo(json.dumps(metrics))
    elif not quiet:
        _print_table(metrics)
        if metrics["errors"]:
            first = metrics["error_files"][0]
            click.echo(
                f"warning: {metrics['errors']} file(s) could not be read, e.g. {first}", err=True
            )
        for name, c in metrics.get("conditions", {}).items():
            click.echo(f"  {name:10} {c['accuracy']:.4f}  ({c['files']} files)")
        click.echo(f"report: {metrics['report']}")


def _training_corpus(run: Path | str) -> Path | str:
    from whichvoice import storage
    from whichvoice.errors import WhichvoiceError

    try:
        config = json.loads(storage.read_bytes(storage.join(run, "config.json")))
        if config.get("corpus"):  # where the run was trained from, as given (a path or URL)
            return config["corpus"]
        return Path(json.loads((Path(config["data"]) / "dataset.json").read_text())["corpus"])
    except (OSError, KeyError, ValueError, storage.StorageError) as e:
        raise WhichvoiceError(
            f"{run}: give --corpus or --labels (the training corpus is unknown: {e})"
        ) from e


@app.command("predict")
@click.argument("run", type=LOCATION)
@click.argument("paths", nargs=-1, type=LOCATION)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per file.")
@click.option(
    "--manifest",
    type=LOCATION,
    help='Inputs listed in a file: a corpus manifest.jsonl, any JSONL with a "path", or one '
    "path a line (relative to its folder). Needs --output.",
)
@click.option(
    "--labels",
    "labels_csv",
    type=LOCATION,
    help="Inputs with their voice: a path,voice CSV; adds true_voice and correct columns and "
    "prints the accuracy. Needs --output.",
)
@click.option(
    "--output",
    "-o",
    type=LOCATION,
    help="Write one row per input to this .csv, .jsonl or .parquet (streamed, in input "
    "order) instead of printing.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Processes sharing the cores (1: this process, every core).",
)
@click.option("--resume", is_flag=True, help="Complete an interrupted --output.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --output.")
@click.option(
    "--dask-scheduler",
    metavar="ADDRESS",
    help="Run on this Dask cluster (tcp://host:8786); its workers must see RUN and the audio.",
)
@click.option("--backend", type=click.Choice(["torch", "onnx"]), default="torch", show_default=True)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar (with --output).")
def predict_cmd(
    run: Path,
    paths: tuple[Path, ...],
    as_json: bool,
    manifest: Path | None,
    labels_csv: Path | None,
    output: Path | None,
    workers: int,
    resume: bool,
    overwrite: bool,
    dask_scheduler: str | None,
    backend: str,
    quiet: bool,
) -> None:
    """Which voice reads each file (files or folders, any length); exit 1 if any failed.

    With --output: every input of PATHS, --manifest or --labels becomes a row of a CSV, JSONL
    or Parquet file, written as it goes with a progress bar; --resume completes the file after
    an interruption (inputs are matched by path, as the input spells it).
    """
    _setup_logging(True)
    inputs_given = [
        name
        for name, value in (("PATHS", paths), ("--manifest", manifest), ("--labels", labels_csv))
        if value
    ]
    file_only = [
        name
        for name, value in (
            ("--manifest", manifest),
            ("--labels", labels_csv),
            ("--workers", workers != 1),
            ("--resume", resume),
            ("--overwrite", overwrite),
            ("--dask-scheduler", dask_scheduler),
            ("--quiet", quiet),
        )
        if value
    ]
    if output is None and file_only:
        raise click.UsageError(f"{file_only[0]} needs --output")
    if len(inputs_given) != 1:
        raise click.UsageError("give the inputs as one of PATHS, --manifest or --labels")
    if output is not None:
        if as_json:
            raise click.UsageError("--json prints; --output takes its format from its suffix")
        if resume and overwrite:
            raise click.UsageError("--resume or --overwrite, not both")
        if dask_scheduler and workers != 1:
            raise click.UsageError("--workers or --dask-scheduler (its workers), not both")
        from whichvoice.batch import (
            labelled_inputs,
            manifest_inputs,
            output_format,
            path_inputs,
            predict_batch,
        )

        output_format(output)  # a bad suffix fails before the model loads
        if manifest is not None:
            inputs = manifest_inputs(manifest)
        elif labels_csv is not None:
            inputs = labelled_inputs(labels_csv)
        else:
            inputs = path_inputs(paths)
        summary = predict_batch(
            run,
            inputs,
            output,
            workers=workers,
            resume=resume,
            overwrite=overwrite,
            backend=backend,
            dask_scheduler=dask_scheduler,
            progress=not quiet,
        )
        click.echo(summary.line(), err=True)
        if summary.failed:
            sys.exit(1)
        return
    from whichvoice.predict import Prediction, expand_paths, load_model

    model = load_model(run, backend=backend)
    files = expand_paths(paths)
    if not files:
        raise WhichvoiceError(f"no audio files in {', '.join(map(str, paths))}")
    failed = 0
    for path, result in zip(files, model.identify_many(files), strict=True):
        if isinstance(result, Prediction):
            if as_json:
                click.echo(json.dumps(result.to_dict()))
            else:
                top = ", ".join(f"{v} {p:.3f}" for v, p in result.top[:3])
                click.echo(f"{path}\t{result.voice}\t{result.confidence:.3f}\t[{top}]")
        else:
            failed += 1
            if as_json:
                click.echo(json.dumps({"path": str(path), "error": str(result)}))
            else:
                click.echo(f"{path}\terror: {result}", err=True)
    if failed:
        sys.exit(1)


@app.command("export")
@click.argument("run", type=LOCATION)
@click.option(
    "--onnx",
    "onnx_out",
    required=True,
    type=LOCATION,
    help="The ONNX file to write: stored windows in, log-probabilities (and embeddings) out.",
)
@click.option("--opset", type=click.IntRange(min=18), default=18, show_default=True)
def export_cmd(run: Path, onnx_out: Path, opset: int) -> None:
    """Export a trained run to ONNX; print the file and its largest difference from torch."""
    _setup_logging(True)
    from whichvoice.export import check_export, export_onnx

    path = export_onnx(run, onnx_out, opset=opset)  # a URL's local copy, once uploaded
    diff = check_export(run, path)
    click.echo(onnx_out)
    click.echo("max |onnx - torch|: " + ", ".join(f"{k} {v:.2e}" for k, v in diff.items()))


@app.command("demo")
@click.option("--model", type=_model_choice(), default="voicenet", show_default=True)
@click.option(
    "--features",
    type=click.Choice(["logmel", "seed-image"]),
    default=None,
    help="[default: the model's own]",
)
@click.option(
    "--sentences",
    type=click.IntRange(min=10),
    default=320,
    show_default=True,
    help="Bundled sentences, each read by every default8 voice.",
)
@click.option(
    "--epochs", type=click.IntRange(min=1), default=None, help="[default: the model's own]"
)
@click.option(
    "--out", type=click.Path(path_type=Path), default=Path("runs/demo"), show_default=True
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--quiet", "-q", is_flag=True)
def demo_cmd(
    model: str,
    features: str | None,
    sentences: int,
    epochs: int | None,
    out: Path,
    seed: int,
    quiet: bool,
) -> None:
    """The main job: synthesize default8, train, evaluate, print the per-voice table.

    `whichvoice demo --model seed --features seed-image` reproduces the talk.
    """
    _setup_train_logging(quiet)
    from whichvoice.evaluate import evaluate
    from whichvoice.train import TrainConfig, train

    corpus = out / "corpus"
    run = out / f"run-{model}-{features or 'default'}"
    if not quiet:
        click.echo(f"[1/3] synthesizing {sentences} sentences x default8 -> {corpus}")
    _synth(corpus, "default8", str(sentences), "all", "mp3", None, seed, quiet, "standard", 300)
    if not quiet:
        click.echo(f"[2/3] training {model} -> {run}")
    train(
        corpus,
        run,
        TrainConfig(model=model, epochs=epochs, seed=seed),
        features=_feature_config(features, model, None),
        progress=not quiet,
    )
    if not quiet:
        click.echo("[3/3] evaluating on the held-out test sentences")
    metrics = evaluate(run, corpus=corpus, progress=not quiet)
    if not quiet:
        _print_table(metrics)
        click.echo(f"test accuracy {metrics['file_accuracy']:.4f}; report: {metrics['report']}")


def _check_port(host: str, port: int) -> None:
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(infos[0][4])
    except OSError as e:
        raise WhichvoiceError(f"cannot listen on {host}:{port} ({e.strerror or e})") from e


@app.command("serve")
@click.argument("run", required=False, type=click.Path(path_type=Path))
@click.option(
    "--encoder",
    default=None,
    help="The voice encoder of the enroll/verify/gallery routes: a run or a name "
    "[default: the bundled encoder].",
)
@click.option(
    "--gallery",
    type=click.Path(path_type=Path),
    default=None,
    help="The gallery file [default: $WHICHVOICE_GALLERY or "
    "~/.local/share/whichvoice/gallery.sqlite].",
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Server processes, each with its own copy of the models.",
)
@click.option(
    "--api-key",
    default=None,
    envvar="WHICHVOICE_API_KEY",
    help="Require this X-API-Key on every route but /healthz and the page's files.",
)
@click.option(
    "--max-upload-mb", type=click.FloatRange(min=0, min_open=True), default=20, show_default=True
)
@click.option(
    "--max-duration",
    type=click.FloatRange(min=0, min_open=True),
    default=600,
    show_default=True,
    help="Longest audio accepted, in seconds.",
)
@click.option("--quiet", "-q", is_flag=True, help="No access log.")
def serve_cmd(
    run: Path | None,
    encoder: str | None,
    gallery: Path | None,
    host: str,
    port: int,
    workers: int,
    api_key: str | None,
    max_upload_mb: float,
    max_duration: float,
    quiet: bool,
) -> None:
    """Serve over HTTP: the talk's /invocations and /v1/identify with the classifier RUN,
    enrollment, verification and the gallery with the encoder, /metrics and the page at /.
    Without RUN, /v1/identify answers from the enrolled voices."""
    import os

    import uvicorn

    from whichvoice.gallery import default_gallery_path
    from whichvoice.predict import load_model
    from whichvoice.serve.app import ENV_CONFIG, ServeConfig

    if run is not None:
        load_model(run)  # fail here, in one line, rather than in every worker
    if encoder is not None and Path(encoder).exists():
        encoder = str(Path(encoder).resolve())
    gallery = (gallery or default_gallery_path()).resolve()
    _check_encoder(encoder, gallery, needed=run is None or encoder is not None)
    _check_port(host, port)
    cfg = ServeConfig(
        run=str(run.resolve()) if run is not None else None,
        encoder=encoder,
        gallery=str(gallery),
        api_key=api_key,
        max_bytes=int(max_upload_mb * 1024 * 1024),
        max_seconds=max_duration,
    )
    os.environ[ENV_CONFIG] = cfg.to_json()
    os.environ["WHICHVOICE_WORKERS"] = str(workers)
    if not quiet:
        what = f"{run} and the gallery" if run is not None else "the gallery (no classifier)"
        click.echo(
            f"serving {what} {gallery} on http://{host}:{port}/ ({workers} worker(s)); "
            "docs at /docs",
            err=True,
        )
    uvicorn.run(
        "whichvoice.serve.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="warning" if quiet else "info",
        access_log=not quiet,
    )


def _check_encoder(encoder: str | None, gallery: Path, *, needed: bool) -> None:
    """Load the encoder and check that an existing gallery is its own, so that `serve` fails
    in one line; a missing encoder only warns when the classifier can serve alone."""
    from whichvoice.gallery import Gallery
    from whichvoice.verification import calibration_of, load_encoder, model_id

    try:
        model = load_encoder(encoder)
        calibration_of(model)  # verify and identify need its threshold
    except WhichvoiceError as e:
        if needed:
            raise
        click.echo(f"warning: {e}; the enrollment and gallery routes will answer 503", err=True)
        return
    if gallery.exists():
        Gallery(gallery, model_id(model)).close()


def _encoder(model: Path | None):
    from whichvoice.verification import load_encoder

    return load_encoder(model)


def _gallery(model, path: Path | None, *, create: bool = False):
    from whichvoice.gallery import Gallery, default_gallery_path
    from whichvoice.verification import model_id

    return Gallery(path or default_gallery_path(), model_id(model), create=create)


_model_option = click.option(
    "--model",
    type=LOCATION,
    default=None,
    help="An encoder run, or `resemblyzer` (the optional pretrained human-voice encoder, "
    "`pip install whichvoice[pretrained]`) [default: the bundled encoder].",
)
_gallery_option = click.option(
    "--gallery",
    type=click.Path(path_type=Path),
    default=None,
    help="The gallery file [default: $WHICHVOICE_GALLERY or "
    "~/.local/share/whichvoice/gallery.sqlite].",
)


def _print_results(paths: list, results: list, as_json: bool, line) -> None:
    """One line (text or JSON) per file; an input that failed prints its error; exit 1 then."""
    failed = 0
    for path, r in zip(paths, results, strict=True):
        if isinstance(r, Exception):
            failed += 1
            error = {"path": str(path), "error": str(r)}
            click.echo(json.dumps(error) if as_json else f"{path}\terror: {r}")
        else:
            click.echo(json.dumps(r.to_dict()) if as_json else f"{path}\t{line(r)}")
    if failed:
        sys.exit(1)


@app.command("enroll")
@click.argument("name")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@_model_option
@_gallery_option
def enroll_cmd(
    name: str, files: tuple[Path, ...], model: Path | None, gallery: Path | None
) -> None:
    """Enroll NAME from FILES (adds to NAME when it is already enrolled)."""
    _setup_logging(True)
    from whichvoice.predict import expand_paths
    from whichvoice.verification import enroll

    encoder = _encoder(model)
    with _gallery(encoder, gallery, create=True) as g:
        voice, errors = enroll(encoder, g, name, expand_paths(files))
    for e in errors:
        click.echo(f"skipped: {e}", err=True)
    click.echo(f"enrolled {voice.name}: {voice.clips} clips, {voice.seconds:.1f} s of speech")


@app.command("verify")
@click.argument("name")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@_model_option
@_gallery_option
@click.option("--json", "as_json", is_flag=True)
def verify_cmd(
    name: str, files: tuple[Path, ...], model: Path | None, gallery: Path | None, as_json: bool
) -> None:
    """Is each of FILES the enrolled voice NAME? Exit 1 if a file could not be read."""
    _setup_logging(True)
    from whichvoice.predict import expand_paths
    from whichvoice.verification import verify

    encoder = _encoder(model)
    paths = expand_paths(files)
    with _gallery(encoder, gallery) as g:
        results = verify(encoder, g, name, paths)
    _print_results(
        paths,
        results,
        as_json,
        lambda r: (
            f"{'accept' if r.accept else 'reject'}\tscore {r.score:.3f}\tp {r.probability:.3f}"
        ),
    )


@app.command("identify")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@_model_option
@_gallery_option
@click.option("--json", "as_json", is_flag=True)
def identify_cmd(
    files: tuple[Path, ...], model: Path | None, gallery: Path | None, as_json: bool
) -> None:
    """Which enrolled voice is each of FILES ("unknown" when none is close enough)."""
    _setup_logging(True)
    from whichvoice.predict import expand_paths
    from whichvoice.verification import identify

    encoder = _encoder(model)
    paths = expand_paths(files)
    with _gallery(encoder, gallery) as g:
        results = identify(encoder, g, paths)
    _print_results(paths, results, as_json, lambda r: f"{r.voice}\tscore {r.score:.3f}")


@app.group("gallery")
def gallery_group() -> None:
    """List, remove, export and import enrolled voices."""


@gallery_group.command("list")
@_model_option
@_gallery_option
@click.option("--json", "as_json", is_flag=True)
def gallery_list_cmd(model: Path | None, gallery: Path | None, as_json: bool) -> None:
    """The enrolled voices."""
    with _gallery(_encoder(model), gallery) as g:
        for v in g.voices():
            s = v.summary()
            click.echo(
                json.dumps(s)
                if as_json
                else f"{s['name']}\t{s['clips']} clips\t{s['seconds']:.1f} s"
            )


@gallery_group.command("remove")
@click.argument("name")
@_model_option
@_gallery_option
def gallery_remove_cmd(name: str, model: Path | None, gallery: Path | None) -> None:
    """Forget NAME."""
    with _gallery(_encoder(model), gallery) as g:
        g.remove(name)
    click.echo(f"removed {name}")


@gallery_group.command("export")
@click.argument("file", type=LOCATION)
@_model_option
@_gallery_option
def gallery_export_cmd(file: Path | str, model: Path | None, gallery: Path | None) -> None:
    """Write every voice to FILE (JSON; a path or s3:// URL)."""
    from whichvoice.gallery import write_export

    with _gallery(_encoder(model), gallery) as g:
        data = g.export_json()
    write_export(file, data)
    click.echo(f"exported {len(data['voices'])} voices to {file}")


@gallery_group.command("import")
@click.argument("file", type=LOCATION)
@_model_option
@_gallery_option
def gallery_import_cmd(file: Path | str, model: Path | None, gallery: Path | None) -> None:
    """Add the voices of an export FILE (a path or s3:// URL)."""
    from whichvoice.gallery import read_export

    data = read_export(file)
    with _gallery(_encoder(model), gallery, create=True) as g:
        n = g.import_json(data)
    click.echo(f"imported {n} voices")


@app.command("calibrate")
@_model_option
@click.option(
    "--corpus", type=click.Path(path_type=Path), help="A corpus of voices not used in training."
)
@click.option(
    "--trials", type=click.Path(path_type=Path), help="Lines of enroll_paths|test_path|same(0/1)."
)
@click.option(
    "--target-far",
    type=click.FloatRange(0, 1),
    default=None,
    help="Set the threshold for this false-acceptance rate [default: the EER point].",
)
@click.option("--json", "as_json", is_flag=True)
def calibrate_cmd(
    model: Path | None,
    corpus: Path | None,
    trials: Path | None,
    target_far: float | None,
    as_json: bool,
) -> None:
    """Measure EER/minDCF on held-out voices; store the threshold and calibration in the run."""
    _setup_logging(True)
    from whichvoice.errors import WhichvoiceError
    from whichvoice.verification import (
        calibrate,
        calibration_dir,
        held_out_files,
        trials_from_list,
        voice_trials,
    )

    if (corpus is None) == (trials is None):
        raise WhichvoiceError("give exactly one of --corpus or --trials")
    encoder = _encoder(model)
    t = (
        voice_trials(encoder, held_out_files(corpus))
        if corpus
        else trials_from_list(encoder, trials)
    )
    dest = calibration_dir(encoder)
    result = calibrate(dest, t, target_far=target_far, source=str(corpus or trials))
    if as_json:
        click.echo(json.dumps(result))
    else:
        click.echo(
            f"EER {100 * result['eer']:.3f} %, minDCF(0.01) {result['min_dcf_0.01']:.4f}, "
            f"minDCF(0.05) {result['min_dcf_0.05']:.4f}, threshold {result['threshold']:.4f} "
            f"({result['target_trials']} target / {result['nontarget_trials']} non-target trials)"
            f"; saved in {dest / 'calibration.json'}"
        )


@app.group("recipe")
def recipe_group() -> None:
    """Reproducible recipes (corpus, training, calibration in one command)."""


@recipe_group.command("encoder")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Work folder.")
@click.option("--per-voice", type=click.IntRange(min=4), default=12, show_default=True)
@click.option(
    "--recorded-per-voice",
    type=click.IntRange(min=4),
    default=80,
    show_default=True,
    help="Sentences for each recorded (flite/festival) voice.",
)
@click.option(
    "--held-out-per-voice",
    type=click.IntRange(min=5),
    default=30,
    show_default=True,
    help="Sentences for each held-out voice (the calibration trials).",
)
@click.option(
    "--model",
    type=click.Choice(["voicenet-aam", "voicenet-aam-wide"]),
    default="voicenet-aam-wide",
    show_default=True,
    help="The embedding network to train.",
)
@click.option("--epochs", type=click.IntRange(min=1), default=50, show_default=True)
@click.option(
    "--target-far",
    type=click.FloatRange(0, 1),
    default=0.001,
    show_default=True,
    help="Set the threshold for this false-acceptance rate on the held-out trials.",
)
@click.option(
    "--max-variants",
    type=click.IntRange(min=2),
    default=None,
    help="Use only this many espeak-ng variants (a quick, smaller run).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--quiet", "-q", is_flag=True)
def recipe_encoder_cmd(
    out: Path,
    per_voice: int,
    recorded_per_voice: int,
    held_out_per_voice: int,
    model: str,
    epochs: int,
    target_far: float,
    max_variants: int | None,
    seed: int,
    quiet: bool,
) -> None:
    """Make a voice encoder: many-voice corpus, margin training, calibration on held-out voices."""
    _setup_train_logging(quiet)
    if not quiet:
        logging.getLogger("whichvoice.recipe").setLevel(logging.INFO)
        logging.getLogger("whichvoice.recipe").addHandler(logging.StreamHandler(sys.stdout))
        logging.getLogger("whichvoice.recipe").propagate = False
    from whichvoice.recipe import EncoderRecipe, encoder_recipe

    cfg = EncoderRecipe(
        per_voice=per_voice,
        recorded_per_voice=recorded_per_voice,
        held_out_per_voice=held_out_per_voice,
        model=model,
        epochs=epochs,
        target_far=target_far,
        seed=seed,
        max_variants=max_variants,
    )
    run = encoder_recipe(out, cfg, progress=not quiet)
    if not quiet:
        click.echo(f"encoder: {run} (calibration in {run / 'calibration.json'})")


def main() -> None:
    """Entry point of the console script: known errors -> one line, exit 2."""
    try:
        app(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as e:
        # one line, as for every other error: "error: <what>" (usage errors exit 2)
        click.echo(f"error: {e.format_message()}", err=True)
        sys.exit(e.exit_code)
    except WhichvoiceError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(EXIT_ERROR)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)

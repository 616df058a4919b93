"""The predict command: one file at a time, or a batch into a CSV/JSONL/Parquet file."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from whichvoice.cli.common import (
    LOCATION,
    OUTPUT,
    app,
    as_given,
    json_line,
    setup_logging,
    shown,
)
from whichvoice.errors import WhichvoiceError


@app.command("predict")
@click.argument("inputs", nargs=-1, type=LOCATION, metavar="[RUN] [PATHS]...")
@click.option(
    "--model",
    "model_run",
    type=LOCATION,
    default=None,
    help="The classifier: a trained run (or URL). A run may also come first among the "
    "arguments [default: the bundled classifier of the default8 voices].",
)
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
    help="Inputs with their voice: a path,voice CSV (voice `unknown`: none of the model's); "
    "adds true_voice and correct columns and prints the accuracy. Needs --output.",
)
@click.option(
    "--output",
    "-o",
    type=OUTPUT,
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
    "--retry-failed",
    is_flag=True,
    help="--resume, and identify again the inputs whose rows have an error (their rows are "
    "dropped; the new ones come last).",
)
@click.option(
    "--dask-scheduler",
    metavar="ADDRESS",
    help="Run on this Dask cluster (tcp://host:8786); its workers must see RUN and the audio.",
)
@click.option(
    "--backend",
    type=click.Choice(["torch", "onnx", "onnx-int8"]),
    default="torch",
    show_default=True,
    help="onnx: the network on onnxruntime; onnx-int8: quantised to int8 (RUN/model.int8.onnx, "
    "shipped with the bundled classifier; see `export --int8`).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar (only --output shows one).")
def predict_cmd(
    inputs: tuple[Path, ...],
    model_run: Path | None,
    as_json: bool,
    manifest: Path | None,
    labels_csv: Path | None,
    output: Path | None,
    workers: int,
    resume: bool,
    overwrite: bool,
    retry_failed: bool,
    dask_scheduler: str | None,
    backend: str,
    quiet: bool,
) -> None:
    """Which voice reads each file (files or folders, any length); exit 1 if any failed.

    The classifier is RUN when the first argument is a trained run (a folder with
    config.json), else --model, else the one bundled with whichvoice (the default8 voices).

    With --output: every input of PATHS, --manifest or --labels becomes a row of a CSV, JSONL
    or Parquet file, written as it goes with a progress bar; --resume completes the file after
    an interruption (inputs are matched by path, as the input spells it), and
    --retry-failed also tries again the inputs that failed.
    """
    setup_logging(True)
    run, paths = _split_run(
        inputs, model_run, listed=manifest is not None or labels_csv is not None
    )
    _check_options(
        paths,
        as_json,
        manifest,
        labels_csv,
        output,
        workers,
        (resume, retry_failed),
        overwrite,
        dask_scheduler,
        quiet,
    )
    if output is None:
        _print_predictions(run, paths, backend, as_json)
        return
    resume = resume or retry_failed
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
    from whichvoice.errors import OutputExistsError

    try:
        summary = predict_batch(
            run,
            inputs,
            output,
            workers=workers,
            resume=resume,
            overwrite=overwrite,
            retry_failed=retry_failed,
            backend=backend,
            dask_scheduler=dask_scheduler,
            progress=not quiet,
        )
    except OutputExistsError as e:  # in the options' words, not Python's keywords
        raise e.for_cli() from None
    click.echo(summary.line(), err=True)
    if summary.failed:
        sys.exit(1)


def _split_run(
    inputs: tuple, model_run: Path | str | None, *, listed: bool = False
) -> tuple[Path | str, tuple]:
    """(the classifier's run, the inputs): --model, else a run given first, else the
    bundled classifier. With the inputs ``listed`` (--manifest, --labels) an argument can
    only be the RUN, so it is taken as one (and a folder that is not a run says so)."""
    if inputs and str(inputs[0]).lower().rstrip("/").endswith(".onnx"):
        # it was one input that failed, the others answered by the bundled classifier
        raise click.UsageError(
            f"{inputs[0]}: an ONNX file is neither a run nor audio; a run scores with its "
            "ONNX export through `predict RUN --backend onnx` (or onnx-int8)"
        )
    if model_run is not None:
        if inputs and not listed and _is_run(inputs[0]):
            # both: which one was meant? (the run given first was read as an input)
            raise click.UsageError(
                f"{inputs[0]} is a run and --model names one too: give the run once"
            )
        return model_run, inputs
    if inputs and (listed or _is_run(inputs[0])):
        return inputs[0], inputs[1:]
    if inputs and _looks_like_a_missing_run(inputs[0]):
        # a mistyped run would otherwise be one failed input, the rest answered by the
        # bundled classifier: a complete-looking output from a model nobody asked for
        raise click.UsageError(
            f"{inputs[0]}: no such run or audio file (a run is a folder holding config.json)"
        )
    from whichvoice.runtime import bundled_classifier

    return bundled_classifier(), inputs


def _looks_like_a_missing_run(given: Path | str) -> bool:
    """A path or URL that does not exist and is not named like an audio file (a URL's
    prefix of audio files exists, and is an input)."""
    from whichvoice import storage
    from whichvoice.predict import AUDIO_SUFFIXES

    if str(given) == "-":  # standard input, an input
        return False
    if storage.is_url(given):
        text = str(given).rstrip("/")
        return Path(text).suffix.lower() not in AUDIO_SUFFIXES and not storage.exists(text)
    path = Path(given)
    return not path.exists() and path.suffix.lower() not in AUDIO_SUFFIXES


def _is_run(given: Path | str) -> bool:
    """A trained run's folder (or URL): it holds config.json."""
    from whichvoice import storage
    from whichvoice.predict import AUDIO_SUFFIXES

    if storage.is_url(given):
        text = str(given).rstrip("/")
        return Path(text).suffix.lower() not in AUDIO_SUFFIXES and storage.exists(
            storage.join(text, "config.json")
        )
    try:
        return Path(given).is_dir() and (Path(given) / "config.json").is_file()
    except OSError:  # a folder this user cannot list: not a run it can use (read as input)
        return False


def _check_options(
    paths: tuple[Path, ...],
    as_json: bool,
    manifest: Path | None,
    labels_csv: Path | None,
    output: Path | None,
    workers: int,
    resuming: tuple[bool, bool],
    overwrite: bool,
    dask_scheduler: str | None,
    quiet: bool,
) -> None:
    """UsageError for options that do not go together, before any work. ``resuming``:
    (--resume, --retry-failed) as given."""
    resume, retry_failed = resuming
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
            ("--retry-failed", retry_failed),
            ("--overwrite", overwrite),
            ("--dask-scheduler", dask_scheduler),
        )
        if value
    ]
    if output is None and file_only:
        raise click.UsageError(f"{file_only[0]} needs --output")
    if len(inputs_given) != 1:
        raise click.UsageError("give the inputs as one of PATHS, --manifest or --labels")
    if any(str(p) == "-" for p in paths):
        if (workers != 1 or dask_scheduler) and output is not None:
            raise click.UsageError(  # their processes read their own standard input: none
                "- (standard input) is read by this process: not with --workers or --dask-scheduler"
            )
        if sum(str(p) == "-" for p in paths) > 1:
            raise click.UsageError("- (standard input) can be read once: give it once")
    if output is not None:
        from whichvoice.files import same_file

        for name, given in (("--manifest", manifest), ("--labels", labels_csv)):
            # the output would replace the list it reads its inputs from
            if given is not None and same_file(output, given):
                raise click.UsageError(f"--output {output} is {name}'s file; give another output")
        if as_json:
            raise click.UsageError("--json prints; --output takes its format from its suffix")
        if (resume or retry_failed) and overwrite:
            flag = "--retry-failed" if retry_failed else "--resume"
            raise click.UsageError(f"{flag} or --overwrite, not both")
        if dask_scheduler and workers != 1:
            raise click.UsageError("--workers or --dask-scheduler (its workers), not both")


def _print_predictions(run: Path, paths: tuple[Path, ...], backend: str, as_json: bool) -> None:
    """One line per file on stdout (tab-separated, or JSON); exit 1 if any failed."""
    from whichvoice.predict import expand_paths
    from whichvoice.runtime import Prediction, load_model

    model = load_model(run, backend=backend).ready()
    files = expand_paths(paths)
    if not files:
        raise WhichvoiceError(f"no audio files in {', '.join(map(str, paths))}")
    failed = 0
    for path, result in zip(files, model.identify_many(files), strict=True):
        if isinstance(result, Prediction):
            if as_json:
                # the model that answered, so that a saved line says (a review)
                named = {"path": as_given(path), "model": model.model_id}
                click.echo(json_line(result.to_dict() | named))
            else:
                top = ", ".join(f"{v} {p:.3f}" for v, p in result.top[:3])
                answer = (
                    f"unknown\tnearest {result.voice} {result.confidence:.3f}, open-set score "
                    f"{result.openset_score:.3f} < {result.openset_threshold:.3f}"
                    if result.known is False
                    else f"{result.voice}\t{result.confidence:.3f}"
                )
                engine = (
                    f"\tengine {result.engine} {result.engine_confidence:.3f}"
                    if model.target != "engine" and result.engine is not None
                    else ""
                )
                if engine and result.engine_known is None:  # no head: not an engine answer
                    engine += " (the family of its likeliest voices)"
                click.echo(f"{shown(path)}\t{answer}\t[{top}]{engine}")
        else:
            failed += 1
            if as_json:
                click.echo(json_line({"path": as_given(path), "error": str(result)}))
            else:
                click.echo(f"{shown(path)}\terror: {shown(result)}")  # among the answers
    if failed:
        sys.exit(1)

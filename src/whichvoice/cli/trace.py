"""Source tracing: which engine family made a clip (``trace``), and fitting an engine head on a
corpus (``trace-fit``)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from whichvoice.cli.common import (
    LOCATION,
    FiniteRange,
    LocalOutput,
    LocalPath,
    answer_head,
    app,
    channel_option,
    json_line,
    on_channel,
    setup_logging,
    shown,
)
from whichvoice.errors import WhichvoiceError


def head_and_encoder(head_dir: Path | None, model: Path | None):
    """The engine head (``head_dir``, else the shipped one) and the encoder it reads: --model
    when given (checked against the head), else the one the head was fitted with."""
    from whichvoice.encoders import encoder_of_id, load_encoder
    from whichvoice.pretrained import EncoderUnavailableError
    from whichvoice.tracing import EngineHead, EngineHeadError, bind, shipped_head

    folder = head_dir if head_dir is not None else shipped_head()
    head = EngineHead.load(folder)
    try:
        encoder = load_encoder(model) if model is not None else encoder_of_id(head.encoder)
    except EncoderUnavailableError as e:
        if model is not None:
            raise
        # the user asked for no encoder: say that tracing needs the one the head reads (the
        # error names it: "the resemblyzer encoder needs ...")
        raise EncoderUnavailableError(f"tracing reads its embeddings: {e}") from e
    if encoder is None:
        raise EngineHeadError(
            f"{folder}: the engine head reads embeddings of {head.encoder}; pass --model "
            "with that encoder run"
        )
    return bind(head, encoder), encoder


@app.command("trace")
@click.argument("files", nargs=-1, required=True, type=LocalPath(path_type=Path, readable=False))
@click.option(
    "--head",
    "head_dir",
    type=LocalPath(path_type=Path),
    default=None,
    help="An engine head made by `whichvoice trace-fit` [default: the one shipped].",
)
@click.option(
    "--model",
    type=LOCATION,
    default=None,
    help="The encoder the head reads [default: the one it was fitted with, where that is a "
    "shipped encoder; a run's head needs --model RUN].",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per file.")
@channel_option
@click.option("--quiet", "-q", is_flag=True, help="No progress bar (one shows on a terminal only).")
def trace_cmd(
    files: tuple[Path, ...],
    head_dir: Path | None,
    model: Path | None,
    as_json: bool,
    channel: int | None,
    quiet: bool,
) -> None:
    """Which engine family made each of FILES (audio files, folders of them, or - for
    standard input): espeak-ng, piper, rhvoice, ..., or "unknown" when it is like none the
    head knows, with the nearest family beside it. Exit 1 when a file could not be read or
    holds no speech (music too: silero-vad is asked)."""
    setup_logging(True)
    from tqdm import tqdm

    from whichvoice.cli.gallery import _inputs
    from whichvoice.tracing import embed_and_trace
    from whichvoice.verification import model_id, progress_bar

    paths = _inputs(files)
    head, encoder = head_and_encoder(head_dir, model)
    failed = 0
    traced = embed_and_trace(encoder, head, on_channel(paths, channel), hear_speech=True)
    answers = progress_bar(traced, len(paths), "trace", not quiet)

    def echo(line: str) -> None:  # each answer as it comes, on a line of its own: the bar is
        with tqdm.external_write_mode(file=sys.stdout):  # cleared, then drawn again below it
            click.echo(line)

    for path, (r, a, _) in zip(paths, answers, strict=True):
        if isinstance(r, WhichvoiceError):
            failed += 1
            echo(json_line({**answer_head(path, channel), "error": str(r)})
                 if as_json else f"{shown(path)}\terror: {shown(r)}")  # fmt: skip
            continue
        if as_json:
            echo(json_line({**answer_head(path, channel), **a.to_dict(),
                            "encoder": model_id(encoder)}))  # fmt: skip
        elif a.known:  # no "p": the head's split among its families is not the chance of
            # being right (a person's clip took rhvoice at 0.996: a review)
            echo(f"{shown(path)}\t{a.engine}\tscore {a.score:.3f} >= "
                 f"threshold {head.threshold:.3f}")  # fmt: skip
        else:
            echo(f"{shown(path)}\tunknown\tnearest {a.nearest}\tscore {a.score:.3f} < "
                 f"threshold {head.threshold:.3f}")  # fmt: skip
    if failed:
        sys.exit(1)


@app.command("trace-fit")
@click.argument("corpus", type=LocalPath(path_type=Path))
@click.option("--out", type=LocalOutput(path_type=Path), required=True, help="The head's folder.")
@click.option(
    "--dev-corpus",
    type=LocalPath(path_type=Path),
    default=None,
    help="Clips for the threshold (voices the head is not fitted on) [default: a third of "
    "the voices of each family of 3 voices or more; of the others, each clip with a seeded "
    "1-in-5 chance].",
)
@click.option(
    "--model",
    type=LOCATION,
    default=None,
    help="The encoder whose embeddings the head reads: a shipped one or a trained run "
    "[default: the shipped head's; the bundled encoder where that one is not installed].",
)
@click.option(
    "--keep",
    type=FiniteRange(0.5, 1.0, max_open=True),
    default=None,
    help="Share of the dev clips of known families the threshold keeps [default: the "
    "shipped head's; with --model RUN, a run head's, as `train --target both` fits it].",
)
@click.option(
    "--score",
    type=click.Choice(["prototype", "energy"]),
    default=None,
    help="The open-set score [default: as --keep].",
)
@click.option(
    "--c",
    "c",
    type=FiniteRange(0.0, min_open=True),
    default=None,
    help="The regression's inverse regularisation: smaller carries better to voices the "
    "head never heard when each family has few training voices [default: as --keep; the "
    "shipped head's is the one benchmarks/trace.py chose on dev data].",
)
@click.option("--no-augment", is_flag=True, help="Fit on the clips as they are only.")
@click.option(
    "--fingerprint/--no-fingerprint",
    default=None,
    help="Read each clip's spectral fingerprint beside its embedding [default: as --keep; a "
    "run's head reads none, as `predict` measures none].",
)
@click.option("--overwrite", is_flag=True, help="Replace the head already in --out.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def trace_fit_cmd(
    corpus: Path,
    out: Path,
    overwrite: bool,
    dev_corpus: Path | None,
    model: Path | None,
    keep: float | None,
    score: str | None,
    c: float | None,
    no_augment: bool,
    fingerprint: bool | None,
    quiet: bool,
) -> None:
    """Fit an engine head on CORPUS (a corpus from `synth` or `import-corpus`): each clip's
    engine family comes from its voice (`festival:ked_diphone` -> festival-diphone). Clips
    that cannot be embedded are named and left out (exit 1; the head is still written)."""
    setup_logging(quiet)
    _check_head_out(out, overwrite)  # before any work
    from whichvoice.enginehead import RUN_HEAD, require_fit_packages
    from whichvoice.files import same_file
    from whichvoice.tracing import (
        corpus_clips,
        fit_from_clips,
        split_dev,
        trace_fit_encoder,
        trace_fit_settings,
    )

    # a run's own head (RUN/engine) is what predict answers with: it must read that run's
    # embedding and no fingerprint, else the run cannot be loaded until it is removed
    run = out.parent
    own = out.name == RUN_HEAD and (run / "config.json").is_file()
    if own and (model is None or not same_file(model, run)):
        raise click.UsageError(
            f"--out {out} is the run {run}'s own engine head, which must read that run's "
            f"embedding: give --model {run} (or another --out)"
        )
    if own and fingerprint:
        raise click.UsageError(
            f"--out {out} is the run {run}'s own engine head, which reads no spectral "
            "fingerprint (predict measures none): drop --fingerprint"
        )

    clips = corpus_clips(corpus)
    if dev_corpus is not None:
        train, dev = clips, corpus_clips(dev_corpus)
    else:
        train, dev = split_dev(clips)
    encoder = trace_fit_encoder(model)
    told = {"keep": keep, "score_kind": score, "c": c, "fingerprint": fingerprint}
    settings = trace_fit_settings(model) | {k: v for k, v in told.items() if v is not None}
    require_fit_packages(fingerprint=bool(settings.get("fingerprint")))  # before any work
    head = fit_from_clips(encoder, train, dev, augment=not no_augment, progress=not quiet,
                          **settings)  # fmt: skip
    head.save(out)
    counts = ", ".join(f"{f} {n}" for f, n in head.fitted["clips_per_family"].items())
    rule = head.fitted["threshold_rule"]
    reads = ", reads fingerprints" if head.reads_fingerprint else ""
    copies = " with their degraded copies" if head.fitted.get("augmented") else ""
    click.echo(f"engine head for {len(head.families)} families ({counts} training clips"
               f"{copies}), "
               f"threshold {head.threshold:.3f} ({rule}){reads} -> {out}")  # fmt: skip
    if left_out := head.fitted.get("left_out"):
        for why in left_out:
            click.echo(f"left out: {shown(why)}", err=True)
        click.echo(f"{len(left_out)} clip(s) left out", err=True)
        sys.exit(1)


def _check_head_out(out: Path, overwrite: bool) -> None:
    """``trace-fit --out``: a folder (or a name for one) this user can write, holding no head
    unless --overwrite replaces it."""
    from whichvoice.enginehead import ENGINE_JSON, ENGINE_WEIGHTS
    from whichvoice.files import probe_writable

    if out.exists() and not out.is_dir():
        raise click.UsageError(f"--out {out}: is a file; give a folder for the head")
    held = [n for n in (ENGINE_JSON, ENGINE_WEIGHTS) if (out / n).exists()]
    if held and not overwrite:
        raise click.UsageError(f"--out {out}: holds an engine head; --overwrite to replace it")
    existing = out
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise click.UsageError(f"--out {out}: {existing} is a file, not a folder")
    try:
        probe_writable(existing)
    except OSError as e:
        raise WhichvoiceError(
            f"{out}: cannot write the engine head here ({e.strerror or e})"
        ) from e

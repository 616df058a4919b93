"""The diarize command: who speaks when in each file, naming the enrolled voices."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import click

from whichvoice.cli.common import (
    EXIT_BROKEN_PIPE,
    OUTPUT,
    FiniteRange,
    LocalPath,
    answer_head,
    app,
    channel_option,
    check_output_file,
    gallery_option,
    json_line,
    on_channel,
    setup_logging,
    shown,
)
from whichvoice.cli.gallery import _gallery, _gallery_encoder, _inputs, _model_option
from whichvoice.errors import OutputLostError, WhichvoiceError
from whichvoice.storage import StorageError


@app.command("diarize")
@click.argument("files", nargs=-1, required=True, type=LocalPath(path_type=Path, readable=False))
@_model_option
@gallery_option
@click.option("--num-speakers", type=click.IntRange(min=1), default=None, help="Exactly N voices.")
@click.option(
    "--min-speakers", type=click.IntRange(min=1), default=None,
    help="At least A voices [default: 1].",
)  # fmt: skip
@click.option("--max-speakers", type=click.IntRange(min=1), default=None, help="At most B voices.")
@click.option(
    "--threshold",
    type=FiniteRange(0, 2, min_open=True, max_open=True),
    default=None,
    help="Clustering distance (1 - cosine) at which two groups of windows stop being one "
    "voice [default: calibrated for the encoder on dev conversations].",
)
@click.option(
    "--vad",
    type=click.Choice(["energy", "silero"]),
    default="energy",
    show_default=True,
    help="Speech detector: whichvoice's own (fast; music, laughter and applause are sound "
    "to it, and become voices), or silero-vad (speech alone; steadier in noise).",
)
@click.option(
    "--overlap/--no-overlap",
    default=None,
    help="Mark overlapped speech and give it both voices [default: the encoder's dev choice].",
)
@click.option("--rttm", type=OUTPUT, default=None, help="Also write every file's turns as RTTM.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per file.")
@channel_option
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def diarize_cmd(
    files: tuple[Path, ...],
    model: Path | None,
    gallery: Path | None,
    num_speakers: int | None,
    min_speakers: int | None,
    max_speakers: int | None,
    threshold: float | None,
    vad: str,
    overlap: bool | None,
    rttm: Path | None,
    as_json: bool,
    channel: int | None,
    quiet: bool,
) -> None:
    """Who speaks when in each of FILES: turns of each voice, named after the enrolled voice
    it matches (the gallery's, at the encoder's naming threshold: set on dev conversations,
    above the verification threshold), else unknown-1, unknown-2, ...

    Text: a line per turn, FILE START END SPEAKER SCORE (and "overlap" where two voices speak).
    Exit 1 when a file could not be read (the others are still answered)."""
    setup_logging(True)
    from tqdm import tqdm

    from whichvoice.diarize import DiarizeConfig, check_installed, diarize, rttm_uris, write_rttm
    from whichvoice.gallery import default_gallery_path

    # as over HTTP: a count given with a bound, even --min-speakers 1, is refused
    if num_speakers is not None and (min_speakers is not None or max_speakers is not None):
        raise click.UsageError("--num-speakers goes without --min-speakers and --max-speakers")
    if num_speakers is not None and threshold is not None:  # the count decides, not a distance
        raise click.UsageError("--num-speakers goes without --threshold")
    paths = _inputs(files)
    if gallery is not None and not Path(gallery).exists():  # a local path (LocalPath)
        raise WhichvoiceError(f"--gallery {gallery}: no such file")  # a typo names no one
    if rttm is not None:
        # before any work: an RTTM that cannot be written, or would replace an input or the
        # gallery, loses nothing
        check_output_file(rttm, [*paths, gallery or default_gallery_path()])
    encoder, opened = _encoder_and_gallery(model, gallery)
    cfg = DiarizeConfig(
        threshold=threshold,
        num_speakers=num_speakers,
        min_speakers=1 if min_speakers is None else min_speakers,
        max_speakers=max_speakers,
        vad=vad,
        overlap=overlap,  # None: the encoder's dev choice
    ).check()
    check_installed(cfg)  # before any work: one line, exit 2 (it was each file's error)
    # each input's recording id in the RTTM, which its JSON line names (`uri`): two inputs
    # of one stem get different ids, which nothing else would tell apart (a review)
    uris = rttm_uris(paths) if rttm is not None else None
    results, result_uris, failed = [], [], 0
    reader_gone = False

    def say(line: str) -> None:
        """One line out; a reader that went away (`| head`) stops the lines, not the work:
        the RTTM is still written."""
        nonlocal reader_gone
        if reader_gone:
            return
        try:
            click.echo(line)
        except BrokenPipeError:
            reader_gone = True
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())

    with opened as g:
        named = g if g is not None and g.voices() else None
        if g is not None and named is None and gallery is not None:
            click.echo(f"warning: {shown(gallery)}: no voices enrolled; no voice is named",
                       err=True)  # fmt: skip
        for i, path in enumerate(paths):
            bar = tqdm(total=None, unit="s", unit_scale=True, desc=Path(str(path)).name,
                       disable=True if quiet else None,  # None: on a terminal only
                       leave=False, file=sys.stderr)  # fmt: skip

            def progress(done: float, total: float, bar=bar) -> None:
                bar.total = round(total, 1)
                bar.n = round(done, 1)
                bar.refresh()

            try:
                [source] = on_channel([path], channel)
                result = diarize(source, encoder, gallery=named, config=cfg, progress=progress)
            except WhichvoiceError as e:
                failed += 1
                say(json_line({**answer_head(path, channel), "error": str(e)})
                    if as_json else f"{shown(path)}\terror: {shown(e)}")  # fmt: skip
                continue
            finally:
                bar.close()
            results.append(result)
            if uris is not None:
                result_uris.append(uris[i])
            if as_json:
                record = result.to_dict()
                del record["path"]  # as given (the result's says the channel)
                where = answer_head(path, channel)
                if uris is not None:  # after the path, as the RTTM names it
                    where["uri"] = uris[i]
                record = where | record
                say(json_line(record))
                continue
            if not result.segments:
                say(f"{shown(path)}\tno speech")
            for s in result.segments:
                say(f"{shown(path)}\t{s.start:.2f}\t{s.end:.2f}\t{s.speaker}\t{s.score:.3f}"
                           + ("\toverlap" if s.overlap else ""))  # fmt: skip
    if rttm is not None and not results:  # every file failed: an RTTM there is kept
        click.echo(f"warning: --rttm {shown(rttm)} not written: no file was diarized", err=True)
    elif rttm is not None:
        try:
            write_rttm(rttm, results, result_uris)
        except (OSError, StorageError) as e:
            # the work is done and its answers printed: lost, as predict's rows on a full
            # disk (exit 1), not a bad option (2)
            raise OutputLostError(f"{rttm}: cannot write the RTTM ({e})") from e
    if reader_gone:
        sys.exit(EXIT_BROKEN_PIPE)
    if failed:
        sys.exit(1)


def _encoder_and_gallery(model, gallery: Path | None):
    """The encoder and the gallery to name voices from (a context manager). The default
    gallery (no --gallery) made with another encoder than --model's names no one, with a
    warning: naming is optional here, where identify cannot answer without it."""
    from whichvoice.gallery import GalleryModelError
    from whichvoice.verification import load_encoder

    try:
        encoder = _gallery_encoder(model, gallery)
        return encoder, _gallery(encoder, gallery)
    except GalleryModelError as e:
        if gallery is not None:
            raise
        click.echo(
            f"warning: {e.public_message()} (the default gallery); the voices are "
            "not named (give --gallery G, one made with this encoder)",
            err=True,
        )
        return load_encoder(model), contextlib.nullcontext(None)

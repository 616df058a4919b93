"""Commands that make and prepare corpora: voices, synth, prepare."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from whichvoice.cli.common import (
    LOCATION,
    OUTPUT,
    FiniteRange,
    LocalOutput,
    app,
    check_new_file,
    end_stopped,
    feature_config,
    json_line,
    setup_logging,
    stopped,
)
from whichvoice.errors import WhichvoiceError
from whichvoice.text import counted

if TYPE_CHECKING:  # imported when used, to keep `whichvoice --help` fast
    from whichvoice.corpus import SynthSummary


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
            click.echo(json_line(row))
        return
    # voices of one engine missing for one reason are one line, not one each
    groups: dict[tuple[str, str], list] = {}
    for v in voices:
        if reasons[v.id] is not None:
            groups.setdefault((v.engine, reasons[v.id]), []).append(v)
    grouped = {v.id for members in groups.values() if len(members) >= GROUP_FROM for v in members}
    click.echo(f"{'id':34} {'gender':7} {'accent':19} {'rate':>6}  available")
    for v in voices:
        if v.id in grouped:
            continue
        status = "yes" if reasons[v.id] is None else f"no: {reasons[v.id]}"
        click.echo(
            f"{v.id:34} {v.gender or '-':7} {v.accent or '-':19} {v.sample_rate:>6}  {status}"
        )
    for (engine, reason), members in groups.items():
        if len(members) >= GROUP_FROM:
            click.echo(
                f"{f'{engine}: {len(members)} voices':34} {'':7} {'':19} {'':>6}  no: {reason} "
                f"(--json or --engine {engine} --json lists them)"
            )
    n_ok = sum(reasons[v.id] is None for v in voices)
    click.echo(f"{counted(len(voices), 'voice')}, {n_ok} available now", err=True)


def _report(summary, out, line, shown: int = 10) -> None:
    """A run's summary line, then its first ``shown`` failures (each by ``line``) on stderr;
    with ``line`` None, only where they are (each was warned of as it happened)."""
    from whichvoice.storage import join

    click.echo(f"{summary.line()} -> {join(out, 'manifest.jsonl')}")
    if line is None:
        if summary.failed:
            click.echo(f"  the failures are above and in {join(out, 'failures.jsonl')}", err=True)
        return
    for failure in summary.failed[:shown]:
        click.echo(line(failure), err=True)
    if len(summary.failed) > shown:
        click.echo(
            f"  ... and {len(summary.failed) - shown} more in {join(out, 'failures.jsonl')}",
            err=True,
        )


GROUP_FROM = 4  # unavailable voices of one engine and reason shown as one line from this many


def synthesize(
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
) -> SynthSummary:
    """Synthesize the corpus, report it unless ``quiet``, and return its SynthSummary (a run
    with failed clips returns too: `synth` exits 1 for it, `demo` goes on with the rest)."""
    from whichvoice.corpus import SynthConfig, default_workers, synthesize_corpus
    from whichvoice.sentences import load_sentences

    source = load_sentences(sentences, max_chars)
    if source.too_long:  # a sentence not spoken for its length is a warning, --quiet or not
        click.echo(
            f"warning: {counted(source.too_long, 'sentence')} over {max_chars} characters "
            "skipped (--max-chars)",
            err=True,
        )
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
        word, status = stopped()
        click.echo(f"{word}: {summary.line()}; run the same command again to resume", err=True)
        end_stopped(status)
    if not quiet:
        _report(summary, out, None)  # each failure was warned of as it happened
    return summary


@app.command("synth")
@click.argument("out", type=OUTPUT)
@click.option(
    "--voices",
    default="default8",
    show_default=True,
    help="A voice set (default8, mixed16, neural, talk8, espeak-all) or comma-separated ids.",
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
@click.option(
    "--text",
    default=None,
    help="Speak this one phrase instead of --sentences: into OUT as one file when OUT ends "
    "in .mp3 or .wav (--voices then names one voice), else as a corpus every voice reads.",
)
@click.option("--overwrite", is_flag=True, help="With --text into a file: replace it if it exists.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or summary.")
def synth_cmd(
    out: Path,
    voices: str,
    sentences: str,
    text: str | None,
    overwrite: bool,
    assign: str,
    per_voice: int,
    fmt: str,
    workers: int | None,
    seed: int,
    polly_engine: str,
    max_chars: int,
    quiet: bool,
) -> None:
    """Synthesize SENTENCES with VOICES into OUT (audio + manifest.jsonl); resumable. With
    --text, speak one phrase: `whichvoice synth hello.mp3 --text "Hello" --voices flite:slt`."""
    setup_logging(quiet)
    if text is not None:
        _refuse_with_text(click.get_current_context(), assign)
    elif assign != "sample" and _given(click.get_current_context(), "per_voice"):
        raise click.UsageError(f"--per-voice goes with --assign sample (not {assign})")
    from whichvoice.audio import AUDIO_SUFFIXES

    suffix = Path(str(out)).suffix.lower()
    if text is not None and len(text.strip()) > max_chars:  # as a sentence file's line is
        raise click.UsageError(
            f"--text is {len(text.strip())} characters, over --max-chars {max_chars}"
        )
    if text is not None and suffix in (".mp3", ".wav"):
        if _given(click.get_current_context(), "fmt") and f".{fmt}" != suffix:
            raise click.UsageError(
                f"--format {fmt}, but OUT ends in {suffix}: a file's suffix says its format"
            )
        check_new_file(out, "OUT", overwrite)  # before the engine runs
        _say_into(out, text, voices, polly_engine, quiet)
        return
    if overwrite:
        raise click.UsageError("--overwrite goes with --text into a .mp3 or .wav file")
    if suffix in AUDIO_SUFFIXES:  # a corpus folder named like a file is never what was meant
        why = ("one phrase goes into a .mp3 or .wav file" if text is not None
               else "it names a file: --text PHRASE speaks one into it")  # fmt: skip
        raise click.BadParameter(
            f"{why}; a corpus goes into a folder (a name without an audio extension)",
            param_hint="OUT",
        )
    if text is not None:
        sentences, assign = _phrase_file(text), "all"
    summary = synthesize(
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
    _exit_if_failed(summary, out, quiet)


def _exit_if_failed(summary, out, quiet: bool) -> None:
    """Exit 1 when clips or files failed (what could be made is kept; the reasons are in
    failures.jsonl), as predict does; under ``quiet`` the summary line goes to stderr."""
    if not summary.failed:
        return
    if quiet:
        from whichvoice.storage import join

        click.echo(f"{summary.line()}; the reasons: {join(out, 'failures.jsonl')}", err=True)
    sys.exit(1)


def _given(ctx: click.Context, name: str) -> bool:
    """Whether option ``name`` was given (on the command line or by the environment)."""
    from click.core import ParameterSource

    return ctx.get_parameter_source(name) not in (ParameterSource.DEFAULT, None)


def _refuse_with_text(ctx: click.Context, assign: str) -> None:
    """--text is the sentence: --sentences (and an --assign other than all, --per-voice)
    would be ignored, so they are refused."""
    given = [
        f"--{name.replace('_', '-')}"
        for name in ("sentences", "assign", "per_voice")
        if _given(ctx, name) and not (name == "assign" and assign == "all")
    ]
    if given:
        raise click.UsageError(
            f"--text takes the place of --sentences: every voice reads the phrase "
            f"(leave out {', '.join(given)})"
        )


def _say_into(out: Path | str, text: str, voices: str, polly_engine: str, quiet: bool) -> None:
    from whichvoice import storage
    from whichvoice.corpus import say

    fmt = Path(str(out)).suffix.lower()[1:]
    data = say(text, voices, fmt, polly_engine=polly_engine)
    if not storage.is_url(out):
        from whichvoice.files import ensure_dir

        ensure_dir(Path(out).parent, "file")  # checked before the engine ran, made now
    storage.write_bytes(out, data)
    if not quiet:
        click.echo(f"{voices}: {len(data)} bytes of {fmt} -> {out}")


def _phrase_file(text: str) -> str:
    """A one-line sentence file holding ``text`` (what --sentences reads), in a temporary
    folder removed at exit."""
    import atexit
    import shutil
    import tempfile

    if not text.strip():  # as into one file
        raise WhichvoiceError("nothing to say: the text is empty")
    if len(text.strip().splitlines()) != 1:
        raise WhichvoiceError("--text takes one phrase on one line")
    folder = Path(tempfile.mkdtemp(prefix="whichvoice-text-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    # the phrase's own bytes (a terminal's non-UTF-8 bytes come back as they were typed)
    (folder / "text.txt").write_bytes((text.strip() + "\n").encode("utf-8", "surrogateescape"))
    return str(folder / "text.txt")


@app.command("prepare")
@click.argument("corpus", type=LOCATION)
@click.argument("out", type=OUTPUT)
@click.option(
    "--features", type=click.Choice(["logmel", "seed-image"]), default="logmel", show_default=True
)
@click.option(
    "--window",
    type=FiniteRange(min=0.1),
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
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def prepare_cmd(
    corpus: Path, out: Path, features: str, window: float | None, seed: int, quiet: bool
) -> None:
    """Compute features of CORPUS into OUT, split 80/10/10 by voice and sentence."""
    setup_logging(quiet)
    from whichvoice.dataset import PrepareConfig, open_prepared, prepare

    cfg = PrepareConfig(features=feature_config(features, "voicenet", window), seed=seed)
    prepared = open_prepared(prepare(corpus, out, cfg, progress=not quiet))
    if not quiet:
        meta = json.loads((prepared.root / "dataset.json").read_text())  # the local mirror
        counts = ", ".join(
            f"{s}: {counted(c['clips'], 'clip')} / {counted(c['windows'], 'window')}"
            for s, c in meta["counts"].items()
        )
        click.echo(f"{counted(len(prepared.labels), 'voice')}; {counts} -> {out}")


@app.command("import-corpus")
@click.argument("source", type=click.Path(path_type=Path))
@click.argument("out", type=LocalOutput(path_type=Path))
@click.option(
    "--pattern",
    default=None,
    help="For a flat folder: a regular expression searched in each file name, with a "
    "(?P<speaker>...) group and optionally (?P<text>...), e.g. "
    r"'^(?P<text>\d)_(?P<speaker>[a-z]+)_'.",
)
@click.option(
    "--engine",
    default="human",
    show_default=True,
    help="The engine label of the imported voices (voice ids become ENGINE:speaker).",
)
@click.option(
    "--workers", type=click.IntRange(min=1), default=None, help="Parallel workers [default: cores]."
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or summary.")
def import_corpus_cmd(
    source: Path, out: Path, pattern: str | None, engine: str, workers: int | None, quiet: bool
) -> None:
    """Make a corpus of existing recordings (people, or any audio): SOURCE is a folder of
    <speaker>/<clips>, a flat folder with --pattern, or a CSV with columns path,voice[,text].
    The corpus has synth's layout and manifest, so prepare, train, evaluate and enroll take
    it as they take a synthesized one. Resumable."""
    setup_logging(quiet)
    from whichvoice.audio import MIN_SPEECH_S
    from whichvoice.corpus import default_workers
    from whichvoice.recordings import ImportConfig, import_recordings

    cfg = ImportConfig(engine=engine, pattern=pattern, workers=workers or default_workers())
    try:
        summary = import_recordings(source, out, cfg, progress=not quiet)
    except KeyboardInterrupt:  # what was imported is kept: say how to go on, as synth does
        word, status = stopped()
        click.echo(f"{word}: run the same command again to resume", err=True)
        end_stopped(status)
    if not quiet:
        _report(summary, out, lambda f: f"  failed: {f.reason}")
    if summary.little_speech:  # a warning, also when quiet: figures would differ without it
        first = ", ".join(summary.little_speech[:3])
        more = ", ..." if len(summary.little_speech) > 3 else ""
        n = len(summary.little_speech)
        click.echo(
            f"warning: {counted(n, 'recording')} {'holds' if n == 1 else 'hold'} under "
            f"{MIN_SPEECH_S:g} s of speech ({first}{more}): imported, and training may learn "
            f"from {'it' if n == 1 else 'them'}, but predict, evaluate, openset and the "
            f'server answer {"it" if n == 1 else "them"} "no speech found"',
            err=True,
        )
    if summary.same_audio:  # also when quiet: a copy counted twice inflates every figure
        n = len(summary.same_audio)
        copy, first = summary.same_audio[0]
        click.echo(
            f"warning: {counted(n, 'recording')} {'holds' if n == 1 else 'hold'} the same audio "
            f"as another (first: {copy} = {first}): imported, in the same split as it (its "
            "sentence), but counted twice in training and evaluation; remove the copies",
            err=True,
        )
    _exit_if_failed(summary, out, quiet)

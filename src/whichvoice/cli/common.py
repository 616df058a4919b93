"""What every command shares: the click group, exit codes, logging, option types."""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import click

from whichvoice.text import counted, spelled_all

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # as a shell reports a command that SIGPIPE stopped
EXIT_TERMINATED = 143  # as a shell reports a command that SIGTERM stopped

_terminated = False


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, ``timeout``, a job scheduler or container stopping the command),
    taken as Ctrl-C is: every ``with`` and ``finally`` runs, so outputs are closed whole and
    the command says what it kept and how to go on."""


def _on_sigterm(signum, frame) -> None:
    global _terminated
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second one stops it at once
    _terminated = True
    raise Terminated


def take_sigterm_as_interrupt() -> None:
    """SIGTERM raises ``Terminated`` in the main thread, unless something else handles it.
    Not under torchrun: a rank waits for its peers in native code (a barrier, a collective),
    where a Python handler never runs and would only swallow the signal; torchrun stops its
    ranks itself. Forked children (a ProcessPoolExecutor's workers) get the default back
    (``os.register_at_fork``): raising inside their queue's lock left the other workers,
    and the command, hanging."""
    if "LOCAL_RANK" in os.environ or "TORCHELASTIC_RUN_ID" in os.environ:
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _on_sigterm)
        os.register_at_fork(after_in_child=_default_sigterm)


def _default_sigterm() -> None:
    if signal.getsignal(signal.SIGTERM) is _on_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def stopped() -> tuple[str, int]:
    """How the command was stopped, in a word, and its exit status: ("terminated", 143) after
    a SIGTERM, else ("interrupted", 130), Ctrl-C's."""
    return ("terminated", EXIT_TERMINATED) if _terminated else ("interrupted", EXIT_INTERRUPTED)


def end_stopped(status: int) -> NoReturn:
    """End a command stopped by Ctrl-C or SIGTERM with ``status``, its lines said: the streams
    flushed, then out at once, without the interpreter's shutdown, which waits on threads still
    in native code (a decoder blocked on a named pipe that nobody writes held the command for
    ever, past SIGTERM: fuzzing) or aborts on them. Every ``with`` and ``finally`` of the
    command has run (outputs closed); a second Ctrl-C meanwhile is ignored. Called in a
    program that runs the commands itself (click's test runner, a notebook), it raises
    SystemExit as ``sys.exit`` does: that process is not ended."""
    import contextlib

    from whichvoice import _startup
    from whichvoice.cli.stderr import finish_filter

    if not _startup.started_as_the_command():
        sys.exit(status)

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    with contextlib.suppress(OSError, ValueError):
        finish_filter()  # what native code wrote to stderr, passed on
    os._exit(status)


class _LineFormatter(logging.Formatter):
    """``warning: ...``, as the commands' own warning lines read."""

    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {one_line(record.getMessage())}"


def setup_logging(quiet: bool) -> None:
    """Log lines on stderr: warnings and errors, ``quiet`` or not (``--quiet`` drops progress
    bars and summaries, never a warning: which encoder answers, a calibration resting on few
    trials, files left out of an import, a lock that cannot be taken all change what a
    script gets). Under ``quiet``, synth's line for each failed clip is left out: the run's
    summary line counts them and failures.jsonl keeps their reasons."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LineFormatter())
    # other libraries' warnings: errors only in the commands whose answers are their own lines
    # (called with ``quiet``), as before
    logging.basicConfig(level=logging.ERROR if quiet else logging.WARNING, handlers=[handler])
    # under torchrun, rank 0 alone warns: every rank would say the same, once each
    logging.getLogger("whichvoice").setLevel(logging.ERROR if torchrun_rank() else logging.WARNING)
    logging.getLogger("whichvoice.corpus.clips").setLevel(
        logging.ERROR if quiet else logging.NOTSET
    )


def torchrun_rank() -> int:
    """This process's rank under torchrun (its ``RANK``), 0 outside it."""
    rank = os.environ.get("RANK", "0")
    return int(rank) if rank.isdigit() and "LOCAL_RANK" in os.environ else 0


class GivenPath(type(Path())):  # type: ignore[misc]  # PosixPath (or WindowsPath)
    """A path that keeps the text it was given (``./a.wav``, ``d//x.wav``) for the answers to
    name it by (``as_given``): a Path folds those, and the answers' paths (text and
    ``--json``) did not match the inputs a script gave them to join on (a review). To
    everything else it is the Path (opened, compared, hashed as one; a copy, a child or a
    parent is a plain one)."""

    given: str | None = None


def given_path(text: str | os.PathLike) -> Path:
    """``text`` as a ``GivenPath`` that keeps it."""
    path = GivenPath(text)
    if isinstance(text, str) and text:
        path.given = text
    return path


def as_given(path: object) -> str:
    """How an answer names an input: the text it was given as (``GivenPath``), else ``str``."""
    given = getattr(path, "given", None)
    return given if isinstance(given, str) else str(path)


class _Location(click.ParamType):
    """A local path (a Path) or a URL such as s3://bucket/prefix (kept as a string: a Path
    would fold its '//')."""

    name = "path"

    def convert(self, value, param, ctx):
        if isinstance(value, Path):
            return value
        text = str(value)
        if text[:7].lower() == "file://":  # a local path spelled as a URL: the path itself
            return given_path(file_url_path(text, lambda why: self.fail(why, param, ctx)))
        if "://" in text:
            return value
        return given_path(value)


def file_url_path(url: str, fail: Callable[[str], Any]) -> str:
    """The local path a ``file://`` URL names (its bytes as the disk holds them, so a name that
    is not UTF-8 is the same file); ``fail(why)`` for another host's or for no path."""
    from urllib.parse import unquote_to_bytes, urlsplit

    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        fail(f"{url}: a file:// URL of another host ({parts.netloc})")
    path = os.fsdecode(unquote_to_bytes(parts.path))
    if not path:
        fail(f"{url}: a file:// URL with no path")
    return path


LOCATION = _Location()

NO_STDOUT = (
    "-: standard output cannot take this output; name a file or folder (./- for one named -)"
)


class _RefusesStdout:
    """A path type for an output: ``-`` is refused, not made a file or folder named "-" (a
    script's ``--rttm - | ...`` got nothing on the pipe and a stray file: review)."""

    def convert(self, value, param, ctx):
        if str(value) == "-":
            self.fail(NO_STDOUT, param, ctx)  # type: ignore[attr-defined]
        return super().convert(value, param, ctx)  # type: ignore[misc]


class _Output(_RefusesStdout, _Location):
    """An output's ``LOCATION``."""


OUTPUT = _Output()


class FiniteRange(click.FloatRange):
    """``click.FloatRange`` that also refuses ``nan`` and ``inf``: click lets them through
    (any comparison with nan is false), and a setting of nan seconds or megabytes would fail
    deep inside the command instead of at its option."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


class ReaderGone(Exception):
    """The reader of standard output went away (``| head``): raised in place of the
    BrokenPipeError, which click's own ``main`` would turn into exit status 1 (the status
    of a failed input) before ``cli.main`` could answer it with EXIT_BROKEN_PIPE."""


class _Commands(click.Group):
    def make_context(self, *args, **kwargs) -> click.Context:
        try:  # --help and --version print while the context is made
            return super().make_context(*args, **kwargs)
        except BrokenPipeError as e:
            raise ReaderGone() from e

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except BrokenPipeError as e:
            raise ReaderGone() from e


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="whichvoice")
def app() -> None:
    """Tell which voice is speaking: build TTS corpora, train, identify and verify voices."""


class LocalPath(click.Path):
    """``click.Path`` that refuses a URL (``s3://...``): where only a local path works, a URL
    made a local folder named ``s3:`` and the command said it had written to the bucket."""

    def convert(self, value, param, ctx):
        text = str(value)
        if text[:7].lower() == "file://":  # a URL of a local path: that path
            value = file_url_path(text, lambda why: self.fail(why, param, ctx))
        elif "://" in text:
            self.fail(f"{value}: a local path, not a URL, goes here", param, ctx)
        path = super().convert(value, param, ctx)
        # as given, not folded (``./a.wav`` stays so in the answers)
        return given_path(value) if isinstance(path, Path) and isinstance(value, str) else path


class LocalOutput(_RefusesStdout, LocalPath):
    """An output's ``LocalPath``: ``-`` refused, as ``OUTPUT`` refuses it."""


channel_option = click.option(
    "--channel",
    type=click.IntRange(1, 1024),  # as over HTTP
    default=None,
    metavar="N",
    help="Read channel N of each file alone (1: the first, left): a call recorded with a "
    "party on each channel [default: the channels mixed into one].",
)


def on_channel(paths: list, channel: int | None) -> list:
    """``paths`` as the sources to read: each one's ``channel`` alone where one is given."""
    from whichvoice.audio import Channel

    return list(paths) if channel is None else [Channel(p, channel) for p in paths]


def answer_head(path: object, channel: int | None) -> dict:
    """How a JSON answer begins: the input's ``path`` as given, then the ``channel`` read
    where ``--channel`` chose one."""
    return {"path": as_given(path), **({} if channel is None else {"channel": channel})}


gallery_option = click.option(
    "--gallery",
    type=LocalPath(path_type=Path),
    default=None,
    help="The gallery file [default: $WHICHVOICE_GALLERY or "
    "~/.local/share/whichvoice/gallery.sqlite].",
)


def setup_train_logging(quiet: bool) -> None:
    """Training's log: warnings on stderr whether ``quiet`` or not (one hidden said that a
    resumed run ignored the settings given with it), the epochs' progress on stdout unless
    ``quiet``."""
    setup_logging(False)
    if not quiet:
        # progress on stdout, warnings on stderr as every command's
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler.addFilter(lambda record: record.levelno < logging.WARNING)
        warnings = logging.StreamHandler(sys.stderr)
        warnings.setFormatter(_LineFormatter())
        warnings.setLevel(logging.WARNING)
        for name in ("whichvoice.train", "whichvoice.dataset"):
            lg = logging.getLogger(name)
            lg.setLevel(logging.INFO)
            lg.addHandler(handler)
            lg.addHandler(warnings)
            lg.propagate = False


def check_new_file(path: Path | str, option: str, overwrite: bool) -> None:
    """Before any work: a local output file that exists is replaced only with --overwrite (a
    folder never), and its folder must be writable or makeable (UsageError or OutputError,
    one line). Nothing is made: the command makes the folder when it writes the file."""
    from whichvoice import storage
    from whichvoice.errors import OutputError
    from whichvoice.files import check_creatable, output_target

    if storage.is_url(path):
        try:
            storage.check_object(path)  # an object's name: not a folder's
        except storage.StorageError as e:
            raise click.UsageError(f"{option} {e}") from e
        if not overwrite and storage.exists(path):
            raise click.UsageError(f"{option} {path}: exists; --overwrite to replace it")
        return
    try:  # a link: the file it points to is the output (its folder must be writable)
        target = output_target(path)
    except OutputError as e:
        raise click.UsageError(f"{option} {e}") from e
    if target.is_dir():
        raise click.UsageError(f"{option} {path}: is a folder; give a file name")
    if target.exists() and not overwrite:
        raise click.UsageError(f"{option} {path}: exists; --overwrite to replace it")
    check_creatable(target.parent, "file")


def feature_config(features: str | None, model: str, window: float | None):
    from whichvoice.features import FeatureConfig
    from whichvoice.models import model_spec

    name = features or model_spec(model).features
    return FeatureConfig(name=name, **({"window_s": window} if window else {}))


MODEL_NAMES = [  # talk-cnn's alias seed included
    "voicenet",
    "talk-cnn",
    "seed",
    "voicenet-aam",
    "voicenet-aam-wide",
    "voicenet-aam-wide-x2",
    "voicenet-64",
    "voicenet-48",
    "voicenet-32",
]


def model_choice() -> click.Choice:
    # the registry's names (models.model_names(); a test keeps them equal), without
    # importing torch for --help
    return click.Choice(MODEL_NAMES)


def print_table(metrics: dict) -> None:
    from whichvoice.evaluate import figure

    click.echo(f"{'voice':34} {'support':>7} {'acc':>7} {'prec':>7} {'recall':>7} {'F1':>7}")
    for r in metrics["per_voice"]:
        cells = " ".join(figure(r[k], 7) for k in ("accuracy", "precision", "recall", "f1"))
        click.echo(f"{r['voice']:34} {r['support']:>7} {cells}")
    lo, hi = metrics.get("file_accuracy_ci95", (float("nan"), float("nan")))
    click.echo(
        f"file-level accuracy {metrics['file_accuracy']:.4f} [95 % interval {lo:.4f}, {hi:.4f}] "
        f"on {counted(metrics['files'], 'file')} (window-level {metrics['window_accuracy']:.4f} on "
        f"{counted(metrics['windows'], 'window')})"
    )


# what would end a line or a field: escaped (str.splitlines breaks at each of these)
_CONTROL = {ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"} | {
    c: f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"
    for c in (0x0B, 0x0C, 0x1C, 0x1D, 0x1E, 0x85, 0x2028, 0x2029)
}


def json_line(obj: object) -> str:
    """One ``--json`` line: a file name that is not UTF-8 written with its bytes as ``\\xNN``,
    as an output file's rows write it (JSON holds no such bytes; Python's surrogates for them
    are no Unicode that jq or another reader can take)."""
    return json.dumps(spelled_all(obj))


def one_line(text: str) -> str:
    """A message as one line of standard error: a newline, return or tab in a file name it
    quotes escaped, and a name's bytes that are not UTF-8 as ``\\xNN`` (a decoder's warning of
    such a name was two lines with ``\\udcfe`` in it: fuzzing)."""
    from whichvoice.text import spelled

    try:
        text = spelled(text)
    except UnicodeEncodeError:  # a lone surrogate no file name makes
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text.translate(_CONTROL)


def shown(path: object) -> str:
    """A file's name as a text line shows it: a newline, return or tab in it escaped, so that
    each input stays one line of tab-separated fields (``--json`` keeps the name as it is)."""
    return as_given(path).translate(_CONTROL)


def check_output_file(path: Path | str, keep: list, option: str = "--rttm") -> None:
    """WhichvoiceError when ``path`` (local) is a folder or another file than a regular one (a
    device, a pipe), is one of ``keep`` (the inputs, the gallery: the RTTM would replace it),
    or its folder does not exist or cannot be written; for a URL, when its kind of location is
    unknown or cannot be reached (no credentials, say): all before any work. ``option``: how
    the errors name the output."""
    from whichvoice import storage
    from whichvoice.errors import OutputError, WhichvoiceError
    from whichvoice.files import check_target, output_target, probe_writable, same_file
    from whichvoice.storage import StorageError

    if storage.is_url(path):
        try:
            storage.check_object(path)  # an object's name: not a folder's
            storage.exists(path)  # the protocol is known and the store answers
        except StorageError as e:
            raise WhichvoiceError(f"{option} {e}") from e
        return
    try:  # a link: the file it points to is the RTTM (checked as if given)
        path = output_target(path)
        if path.is_dir():
            raise WhichvoiceError(f"{option} {path}: is a folder; give a file name")
        check_target(path)
    except OutputError as e:
        raise WhichvoiceError(f"{option} {e}") from e
    if not path.parent.is_dir():
        if path.parent.exists():  # it said "no folder" of a file (a review)
            raise WhichvoiceError(f"{option} {path}: {path.parent} is a file, not a folder")
        raise WhichvoiceError(f"{option} {path}: no folder {path.parent} to write it in")
    for other in keep:  # local paths: inputs and galleries refuse URLs
        if same_file(path, other):
            raise WhichvoiceError(
                f"{option} {path}: is {shown(other)}, which this command reads; "
                "give another file name"
            )
    try:
        probe_writable(path.parent)
    except OSError as e:
        raise WhichvoiceError(
            f"{option} {path}: cannot write in {path.parent} ({e.strerror or e})"
        ) from e

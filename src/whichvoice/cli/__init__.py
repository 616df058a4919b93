"""The ``whichvoice`` command: each command parses, calls the library, formats.

Heavy modules are imported inside the commands that need them, so ``--help`` stays instant.
Known errors become one line on stderr and exit status 2. Each module adds its commands to
``app`` when it is imported.
"""

from __future__ import annotations

import codecs
import contextlib
import errno
import itertools
import os
import signal
import sys
from typing import NoReturn

import click

# importing a command module adds its commands to app
from whichvoice.cli import corpus, diarize, gallery, jobs, predict, serve, trace, train  # noqa: F401
from whichvoice.cli.common import (
    EXIT_BROKEN_PIPE,
    EXIT_ERROR,
    ReaderGone,
    app,
    end_stopped,
    one_line,
    stopped,
    take_sigterm_as_interrupt,
    torchrun_rank,
)
from whichvoice.cli.stderr import filter_native_noise
from whichvoice.errors import WhichvoiceError

__all__ = ["app", "main", "os_error_line"]


def os_error_line(e: OSError) -> str:
    """An OSError as one line: the path(s) and the system's reason."""
    reason = e.strerror or str(e) or type(e).__name__
    if isinstance(e, FileExistsError) and e.filename and not os.path.isdir(e.filename):
        reason = "a file is in the way of a folder"
    paths = [str(p) for p in (e.filename, e.filename2) if p is not None]
    return f"{' -> '.join(paths)}: {reason}" if paths else reason


def _stdout_spells_what_it_cannot_encode() -> None:
    """Under a locale whose encoding lacks a character (Latin-1 and a voice named 李明, the
    dash of an undefined figure), output wrote a traceback and exit 1 after the work was
    done (a gallery import already committed): the character is written ``\\uXXXX`` instead,
    as stderr writes it."""
    with contextlib.suppress(AttributeError, ValueError, OSError, LookupError):
        if sys.stdout.errors in ("strict", "surrogateescape"):
            # a name's own bytes go out as bytes where the encoding is ASCII's superset
            # (UTF-16 or EBCDIC would take them for other characters): else escaped
            ascii_based = "name: Zo".encode(sys.stdout.encoding) == b"name: Zo"
            codecs.register_error("whichvoice-stdout", _spelled_out)
            errors = "whichvoice-stdout" if ascii_based else "backslashreplace"
            sys.stdout.reconfigure(errors=errors)


def _spelled_out(e: UnicodeError) -> tuple[bytes, int]:
    """A character stdout's encoding lacks, written ``\\uXXXX``; a file name's byte that
    is not UTF-8 (held as a surrogate), written as that byte, as surrogateescape writes it."""
    if not isinstance(e, UnicodeEncodeError):
        raise e
    out = b"".join(
        bytes([ord(c) - 0xDC00]) if 0xDC80 <= ord(c) <= 0xDCFF
        else c.encode("ascii", "backslashreplace")
        for c in e.object[e.start : e.end]
    )  # fmt: skip
    return out, e.end


def main() -> None:
    """Entry point of the console script: known errors -> one line, exit 2."""
    from whichvoice import _startup

    _startup.give_back()  # the imports are done
    _stdout_spells_what_it_cannot_encode()
    filter_native_noise()
    take_sigterm_as_interrupt()
    try:
        app(standalone_mode=False)
    except click.exceptions.Abort:
        _interrupted()
    except getattr(click.exceptions, "NoArgsIsHelpError", ()) as e:  # (click 8.2 on)
        # `whichvoice` or `whichvoice gallery` alone: the help asked for by typing nothing,
        # not an error line followed by the whole help (a CLI review)
        click.echo(e.format_message(), err=True)
        sys.exit(e.exit_code)
    except click.ClickException as e:
        # one line, as for every other error: "error: <what>" (usage errors exit 2)
        click.echo(f"error: {one_line(e.format_message())}", err=True)
        sys.exit(e.exit_code)
    except WhichvoiceError as e:
        # under torchrun every rank meets the same error: rank 0 says it, the others say
        # whose it is (one of them may be alone in meeting it)
        rank = torchrun_rank()
        named = not rank or str(e).startswith(f"rank {rank}: ")  # the error says whose
        click.echo(f"error: {'' if named else f'rank {rank}: '}{one_line(str(e))}", err=True)
        sys.exit(e.exit_status)
    except (ReaderGone, BrokenPipeError):  # the reader went away (`| head`): nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(EXIT_BROKEN_PIPE)
    except OSError as e:  # a path that cannot be written or read: the path and why
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            # no room: the work's output is lost, as under every command's own check (exit
            # 1), not a bad argument (2); no path given: it was standard output (a review)
            line = os_error_line(e) if e.filename else f"the output: {os_error_line(e)}"
            # (a file written through write_atomic is named: only standard output is not)
            click.echo(f"error: {line}: free some space and run it again", err=True)
            sys.exit(1)
        click.echo(f"error: {os_error_line(e)}", err=True)
        sys.exit(EXIT_ERROR)
    except MemoryError:  # one line, as every other error (a review under `ulimit -v`)
        click.echo("error: out of memory: give it fewer or shorter files at a time, or "
                   "more memory", err=True)  # fmt: skip
        sys.exit(1)
    except RuntimeError as e:
        if "can't allocate memory" in str(e) or "out of memory" in str(e).lower():
            # torch's allocator says it so (a RuntimeError, not a MemoryError: a review)
            click.echo("error: out of memory: give it fewer or shorter files at a time, or "
                       "more memory", err=True)  # fmt: skip
            sys.exit(1)
        if "can't start new thread" not in str(e):
            raise
        click.echo("error: cannot start a thread (out of memory, or a limit on processes "
                   "or threads): give it more memory, or raise the limit", err=True)  # fmt: skip
        sys.exit(1)
    except KeyboardInterrupt:
        _interrupted()


# what an interrupted command kept, and how to go on from it (synth and import-corpus say so
# themselves, with their counts)
_GO_ON = {
    "train": "the last finished epoch is kept: the same command with --resume goes on",
    "predict": "with --output, the rows written are kept: the same command with --resume goes on",
    "prepare": "nothing was kept: run it again",
    "evaluate": "no report was written: run it again",
    "diarize": "no RTTM was written (it is written once every file is done): run it again",
    "demo": "the clips made are kept: the same command goes on from them (training starts again)",
}


def _how_to_go_on(args: list[str]) -> str:
    command = next((a for a in args if not a.startswith("-")), "")
    if command == "train":
        return f": {_train_go_on(args)}"
    if command == "predict" and not any(a in ("-o", "--output") or a.startswith("--output=")
                                        for a in args):  # fmt: skip
        return ""
    if command == "diarize" and not any(a == "--rttm" or a.startswith("--rttm=") for a in args):
        return ""  # the turns printed are all it makes
    if command == "predict" and "--overwrite" in args:
        kept = (
            ""
            if any("://" in a for a in args)  # a store's object is replaced when uploaded
            else "; the output it replaces waits beside it as .NAME.previous until a run "
            "completes (put back if no row was written)"
        )
        return (
            ": with --output, the rows written are kept: the same command with --resume in "
            f"place of --overwrite goes on{kept}"
        )
    return f": {_GO_ON[command]}" if command in _GO_ON else ""


def _train_go_on(args: list[str]) -> str:
    """How to go on from ``train ARGS`` interrupted: --resume where its --out holds a
    checkpoint (or cannot be looked at: a URL); else run it again, with --overwrite where the
    run's first files are there (no epoch had finished)."""
    from whichvoice import storage
    from whichvoice.train.config import CHECKPOINT, held_run

    out = next((b for a, b in itertools.pairwise(args) if a == "--out"), None)
    out = out or next((a.split("=", 1)[1] for a in args if a.startswith("--out=")), None)
    if out is None or storage.is_url(out) or os.path.isfile(os.path.join(out, CHECKPOINT)):
        return _GO_ON["train"]
    again = "the same command with --overwrite" if held_run(out) else "the same command"
    return f"no epoch had finished, so nothing is kept: run {again}"


def _interrupted() -> NoReturn:
    """Ctrl-C (or SIGTERM): one line and exit 130 (143), now. Every ``with`` and ``finally``
    of the command has run (outputs closed, workers stopped); what is left is the
    interpreter's own shutdown, which a second Ctrl-C interrupts into a traceback, and which
    waits on threads still in native code (a decoder, the network) or aborts on them: it is
    skipped."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    word, status = stopped()
    rank = torchrun_rank()
    click.echo(f"{f'rank {rank}: ' if rank else ''}{word}{_how_to_go_on(sys.argv[1:])}", err=True)
    end_stopped(status)

"""Ctrl-C or SIGTERM while the ``whichvoice`` command imports its modules (half a second on a
busy machine) is its one line and exit status, not a traceback of the imports. Imported first
by the package; only the standard library here. ``cli.main`` gives both signals back."""

from __future__ import annotations

# the C module: ``signal`` imports enum first, milliseconds in which Ctrl-C was a traceback
import _signal as signal
import os
import sys


def started_as_the_command() -> bool:
    """Whether this process is the ``whichvoice`` command (the console script, or
    ``python -m whichvoice``), not a program that imports the library. Read from the
    interpreter's own arguments: a process spawned by multiprocessing (a batch worker, a
    server worker) is given the parent's ``sys.argv`` but runs ``-c ...``, and no ``main``
    there would give the signals back."""
    argv = list(getattr(sys, "orig_argv", []))[1:]
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "-m":
            return argv[i + 1 : i + 2] == ["whichvoice"]
        if arg == "-c":
            return False
        if not arg.startswith("-"):  # the script: the console script's file
            return os.path.basename(arg) == "whichvoice"
        # an option's value is no script (`python -X dev -m whichvoice`: a code review)
        i += 2 if arg in ("-X", "-W", "--check-hash-based-pycs") else 1
    return False


def stopped_while_starting(signum: int, frame: object) -> None:
    interrupted = signum == signal.SIGINT
    os.write(2, b"interrupted\n" if interrupted else b"terminated\n")
    os._exit(130 if interrupted else 143)


def give_back() -> None:
    """The signals' usual handling, once the command's modules are imported."""
    for signum, usual in ((signal.SIGINT, signal.default_int_handler),
                          (signal.SIGTERM, signal.SIG_DFL)):  # fmt: skip
        if signal.getsignal(signum) is stopped_while_starting:
            signal.signal(signum, usual)


if started_as_the_command():
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, stopped_while_starting)
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, stopped_while_starting)

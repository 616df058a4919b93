"""The bottom floor: atomic writes, output folders, and where whichvoice keeps the user's data
and its caches. Imports nothing of the package but its errors."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

from whichvoice.errors import OutputError

log = logging.getLogger(__name__)


def write_atomic(path: Path, data: bytes | memoryview, *, durable: bool = True) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename.

    A reader never sees a half-written file, whatever happens to this process. ``durable``
    also fsyncs, so the file survives a power cut (callers that verify files on resume skip it).
    The file gets the usual mode (0666 less the umask, applied by the kernel at creation):
    the process-wide umask is never changed, since other threads may be creating files.
    """
    path = output_target(path)
    check_target(path)
    make_dirs(path.parent)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    if len(os.fsencode(tmp.name)) > 255:  # a long name (the most a name may be) -> a short one
        tmp = path.with_name(f".{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if e.filename is None:  # a write through a file object names no file: this one does
            raise OSError(e.errno, e.strerror or str(e), str(path)) from e
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def output_target(path: str | os.PathLike) -> Path:
    """The file an output at ``path`` is to be: ``path`` itself, or for a symbolic link the
    file it points to, resolved as the kernel does (a rename over the link would replace the
    link, and leave what it points to as it was). OutputError for a path in /proc or /dev, or
    a link into them (``/dev/stdout``, ``/dev/fd/1``, a file descriptor: the file behind it may
    be this process's own output), but /dev/shm."""
    path = Path(path)
    # not normalised: a `..` after a linked folder is resolved from where the link leads
    hop, hops = os.path.join(os.getcwd(), path), 0
    while True:
        # the folder resolved, the name as it is: where this hop would be written
        hop = os.path.join(os.path.realpath(os.path.dirname(hop)), os.path.basename(hop))
        if hop.startswith(("/proc/", "/dev/")) and not hop.startswith("/dev/shm/"):
            shown = path if hops == 0 else f"{path} (a link to {hop})"
            raise OutputError(f"{shown}: not a file to write to; give a file's path")
        if not os.path.islink(hop):
            return path if hops == 0 else Path(hop)
        hops += 1
        if hops > 40:
            raise OutputError(f"{path}: a loop of symbolic links; give a file's path to write to")
        hop = os.path.join(os.path.dirname(hop), os.readlink(hop))  # an absolute link: itself


def check_target(path: Path) -> None:
    """OutputError when ``path`` exists and is not a regular file (a folder, a device such as
    /dev/full, a pipe): a rename over it would replace it rather than write into it."""
    try:
        mode = os.stat(path).st_mode
    except OSError:  # absent, or unreachable: the write itself says why
        return
    if not stat.S_ISREG(mode):
        raise OutputError(f"{path}: not a regular file; give a file's path to write to")


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two local paths name one existing file (a URL, or a path to nothing: never):
    what an output checks against the inputs it would replace."""
    if "://" in os.fspath(a) or "://" in os.fspath(b):
        return False
    try:
        return Path(a).samefile(b)
    except OSError:
        return False


def write_json(path: Path, obj: dict) -> None:
    """``obj`` as indented JSON, written atomically."""
    write_atomic(path, (json.dumps(obj, indent=2) + "\n").encode())


def probe_writable(folder: Path) -> None:
    """OSError unless this process can create a file in ``folder`` (an existing folder): the
    permission bits do not say it for root, nor for a read-only mount or /proc."""
    probe = folder / f".whichvoice-write-test-{os.getpid()}"
    probe.write_bytes(b"")
    probe.unlink()


def ensure_dir(path: Path, what: str = "output") -> Path:
    """Create ``path`` (a folder) or raise OutputError in one line, before any long work."""
    try:
        make_dirs(path)
        probe_writable(path)
    except OSError as e:
        raise OutputError(f"{path}: cannot write the {what} here ({e.strerror or e})") from e
    return path


def check_creatable(path: Path, what: str = "output") -> None:
    """OutputError in one line unless folder ``path`` exists and is writable, or could be
    made: its nearest existing ancestor is a writable folder. Nothing is created (a command
    that then fails leaves no empty folders behind); ``ensure_dir`` makes it when writing."""
    ancestor = path
    while not os.path.lexists(ancestor) and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    try:
        if ancestor.is_symlink() and not ancestor.exists():  # dangling, or a loop
            raise FileExistsError(17, "a link to nothing is in the way of a folder", str(ancestor))
        if not ancestor.is_dir():
            raise NotADirectoryError(20, "a file is in the way of a folder", str(ancestor))
        probe_writable(ancestor)
    except OSError as e:
        raise OutputError(f"{path}: cannot write the {what} here ({e.strerror or e})") from e


def _xdg(variable: str) -> str | None:
    """An XDG base folder's variable, when it is an absolute path: the specification has a
    relative one ignored (it made the gallery depend on the folder a command ran in)."""
    value = os.environ.get(variable)
    return value if value and os.path.isabs(value) else None


NO_HOME = Path("/nonexistent")  # Debian's home for users without one


def home() -> Path:
    """The user's home: ``$HOME`` (an absolute one), else the password database's. A process
    with neither (a container run as a user id without an entry, its environment cleared)
    gets ``/nonexistent``, as Debian gives users without a home, so that what whichvoice
    keeps there is refused or made in a private temporary folder, as for a home that cannot
    be written (every command that loaded a model was a traceback: "Could not determine
    home directory"; and ``~`` stayed a relative folder named "~")."""
    value = os.environ.get("HOME")
    if value and os.path.isabs(value):
        return Path(value)
    try:
        import pwd

        return Path(pwd.getpwuid(os.getuid()).pw_dir or NO_HOME)
    except (ImportError, KeyError):
        return NO_HOME


def make_dirs(path: str | os.PathLike) -> None:
    """``path.mkdir(parents=True, exist_ok=True)``, except that whichvoice's own folders
    (``data_home``, ``cache_home``), when this makes them, are made 0700 as the XDG
    specification asks: the default gallery holds voice embeddings, and at the usual umask
    022 every user of a shared machine could read it (review)."""
    if os.path.isdir(path):  # the usual case (every write_atomic asks): nothing to make
        return
    path = Path(os.path.realpath(path))  # a resolved path (serve's gallery) is theirs too
    for own in (Path(os.path.realpath(data_home())), Path(os.path.realpath(cache_home()))):
        if (path == own or own in path.parents) and not own.exists():
            own.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                own.mkdir(mode=0o700)
    path.mkdir(parents=True, exist_ok=True)


def home_where_needed() -> None:
    """Give a process without a home (no ``$HOME``, a user id without a passwd entry: a
    container's) ``HOME=/nonexistent``, as Debian gives users without one: librosa's import
    (pooch, platformdirs) raised "could not determine the home directory", and every
    command that loads resemblyzer failed with it; with a home that cannot be written, the
    libraries and whichvoice fall back as they do for any such home. Called at import."""
    if home() == NO_HOME and os.environ.get("HOME") != os.fspath(NO_HOME):
        os.environ["HOME"] = os.fspath(NO_HOME)


def matplotlib_config_where_needed() -> None:
    """Point matplotlib's config and cache (``MPLCONFIGDIR``) at a private temporary folder,
    removed at exit, when its usual one (``$XDG_CONFIG_HOME/matplotlib``,
    ``~/.config/matplotlib``) cannot be made or written: matplotlib makes one itself, but
    every command that drew a plot (calibrate's DET, evaluate's confusion matrix) printed two
    lines, "mkdir -p failed ... Matplotlib created a temporary cache directory" (review).
    A value the user set is kept; nothing is made unless it is needed."""
    import sys

    if "MPLCONFIGDIR" in os.environ or "matplotlib" in sys.modules:
        return
    where = Path(_xdg("XDG_CONFIG_HOME") or home() / ".config") / "matplotlib"
    ancestor = where
    while not os.path.lexists(ancestor) and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if ancestor.is_dir() and os.access(ancestor, os.W_OK | os.X_OK):
        return
    with contextlib.suppress(OSError):
        os.environ["MPLCONFIGDIR"] = os.fspath(private_temp_folder("whichvoice-matplotlib-"))


def data_home() -> Path:
    """whichvoice's folder for the user's own data: ``$XDG_DATA_HOME/whichvoice``
    (``~/.local/share/whichvoice``)."""
    base = Path(_xdg("XDG_DATA_HOME") or home() / ".local" / "share")
    return base / "whichvoice"


def cache_home() -> Path:
    """whichvoice's cache: ``$WHICHVOICE_CACHE`` (an absolute one: a relative value is
    ignored, as a relative XDG one is: it put numba's pickled index in whatever folder a
    command ran in), else ``$XDG_CACHE_HOME/whichvoice`` (``~/.cache/whichvoice``)."""
    return Path(
        _xdg("WHICHVOICE_CACHE") or Path(_xdg("XDG_CACHE_HOME") or home() / ".cache") / "whichvoice"
    )


def private_temp_folder(prefix: str) -> Path:
    """A new folder only this user can read, in the system's temp folder, removed when the
    process exits (OSError when none can be made)."""
    import atexit
    import shutil
    import tempfile

    where = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, where, True)
    return where


def numba_cache_where_needed() -> None:
    """Point numba's cache (``NUMBA_CACHE_DIR``) at the user's cache when librosa's own folder
    cannot be written (an install made by root, used by another user, or a read-only image):
    numba caches librosa's compiled functions beside their source, and without a place to
    write them every command that loads resemblyzer (the default encoder's human half) failed
    with "cannot cache function ...: no locator available". Set before numba is imported;
    a value the user set is kept."""
    import importlib.util
    import sys

    if "NUMBA_CACHE_DIR" in os.environ or "numba" in sys.modules:
        return
    try:
        spec = importlib.util.find_spec("librosa")
    except (ImportError, ValueError):
        return
    if spec is None or not spec.submodule_search_locations:
        return
    folder = next(iter(spec.submodule_search_locations))
    if os.access(folder, os.W_OK):
        return

    # the user's cache; else (a home that cannot be written either) a new private folder in
    # the system's temp folder, for this process alone: numba reads its index with pickle, so
    # a shared or predictable folder there would run what another user put in it
    where = cache_home() / "numba"
    try:
        make_dirs(where)
        usable = os.access(where, os.W_OK)
    except OSError:
        usable = False
    if not usable:  # removed at exit: a folder was left in /tmp by every command (review)
        try:
            where = private_temp_folder("whichvoice-numba-")
        except OSError:
            return
    os.environ["NUMBA_CACHE_DIR"] = os.fspath(where)


def shipped_model(name: str, missing: str) -> Path:
    """A model folder shipped inside the package (``whichvoice/data/<name>``); WhichvoiceError
    saying ``missing`` (what to do instead) when this install lacks its weights."""
    from importlib import resources

    from whichvoice.errors import WhichvoiceError

    path = Path(str(resources.files("whichvoice").joinpath(f"data/{name}")))
    if not (path / "model.safetensors").is_file():
        raise WhichvoiceError(f"this install has no bundled {name}; {missing}")
    return path


@contextlib.contextmanager
def held_alone(path: Path, what: str) -> Iterator[None]:
    """Hold the lock file ``path`` (created, and removed after) for the block: OutputError,
    one line, when another process holds it (two jobs writing ``what`` at once duplicated
    its rows). The file is locked with ``flock``, so a killed job leaves no stale lock; the
    inode is checked after locking, so a file removed by the job before is not taken."""
    import fcntl

    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            # the output's folder, named as the user gave it (the lock's hidden name read as
            # a file of theirs: review)
            raise OutputError(
                f"{what}: cannot write the output here ({e.strerror or e}, in {path.parent})"
            ) from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputError(
                f"another whichvoice is writing {what} now; wait for it to finish "
                f"(or stop it), then run again"
            ) from None
        except OSError as e:  # a file system without locks (NFS without lockd): unguarded
            os.close(fd)
            log.warning("%s: cannot lock (%s); two jobs on %s at once are not refused here",
                        path, e.strerror or e, what)  # fmt: skip
            with contextlib.suppress(OSError):
                os.unlink(path)
            yield
            return
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # removed (and maybe made again) by the job before: lock the new one
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)

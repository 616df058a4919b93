"""The bottom floor: atomic writes, output folders, data and cache homes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from whichvoice.errors import OutputError
from whichvoice.files import cache_home, check_creatable, data_home, ensure_dir, write_atomic


def test_write_atomic_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "f.bin"
    write_atomic(path, b"one")
    write_atomic(path, b"two", durable=False)
    assert path.read_bytes() == b"two"
    assert [p.name for p in path.parent.iterdir()] == ["f.bin"]


def test_written_files_get_the_usual_mode(tmp_path: Path) -> None:
    mask = os.umask(0o022)
    try:
        write_atomic(tmp_path / "f.bin", b"x")
    finally:
        os.umask(mask)
    assert (tmp_path / "f.bin").stat().st_mode & 0o777 == 0o644


def test_write_atomic_never_touches_the_process_umask(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def forbidden(mask: int) -> int:
        raise AssertionError("os.umask is process-wide: a thread creating files meanwhile gets it")

    monkeypatch.setattr(os, "umask", forbidden)
    write_atomic(tmp_path / "f.bin", b"x")
    assert (tmp_path / "f.bin").read_bytes() == b"x"


def test_write_atomic_refuses_what_is_not_a_regular_file(tmp_path: Path) -> None:
    (tmp_path / "folder").mkdir()
    os.mkfifo(tmp_path / "pipe")
    for target in (tmp_path / "folder", tmp_path / "pipe", Path("/dev/null")):
        with pytest.raises(OutputError, match=r"not a regular file|not a file to write to"):
            write_atomic(target, b"x")
    assert (tmp_path / "folder").is_dir() and Path("/dev/null").is_char_device()


def test_write_atomic_writes_through_a_link_and_refuses_one_to_a_descriptor(
    tmp_path: Path,
) -> None:
    """A rename over a symbolic link replaced the link and left its file stale; a link to
    /proc/self/fd/1 or /dev/stdout (this process's own output) is refused, never replaced."""
    (tmp_path / "shared").mkdir()
    real = tmp_path / "shared" / "real.rttm"
    real.write_text("old\n")
    link = tmp_path / "cur.rttm"
    link.symlink_to(Path("shared") / "real.rttm")  # relative, as `ln -s` makes them
    chain = tmp_path / "chain.rttm"
    chain.symlink_to(link)
    write_atomic(chain, b"new\n")
    assert link.is_symlink() and chain.is_symlink() and real.read_text() == "new\n"
    dangling = tmp_path / "later.rttm"  # a link to a file not made yet: the file is made
    dangling.symlink_to(tmp_path / "shared" / "later.rttm")
    write_atomic(dangling, b"x")
    assert dangling.is_symlink() and (tmp_path / "shared" / "later.rttm").read_bytes() == b"x"
    for target in ("/proc/self/fd/1", "/dev/stdout", "/dev/fd/1"):
        fd = tmp_path / f"fd{len(target)}.rttm"
        fd.symlink_to(target)
        with pytest.raises(OutputError, match="not a file to write to"):
            write_atomic(fd, b"x")
        assert fd.is_symlink()
        with pytest.raises(OutputError, match="not a file to write to"):
            write_atomic(Path(target), b"x")  # given as it is: the file behind stdout
    # a relative link in a folder reached through a link: resolved from the real folder
    (tmp_path / "real" / "deep").mkdir(parents=True)
    (tmp_path / "lnkdir").symlink_to(tmp_path / "real" / "deep")
    (tmp_path / "real" / "deep" / "out.json").symlink_to("../target.json")
    write_atomic(tmp_path / "lnkdir" / "out.json", b"y")
    assert (tmp_path / "real" / "target.json").read_bytes() == b"y"
    assert not (tmp_path / "target.json").exists()
    # a `..` of the path given, after a linked folder: where the kernel takes it
    write_atomic(tmp_path / "lnkdir" / ".." / "deep" / "out.json", b"z")
    assert (tmp_path / "real" / "target.json").read_bytes() == b"z"
    assert (tmp_path / "real" / "deep" / "out.json").is_symlink()
    (tmp_path / "devlink").symlink_to("/dev/pts")
    with pytest.raises(OutputError, match="not a file to write to"):
        write_atomic(tmp_path / "devlink" / ".." / "stdout", b"x")
    loop = tmp_path / "loop.rttm"
    loop.symlink_to(loop)
    with pytest.raises(OutputError, match="a loop of symbolic links"):
        write_atomic(loop, b"x")


def test_ensure_dir_makes_the_folder_or_says_why(tmp_path: Path) -> None:
    assert ensure_dir(tmp_path / "a" / "b").is_dir()
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="cannot write the run here"):
        ensure_dir(tmp_path / "file" / "sub", "run")


def test_check_creatable_makes_nothing_and_refuses_what_is_in_the_way(tmp_path: Path) -> None:
    check_creatable(tmp_path / "a" / "b" / "c")  # can be made: nothing is made
    assert not (tmp_path / "a").exists()
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputError, match="a file is in the way"):
        check_creatable(tmp_path / "file" / "sub")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    for link in ("dangling", "loop"):  # they passed, and the write failed after the work
        with pytest.raises(OutputError, match="a link to nothing is in the way"):
            check_creatable(tmp_path / link / "sub")
    os.chmod(tmp_path, 0o500)
    try:
        if not os.access(tmp_path, os.W_OK):  # root writes anywhere
            with pytest.raises(OutputError, match="cannot write"):
                check_creatable(tmp_path / "new")
    finally:
        os.chmod(tmp_path, 0o700)


def test_homes_follow_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.delenv("WHICHVOICE_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert data_home() == tmp_path / "data" / "whichvoice"
    assert cache_home() == tmp_path / "cache" / "whichvoice"
    monkeypatch.setenv("WHICHVOICE_CACHE", str(tmp_path / "mine"))
    assert cache_home() == tmp_path / "mine"
    # a relative XDG folder is ignored, as the specification says: the gallery depended on
    # the folder a command ran in
    monkeypatch.delenv("WHICHVOICE_CACHE")
    monkeypatch.setenv("XDG_DATA_HOME", "reldata")
    monkeypatch.setenv("XDG_CACHE_HOME", "relcache")
    assert data_home() == Path.home() / ".local" / "share" / "whichvoice"
    assert cache_home() == Path.home() / ".cache" / "whichvoice"
    # so is a relative WHICHVOICE_CACHE: numba's pickled index went to the current folder
    monkeypatch.setenv("WHICHVOICE_CACHE", "relcache")
    assert cache_home() == Path.home() / ".cache" / "whichvoice"
    # no HOME and no passwd entry (a container's user id): /nonexistent, not a traceback
    import pwd

    from whichvoice.files import NO_HOME, home, make_dirs

    def nobody(uid: int) -> None:
        raise KeyError(uid)

    monkeypatch.delenv("HOME")
    monkeypatch.setattr(pwd, "getpwuid", nobody)
    assert home() == NO_HOME and data_home() == NO_HOME / ".local" / "share" / "whichvoice"
    # whichvoice's own folder is made 0700 (XDG), and the folders inside it
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    make_dirs(data_home() / "onnx")
    assert (tmp_path / "data" / "whichvoice").stat().st_mode & 0o777 == 0o700


def test_write_atomic_writes_a_name_as_long_as_a_name_may_be(tmp_path: Path) -> None:
    """The temporary file's name adds 18 characters to the target's: a legal 250-character
    name failed ("File name too long") after the work that made the data."""
    target = tmp_path / ("r" * 245 + ".rttm")
    write_atomic(target, b"x")
    assert target.read_bytes() == b"x" and [p.name for p in tmp_path.iterdir()] == [target.name]


def test_a_write_that_fails_names_the_file_and_leaves_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk under a file object's write names no file: the CLI said "the output"
    for a run's metrics.json (a review); the error names the file written."""
    import errno

    import whichvoice.files as files

    class Full:
        def __init__(self, fd: int, mode: str) -> None:
            self.fd = fd

        def __enter__(self) -> Full:
            return self

        def __exit__(self, *exc: object) -> None:
            os.close(self.fd)

        def write(self, data: bytes) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "fdopen", Full)
    with pytest.raises(OSError) as e:
        write_atomic(tmp_path / "metrics.json", b"{}")
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(tmp_path / "metrics.json")
    assert list(tmp_path.iterdir()) == []


def test_an_interrupted_write_leaves_the_file_as_it_was_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C inside the write: the interrupt goes on, the file keeps its old bytes, and no
    temporary file is left (a test-suite review: this path was never run)."""
    import whichvoice.files as files

    target = tmp_path / "out.csv"
    write_atomic(target, b"old")

    def interrupted(fd: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(files.os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(target, b"new")
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["out.csv"]

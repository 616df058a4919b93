"""Remote locations: URLs (any fsspec protocol, ``s3://`` through s3fs) read and written as
whole objects, each error one StorageError line. Mirrors of whole prefixes are in
``storage.mirror``."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from whichvoice.errors import WhichvoiceError
from whichvoice.files import write_atomic


class StorageError(WhichvoiceError):
    """A remote location that cannot be read or written."""


def is_url(path: str | os.PathLike | None) -> bool:
    """True for ``s3://...`` and other remote fsspec URLs; False for local paths and file://."""
    if path is None:
        return False
    text = os.fspath(path)
    return "://" in text and not text.startswith("file://")


def join(base: str | os.PathLike, *parts: str) -> str | Path:
    """``base / parts`` for a local path (a Path) or a URL (a string)."""
    if is_url(base):
        return "/".join([os.fspath(base).rstrip("/"), *(p.strip("/") for p in parts)])
    return Path(base).joinpath(*parts)


def check_url(url: str) -> None:
    """StorageError for a URL with a ``.`` or ``..`` segment: the object's key would hold it
    as it is while its local copy's path folds it away, so the two would name other places."""
    _, _, rest = os.fspath(url).partition("://")
    if any(part in (".", "..") for part in rest.split("/")):
        raise StorageError(f"{url}: a '.' or '..' in a URL is refused; give the object's own key")


# protocols whose locations are read, never written (or written into this process's memory
# alone, lost when it ends): an output there is refused before any work
READ_ONLY_PROTOCOLS = ("http", "https", "memory", "github", "zip", "tar", "data")


def check_writable(url: str | os.PathLike) -> None:
    """StorageError, before any work, for an output URL whose kind of location cannot keep
    what is written (``http(s)://``: no store takes a PUT there; ``memory://``: gone with the
    process); nothing for a local path."""
    if not is_url(url):
        return
    text = os.fspath(url)
    # the location's own protocol: the last of a chain ("simplecache::http://...")
    protocol = text.partition("://")[0].rsplit("::", 1)[-1].lower()
    if protocol in READ_ONLY_PROTOCOLS:
        raise StorageError(
            f"{text}: no output is written to a {protocol}:// location (read-only, or gone "
            "when the process ends); give a local path or an object store's URL (s3://...)"
        )


def check_bucket(url: str) -> None:
    """StorageError, before any work, when the bucket of an output ``url`` does not exist (a
    corpus synthesized into a missing bucket failed only at its upload, the clips made).
    A store that does not say (no permission to look) is written to as asked."""
    # S3 alone: its HEAD of a bucket answers 404 only for a missing one (gcsfs falls back to
    # listing, which an empty bucket would fail)
    if not is_url(url) or not os.fspath(url).lower().startswith("s3://"):
        return
    fs, root = filesystem(os.fspath(url))
    bucket = root.split("/", 1)[0]
    try:
        fs.info(bucket)
    except FileNotFoundError:
        raise StorageError(
            f"{url}: there is no bucket {bucket!r}; create it first (for S3: "
            f"aws s3 mb s3://{bucket})"
        ) from None
    except Exception:  # no leave to look, or another answer: the upload says what is wrong
        return


def check_object(url: str | os.PathLike) -> None:
    """StorageError, before any work, when an output ``url`` that is to be one object cannot
    be written as one (a read-only kind of location, a name ending in ``/``, a prefix holding
    objects); nothing for a local path. The write checks again."""
    if not is_url(url):
        return
    text = os.fspath(url)
    check_writable(text)
    fs, root = filesystem(text)
    _check_object(fs, root, text)


def _check_object(fs, root: str, url: str) -> None:
    """StorageError when ``url``, an object to write, ends in ``/`` or is a prefix that holds
    objects (an S3 "folder"): an object of that name would hide them from every later read
    of the URL (a local path that is a folder is refused the same way). Credentials that
    may write but not list cannot tell: the write goes on."""
    if url.endswith("/"):  # the store would make an object named as the prefix, not in it
        raise StorageError(f"{url}: names a folder (it ends in /); give an object's URL")
    try:
        folder = not fs.isfile(root) and fs.isdir(root)
    except Exception:  # a store that does not let us look: write as asked
        return
    if folder:
        raise StorageError(
            f"{url}: a folder (a prefix of objects), not an object; give an object's URL to "
            "write to"
        )


def filesystem(url: str):
    check_url(url)
    try:
        import fsspec
    except ImportError as e:  # pragma: no cover - a core dependency
        raise StorageError(f"{url}: remote paths need fsspec (pip install fsspec s3fs)") from e
    try:
        return fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as e:
        raise StorageError(f"{url}: cannot open this location ({e})") from e


def describe(url: str, e: BaseException) -> str:
    text = str(e) or type(e).__name__
    return f"{url}: {text.splitlines()[0]}"


def remote_files(fs, root: str) -> dict[str, dict]:
    """Relative name -> info of every object under ``root`` (a prefix, or one object)."""
    try:
        if fs.isfile(root):
            return {"": fs.info(root)}
        found = fs.find(root, detail=True)
    except FileNotFoundError:
        return {}
    prefix = root.rstrip("/") + "/"
    return {
        name[len(prefix) :]: info
        for name, info in found.items()
        if name.startswith(prefix) and info.get("type", "file") == "file"
    }


def is_temporary(name: str) -> bool:
    return any(part.startswith(".") and part.endswith(".tmp") for part in name.split("/"))


def first_line(e: BaseException) -> str:
    return (str(e) or type(e).__name__).splitlines()[0]


def read_bytes(path: str | os.PathLike) -> bytes:
    """The bytes of a local file or remote object (OSError / StorageError when unreadable)."""
    if not is_url(path):
        return Path(path).read_bytes()
    url = os.fspath(path)
    fs, root = filesystem(url)
    try:
        return fs.cat_file(root)
    except FileNotFoundError as e:
        raise StorageError(f"{url}: no such object") from e
    except Exception as e:
        raise StorageError(describe(url, e)) from e


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write a whole file or object: a temporary file and a rename locally, one PUT remotely,
    so a reader never sees part of it."""
    if not is_url(path):
        write_atomic(Path(path), data)
        return
    url = os.fspath(path)
    check_writable(url)
    fs, root = filesystem(url)
    _check_object(fs, root, url)
    try:
        fs.pipe_file(root, data)
    except Exception as e:
        raise StorageError(describe(url, e)) from e


def put_file(local: str | os.PathLike, url: str) -> None:
    """Upload one local file to ``url`` (streamed; one object, whole or not at all)."""
    check_writable(url)
    fs, root = filesystem(url)
    _check_object(fs, root, url)
    try:
        fs.put_file(os.fspath(local), root)
    except Exception as e:
        raise StorageError(describe(url, e)) from e


def remove(url: str) -> None:
    """Delete the object ``url`` if it exists."""
    fs, root = filesystem(url)
    try:
        if fs.exists(root):
            fs.rm_file(root)
    except Exception as e:
        raise StorageError(describe(url, e)) from e


def exists(path: str | os.PathLike) -> bool:
    """Whether a local path or a remote object/prefix exists."""
    if not is_url(path):
        return Path(path).exists()
    fs, root = filesystem(os.fspath(path))
    try:
        return bool(fs.exists(root))
    except Exception as e:
        raise StorageError(describe(os.fspath(path), e)) from e


def open_text(path: str | os.PathLike, **kw):
    """A local file or remote object opened for reading text, streamed (``open``'s keywords:
    encoding, newline)."""
    if not is_url(path):
        return open(path, **kw)
    import fsspec

    url = os.fspath(path)
    try:
        f = fsspec.open(url, "rt", **kw).open()
    except FileNotFoundError as e:
        raise StorageError(f"{url}: no such object") from e
    except Exception as e:
        raise StorageError(describe(url, e)) from e
    return f


def list_files(url: str, suffixes: Iterable[str]) -> list[str]:
    """The URLs of the objects under prefix ``url`` whose names end in one of ``suffixes``
    (lower-cased), sorted; ``[url]`` when ``url`` is one object."""
    fs, root = filesystem(url)
    protocol = url.split("://", 1)[0]
    wanted = tuple(s.lower() for s in suffixes)
    try:
        fs.invalidate_cache(root)
        found = remote_files(fs, root)
    except Exception as e:
        raise StorageError(describe(url, e)) from e
    if "" in found:
        return [url]
    return [
        f"{protocol}://{root.rstrip('/')}/{name}"
        for name in sorted(found)
        if name.lower().endswith(wanted) and not is_temporary(name)
    ]

"""Object storage: every folder or file argument may be a URL such as ``s3://bucket/prefix``.

The library works on local folders (memory-mapped arrays, SQLite, resumable manifests), so a
URL is *staged*: ``local_path`` mirrors the remote prefix into a local cache and returns that
folder; ``local_output`` does the same for an output (so an interrupted job resumes), then
uploads what changed. Any fsspec protocol works; ``s3://`` goes through s3fs, which takes its
endpoint, region and credentials from the usual AWS settings (``AWS_ENDPOINT_URL`` for
S3-compatible stores such as MinIO, ``AWS_PROFILE``, ``AWS_ACCESS_KEY_ID``, ...).

Completeness: each object is one PUT, which S3 stores whole or not at all. The files that mark
an artifact complete (a corpus's manifest.jsonl, a run's metrics.json, a prepared folder's
dataset.json) are uploaded after every other file, and a record of every uploaded object with
its size and SHA-256 (``.whichvoice-upload.json``) goes last of all. A reader that finds that
record takes only the objects it lists, and only when their size matches, so an upload cut
short leaves the previous complete state readable and nothing half-written.

The mirror lives in ``$WHICHVOICE_CACHE`` (default ``~/.cache/whichvoice``) under ``remote/``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from whichvoice.audio import write_atomic
from whichvoice.errors import WhichvoiceError

log = logging.getLogger(__name__)

RECORD = ".whichvoice-upload.json"  # remote: what a complete upload holds
SYNC = ".whichvoice-sync.json"  # local mirror: what was downloaded or uploaded, for deltas


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


def _fs(url: str):
    try:
        import fsspec
    except ImportError as e:  # pragma: no cover - a core dependency
        raise StorageError(f"{url}: remote paths need fsspec (pip install fsspec s3fs)") from e
    try:
        return fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as e:
        raise StorageError(f"{url}: cannot open this location ({e})") from e


def _describe(url: str, e: BaseException) -> str:
    text = str(e) or type(e).__name__
    return f"{url}: {text.splitlines()[0]}"


def cache_root() -> Path:
    """Where remote folders are mirrored: ``$WHICHVOICE_CACHE/remote`` or ~/.cache/whichvoice."""
    base = os.environ.get("WHICHVOICE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "whichvoice"
    )
    return Path(base) / "remote"


def mirror_path(url: str) -> Path:
    """The local mirror folder of a URL (stable: the same URL always maps to the same place)."""
    protocol, _, rest = os.fspath(url).partition("://")
    rest = rest.strip("/")
    safe = "/".join(p for p in rest.split("/") if p not in ("", ".", ".."))
    return cache_root() / protocol / safe


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _remote_files(fs, root: str) -> dict[str, dict]:
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


def _tag(info: dict) -> str:
    """What changes when an object changes: its ETag (or size and modification time)."""
    for key in ("ETag", "etag", "md5"):
        if info.get(key):
            return str(info[key]).strip('"')
    return f"{info.get('size')}-{info.get('mtime') or info.get('LastModified')}"


def download(
    url: str, local: Path | None = None, *, strict: bool = True, progress: bool = False
) -> Path:
    """Mirror the object or prefix ``url`` into ``local`` (default ``mirror_path(url)``),
    fetching only what changed since the last call. Returns the local path: a folder for a
    prefix, a file for an object; nothing at ``url`` gives an empty folder.

    ``strict`` (for inputs): a prefix with an upload record yields only the objects it lists,
    checked against their SHA-256, and StorageError when one is missing. Not strict (an output
    about to be resumed): every object, as the interrupted job left it."""
    fs, root = _fs(url)
    local = Path(local or mirror_path(url))
    try:
        fs.invalidate_cache(root)
        remote = _remote_files(fs, root)
    except Exception as e:
        raise StorageError(_describe(url, e)) from e
    if "" in remote:  # a single object
        return _download_file(fs, root, remote[""], local, url)
    record = None
    if strict and RECORD in remote:
        try:
            record = json.loads(fs.cat_file(f"{root.rstrip('/')}/{RECORD}"))["files"]
        except Exception as e:
            raise StorageError(f"{url}: its {RECORD} cannot be read ({e})") from e
    wanted = {}
    for name, info in remote.items():
        if name in (RECORD, SYNC) or _is_temporary(name):
            continue
        if record is not None:
            entry = record.get(name)
            if entry is None or int(entry["size"]) != int(info.get("size") or 0):
                continue  # not part of the last complete upload
        wanted[name] = info
    if record is not None:
        missing = sorted(set(record) - set(wanted))
        if missing:
            raise StorageError(
                f"{url}: incomplete, {len(missing)} object(s) of its last upload are missing "
                f"or have another size (e.g. {missing[0]})"
            )
    local.mkdir(parents=True, exist_ok=True)
    sync = _read_json(local / SYNC)
    for name in set(sync) - set(wanted):  # gone remotely: gone from the mirror
        (local / name).unlink(missing_ok=True)
        sync.pop(name, None)
    todo = [
        n
        for n, info in wanted.items()
        if sync.get(n, {}).get("tag") != _tag(info) or not (local / n).is_file()
    ]
    from tqdm import tqdm

    for name in tqdm(todo, desc="download", unit="file", disable=not progress or not todo):
        _download_one(fs, f"{root.rstrip('/')}/{name}", local / name, url)
        expected = (record or {}).get(name, {}).get("sha256")
        if expected and _sha256(local / name) != expected:
            (local / name).unlink()
            raise StorageError(f"{url}/{name}: damaged (its SHA-256 is not the uploaded one)")
        stat = (local / name).stat()
        sync[name] = {"tag": _tag(wanted[name]), "size": stat.st_size, "mtime": stat.st_mtime_ns}
    write_atomic(local / SYNC, json.dumps(sync).encode(), durable=False)
    return local


def _is_temporary(name: str) -> bool:
    return any(part.startswith(".") and part.endswith(".tmp") for part in name.split("/"))


def _download_one(fs, remote: str, local: Path, url: str) -> None:
    local.parent.mkdir(parents=True, exist_ok=True)
    tmp = local.with_name(f".{local.name}.{os.getpid()}.tmp")
    try:
        fs.get_file(remote, str(tmp))
        os.replace(tmp, local)
    except Exception as e:
        tmp.unlink(missing_ok=True)
        raise StorageError(_describe(url, e)) from e


def _download_file(fs, remote: str, info: dict, local: Path, url: str) -> Path:
    sync_path = local.with_name(f".{local.name}{SYNC}")
    if not (local.is_file() and _read_json(sync_path).get("tag") == _tag(info)):
        _download_one(fs, remote, local, url)
        write_atomic(sync_path, json.dumps({"tag": _tag(info)}).encode(), durable=False)
    return local


def upload(
    local: Path,
    url: str,
    *,
    last: Iterable[str] = (),
    progress: bool = False,
) -> int:
    """Upload the files of folder ``local`` to prefix ``url`` that changed since they were
    downloaded or uploaded; the names in ``last`` after all others, then the upload record.
    Returns how many files were uploaded. Raises StorageError; what was complete before stays
    readable (see the module docstring)."""
    fs, root = _fs(url)
    root = root.rstrip("/")
    local = Path(local)
    sync = _read_json(local / SYNC)
    last = list(last)
    files = sorted(
        p.relative_to(local).as_posix()
        for p in local.rglob("*")
        if p.is_file() and p.name != SYNC and not p.name.endswith(".tmp")
    )
    changed = []
    for name in files:
        stat = (local / name).stat()
        seen = sync.get(name, {})
        if seen.get("size") != stat.st_size or seen.get("mtime") != stat.st_mtime_ns:
            changed.append(name)
    order = [n for n in changed if n not in last] + [n for n in last if n in changed]
    from tqdm import tqdm

    try:
        for name in tqdm(order, desc="upload", unit="file", disable=not progress or not order):
            path = local / name
            stat = path.stat()
            fs.put_file(str(path), f"{root}/{name}")
            info = fs.info(f"{root}/{name}")
            if int(info.get("size") or 0) != stat.st_size:
                raise StorageError(
                    f"{url}/{name}: stored {info.get('size')} bytes, not {stat.st_size}"
                )
            sync[name] = {
                "tag": _tag(info),
                "size": stat.st_size,
                "mtime": stat.st_mtime_ns,
                "sha256": _sha256(path),
            }
        record = {
            "files": {
                name: {"size": sync[name]["size"], "sha256": sync[name].get("sha256")}
                for name in files
                if name in sync
            }
        }
        if order or not fs.exists(f"{root}/{RECORD}"):
            fs.pipe_file(f"{root}/{RECORD}", json.dumps(record, indent=1).encode())
            fs.invalidate_cache(root)
    except StorageError:
        raise
    except Exception as e:
        raise StorageError(_describe(url, e)) from e
    finally:
        write_atomic(local / SYNC, json.dumps(sync).encode(), durable=False)
    return len(order)


def local_path(path: str | os.PathLike) -> Path:
    """A local path as a Path; a URL's mirror after downloading it (see ``download``)."""
    return download(os.fspath(path)) if is_url(path) else Path(path)


@contextlib.contextmanager
def local_output(
    path: str | os.PathLike,
    *,
    last: Iterable[str] = (),
    enabled: bool = True,
    progress: bool = False,
) -> Iterator[Path]:
    """A local folder to write ``path`` into: itself, or a URL's mirror, downloaded first (so
    resumable jobs resume) and uploaded afterwards, also when the job fails or is interrupted
    (so what it completed is kept). ``last``: the files that mark the artifact complete.
    ``enabled=False`` (e.g. on all but one process of a distributed run) skips the upload."""
    if not is_url(path):
        yield Path(path)
        return
    url = os.fspath(path)
    local = download(url, strict=False, progress=progress)
    try:
        yield local
    finally:
        if enabled:
            upload(local, url, last=last, progress=progress)


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
        raise StorageError(_describe(url, e)) from e
    return f


def list_files(url: str, suffixes: Iterable[str]) -> list[str]:
    """The URLs of the objects under prefix ``url`` whose names end in one of ``suffixes``
    (lower-cased), sorted; ``[url]`` when ``url`` is one object."""
    fs, root = _fs(url)
    protocol = url.split("://", 1)[0]
    wanted = tuple(s.lower() for s in suffixes)
    try:
        fs.invalidate_cache(root)
        found = _remote_files(fs, root)
    except Exception as e:
        raise StorageError(_describe(url, e)) from e
    if "" in found:
        return [url]
    return [
        f"{protocol}://{root.rstrip('/')}/{name}"
        for name in sorted(found)
        if name.lower().endswith(wanted) and not _is_temporary(name)
    ]


def read_bytes(path: str | os.PathLike) -> bytes:
    """The bytes of a local file or remote object (OSError / StorageError when unreadable)."""
    if not is_url(path):
        return Path(path).read_bytes()
    url = os.fspath(path)
    fs, root = _fs(url)
    try:
        return fs.cat_file(root)
    except FileNotFoundError as e:
        raise StorageError(f"{url}: no such object") from e
    except Exception as e:
        raise StorageError(_describe(url, e)) from e


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write a whole file or object: a temporary file and a rename locally, one PUT remotely,
    so a reader never sees part of it."""
    if not is_url(path):
        write_atomic(Path(path), data)
        return
    url = os.fspath(path)
    fs, root = _fs(url)
    try:
        fs.pipe_file(root, data)
    except Exception as e:
        raise StorageError(_describe(url, e)) from e


def put_file(local: str | os.PathLike, url: str) -> None:
    """Upload one local file to ``url`` (streamed; one object, whole or not at all)."""
    fs, root = _fs(url)
    try:
        fs.put_file(os.fspath(local), root)
    except Exception as e:
        raise StorageError(_describe(url, e)) from e


def remove(url: str) -> None:
    """Delete the object ``url`` if it exists."""
    fs, root = _fs(url)
    try:
        if fs.exists(root):
            fs.rm_file(root)
    except Exception as e:
        raise StorageError(_describe(url, e)) from e


@contextlib.contextmanager
def local_files(url: str, extra: Iterable[str] = ()) -> Iterator[Path]:
    """A local path to write the object ``url`` (and the objects ``extra`` beside it, e.g. a
    journal) through: the stored ones are downloaded first, so a job resumes; afterwards every
    one that exists locally is uploaded (also after a failure) and the others are deleted."""
    local = mirror_path(url)
    local.parent.mkdir(parents=True, exist_ok=True)
    parent = url.rsplit("/", 1)[0]
    names = [local.name, *extra]
    for name in names:
        if exists(f"{parent}/{name}"):
            download(f"{parent}/{name}", local.parent / name)
        else:
            (local.parent / name).unlink(missing_ok=True)
    try:
        yield local
    finally:
        for name in names:
            if (local.parent / name).is_file():
                put_file(local.parent / name, f"{parent}/{name}")
            else:
                remove(f"{parent}/{name}")


def exists(path: str | os.PathLike) -> bool:
    """Whether a local path or a remote object/prefix exists."""
    if not is_url(path):
        return Path(path).exists()
    fs, root = _fs(os.fspath(path))
    try:
        return bool(fs.exists(root))
    except Exception as e:
        raise StorageError(_describe(os.fspath(path), e)) from e

"""Mirrors of remote folders: every folder or file argument may be a URL such as ``s3://bucket/prefix``.

The library works on local folders (memory-mapped arrays, SQLite, resumable manifests), so a
URL is *staged*: ``local_path`` mirrors the remote prefix into a local cache and returns that
folder; ``local_output`` does the same for an output (so an interrupted job resumes), then
uploads what changed. Any fsspec protocol works; ``s3://`` goes through s3fs, which takes its
endpoint, region and credentials from the usual AWS settings (``AWS_ENDPOINT_URL`` for
S3-compatible stores such as MinIO, ``AWS_PROFILE``, ``AWS_ACCESS_KEY_ID``, ...).

Completeness: a prefix written by whichvoice has a small pointer object,
``.whichvoice-upload.json``, that lists every file of its last complete upload with its size,
SHA-256 and the object that holds it. An upload never overwrites an object the pointer lists:
a file that is new goes to its own key, a file that changed goes first to a content-addressed
object (``.whichvoice-objects/<sha256>``); the pointer is replaced last (one PUT, whole or not
at all). So a reader, which takes only what the pointer lists and checks each object's
SHA-256, sees the previous complete state whenever an upload is cut, after any object. Once
the new pointer is up, the changed files are copied to their own keys too (so other tools see
the usual layout), the pointer is updated to name them, and the content-addressed copies go.

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

from whichvoice.files import cache_home, make_dirs, write_atomic
from whichvoice.storage.remote import (
    StorageError,
    check_bucket,
    check_url,
    check_writable,
    describe,
    exists,
    filesystem,
    first_line,
    is_temporary,
    is_url,
    put_file,
    remote_files,
    remove,
)

log = logging.getLogger(__name__)

RECORD = ".whichvoice-upload.json"  # remote: the pointer to the last complete upload
OBJECTS = ".whichvoice-objects"  # remote: content-addressed copies of changed files
SYNC = ".whichvoice-sync.json"  # local mirror: what was downloaded or uploaded, for deltas
RECORD_FORMAT = 2  # 1: files at their own keys only (read still)


def cache_root() -> Path:
    """Where remote folders are mirrored: ``remote/`` in whichvoice's cache home."""
    return cache_home() / "remote"


def mirror_path(url: str) -> Path:
    """The local mirror folder of a URL (stable: the same URL always maps to the same place)."""
    check_url(url)
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


def _tag(info: dict) -> str:
    """What changes when an object changes: its ETag (or size and modification time)."""
    for key in ("ETag", "etag", "md5"):
        if info.get(key):
            return str(info[key]).strip('"')
    return f"{info.get('size')}-{info.get('mtime') or info.get('LastModified')}"


def safe_name(name: str, what: str = "object") -> str:
    """``name`` (a relative key under a prefix) when it stays inside the folder it is mirrored
    into; StorageError for an absolute name, ``..``, ``.`` or empty parts, backslashes or NULs
    (a bucket must not write outside the cache)."""
    if (
        not isinstance(name, str)
        or not name
        or name.startswith("/")
        or "\\" in name
        or "\0" in name
        or any(part in ("", ".", "..") for part in name.split("/"))
    ):
        raise StorageError(f"refusing {what} name {name!r}: it would leave the mirror folder")
    return name


def _inside(local: Path, name: str) -> Path:
    """``local / name``, refused when it resolves outside ``local`` (symlinks included)."""
    path = local / safe_name(name)
    root = local.resolve()
    if not path.resolve().is_relative_to(root):
        raise StorageError(f"refusing object name {name!r}: it would leave the mirror folder")
    return path


def _read_record(fs, root: str, url: str) -> dict[str, dict] | None:
    """The pointer's files (name -> size, sha256, key), checked; None when there is none."""
    try:
        data = json.loads(fs.cat_file(f"{root}/{RECORD}"))
    except FileNotFoundError:
        return None
    except Exception as e:
        raise StorageError(f"{url}: its {RECORD} cannot be read ({first_line(e)})") from e
    try:
        files = data["files"]
        out = {}
        for name, entry in files.items():
            safe_name(name)
            key = entry.get("key", name)  # format 1: every file at its own key
            if key != name and not (
                key.startswith(f"{OBJECTS}/") and len(key) == len(OBJECTS) + 65
            ):
                raise ValueError(f"{name}: object {key!r} is neither its own key nor content")
            out[name] = {
                "size": int(entry["size"]),
                "sha256": entry.get("sha256"),
                "key": key,
            }
        return out
    except StorageError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise StorageError(f"{url}: its {RECORD} is damaged ({first_line(e)})") from e


def download(
    url: str, local: Path | None = None, *, strict: bool = True, progress: bool = False
) -> Path:
    """Mirror the object or prefix ``url`` into ``local`` (default ``mirror_path(url)``),
    fetching only what changed since the last call. Returns the local path: a folder for a
    prefix, a file for an object; nothing at ``url`` gives an empty folder.

    A prefix with an upload pointer yields exactly the files it lists, each checked against
    its SHA-256 (StorageError when one is missing or damaged). ``strict=False`` (an output
    about to be resumed) also takes the files an interrupted upload left at their own keys.
    A name that would leave ``local`` is refused (StorageError)."""
    fs, root = filesystem(url)
    root = root.rstrip("/")
    local = Path(local or mirror_path(url))
    try:
        fs.invalidate_cache(root)
        remote = remote_files(fs, root)
    except Exception as e:
        raise StorageError(describe(url, e)) from e
    if "" in remote:  # a single object
        return _download_file(fs, root, remote[""], local, url)
    wanted = _wanted(fs, root, url, remote, strict)
    make_dirs(local)
    targets = {name: _inside(local, name) for name in wanted}
    sync = _read_json(local / SYNC)
    for name in set(sync) - set(wanted):  # gone remotely: gone from the mirror
        with contextlib.suppress(StorageError):
            _inside(local, name).unlink(missing_ok=True)
        sync.pop(name, None)
    todo = [
        name
        for name, (_, info, sha) in wanted.items()
        if not targets[name].is_file()
        or (sync.get(name, {}).get("sha256") != sha if sha else False)
        or (not sha and sync.get(name, {}).get("tag") != _tag(info))
    ]
    from tqdm import tqdm

    for name in tqdm(
        todo, desc="download", unit="file", disable=None if progress and todo else True
    ):
        key, info, sha = wanted[name]
        _download_one(fs, f"{root}/{key}", targets[name], url)
        if sha and _sha256(targets[name]) != sha:
            targets[name].unlink()
            raise StorageError(f"{url}/{name}: damaged (its SHA-256 is not the uploaded one)")
        stat = targets[name].stat()
        sync[name] = {"tag": _tag(info), "size": stat.st_size, "mtime": stat.st_mtime_ns}
        if sha:
            sync[name]["sha256"] = sha
    write_atomic(local / SYNC, json.dumps(sync).encode(), durable=False)
    return local


def _wanted(
    fs, root: str, url: str, remote: dict[str, dict], strict: bool
) -> dict[str, tuple[str, dict, str | None]]:
    """What ``download`` takes: name -> (the key holding it, its remote info, its SHA-256 when
    the pointer lists it). With a pointer, exactly its files (StorageError when one is missing
    or of another size); else, or with ``strict=False``, the files at their own keys too."""
    record = _read_record(fs, root, url) if RECORD in remote else None
    wanted: dict[str, tuple[str, dict, str | None]] = {}
    if record is None or not strict:
        for name, info in remote.items():
            if name in (RECORD, SYNC) or name.startswith(f"{OBJECTS}/") or is_temporary(name):
                continue
            wanted[safe_name(name)] = (name, info, None)
    if record is not None:
        missing = []
        for name, entry in record.items():
            info = remote.get(entry["key"])
            if info is None or int(info.get("size") or 0) != entry["size"]:
                missing.append(name)
                continue
            wanted[name] = (entry["key"], info, entry["sha256"])
        if missing:
            raise StorageError(
                f"{url}: incomplete, {len(missing)} object(s) of its last upload are missing "
                f"or have another size (e.g. {sorted(missing)[0]})"
            )
    return wanted


def _download_one(fs, remote: str, local: Path, url: str) -> None:
    make_dirs(local.parent)
    tmp = local.with_name(f".{local.name}.{os.getpid()}.tmp")
    try:
        fs.get_file(remote, str(tmp))
        os.replace(tmp, local)
    except Exception as e:
        tmp.unlink(missing_ok=True)
        raise StorageError(describe(url, e)) from e


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
    downloaded or uploaded (the names in ``last`` after all others), then switch the pointer
    to the new state. Returns how many files were uploaded. Raises StorageError; whatever
    happened, the previous complete state stays readable (see the module docstring)."""
    fs, root = filesystem(url)
    root = root.rstrip("/")
    local = Path(local)
    sync = _read_json(local / SYNC)
    last = list(last)
    files = sorted(
        p.relative_to(local).as_posix()
        for p in local.rglob("*")
        if p.is_file() and p.name != SYNC and not p.name.endswith(".tmp")
    )
    from tqdm import tqdm

    try:
        fs.invalidate_cache(root)
        before = _read_record(fs, root, url) or {}
        pointed = {entry["key"] for entry in before.values()}  # never overwritten
        entries, changed = _unchanged(local, files, sync, before, pointed)
        order = [n for n in changed if n not in last] + [n for n in last if n in changed]
        for name in tqdm(
            order, desc="upload", unit="file", disable=None if progress and order else True
        ):
            path = local / name
            stat = path.stat()
            sha = _sha256(path)
            key = name if name not in pointed else f"{OBJECTS}/{sha}"
            fs.put_file(str(path), f"{root}/{key}")
            info = fs.info(f"{root}/{key}")
            if int(info.get("size") or 0) != stat.st_size:
                raise StorageError(
                    f"{url}/{name}: stored {info.get('size')} bytes, not {stat.st_size}"
                )
            entries[name] = {"size": stat.st_size, "sha256": sha, "key": key}
            sync[name] = {"tag": _tag(info), "mtime": stat.st_mtime_ns, **entries[name]}
        if order or not before:
            _write_record(fs, root, entries)  # the switch: the new state is complete
        _settle(fs, root, entries)  # also what an earlier upload, cut, left to do
        for name in entries:
            sync.setdefault(name, {})["key"] = name
    except StorageError:
        raise
    except Exception as e:
        raise StorageError(describe(url, e)) from e
    finally:
        write_atomic(local / SYNC, json.dumps(sync).encode(), durable=False)
    return len(order)


def _unchanged(
    local: Path, files: list[str], sync: dict, before: dict[str, dict], pointed: set[str]
) -> tuple[dict[str, dict], list[str]]:
    """Split the mirror's ``files`` into the pointer entries of those an upload can keep where
    they are, and the names it must send (changed since the last sync, or sent by an upload cut
    before its switch, to an object that may be gone)."""
    entries, changed = {}, []
    for name in files:
        stat = (local / name).stat()
        seen = sync.get(name, {})
        if seen.get("size") != stat.st_size or seen.get("mtime") != stat.st_mtime_ns:
            changed.append(name)
        elif name in before and seen.get("sha256") in (None, before[name]["sha256"]):
            entries[name] = before[name]
        elif seen.get("key", name) == name and name not in pointed:
            entries[name] = {"size": stat.st_size, "sha256": seen.get("sha256"), "key": name}
        else:
            changed.append(name)
    return entries, changed


def _write_record(fs, root: str, entries: dict[str, dict]) -> None:
    record = {"format": RECORD_FORMAT, "files": dict(sorted(entries.items()))}
    fs.pipe_file(f"{root}/{RECORD}", json.dumps(record, indent=1).encode())
    fs.invalidate_cache(root)


def _settle(fs, root: str, entries: dict[str, dict]) -> None:
    """After the switch: copy the files held in content-addressed objects to their own keys,
    point the pointer at those, and remove the objects nothing points at any more. A cut
    here leaves the pointer valid (it still names the content-addressed objects)."""
    moved = {n: e for n, e in entries.items() if e["key"] != n}
    for name, entry in moved.items():
        fs.copy(f"{root}/{entry['key']}", f"{root}/{name}")
    if moved:
        _write_record(fs, root, {n: {**e, "key": n} for n, e in entries.items()})
    try:
        leftovers = fs.find(f"{root}/{OBJECTS}")
    except FileNotFoundError:
        leftovers = []
    for key in leftovers:  # also those of an upload that was cut before its switch
        fs.rm_file(key)


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
    check_writable(path)
    check_bucket(path)  # before the work: a missing bucket failed only at the upload
    url = os.fspath(path)
    local = download(url, strict=False, progress=progress)
    try:
        yield local
    finally:
        if enabled:
            upload(local, url, last=last, progress=progress)


def put_into(local_file: Path, url: str) -> None:
    """Upload one file to ``url``. When the prefix above it holds a pointer (a folder that
    whichvoice wrote: a run, a corpus), through that folder's mirror, so that the pointer
    lists the file and readers, who take only what it lists, get it; else to its own key."""
    parent, name = url.rsplit("/", 1)
    if not exists(f"{parent}/{RECORD}"):
        put_file(local_file, url)
        return
    data = Path(local_file).read_bytes()  # the file may lie in the mirror the download syncs
    with local_output(parent) as folder:
        write_atomic(_inside(folder, name), data, durable=False)


@contextlib.contextmanager
def local_files(url: str, extra: Iterable[str] = ()) -> Iterator[Path]:
    """A local path to write the object ``url`` (and the objects ``extra`` beside it, e.g. a
    journal) through: the stored ones are downloaded first, so a job resumes; afterwards every
    one that exists locally is uploaded (also after a failure) and the others are deleted."""
    local = mirror_path(url)
    make_dirs(local.parent)
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

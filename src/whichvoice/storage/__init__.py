"""Object storage: every folder or file argument may be a URL such as ``s3://bucket/prefix``.

``remote`` reads and writes single objects; ``mirror`` stages whole prefixes in a local cache
(``local_path``, ``local_output``, ``local_files``) and uploads them atomically through a
pointer object (its docstring tells how).
"""

from whichvoice.storage.mirror import (
    OBJECTS,
    RECORD,
    cache_root,
    download,
    local_files,
    local_output,
    local_path,
    mirror_path,
    put_into,
    safe_name,
    upload,
)
from whichvoice.storage.remote import (
    StorageError,
    check_object,
    check_writable,
    exists,
    filesystem,
    is_url,
    join,
    list_files,
    open_text,
    put_file,
    read_bytes,
    remove,
    write_bytes,
)

__all__ = [
    "OBJECTS",
    "RECORD",
    "StorageError",
    "cache_root",
    "check_object",
    "check_writable",
    "download",
    "exists",
    "filesystem",
    "is_url",
    "join",
    "list_files",
    "local_files",
    "local_output",
    "local_path",
    "mirror_path",
    "open_text",
    "put_file",
    "put_into",
    "read_bytes",
    "remove",
    "safe_name",
    "upload",
    "write_bytes",
]

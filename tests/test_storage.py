"""s3:// staging against a real S3-compatible server (moto_server on 127.0.0.1)."""

from __future__ import annotations

import os
from pathlib import Path

import boto3
import pytest

from whichvoice import storage
from whichvoice.storage import RECORD, StorageError


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WHICHVOICE_CACHE", str(tmp_path / "cache"))


def _fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Another machine: an empty mirror."""
    monkeypatch.setenv("WHICHVOICE_CACHE", str(tmp_path / name))


def _tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and not p.name.startswith(".whichvoice")
    }


def _keys(url: str) -> list[str]:
    bucket, _, prefix = url[len("s3://") :].partition("/")
    listed = boto3.client("s3").list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for o in listed.get("Contents", []))


def test_url_detection() -> None:
    assert storage.is_url("s3://b/p")
    assert not storage.is_url("runs/a")
    assert not storage.is_url(Path("/tmp/x"))
    assert not storage.is_url("file:///tmp/x")
    assert storage.join("s3://b/p/", "manifest.jsonl") == "s3://b/p/manifest.jsonl"
    assert storage.join("runs", "a") == Path("runs/a")


def test_output_round_trip_and_deltas(
    bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"{bucket}/corpus"
    with storage.local_output(url, last=["manifest.jsonl"]) as local:
        assert local != Path(url)
        (local / "audio").mkdir()
        (local / "audio" / "a.mp3").write_bytes(b"a" * 1000)
        (local / "manifest.jsonl").write_text('{"id": "a"}\n')
    assert f"{url[len(bucket) + 1 :]}/{RECORD}" in _keys(url)

    _fresh_cache(tmp_path, monkeypatch, "machine2")
    seen = storage.local_path(url)
    assert _tree(seen) == {"audio/a.mp3": b"a" * 1000, "manifest.jsonl": b'{"id": "a"}\n'}

    # resuming on machine 2: only what changed goes up
    with storage.local_output(url, last=["manifest.jsonl"]) as local:
        (local / "audio" / "b.mp3").write_bytes(b"b" * 10)
        (local / "manifest.jsonl").write_text('{"id": "a"}\n{"id": "b"}\n')
    assert storage.upload(storage.mirror_path(url), url) == 0  # nothing left to send
    _fresh_cache(tmp_path, monkeypatch, "machine3")
    assert set(_tree(storage.local_path(url))) == {"audio/a.mp3", "audio/b.mp3", "manifest.jsonl"}


def test_broken_connection_mid_upload_leaves_the_last_complete_state(
    bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, moto_s3_proxy
) -> None:
    url = f"{bucket}/run"
    first = {"weights.bin": os.urandom(300_000), "metrics.json": b'{"v": 1}'}
    with storage.local_output(url, last=["metrics.json"]) as local:
        for name, data in first.items():
            (local / name).write_bytes(data)

    # the network breaks while the new, larger weights are on their way
    moto_s3_proxy.cut_after = 200_000
    with (
        pytest.raises(StorageError) as e,
        storage.local_output(url, last=["metrics.json"]) as local,
    ):
        (local / "weights.bin").write_bytes(os.urandom(2_000_000))
        (local / "metrics.json").write_bytes(b'{"v": 2}')
    assert moto_s3_proxy.cuts > 0
    assert "\n" not in str(e.value) and url in str(e.value)
    moto_s3_proxy.cut_after = None

    _fresh_cache(tmp_path, monkeypatch, "reader")
    assert _tree(storage.local_path(url)) == first  # no half object, no new marker

    # the job runs again where it stopped: the same mirror, uploaded once the network is back
    monkeypatch.setenv("WHICHVOICE_CACHE", str(tmp_path / "cache"))
    with storage.local_output(url, last=["metrics.json"]) as local:
        assert (local / "metrics.json").read_bytes() == b'{"v": 2}'
    _fresh_cache(tmp_path, monkeypatch, "reader2")
    seen = _tree(storage.local_path(url))
    assert seen["metrics.json"] == b'{"v": 2}' and len(seen["weights.bin"]) == 2_000_000


def test_a_missing_object_is_refused_not_read_as_complete(
    bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"{bucket}/data"
    with storage.local_output(url, last=["dataset.json"]) as local:
        (local / "x.npy").write_bytes(b"x" * 100)
        (local / "dataset.json").write_text("{}")
    name, _, prefix = url[len("s3://") :].partition("/")
    boto3.client("s3").delete_object(Bucket=name, Key=f"{prefix}/x.npy")
    _fresh_cache(tmp_path, monkeypatch, "reader")
    with pytest.raises(StorageError, match=r"incomplete.*x\.npy"):
        storage.local_path(url)


def test_single_objects(bucket: str) -> None:
    storage.write_bytes(f"{bucket}/exports/g.json", b"{}")
    assert storage.read_bytes(f"{bucket}/exports/g.json") == b"{}"
    assert storage.exists(f"{bucket}/exports/g.json")
    assert storage.local_path(f"{bucket}/exports/g.json").read_bytes() == b"{}"
    with pytest.raises(StorageError, match="no such object"):
        storage.read_bytes(f"{bucket}/exports/missing.json")
    with pytest.raises(StorageError) as e:
        storage.read_bytes("s3://no-such-bucket-whichvoice/x")
    assert "\n" not in str(e.value)

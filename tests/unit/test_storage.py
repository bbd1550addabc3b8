"""Contract tests for ObjectStore: the same checks against LocalStore and S3Store (moto server)."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.errors import ConfigError, ObjectNotFoundError, StorageError
from pipeline.storage import (
    LocalStore,
    ObjectStore,
    S3Store,
    export_key,
    get_many,
    line_key,
    open_store,
    page_key,
    put_many,
    source_key,
)

SHA = hashlib.sha256(b"doc").hexdigest()
MB = 1024 * 1024


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectStore]:
    if request.param == "local":
        yield LocalStore(tmp_path / "store")
    else:
        endpoint = request.getfixturevalue("s3_server")
        bucket = request.getfixturevalue("s3_bucket")
        # Small pages and parts so pagination and multipart run without big inputs.
        yield S3Store(bucket, "quire/test", endpoint_url=endpoint, page_size=3,
                      multipart_threshold=5 * MB, multipart_chunksize=5 * MB)


def test_put_get_exists_delete(store: ObjectStore) -> None:
    key = source_key(SHA)
    assert not store.exists(key)
    store.put_bytes(key, b"hello", content_type="application/pdf")
    assert store.exists(key)
    assert store.get_bytes(key) == b"hello"
    with store.open_read(key) as fh:
        assert fh.read() == b"hello"
    store.delete(key)
    assert not store.exists(key)
    store.delete(key)  # deleting twice is fine: tasks are retried


def test_many_crops_put_and_got_in_order(store: ObjectStore) -> None:
    keys = [line_key(SHA, "default", 1, i) for i in range(40)]
    put_many(store, [(k, f"crop {i}".encode() * (i + 1)) for i, k in enumerate(keys)],
             content_type="image/png", threads=8)
    # Read back out of key order, many at a time: each answer lands at its own key's place.
    wanted = keys[::-1] + keys[:3]
    assert get_many(store, wanted, threads=8) == [store.get_bytes(k) for k in wanted]
    assert get_many(store, keys[:1]) == [b"crop 0"]
    assert get_many(store, []) == []


def test_many_with_one_missing_key_fails_naming_it(store: ObjectStore) -> None:
    keys = [line_key(SHA, "default", 2, i) for i in range(10)]
    put_many(store, [(k, b"x") for k in keys], threads=4)
    missing = line_key(SHA, "default", 2, 99)
    with pytest.raises(ObjectNotFoundError, match="99"):
        get_many(store, keys[:5] + [missing] + keys[5:], threads=4)


def test_missing_key_raises_not_found(store: ObjectStore, tmp_path: Path) -> None:
    with pytest.raises(ObjectNotFoundError):
        store.get_bytes("documents/nope/source")
    with pytest.raises(ObjectNotFoundError):
        store.open_read("documents/nope/source")
    with pytest.raises(ObjectNotFoundError):
        store.download_file("documents/nope/source", tmp_path / "out")
    assert not ObjectNotFoundError("x").retryable


@pytest.mark.parametrize("key", ["../x", "a/../b", "/abs", "a//b", "a/", "", "a\\b"])
def test_bad_keys_rejected(store: ObjectStore, key: str) -> None:
    with pytest.raises(StorageError):
        store.put_bytes(key, b"x")


def test_list_prefix_and_pagination(store: ObjectStore) -> None:
    keys = [page_key(SHA, "p1", n) for n in range(1, 8)]
    other = hashlib.sha256(b"other").hexdigest()
    keys += [source_key(SHA), source_key(other), "documents-index", "zzz"]
    for k in keys:
        store.put_bytes(k, k.encode())
    listed = list(store.list(""))
    assert [o.key for o in listed] == sorted(keys)  # S3 byte order, also for LocalStore
    assert all(o.size == len(o.key.encode()) for o in listed)
    pages = list(store.list(f"documents/{SHA}/p1/pages/"))
    assert [o.key for o in pages] == sorted(keys[:7])
    assert [o.key for o in store.list(f"documents/{SHA}/p1/pages/000")] == sorted(keys[:7])
    assert [o.key for o in store.list("documents")] == sorted(
        [k for k in keys if k.startswith("documents")])
    assert list(store.list("nothing/here/")) == []


def test_list_is_lazy(store: ObjectStore) -> None:
    for n in range(1, 8):
        store.put_bytes(page_key(SHA, "p1", n), b"x")
    it = store.list("documents/")
    first = next(it)
    assert first.key == page_key(SHA, "p1", 1)


@pytest.mark.parametrize("kernel", ["copies", "cannot", "copies nothing", "stops half way"])
def test_a_local_store_copies_a_file_whole_however_the_kernel_answers(tmp_path, monkeypatch, kernel):
    """copy_file_range may refuse (another file system), or answer 0 at once (some file systems
    cannot), or copy part: the store's copy is the whole file every time."""
    import errno

    src = tmp_path / "scan.pdf"
    data = os.urandom(3 * MB + 123)
    src.write_bytes(data)
    real = os.copy_file_range
    copied: list[int] = []

    def kernel_copy(fd_in: int, fd_out: int, count: int, *args) -> int:
        if kernel == "cannot":
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        if kernel == "copies nothing" or (kernel == "stops half way" and copied):
            return 0
        copied.append(real(fd_in, fd_out, MB if kernel == "stops half way" else count, *args))
        return copied[-1]

    monkeypatch.setattr(os, "copy_file_range", kernel_copy)
    store = LocalStore(tmp_path / "store")
    store.put_file(source_key(SHA), src)
    assert store.get_bytes(source_key(SHA)) == data
    assert sum(copied) == {"copies": len(data), "stops half way": MB}.get(kernel, 0)


def test_put_file_multipart_round_trip(store: ObjectStore, tmp_path: Path) -> None:
    src = tmp_path / "big.bin"
    data = os.urandom(MB) * 20  # 20 MB; above the 5 MB threshold: 4 parts on S3
    src.write_bytes(data)
    key = source_key(SHA)
    store.put_file(key, src)
    out = tmp_path / "back.bin"
    store.download_file(key, out)
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(data).digest()
    [info] = list(store.list(key))
    assert info.size == len(data)
    if isinstance(store, S3Store):
        assert info.etag and info.etag.endswith("-4")  # the multipart ETag shape


def test_overwrite_is_atomic(store: ObjectStore) -> None:
    key = export_key(SHA, "p1", "text")
    a, b = b"a" * 2 * MB, b"b" * 2 * MB
    store.put_bytes(key, a)
    seen: set[bytes] = set()
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            data = store.get_bytes(key)
            seen.add(data[:1] + bytes([len(set(data))]) + len(data).to_bytes(4, "big"))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(10):
            store.put_bytes(key, b if i % 2 == 0 else a)
    finally:
        stop.set()
        reader.join()
    # Every read was one whole version: a single repeated byte, never a mix or a truncation.
    size = (2 * MB).to_bytes(4, "big")
    assert seen and seen <= {b"a\x01" + size, b"b\x01" + size}
    assert store.get_bytes(key) == a
    assert [o.key for o in store.list("documents/")] == [key]  # no temp files left behind


def test_url(store: ObjectStore) -> None:
    key = source_key(SHA)
    if isinstance(store, LocalStore):
        assert store.url(key) == (store.root / key).as_uri()
    else:
        assert store.url(key) == f"s3://{store.bucket}/quire/test/{key}"


def test_key_layout() -> None:
    assert source_key(SHA) == f"documents/{SHA}/source"
    assert page_key(SHA, "ab12", 1) == f"documents/{SHA}/ab12/pages/0001.png"
    assert line_key(SHA, "ab12", 1, 3) == f"documents/{SHA}/ab12/lines/0001/0003.png"
    # A --redo's reading in progress: apart from the reading it is to replace.
    assert page_key(SHA, "ab12", 1, "r-1") == f"documents/{SHA}/ab12/readings/r-1/pages/0001.png"
    assert line_key(SHA, "ab12", 1, 3, "r-1") == f"documents/{SHA}/ab12/readings/r-1/lines/0001/0003.png"
    assert export_key(SHA, "ab12", "text") == f"documents/{SHA}/ab12/exports/text.txt"
    assert export_key(SHA, "ab12", "alto") == f"documents/{SHA}/ab12/exports/alto.xml"
    with pytest.raises(ValueError):
        source_key("../etc")
    with pytest.raises(ValueError):
        page_key(SHA, "a/b", 1)
    with pytest.raises(ValueError):
        page_key(SHA, "ab12", 1, "../x")


def test_open_store(tmp_path: Path, s3_server: str, s3_bucket: str) -> None:
    local = open_store(str(tmp_path / "a"))
    assert isinstance(local, LocalStore) and local.root == tmp_path / "a"
    by_url = open_store((tmp_path / "b c").as_uri())
    assert isinstance(by_url, LocalStore) and by_url.root == tmp_path / "b c"
    s3 = open_store(f"s3://{s3_bucket}/some/prefix/", s3_endpoint_url=s3_server)
    assert isinstance(s3, S3Store) and (s3.bucket, s3.prefix) == (s3_bucket, "some/prefix")
    s3.put_bytes("k", b"v")
    assert open_store(f"s3://{s3_bucket}", s3_server).get_bytes("some/prefix/k") == b"v"
    with pytest.raises(ConfigError):
        open_store("ftp://host/x")
    with pytest.raises(ConfigError):
        open_store("s3:///nobucket")


def test_s3_errors_translated(s3_server: str) -> None:
    store = S3Store("no-such-bucket-here", endpoint_url=s3_server)
    with pytest.raises(StorageError) as exc:
        store.put_bytes("k", b"v")
    assert not isinstance(exc.value, ObjectNotFoundError) and exc.value.retryable
    dead = S3Store("b", endpoint_url="http://127.0.0.1:9")  # nothing listens on the discard port
    dead.client.meta.config.retries = {"max_attempts": 0}
    with pytest.raises(StorageError):
        dead.get_bytes("k")


def test_a_failed_listing_names_its_cause_not_the_prefix(s3_server: str) -> None:
    """`quire watch s3://bucket/inbox/` against a missing bucket or a dead endpoint: the error
    says why the listing failed (a prefix ending in "/" was checked as a key and hid it)."""
    missing = S3Store("no-such-bucket-here", endpoint_url=s3_server)
    with pytest.raises(StorageError, match=r"list inbox/ failed: NoSuchBucket") as exc:
        list(missing.list("inbox/"))
    assert str(exc.value).startswith("s3://no-such-bucket-here/inbox: ")
    dead = S3Store("b", endpoint_url="http://127.0.0.1:9")
    dead.client.meta.config.retries = {"max_attempts": 0}
    with pytest.raises(StorageError, match=r"list inbox/ failed: Could not connect"):
        list(dead.list("inbox/"))

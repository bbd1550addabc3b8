"""Object storage: the ObjectStore protocol, a local-directory store and an S3 store, key layout."""

from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Protocol, TypeVar, cast, runtime_checkable
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

import boto3
from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from pipeline.errors import ConfigError, ObjectNotFoundError, StorageError

# ---------------------------------------------------------------------------------------------
# Key layout: everything about one source file lives under documents/<sha256>/, and results
# for one model+settings profile under documents/<sha256>/<profile>/. Keys are deterministic,
# so a task that runs twice overwrites the same objects instead of leaving strays.

_SHA256 = re.compile(r"[0-9a-f]{64}")
_PROFILE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_EXPORT_EXT = {"text": "txt", "json": "json", "hocr": "hocr", "alto": "xml",
               "page": "xml", "pdf": "pdf"}


def _check_doc(sha256: str, profile: str | None = None) -> None:
    if not _SHA256.fullmatch(sha256):
        raise ValueError(f"not a lowercase hex SHA-256: {sha256!r}")
    if profile is not None and not _PROFILE.fullmatch(profile):
        raise ValueError(f"profile must be 1-64 of [A-Za-z0-9_-]: {profile!r}")


def source_key(sha256: str) -> str:
    """Where a document's original bytes are kept: documents/<sha256>/source."""
    _check_doc(sha256)
    return f"documents/{sha256}/source"


def _reading_folder(sha256: str, profile: str, reading: str | None) -> str:
    _check_doc(sha256, profile)
    if reading is None:
        return f"documents/{sha256}/{profile}/"
    if not _PROFILE.fullmatch(reading):
        raise ValueError(f"reading must be 1-64 of [A-Za-z0-9_-]: {reading!r}")
    return f"documents/{sha256}/{profile}/readings/{reading}/"


def page_key(sha256: str, profile: str, page_no: int, reading: str | None = None,
             extension: str = "png") -> str:
    """A rendered page image: documents/<sha256>/<profile>/pages/0001.png (1-based page; .jpg
    where pipeline.page_images keeps it as a JPEG). A `quire run --redo` reading keeps its own
    under .../readings/<reading id>/pages/, so the earlier reading's images stay as they are
    until the new reading takes its place."""
    if extension not in ("png", "jpg"):
        raise ValueError(f"page image extension must be png or jpg: {extension!r}")
    return f"{_reading_folder(sha256, profile, reading)}pages/{page_no:04d}.{extension}"


def line_key(sha256: str, profile: str, page_no: int, position: int, reading: str | None = None) -> str:
    """A line crop: documents/<sha256>/<profile>/lines/<page:04>/<position:04>.png (a --redo's
    under .../readings/<reading id>/lines/, as `page_key`)."""
    return f"{_reading_folder(sha256, profile, reading)}lines/{page_no:04d}/{position:04d}.png"


def reading_prefix(sha256: str, profile: str) -> str:
    """Everything of one document (bytes and profile): documents/<sha256>/<profile>/, its
    page images, crops, exports and --redo readings; no other document's keys are under it."""
    return _reading_folder(sha256, profile, None)


def key_document(key: str) -> tuple[str, str | None] | None:
    """Whose key this is: (sha256, profile) under documents/<sha256>/<profile>/, (sha256, None)
    for a source, None for a key outside documents/."""
    parts = key.split("/")
    if len(parts) < 3 or parts[0] != "documents" or not _SHA256.fullmatch(parts[1]):
        return None
    return parts[1], None if len(parts) == 3 else parts[2]


def exports_prefix(sha256: str, profile: str) -> str:
    """The folder of a document's exports under one profile: documents/<sha256>/<profile>/exports/."""
    _check_doc(sha256, profile)
    return f"documents/{sha256}/{profile}/exports/"


def exports_written(store: ObjectStore, sha256: str, profile: str) -> set[str]:
    """The formats ('text', 'alto', ...) a document has exports of in the store."""
    folder = exports_prefix(sha256, profile)
    return {info.key[len(folder):].split(".", 1)[0] for info in store.list(folder)}


def export_key(sha256: str, profile: str, fmt: str, ext: str | None = None) -> str:
    """An export: documents/<sha256>/<profile>/exports/<fmt>.<ext> (ext defaults per format)."""
    if not _PROFILE.fullmatch(fmt):
        raise ValueError(f"bad export format name: {fmt!r}")
    return f"{exports_prefix(sha256, profile)}{fmt}.{ext or _EXPORT_EXT.get(fmt, fmt)}"


def check_key(key: str) -> str:
    """Reject keys that could escape the store's root or mean different things per backend."""
    parts = key.split("/")
    if not key or key.startswith("/") or "\\" in key or "\x00" in key or any(
        p in ("", ".", "..") for p in parts
    ):
        raise StorageError(f"invalid object key {key!r}")
    return key


def check_prefix(prefix: str) -> str:
    """A listing prefix: like a key, but may be empty, partial, or end with '/'."""
    if prefix.endswith("//"):
        raise StorageError(f"invalid prefix {prefix!r}")
    if prefix.rstrip("/"):
        check_key(prefix.rstrip("/"))
    return prefix


# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ObjectInfo:
    """One stored object as listed: key relative to the store, size, and what the backend knows."""

    key: str
    size: int
    etag: str | None = None
    mtime: datetime | None = None


@runtime_checkable
class ObjectStore(Protocol):
    """What drivers need from a blob store; keys are '/'-separated and relative to the store."""

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None: ...
    def put_file(self, key: str, path: str | os.PathLike[str]) -> None: ...
    def get_bytes(self, key: str) -> bytes: ...
    def open_read(self, key: str) -> IO[bytes]: ...
    def download_file(self, key: str, path: str | os.PathLike[str]) -> None: ...
    def exists(self, key: str) -> bool: ...
    def delete(self, key: str) -> None: ...
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]: ...
    def url(self, key: str) -> str: ...


# Line crops are many small objects, one request each: against a remote S3 each request's round
# trip, not its few kilobytes, sets the pace, so a batch's crops go this many at a time
# (bench/bench_fetch.py). S3Store keeps as many connections open.
TRANSFER_THREADS = 16
T = TypeVar("T")
R = TypeVar("R")


def _in_threads(call: Callable[[T], R], items: Sequence[T], threads: int) -> list[R]:
    """`call` on each item, `threads` at a time, results in the order given; the first failure
    (in that order) is raised once all calls have ended."""
    if threads <= 1 or len(items) <= 1:
        return [call(item) for item in items]
    with ThreadPoolExecutor(min(threads, len(items))) as pool:
        return list(pool.map(call, items))


def get_many(store: ObjectStore, keys: Sequence[str], threads: int = TRANSFER_THREADS) -> list[bytes]:
    """Each key's bytes, in the order given, `threads` requests at a time."""
    return _in_threads(store.get_bytes, keys, threads)


def put_many(store: ObjectStore, items: Sequence[tuple[str, bytes]], content_type: str | None = None,
             threads: int = TRANSFER_THREADS) -> None:
    """Store each (key, bytes) pair, `threads` requests at a time."""
    _in_threads(lambda item: store.put_bytes(item[0], item[1], content_type), items, threads)


def delete_many(store: ObjectStore, keys: Sequence[str], threads: int = TRANSFER_THREADS, *,
                deadline: float | None = None) -> None:
    """Delete each key (a missing one is fine), `threads` requests at a time. `deadline` (a
    time.monotonic() value): no request is begun after it; StorageError then, the keys not begun
    left as they are."""
    if deadline is None:
        _in_threads(store.delete, keys, threads)
        return

    def delete_before(key: str) -> None:
        if time.monotonic() > deadline:
            raise StorageError("the deletes took too long; the rest is left for later")
        store.delete(key)

    _in_threads(delete_before, keys, threads)


_TMP_PREFIX = ".quire-tmp-"


def _copy_file(src: IO[bytes], dst: IO[bytes]) -> None:
    """The kernel copies (copy_file_range): the bytes never pass through Python, and on btrfs,
    XFS (and ZFS with block cloning) the copy within one file system shares the source's blocks
    instead of writing them again, so keeping each scan of an archive in the store takes no more
    disk. Read and written where it cannot."""
    if hasattr(os, "copy_file_range"):
        try:
            while os.copy_file_range(src.fileno(), dst.fileno(), 1 << 30):
                pass
        except OSError as e:  # another file system (before Linux 5.3), or one that cannot
            if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                raise
    # Whatever the kernel did not copy (on some file systems all of it: it may answer 0 at
    # once) is read and written from where it left both files.
    shutil.copyfileobj(src, dst, 1 << 20)


class LocalStore:
    """A directory as an object store; writes go to a temp file and are renamed into place."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _write(self, key: str, write: Any) -> None:
        dest = self._path(key)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            # Temp file in the same directory so os.replace is an atomic rename: readers see
            # the old object or the new one, never a half-written file.
            fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=dest.parent)
            try:
                with os.fdopen(fd, "wb") as fh:
                    write(fh)
                os.replace(tmp, dest)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as e:
            raise StorageError(f"cannot write {key}: {e}", source=str(dest)) from e

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        self._write(key, lambda fh: fh.write(data))

    def put_file(self, key: str, path: str | os.PathLike[str]) -> None:
        def copy(fh: IO[bytes]) -> None:
            with open(path, "rb") as src:
                _copy_file(src, fh)

        self._write(key, copy)

    def open_read(self, key: str) -> IO[bytes]:
        path = self._path(key)
        try:
            return open(path, "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as e:
            raise ObjectNotFoundError(f"no such object {key}", source=self.url(key)) from e
        except OSError as e:
            raise StorageError(f"cannot read {key}: {e}", source=str(path)) from e

    def get_bytes(self, key: str) -> bytes:
        with self.open_read(key) as fh:
            return fh.read()

    def download_file(self, key: str, path: str | os.PathLike[str]) -> None:
        with self.open_read(key) as src, open(path, "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        """Remove an object; a missing one is fine (deletes must be safe to repeat)."""
        try:
            self._path(key).unlink(missing_ok=True)
        except OSError as e:
            raise StorageError(f"cannot delete {key}: {e}") from e

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects whose key starts with prefix, in S3's byte order, walking lazily."""
        # Only the directory the prefix names needs walking.
        base = check_prefix(prefix).rsplit("/", 1)[0] if "/" in prefix else ""
        start = self.root / base if base else self.root
        yield from self._walk(start, f"{base}/" if base else "", prefix)

    def _walk(self, d: Path, rel: str, prefix: str) -> Iterator[ObjectInfo]:
        try:
            entries = list(os.scandir(d))
        except (FileNotFoundError, NotADirectoryError):
            return
        # Sorting directories as "name/" reproduces S3's order of full keys ("a-b" < "a/b").
        keyed = sorted(((e.name + "/" if e.is_dir() else e.name), e) for e in entries)
        for name, entry in keyed:
            key = rel + name
            if entry.is_dir():
                if key.startswith(prefix) or prefix.startswith(key):
                    yield from self._walk(Path(entry.path), key, prefix)
            elif key.startswith(prefix) and not name.startswith(_TMP_PREFIX):
                st = entry.stat()
                mtime = datetime.fromtimestamp(st.st_mtime, tz=UTC)
                yield ObjectInfo(key=key, size=st.st_size, etag=None, mtime=mtime)

    def url(self, key: str) -> str:
        return self._path(key).as_uri()


_MISSING_CODES = {"404", "NoSuchKey", "NotFound"}


def _translate(e: Exception, what: str, url: str) -> StorageError:
    """botocore's errors as Quire's: a missing key is final, anything else may be retried."""
    cause = e.__cause__ if isinstance(e, S3UploadFailedError) else e
    if isinstance(cause, ClientError):
        code = str(cause.response.get("Error", {}).get("Code", ""))
        if code in _MISSING_CODES:
            return ObjectNotFoundError(f"no such object ({what})", source=url)
        return StorageError(f"{what} failed: {code or cause}", source=url)
    return StorageError(f"{what} failed: {e}", source=url)


class S3Store:
    """An S3 bucket (AWS, MinIO, any S3 server) under an optional key prefix."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        *,
        page_size: int = 1000,
        multipart_threshold: int = 64 * 1024 * 1024,
        multipart_chunksize: int = 16 * 1024 * 1024,
        client: Any = None,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.page_size = page_size
        self.transfer = TransferConfig(
            multipart_threshold=multipart_threshold,
            multipart_chunksize=multipart_chunksize,
            use_threads=True,
            max_concurrency=4,
        )
        # Path-style addressing when an endpoint is given: MinIO and test servers have no
        # per-bucket DNS names. Standard retries absorb throttling and brief outages.
        config = Config(
            retries={"max_attempts": 5, "mode": "standard"},
            s3={"addressing_style": "path"} if endpoint_url else {},
            connect_timeout=10,
            read_timeout=60,
            max_pool_connections=TRANSFER_THREADS,  # one per thread of get_many and put_many
        )
        self.client = client or boto3.session.Session().client(
            "s3", endpoint_url=endpoint_url, config=config
        )

    def __repr__(self) -> str:
        return f"S3Store({self.url('')!r})"

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        extra: dict[str, Any] = {"ContentType": content_type} if content_type else {}
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **extra)
        except (ClientError, BotoCoreError) as e:
            raise _translate(e, f"put {key}", self.url(key)) from e

    def put_file(self, key: str, path: str | os.PathLike[str]) -> None:
        """Upload a file; above the multipart threshold it goes up in parallel parts."""
        try:
            self.client.upload_file(str(path), self.bucket, self._key(key), Config=self.transfer)
        except (ClientError, BotoCoreError, S3UploadFailedError) as e:
            raise _translate(e, f"upload {key}", self.url(key)) from e

    def open_read(self, key: str) -> IO[bytes]:
        try:
            resp = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        except (ClientError, BotoCoreError) as e:
            raise _translate(e, f"get {key}", self.url(key)) from e
        # botocore's StreamingBody is an io.IOBase (read, iteration, with-blocks), not typed IO.
        return cast(IO[bytes], resp["Body"])

    def get_bytes(self, key: str) -> bytes:
        with self.open_read(key) as body:
            try:
                return body.read()
            except (ClientError, BotoCoreError) as e:
                raise _translate(e, f"read {key}", self.url(key)) from e

    def download_file(self, key: str, path: str | os.PathLike[str]) -> None:
        try:
            self.client.download_file(self.bucket, self._key(key), str(path), Config=self.transfer)
        except (ClientError, BotoCoreError) as e:
            raise _translate(e, f"download {key}", self.url(key)) from e

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except (ClientError, BotoCoreError) as e:
            err = _translate(e, f"head {key}", self.url(key))
            if isinstance(err, ObjectNotFoundError):
                return False
            raise err from e

    def delete(self, key: str) -> None:
        """Remove an object; S3 already treats deleting a missing key as success."""
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except (ClientError, BotoCoreError) as e:
            raise _translate(e, f"delete {key}", self.url(key)) from e

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects under prefix, fetched one page at a time as the caller iterates."""
        full = (f"{self.prefix}/" if self.prefix else "") + check_prefix(prefix)
        strip = len(self.prefix) + 1 if self.prefix else 0
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=full, PaginationConfig={"PageSize": self.page_size}
        )
        try:
            for page in pages:
                for obj in page.get("Contents", ()):
                    yield ObjectInfo(
                        key=obj["Key"][strip:],
                        size=int(obj["Size"]),
                        etag=str(obj.get("ETag", "")).strip('"') or None,
                        mtime=obj.get("LastModified"),
                    )
        except (ClientError, BotoCoreError) as e:
            # Not self.url(prefix): a prefix ending in "/" is no valid key, and checking it as one
            # would hide the failure (no credentials, endpoint down) behind "invalid object key".
            where = f"s3://{self.bucket}/{full}".rstrip("/")
            raise _translate(e, f"list {prefix or '/'}", where) from e

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key) if key else self.prefix}".rstrip("/")


def open_store(url: str, s3_endpoint_url: str | None = None) -> ObjectStore:
    """A store from file:///path, a plain path, or s3://bucket/prefix."""
    parsed = urlparse(url)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ConfigError(f"S3 URL without a bucket: {url!r}")
        return S3Store(parsed.netloc, parsed.path.strip("/"), endpoint_url=s3_endpoint_url)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise ConfigError(f"file URL with a remote host: {url!r}")
        return LocalStore(url2pathname(unquote(parsed.path)))
    if parsed.scheme == "" or (len(parsed.scheme) == 1 and os.name == "nt"):
        return LocalStore(url)
    raise ConfigError(f"unsupported storage URL {url!r}: use a path, file:// or s3://")

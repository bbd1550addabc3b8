"""The clean-up deletes store objects outside any transaction (pipeline.cleanup): on both backends
and a real S3 server behind a real HTTP proxy that holds every DELETE until the test lets it go,
another writer goes on meanwhile, a submission of the file being cleaned up waits for the deletes
to end and then has its objects, and a claim left by a killed clean-up holds nothing up."""

from __future__ import annotations

import hashlib
import http.client
import subprocess
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Self
from urllib.parse import urlparse

import pytest
import sqlalchemy as sa

from pipeline import cleanup, deletion, run_process, storage
from pipeline.db import job_rows, locks, repo
from pipeline.db.models import ContentClaim, utcnow
from pipeline.db.session import session_scope
from tests.local_http import QuietHandler, serve
from tests.unit.test_delete_races import OPTIONS, count, read, send, sent_and_read, text_of

# How long the test gives a write that nothing should hold up. Before the change, the clean-up
# held SQLite's write lock through the held DELETEs (up to HOLD_S), so it took that long.
WRITE_BOUND_S = 10.0
HOLD_S = 30.0


class HeldDeletes:
    """A real HTTP proxy in front of the S3 server: requests go through as they are, but a DELETE
    waits (up to HOLD_S) until `release` is set; `arrived` says one came."""

    def __init__(self, upstream: str) -> None:
        self.upstream = urlparse(upstream)
        self.arrived, self.release = threading.Event(), threading.Event()
        proxy = self

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.1"

            def forward(self) -> None:
                if self.command == "DELETE":
                    proxy.arrived.set()
                    proxy.release.wait(HOLD_S)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                conn = http.client.HTTPConnection(proxy.upstream.hostname or "127.0.0.1",
                                                  proxy.upstream.port, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items()
                               if k.lower() not in ("connection", "expect")}
                    conn.request(self.command, self.path, body=body, headers=headers)
                    response = conn.getresponse()
                    data = response.read()
                    self.send_response(response.status, response.reason)
                    for key, value in response.getheaders():
                        if key.lower() not in ("connection", "transfer-encoding", "content-length"):
                            self.send_header(key, value)
                    size = response.getheader("Content-Length") if self.command == "HEAD" else None
                    self.send_header("Content-Length", size or str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                finally:
                    conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = forward

        self.handler = Handler

    def __enter__(self) -> Self:
        self.server, self.url = serve(self.handler)
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def store(s3_server, s3_bucket) -> storage.S3Store:
    return storage.S3Store(s3_bucket, endpoint_url=s3_server, prefix="store")


@pytest.fixture
def held(s3_server) -> Iterator[HeldDeletes]:
    with HeldDeletes(s3_server) as proxy:
        yield proxy


@pytest.fixture
def letter(tmp_path) -> Path:
    path = tmp_path / "letter.png"
    path.write_bytes(b"the bytes of a scanned letter")
    return path


class InThread:
    """A call run on a thread of its own; `wait` says whether it ended within the time given."""

    def __init__(self, call) -> None:
        self.result: object = None
        self.error: BaseException | None = None
        self.done = threading.Event()

        def run() -> None:
            try:
                self.result = call()
            except BaseException as exc:  # noqa: BLE001 - handed to the test
                self.error = exc
            finally:
                self.done.set()

        threading.Thread(target=run, daemon=True).start()

    def outcome(self, timeout: float = 60) -> object:
        assert self.done.wait(timeout), "the call never ended"
        if self.error is not None:
            raise self.error
        return self.result


def test_another_writer_goes_on_while_the_clean_up_deletes_and_the_same_file_waits_for_it(
        engine, store, held, letter, tmp_path, s3_bucket) -> None:
    """Alice's document is deleted; its clean-up's DELETEs are held at the proxy. Meanwhile Carol
    sends another file (a write on the same database: on SQLite it used to wait for the whole
    batch of deletes, the clean-up holding the write lock), and Bob sends Alice's file again:
    Carol's goes through at once, Bob's waits for the deletes to end, and Bob's document has its
    source and its page once read."""
    sha = hashlib.sha256(letter.read_bytes()).hexdigest()
    alices = sent_and_read(engine, store, "alice", letter, b"alice's page", "Dear Alice")
    removal = deletion.remove_rows(engine, store, alices, tenant="alice")
    assert removal.deletion is not None and removal.keys == 2
    slow = storage.S3Store(s3_bucket, endpoint_url=held.url, prefix="store")
    cleaning = InThread(lambda: cleanup.finish_deletions(engine, slow, [removal.deletion]))
    assert held.arrived.wait(30), "the clean-up sent no delete"

    other = tmp_path / "other.png"
    other.write_bytes(b"another scan altogether")
    carol = InThread(lambda: send(engine, store, "carol", other))
    carol.outcome(WRITE_BOUND_S)  # not held up by the deletes
    with session_scope(engine) as s:  # a plain write too
        job_rows.create_job(s, settings={}, owner="dave")
    bob = InThread(lambda: send(engine, store, "bob", letter))
    assert not bob.done.wait(1.0), "a document of the file was made while its objects were deleted"
    assert count(engine, "SELECT count(*) FROM content_claims") == 1

    held.release.set()
    assert cleaning.outcome() == 2
    _, bobs, outcome = bob.outcome()  # type: ignore[misc]
    assert outcome == "queued" and bobs != alices
    assert store.exists(storage.source_key(sha))  # put back by Bob's submission
    read(engine, store, bobs, b"bob's page", "Dear Bob")
    assert text_of(engine, bobs) == ["Dear Bob"]
    assert store.get_bytes(storage.page_key(sha, OPTIONS.profile, 1)) == b"bob's page"
    assert count(engine, "SELECT count(*) FROM pending_deletions") == 0
    assert count(engine, "SELECT count(*) FROM content_claims") == 0


def test_a_failed_batch_lets_go_of_its_claims(engine, store, letter, monkeypatch) -> None:
    """The store failing mid-batch: the record keeps the batch for the next run, and the claims
    go, so the file can be sent again at once."""
    from pipeline.errors import StorageError

    sha = hashlib.sha256(letter.read_bytes()).hexdigest()
    alices = sent_and_read(engine, store, "alice", letter, b"alice's page", "Dear Alice")
    removal = deletion.remove_rows(engine, store, alices, tenant="alice")
    assert removal.deletion is not None

    def down(*args, **kwargs) -> None:
        raise StorageError("the store is down")

    monkeypatch.setattr(storage, "delete_many", down)
    assert cleanup.finish_deletions(engine, store, [removal.deletion]) == 0
    assert count(engine, "SELECT count(*) FROM content_claims") == 0
    assert count(engine, "SELECT count(*) FROM pending_deletions") == 1
    _, _, outcome = send(engine, store, "bob", letter)
    assert outcome == "queued"
    monkeypatch.undo()
    assert deletion.finish_pending(engine, store) == 0  # Bob's now: kept
    assert store.exists(storage.source_key(sha))
    assert count(engine, "SELECT count(*) FROM pending_deletions") == 0


def claim_of(engine, sha: str, holder: dict, expires_in_s: float) -> None:
    with session_scope(engine) as s:
        s.add(ContentClaim(sha256=sha, holder=holder,
                           expires_at=utcnow() + timedelta(seconds=expires_in_s)))


def test_a_claim_holds_until_its_process_is_gone_or_it_expires(engine, store, letter) -> None:
    """A clean-up killed during its deletes leaves its claim: on its own host it stops holding once
    its process is gone; from another host, once it expires. One alive and in time holds."""
    sha = hashlib.sha256(letter.read_bytes()).hexdigest()
    ended = subprocess.Popen(["true"])
    ended.wait()
    claim_of(engine, sha, {**run_process.this_process(), "pid": ended.pid, "start": None}, 600)
    claim_of(engine, sha, {"host": "another-host", "pid": 1}, -1)
    _, first, outcome = send(engine, store, "bob", letter)  # not held up
    assert outcome == "queued"
    assert count(engine, "SELECT count(*) FROM content_claims") == 0  # dropped on the way

    claim_of(engine, hashlib.sha256(b"x").hexdigest(), run_process.this_process(), 600)
    claim_of(engine, hashlib.sha256(b"y").hexdigest(), {"host": "another-host", "pid": 1}, 600)
    for content in (b"x", b"y"):
        with pytest.raises(locks.ContentClaimedError), session_scope(engine) as s:
            repo.upsert_document(s, sha256=hashlib.sha256(content).hexdigest(), profile="p",
                                 name="x", source_uri="file:///x", size_bytes=1)
    with session_scope(engine) as s:  # a document already there is never held up
        assert repo.upsert_document(s, sha256=sha, profile=OPTIONS.profile, name="x",
                                    source_uri="file:///x", size_bytes=1)[0].id == first
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM content_claims"))

"""Pieces of the distributed driver without servers (SQLite, local store, moto S3): batches,
line leases, checkpoints, resumable submission, the watcher, webhook signatures."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pipeline import storage
from pipeline.config import Settings
from pipeline.db import job_rows, repo
from pipeline.db import jobs as jobrepo
from pipeline.db.session import make_engine, session_scope, upgrade
from pipeline.queue import INGEST
from pipeline.submit import JobOptions, Submitter, iter_local
from pipeline.types import BBox
from pipeline.watch import Watcher
from pipeline.webhooks import sign, verify
from workers.batching import WidthBatcher

OPTIONS = JobOptions(model="m", dpi=150, beam=1)


@pytest.fixture
def env(tmp_path, sqlite_url):
    upgrade(sqlite_url)
    sent: list[tuple] = []
    engine = make_engine(sqlite_url)
    store = storage.LocalStore(tmp_path / "store")
    submitter = Submitter(engine, store, OPTIONS, enqueue=lambda *a: sent.append(a))
    return engine, store, submitter, sent


def test_width_batcher_groups_similar_widths_and_flushes_the_rest():
    batcher = WidthBatcher(2, pool_batches=2)
    assert list(batcher.add([(1, 500), (2, 90)])) == []
    assert list(batcher.add([(3, 480), (4, 100), (5, 300)])) == [[2, 4], [5, 3]]
    assert list(batcher.flush()) == [[1]]
    assert list(batcher.flush()) == []


def test_webhook_signature_verifies_and_refuses_tampering_or_staleness():
    sig = sign("s", "1000", b"{}")
    assert verify("s", "1000", b"{}", sig, now=1010)
    assert not verify("s", "1000", b"{ }", sig, now=1010)
    assert not verify("other", "1000", b"{}", sig, now=1010)
    assert not verify("s", "1000", b"{}", sig, now=5000)


def _document_with_lines(engine, sha: str, n: int, profile: str = "p") -> list[int]:
    with session_scope(engine) as s:
        doc, _ = repo.upsert_document(s, sha256=sha, profile=profile, name="d", source_uri="u",
                                      size_bytes=1)
        repo.start_document(s, doc.id)  # under way, as ingest marks it
        page = repo.save_page(s, doc.id, number=1, image_key="k", width=9, height=9, dpi=1,
                              angle=0)
        lines = repo.save_lines(s, page.id, [(i, BBox(0, i, 10 + i, i + 1), f"c{i}")
                                             for i in range(n)])
        return [ln.id for ln in lines]


def test_claim_lines_tops_up_from_other_documents_and_respects_leases(env):
    engine = env[0]
    a = _document_with_lines(engine, "a" * 64, 2)
    b = _document_with_lines(engine, "b" * 64, 3)
    other_profile = _document_with_lines(engine, "c" * 64, 3, profile="q")
    with session_scope(engine) as s:
        first = jobrepo.claim_lines(s, a, profile="p", extra=2, lease_s=60)
    assert [lid for lid, _, _ in first] == a + b[:2]  # topped up, same profile only
    with session_scope(engine) as s:
        second = jobrepo.claim_lines(s, b, profile="p", extra=5, lease_s=60)
    # Own lines always (a dead peer's lease never strands them); leased extras are not taken.
    assert [lid for lid, _, _ in second] == b
    assert not set(other_profile) & {lid for lid, _, _ in first + second}
    with session_scope(engine) as s:
        repo.set_line_texts(s, [(lid, "t", 1.0) for lid in a], "m")
        assert jobrepo.claim_lines(s, a, profile="p", extra=0, lease_s=60) == []


def test_submission_is_resumable_and_skips_what_it_took_in(env, tmp_path):
    _, _, submitter, sent = env
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    for i, name in enumerate(["b.pdf", "a.pdf", "sub/c.png", ".hidden.pdf", "notes.txt"]):
        (folder / name).write_bytes(b"%PDF" + bytes([i]))
    names = [s.name for s in iter_local([folder])]
    # Streamed in name order, non-documents left out, named by their path from the folder given.
    assert names == ["in/a.pdf", "in/b.pdf", "in/sub/c.png"]

    job_id, created = submitter.open_job(idempotency_key="run-1")
    it = iter_local([folder])
    assert submitter.add(job_id, next(it)) == "queued"  # then the submitter "dies"
    again, created_again = submitter.open_job(idempotency_key="run-1")
    assert (again, created, created_again) == (job_id, True, False)
    outcomes = [submitter.add(job_id, src) for src in iter_local([folder])]
    assert outcomes == ["skipped", "queued", "queued"]
    assert submitter.close_job(job_id) == "queued"
    assert [t for t, *_ in sent] == [INGEST] * 3 and len({d for _, d, _ in sent}) == 3


def test_folders_linked_in_are_not_walked_and_a_prefix_names_what_it_passes_over(
        tmp_path, s3_server, s3_bucket):
    import boto3

    from pipeline.submit import iter_s3, other_objects

    folder = tmp_path / "in"
    (folder / "box").mkdir(parents=True)
    (folder / "box" / "a.pdf").write_bytes(b"%PDF-1.4")
    (folder / "box" / "loop").symlink_to(folder, target_is_directory=True)  # a link back up
    (folder / "box" / "gone.pdf").symlink_to(tmp_path / "deleted.pdf")  # a link to nothing
    assert [s.name for s in iter_local([folder])] == ["in/box/a.pdf"]  # once, as quire run finds it

    s3 = boto3.client("s3", endpoint_url=s3_server)
    for key in ("inbox/a.pdf", "inbox/notes.txt", "inbox/b/scan.TIF", "inbox/list.xlsx", "out/c.pdf"):
        s3.put_object(Bucket=s3_bucket, Key=key, Body=b"x")
    uri = f"s3://{s3_bucket}/inbox/"
    assert [s.name for s in iter_s3(uri, s3_server)] == ["inbox/a.pdf", "inbox/b/scan.TIF"]  # named by their keys
    assert sorted(other_objects(uri, s3_server)) == ["inbox/list.xlsx", "inbox/notes.txt"]


def test_crash_between_commit_and_send_is_resent(env, tmp_path):
    engine, store, submitter, sent = env
    pdf = tmp_path / "x.pdf"
    pdf.write_bytes(b"%PDF-x")
    job_id, _ = submitter.open_job()

    def crash(*args):
        raise ConnectionError("broker down")

    broken = Submitter(engine, store, OPTIONS, enqueue=crash)
    with pytest.raises(ConnectionError):
        broken.add(job_id, next(iter_local([pdf])), checkpoint="ck")
    assert submitter.resend_unqueued("ck") == 1 and len(sent) == 1
    assert submitter.resend_unqueued("ck") == 0
    assert submitter.add(job_id, next(iter_local([pdf])), checkpoint="ck") == "skipped"


def test_watcher_submits_new_objects_once(env, s3_server, s3_bucket):
    import boto3

    engine, store, _, sent = env
    s3 = boto3.client("s3", endpoint_url=s3_server)
    for key in ("inbox/a.pdf", "inbox/b.tiff", "inbox/readme.md", "other/c.pdf"):
        s3.put_object(Bucket=s3_bucket, Key=key, Body=key.encode())
    watcher = Watcher(engine, store, f"s3://{s3_bucket}/inbox/", OPTIONS,
                      endpoint_url=s3_server, enqueue=lambda *a: sent.append(a))
    first = watcher.scan()
    assert (first.submitted, first.skipped) == (2, 0) and len(sent) == 2
    assert watcher.scan().submitted == 0 and len(sent) == 2  # restart: nothing repeated
    s3.put_object(Bucket=s3_bucket, Key="inbox/a.pdf", Body=b"new version")  # new ETag
    third = watcher.scan()
    assert (third.submitted, third.skipped) == (1, 1) and third.job_id != first.job_id
    keys = {o.key for o in store.list("documents/")}
    assert len([k for k in keys if k.endswith("/source")]) == 3
    with session_scope(engine) as s:
        assert job_rows.get_job(s, first.job_id).documents_total == 2


def test_a_watcher_pass_killed_before_closing_its_job_leaves_it_to_the_next_pass(env, s3_server, s3_bucket):
    """A pass's job takes files until the pass is over, then is closed. A watcher killed before
    that (SIGKILL, a power cut) leaves the job open (running, never done); the restarted
    watcher's next pass goes on with it, and closes it."""
    import boto3

    engine, store, _, sent = env
    s3 = boto3.client("s3", endpoint_url=s3_server)
    s3.put_object(Bucket=s3_bucket, Key="inbox/a.pdf", Body=b"%PDF a")

    def watcher() -> Watcher:
        return Watcher(engine, store, f"s3://{s3_bucket}/inbox/", OPTIONS,
                       endpoint_url=s3_server, enqueue=lambda *a: sent.append(a))

    killed = watcher()
    killed.submitter.close_job = lambda *args, **kwargs: None  # dies before it closes the job
    first = killed.scan()
    with session_scope(engine) as s:
        job = job_rows.get_job(s, first.job_id)
        assert job.accepting and job.documents_total == 1
        [doc] = job_rows.job_documents(s, first.job_id)
        repo.finish_document(s, doc.id, 1)  # its file read: still open, so running, not done
        assert jobrepo.refresh_job(s, first.job_id).status == "running"
    s3.put_object(Bucket=s3_bucket, Key="inbox/b.pdf", Body=b"%PDF b")
    second = watcher().scan()
    assert (second.job_id, second.submitted) == (first.job_id, 1)
    with session_scope(engine) as s:
        job = job_rows.get_job(s, first.job_id)
        assert (job.accepting, job.documents_total, job.idempotency_key) == (False, 2, None)
    assert watcher().scan().job_id is None  # nothing new, nothing left open: no job
    s3.put_object(Bucket=s3_bucket, Key="inbox/c.pdf", Body=b"%PDF c")
    assert watcher().scan().job_id not in (None, first.job_id)


def test_settings_from_environment(monkeypatch):
    monkeypatch.setenv("QUIRE_QUEUE__VISIBILITY_TIMEOUT", "9")
    monkeypatch.setenv("QUIRE_QUEUE__RECOGNIZE_ON", "gpu")
    settings = Settings()
    assert settings.queue.visibility_timeout == 9 and settings.queue.batch_lines() == 128
    from celery import Celery

    from pipeline.queue import RESTORE_S, configure

    conf = configure(Celery("t"), settings).conf
    # A killed worker's task is back within RESTORE_S of its timeout, not ~100 s (kombu's default).
    assert conf.broker_transport_options == {"visibility_timeout": 9, "unacked_restore_interval": RESTORE_S,
                                             "unacked_restore_throttle": 1}
    assert (conf.task_acks_late, conf.task_reject_on_worker_lost,
            conf.worker_prefetch_multiplier, conf.task_serializer) == (True, True, 1, "json")
    assert conf.task_routes["quire.recognize_lines"] == {"queue": "recognize"}


def test_storage_path_independent(tmp_path: Path):
    assert storage.source_key("a" * 64) == f"documents/{'a' * 64}/source"


def test_a_server_that_cannot_be_reached_is_one_line():
    import kombu.exceptions
    import sqlalchemy.exc

    from pipeline.errors import unreachable_server

    refused = sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception(
        'connection to server at "127.0.0.1", port 1 failed: Connection refused\n\tIs it running?'))
    assert unreachable_server(refused) == ('database error (QUIRE_DATABASE_URL): connection to server '
                                           'at "127.0.0.1", port 1 failed: Connection refused')
    old = sqlalchemy.exc.OperationalError("SELECT", {}, Exception("no such column: job_documents.name"))
    assert unreachable_server(old).endswith("; create the schema with `quire db upgrade`")
    broker = kombu.exceptions.OperationalError("Error 111 connecting to 127.0.0.1:1. Connection refused.")
    assert unreachable_server(broker).startswith("cannot reach the broker (QUIRE_BROKER_URL): Error 111")
    assert unreachable_server(ValueError("a bug")) is None  # anything else keeps its traceback


def _deleting(s3, bucket: str, key: str, listing):
    """Wrap a listing so `key` is deleted on the S3 server right after it is listed, before it
    is read (an archive inbox moving a file away mid-pass)."""
    def wrapped(*args, **kwargs):
        for info in listing(*args, **kwargs):
            if info.key == key:
                s3.delete_object(Bucket=bucket, Key=key)
            yield info
    return wrapped


def test_an_object_deleted_between_listing_and_reading_is_passed_over_and_the_pass_goes_on(
        env, s3_server, s3_bucket, caplog):
    import boto3

    engine, store, _, sent = env
    s3 = boto3.client("s3", endpoint_url=s3_server)
    for key in ("inbox/a.pdf", "inbox/b.pdf", "inbox/c.pdf"):
        s3.put_object(Bucket=s3_bucket, Key=key, Body=key.encode())

    def watcher() -> Watcher:
        return Watcher(engine, store, f"s3://{s3_bucket}/inbox/", OPTIONS,
                       endpoint_url=s3_server, enqueue=lambda *a: sent.append(a))

    w = watcher()
    w.bucket.list = _deleting(s3, s3_bucket, "inbox/b.pdf", w.bucket.list)
    with caplog.at_level("WARNING", logger="pipeline.watch"):
        first = w.scan()
    gone = f"s3://{s3_bucket}/inbox/b.pdf"
    assert (first.submitted, first.missing) == (2, [gone]) and len(sent) == 2
    assert [r.getMessage() for r in caplog.records if r.name == "pipeline.watch"] == [
        f"watch: {gone} is missing (deleted since it was listed); passed over"]
    with session_scope(engine) as s:
        job = job_rows.get_job(s, first.job_id)
        assert (job.accepting, job.documents_total, job.idempotency_key) == (False, 2, None)
        assert sorted(d.source_uri for d in job_rows.job_documents(s, first.job_id)) == [
            f"s3://{s3_bucket}/inbox/a.pdf", f"s3://{s3_bucket}/inbox/c.pdf"]

    # No checkpoint was kept for it: put back (the same bytes, the same ETag), it is taken.
    s3.put_object(Bucket=s3_bucket, Key="inbox/b.pdf", Body=b"inbox/b.pdf")
    again = watcher().scan()
    assert (again.submitted, again.skipped, again.missing) == (1, 2, [])
    assert again.job_id not in (None, first.job_id) and len(sent) == 3

    # A pass whose only new object vanished leaves no empty job behind.
    s3.put_object(Bucket=s3_bucket, Key="inbox/d.pdf", Body=b"d")
    w = watcher()
    w.bucket.list = _deleting(s3, s3_bucket, "inbox/d.pdf", w.bucket.list)
    lone = w.scan()
    assert (lone.job_id, lone.submitted, lone.missing) == (None, 0, [f"s3://{s3_bucket}/inbox/d.pdf"])
    assert watcher().scan().job_id is None


def _list_three_and_delete_b_once_listed(s3_server: str, s3_bucket: str, monkeypatch) -> None:
    """inbox/a.pdf, b.pdf and c.pdf in the bucket; `quire submit` lists them for real, and b.pdf
    is deleted on the server as soon as it has been listed."""
    import boto3

    from pipeline import cli_submit
    from pipeline.submit import iter_s3

    s3 = boto3.client("s3", endpoint_url=s3_server)
    for key in ("inbox/a.pdf", "inbox/b.pdf", "inbox/c.pdf"):
        s3.put_object(Bucket=s3_bucket, Key=key, Body=key.encode())

    def sources(specs):
        for src in iter_s3(specs[0], s3_server):
            if src.name == "inbox/b.pdf":
                s3.delete_object(Bucket=s3_bucket, Key="inbox/b.pdf")
            yield src

    monkeypatch.setattr(cli_submit, "_sources", sources)


def test_quire_submit_of_a_prefix_passes_over_an_object_deleted_before_it_is_read(
        env, s3_server, s3_bucket, monkeypatch, capsys):

    from pipeline import cli_submit, submit

    engine, store, _, sent = env
    _list_three_and_delete_b_once_listed(s3_server, s3_bucket, monkeypatch)
    monkeypatch.setattr(cli_submit, "_backend", lambda *a, **k: (None, engine, store))
    monkeypatch.setattr(submit, "Submitter", lambda *a, **k: Submitter(
        *a, **{**k, "enqueue": lambda *m: sent.append(m)}))
    uri = f"s3://{s3_bucket}/inbox/"
    job_id = cli_submit._submit_direct([uri], OPTIONS, "k1", None, None, False)
    err = capsys.readouterr().err
    assert f"quire: s3://{s3_bucket}/inbox/b.pdf is missing (deleted since it was listed); passed over" in err
    assert err.strip().endswith("1 missing, 2 queued") and len(sent) == 2
    with session_scope(engine) as s:
        job = job_rows.get_job(s, job_id)
        assert (job.accepting, job.documents_total) == (False, 2)


def test_quire_submit_api_of_a_prefix_passes_over_an_object_deleted_before_it_is_read(
        env, tmp_path, sqlite_url, s3_server, s3_bucket, monkeypatch):
    """`quire submit --api URL s3://bucket/prefix/`, as without --api: an object deleted after the
    listing is named in one line and passed over, the others are sent and the job is closed."""
    import threading

    import uvicorn
    from typer.testing import CliRunner

    from pipeline.api.app import create_app
    from pipeline.cli import app as cli
    from pipeline.config import get_settings

    engine, _, _, sent = env
    _list_three_and_delete_b_once_listed(s3_server, s3_bucket, monkeypatch)
    settings = Settings(database_url=sqlite_url, storage_url=(tmp_path / "store").as_uri(),
                        s3_endpoint_url=s3_server, broker_url="redis://127.0.0.1:1/0")
    with session_scope(engine) as s:
        token, _ = jobrepo.create_token(s, name="alice")
    server = uvicorn.Server(uvicorn.Config(create_app(settings, enqueue=lambda *m: sent.append(m)),
                                           host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        monkeypatch.setenv("QUIRE_S3_ENDPOINT_URL", s3_server)
        get_settings.cache_clear()
        result = CliRunner().invoke(cli, ["submit", "--api", f"http://127.0.0.1:{port}", "--token", token,
                                          "--no-progress", f"s3://{s3_bucket}/inbox/"])
    finally:
        server.should_exit = True
        thread.join(10)
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    job_id = result.stdout.strip().splitlines()[-1]
    assert (f"quire: s3://{s3_bucket}/inbox/b.pdf is missing (deleted since it was listed); "
            "passed over") in result.stderr
    with session_scope(engine) as s:
        job = job_rows.get_job(s, job_id)
        assert (job.accepting, job.documents_total) == (False, 2)
        assert sorted(d.source_uri for d in job_rows.job_documents(s, job_id)) == [
            f"s3://{s3_bucket}/inbox/a.pdf", f"s3://{s3_bucket}/inbox/c.pdf"]

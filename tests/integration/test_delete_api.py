"""DELETE /v1/documents/{id} on PostgreSQL and an S3 server: a file two tenants sent is one
document; the first tenant's delete only unlinks it, the last one's removes its rows, its search
entries and its objects from the bucket."""

from __future__ import annotations

import boto3
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from pipeline import storage
from pipeline.api.app import create_app
from pipeline.config import Settings
from pipeline.db import job_rows, repo
from pipeline.db import jobs as jobrepo
from pipeline.db.session import make_engine, session_scope, upgrade
from pipeline.types import BBox

pytestmark = pytest.mark.integration

PAYROLL = b"%PDF-1.4 payroll of 1931, sent by two tenants\n"
MINUTES = b"%PDF-1.4 minutes of the board, alice's alone\n"


@pytest.fixture
def api(postgres_url, s3_server, s3_bucket):
    upgrade(postgres_url)
    settings = Settings(database_url=postgres_url, storage_url=f"s3://{s3_bucket}/store",
                        s3_endpoint_url=s3_server, broker_url="redis://127.0.0.1:1/0")
    sent: list[tuple] = []
    client = TestClient(create_app(settings, enqueue=lambda task, *args: sent.append((task, *args))))
    client.engine = make_engine(postgres_url)
    client.sent = sent
    client.store = storage.open_store(settings.resolved_storage_url(), s3_server)
    client.bucket = boto3.client("s3", endpoint_url=s3_server)
    client.bucket_name = s3_bucket
    with session_scope(client.engine) as s:
        client.tokens = {name: {"Authorization": f"Bearer {jobrepo.create_token(s, name=name)[0]}"}
                       for name in ("alice", "bob", "carol")}
    yield client
    client.engine.dispose()


def send(api, tenant: str, name: str, data: bytes) -> tuple[str, str]:
    """(job id, document id) of a one-file upload."""
    r = api.post("/v1/jobs", headers=api.tokens[tenant], files=[("files", (name, data))])
    assert r.status_code == 202, r.text
    with session_scope(api.engine) as s:
        [doc] = job_rows.job_documents(s, r.json()["id"])
        return r.json()["id"], doc.id


def read(api, document_id: str, words: tuple[str, ...]) -> None:
    """What the workers would store for a one-page document: its page image, one crop per line,
    a text export in the bucket; the rows with the text; the document and its jobs done."""
    with session_scope(api.engine) as s:
        doc = repo.get_document(s, document_id)
        sha, profile = doc.sha256, doc.profile
        page = repo.save_page(s, document_id, number=1, image_key=storage.page_key(sha, profile, 1),
                              width=100, height=50, dpi=150, angle=0.0)
        crops = [storage.line_key(sha, profile, 1, i) for i in range(len(words))]
        lines = repo.save_lines(s, page.id, [(i, BBox(0, i * 10, 90, i * 10 + 8), crops[i])
                                             for i in range(len(words))])
        repo.set_line_texts(s, [(ln.id, w, 0.9) for ln, w in zip(lines, words)], "m")
        repo.finish_document(s, document_id, 1)
        for job_id in job_rows.job_ids_for_document(s, document_id):
            jobrepo.refresh_job(s, job_id)
    for key in (storage.page_key(sha, profile, 1), *crops, storage.export_key(sha, profile, "text")):
        api.store.put_bytes(key, b"stored")


def objects(api) -> set[str]:
    listed = api.bucket.list_objects_v2(Bucket=api.bucket_name, Prefix="store/documents/")
    return {o["Key"].removeprefix("store/") for o in listed.get("Contents", [])}


def hits(api, tenant: str, q: str) -> list[str]:
    r = api.get("/v1/search", params={"q": q}, headers=api.tokens[tenant])
    assert r.status_code == 200, r.text
    return [h["document"] for h in r.json()["hits"]]


def count(api, sql: str, **params) -> int:
    with api.engine.connect() as conn:
        return int(conn.execute(sa.text(sql), params).scalar_one())


def test_two_tenants_sharing_a_file_each_delete_it_the_last_removes_it(api):
    alice_job, shared = send(api, "alice", "payroll-1931.pdf", PAYROLL)
    bob_job, same = send(api, "bob", "bob-payroll.pdf", PAYROLL)
    assert same == shared  # one document for both
    _, minutes = send(api, "alice", "minutes.pdf", MINUTES)
    read(api, shared, ("Holloway salary", "paid in full"))
    read(api, minutes, ("Holloway chaired",))
    with session_scope(api.engine) as s:
        sha = repo.get_document(s, shared).sha256
    shared_objects = {k for k in objects(api) if k.startswith(f"documents/{sha}/")}
    kept_objects = objects(api) - shared_objects
    assert f"documents/{sha}/source" in shared_objects and len(shared_objects) == 5  # source, page, 2 crops, export
    assert len(kept_objects) == 4

    # Another tenant cannot delete, or learn of, alice's file.
    assert api.delete(f"/v1/documents/{minutes}", headers=api.tokens["bob"]).status_code == 404
    assert api.delete("/v1/documents/no-such-id", headers=api.tokens["bob"]).status_code == 404

    # Alice lets go of it: bob still has it, whole.
    first = api.delete(f"/v1/documents/{shared}", headers=api.tokens["alice"])
    assert first.status_code == 200, first.text
    assert first.json()["outcome"] == "unlinked" and first.json()["jobs_unlinked"] == 1
    assert "other jobs still use" in first.json()["detail"]
    assert api.get(f"/v1/documents/{shared}", headers=api.tokens["alice"]).status_code == 404
    assert hits(api, "alice", "salary") == [] and hits(api, "alice", "Holloway") == ["minutes.pdf"]
    assert hits(api, "bob", "salary") == ["bob-payroll.pdf"]
    assert api.get(f"/v1/documents/{shared}/text", headers=api.tokens["bob"]).text == "Holloway salary\npaid in full\n"
    assert objects(api) == shared_objects | kept_objects
    alice_view = api.get(f"/v1/jobs/{alice_job}", headers=api.tokens["alice"]).json()
    assert alice_view["documents_count"]["total"] == 0 and alice_view["status"] == "done"
    # Deleting it again is a 404: alice has no job linking it any more.
    assert api.delete(f"/v1/documents/{shared}", headers=api.tokens["alice"]).status_code == 404

    # Bob's delete is the last link: the document, its rows, its index entries and objects go.
    last = api.delete(f"/v1/documents/{shared}", headers=api.tokens["bob"])
    assert last.status_code == 200, last.text
    body = last.json()
    assert (body["outcome"], body["pages"], body["lines"], body["objects_deleted"],
            body["objects_left"]) == ("deleted", 1, 2, 5, 0)
    assert api.get(f"/v1/documents/{shared}", headers=api.tokens["bob"]).status_code == 404
    assert hits(api, "bob", "salary") == []
    assert count(api, "SELECT count(*) FROM documents WHERE id = :d", d=shared) == 0
    assert count(api, "SELECT count(*) FROM pages WHERE document_id = :d", d=shared) == 0
    assert count(api, "SELECT count(*) FROM lines WHERE text LIKE '%salary%' OR text = 'paid in full'") == 0
    assert count(api, "SELECT count(*) FROM pending_deletions") == 0
    assert objects(api) == kept_objects  # alice's minutes untouched
    assert api.get(f"/v1/jobs/{bob_job}", headers=api.tokens["bob"]).json()["documents_count"]["total"] == 0
    assert hits(api, "alice", "Holloway") == ["minutes.pdf"]
    assert api.get(f"/v1/documents/{minutes}/text", headers=api.tokens["alice"]).text == "Holloway chaired\n"


def test_a_document_still_being_read_is_refused_and_kept_then_deleted_once_cancelled(api):
    job_id, document_id = send(api, "alice", "box1/0001.pdf", PAYROLL)  # queued: not read yet
    with session_scope(api.engine) as s:
        jobrepo.begin_ingest(s, document_id)  # a worker has it
    refused = api.delete(f"/v1/documents/{document_id}", headers=api.tokens["alice"])
    assert refused.status_code == 409, refused.text
    assert "being read now" in refused.json()["detail"] and job_id in refused.json()["detail"]
    assert api.get(f"/v1/jobs/{job_id}", headers=api.tokens["alice"]).json()["documents_count"]["total"] == 1
    assert count(api, "SELECT count(*) FROM documents WHERE id = :d", d=document_id) == 1
    assert [k.rsplit("/", 1)[1] for k in objects(api)] == ["source"]

    # Cancelled, nobody reads it any more: it can go, source and all.
    assert api.post(f"/v1/jobs/{job_id}/cancel", headers=api.tokens["alice"]).status_code == 200
    gone = api.delete(f"/v1/documents/{document_id}", headers=api.tokens["alice"])
    assert gone.status_code == 200 and gone.json()["outcome"] == "deleted", gone.text
    assert count(api, "SELECT count(*) FROM documents") == 0 and objects(api) == set()


def test_the_same_file_sent_while_it_is_deleted_is_read_as_a_new_document(api, monkeypatch):
    """Bob uploads the file Alice's document holds while Alice's DELETE has it locked: neither
    request fails (no 500 from a document gone under Bob's link); Alice's goes, Bob's new one is
    read and served, and its source is in the bucket."""
    import threading

    from pipeline.db import deletions

    _, alices = send(api, "alice", "payroll-1931.pdf", PAYROLL)
    read(api, alices, ("Holloway salary",))
    with session_scope(api.engine) as s:
        sha = repo.get_document(s, alices).sha256
    posted: dict = {}
    bob = threading.Thread(target=lambda: posted.update(r=api.post(
        "/v1/jobs", headers=api.tokens["bob"], files=[("files", ("bob-payroll.pdf", PAYROLL))])))
    real = deletions.plan_removal

    def locked_then_bob_uploads(s, document_id, tenant=None):
        plan = real(s, document_id, tenant)
        if bob.ident is None:
            bob.start()
            bob.join(2.0)  # as far as it gets while the delete holds the file
        return plan

    monkeypatch.setattr(deletions, "plan_removal", locked_then_bob_uploads)
    gone = api.delete(f"/v1/documents/{alices}", headers=api.tokens["alice"])
    bob.join(60)
    assert gone.status_code == 200 and gone.json()["outcome"] == "deleted", gone.text
    assert "r" in posted and posted["r"].status_code == 202, posted
    with session_scope(api.engine) as s:
        [bobs] = job_rows.job_documents(s, posted["r"].json()["id"])
        bobs_id = bobs.id
    assert bobs_id != alices
    assert api.get(f"/v1/documents/{alices}", headers=api.tokens["alice"]).status_code == 404
    assert f"documents/{sha}/source" in objects(api)
    read(api, bobs_id, ("Holloway salary",))
    assert api.get(f"/v1/documents/{bobs_id}/text", headers=api.tokens["bob"]).text == "Holloway salary\n"
    assert hits(api, "bob", "salary") == ["bob-payroll.pdf"] and hits(api, "alice", "salary") == []

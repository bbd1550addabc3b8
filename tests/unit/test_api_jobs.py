"""The job API on SQLite and a local store, Celery replaced by a list: auth, tenants, idempotency, limits."""

from __future__ import annotations

import subprocess
import sys

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from pipeline.api.app import create_app
from pipeline.cli import app
from pipeline.config import Settings
from pipeline.db import job_rows, repo
from pipeline.db import jobs as jobrepo
from pipeline.db.models import Job
from pipeline.db.session import make_engine, session_scope, upgrade
from pipeline.queue import INGEST, NOTIFY
from pipeline.types import BBox

PDF = b"%PDF-1.4 not really rendered in these tests\n"


@pytest.fixture
def api(tmp_path, sqlite_url):
    upgrade(sqlite_url)
    settings = Settings(database_url=sqlite_url, storage_url=(tmp_path / "store").as_uri(),
                        broker_url="redis://127.0.0.1:1/0", api={"max_upload_bytes": 4096})
    sent: list[tuple] = []
    app = create_app(settings, enqueue=lambda task, *args: sent.append((task, *args)))
    engine = make_engine(sqlite_url)
    with session_scope(engine) as s:
        alice, _ = jobrepo.create_token(s, name="alice")
        bob, _ = jobrepo.create_token(s, name="bob")
    client = TestClient(app)
    client.engine, client.sent = engine, sent
    client.alice = {"Authorization": f"Bearer {alice}"}
    client.bob = {"Authorization": f"Bearer {bob}"}
    return client


@pytest.fixture
def cli_home(tmp_path, sqlite_url, monkeypatch):
    """The `quire` commands pointed at a migrated SQLite database and a local store."""
    from pipeline.config import get_settings

    upgrade(sqlite_url)
    monkeypatch.setenv("QUIRE_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("QUIRE_STORAGE_URL", (tmp_path / "store").as_uri())
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def upload(api, headers, name="a.pdf", data=PDF, **fields):
    return api.post("/v1/jobs", headers=headers, files=[("files", (name, data))], data=fields)


def complete(engine, document_id: str, texts=("Hello", "world")) -> None:
    """What the workers would do: a page, its lines, their text, the document finished."""
    with session_scope(engine) as s:
        page = repo.save_page(s, document_id, number=1, image_key="k", width=100, height=50,
                              dpi=150, angle=0.0)
        lines = repo.save_lines(s, page.id, [(i, BBox(0, i * 10, 90, i * 10 + 8), f"c{i}")
                                             for i in range(len(texts))])
        repo.set_line_texts(s, [(ln.id, t, 0.9) for ln, t in zip(lines, texts)], "m")
        repo.finish_document(s, document_id, 1)
        for job_id in job_rows.job_ids_for_document(s, document_id):
            jobrepo.refresh_job(s, job_id)


def test_no_or_bad_token_is_401(api):
    assert api.get("/v1/jobs/x").status_code == 401
    assert api.post("/v1/jobs", json={"uris": []}).status_code == 401
    bad = api.get("/v1/jobs/x", headers={"Authorization": "Bearer qk_nope"})
    assert bad.status_code == 401 and "Bearer" in bad.headers["www-authenticate"]


def test_upload_enqueues_ingest_and_job_reports_progress_then_text(api):
    r = upload(api, api.alice, formats="text,json")
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    [(task, document_id, sent_job)] = api.sent
    assert (task, sent_job) == (INGEST, job_id)
    view = api.get(f"/v1/jobs/{job_id}", headers=api.alice).json()
    assert view["status"] == "queued" and view["documents_count"]["total"] == 1
    assert view["percent"] == 0.0 and view["documents"][0]["name"] == "a.pdf"

    complete(api.engine, document_id)
    view = api.get(f"/v1/jobs/{job_id}", headers=api.alice).json()
    assert (view["status"], view["percent"], view["lines"]) == ("done", 100.0,
                                                                {"done": 2, "total": 2})
    text = api.get(f"/v1/documents/{document_id}/text", headers=api.alice)
    assert text.text == "Hello\nworld\n"
    doc = api.get(f"/v1/documents/{document_id}", headers=api.alice).json()
    assert [ln["text"] for ln in doc["pages"][0]["lines"]] == ["Hello", "world"]
    assert doc["pages"][0]["lines"][1]["bbox"] == [0, 10, 90, 18]
    assert doc["lines"] == {"total": 2, "done": 2}  # as the job's view counts them
    export = api.get(f"/v1/documents/{document_id}/export?format=json", headers=api.alice)
    assert export.status_code == 200 and "Hello" in export.text
    assert api.get(f"/v1/documents/{document_id}/export?format=nope",
                   headers=api.alice).status_code == 400


def test_other_tenant_sees_404_for_job_and_document(api):
    job_id = upload(api, api.alice).json()["id"]
    document_id = api.sent[0][1]
    assert api.get(f"/v1/jobs/{job_id}", headers=api.bob).status_code == 404
    assert api.get(f"/v1/documents/{document_id}", headers=api.bob).status_code == 404
    assert api.get(f"/v1/documents/{document_id}/text", headers=api.bob).status_code == 404
    assert api.get("/v1/jobs", headers=api.bob).json()["jobs"] == []


def test_same_idempotency_key_is_one_job_per_tenant(api):
    first = upload(api, api.alice, idempotency_key="batch-1")
    again = upload(api, api.alice, idempotency_key="batch-1")  # a retry: the same request
    assert first.json()["id"] == again.json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true" and len(api.sent) == 1
    header = api.post("/v1/jobs", headers={**api.alice, "Idempotency-Key": "batch-1"},
                      files=[("files", ("a.pdf", PDF))])
    assert header.json()["id"] == first.json()["id"]
    # The same key with another file, other options or other URIs would be dropped unsaid: 422.
    for changed in (upload(api, api.alice, name="b.pdf", data=PDF + b"x", idempotency_key="batch-1"),
                    upload(api, api.alice, idempotency_key="batch-1", dpi="200"),
                    api.post("/v1/jobs", headers={**api.alice, "Idempotency-Key": "batch-1"},
                             json={"uris": ["s3://b/k.pdf"]})):
        assert changed.status_code == 422 and "other options or documents" in changed.text, changed.text
    assert len(api.sent) == 1
    other = upload(api, api.bob, idempotency_key="batch-1")  # keys are per tenant
    assert other.status_code == 202 and other.json()["id"] != first.json()["id"]


def test_same_file_twice_reuses_the_document(api):
    upload(api, api.alice)
    document_id = api.sent[0][1]
    complete(api.engine, document_id)
    r = upload(api, api.alice)  # a new job, the same bytes: done already, not read again
    # (its exports, which `complete` leaves unwritten, are left to finish: no ingest)
    assert [task for task, *_ in api.sent] == [INGEST, "quire.finish_document"]
    assert api.get(f"/v1/jobs/{r.json()['id']}", headers=api.alice).json()["status"] == "done"


def test_a_failed_request_leaves_no_job_and_its_key_can_be_used_again(api, tmp_path):
    # The store cannot take the upload (its documents/ folder is a file): the request fails.
    blocker = tmp_path / "store" / "documents"
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_bytes(b"")
    failed = upload(api, api.alice, idempotency_key="batch-7")
    assert failed.status_code >= 500 and api.sent == []
    assert api.get("/v1/jobs", headers=api.alice).json()["jobs"] == []  # no job stuck at queued
    blocker.unlink()
    retried = upload(api, api.alice, idempotency_key="batch-7")
    assert retried.status_code == 202 and retried.json()["created"] is True
    assert retried.json()["documents"] == 1 and len(api.sent) == 1


def test_each_tenant_sees_the_file_by_the_name_it_sent(api):
    alice_job = upload(api, api.alice, name="minutes-1902.pdf").json()["id"]
    document_id = api.sent[0][1]
    bob_job = upload(api, api.bob, name="bob-payroll.pdf").json()["id"]  # the same bytes
    complete(api.engine, document_id, texts=("Holloway wrote",))
    for headers, job_id, name in ((api.alice, alice_job, "minutes-1902.pdf"),
                                  (api.bob, bob_job, "bob-payroll.pdf")):
        [doc] = api.get(f"/v1/jobs/{job_id}", headers=headers).json()["documents"]
        assert doc["name"] == name
        assert api.get(f"/v1/documents/{document_id}", headers=headers).json()["name"] == name
        [hit] = api.get("/v1/search?q=Holloway", headers=headers).json()["hits"]
        assert hit["document"] == name and hit["highlight"] == "<mark>Holloway</mark> wrote"
        export = api.get(f"/v1/documents/{document_id}/export?format=text", headers=headers)
        assert name.removesuffix(".pdf") in export.headers["content-disposition"]
    # Where the first sender's copy came from is not shown to the other tenant.
    assert api.get(f"/v1/documents/{document_id}", headers=api.bob).json()["source_uri"] is None


def test_a_document_read_before_gets_the_exports_a_new_job_asks_for(api, tmp_path):
    from pipeline.queue import FINISH

    upload(api, api.alice, formats="text")
    document_id = api.sent[0][1]
    complete(api.engine, document_id)
    with session_scope(api.engine) as s:
        doc = repo.get_document(s, document_id)
        exports = tmp_path / "store" / "documents" / doc.sha256 / doc.profile / "exports"
    exports.mkdir(parents=True)
    (exports / "text.txt").write_text("Hello\nworld\n")  # what finish wrote for the first job
    upload(api, api.alice, formats="txt")  # written already: nothing to do
    assert len(api.sent) == 1
    upload(api, api.alice, formats="text,pdf")  # no PDF yet: finish writes it from the rows
    assert api.sent[1:] == [(FINISH, document_id)]


def test_a_closed_job_without_documents_is_done(api):
    job_id = api.post("/v1/jobs", headers=api.alice, json={"open": True}).json()["id"]
    closed = api.post(f"/v1/jobs/{job_id}/close", headers=api.alice).json()
    assert closed["status"] == "done" and closed["documents_count"]["total"] == 0


def test_tenants_submit_only_uris_the_api_accepts(tmp_path, sqlite_url):
    from pipeline.api.deps import ApiContext

    def context(prefixes: str) -> ApiContext:
        return ApiContext(Settings(database_url=sqlite_url, storage_url="s3://quire/",
                                   api={"uri_prefixes": prefixes}), enqueue=lambda *a: None)

    anywhere, limited = context(""), context("s3://archive/in/, s3://shared/")
    # Quire's own stored sources are other tenants' files, whatever the setting.
    assert not anywhere.may_read("s3://quire/documents/0a1b/source")
    assert anywhere.may_read("s3://quire/inbox/a.pdf") and anywhere.may_read("s3://other/a.pdf")
    assert limited.may_read("s3://archive/in/a.pdf") and limited.may_read("s3://shared/b.pdf")
    assert not limited.may_read("s3://archive/private/a.pdf")
    assert not limited.may_read("s3://quire/documents/0a1b/source")

    upgrade(sqlite_url)
    settings = Settings(database_url=sqlite_url, storage_url=(tmp_path / "store").as_uri(),
                        api={"uri_prefixes": "s3://archive/in/"})
    client = TestClient(create_app(settings, enqueue=lambda *a: None))
    with session_scope(make_engine(sqlite_url)) as s:
        token, _ = jobrepo.create_token(s, name="carol")
    refused = client.post("/v1/jobs", headers={"Authorization": f"Bearer {token}"},
                          json={"uris": ["s3://payroll/bob.pdf"]})
    assert refused.status_code == 403 and "s3://payroll/bob.pdf" in refused.text
    assert client.get("/v1/jobs", headers={"Authorization": f"Bearer {token}"}).json()["jobs"] == []


def test_upload_over_the_limit_is_413(api):
    r = upload(api, api.alice, data=b"x" * 5000)
    assert r.status_code == 413 and api.sent == []


def test_bad_requests_are_4xx(api):
    assert api.post("/v1/jobs", headers=api.alice, json={}).status_code == 422
    assert api.post("/v1/jobs", headers=api.alice,
                    json={"uris": ["http://x/y"]}).status_code == 422
    prefix = api.post("/v1/jobs", headers=api.alice, json={"uris": ["s3://inbox/scans/"]})
    assert prefix.status_code == 422 and "is a prefix" in prefix.json()["detail"]
    r = api.post("/v1/jobs", headers=api.alice, json={"uris": [], "open": True,
                                                      "formats": ["nope"]})
    assert r.status_code == 400


def test_open_job_takes_documents_until_closed(api):
    job_id = api.post("/v1/jobs", headers=api.alice, json={"open": True}).json()["id"]
    r = api.post(f"/v1/jobs/{job_id}/documents", headers=api.alice,
                 files=[("files", ("a.pdf", PDF))])
    assert r.status_code == 202 and r.json()["added"] == ["queued"]
    complete(api.engine, api.sent[0][1])
    view = api.get(f"/v1/jobs/{job_id}", headers=api.alice).json()
    assert view["status"] == "running" and view["accepting"]  # more may come
    assert api.post(f"/v1/jobs/{job_id}/close", headers=api.alice).json()["status"] == "done"
    late = api.post(f"/v1/jobs/{job_id}/documents", headers=api.alice,
                    files=[("files", ("b.pdf", PDF + b"b"))])
    assert late.status_code == 409
    assert api.post(f"/v1/jobs/{job_id}/close", headers=api.bob).status_code == 404


def test_healthz_and_metrics(api):
    upload(api, api.alice)
    health = api.get("/healthz")
    assert health.status_code == 200 and health.json()["database"] == "ok"
    assert health.json()["broker"] == "unreachable"
    metrics = api.get("/metrics").text
    assert 'quire_jobs{status="queued"} 1.0' in metrics
    assert "quire_queue_depth" in metrics and "quire_api_requests" in metrics


def test_healthz_fails_while_the_bucket_is_missing(s3_server, sqlite_url):
    settings = Settings(database_url=sqlite_url, storage_url="s3://no-such-bucket/",
                        s3_endpoint_url=s3_server, broker_url="redis://127.0.0.1:1/0")
    health = TestClient(create_app(settings, enqueue=lambda *a: None)).get("/healthz")
    assert health.status_code == 503 and health.json()["database"] == "ok"
    assert "NoSuchBucket" in health.json()["storage"] or "bucket" in health.json()["storage"].lower()


def test_finished_job_with_webhook_is_notified_once(api, monkeypatch):
    r = upload(api, api.alice, webhook_url="http://127.0.0.1:9/hook")
    job_id = r.json()["id"]
    with session_scope(api.engine) as s:
        assert jobrepo.claim_webhook(s, job_id)
        assert not jobrepo.claim_webhook(s, job_id)
        s.rollback()  # its delivery failed, or its worker was killed mid-delivery: no claim
        assert jobrepo.claim_webhook(s, job_id)
    assert NOTIFY == "quire.notify_job"


def test_search_finds_a_phrase_a_line_break_cuts_as_one_hit_of_its_first_line(api):
    upload(api, api.alice, name="diary.pdf")
    complete(api.engine, api.sent[0][1], texts=("listening. Then he", "says, the archi-",
                                                "ves of the county"))
    [hit] = api.get('/v1/search?q="then he says"', headers=api.alice).json()["hits"]
    assert (hit["document"], hit["line"], hit["bbox"]) == ("diary.pdf", 1, [0, 0, 90, 8])
    assert hit["highlight"] == "listening. <mark>Then he</mark>"
    assert hit["runs_on"] == {"line": 2, "text": "says, the archi-", "bbox": [0, 10, 90, 18],
                              "confidence": 0.9, "highlight": "<mark>says</mark>, the archi-"}
    [word] = api.get("/v1/search?q=archives", headers=api.alice).json()["hits"]
    assert (word["line"], word["runs_on"]["line"]) == (2, 3)
    assert word["highlight"] == "says, the <mark>archi-</mark>"
    assert word["runs_on"]["highlight"] == "<mark>ves</mark> of the county"
    [own] = api.get("/v1/search?q=county", headers=api.alice).json()["hits"]
    assert (own["line"], own["runs_on"]) == (3, None)
    assert api.get("/v1/search?q=archives", headers=api.bob).json()["hits"] == []


def test_api_module_does_not_import_torch_or_workers():
    code = ("import sys, pipeline.api.app, pipeline.cli_submit, pipeline.cli_jobs, pipeline.cli_services, "
            "pipeline.watch; "
            "bad = [m for m in ('torch', 'transformers', 'workers') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_search_and_viewer_are_scoped_to_the_tenant(api):
    upload(api, api.alice)
    document_id = api.sent[0][1]
    complete(api.engine, document_id, texts=("Holloway wrote", "in March"))
    hits = api.get("/v1/search?q=Holloway", headers=api.alice)
    assert hits.status_code == 200, hits.text
    assert len(hits.json()["hits"]) == 1
    assert api.get("/v1/search?q=Holloway", headers=api.bob).json()["hits"] == []
    import io

    from PIL import Image

    png = io.BytesIO()
    Image.new("L", (100, 50), 255).save(png, format="PNG")
    api.app.state.ctx.store.put_bytes("k", png.getvalue())  # the page image complete() names
    viewer = api.get(f"/v1/documents/{document_id}/viewer", headers=api.alice)
    assert viewer.status_code == 200 and "Holloway wrote" in viewer.text, viewer.text[:300]
    assert api.get(f"/v1/documents/{document_id}/viewer", headers=api.bob).status_code == 404


def test_cli_token_create_list_revoke_and_status(tmp_path, sqlite_url, cli_home):
    made = CliRunner().invoke(app, ["token", "create", "--name", "ci", "--owner", "team"])
    assert made.exit_code == 0, made.output
    token = made.stdout.strip().splitlines()[-1]
    engine = make_engine(sqlite_url)
    with session_scope(engine) as s:
        row = jobrepo.verify_token(s, token)
        assert row is not None and row.owner == "team" and row.token_hash != token
        job, _ = jobrepo.create_keyed_job(s, settings={}, owner="team", idempotency_key=None)
        job_id, token_id = job.id, row.id
    listed = CliRunner().invoke(app, ["token", "list"])
    assert token_id in listed.output and "active" in listed.output
    assert CliRunner().invoke(app, ["token", "revoke", token_id]).exit_code == 0
    with session_scope(engine) as s:
        assert jobrepo.verify_token(s, token) is None
    status = CliRunner().invoke(app, ["status", job_id])
    assert status.exit_code == 0 and "queued" in status.output, status.output
    assert CliRunner().invoke(app, ["status", "nope"]).exit_code == 1
    # Nothing to submit, or a format no exporter has: an error, and no job is made.
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not a document")
    empty = CliRunner().invoke(app, ["submit", str(tmp_path / "empty"), "--no-progress"])
    assert empty.exit_code == 1 and "nothing to submit" in empty.output, empty.output
    assert "quire: 1 file passed over, not a PDF or an image by its suffix: notes.txt" in empty.output
    docx = CliRunner().invoke(app, ["submit", str(tmp_path / "empty" / "notes.txt"), "-f", "docx"])
    assert docx.exit_code == 2 and "unknown format 'docx'" in docx.output, docx.output
    with session_scope(engine) as s:
        assert [j.id for j in s.scalars(select(Job))] == [job_id]


def test_a_failed_document_sent_again_is_under_way_not_failed(api):
    """The same bytes failed before (a worker said why); a new job that sends them again is read
    afresh, and its view says so from the start instead of 'failed' with a finish time."""
    first = upload(api, api.alice).json()["id"]
    [(_, document_id, _)] = api.sent
    with session_scope(api.engine) as s:
        repo.fail_document(s, document_id, "render failed")
        jobrepo.refresh_job(s, first)
    again = upload(api, api.alice, idempotency_key="second")
    assert again.status_code == 202, again.text
    view = api.get(f"/v1/jobs/{again.json()['id']}", headers=api.alice).json()
    assert view["status"] == "running" and view["finished_at"] is None, view
    assert view["documents"][0]["status"] == "processing" and view["documents"][0]["error"] is None
    assert api.sent[-1] == (INGEST, document_id, again.json()["id"])


def test_a_broker_that_is_down_is_a_503_with_the_reason(tmp_path, sqlite_url):
    """The real send (no stand-in queue) to a port where nothing listens."""
    from tests.conftest import free_port

    upgrade(sqlite_url)
    settings = Settings(database_url=sqlite_url, storage_url=(tmp_path / "store").as_uri(),
                        broker_url=f"redis://127.0.0.1:{free_port()}/0")
    from pipeline.queue import configure

    app_celery = configure(__import__("celery").Celery("t"), settings)

    def send(task, *args):
        app_celery.send_task(task, args=list(args), retry=False)

    client = TestClient(create_app(settings, enqueue=send), raise_server_exceptions=False)
    with session_scope(make_engine(sqlite_url)) as s:
        token, _ = jobrepo.create_token(s, name="alice")
    r = upload(client, {"Authorization": f"Bearer {token}"})
    assert r.status_code == 503, r.text
    assert r.json()["detail"].startswith("cannot reach the broker (QUIRE_BROKER_URL)")


def test_a_tenant_may_ask_only_for_the_models_the_deployment_offers(api):
    """A model is a path the workers would load: '/etc' or another tenant's folder is refused."""
    for model in ("/etc", "../../../tmp", "someone/hub-model"):
        r = upload(api, api.alice, model=model)
        assert r.status_code == 422 and "is not offered here" in r.json()["detail"], model
    assert api.sent == []
    ok = upload(api, api.alice, model=Settings().model)  # the deployment's own
    assert ok.status_code == 202, ok.text


def test_a_job_is_cancelled_once_and_its_webhook_told(api):
    r = upload(api, api.alice, webhook_url="http://127.0.0.1:9/hook", idempotency_key="k1")
    job_id = r.json()["id"]
    [(_, document_id, _)] = api.sent
    assert api.post(f"/v1/jobs/{job_id}/cancel", headers=api.bob).status_code == 404
    view = api.post(f"/v1/jobs/{job_id}/cancel", headers=api.alice).json()
    assert view["status"] == "cancelled" and view["finished_at"] is not None
    [doc] = view["documents"]
    assert doc["status"] == "pending" and doc["error"] == f"cancelled with job {job_id}"
    assert api.sent[-1] == (NOTIFY, job_id)
    again = api.post(f"/v1/jobs/{job_id}/cancel", headers=api.alice)
    assert again.status_code == 200 and again.json()["status"] == "cancelled"
    assert [t for t, *_ in api.sent].count(NOTIFY) == 1
    # Its key is free: the same request makes a new job, which reads the file.
    fresh = upload(api, api.alice, webhook_url="http://127.0.0.1:9/hook", idempotency_key="k1")
    assert fresh.status_code == 202 and fresh.json()["id"] != job_id
    assert api.sent[-1] == (INGEST, document_id, fresh.json()["id"])
    complete(api.engine, document_id)
    assert api.get(f"/v1/jobs/{job_id}", headers=api.alice).json()["status"] == "cancelled"
    done = api.post(f"/v1/jobs/{fresh.json()['id']}/cancel", headers=api.alice)
    assert done.status_code == 409 and "already finished (done)" in done.json()["detail"]


def test_a_cancelled_open_job_takes_no_more_documents(api):
    job_id = api.post("/v1/jobs", headers=api.alice, json={"open": True}).json()["id"]
    assert api.post(f"/v1/jobs/{job_id}/cancel", headers=api.alice).json()["status"] == "cancelled"
    late = api.post(f"/v1/jobs/{job_id}/documents", headers=api.alice,
                    files=[("files", ("b.pdf", PDF))])
    assert late.status_code == 409 and "cancelled" in late.json()["detail"]


def test_cli_cancel_stops_a_job_and_refuses_a_finished_one(sqlite_url, cli_home):
    engine = make_engine(sqlite_url)
    with session_scope(engine) as s:
        running, _ = jobrepo.create_keyed_job(s, settings={}, owner=None, idempotency_key=None)
        empty, _ = jobrepo.create_keyed_job(s, settings={}, owner=None, idempotency_key=None)
        jobrepo.refresh_job(s, empty.id)  # closed with nothing in it: done
    out = CliRunner().invoke(app, ["cancel", running.id])
    assert out.exit_code == 0 and f"job {running.id}: cancelled" in out.output, out.output
    refused = CliRunner().invoke(app, ["cancel", empty.id])
    assert refused.exit_code == 1 and "already finished (done)" in refused.output, refused.output
    assert CliRunner().invoke(app, ["cancel", "nope"]).exit_code == 1
    with session_scope(engine) as s:
        assert job_rows.get_job(s, running.id).status == "cancelled"


def test_submit_over_the_api_names_a_file_over_the_upload_limit_and_sends_the_others(api, tmp_path):
    from tqdm import tqdm

    from pipeline.api.client import ApiClient
    from pipeline.submit import JobOptions, iter_local

    (tmp_path / "box").mkdir()
    (tmp_path / "box" / "big.pdf").write_bytes(PDF + b"x" * 5000)  # the API takes 4096 bytes
    (tmp_path / "box" / "small.pdf").write_bytes(PDF)
    client = ApiClient("http://testserver", None)
    client.http = api
    api.headers.update(api.alice)
    job_id, refused = client.submit_stream(iter_local([tmp_path / "box"]), JobOptions("quire-line-v1", 150, 1), "k1",
                                           None, tqdm(disable=True))
    why = "refused by the API: upload over 4096 bytes (QUIRE_API__MAX_UPLOAD_BYTES)"
    assert refused == [f"{tmp_path / 'box' / 'big.pdf'}: 5,044 bytes, {why}"]
    view = api.get(f"/v1/jobs/{job_id}").json()
    assert [d["name"] for d in view["documents"]] == ["box/small.pdf"]  # sent after the big one
    assert view["accepting"] is False  # closed: it finishes with what it holds


def test_s3_notifications_make_one_job_of_the_documents_and_pass_over_the_rest(tmp_path, sqlite_url, s3_server,
                                                                               s3_bucket):
    """MinIO/S3 ObjectCreated events (a real S3 server): the PDF and the image become documents
    of one job, named by their keys; a spreadsheet dropped beside them is passed over, as the
    bucket watcher does, not failed; the same notification again makes no second job."""
    import boto3

    upgrade(sqlite_url)
    settings = Settings(database_url=sqlite_url, storage_url=(tmp_path / "store").as_uri(),
                        broker_url="redis://127.0.0.1:1/0", s3_endpoint_url=s3_server)
    sent: list[tuple] = []
    client = TestClient(create_app(settings, enqueue=lambda task, *args: sent.append((task, *args))))
    with session_scope(make_engine(sqlite_url)) as s:
        token, _ = jobrepo.create_token(s, name="ops")
    s3 = boto3.client("s3", endpoint_url=s3_server)
    keys = ["in/box1/0001.pdf", "in/box1/0002.png", "in/box1/list.xlsx"]
    for n, key in enumerate(keys):
        s3.put_object(Bucket=s3_bucket, Key=key, Body=PDF + bytes([n]))
    event = {"Records": [{"eventName": "s3:ObjectCreated:Put",
                          "s3": {"bucket": {"name": s3_bucket}, "object": {"key": key, "size": 40}}}
                         for key in keys]}
    headers = {"Authorization": f"Bearer {token}"}
    taken = client.post("/v1/events/s3", headers=headers, json=event).json()
    assert taken["accepted"] == 2 and taken["job"]
    view = client.get(f"/v1/jobs/{taken['job']}", headers=headers).json()
    assert [d["name"] for d in view["documents"]] == keys[:2]
    assert [t for t, *_ in sent] == [INGEST, INGEST]
    again = client.post("/v1/events/s3", headers=headers, json=event).json()
    assert again == {"job": None, "accepted": 0, "skipped": 2}


def test_formats_are_stored_by_their_names_and_webhooks_kept_to_allowed_addresses(tmp_path, sqlite_url):
    upgrade(sqlite_url)
    settings = Settings(database_url=sqlite_url, storage_url=(tmp_path / "store").as_uri(),
                        broker_url="redis://127.0.0.1:1/0",
                        api={"webhook_prefixes": "https://hooks.example.org/"})
    client = TestClient(create_app(settings, enqueue=lambda task, *args: None))
    with session_scope(make_engine(sqlite_url)) as s:
        token, _ = jobrepo.create_token(s, name="t")
    headers = {"Authorization": f"Bearer {token}"}
    inside = upload(client, headers, formats="txt,json", webhook_url="https://hooks.example.org/quire")
    assert inside.status_code == 202, inside.text
    with session_scope(make_engine(sqlite_url)) as s:
        assert s.get(Job, inside.json()["id"]).settings["formats"] == ["text", "json"]  # as the CLI stores it
    for url in ("http://127.0.0.1:8092/", "https://hooks.example.org.evil.net/"):
        refused = upload(client, headers, webhook_url=url)
        assert refused.status_code == 403 and "QUIRE_API__WEBHOOK_PREFIXES" in refused.json()["detail"]


def test_adding_a_uri_that_is_not_s3_is_a_422_not_a_500(api):
    job_id = api.post("/v1/jobs", json={"open": True}, headers=api.alice).json()["id"]
    r = api.post(f"/v1/jobs/{job_id}/documents", json={"uris": ["http://x/a.pdf"]}, headers=api.alice)
    assert r.status_code == 422 and "not an s3://bucket/key URI" in r.text

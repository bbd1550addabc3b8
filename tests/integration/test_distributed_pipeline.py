"""Distributed Quire on real servers: redis-server, PostgreSQL, an S3 server, Celery workers per queue.

One set of workers serves the module: bucket drop, the job API and a kill -9 of the recognize
worker, each compared with the embedded runner's text.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import ClassVar

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from pipeline.config import Settings, get_settings
from pipeline.db.session import make_engine, upgrade
from pipeline.exporters import parse_formats
from pipeline.queue import celery_app
from pipeline.runner import LocalRunner
from pipeline.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from tests.integration.conftest import Workers
from tests.model_fixtures import LETTER_LINES, make_letter_page
from tests.pagegen import make_pdf

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="poppler-utils missing"),
]
DPI = 150
SECRET = "hook-secret"


@pytest.fixture(scope="module")
def letters(tmp_path_factory, letter_reader) -> tuple[list[Path], Path]:
    """Three PDFs (1, 2 and 3 letter pages: different bytes, same lines) and a model reading them."""
    root = tmp_path_factory.mktemp("letters")
    page = make_letter_page(DPI)
    pdfs = [make_pdf([page] * n, root / f"letter-{n}.pdf", dpi=DPI) for n in (1, 2, 3)]
    return pdfs, letter_reader


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, letters, redis_url, postgres_server, s3_server):
    """Environment, PostgreSQL database, bucket, and ingest/recognize/finish worker processes."""
    import boto3

    _, model = letters
    name = f"quire_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(postgres_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    db_url = postgres_server.rsplit("/", 1)[0] + f"/{name}"
    bucket = f"quire-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client("s3", endpoint_url=s3_server)
    s3.create_bucket(Bucket=bucket)
    env = {
        "QUIRE_BROKER_URL": redis_url, "QUIRE_DATABASE_URL": db_url,
        "QUIRE_STORAGE_URL": f"s3://{bucket}/store", "QUIRE_S3_ENDPOINT_URL": s3_server,
        "QUIRE_MODEL": str(model), "QUIRE_RENDER__DPI": str(DPI),
        "QUIRE_QUEUE__RECOGNIZE_BATCH": "2",  # many small recognize tasks
        "QUIRE_QUEUE__VISIBILITY_TIMEOUT": "8",  # a killed worker's task comes back quickly
        "QUIRE_API__WEBHOOK_SECRET": SECRET,
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    get_settings.cache_clear()
    celery_app.cache_clear()
    upgrade(db_url)
    engine = make_engine(db_url)
    pool = Workers({**os.environ, "PYTHONUNBUFFERED": "1"}, tmp_path_factory.mktemp("logs"))
    for queue in ("ingest", "finish", "recognize"):
        pool.start(queue)
    try:
        yield {"engine": engine, "bucket": bucket, "s3": s3, "workers": pool, "env": env,
               "settings": get_settings(), "redis": redis_url}
    finally:
        pool.stop()
        engine.dispose()
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
        get_settings.cache_clear()
        celery_app.cache_clear()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="module")
def local_texts(tmp_path_factory, letters) -> dict[str, str]:
    """What the embedded `quire run` writes for each PDF (by file name)."""
    pdfs, model = letters
    home = tmp_path_factory.mktemp("local")
    settings = Settings(model=str(model), render={"dpi": DPI},
                        database_url=f"sqlite:///{home / 'q.sqlite'}",
                        storage_url=(home / "store").as_uri())
    runner = LocalRunner(settings, exporters=parse_formats("txt"), out_dir=home / "out")
    assert runner.run(pdfs).count("done") == 3
    return {p.name: (home / "out" / f"{p.stem}.txt").read_text() for p in pdfs}


def wait_for(predicate, timeout: float, what: str, workers: Workers):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    pytest.fail(f"timed out waiting for {what}\n{workers.logs()}")


def query(engine, sql: str, **params) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(sql), params)]


def job_finished(engine, job_id: str) -> str | None:
    rows = query(engine, "SELECT status FROM jobs WHERE id = :id", id=job_id)
    return rows[0][0] if rows and rows[0][0] in ("done", "failed", "partial") else None


def document_text(engine, document_id: str) -> str:
    """The text rows of a document, pages joined as the text exporter does."""
    rows = query(engine, """SELECT p.number, l.text FROM lines l JOIN pages p ON p.id = l.page_id
                            WHERE p.document_id = :d ORDER BY p.number, l.position""",
                 d=document_id)
    pages: dict[int, list[str]] = {}
    for number, text in rows:
        pages.setdefault(number, []).append(text)
    return "\n\f".join("\n".join(lines) for _, lines in sorted(pages.items())) + "\n"


def test_bucket_drop_watcher_texts_equal_embedded_run(cluster, letters, local_texts):
    from pipeline.cli import app

    pdfs, _ = letters
    s3, bucket, engine = cluster["s3"], cluster["bucket"], cluster["engine"]
    for pdf in pdfs:
        s3.upload_file(str(pdf), bucket, f"inbox/{pdf.name}")
    s3.put_object(Bucket=bucket, Key="inbox/notes.txt", Body=b"not a document")

    out = CliRunner().invoke(app, ["watch", f"s3://{bucket}/inbox/", "--once"])
    assert out.exit_code == 0, out.output
    assert out.output.startswith("3 submitted"), out.output
    job_id = out.output.rsplit("job ", 1)[1].strip()
    status = wait_for(lambda: job_finished(engine, job_id), 150, "the watch job", cluster["workers"])
    assert status == "done", cluster["workers"].logs()

    docs = query(engine, """SELECT d.id, d.name FROM documents d JOIN job_documents jd
                            ON jd.document_id = d.id WHERE jd.job_id = :j""", j=job_id)
    assert sorted(n for _, n in docs) == sorted(f"inbox/{p.name}" for p in pdfs)  # the keys
    for document_id, name in docs:
        assert document_text(engine, document_id) == local_texts[name.removeprefix("inbox/")]
    assert query(engine, "SELECT count(*) FROM lines")[0][0] == 6 * len(LETTER_LINES)

    # Dropped again (same key, same ETag) or under a second name: nothing is redone.
    again = CliRunner().invoke(app, ["watch", f"s3://{bucket}/inbox/", "--once"])
    assert again.output.startswith("0 submitted, 3 already seen"), again.output
    s3.upload_file(str(pdfs[0]), bucket, "inbox/copy-of-letter.pdf")
    third = CliRunner().invoke(app, ["watch", f"s3://{bucket}/inbox/", "--once"])
    assert third.output.startswith("1 submitted"), third.output
    copy_job = third.output.rsplit("job ", 1)[1].strip()
    assert wait_for(lambda: job_finished(engine, copy_job), 30, "copy", cluster["workers"]) == "done"
    assert query(engine, "SELECT count(*) FROM documents")[0][0] == 3
    assert query(engine, "SELECT count(*) FROM lines")[0][0] == 6 * len(LETTER_LINES)


class _Hooks(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[dict, bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hooks.received.append((dict(self.headers), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_api_upload_poll_text_json_tenants_idempotency_webhook(cluster, letters, local_texts):
    from fastapi.testclient import TestClient

    from pipeline.api.app import create_app
    from pipeline.db import jobs as jobrepo
    from pipeline.db.session import session_scope

    pdfs, _ = letters
    engine = cluster["engine"]
    with session_scope(engine) as s:
        alice, _ = jobrepo.create_token(s, name="alice")
        bob, _ = jobrepo.create_token(s, name="bob")
    auth, other = {"Authorization": f"Bearer {alice}"}, {"Authorization": f"Bearer {bob}"}
    hooks = http.server.HTTPServer(("127.0.0.1", 0), _Hooks)
    threading.Thread(target=hooks.serve_forever, daemon=True).start()
    hook_url = f"http://127.0.0.1:{hooks.server_port}/done"
    client = TestClient(create_app(cluster["settings"]))

    pdf = pdfs[1]
    fields = {"formats": "text,json", "webhook_url": hook_url, "idempotency_key": "k-1",
              "dpi": str(DPI + 50)}  # another profile: processed afresh, not reused
    assert client.post("/v1/jobs", files=[("files", (pdf.name, pdf.read_bytes()))],
                       data=fields).status_code == 401
    r = client.post("/v1/jobs", headers=auth, files=[("files", (pdf.name, pdf.read_bytes()))],
                    data=fields)
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    replay = client.post("/v1/jobs", headers=auth,
                         files=[("files", (pdf.name, pdf.read_bytes()))], data=fields)
    assert replay.json()["id"] == job_id and replay.headers["Idempotent-Replayed"] == "true"

    def done() -> dict | None:
        view = client.get(f"/v1/jobs/{job_id}", headers=auth).json()
        return view if view["status"] in ("done", "failed", "partial") else None

    view = wait_for(done, 150, "the API job", cluster["workers"])
    assert view["status"] == "done" and view["percent"] == 100.0, view
    # The command line follows the same job to its end, as `quire submit --wait` does.
    followed = subprocess.run([sys.executable, "-m", "pipeline.cli", "status", job_id, "--wait", "--no-progress"],
                              check=False, env={**os.environ, **cluster["env"]}, capture_output=True,
                              text=True, timeout=120)
    assert followed.returncode == 0, followed.stderr
    assert followed.stdout.startswith(f"job {job_id}: done, 100.0%")
    assert client.get(f"/v1/jobs/{job_id}", headers=other).status_code == 404
    document_id = view["documents"][0]["id"]
    text = client.get(f"/v1/documents/{document_id}/text", headers=auth).text
    # The model was trained at 150 dpi; at 200 it still finds the same lines and boxes.
    assert text.count("\f") == 1
    doc = client.get(f"/v1/documents/{document_id}", headers=auth).json()
    assert [len(p["lines"]) for p in doc["pages"]] == [len(LETTER_LINES)] * 2
    assert all(ln["bbox"] and ln["confidence"] is not None for p in doc["pages"]
               for ln in p["lines"])
    assert client.get(f"/v1/documents/{document_id}", headers=other).status_code == 404
    exported = client.get(f"/v1/documents/{document_id}/export?format=json", headers=auth)
    assert exported.status_code == 200 and json.loads(exported.content)

    # S3 URIs in JSON: the file the watcher saw is done already and is reused, not redone;
    # the ALTO this job asks for (the watcher's job did not) is written from the rows. Put there
    # again (the same bytes) so that this test also runs alone, reading it afresh then.
    cluster["s3"].upload_file(str(pdfs[0]), cluster["bucket"], f"inbox/{pdfs[0].name}")
    uri = f"s3://{cluster['bucket']}/inbox/{pdfs[0].name}"
    r2 = client.post("/v1/jobs", headers=auth, json={"uris": [uri], "formats": ["text", "alto"]})
    assert r2.status_code == 202, r2.text
    view2 = wait_for(lambda: job_finished(engine, r2.json()["id"]), 60, "reuse", cluster["workers"])
    assert view2 == "done"
    reused = client.get(f"/v1/jobs/{r2.json()['id']}", headers=auth).json()["documents"][0]
    assert reused["name"] == f"inbox/{pdfs[0].name}"
    assert client.get(f"/v1/documents/{reused['id']}/text", headers=auth).text == \
        local_texts[pdfs[0].name]

    def alto_in_bucket() -> bool:
        keys = [o["Key"] for o in cluster["s3"].list_objects_v2(
            Bucket=cluster["bucket"], Prefix="store/documents/").get("Contents", [])]
        return any(k.startswith(f"store/documents/{reused['sha256']}/") and
                   k.endswith("/exports/alto.alto.xml") for k in keys)

    wait_for(alto_in_bucket, 60, "the ALTO export of the reused document", cluster["workers"])
    # Quire's own stored files are not for tenants to submit.
    own = f"s3://{cluster['bucket']}/store/documents/{reused['sha256']}/source"
    assert client.post("/v1/jobs", headers=other, json={"uris": [own]}).status_code == 403

    # The completion webhook came once, signed.
    wait_for(lambda: _Hooks.received, 30, "the webhook", cluster["workers"])
    time.sleep(1.0)
    hooks.shutdown()
    [(headers, body)] = _Hooks.received
    assert verify(SECRET, headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER])
    assert json.loads(body)["job"]["id"] == job_id
    assert "quire_lines_done" in client.get("/metrics").text


def _unacked_recognize(redis_url: str) -> bool:
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        return any(b'"recognize"' in v for v in client.hvals("unacked"))
    finally:
        client.close()


def test_kill_9_recognize_worker_mid_job_every_line_read_once(cluster, letters, tmp_path):
    from pipeline.storage import open_store
    from pipeline.submit import submit_files

    engine, pool = cluster["engine"], cluster["workers"]
    settings = cluster["settings"]
    pdf = make_pdf([make_letter_page(DPI)] * 4, tmp_path / "four.pdf", dpi=DPI)
    store = open_store(settings.resolved_storage_url(), settings.s3_endpoint_url)
    job_id = submit_files(engine, store, [pdf], settings, formats=["text"])

    # The moment the recognize worker holds a message it has not acked, kill it hard.
    wait_for(lambda: _unacked_recognize(cluster["redis"]), 60, "a recognize task in flight", pool)
    victim = pool.procs["recognize"]
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait(10)
    pool.start("recognize", name="recognize-2")

    status = wait_for(lambda: job_finished(engine, job_id), 150, "the job after the kill", pool)
    assert status == "done", pool.logs()
    [(document_id,)] = query(engine, "SELECT document_id FROM job_documents WHERE job_id = :j",
                             j=job_id)
    rows = query(engine, """SELECT p.number, l.position, l.status, l.text FROM lines l
                            JOIN pages p ON p.id = l.page_id WHERE p.document_id = :d
                            ORDER BY p.number, l.position""", d=document_id)
    assert len(rows) == 4 * len(LETTER_LINES)  # no duplicate rows
    assert len({(n, p) for n, p, _, _ in rows}) == len(rows)
    assert all(status == "done" for _, _, status, _ in rows)
    assert [t for _, _, _, t in rows] == list(LETTER_LINES) * 4
    pages = query(engine, "SELECT lines_done, lines_total, status FROM pages WHERE document_id = :d",
                  d=document_id)
    assert all(done == total == len(LETTER_LINES) and st == "done" for done, total, st in pages)

"""The job API's Idempotency-Key on real servers (PostgreSQL, an S3 server, redis-server): a client
that retries while its first request is still sending the files is told to wait, not that it sent
other documents."""

from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa

pytestmark = pytest.mark.integration


def test_a_retry_while_the_first_request_is_still_sending_is_a_409_then_the_same_job(
        postgres_url, s3_server, s3_bucket, redis_url):
    from fastapi.testclient import TestClient

    from pipeline.api.app import create_app
    from pipeline.config import Settings
    from pipeline.db import jobs as jobrepo
    from pipeline.db.session import make_engine, session_scope, upgrade

    upgrade(postgres_url)
    settings = Settings(database_url=postgres_url, storage_url=f"s3://{s3_bucket}/store",
                        s3_endpoint_url=s3_server, broker_url=redis_url)
    engine = make_engine(postgres_url)
    with session_scope(engine) as s:
        token, _ = jobrepo.create_token(s, name="archive")
    auth = {"Authorization": f"Bearer {token}", "Idempotency-Key": "box-7"}
    files = [("files", ("box7/0001.pdf", b"%PDF-1.4 scan of box 7\n"))]
    first: dict = {}

    def send_first() -> None:
        with TestClient(create_app(settings)) as client:
            first["response"] = client.post("/v1/jobs", headers=auth, files=files)

    # Hold the first request after it made its job, before it linked its file: a large upload
    # still on its way, as a client that timed out and retries finds it.
    hold = engine.connect()
    tx = hold.begin()
    hold.execute(sa.text("LOCK TABLE job_documents IN EXCLUSIVE MODE"))
    sender = threading.Thread(target=send_first)
    sender.start()
    try:
        deadline = time.monotonic() + 30
        while not hold.execute(sa.text("SELECT count(*) FROM jobs")).scalar():
            assert time.monotonic() < deadline, "the first request made no job"
            time.sleep(0.1)
            hold.execute(sa.text("SELECT 1"))  # (read committed: each statement sees new rows)
        with TestClient(create_app(settings)) as client:
            retry = client.post("/v1/jobs", headers=auth, files=files)
        assert retry.status_code == 409, retry.text
        assert "still taking documents" in retry.json()["detail"]
    finally:
        tx.rollback()
        hold.close()
        sender.join(30)
    assert first["response"].status_code == 202, first["response"].text
    job_id = first["response"].json()["id"]
    with TestClient(create_app(settings)) as client:
        again = client.post("/v1/jobs", headers=auth, files=files)
        assert again.status_code == 202 and again.json()["id"] == job_id, again.text
        assert again.headers["Idempotent-Replayed"] == "true"
        other = client.post("/v1/jobs", headers=auth,
                            files=[("files", ("box7/0002.pdf", b"%PDF-1.4 another scan\n"))])
        assert other.status_code == 422 and "other options or documents" in other.json()["detail"]
    engine.dispose()

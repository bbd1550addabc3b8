"""`POST /v1/events/s3` on real servers (redis-server, PostgreSQL, an S3 server, Celery workers):
an event's job runs until all its files are sent, and bad or stale notifications leave no job."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.integration import test_distributed_pipeline as dist
from tests.integration.test_distributed_pipeline import job_finished, query, wait_for

# That module's servers and workers, started again for this one (module-scoped fixtures).
cluster, letters = dist.cluster, dist.letters

pytestmark = pytest.mark.integration

# The statuses other sessions see a job in, in order: a deferred trigger runs at each commit and
# reads the row as committed (a transaction's passing states, seen by nobody, are not logged).
STATUS_LOG = """
CREATE TABLE IF NOT EXISTS test_job_status_log (seq serial, job_id text, status text);
CREATE OR REPLACE FUNCTION test_log_job_status() RETURNS trigger AS $$
BEGIN
  INSERT INTO test_job_status_log (job_id, status)
    SELECT id, status FROM jobs WHERE id = NEW.id;
  RETURN NULL;
END $$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS test_job_status ON jobs;
CREATE CONSTRAINT TRIGGER test_job_status AFTER INSERT OR UPDATE ON jobs
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION test_log_job_status();
"""


def event(bucket: str, *keys: str) -> dict:
    return {"Records": [{"eventName": "s3:ObjectCreated:Put",
                         "s3": {"bucket": {"name": bucket}, "object": {"key": key, "size": 1}}}
                        for key in keys]}


def client_for(cluster):
    from fastapi.testclient import TestClient

    from pipeline.api.app import create_app
    from pipeline.db import jobs as jobrepo
    from pipeline.db.session import session_scope

    with session_scope(cluster["engine"]) as s:
        token, _ = jobrepo.create_token(s, name="events")
    return TestClient(create_app(cluster["settings"])), {"Authorization": f"Bearer {token}"}


def test_event_of_several_files_finishes_once_after_its_last_file(cluster, letters):
    pdfs, _ = letters
    s3, bucket, engine = cluster["s3"], cluster["bucket"], cluster["engine"]
    client, auth = client_for(cluster)
    with engine.begin() as conn:
        conn.execute(sa.text(STATUS_LOG))
    letter = pdfs[0].read_bytes()
    s3.put_object(Bucket=bucket, Key="events/first.pdf", Body=letter)
    first = client.post("/v1/events/s3", headers=auth, json=event(bucket, "events/first.pdf")).json()
    assert wait_for(lambda: job_finished(engine, first["job"]), 120, "the first event",
                    cluster["workers"]) == "done"

    # A copy of a file read before (done at once) and a file never read, in one event.
    s3.put_object(Bucket=bucket, Key="events/copy.pdf", Body=letter)
    s3.put_object(Bucket=bucket, Key="events/new.pdf", Body=letter + b"\n% another scan\n")
    taken = client.post("/v1/events/s3", headers=auth,
                        json=event(bucket, "events/copy.pdf", "events/new.pdf")).json()
    assert taken["accepted"] == 2, taken
    job_id = taken["job"]
    assert wait_for(lambda: job_finished(engine, job_id), 120, "the event's job",
                    cluster["workers"]) == "done"
    logged = [s for (s,) in query(engine, "SELECT status FROM test_job_status_log WHERE job_id = :j "
                                          "ORDER BY seq", j=job_id)]
    seen = [s for n, s in enumerate(logged) if n == 0 or logged[n - 1] != s]
    # Never 'done' while its second file was still to come: done once, at the end.
    assert seen[-1] == "done" and seen.count("done") == 1, seen
    view = client.get(f"/v1/jobs/{job_id}", headers=auth).json()
    assert [d["name"] for d in view["documents"]] == ["events/copy.pdf", "events/new.pdf"]


def test_stale_or_malformed_notifications_leave_no_job(cluster):
    bucket, engine = cluster["bucket"], cluster["engine"]
    client, auth = client_for(cluster)
    jobs_before = query(engine, "SELECT count(*) FROM jobs")[0][0]

    # An object deleted before its notification arrived: passed over, said so, no job. The
    # sender retries an event it got an error for, and each try left an empty job 'queued'.
    stale = event(bucket, "events/deleted-since.pdf")
    for _ in range(2):
        r = client.post("/v1/events/s3", headers=auth, json=stale)
        assert r.status_code == 202, r.text
        assert r.json() == {"job": None, "accepted": 0, "skipped": 0,
                            "missing": [f"s3://{bucket}/events/deleted-since.pdf"]}
    assert query(engine, "SELECT count(*) FROM jobs")[0][0] == jobs_before

    # Not an S3 notification: a clear 4xx, not a 500 with a traceback in the API's log.
    bad_json = client.post("/v1/events/s3", headers={**auth, "content-type": "application/json"},
                           content=b"not json")
    assert bad_json.status_code == 400 and "not JSON" in bad_json.json()["detail"]
    bad_record = client.post("/v1/events/s3", headers=auth,
                             json={"Records": [{"eventName": "ObjectCreated:Put", "s3": "x"}]})
    assert bad_record.status_code == 422 and "Records[0]" in bad_record.json()["detail"]
    assert query(engine, "SELECT count(*) FROM jobs")[0][0] == jobs_before


def test_two_tenants_notified_of_one_object_each_get_it(cluster, letters):
    """Bob's notification of an object Alice was notified of first used to be passed over as
    already seen: Bob got no job and no document, his search found nothing, and the answer told
    him someone else had taken the file. Each takes it now; it is read once, for both."""
    pdfs, _ = letters
    s3, bucket, engine = cluster["s3"], cluster["bucket"], cluster["engine"]
    (alice, alice_auth), (bob, bob_auth) = client_for(cluster), client_for(cluster)
    from pipeline.db import jobs as jobrepo
    from pipeline.db.session import session_scope

    with session_scope(engine) as s:  # client_for names every token "events": two tenants here
        for s_auth, owner in ((alice_auth, "alice-events"), (bob_auth, "bob-events")):
            jobrepo.verify_token(s, s_auth["Authorization"].split()[1]).owner = owner
    s3.put_object(Bucket=bucket, Key="shared/minutes.pdf", Body=pdfs[0].read_bytes() + b"\n% shared\n")
    note = event(bucket, "shared/minutes.pdf")

    first = alice.post("/v1/events/s3", headers=alice_auth, json=note).json()
    assert first["accepted"] == 1, first
    assert wait_for(lambda: job_finished(engine, first["job"]), 120, "Alice's event",
                    cluster["workers"]) == "done"
    second = bob.post("/v1/events/s3", headers=bob_auth, json=note).json()
    assert second["accepted"] == 1 and second["job"] != first["job"], second
    assert wait_for(lambda: job_finished(engine, second["job"]), 30, "Bob's event",
                    cluster["workers"]) == "done"
    view = bob.get(f"/v1/jobs/{second['job']}", headers=bob_auth).json()
    assert [d["name"] for d in view["documents"]] == ["shared/minutes.pdf"]
    document_id = view["documents"][0]["id"]
    word = max(bob.get(f"/v1/documents/{document_id}/text", headers=bob_auth).text.split(), key=len)
    hits = bob.get("/v1/search", params={"q": word}, headers=bob_auth).json()["hits"]
    assert {h["document"] for h in hits} == {"shared/minutes.pdf"}, hits
    # Each tenant's own repeat is still passed over, and the object was read once.
    assert bob.post("/v1/events/s3", headers=bob_auth, json=note).json()["skipped"] == 1
    assert alice.post("/v1/events/s3", headers=alice_auth, json=note).json()["skipped"] == 1
    alices = alice.get(f"/v1/jobs/{first['job']}", headers=alice_auth).json()["documents"]
    assert [d["id"] for d in alices] == [document_id]  # one document, read once

"""A completion webhook whose notify task was lost (its worker killed before or while it sent it)
is queued again by the sweep (pipeline.webhook_sweep) once overdue, on both backends, and sent to
a real local receiver under the same delivery id; one sent is never queued again, and one whose
tries are spent is left."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from pipeline.config import get_settings
from pipeline.db import job_rows
from pipeline.db import jobs as jobrepo
from pipeline.db.session import session_scope
from pipeline.queue import NOTIFY
from pipeline.webhook_sweep import resend_overdue
from pipeline.webhooks import DELIVERY_HEADER
from tests.local_http import QuietHandler, serve

GRACE_S = 60


class Receiver:
    """A webhook receiver on 127.0.0.1 that answers 200 and keeps what it got."""

    def __init__(self) -> None:
        self.got: list[tuple[Any, dict]] = []
        receiver = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.got.append((self.headers, json.loads(body)))
                self.send_response(200)
                self.end_headers()

        self.server, base = serve(Handler)
        self.url = base + "/hook"


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


@pytest.fixture
def tasks(engine, tmp_path, monkeypatch):
    monkeypatch.setenv("QUIRE_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    monkeypatch.setenv("QUIRE_STORAGE_URL", (tmp_path / "store").as_uri())
    get_settings.cache_clear()
    from workers import tasks as module

    module._CACHE.clear()
    module._CACHE["engine"] = engine
    yield module
    module._CACHE.clear()
    get_settings.cache_clear()


def ended_job(engine, url: str) -> str:
    """A job with a webhook that has ended (nothing in it, closed), its notify never queued: a
    finish task killed after it ended the job."""
    with session_scope(engine) as s:
        job, _ = jobrepo.create_keyed_job(s, settings={}, owner=None, idempotency_key=None,
                                          webhook_url=url)
    with session_scope(engine) as s:
        assert jobrepo.refresh_job(s, job.id).status == "done"
        assert job_rows.get_job(s, job.id).webhook_due_at is not None
    return job.id


def later(engine, job_id: str, seconds: float) -> None:
    """As if `seconds` had passed: the job's last try ended that much earlier."""
    with session_scope(engine) as s:
        job = job_rows.get_job(s, job_id)
        job.webhook_due_at = job.webhook_due_at - timedelta(seconds=seconds)


def test_a_lost_webhook_is_queued_again_once_overdue_and_sent_once(engine, tasks, receiver) -> None:
    job_id = ended_job(engine, receiver.url)
    queued: list[tuple] = []
    assert resend_overdue(engine, GRACE_S, lambda *a: queued.append(a)) == []  # not yet
    later(engine, job_id, GRACE_S + 1)
    assert resend_overdue(engine, GRACE_S, lambda *a: queued.append(a)) == [job_id]
    assert resend_overdue(engine, GRACE_S, lambda *a: queued.append(a)) == []  # left to that task
    assert queued == [(NOTIFY, job_id)]

    # Its worker killed while delivering: the try was recorded, the claim rolled back.
    with session_scope(engine) as s:
        assert jobrepo.begin_webhook_attempt(s, job_id, 10)
    later(engine, job_id, 10 + GRACE_S + 1)
    assert resend_overdue(engine, GRACE_S, lambda *a: queued.append(a)) == [job_id]
    tasks.notify_job.run(job_id)
    tasks.notify_job.run(job_id)  # the lost task, given back by Redis at last: sends nothing
    [(headers, body)] = receiver.got
    assert headers[DELIVERY_HEADER] == body["delivery"] == jobrepo.delivery_id(job_id)
    assert body["event"] == "job.finished" and body["job"]["id"] == job_id
    with session_scope(engine) as s:
        job = job_rows.get_job(s, job_id)
        assert job.webhook_sent_at is not None and job.webhook_due_at is None
        assert job.webhook_attempts == 2
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE jobs SET webhook_due_at = created_at"))  # however late
    assert resend_overdue(engine, GRACE_S, lambda *a: queued.append(a)) == []


def test_a_webhook_whose_tries_are_spent_is_left(engine, tasks) -> None:
    job_id = ended_job(engine, "http://127.0.0.1:9/hook")  # nobody answers
    with session_scope(engine) as s:
        job_rows.get_job(s, job_id).webhook_attempts = jobrepo.WEBHOOK_ATTEMPTS - 1
    tasks.notify_job.run(job_id)  # the last try fails: given up, no retry
    with session_scope(engine) as s:
        job = job_rows.get_job(s, job_id)
        assert (job.webhook_attempts, job.webhook_due_at, job.webhook_sent_at) == (
            jobrepo.WEBHOOK_ATTEMPTS, None, None)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE jobs SET webhook_due_at = created_at"))
    assert resend_overdue(engine, GRACE_S, lambda *a: None) == []
    tasks.notify_job.run(job_id)  # queued anyway: no more tries
    with session_scope(engine) as s:
        assert job_rows.get_job(s, job_id).webhook_attempts == jobrepo.WEBHOOK_ATTEMPTS


def test_a_job_still_taking_documents_is_not_owed_its_webhook_yet(engine) -> None:
    """A job whose submission goes on has not ended: its webhook is owed once it has."""
    with session_scope(engine) as s:
        job, _ = jobrepo.create_keyed_job(s, settings={}, owner=None, idempotency_key=None,
                                          webhook_url="http://127.0.0.1:9/hook", accepting=True)
    with session_scope(engine) as s:
        assert jobrepo.refresh_job(s, job.id).status == "queued"
        assert job_rows.get_job(s, job.id).webhook_due_at is None
        assert jobrepo.set_accepting(s, job.id, False).status == "done"
        assert job_rows.get_job(s, job.id).webhook_due_at is not None

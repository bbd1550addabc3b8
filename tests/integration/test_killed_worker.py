"""A worker killed mid-task (kill -9): Redis gives its task back to the queue by the time `quire
status` quotes, and a completion webhook it was sending is sent by the worker that runs the task
again, not dropped as if it had gone out."""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis

from pipeline.config import get_settings
from pipeline.db import job_rows
from pipeline.db import jobs as jobrepo
from pipeline.db.session import session_scope
from pipeline.queue import NOTIFY, QUEUES, RESTORE_S, celery_app, send
from pipeline.webhooks import DELIVERY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from pipeline.worker_presence import HOLDERS, KEY_PREFIX, queue_report, stall_hints
from tests.integration.conftest import settings_from
from tests.integration.test_celery_pipeline import wait_for
from tests.local_http import QuietHandler, serve

pytestmark = pytest.mark.integration
VISIBILITY_S = 15  # short, so the test waits for it; the task is killed well within it
TIMEOUT_S, RESEND_S = 5, 3  # the webhook's timeout, and the resend time (as deployed: 10, 60)
SECRET = "hook-secret"


class Receiver:
    """A webhook receiver whose first delivery hangs (the worker sending it is killed meanwhile);
    later ones are answered 200."""

    def __init__(self) -> None:
        self.bodies: list[tuple[Any, bytes]] = []  # (headers, body)
        self.answered = 0
        self.release = threading.Event()
        receiver = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.bodies.append((self.headers, body))
                if len(receiver.bodies) == 1:
                    receiver.release.wait(120)
                    return
                self.send_response(200)
                self.end_headers()
                receiver.answered += 1

        self.server, base = serve(Handler)
        self.url = base + "/hook"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def setting(tmp_path, redis_url, monkeypatch):
    """(env, engine, broker, receiver, a finished job with a webhook to the receiver)."""
    yield from _setting(tmp_path, redis_url, monkeypatch, {
        "QUIRE_QUEUE__VISIBILITY_TIMEOUT": str(VISIBILITY_S), "QUIRE_API__WEBHOOK_TIMEOUT": "300"})


@pytest.fixture
def setting_as_deployed(tmp_path, redis_url, monkeypatch):
    """`setting` with an hour's visibility timeout, as long-running ingests need, and a short
    resend time (the default is a minute), so the test waits seconds."""
    yield from _setting(tmp_path, redis_url, monkeypatch, {
        "QUIRE_QUEUE__VISIBILITY_TIMEOUT": "3600", "QUIRE_API__WEBHOOK_TIMEOUT": str(TIMEOUT_S),
        "QUIRE_API__WEBHOOK_RESEND_SECONDS": str(RESEND_S)})


def _setting(tmp_path, redis_url, monkeypatch, more: dict[str, str]):
    env = {"QUIRE_BROKER_URL": redis_url, "QUIRE_DATABASE_URL": f"sqlite:///{tmp_path / 'kill.sqlite'}",
           "QUIRE_STORAGE_URL": (tmp_path / "store").as_uri(),
           "QUIRE_API__WEBHOOK_SECRET": SECRET, **more}
    _settings, engine = settings_from(env, monkeypatch)
    broker = redis.Redis.from_url(redis_url)
    broker.delete(*QUEUES, "unacked", "unacked_index", "unacked_mutex", HOLDERS,
                  *broker.scan_iter(KEY_PREFIX + "*"))
    receiver = Receiver()
    with session_scope(engine) as s:
        job, _ = jobrepo.create_keyed_job(s, settings={}, owner=None, idempotency_key=None,
                                          webhook_url=receiver.url)
        job_id = job.id
    with session_scope(engine) as s:
        assert jobrepo.refresh_job(s, job_id).status == "done"  # nothing in it, closed: done
    yield env, engine, broker, receiver, job_id
    receiver.close()
    engine.dispose()
    get_settings.cache_clear()
    celery_app.cache_clear()


def _ready(pool, name: str) -> None:
    log = pool.logdir / f"{name}.log"
    wait_for(lambda: log.exists() and " ready." in log.read_text(), 90, f"worker {name} to start", pool.logs)


def _kill_while_sending(pool, broker, receiver, job_id: str) -> float:
    """Queue the job's webhook, kill the finish worker while it waits on the receiver; returns
    when its worker took the task (epoch seconds, as kombu recorded it)."""
    send(NOTIFY, job_id)
    wait_for(lambda: receiver.bodies, 60, "the webhook's first delivery", pool.logs)
    taken = broker.zrange("unacked_index", 0, -1, withscores=True)
    assert len(taken) == 1, taken
    os.killpg(pool.procs["finish-a"].pid, signal.SIGKILL)  # the OOM killer, a lost node
    pool.procs["finish-a"].wait(30)
    assert broker.hlen("unacked") == 1  # held for the dead worker until the visibility timeout
    return taken[0][1]


def test_a_killed_workers_task_is_back_on_its_queue_by_the_time_status_quotes(setting, workers):
    env, _engine, broker, receiver, job_id = setting
    pool = workers(env)
    pool.start("ingest", name="idle")  # a running worker of any queue puts expired tasks back
    pool.start("finish", name="finish-a")
    _ready(pool, "idle")
    _ready(pool, "finish-a")
    taken = _kill_while_sending(pool, broker, receiver, job_id)
    # A task whose worker is not known (killed before it recorded the task): Redis's timeout.
    broker.delete(HOLDERS)
    # What `quire status` says once the dead worker's presence has lapsed (TTL_S; removed here
    # so the test need not wait for it).
    broker.delete(*(k for k in broker.scan_iter(KEY_PREFIX + "*") if b"finish" in k))
    hints = stall_hints(queue_report(env["QUIRE_BROKER_URL"], QUEUES), VISIBILITY_S)
    finish = [h for h in hints if "of the finish queue" in h]
    assert len(finish) == 1, hints
    quoted = re.search(r"back on the finish queue by (\S+ \S+) UTC", finish[0])
    assert quoted, finish[0]
    quoted_at = datetime.strptime(quoted[1] + "+0000", "%Y-%m-%d %H:%M:%S%z").timestamp()
    assert quoted_at == pytest.approx(taken + VISIBILITY_S + RESTORE_S, abs=1)

    # kombu 5.7 swept for expired tasks only every ~100 s by default: it came back up to 100 s
    # after the time quoted.
    wait_for(lambda: broker.llen("finish") == 1 and broker.hlen("unacked") == 0,
             VISIBILITY_S + RESTORE_S + 20, "the killed worker's task back on its queue", pool.logs)
    back = time.time()
    assert back <= quoted_at + 2, (back - taken, quoted[1])


def test_a_webhook_whose_worker_was_killed_mid_delivery_is_sent_by_the_next(setting, workers):
    env, engine, broker, receiver, job_id = setting
    pool = workers(env)
    pool.start("finish", name="finish-a")
    _ready(pool, "finish-a")
    _kill_while_sending(pool, broker, receiver, job_id)
    pool.start("finish", name="finish-b")
    # Redelivered after the visibility timeout, the task found the webhook claimed by the dead
    # worker and sent nothing, ever.
    wait_for(lambda: receiver.answered == 1, VISIBILITY_S + RESTORE_S + 60, "the webhook sent again",
             pool.logs)
    headers, body = receiver.bodies[-1]
    assert verify(SECRET, headers.get(TIMESTAMP_HEADER), body, headers.get(SIGNATURE_HEADER))
    assert b'"event":"job.finished"' in body and job_id.encode() in body
    wait_for(lambda: broker.hlen("unacked") == 0, 30, "the task acked", pool.logs)
    with session_scope(engine) as s:
        assert job_rows.get_job(s, job_id).webhook_sent_at is not None
    assert len(receiver.bodies) == 2  # once more, not again and again


def test_a_webhook_whose_worker_was_killed_is_sent_again_within_minutes_not_the_visibility_timeout(
        setting_as_deployed, workers):
    """With the visibility timeout an hour (as deployed: it must outlast the longest ingest), the
    webhook a killed finish worker was sending came only when Redis gave the task back an hour
    later. Another finish worker's sweep sends it again once its try has timed out and
    QUIRE_API__WEBHOOK_RESEND_SECONDS more have passed, under the same delivery id."""
    env, engine, broker, receiver, job_id = setting_as_deployed
    with session_scope(engine) as s:  # its notify task is queued below, not found by a sweep
        job_rows.get_job(s, job_id).webhook_due_at = datetime.now(UTC) + timedelta(hours=1)
    pool = workers(env)
    pool.start("finish", name="finish-a")
    _ready(pool, "finish-a")
    _kill_while_sending(pool, broker, receiver, job_id)
    broker.delete(HOLDERS)  # the notify task's worker not known: the webhook sweep alone
    killed = time.time()
    pool.start("finish", name="finish-b")
    wait_for(lambda: receiver.answered == 1, 60, "the webhook sent again", pool.logs)
    assert time.time() - killed < 60  # not 3600
    (first, first_body), (again, body) = receiver.bodies
    assert verify(SECRET, again.get(TIMESTAMP_HEADER), body, again.get(SIGNATURE_HEADER))
    assert again.get(DELIVERY_HEADER) == first.get(DELIVERY_HEADER) == f"job.finished:{job_id}"
    assert json.loads(body)["delivery"] == json.loads(first_body)["delivery"] == f"job.finished:{job_id}"
    with session_scope(engine) as s:
        job = job_rows.get_job(s, job_id)
        assert job.webhook_sent_at is not None and job.webhook_due_at is None
        assert job.webhook_attempts == 2
    time.sleep(2 * RESEND_S)
    assert len(receiver.bodies) == 2  # sent, so not again
    assert broker.hlen("unacked") == 1  # the dead worker's task, back only after the hour


def test_a_killed_workers_task_is_put_back_on_its_queue_within_half_a_minute(setting_as_deployed,
                                                                             workers):
    """The visibility timeout an hour, as deployed, and the webhook sweep held off: the task the
    killed worker held goes back on its queue once the worker's presence has lapsed, and the next
    worker runs it (here: sends the webhook), within about TTL_S + RESTORE_S, not an hour."""
    from pipeline.worker_presence import TTL_S

    env, engine, broker, receiver, job_id = setting_as_deployed
    env["QUIRE_API__WEBHOOK_RESEND_SECONDS"] = "3600"
    with session_scope(engine) as s:
        job_rows.get_job(s, job_id).webhook_due_at = datetime.now(UTC) + timedelta(hours=1)
    pool = workers(env)
    pool.start("finish", name="finish-a")
    _ready(pool, "finish-a")
    _kill_while_sending(pool, broker, receiver, job_id)
    killed = time.time()
    [holder] = broker.hgetall(HOLDERS).values()
    assert holder.startswith(b"finish-") and broker.hlen("unacked") == 1
    pool.start("ingest", name="any-worker")  # a worker of any queue puts it back
    pool.start("finish", name="finish-b")
    wait_for(lambda: receiver.answered == 1, 90, "the killed worker's task run again", pool.logs)
    assert time.time() - killed < TTL_S + 2 * RESTORE_S + 15  # not 3600
    wait_for(lambda: broker.hlen("unacked") == 0 and broker.hlen(HOLDERS) == 0, 30,
             "the task acked and let go", pool.logs)
    assert "put back on its queue" in "".join(p.read_text() for p in pool.logdir.glob("*.log"))
    with session_scope(engine) as s:
        assert job_rows.get_job(s, job_id).webhook_attempts == 2
    assert len(receiver.bodies) == 2

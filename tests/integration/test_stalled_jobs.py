"""`quire status` says why a job does not move: a queue no running worker takes, or a task a
killed worker took (Redis keeps it until the visibility timeout), and stays quiet while workers
work."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import time

import pytest
import redis
from typer.testing import CliRunner

from pipeline import storage
from pipeline.cli import app
from pipeline.config import get_settings
from pipeline.queue import celery_app
from pipeline.submit import submit_files
from pipeline.worker_presence import KEY_PREFIX, TTL_S
from tests.integration.conftest import settings_from
from tests.integration.test_celery_pipeline import wait_for
from tests.model_fixtures import make_letter_page
from tests.pagegen import make_pdf

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="poppler-utils missing"),
]
DPI = 150
PAGES = 120  # an ingest long enough to kill the worker in the middle of it


def test_status_names_a_queue_without_workers_and_a_task_a_killed_worker_took(
        tmp_path, redis_url, workers, monkeypatch):
    pdf = make_pdf([make_letter_page(DPI)] * PAGES, tmp_path / "long.pdf", dpi=DPI)
    db_file = tmp_path / "stall.sqlite"
    env = {"QUIRE_BROKER_URL": redis_url, "QUIRE_DATABASE_URL": f"sqlite:///{db_file}",
           "QUIRE_STORAGE_URL": (tmp_path / "store").as_uri(), "QUIRE_RENDER__DPI": str(DPI)}
    settings, engine = settings_from(env, monkeypatch)
    broker = redis.Redis.from_url(redis_url)
    broker.delete("ingest", "recognize", "finish", "unacked", "unacked_index",
                  *broker.scan_iter(KEY_PREFIX + "*"))
    job_id = submit_files(engine, storage.open_store(settings.resolved_storage_url()), [pdf], settings,
                          formats=["text"])

    def status() -> str:
        result = CliRunner().invoke(app, ["status", job_id])
        assert result.exit_code == 0, result.output
        return result.output

    said = status()
    assert "1 task waits in the ingest queue and no running worker takes it: start `quire worker ingest`" in said

    pool = workers(env)
    ingest = pool.start("ingest")
    with sqlite3.connect(db_file) as conn:
        wait_for(lambda: conn.execute("SELECT count(*) FROM pages").fetchone()[0] >= 3, 60,
                 "the ingest to begin", pool.logs)
    said = status()
    assert "ingest queue" not in said, said  # a worker has the task: nothing to explain

    os.killpg(ingest.pid, signal.SIGKILL)  # the OOM killer, a lost node: no goodbye
    ingest.wait(30)
    time.sleep(TTL_S + 2)  # its presence lapses
    said = status()
    assert "1 task of the ingest queue was taken by a worker that has stopped" in said, said
    # Held, not lost: its worker recorded it, so the next worker to start puts it back at once,
    # not Redis after the visibility timeout (pipeline/task_holders.py).
    assert "the first worker to start (any queue) puts it back on the ingest queue" in said, said
    assert broker.hlen("unacked") == 1 and broker.llen("ingest") == 0
    pool.start("finish", name="any-worker")
    wait_for(lambda: broker.llen("ingest") == 1 and broker.hlen("unacked") == 0, 60,
             "the killed worker's task back on its queue", pool.logs)
    said = status()  # back in the queue, where no ingest worker takes it
    assert "1 task waits in the ingest queue and no running worker takes it" in said, said
    assert "taken by a worker that has stopped" not in said, said
    get_settings.cache_clear()
    celery_app.cache_clear()

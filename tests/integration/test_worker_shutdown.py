"""A worker stopped mid-task with Ctrl-C twice (Celery's cold shutdown) gives its task back to
the queue, and the job still finishes: nothing a user submitted is lost."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import time

import pytest
import redis

from pipeline import storage
from pipeline.config import get_settings
from pipeline.queue import celery_app
from pipeline.submit import submit_files
from tests.integration.conftest import settings_from
from tests.integration.test_celery_pipeline import wait_for
from tests.model_fixtures import LETTER_LINES, make_letter_page
from tests.pagegen import make_pdf

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="poppler-utils missing"),
]
DPI = 150
PAGES = 120  # long enough an ingest to be stopped in the middle


def test_a_cold_shutdown_mid_ingest_requeues_the_task_and_the_job_finishes(
        tmp_path, redis_url, workers, monkeypatch, letter_reader):
    pdf = make_pdf([make_letter_page(DPI)] * PAGES, tmp_path / "long.pdf", dpi=DPI)
    db_file = tmp_path / "dist.sqlite"
    env = {"QUIRE_BROKER_URL": redis_url, "QUIRE_DATABASE_URL": f"sqlite:///{db_file}",
           "QUIRE_STORAGE_URL": (tmp_path / "store").as_uri(), "QUIRE_MODEL": str(letter_reader),
           "QUIRE_RENDER__DPI": str(DPI)}
    settings, engine = settings_from(env, monkeypatch)
    broker = redis.Redis.from_url(redis_url)
    broker.delete("ingest", "recognize", "finish", "unacked", "unacked_index")
    job_id = submit_files(engine, storage.open_store(settings.resolved_storage_url()), [pdf], settings,
                          formats=["text"])

    def sql(query: str):
        with sqlite3.connect(db_file) as conn:
            return conn.execute(query).fetchone()[0]

    pool = workers(env)
    ingest = pool.start("ingest")  # one process: the solo pool
    wait_for(lambda: sql("SELECT count(*) FROM pages") >= 3, 60, "the ingest to begin", pool.logs)
    assert sql(f"SELECT status FROM jobs WHERE id = '{job_id}'") == "running"  # not "queued"
    os.killpg(ingest.pid, signal.SIGINT)  # warm shutdown: it would wait for the task
    time.sleep(1.0)
    os.killpg(ingest.pid, signal.SIGINT)  # cold shutdown: stop the task now
    ingest.wait(60)
    assert sql("SELECT count(*) FROM pages") < PAGES, "the ingest ended before it was stopped"
    assert "NotImplementedError" not in pool.logs()
    assert broker.llen("ingest") == 1, pool.logs()  # the task is back in its queue

    pool.start("ingest,finish", name="ingest-again")
    pool.start("recognize")
    wait_for(lambda: sql(f"SELECT status FROM jobs WHERE id = '{job_id}'") in ("done", "failed", "partial"),
             240, "the job to finish", pool.logs)
    assert sql(f"SELECT status FROM jobs WHERE id = '{job_id}'") == "done", pool.logs()
    assert sql("SELECT count(*) FROM pages") == PAGES
    assert sql("SELECT count(*) FROM lines") == PAGES * len(LETTER_LINES)
    assert sql("SELECT count(*) FROM lines WHERE text IS NULL") == 0
    get_settings.cache_clear()
    celery_app.cache_clear()

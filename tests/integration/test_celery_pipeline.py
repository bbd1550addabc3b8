"""The distributed driver: a real redis-server and real Celery worker processes give the local run's text."""

from __future__ import annotations

import shutil
import sqlite3
import time

import pytest

from pipeline import storage
from pipeline.config import Settings, get_settings
from pipeline.exporters import parse_formats
from pipeline.queue import celery_app
from pipeline.runner import LocalRunner
from pipeline.submit import submit_files
from tests.integration.conftest import settings_from
from tests.model_fixtures import LETTER_LINES, make_letter_page
from tests.pagegen import make_pdf

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="poppler-utils missing"),
]
DPI = 150


def wait_for(predicate, timeout: float, what: str, logs) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    pytest.fail(f"timed out waiting for {what}\n{logs()}")


def test_celery_workers_process_a_pdf_like_the_local_runner(tmp_path, redis_url, workers, monkeypatch, letter_reader):
    pdf = make_pdf([make_letter_page(DPI)], tmp_path / "letter.pdf", dpi=DPI)
    model = letter_reader
    db_file = tmp_path / "dist.sqlite"
    env = {
        "QUIRE_BROKER_URL": redis_url,
        "QUIRE_DATABASE_URL": f"sqlite:///{db_file}",
        "QUIRE_STORAGE_URL": (tmp_path / "store").as_uri(),
        "QUIRE_MODEL": str(model),
        "QUIRE_RENDER__DPI": str(DPI),
        "QUIRE_RECOGNIZE__BATCH_SIZE": "3",  # several recognize tasks for one page
    }
    settings, engine = settings_from(env, monkeypatch)
    store = storage.open_store(settings.resolved_storage_url())

    pool = workers(env)
    pool.start("ingest,finish")
    pool.start("recognize")
    job_id = submit_files(engine, store, [pdf], settings, formats=["text", "json"])

    def job_status() -> str:
        with sqlite3.connect(db_file) as conn:
            return conn.execute("SELECT status FROM jobs WHERE id = ?", (job_id,)).fetchone()[0]

    wait_for(lambda: job_status() in ("done", "failed", "partial"), 120, "the job to finish", pool.logs)
    assert job_status() == "done", pool.logs()

    with sqlite3.connect(db_file) as conn:
        texts = [r[0] for r in conn.execute("SELECT text FROM lines ORDER BY position")]
        crop_keys = [r[0] for r in conn.execute("SELECT crop_key FROM lines")]
    assert texts == list(LETTER_LINES)
    assert all(key and store.exists(key) for key in crop_keys)  # crops travel through the store

    exports = [o.key for o in store.list("documents/") if "/exports/" in o.key]
    text_key = next(k for k in exports if k.endswith("text.txt"))
    distributed = store.get_bytes(text_key).decode()

    local_home = tmp_path / "local"
    local_settings = Settings(
        model=str(model), render={"dpi": DPI}, database_url=f"sqlite:///{local_home / 'q.sqlite'}",
        storage_url=(local_home / "store").as_uri(),
    )
    local = LocalRunner(local_settings, exporters=parse_formats("txt,json"), out_dir=tmp_path / "out")
    summary = local.run([pdf])
    assert summary.count("done") == 1
    assert distributed == (tmp_path / "out" / "letter.txt").read_text() == "\n".join(LETTER_LINES) + "\n"
    get_settings.cache_clear()
    celery_app.cache_clear()

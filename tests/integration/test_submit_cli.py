"""`quire submit` on a fresh machine's embedded default (SQLite, local store) with a real broker,
and with the broker down: a clear message and no half-made job."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from tests.conftest import free_port
from tests.model_fixtures import make_letter_page
from tests.pagegen import make_pdf

# `quire` with the broker check before a submission skipped: a broker that goes away once the
# submission has begun.
LATE_BROKER_LOSS = ("import pipeline.queue as q; q.broker_problem = lambda: None; "
                    "from pipeline.cli import main; main()")


def quire(tmp_path: Path, *args: str, broker_url: str | None = None,
          lost_late: bool = False) -> subprocess.CompletedProcess:
    """`quire ARGS` in a fresh process on a fresh home under tmp_path (no QUIRE_* of ours)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUIRE_")}
    env["QUIRE_HOME"] = str(tmp_path / "home")
    if broker_url:
        env["QUIRE_BROKER_URL"] = broker_url
    program = ["-c", LATE_BROKER_LOSS] if lost_late else ["-m", "pipeline.cli"]
    return subprocess.run([sys.executable, *program, *args], check=False, env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)


def submit(tmp_path: Path, broker_url: str, *inputs: Path, lost_late: bool = False) -> subprocess.CompletedProcess:
    return quire(tmp_path, "submit", *map(str, inputs), "--no-progress", broker_url=broker_url,
                 lost_late=lost_late)


def jobs(tmp_path: Path) -> list[tuple]:
    db = tmp_path / "home" / "quire.sqlite"
    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT id, status FROM jobs").fetchall()


@pytest.fixture
def letter(tmp_path) -> Path:
    return make_pdf([make_letter_page(100)], tmp_path / "letter.pdf", dpi=100)


def test_submit_on_a_fresh_home_makes_its_schema_and_queues_the_document(tmp_path, letter, redis_url):
    client = redis.Redis.from_url(redis_url)
    client.delete("ingest")

    result = submit(tmp_path, redis_url, letter)

    assert result.returncode == 0, result.stderr
    job_id = result.stdout.strip()
    assert jobs(tmp_path) == [(job_id, "queued")]
    assert "1 queued" in result.stderr
    assert client.llen("ingest") == 1


def test_submit_with_the_broker_down_says_so_and_leaves_no_job(tmp_path, letter):
    dead = f"redis://127.0.0.1:{free_port()}/0"

    result = submit(tmp_path, dead, letter)

    assert result.returncode == 1
    assert "cannot reach the broker (QUIRE_BROKER_URL)" in result.stderr
    assert "nothing was submitted" in result.stderr
    assert "Traceback" not in result.stderr
    assert jobs(tmp_path) == []


def test_a_broker_lost_during_a_submission_keeps_the_job_and_the_same_command_goes_on(
        tmp_path, letter, redis_url):
    client = redis.Redis.from_url(redis_url)
    client.delete("ingest")
    dead = f"redis://127.0.0.1:{free_port()}/0"

    lost = submit(tmp_path, dead, letter, lost_late=True)

    assert lost.returncode == 1
    assert "cannot reach the broker (QUIRE_BROKER_URL)" in lost.stderr
    assert "run the same command again once the broker answers" in lost.stderr
    assert "Traceback" not in lost.stderr
    (job_id, status), = jobs(tmp_path)
    assert status == "queued" and job_id in lost.stderr

    again = submit(tmp_path, redis_url, letter)

    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == job_id
    assert f"resuming job {job_id}" in again.stderr and "1 resent" in again.stderr
    assert client.llen("ingest") == 1


def test_an_error_raised_on_purpose_is_one_line_not_a_traceback(tmp_path):
    result = quire(tmp_path, "watch", "inbox/", "--once")
    assert result.returncode == 2
    assert result.stderr.strip() == "quire: watch needs an s3://bucket/prefix URI, not 'inbox/'"


def test_a_token_for_no_tenant_is_refused(tmp_path):
    result = quire(tmp_path, "token", "create", "--name", " ")
    assert result.returncode == 2 and "not empty" in result.stderr and result.stdout == ""

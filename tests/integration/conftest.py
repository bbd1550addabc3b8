"""Fixtures that start real servers for integration tests: redis-server, Celery worker processes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(workdir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    import redis

    client = redis.Redis(host="127.0.0.1", port=port)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("redis-server did not start")
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(10)


class Workers:
    """Celery worker subprocesses started through `quire worker`, logs kept for failures."""

    def __init__(self, env: dict[str, str], logdir: Path) -> None:
        self.env, self.logdir = env, logdir
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, queue: str, name: str | None = None) -> subprocess.Popen:
        name = name or queue.replace(",", "-")
        log = (self.logdir / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "worker", queue, "--concurrency", "1", "--loglevel", "info"],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.procs[name] = proc
        return proc

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.read_text()[-3000:]}" for p in self.logdir.glob("*.log"))

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture
def workers(tmp_path) -> Iterator[callable]:
    started: list[Workers] = []

    def make(env: dict[str, str]) -> Workers:
        w = Workers({**os.environ, **env, "PYTHONUNBUFFERED": "1"}, tmp_path)
        started.append(w)
        return w

    yield make
    for w in started:
        w.stop()


def settings_from(env: dict[str, str], monkeypatch) -> tuple:
    """(settings, engine) as the workers given `env` see them, the schema made: the cached
    settings and Celery app are cleared so this process reads `env` too."""
    from pipeline.config import get_settings
    from pipeline.db.session import make_engine, upgrade
    from pipeline.queue import celery_app

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    celery_app.cache_clear()
    settings = get_settings()
    upgrade(settings.resolved_database_url())
    return settings, make_engine(settings.resolved_database_url())

"""Shared fixtures: a real S3 server (moto), a throwaway PostgreSQL cluster, SQLite URLs."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """moto's S3 server on 127.0.0.1; yields its endpoint URL. Dummy credentials are set."""
    from moto.server import ThreadedMotoServer

    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    saved = {k: os.environ.get(k) for k in [*env, "AWS_SESSION_TOKEN", "AWS_PROFILE"]}
    os.environ.update(env)
    for k in ("AWS_SESSION_TOKEN", "AWS_PROFILE"):
        os.environ.pop(k, None)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def s3_bucket(s3_server: str) -> str:
    """A fresh, empty bucket on the shared S3 server (the server outlives tests)."""
    import boto3

    name = f"test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=name)
    return name


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLAlchemy URL for an empty SQLite file in the test's tmp dir."""
    return f"sqlite:///{tmp_path / 'quire.sqlite'}"


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A PostgreSQL cluster made by initdb in a temp dir, on a free loopback port.

    Yields the URL of its `postgres` database. Skips where PostgreSQL is not installed.
    """
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not installed")
    as_root = os.geteuid() == 0
    if as_root and shutil.which("su") is None:
        pytest.skip("running as root without su: cannot start PostgreSQL")
    base = Path(tempfile.mkdtemp(prefix="quire-pg-"))
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    if as_root:  # postgres refuses to run as root; hand the dir to the postgres user
        base.chmod(0o755)
        shutil.chown(base, "postgres")
        shutil.chown(sock, "postgres")

    def sh(cmd: list[str]) -> None:
        line = " ".join(cmd)
        args = ["su", "postgres", "-c", line] if as_root else ["bash", "-c", line]
        subprocess.run(args, check=True, capture_output=True, timeout=120)

    port = free_port()
    sh([str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
        "--encoding=UTF8", "--no-sync"])
    opts = f"'-p {port} -h 127.0.0.1 -k {sock} -F -c fsync=off -c full_page_writes=off'"
    sh([str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(base / "log"),
        "-w", "-t", "60", "start"])
    try:
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres"
    finally:
        try:
            sh([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"])
        finally:
            shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty database on the shared PostgreSQL cluster; dropped afterwards."""
    import sqlalchemy as sa

    name = f"quire_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgres_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield postgres_server.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite_url", "postgres_url"])
def engine(request: pytest.FixtureRequest):
    """An engine on a fresh database migrated to the head, once on each backend."""
    from pipeline.db.session import make_engine, upgrade

    url = request.getfixturevalue(request.param)
    upgrade(url)
    eng = make_engine(url)
    yield eng
    eng.dispose()


@pytest.fixture(scope="session")
def letter_reader(tmp_path_factory) -> Path:
    """A tiny model trained to read the generated letter page at 150 dpi, built once per test run."""
    import shutil

    from tests.model_fixtures import build_letter_reader, make_letter_page
    from tests.pagegen import make_pdf

    if shutil.which("pdftoppm") is None:
        pytest.skip("poppler-utils missing")
    root = tmp_path_factory.mktemp("letter-reader")
    pdf = make_pdf([make_letter_page(150)], root / "letter.pdf", dpi=150)
    return build_letter_reader(root / "reader", pdf, 150)

"""Job status for a job of N documents: `job_view`, the API's job routes and `quire status`, before
(every document loaded, tests/job_view_legacy.py) and after (SQL aggregates), side by side.

    .venv/bin/python bench/bench_job_status.py --sizes 1000,10000,100000 [--sqlite] [--url URL]

Fills a database with one job of N documents (70 % done, 10 % failed, 10 % processing, 10 %
pending; one page of 40 lines each but the pending ones) by INSERT ... SELECT over a generated
series, so 100,000 documents (3.6 M lines) fill in minutes. Done lines carry no text: status
only reads statuses, and the search index would slow the fill. Without --url it starts a
PostgreSQL cluster the way bench_distributed.py does (and SQLite with --sqlite).
Prints seconds (fastest of --repeat), SQL statements and response bytes per call.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import event, text
from sqlalchemy.engine import Engine

from bench.timing import fastest

LINES = 40
SEQ = ("WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i < :n - 1) ")


def fill(engine: Engine, n: int, tag: str) -> str:
    """One job of n documents (ids `tag-i`); returns its id."""
    now: Any = datetime.now(UTC)
    if engine.dialect.name == "sqlite":  # how SQLAlchemy stores a DateTime there
        now = now.strftime("%Y-%m-%d %H:%M:%S.%f")
    job_id = f"job-{tag}"
    status = ("CASE WHEN i % 10 < 7 THEN 'done' WHEN i % 10 = 7 THEN 'failed' "
              "WHEN i % 10 = 8 THEN 'processing' ELSE 'pending' END")
    with engine.begin() as c:
        c.execute(text(
            "INSERT INTO jobs (id, owner, settings, status, documents_total, documents_done, "
            "documents_failed, created_at, accepting) VALUES (:id, :owner, '{}', 'running', "
            ":n, 0, 0, :now, false)"), {"id": job_id, "owner": "bench", "n": n, "now": now})
        c.execute(text(
            SEQ + "INSERT INTO documents (id, sha256, profile, name, source_uri, size_bytes, "
            "page_count, status, error, pages_done, created_at, updated_at) "
            f"SELECT :tag || '-' || CAST(i AS TEXT), :tag || '-' || CAST(i AS TEXT), 'bench', "
            "'box/' || CAST(i AS TEXT) || '.pdf', 's3://archive/box/' || CAST(i AS TEXT) || '.pdf', "
            f"1000, CASE WHEN i % 10 = 9 THEN NULL ELSE 1 END, {status}, "
            "CASE WHEN i % 10 = 7 THEN 'cannot render: damaged file' ELSE NULL END, "
            "CASE WHEN i % 10 < 7 THEN 1 ELSE 0 END, :now, :now FROM seq"),
            {"n": n, "tag": tag, "now": now})
        c.execute(text(
            SEQ + "INSERT INTO job_documents (job_id, document_id, name_sha256, position, name) "
            "SELECT :job, :tag || '-' || CAST(i AS TEXT), :tag || '-' || CAST(i AS TEXT), i, "
            "'box/' || CAST(i AS TEXT) || '.pdf' FROM seq"), {"n": n, "tag": tag, "job": job_id})
        c.execute(text(
            "INSERT INTO pages (document_id, number, image_key, width, height, dpi, angle, rotation, "
            "status, lines_total, lines_done) SELECT id, 1, 'k', 2480, 3508, 300, 0.0, 0, "
            "CASE WHEN status = 'done' THEN 'done' ELSE 'pending' END, 40, 0 FROM documents "
            "WHERE profile = 'bench' AND sha256 LIKE :like AND status != 'pending'"),
            {"like": f"{tag}-%"})
        # Done documents: every line read; the others: (page id % 41) of their 40 lines.
        c.execute(text(
            "WITH RECURSIVE k(j) AS (SELECT 0 UNION ALL SELECT j + 1 FROM k WHERE j < :lines - 1) "
            "INSERT INTO lines (page_id, position, x0, y0, x1, y1, crop_key, status) "
            "SELECT p.id, k.j, 0, k.j * 80, 2400, k.j * 80 + 60, 'c', "
            "CASE WHEN p.status = 'done' OR k.j < p.id % 41 THEN 'done' ELSE 'pending' END "
            "FROM pages p JOIN documents d ON d.id = p.document_id CROSS JOIN k "
            "WHERE d.profile = 'bench' AND d.sha256 LIKE :like"),
            {"lines": LINES, "like": f"{tag}-%"})
        c.execute(text(
            "UPDATE pages SET lines_done = CASE WHEN status = 'done' THEN 40 "
            "WHEN id % 41 > 40 THEN 40 ELSE id % 41 END "
            "WHERE document_id IN (SELECT id FROM documents WHERE sha256 LIKE :like)"),
            {"like": f"{tag}-%"})
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.execute(text("VACUUM ANALYZE"))  # as autovacuum would after a bulk load
    return job_id


@contextmanager
def counting() -> Any:
    """Counts the SQL statements run inside the block."""
    seen = [0]

    def count(*_: Any) -> None:
        seen[0] += 1

    # On the class: the API and the CLI open engines of their own.
    event.listen(Engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", count)


def measure(engine: Engine, fn: Any, repeat: int) -> tuple[float, int, Any]:
    with counting() as seen:
        fn()
    statements = seen[0]
    seconds, result = fastest(fn, repeat, warm_up=False)
    return seconds, statements, result


def bench_size(url: str, engine: Engine, n: int, repeat: int, rows: list[list[str]],
               backend: str) -> None:
    from fastapi.testclient import TestClient
    from typer.testing import CliRunner

    from pipeline.api import views
    from pipeline.api.app import create_app
    from pipeline.cli import app as cli_app
    from pipeline.config import Settings, get_settings
    from pipeline.db import jobs as jobrepo
    from pipeline.db.models import Job
    from pipeline.db.session import session_scope
    from tests.job_view_legacy import legacy_job_view

    started = time.perf_counter()
    job_id = fill(engine, n, f"n{n}")
    print(f"# {backend}: filled {n:,} documents in {time.perf_counter() - started:.0f} s",
          file=sys.stderr, flush=True)
    with session_scope(engine) as s:
        token, _ = jobrepo.create_token(s, name="bench", owner="bench")
    settings = Settings(database_url=url, storage_url=Path(tempfile.mkdtemp()).as_uri())
    client = TestClient(create_app(settings, enqueue=lambda *a: None))
    auth = {"Authorization": f"Bearer {token}"}
    os.environ["QUIRE_DATABASE_URL"] = url
    get_settings.cache_clear()
    new_view, new_views = views.job_view, views.job_views

    def legacy_views(s: Any, jobs: Any, *, with_documents: bool = False) -> list[dict[str, Any]]:
        return [legacy_job_view(s, job, with_documents=with_documents) for job in jobs]

    def view(fn: Any) -> Any:
        def call() -> Any:
            with session_scope(engine) as s:
                return fn(s, s.get(Job, job_id))
        return call

    def get(path: str) -> Any:
        def call() -> bytes:
            response = client.get(path, headers=auth)
            assert response.status_code == 200, response.text
            return response.content
        return call

    def status() -> str:
        result = CliRunner().invoke(cli_app, ["status", job_id])
        assert result.exit_code == 0, result.output
        return result.output

    cases = [("job_view", view(legacy_job_view), view(new_view)),
             ("GET /v1/jobs/{id}", get(f"/v1/jobs/{job_id}"), None),
             ("GET /v1/jobs", get("/v1/jobs?limit=500"), None),
             ("quire status JOB", status, None)]
    for name, before, after in cases:
        # Before: the legacy view put in the shared module, which the routes and the CLI call.
        views.job_view, views.job_views = legacy_job_view, legacy_views
        try:
            b = measure(engine, before, repeat)
        finally:
            views.job_view, views.job_views = new_view, new_views
        a = measure(engine, after or before, repeat)
        size = [len(r) if isinstance(r, bytes | str) else len(json.dumps(r)) for r in (b[2], a[2])]
        rows.append([backend, f"{n:,}", name, f"{b[0]:.3f}", f"{a[0]:.3f}", f"{b[1]}/{a[1]}",
                     f"{size[0]:,}/{size[1]:,}"])
        print(" | ".join(rows[-1]), file=sys.stderr, flush=True)
    if hasattr(views, "documents_list"):
        d = measure(engine, get(f"/v1/jobs/{job_id}/documents?status=failed&limit=100"), repeat)
        rows.append([backend, f"{n:,}", "GET .../documents?status=failed", "", f"{d[0]:.3f}",
                     f"-/{d[1]}", f"-/{len(d[2]):,}"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sqlite", action="store_true", help="SQLite too")
    ap.add_argument("--no-postgres", action="store_true")
    ap.add_argument("--url", help="a PostgreSQL database to use (emptied of nothing: ids are n<N>-i)")
    args = ap.parse_args()
    from bench.bench_distributed import start_postgres
    from pipeline.db.session import make_engine, upgrade

    tmp = Path(tempfile.mkdtemp(prefix="quire-bench-status-"))
    urls: list[tuple[str, str]] = []
    stop = None
    if args.url:
        urls.append(("postgresql", args.url))
    elif not args.no_postgres:
        pg = start_postgres(tmp)
        if pg is None:
            print("# PostgreSQL not installed: SQLite only", file=sys.stderr)
        else:
            stop, url = pg
            urls.append(("postgresql", url))
    if args.sqlite or not urls:
        urls.append(("sqlite", f"sqlite:///{tmp / 'quire.sqlite'}"))
    rows: list[list[str]] = []
    try:
        for backend, url in urls:
            upgrade(url)
            engine = make_engine(url)
            for n in (int(x) for x in args.sizes.split(",")):
                bench_size(url, engine, n, args.repeat, rows, backend)
            engine.dispose()
    finally:
        if stop:
            import subprocess

            subprocess.run(stop, check=False, capture_output=True)
    print("| backend | documents | call | before s | after s | SQL statements before/after | "
          "bytes before/after |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()

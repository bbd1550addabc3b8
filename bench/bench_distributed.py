"""Throughput of the distributed pipeline on loopback: redis-server, PostgreSQL (or SQLite), an S3
server, one Celery worker per queue. Prints documents, pages and lines per second and the
deepest each queue got, for docs/SCALING.md.

    .venv/bin/python bench/bench_distributed.py --docs 8 --pages 2 [--model PATH] [--batch 32]

Without --model a tiny random line model is built: it measures the pipeline's own overhead
(render, segment, SQL, S3, queueing), not a real model's recognition speed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.conftest import free_port
from tests.pagegen import make_page, make_pdf


def start_redis(workdir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", str(workdir)],
                            stdout=subprocess.DEVNULL)
    time.sleep(0.5)
    return proc, f"redis://127.0.0.1:{port}/0"


def start_postgres(base: Path) -> tuple[list[str], str] | None:
    """initdb + pg_ctl in a temp dir (as the postgres user when root); None if not installed."""
    bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not bins:
        return None
    bindir, data, port = bins[-1].parent, base / "pg", free_port()
    base.chmod(0o777)

    def sh(line: str) -> None:
        cmd = ["su", "postgres", "-c", line] if os.geteuid() == 0 else ["bash", "-c", line]
        subprocess.run(cmd, check=True, capture_output=True)

    sh(f"{bindir}/initdb -D {data} -U postgres --auth=trust --no-sync")
    sh(f"{bindir}/pg_ctl -D {data} -o '-p {port} -h 127.0.0.1 -k {base} -F' "
       f"-l {base}/pg.log -w start")
    stop = ["su", "postgres", "-c", f"{bindir}/pg_ctl -D {data} -m immediate stop"]
    return stop, f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, default=8)
    ap.add_argument("--pages", type=int, default=2, help="pages per document")
    ap.add_argument("--dpi", type=int, default=150)
    ap.add_argument("--batch", type=int, default=32, help="lines per recognize task")
    ap.add_argument("--model", help="a line model folder (default: tiny random model)")
    ap.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    args = ap.parse_args()

    import logging

    import boto3
    import redis
    from moto.server import ThreadedMotoServer

    from tests.model_fixtures import build_random_model

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request access log
    tmp = Path(tempfile.mkdtemp(prefix="quire-bench-"))
    os.environ.update(AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="x",
                      AWS_DEFAULT_REGION="us-east-1")
    redis_proc, broker = start_redis(tmp)
    s3_port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=s3_port, verbose=False)
    moto.start()
    endpoint = f"http://127.0.0.1:{s3_port}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="bench")
    pg = None if args.sqlite else start_postgres(tmp)
    db_url = pg[1] if pg else f"sqlite:///{tmp / 'bench.sqlite'}"
    model = args.model or str(build_random_model(tmp / "model"))
    env = {**os.environ, "QUIRE_BROKER_URL": broker, "QUIRE_DATABASE_URL": db_url,
           "QUIRE_STORAGE_URL": "s3://bench/store", "QUIRE_S3_ENDPOINT_URL": endpoint,
           "QUIRE_MODEL": model, "QUIRE_RENDER__DPI": str(args.dpi),
           "QUIRE_QUEUE__RECOGNIZE_BATCH": str(args.batch), "QUIRE_DEVICE": "cpu",
           "QUIRE_RECOGNIZE__MAX_NEW_TOKENS": "48", "PYTHONUNBUFFERED": "1"}
    os.environ.update(env)

    from pipeline.config import get_settings
    from pipeline.db.session import make_engine, upgrade
    from pipeline.storage import open_store
    from pipeline.submit import submit_files

    get_settings.cache_clear()
    upgrade(db_url)
    engine = make_engine(db_url)
    pdfs = []
    for d in range(args.docs):
        pages = [make_page("one_column" if (d + p) % 2 else "two_columns", seed=d * 100 + p,
                           dpi=args.dpi).image for p in range(args.pages)]
        pdfs.append(make_pdf(pages, tmp / f"doc-{d:03d}.pdf", dpi=args.dpi))
    workers = [subprocess.Popen([sys.executable, "-m", "pipeline.cli", "worker", q,
                                 "--concurrency", "1", "--loglevel", "warning"], env=env,
                                stdout=(tmp / f"{q}.log").open("w"), stderr=subprocess.STDOUT,
                                start_new_session=True) for q in ("ingest", "recognize", "finish")]
    time.sleep(8)  # workers import and connect before the clock starts
    client = redis.Redis.from_url(broker)
    settings = get_settings()
    store = open_store(settings.resolved_storage_url(), endpoint)
    started = time.perf_counter()
    job_id = submit_files(engine, store, pdfs, settings, formats=["text", "json"],
                          idempotency_key=str(uuid.uuid4()))
    submitted = time.perf_counter() - started
    depth = {q: 0 for q in ("ingest", "recognize", "finish")}
    from sqlalchemy import text

    status = "queued"
    while status not in ("done", "failed", "partial"):
        depth = {q: max(n, int(client.llen(q))) for q, n in depth.items()}
        with engine.connect() as conn:
            status = conn.execute(text("SELECT status FROM jobs WHERE id = :j"),
                                  {"j": job_id}).scalar_one()
        time.sleep(0.2)
        if time.perf_counter() - started > 1800:
            raise SystemExit("timed out")
    seconds = time.perf_counter() - started
    with engine.connect() as conn:
        pages = conn.execute(text("SELECT count(*) FROM pages")).scalar_one()
        lines = conn.execute(text("SELECT count(*) FROM lines")).scalar_one()
        tasks = -(-lines // args.batch)
    for proc in workers:
        os.killpg(proc.pid, signal.SIGTERM)
    for proc in workers:
        proc.wait(30)
    moto.stop()
    redis_proc.terminate()
    if pg:
        subprocess.run(pg[0], capture_output=True, check=False)
    shutil.rmtree(tmp, ignore_errors=True)

    db = "postgresql" if pg else "sqlite"
    print(f"\n{args.docs} documents x {args.pages} pages at {args.dpi} dpi, batch {args.batch}, "
          f"{db}, S3 (moto), 1 worker per queue, {os.cpu_count()} CPU cores, status {status}")
    print(f"| {'measure':<28} | {'value':>10} |\n|{'-' * 30}|{'-' * 12}|")
    rows = [("documents", args.docs), ("pages", pages), ("lines", lines),
            ("recognize tasks (about)", tasks), ("submit seconds", f"{submitted:.2f}"),
            ("wall seconds", f"{seconds:.1f}"),
            ("documents / s", f"{args.docs / seconds:.2f}"),
            ("pages / s", f"{pages / seconds:.2f}"), ("lines / s", f"{lines / seconds:.1f}"),
            *((f"max depth {q}", n) for q, n in depth.items())]
    for name, value in rows:
        print(f"| {name:<28} | {value!s:>10} |")


if __name__ == "__main__":
    main()

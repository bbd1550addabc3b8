"""Prometheus metrics: worker counters (pages, lines, lines per second) and API/queue gauges."""

from __future__ import annotations

import time
from typing import Self

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)

# Worker-side: counted where the work happens, scraped from each worker's --metrics-port.
WORKER = CollectorRegistry()
PAGES = Counter("quire_worker_pages", "Pages ingested", registry=WORKER)
LINES = Counter("quire_worker_lines", "Lines recognized", ["model"], registry=WORKER)
LINES_PER_SECOND = Gauge("quire_worker_lines_per_second",
                         "Recognition throughput of the last batch", registry=WORKER)
TASK_SECONDS = Histogram("quire_worker_task_seconds", "Task run time", ["task"],
                         registry=WORKER, buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800))
DOCUMENTS = Counter("quire_worker_documents", "Documents finished or failed", ["status"],
                    registry=WORKER)


def serve_worker_metrics(port: int) -> None:
    start_http_server(port, registry=WORKER)


class Timer:
    """with Timer("ingest"): ... records the task's duration."""

    def __init__(self, task: str) -> None:
        self.task = task

    def __enter__(self) -> Self:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start
        TASK_SECONDS.labels(self.task).observe(self.seconds)


def api_metrics(jobs: dict[str, int], totals: dict[str, int], depths: dict[str, int],
                requests: dict[tuple[str, int], int]) -> tuple[bytes, str]:
    """The API's /metrics page: job states, work done (from SQL) and queue depth (from Redis)."""
    registry = CollectorRegistry()
    g_jobs = Gauge("quire_jobs", "Jobs by status", ["status"], registry=registry)
    for status, n in jobs.items():
        g_jobs.labels(status).set(n)
    g_docs = Gauge("quire_documents_done", "Documents done", registry=registry)
    g_docs.set(totals.get("documents_done", 0))
    Gauge("quire_pages", "Pages ingested", registry=registry).set(totals.get("pages", 0))
    Gauge("quire_lines_done", "Lines recognized", registry=registry).set(
        totals.get("lines_done", 0))
    g_depth = Gauge("quire_queue_depth", "Messages waiting per queue", ["queue"],
                    registry=registry)
    for queue, n in depths.items():
        g_depth.labels(queue).set(n)
    # A counter (quire_api_requests_total): rate() over it survives an API restart's reset.
    c_req = Counter("quire_api_requests", "API requests since start", ["route", "status"],
                    registry=registry)
    for (route, code), n in requests.items():
        c_req.labels(route, str(code)).inc(n)
    return generate_latest(registry), CONTENT_TYPE_LATEST

"""The Celery app's configuration and sending tasks by name, so callers never import worker code or torch."""

from __future__ import annotations

from functools import lru_cache

from celery import Celery
from kombu import Queue

from pipeline.config import Settings, get_settings

QUEUES = ("ingest", "recognize", "finish")
INGEST = "quire.ingest_document"
RECOGNIZE = "quire.recognize_lines"
FINISH = "quire.finish_document"
ROUTES = {INGEST: {"queue": "ingest"}, RECOGNIZE: {"queue": "recognize"}, FINISH: {"queue": "finish"}}

# The longest task (ingesting a 1,000-page PDF on a slow node) must end well inside the
# broker's visibility timeout, or Redis hands the unacked message to a second worker.
TASK_HARD_LIMIT_S = 3 * 3600
VISIBILITY_TIMEOUT_S = TASK_HARD_LIMIT_S * 2


def configure(app: Celery, settings: Settings) -> Celery:
    app.conf.update(
        broker_url=settings.broker_url,
        result_backend=None,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        task_acks_late=True,  # a task is acked after it ran: a dead worker's task runs again
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_time_limit=TASK_HARD_LIMIT_S,
        task_soft_time_limit=TASK_HARD_LIMIT_S - 60,
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT_S},
        broker_connection_retry_on_startup=True,
        task_routes=ROUTES,
        task_queues=[Queue(name) for name in QUEUES],
        task_default_queue="ingest",
        worker_hijack_root_logger=False,
    )
    return app


@lru_cache(maxsize=1)
def celery_app() -> Celery:
    return configure(Celery("quire"), get_settings())


def send(task: str, *args: object) -> None:
    """Enqueue a task by name; arguments are IDs and keys (JSON), never image bytes."""
    celery_app().send_task(task, args=list(args), routing_key=ROUTES[task]["queue"], queue=ROUTES[task]["queue"])

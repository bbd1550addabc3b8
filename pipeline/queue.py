"""The Celery app's configuration and sending tasks by name, so callers never import worker code or torch."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from celery import Celery
from kombu import Queue
from kombu.exceptions import OperationalError

from pipeline.config import Settings, get_settings

QUEUES = ("ingest", "recognize", "finish")
INGEST = "quire.ingest_document"
RECOGNIZE = "quire.recognize_lines"
FINISH = "quire.finish_document"
NOTIFY = "quire.notify_job"
ROUTES = {INGEST: {"queue": "ingest"}, RECOGNIZE: {"queue": "recognize"},
          FINISH: {"queue": "finish"}, NOTIFY: {"queue": "finish"}}
# How often a running worker looks for messages whose visibility timeout has passed (a killed
# worker's) and puts them back on their queue. kombu's Redis transport (5.7) runs that sweep
# every `unacked_restore_interval` s (10) but scans Redis only on every
# `unacked_restore_throttle`-th run (10): about 100 s, so a message came back up to 100 s after
# the time `quire status` quoted. A throttle of 1 makes the interval the sweep's period: one
# cheap ZRANGE per worker every RESTORE_S, under kombu's mutex.
RESTORE_S = 10


def configure(app: Celery, settings: Settings) -> Celery:
    """Every Celery setting comes from here, so API, watcher and workers agree."""
    q = settings.queue
    app.conf.update(
        broker_url=settings.broker_url,
        result_backend=None,
        task_ignore_result=True,
        task_serializer="json",  # IDs and keys only; pickle would let a message run code
        accept_content=["json"],
        task_acks_late=True,  # acked after it ran: a dead worker's task runs again
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,  # a GPU worker must not hoard batches a peer could run
        task_time_limit=q.task_time_limit,
        task_soft_time_limit=max(5, q.task_time_limit - 60),
        # Redis redelivers an unacked message after this (and within RESTORE_S of it); longer
        # than any task (see config).
        broker_transport_options={"visibility_timeout": q.visibility_timeout,
                                  "unacked_restore_interval": RESTORE_S,
                                  "unacked_restore_throttle": 1},
        broker_connection_retry_on_startup=True,
        task_routes=ROUTES,
        task_queues=[Queue(name) for name in QUEUES],
        task_default_queue="ingest",
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    return app


@lru_cache(maxsize=1)
def celery_app() -> Celery:
    return configure(Celery("quire"), get_settings())


def send(task: str, *args: object, **kwargs: Any) -> None:
    """Enqueue a task by name; arguments are IDs and keys (JSON), never image bytes."""
    queue = ROUTES[task]["queue"]
    celery_app().send_task(task, args=list(args), kwargs=kwargs or None, queue=queue,
                           routing_key=queue)


def broker_problem() -> str | None:
    """Why the broker cannot be reached (its first line), or None when it answers. Asked before a
    submission takes anything in, so a broker that is down leaves no half-made job behind."""
    connection = celery_app().connection_for_write()
    try:
        connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=5)
    except (OperationalError, OSError) as e:  # kombu wraps the transports' failures in its own
        return (str(e).strip().splitlines() or [type(e).__name__])[0].rstrip(".")
    finally:
        connection.release()
    return None


def queue_depths(broker_url: str | None = None) -> dict[str, int]:
    """Messages waiting in each queue (Redis list lengths); -1 where the broker is unreachable."""
    import redis

    client = redis.Redis.from_url(broker_url or get_settings().broker_url,
                                  socket_connect_timeout=2, socket_timeout=2)
    try:
        return {name: int(client.llen(name)) for name in QUEUES}
    except redis.RedisError:
        return {name: -1 for name in QUEUES}
    finally:
        client.close()

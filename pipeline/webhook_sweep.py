"""Sending again a completion webhook whose notify task was lost, within minutes instead of after
Redis's visibility timeout.

Celery takes tasks with acks late, so a worker killed while it runs one (kill -9, the OOM killer,
a lost node) leaves the message unacked, and Redis hands it to another worker only after
QUIRE_QUEUE__VISIBILITY_TIMEOUT (6 hours by default, as it must outlast the longest ingest; the
transport has one timeout for all queues, so the finish queue cannot have a shorter one). Three
kills hold a webhook that long: of the notify task while it delivers, of a finish task after it
ended the job but before it queued the notify task, and of a worker holding a notify retry until
its countdown is up.

So the database says when an owed webhook's last try ends (jobs.webhook_due_at: the job's end,
an attempt's start plus its timeout, a failed attempt's retry countdown), and every finish worker
looks every QUIRE_API__WEBHOOK_RESEND_SECONDS for jobs whose webhook is that long overdue and
queues the notify task for them again (pipeline.db.jobs.overdue_webhooks: one looker takes each
job). The notify task sends a job's webhook once: a second one finds it sent. A try that reached
the receiver but whose worker died before recording it is sent again; every try of a job's
webhook carries the same delivery id (X-Quire-Delivery, and `delivery` in the signed body) for
the receiver to drop the repeat.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Engine
from sqlalchemy.pool import NullPool

from pipeline.db import jobs as jobrepo
from pipeline.db.session import make_engine, session_scope
from pipeline.queue import NOTIFY
from pipeline.run_process import Heartbeat

Enqueue = Callable[..., None]


def resend_overdue(engine: Engine, grace_s: float, enqueue: Enqueue) -> list[str]:
    """Queue the notify task of each job whose webhook is more than `grace_s` overdue; returns
    their ids."""
    with session_scope(engine) as s:
        overdue = jobrepo.overdue_webhooks(s, grace_s)
    for job_id in overdue:
        enqueue(NOTIFY, job_id)
    return overdue


def sweeping(database_url: str, grace_s: float, enqueue: Enqueue) -> Heartbeat:
    """What a finish worker runs beside its tasks (`with sweeping(...):`): `resend_overdue` every
    `grace_s`, on a thread of its own, with connections opened for each look only."""
    engine = make_engine(database_url, poolclass=NullPool)

    def look() -> bool:
        resend_overdue(engine, grace_s, enqueue)
        return True

    return Heartbeat(look, grace_s, "webhook resend")

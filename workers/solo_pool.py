"""Celery's solo pool, fixed for a cold shutdown (a second Ctrl-C, or SIGQUIT).

A solo worker runs its task in its own process. On a cold shutdown Celery cancels the running
task by asking the pool to kill the process that runs it; the solo pool cannot (it would be
killing itself) and raised NotImplementedError inside the task. Celery took that for the task
failing and acked its message, so the document's ingest or a batch of lines was lost and its job
never finished. Here the cancel ends the task the way a killed process would: it exits the task
at once (SystemExit, which the task's own error handling lets through), Celery counts the worker
as lost, and with acks late and reject-on-worker-lost (pipeline/queue.py) the message goes back
to its queue for another worker.
"""

from __future__ import annotations

from celery.concurrency.solo import TaskPool
from celery.exceptions import WorkerTerminate
from celery.platforms import EX_FAILURE


class SoloPool(TaskPool):
    def terminate_job(self, pid, signal=None) -> None:
        """The task runs in this very process (the one handling the signal): stop it here."""
        raise WorkerTerminate(EX_FAILURE)

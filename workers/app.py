"""The worker's Celery app, configured from pipeline.queue; a model is loaded once per worker process."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from functools import lru_cache

from celery import Celery
from celery.signals import task_postrun, task_prerun

from pipeline import task_holders
from pipeline.config import get_settings
from pipeline.queue import configure

app = configure(Celery("quire"), get_settings())
app.conf.include = ["workers.tasks"]
app.conf.worker_log_format = "%(asctime)s %(levelname)s %(processName)s %(message)s"
app.conf.worker_task_log_format = (
    "%(asctime)s %(levelname)s %(task_name)s[%(task_id)s] %(message)s")


@lru_cache(maxsize=4)
def recognizer_for(model: str, beam: int | None = None, decode: str | None = None):
    """One Recognizer per (model, beam, decode) per process: loading takes seconds, a batch less."""
    from pipeline.recognize import Recognizer

    settings = get_settings()
    return Recognizer.from_settings(settings, model=model, beam=beam or settings.recognize.beam,
                                    decode=decode or settings.recognize.decode)


@task_prerun.connect
def _log_task(task_id=None, task=None, args=None, **_kwargs) -> None:
    # IDs in every received-task line: grep a job or document id across all workers' logs.
    logging.getLogger("quire.tasks").debug("start %s %s", task.name if task else "?", args)
    # Held by this worker, so that its peers put it back at once if it is killed (task_holders).
    task_holders.hold(app.conf.broker_url, task_id)


@task_postrun.connect
def _task_ended(task_id=None, **_kwargs) -> None:
    task_holders.let_go(app.conf.broker_url, task_id)


def start_worker(queue: str, *, concurrency: int | None = None, loglevel: str = "info",
                 metrics_port: int | None = None) -> None:
    """Run a worker on one queue. recognize: one process (one per GPU), prefetch 1, acks late.

    ingest and finish: one process per CPU core. A solo pool (concurrency 1) keeps the model
    and connections in the one process; a kill -9 leaves its message unacked in Redis, which
    the other workers put back on its queue once its presence lapses (pipeline/task_holders.py;
    at worst Redis does after the visibility timeout), and a second Ctrl-C requeues it.
    """
    if concurrency is None:
        concurrency = 1 if "recognize" in queue.split(",") else (os.cpu_count() or 1)
    # One process: Quire's solo pool (workers/solo_pool.py), which a cold shutdown does not make
    # lose its task. Celery's -P takes only its own pool names, so it is named in the config.
    solo = concurrency == 1
    if solo:
        app.conf.worker_pool = "workers.solo_pool:SoloPool"
    if metrics_port:
        from pipeline.metrics import serve_worker_metrics

        serve_worker_metrics(metrics_port)
    # The pid keeps two workers of one queue on a host apart (PID 1 in a container).
    name = f"{queue.replace(',', '-')}-{os.getpid()}"
    argv = ["worker", "-Q", queue, "-c", str(concurrency), *([] if solo else ["-P", "prefork"]), "-l", loglevel,
            "-n", f"{name}@%h", "--prefetch-multiplier", "1",
            "--without-gossip", "--without-mingle"]
    from pipeline.worker_presence import announce

    # So `quire status` can tell a queue nobody takes, or a task a killed worker took, from work
    # in progress (pipeline/worker_presence.py).
    presence = f"{name}@{socket.gethostname()}"
    leave = announce(app.conf.broker_url, presence, queue.split(","), concurrency)
    os.environ[task_holders.WORKER_ENV] = presence  # the pool's processes record their tasks by it
    try:
        with contextlib.ExitStack() as stack:
            # A killed worker's tasks go back on their queues within about half a minute, not
            # after the visibility timeout (pipeline/task_holders.py).
            stack.enter_context(task_holders.sweeping(app))
            if "finish" in queue.split(","):
                # Webhooks whose notify task a killed worker took are sent again within minutes,
                # not after the visibility timeout (pipeline/webhook_sweep.py).
                from pipeline.queue import send
                from pipeline.webhook_sweep import sweeping

                settings = get_settings()
                stack.enter_context(sweeping(settings.resolved_database_url(),
                                             settings.api.webhook_resend_seconds, send))
            app.worker_main(argv)
    finally:
        leave()

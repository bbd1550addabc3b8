"""The worker's Celery app, configured from pipeline.queue; a model is loaded once per worker process."""

from __future__ import annotations

import os
from functools import lru_cache

from celery import Celery

from pipeline.config import get_settings
from pipeline.queue import configure

app = configure(Celery("quire"), get_settings())
app.conf.include = ["workers.tasks"]


@lru_cache(maxsize=2)
def recognizer_for(model: str):
    """One Recognizer per model per process: loading a checkpoint takes seconds, a batch less."""
    from pipeline.recognize import Recognizer

    settings = get_settings()
    opts = settings.recognize
    return Recognizer(model, device=settings.device, beam=opts.beam, batch_size=opts.batch_size,
                      max_new_tokens=opts.max_new_tokens)


def start_worker(queue: str, *, concurrency: int | None = None, loglevel: str = "info") -> None:
    """Run a worker on one queue. recognize: one process (one per GPU), prefetch 1."""
    if concurrency is None:
        concurrency = 1 if "recognize" in queue.split(",") else (os.cpu_count() or 1)
    pool = "solo" if concurrency == 1 else "prefork"
    argv = ["worker", "-Q", queue, "-c", str(concurrency), "-P", pool, "-l", loglevel,
            "-n", f"{queue.replace(',', '-')}@%h", "--prefetch-multiplier", "1"]
    app.worker_main(argv)

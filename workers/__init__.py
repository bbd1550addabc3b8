"""Celery workers: the distributed driver over the same stage functions as the local runner."""

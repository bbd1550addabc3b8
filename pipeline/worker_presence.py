"""Which workers are running, and what the queues hold: so `quire status` can say why a job stalls.

A job that makes no progress looks the same whatever the cause: no worker started for a queue, or
a worker killed mid-task (kill -9, the OOM killer, a lost node), whose task Redis keeps unacked
until QUIRE_QUEUE__VISIBILITY_TIMEOUT has passed (6 hours by default). Each worker therefore
announces itself in Redis under a key that expires unless renewed (`announce`), and `queue_report`
sets the queues' waiting and taken tasks against the workers that are alive.

Celery's own remote control (`inspect`) cannot do this: a one-process worker busy with a batch
does not answer it, so a working GPU worker would look absent.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

KEY_PREFIX = "quire:worker:"
TTL_S = 20  # a worker silent this long is gone
BEAT_S = 5
# kombu's Redis transport keeps each taken, not yet acked message here (field: delivery tag,
# value: JSON [message, exchange, routing key]) and when it was taken (a sorted set).
UNACKED = "unacked"
UNACKED_INDEX = "unacked_index"
# Which worker (its presence name) runs each task (its Celery id): pipeline.task_holders.
HOLDERS = "quire:holders"


def broker_client(broker_url: str):
    import redis

    return redis.Redis.from_url(broker_url, socket_connect_timeout=2, socket_timeout=2)


def unacked_message(raw: bytes) -> tuple[str, str] | None:
    """(queue, Celery task id) of a taken, not yet acked message as kombu keeps it (UNACKED);
    None for what is not one."""
    try:
        message = json.loads(raw)
        return str(message[2]), str(message[0]["headers"]["id"])
    except (ValueError, LookupError, TypeError):
        return None


def announce(broker_url: str, name: str, queues: list[str], concurrency: int) -> Callable[[], None]:
    """Keep this worker's key alive from a background thread; call the returned function on a
    clean shutdown to remove it. A killed worker's key expires after TTL_S."""
    import redis

    stop = threading.Event()
    key = KEY_PREFIX + name
    value = json.dumps({"name": name, "queues": queues, "concurrency": concurrency,
                        "host": socket.gethostname(), "pid": os.getpid()})

    def beat() -> None:
        client = broker_client(broker_url)
        while True:
            try:
                if stop.is_set():
                    client.delete(key)
                    return
                client.set(key, value, ex=TTL_S)
            except redis.RedisError:
                pass  # the broker is down; the worker says so itself, and the key comes back with it
            stop.wait(BEAT_S)

    thread = threading.Thread(target=beat, name="quire-presence", daemon=True)
    thread.start()

    def leave() -> None:
        stop.set()
        thread.join(timeout=3)  # the key goes now, not TTL_S later

    return leave


# Longer than any retry waits in a worker (backoff up to 300 s, webhooks up to 600 s): a task
# taken longer ago than this is running, or its worker is gone.
STALE_S = 900


@dataclass
class QueueState:
    name: str
    waiting: int
    workers: int  # running workers that take this queue
    capacity: int  # tasks those workers can hold at once (their processes: prefetch is 1)
    taken: list[float]  # when each taken, not yet acked task was taken (epoch seconds), oldest first
    # Of those, held by a worker known to be gone: a running worker puts them back at its next
    # look (pipeline.task_holders); not in `taken`.
    orphaned: int = 0


def queue_report(broker_url: str, queues: tuple[str, ...]) -> list[QueueState] | str:
    """Each queue's state, or why the broker could not be asked."""
    import redis

    client = broker_client(broker_url)
    try:
        keys = list(client.scan_iter(KEY_PREFIX + "*", count=1000))
        alive = [json.loads(v) for v in client.mget(keys) if v] if keys else []
        taken_at = dict(client.zrange(UNACKED_INDEX, 0, -1, withscores=True))
        holders = {k.decode(): v.decode() for k, v in client.hgetall(HOLDERS).items()}
        names = {w.get("name") for w in alive}
        taken: dict[str, list[float]] = {}
        orphaned: dict[str, int] = {}
        for tag, raw in client.hscan_iter(UNACKED):
            found = unacked_message(raw)
            if found is None:
                continue
            queue, task = found
            if task in holders and holders[task] not in names:
                orphaned[queue] = orphaned.get(queue, 0) + 1
            else:
                taken.setdefault(queue, []).append(taken_at.get(tag, time.time()))
        states = []
        for name in queues:
            takers = [w for w in alive if name in w.get("queues", [])]
            states.append(QueueState(name, int(client.llen(name)), len(takers),
                                     sum(int(w.get("concurrency", 1)) for w in takers),
                                     sorted(taken.get(name, [])), orphaned.get(name, 0)))
        return states
    except redis.RedisError as exc:
        return f"the broker does not answer ({exc})"
    finally:
        client.close()


def stall_hints(states: list[QueueState], visibility_timeout: int) -> list[str]:
    """Plain sentences for what keeps queued work from moving; none when all is well."""
    from pipeline.cli_common import counted  # the sentences are `quire status`'s
    from pipeline.queue import RESTORE_S
    from pipeline.task_holders import RESTORE_S as LOOK_S

    hints = []
    anyone = any(q.workers for q in states)
    for q in states:
        if q.orphaned:
            when = (f"a running worker puts {'it' if q.orphaned == 1 else 'them'} back on the "
                    f"{q.name} queue within {LOOK_S} s" if anyone else
                    f"the first worker to start (any queue) puts {'it' if q.orphaned == 1 else 'them'} "
                    f"back on the {q.name} queue")
            hints.append(f"{counted(q.orphaned, 'task')} of the {q.name} queue "
                         f"{'was' if q.orphaned == 1 else 'were'} taken by a worker that has stopped "
                         f"(killed, or its machine lost): {when}")
        if q.waiting and not q.workers:
            hints.append(f"{counted(q.waiting, 'task')} {'waits' if q.waiting == 1 else 'wait'} in the "
                         f"{q.name} queue and no running worker takes it: "
                         f"start `quire worker {q.name}`")
        # With no worker of the queue alive, every taken task is lost until the timeout. Else
        # the running workers hold at most `capacity` of the tasks taken long ago; the rest were
        # taken by workers that are gone.
        stale = [at for at in q.taken if at < time.time() - STALE_S]
        lost = q.taken if not q.workers else stale[: max(0, len(stale) - q.capacity)]
        if lost:
            # A running worker (of any queue) puts a message back once its timeout has passed,
            # at its next sweep (pipeline/queue.py): the last of them is back by then. A worker
            # that starts later sweeps as it starts.
            back = datetime.fromtimestamp(lost[-1] + visibility_timeout + RESTORE_S, UTC)
            when = f"by {back:%Y-%m-%d %H:%M:%S} UTC" + ("" if anyone else
                                                         " if a worker is running by then (none is now)")
            hints.append(
                f"{'at least ' if q.workers else ''}{counted(len(lost), 'task')} of the {q.name} queue "
                f"{'was' if len(lost) == 1 else 'were'} taken by a worker that has stopped "
                f"(killed, or its machine lost): Redis puts {'it' if len(lost) == 1 else 'them'} "
                f"back on the {q.name} queue {when} (QUIRE_QUEUE__VISIBILITY_TIMEOUT after being "
                f"taken, checked every {RESTORE_S} s)")
    return hints

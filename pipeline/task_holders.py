"""A killed worker's tasks back on their queues within about half a minute, not after Redis's
visibility timeout.

Tasks are acked late, so a worker killed while it runs one (kill -9, the OOM killer, a preempted
or lost node) leaves the message unacked, and kombu's Redis transport hands it out again only
once QUIRE_QUEUE__VISIBILITY_TIMEOUT has passed since it was taken: 6 hours by default, as it
must outlast the longest task (an ingest of a 1,000-page PDF) and is one for all queues. Until
then the document waits, and its job with it.

So each worker records which of its tasks it runs (`hold`, a field of the HOLDERS hash in Redis
per task id, named by the worker's presence name, pipeline.worker_presence) and lets go when the
task ends (`let_go`). Every worker looks every RESTORE_S (`sweeping`) for tasks held by a worker
whose presence key has lapsed (TTL_S after its last beat) and puts them back on their queue
with kombu's own restore, the one the visibility timeout uses (one WATCHed transaction per
message: of two workers looking at once, one puts it back). A task whose worker was alive but
silent for TTL_S (Redis unreachable from it that long) runs twice, which every task allows
(pipeline docs: ingest upserts, recognize skips read lines, finish rewrites the same keys). A
worker killed between taking a message and recording it, or a task waiting for its countdown
(a retry), is left to the visibility timeout, as before.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from pipeline.run_process import Heartbeat
from pipeline.worker_presence import HOLDERS, KEY_PREFIX, UNACKED, broker_client, unacked_message

log = logging.getLogger(__name__)

WORKER_ENV = "QUIRE_WORKER_NAME"  # the worker's presence name, for its pool's processes
RESTORE_S = 10

_client_lock = threading.Lock()
_client: tuple[int, Any] | None = None  # (pid, redis client): a forked pool process makes its own


def _redis(broker_url: str) -> Any:
    global _client
    with _client_lock:
        if _client is None or _client[0] != os.getpid():
            _client = (os.getpid(), broker_client(broker_url))
        return _client[1]


def hold(broker_url: str, task_id: str) -> None:
    """Record that this worker runs `task_id` (called as the task starts)."""
    import redis

    name = os.environ.get(WORKER_ENV)
    if not name or not task_id:
        return  # not a `quire worker` (a test's eager task): nobody would look
    try:
        _redis(broker_url).hset(HOLDERS, task_id, name)
    except redis.RedisError as exc:  # the task runs; a kill then waits for the visibility timeout
        log.warning("could not record task %s as held by %s: %s", task_id, name, exc)


def let_go(broker_url: str, task_id: str) -> None:
    """The task has ended (done, failed or retried): nobody holds it any more."""
    import redis

    name = os.environ.get(WORKER_ENV)
    if not name or not task_id:
        return
    try:  # only its own record: the task may have been put back and taken by another meanwhile
        _forget(_redis(broker_url), task_id, name)
    except redis.RedisError as exc:  # a stale record: dropped by `restore_abandoned`
        log.warning("could not record task %s as ended: %s", task_id, exc)


def restore_abandoned(client: Any, restore: Callable[[bytes], None]) -> list[str]:
    """Put back on their queues the tasks held by workers that are gone (`restore(delivery tag)`),
    and forget records of tasks no longer taken whose worker is gone. Returns the task ids put
    back."""
    holders = {k.decode(): v.decode() for k, v in client.hgetall(HOLDERS).items()}
    if not holders:
        return []
    alive = {key.decode().removeprefix(KEY_PREFIX) for key in client.scan_iter(KEY_PREFIX + "*",
                                                                              count=1000)}
    gone = {task for task, worker in holders.items() if worker not in alive}
    if not gone:
        return []
    restored: list[str] = []
    for tag, raw in client.hscan_iter(UNACKED):
        _queue, task = unacked_message(raw) or (None, None)
        if task is not None and task in gone:
            # Forgotten first: once back on its queue, the worker taking it records it anew.
            _forget(client, task, holders[task])
            restore(tag)
            restored.append(task)
            log.warning("task %s was taken by worker %s, which has stopped (killed, or its machine "
                        "lost): put back on its queue", task, holders[task])
    for task in gone.difference(restored):  # acked or put back since: not theirs any more
        _forget(client, task, holders[task])
    return restored


# HDEL only while the field still names that worker: a worker that has taken the task since
# keeps its record.
_FORGET = """if redis.call('hget', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('hdel', KEYS[1], ARGV[1])
end
return 0"""


def _forget(client: Any, task: str, worker: str) -> None:
    client.eval(_FORGET, 1, HOLDERS, task, worker)


def sweeping(app: Any, every: float = RESTORE_S) -> Heartbeat:
    """What every worker runs beside its tasks (`with sweeping(app):`): `restore_abandoned` every
    `every` s on a thread of its own, through the app's broker connection (a look that fails is
    logged and made again at the next)."""

    def look() -> bool:
        with app.connection_for_write() as conn:
            channel = conn.default_channel
            client = channel.client
            restore_abandoned(client, lambda tag: channel.qos.restore_by_tag(tag, client))
        return True

    return Heartbeat(look, every, "looking for tasks of stopped workers")

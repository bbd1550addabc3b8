"""Which worker holds which task (pipeline.task_holders), against a real Redis: a gone worker's
records are dropped, a live worker's kept, and only a gone worker's taken tasks are put back."""

from __future__ import annotations

import json

import redis

from pipeline.task_holders import restore_abandoned
from pipeline.worker_presence import HOLDERS, KEY_PREFIX, UNACKED


def message(task_id: str) -> bytes:
    """An unacked message as kombu's Redis transport keeps it: [payload, exchange, routing key]."""
    return json.dumps([{"headers": {"id": task_id}, "properties": {}}, "finish", "finish"]).encode()


def test_only_tasks_of_workers_that_are_gone_are_put_back(redis_url):
    client = redis.Redis.from_url(redis_url)
    client.delete(HOLDERS, UNACKED, *client.scan_iter(KEY_PREFIX + "*"))
    client.set(KEY_PREFIX + "finish-1@a", "{}", ex=20)  # alive; finish-2@b has lapsed
    client.hset(HOLDERS, mapping={"t-alive": "finish-1@a", "t-dead": "finish-2@b",
                                  "t-acked": "finish-2@b"})
    client.hset(UNACKED, mapping={"tag-1": message("t-alive"), "tag-2": message("t-dead"),
                                  "tag-3": b"not kombu's"})
    put_back: list[bytes] = []
    try:
        assert restore_abandoned(client, put_back.append) == ["t-dead"]
        assert put_back == [b"tag-2"]
        # The dead worker's records are gone (its acked task's too); the live one's stays.
        assert client.hgetall(HOLDERS) == {b"t-alive": b"finish-1@a"}
        assert restore_abandoned(client, put_back.append) == [] and put_back == [b"tag-2"]
    finally:
        client.delete(HOLDERS, UNACKED, KEY_PREFIX + "finish-1@a")
        client.close()


def test_a_task_taken_again_meanwhile_keeps_its_new_holder(redis_url):
    """Put back and taken by another worker before the record of the dead one is dropped: the
    record now names the new worker, which is left alone."""
    client = redis.Redis.from_url(redis_url)
    client.delete(HOLDERS, UNACKED, *client.scan_iter(KEY_PREFIX + "*"))
    client.set(KEY_PREFIX + "finish-3@c", "{}", ex=20)
    client.hset(HOLDERS, "t", "finish-2@b")
    client.hset(UNACKED, "tag", message("t"))

    def taken_again(tag: bytes) -> None:
        client.hdel(UNACKED, tag)
        client.hset(HOLDERS, "t", "finish-3@c")  # the next worker records it as it starts

    try:
        assert restore_abandoned(client, taken_again) == ["t"]
        assert client.hgetall(HOLDERS) == {b"t": b"finish-3@c"}
    finally:
        client.delete(HOLDERS, UNACKED, KEY_PREFIX + "finish-3@c")
        client.close()


def test_status_says_a_stopped_workers_task_comes_back_at_the_next_look_not_the_timeout(redis_url):
    from pipeline.queue import QUEUES
    from pipeline.worker_presence import queue_report, stall_hints

    client = redis.Redis.from_url(redis_url)  # the session's redis: other tests' queues emptied
    client.delete(HOLDERS, UNACKED, "unacked_index", *QUEUES, *client.scan_iter(KEY_PREFIX + "*"))
    client.hset(HOLDERS, "t-dead", "finish-2@b")
    client.hset(UNACKED, "tag-2", message("t-dead"))
    try:
        [hint] = stall_hints(queue_report(redis_url, QUEUES), 6 * 3600)
        assert hint == ("1 task of the finish queue was taken by a worker that has stopped (killed, "
                        "or its machine lost): the first worker to start (any queue) puts it back "
                        "on the finish queue")
        client.set(KEY_PREFIX + "ingest-1@a", json.dumps({"name": "ingest-1@a", "queues": ["ingest"],
                                                          "concurrency": 1}), ex=20)
        [hint] = stall_hints(queue_report(redis_url, QUEUES), 6 * 3600)
        assert hint.endswith("a running worker puts it back on the finish queue within 10 s")
    finally:
        client.delete(HOLDERS, UNACKED, KEY_PREFIX + "ingest-1@a")
        client.close()


def test_a_task_ending_lets_go_of_its_own_record_only(redis_url, monkeypatch):
    from pipeline.task_holders import WORKER_ENV, hold, let_go

    client = redis.Redis.from_url(redis_url)
    client.delete(HOLDERS)
    monkeypatch.setenv(WORKER_ENV, "recognize-1@a")
    try:
        hold(redis_url, "t1")
        assert client.hget(HOLDERS, "t1") == b"recognize-1@a"
        let_go(redis_url, "t1")
        assert client.hlen(HOLDERS) == 0
        hold(redis_url, "t2")
        client.hset(HOLDERS, "t2", "recognize-2@b")  # put back meanwhile, and taken by another
        let_go(redis_url, "t2")
        assert client.hget(HOLDERS, "t2") == b"recognize-2@b"
    finally:
        client.delete(HOLDERS)
        client.close()

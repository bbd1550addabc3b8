"""The Celery task bodies run directly (no broker): redelivered ingest keeps finished lines,
recognize skips them, finish is idempotent and counts every job sharing the document."""

from __future__ import annotations

import shutil

import pytest

from pipeline.config import get_settings
from pipeline.db import job_rows, repo
from pipeline.db.session import make_engine, session_scope, upgrade
from pipeline.queue import FINISH, INGEST, RECOGNIZE
from pipeline.storage import LocalStore
from pipeline.submit import JobOptions, Submitter, iter_local
from tests.model_fixtures import make_letter_page
from tests.pagegen import make_pdf

pytestmark = pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="poppler-utils missing")


@pytest.fixture
def tasks(tmp_path, sqlite_url, monkeypatch):
    monkeypatch.setenv("QUIRE_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("QUIRE_STORAGE_URL", (tmp_path / "store").as_uri())
    monkeypatch.setenv("QUIRE_QUEUE__RECOGNIZE_BATCH", "3")
    get_settings.cache_clear()
    upgrade(sqlite_url)
    from workers import tasks as module

    module._CACHE.clear()
    sent: list[tuple] = []
    monkeypatch.setattr(module, "send", lambda task, *args: sent.append((task, *args)))
    yield module, sent, make_engine(sqlite_url), LocalStore(tmp_path / "store")
    module._CACHE.clear()
    get_settings.cache_clear()


class FakeRecognizer:
    calls = 0

    def recognize(self, crops):
        FakeRecognizer.calls += len(crops)
        from pipeline.types import LineText

        return [LineText(f"line {i}", 0.5) for i in range(len(crops))]


def test_redelivered_tasks_do_no_work_twice(tasks, tmp_path, monkeypatch):
    module, sent, engine, store = tasks
    monkeypatch.setattr(module, "recognizer_for", lambda model, beam=None, decode=None: FakeRecognizer())
    pdf = make_pdf([make_letter_page(150)] * 2, tmp_path / "two.pdf", dpi=150)
    options = JobOptions("m", 150, 1)
    job_a, _ = Submitter(engine, store, options, enqueue=lambda *a: sent.append(a)).open_job()
    sub = Submitter(engine, store, options, enqueue=lambda *a: sent.append(a))
    sub.add(job_a, next(iter_local([pdf])))
    sub.close_job(job_a)
    [(task, document_id, job)] = sent
    assert (task, job) == (INGEST, job_a)

    module.ingest_document.run(document_id, job_a)
    batches = [args[1] for args in sent if args[0] == RECOGNIZE]
    assert sorted(len(b) for b in batches) == [2, 3, 3]  # 8 lines, width-grouped by 3
    # Each batch carries the job's decoding to the recognize worker.
    assert {args[4] for args in sent if args[0] == RECOGNIZE} == {options.decode}
    module.recognize_lines.run(batches[0], "m", 1)
    with session_scope(engine) as s:
        done_before = {ln for ln, in s.execute(repo.select(repo.Line.id).where(
            repo.Line.status == "done"))}
    assert len(done_before) >= 3  # its own 3 plus top-up from the same profile

    sent.clear()
    module.ingest_document.run(document_id, job_a)  # redelivered: keeps what was read
    resent = {lid for args in sent if args[0] == RECOGNIZE for lid in args[1]}
    with session_scope(engine) as s:
        still_done = {ln for ln, in s.execute(repo.select(repo.Line.id).where(
            repo.Line.status == "done"))}
    assert still_done == done_before and not resent & done_before

    # A second job asks for the same file meanwhile: it joins, no second ingest.
    job_b, _ = sub.open_job()
    assert sub.add(job_b, next(iter_local([pdf]))) == "joined"
    sub.close_job(job_b)
    for batch in [args[1] for args in sent if args[0] == RECOGNIZE]:
        module.recognize_lines.run(batch, "m", 1)
    assert FakeRecognizer.calls == 8  # every line read once, redelivery or not
    finishes = [args for args in sent if args[0] == FINISH]
    assert finishes and all(args[1] == document_id for args in finishes)
    written = []
    real_finish = module.finish_document
    monkeypatch.setattr(module, "finish_document",
                        lambda *args: (written.append(args[2].id), real_finish(*args))[1])
    module.finish_document_task.run(document_id)
    module.finish_document_task.run(document_id)  # a second or redelivered finish changes nothing
    assert written == [document_id]  # ... and writes no export again
    with session_scope(engine) as s:
        assert job_rows.get_job(s, job_a).status == job_rows.get_job(s, job_b).status == "done"
        assert repo.get_document(s, document_id).pages_done == 2
    sha = repo_sha(engine, document_id)
    assert store.exists(f"documents/{sha}/{options.profile}/exports/text.txt")


def repo_sha(engine, document_id: str) -> str:
    with session_scope(engine) as s:
        return repo.get_document(s, document_id).sha256


def test_the_ingest_worker_turns_pages_as_the_job_says(tasks, tmp_path):
    from pipeline.orientation import turn

    module, sent, engine, store = tasks
    letter = make_letter_page(150)
    pdf = make_pdf([turn(letter, 90)], tmp_path / "sideways.pdf", dpi=150)
    pages = {}
    for rotate in (True, False):
        options = JobOptions("m", 150, 1, rotate_pages=rotate)
        sub = Submitter(engine, store, options, enqueue=lambda *a: sent.append(a))
        job, _ = sub.open_job()
        sub.add(job, next(iter_local([pdf])))
        sub.close_job(job)
        document_id = sent[-1][1]
        module.ingest_document.run(document_id, job)
        with session_scope(engine) as s:
            [page] = repo.get_document(s, document_id).pages
            pages[rotate] = (page.rotation, page.width, len(page.lines))
    assert pages[True] == (270, letter.shape[1], 4)  # upright: the letter's four lines
    assert pages[False][:2] == (0, letter.shape[0])  # as it came, on its side


def test_a_model_that_cannot_be_loaded_fails_the_document_with_the_reason(tasks, tmp_path, monkeypatch):
    """Not a task that fails and is acked while the job reads 'running' for ever."""
    from pipeline.errors import ModelLoadError

    module, sent, engine, store = tasks

    def unloadable(model, beam=None, decode=None):
        raise ModelLoadError(f"cannot load recognition model {model!r}: no such folder")

    monkeypatch.setattr(module, "recognizer_for", unloadable)
    pdf = make_pdf([make_letter_page(150)], tmp_path / "one.pdf", dpi=150)
    submitter = Submitter(engine, store, JobOptions("gone-model", 150, 1), enqueue=lambda *a: sent.append(a))
    job_id, _ = submitter.open_job()
    submitter.add(job_id, next(iter_local([pdf])))
    submitter.close_job(job_id)
    [(_, document_id, _)] = sent
    module.ingest_document.run(document_id, job_id)
    batches = [args[1] for args in sent if args[0] == RECOGNIZE]
    module.recognize_lines.run(batches[0], "gone-model", 1)
    with session_scope(engine) as s:
        doc = repo.get_document(s, document_id)
        assert doc.status == "failed" and "cannot load recognition model 'gone-model'" in doc.error
        assert job_rows.get_job(s, job_id).status == "failed"


def test_a_cancelled_job_stops_its_work_and_the_file_sent_again_goes_on(tasks, tmp_path, monkeypatch):
    """Cancel part-way: waiting batches and a redelivered ingest read nothing more, a document
    another job also wants goes on for it, and the same file in a new job reads only the rest."""
    from pipeline.db import jobs as jobrepo
    from pipeline.errors import JobFinishedError

    module, sent, engine, store = tasks
    FakeRecognizer.calls = 0
    monkeypatch.setattr(module, "recognizer_for", lambda model, beam=None, decode=None: FakeRecognizer())
    two = make_pdf([make_letter_page(150)] * 2, tmp_path / "two.pdf", dpi=150)
    one = make_pdf([make_letter_page(150)], tmp_path / "one.pdf", dpi=150)
    sub = Submitter(engine, store, JobOptions("m", 150, 1), enqueue=lambda *a: sent.append(a))
    job_a, _ = sub.open_job()
    sub.add(job_a, next(iter_local([two])))
    sub.add(job_a, next(iter_local([one])))
    sub.close_job(job_a)
    job_b, _ = sub.open_job()  # another job wants one.pdf too
    sub.add(job_b, next(iter_local([one])))
    sub.close_job(job_b)
    (_, doc_two, _), (_, doc_one, _), _ = sent
    module.ingest_document.run(doc_two, job_a)
    batches = [args[1] for args in sent if args[0] == RECOGNIZE]
    module.recognize_lines.run(batches[0], "m", 1)
    read_before = FakeRecognizer.calls
    assert 3 <= read_before < 8

    with session_scope(engine) as s:
        job, cancelled_now = jobrepo.cancel_job(s, job_a)
        assert cancelled_now and job.status == "cancelled" and job.finished_at is not None
    with session_scope(engine) as s:
        doc = repo.get_document(s, doc_two)
        assert doc.status == "pending" and doc.error == f"cancelled with job {job_a}"
        assert repo.get_document(s, doc_one).error is None  # job B still wants one.pdf
    for batch in batches[1:]:
        module.recognize_lines.run(batch, "m", 1)  # the queued batches of two.pdf
    assert FakeRecognizer.calls == read_before
    sent.clear()
    module.ingest_document.run(doc_two, job_a)  # a redelivered ingest of it does nothing
    assert not sent
    with pytest.raises(JobFinishedError, match="cancelled"):
        sub.add(job_a, next(iter_local([make_pdf([make_letter_page(150)] * 3, tmp_path / "3.pdf", dpi=150)])))

    module.ingest_document.run(doc_one, job_a)  # job B still wants it: read in full
    for batch in [args[1] for args in sent if args[0] == RECOGNIZE]:
        module.recognize_lines.run(batch, "m", 1)
    module.finish_document_task.run(doc_one)
    with session_scope(engine) as s:
        assert job_rows.get_job(s, job_b).status == "done"
        job = job_rows.get_job(s, job_a)
        assert (job.status, job.documents_done) == ("cancelled", 1)
        with pytest.raises(JobFinishedError, match="already finished"):
            jobrepo.cancel_job(s, job_b)
        assert jobrepo.cancel_job(s, job_a) == (job, False)  # again: nothing changes

    # The same file in a new job: the lines read before the cancel are not read again.
    calls_before = FakeRecognizer.calls
    sent.clear()
    job_c, _ = sub.open_job()
    assert sub.add(job_c, next(iter_local([two]))) == "queued"
    sub.close_job(job_c)
    module.ingest_document.run(doc_two, job_c)
    for batch in [args[1] for args in sent if args[0] == RECOGNIZE]:
        module.recognize_lines.run(batch, "m", 1)
    module.finish_document_task.run(doc_two)
    assert FakeRecognizer.calls - calls_before == 8 - read_before
    with session_scope(engine) as s:
        assert job_rows.get_job(s, job_c).status == "done"
        assert repo.get_document(s, doc_two).error is None


def _read_in_full(module, sent, document_id: str, job_id: str) -> None:
    """Run ingest, every recognize batch it sends and finish, as idle workers would."""
    sent.clear()
    module.ingest_document.run(document_id, job_id)
    for batch in [args[1] for args in sent if args[0] == RECOGNIZE]:
        module.recognize_lines.run(batch, "m", 1)
    module.finish_document_task.run(document_id)


def _read_before(module, sent, engine, store, path) -> Submitter:
    """A Submitter, once `path` was sent in a job of its own and read in full by the workers."""
    sub = Submitter(engine, store, JobOptions("m", 150, 1), enqueue=lambda *a: sent.append(a))
    first, _ = sub.open_job()
    sub.add(first, next(iter_local([path])))
    sub.close_job(first)
    [(_, document_id, _)] = [args for args in sent if args[0] == INGEST]
    _read_in_full(module, sent, document_id, first)
    sent.clear()
    return sub


def test_a_new_file_after_one_read_before_is_read_even_by_a_worker_that_takes_it_at_once(
        tasks, tmp_path, monkeypatch):
    """A watcher's pass: its job takes files as they are listed and is not held open. A first
    file read before ends the job at once; the next file's ingest, taken by an idle worker the
    moment it is sent, must still find a job that wants it (it was dropped, the job left
    running for ever)."""
    module, sent, engine, store = tasks
    monkeypatch.setattr(module, "recognizer_for", lambda model, beam=None, decode=None: FakeRecognizer())
    old = make_pdf([make_letter_page(150)], tmp_path / "old.pdf", dpi=150)
    new = make_pdf([make_letter_page(150)] * 2, tmp_path / "new.pdf", dpi=150)
    _read_before(module, sent, engine, store, old)
    taken: list[str] = []

    def worker_at_once(task, *args):
        sent.append((task, *args))
        if task == INGEST:  # the ingest worker takes it before the sender goes on
            taken.append(args[0])
            module.ingest_document.run(*args)

    watcher = Submitter(engine, store, JobOptions("m", 150, 1), owner="watcher", enqueue=worker_at_once)
    job, _ = watcher.open_job(accepting=False)
    assert watcher.add(job, next(iter_local([old]))) == "reused"
    assert watcher.add(job, next(iter_local([new]))) == "queued"
    [document_id] = taken
    assert [args for args in sent if args[0] == RECOGNIZE], "the new file's ingest was dropped"
    for batch in [args[1] for args in sent if args[0] == RECOGNIZE]:
        module.recognize_lines.run(batch, "m", 1)
    module.finish_document_task.run(document_id)
    with session_scope(engine) as s:
        assert repo.get_document(s, document_id).page_count == 2
        assert job_rows.get_job(s, job).status == "done"


def _bucket_with_letters(s3_server: str, bucket: str, tmp_path, pages: list[int]) -> None:
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_server)
    for i, count in enumerate(pages):
        pdf = make_pdf([make_letter_page(150)] * count, tmp_path / f"letter{i}.pdf", dpi=150)
        s3.put_object(Bucket=bucket, Key=f"inbox/letter{i}.pdf", Body=pdf.read_bytes())


def test_a_watcher_pass_s_job_is_not_done_before_the_pass_has_sent_every_file(
        tasks, tmp_path, monkeypatch, s3_server, s3_bucket):
    """Idle workers read each file the moment the watcher sends it: `quire status` showed the
    pass's job 'done' after the first file, then 'running' again when the pass sent the next.
    The job now runs until the pass has sent everything, then finishes, once."""
    from sqlalchemy import select

    from pipeline.db.models import Job
    from pipeline.watch import Watcher

    module, sent, engine, store = tasks
    monkeypatch.setattr(module, "recognizer_for", lambda model, beam=None, decode=None: FakeRecognizer())
    _bucket_with_letters(s3_server, s3_bucket, tmp_path, [1, 2])
    shown: list[str] = []

    def quire_status() -> None:
        with session_scope(engine) as s:
            shown.extend(job.status for job in s.scalars(select(Job)))

    def worker_at_once(task, *args):
        if task == INGEST:
            quire_status()
            _read_in_full(module, sent, *args)
            quire_status()

    watcher = Watcher(engine, store, f"s3://{s3_bucket}/inbox/", JobOptions("m", 150, 1),
                      endpoint_url=s3_server, enqueue=worker_at_once)
    result = watcher.scan()
    quire_status()
    assert result.submitted == 2
    # Before and after each file is read, then when the pass is over (it used to be
    # queued, done, running, done, done).
    assert shown == ["queued", "running", "running", "running", "done"]
    with session_scope(engine) as s:
        job = job_rows.get_job(s, result.job_id)
        assert (job.documents_total, job.documents_done, job.finished_at is not None) == (2, 2, True)


def test_a_job_of_files_all_read_before_sends_its_webhook_when_it_is_closed(tasks, tmp_path, monkeypatch):
    from pipeline.queue import NOTIFY

    module, sent, engine, store = tasks
    monkeypatch.setattr(module, "recognizer_for", lambda model, beam=None, decode=None: FakeRecognizer())
    pdf = make_pdf([make_letter_page(150)], tmp_path / "letter.pdf", dpi=150)
    sub = _read_before(module, sent, engine, store, pdf)
    again, _ = sub.open_job(webhook_url="http://127.0.0.1:9/hook")
    assert sub.add(again, next(iter_local([pdf]))) == "reused"
    assert NOTIFY not in [args[0] for args in sent]  # still open: not finished yet
    assert sub.close_job(again) == "done"
    assert (NOTIFY, again) in sent


def test_a_database_that_restarts_mid_task_is_waited_for_not_the_batch_dropped(tasks, tmp_path, monkeypatch):
    """PostgreSQL restarting or failing over while a batch is read: Celery acks a task that
    raised, so the batch must be retried, or its lines stay unread and the job runs for ever."""
    from sqlalchemy.exc import OperationalError

    module, sent, engine, store = tasks
    monkeypatch.setattr(module, "recognizer_for", lambda model, beam=None, decode=None: FakeRecognizer())
    pdf = make_pdf([make_letter_page(150)], tmp_path / "letter.pdf", dpi=150)
    sub = Submitter(engine, store, JobOptions("m", 150, 1), enqueue=lambda *a: sent.append(a))
    job, _ = sub.open_job()
    sub.add(job, next(iter_local([pdf])))
    sub.close_job(job)
    module.ingest_document.run(sent[0][1], job)
    batches = [args[1] for args in sent if args[0] == RECOGNIZE]
    real_save, failures = module.save_texts, []

    def save_while_the_database_restarts(*args, **kwargs):
        if len(failures) < 2:
            failures.append(1)
            raise OperationalError("UPDATE lines", {}, Exception("connection to server refused"))
        return real_save(*args, **kwargs)

    monkeypatch.setattr(module, "save_texts", save_while_the_database_restarts)
    for batch in batches:  # as a worker runs them (eagerly here: retries at once, no countdown)
        module.recognize_lines.apply(args=(batch, "m", 1)).get()
    assert len(failures) == 2
    [(_, document_id)] = {args for args in sent if args[0] == FINISH}
    module.finish_document_task.run(document_id)
    with session_scope(engine) as s:
        assert job_rows.get_job(s, job).status == "done"
        assert repo.lines_remaining(s, document_id) == 0


def test_a_task_that_fails_for_good_fails_its_document_with_the_reason(tasks, tmp_path, monkeypatch):
    """A source object gone from the store (no retry brings it back) or retries spent on an
    outage: the document fails saying why and its job ends, instead of 'processing' for ever."""
    from pipeline import storage
    from pipeline.queue import NOTIFY

    module, sent, engine, store = tasks
    pdf = make_pdf([make_letter_page(150)], tmp_path / "letter.pdf", dpi=150)
    sub = Submitter(engine, store, JobOptions("m", 150, 1), enqueue=lambda *a: sent.append(a))
    job, _ = sub.open_job(webhook_url="http://127.0.0.1:9/hook")
    sub.add(job, next(iter_local([pdf])))
    sub.close_job(job)
    [(_, document_id, _)] = sent
    with session_scope(engine) as s:
        sha = repo.get_document(s, document_id).sha256
    (store.root / storage.source_key(sha)).unlink()  # lost from the store

    result = module.ingest_document.apply(args=(document_id, job))
    assert result.failed()
    with session_scope(engine) as s:
        doc = repo.get_document(s, document_id)
        assert doc.status == "failed" and doc.error.startswith("ingest_document failed: ")
        assert "no such object" in doc.error
        assert job_rows.get_job(s, job).status == "failed"
    assert (NOTIFY, job) in sent

"""The embedded driver: every stage in one process, lines batched across pages and documents."""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from pipeline import cleanup, run_process, stopping, storage
from pipeline.config import Settings
from pipeline.db import file_hashes, job_rows, locks, readings, repo, runs
from pipeline.db.models import DocumentStatus
from pipeline.db.session import open_database, session_scope
from pipeline.document_checks import regular_file_stat
from pipeline.errors import BadInputError, DocumentGoneError, NotFoundError, QuireError
from pipeline.exporters import Exporter
from pipeline.inputs import named_inputs
from pipeline.process import (
    DocumentRef,
    JobOptions,
    file_sha256,
    finish_document,
    ingest_pages,
    save_texts,
)
from pipeline.run_outputs import OutputWriter, Reading
from pipeline.run_progress import RunProgress
from pipeline.run_summary import DocumentOutcome, RunSummary
from pipeline.types import LineText

log = logging.getLogger(__name__)

# Pages ingested ahead of recognition: enough to keep the model fed, few enough to bound memory.
INGEST_AHEAD_PAGES = 4
STOP_WAIT_S = 30  # on Ctrl-C, how long the page being rendered may take to finish


class LineReader(Protocol):
    """What the runner reads lines with: the Recognizer, or a test's stand-in."""

    def recognize(self, crops: Sequence[np.ndarray]) -> list[LineText]: ...


class _Stopping(Exception):
    """Raised in the ingest thread once the run is stopping (Ctrl-C): it ends there."""


@dataclass(eq=False, slots=True)  # identity matters: two documents may look alike
class _Pending:
    """A document whose pages are ingested; it finishes when its last buffered line is recognized."""

    ref: DocumentRef
    outcome: DocumentOutcome
    name: str
    reading: str = ""  # the row read into: the document's, or on --redo its new reading's
    lines_left: int = 0
    counted: int | None = None  # its pages, once rendering has counted them
    ingested: bool = False
    finished: bool = False  # read and saved (its own output may still fail to be written)
    # Later inputs of the run with the same bytes: (outcome, output name), given this one's
    # reading once it is finished (or its failure).
    copies: list[tuple[DocumentOutcome, str]] = field(default_factory=list)
    read_as: Reading | None = None  # once finished: what its exports are made from

    @property
    def redo(self) -> bool:
        return self.reading not in ("", self.ref.id)

    @property
    def reading_ref(self) -> DocumentRef:
        """Rows go to the reading's row; a --redo's page images to keys of its own."""
        return DocumentRef(self.reading or self.ref.id, self.ref.sha256, self.ref.profile, self.redo)


class LocalRunner:
    """Runs documents through ingest, recognize and finish in-process; see `run`."""

    def __init__(
        self,
        settings: Settings,
        *,
        exporters: Sequence[Exporter],
        out_dir: Path | None = None,
        recognizer_factory: Callable[[], LineReader] | None = None,
        flush_lines: int = 256,
        redo: bool = False,
    ) -> None:
        self.settings = settings
        self.redo = redo  # read documents again even when done before
        self.exporters = exporters
        self.out_dir = out_dir
        self.flush_lines = flush_lines
        self._recognizer_factory = recognizer_factory or self._default_recognizer
        self._recognizer: LineReader | None = None
        self.engine = open_database(settings.resolved_database_url(), migrate=True)
        self.store = storage.open_store(settings.resolved_storage_url(), settings.s3_endpoint_url)
        self.options = JobOptions.from_settings(settings, formats=[e.name for e in exporters])
        self.profile = self.options.profile
        self._buffer: list[tuple[_Pending, int, np.ndarray]] = []
        self._read_in_run: dict[str, _Pending] = {}  # document id -> its first input in this run
        self.outputs = OutputWriter(self.engine, self.store, exporters, out_dir)
        self._progress = RunProgress(None, 0)
        self._stop = threading.Event()  # set on Ctrl-C: the ingest thread ends at its next step
        self.job_id: str | None = None  # the run's job once made: a stopped run names it

    def _default_recognizer(self) -> LineReader:
        from pipeline.recognize import Recognizer

        return Recognizer.from_settings(self.settings, decode=self.options.decode,
                                        language_model=self.options.language_model)

    @property
    def recognizer(self) -> LineReader:
        if self._recognizer is None:  # loaded on first use: a run of finished files loads no model
            self._recognizer = self._recognizer_factory()
        return self._recognizer

    def run(self, paths: Sequence[Path], progress=None, roots: Sequence[Path] = ()) -> RunSummary:
        """Process `paths` (files); `progress` is a tqdm-like bar over pages, or None; `roots`
        are the folders they were collected from, mirrored in the output folder.

        Ingest (render, segment, save) runs on a thread ahead of recognition, so the pages of the
        next documents are prepared while the model reads the current lines (on a GPU the two
        overlap fully). The queue between them is small, so memory stays bounded.
        """
        started = time.perf_counter()
        self._progress = RunProgress(progress, len(paths))
        every = self.settings.run.heartbeat_seconds
        with session_scope(self.engine) as s:
            # Runs killed outright (kill -9) left their jobs live: they are stopped now.
            runs.settle_gone_runs(s, run_process.is_gone, silent_after=self.settings.run.stale_seconds)
            job_id = job_rows.create_job(s, settings=self.options.as_dict(), local_run=runs.local_run(
                run_process.this_process(), len(paths), self.redo, heartbeat_s=every)).id
            self.job_id = job_id
            runs.beat(s, job_id)
            # A run killed after a --redo's adoption left what it was to delete: finished first.
            deletions = readings.pending_deletions(s)
        outcomes = [DocumentOutcome(path) for path in paths]
        events: queue.Queue = queue.Queue(maxsize=INGEST_AHEAD_PAGES)
        producer = threading.Thread(
            target=self._ingest_all, args=(job_id, outcomes, events, roots), name="quire-ingest",
            daemon=True
        )
        # What a killed delete or --redo left, before any reading starts (the clean-up keeps the
        # keys a document of the same bytes uses, whenever it runs: pipeline.cleanup).
        cleanup.finish_deletions(self.engine, self.store, deletions)
        producer.start()
        # A second Ctrl-C, even one that comes while the first is still unwinding, waits for the
        # stop to be recorded below (pipeline/stopping.py); it only cuts the wait for the page.
        # The heartbeat tells hosts that share the database (and cannot see this process) that
        # the run goes on; it ends inside the hold, so a second Ctrl-C cannot cut in meanwhile.
        with stopping.holding(), run_process.Heartbeat(lambda: self._beat(job_id), every, f"job {job_id}"):
            try:
                self._consume(events)
                producer.join()
                self._progress.close()
                with session_scope(self.engine) as s:
                    job_rows.update_job_counts(s, job_id)
                    went_on_from = runs.went_on(s, job_id)
                    for other in job_rows.unfinished_sharing_jobs(s, job_id):
                        job_rows.update_job_counts(s, other)  # e.g. a stopped run's job, whose files are done now
            except KeyboardInterrupt:
                # The page being rendered is finished and the thread ends before the process does
                # (native code still running in a thread at exit can abort the interpreter).
                self._stop.set()
                stopping.wait_for(producer, STOP_WAIT_S)
                self._stopped(job_id)
                raise
        return RunSummary(outcomes, time.perf_counter() - started, job_id, went_on_from)

    def _beat(self, job_id: str) -> bool:
        """Renew the job's heartbeat; False (no more beats) once it has ended. Taken as stopped
        from another host that heard no beat for too long, the run says so and goes on: what
        it reads is saved all the same."""
        with session_scope(self.engine) as s:
            if runs.beat(s, job_id):
                return True
            silent = (job_rows.get_job(s, job_id).local_run or {}).get("stopped") == runs.BY_SILENCE
        if silent:
            log.warning("job %s was taken as stopped by another host that heard no heartbeat from "
                        "this run for too long; it goes on, and what it reads is saved", job_id)
        return False

    def _stopped(self, job_id: str) -> None:
        """Ctrl-C: the job ends 'stopped' instead of staying queued for ever, and its unfinished
        documents fail with the reason; the same command goes on with them. A --redo's document
        keeps its earlier reading (the new one waits in its own row for the next --redo)."""
        with session_scope(self.engine) as s:
            for doc in job_rows.job_documents(s, job_id):
                if doc.status not in (DocumentStatus.DONE, DocumentStatus.FAILED):
                    repo.fail_document(s, doc.id, runs.STOPPED)
            runs.stop_job(s, job_id, runs.BY_SIGNAL)
            runs.went_on(s, job_id)

    def _consume(self, events: queue.Queue) -> None:
        """Recognition side: take ingested pages, batch their lines, finish documents."""
        min_batch = self.settings.recognize.batch_size
        progress = self._progress
        while True:
            try:
                event = events.get_nowait()
            except queue.Empty:
                # Nothing ingested yet: read what is buffered rather than wait idle.
                if len(self._buffer) >= min_batch:
                    self._flush()
                event = events.get()
            kind = event[0]
            if kind == "page":
                _, pending, page = event
                pending.outcome.pages += 1
                pending.outcome.lines += page.lines
                pending.lines_left += len(page.line_ids)
                self._buffer.extend((pending, lid, crop) for lid, crop in zip(page.line_ids, page.crops))
                progress.read(1)
                if len(self._buffer) >= self.flush_lines:
                    self._flush()
            elif kind == "counted":  # its pages, counted as rendering began
                _, pending, pages = event
                pending.counted = pages
                progress.reach(pages)
            elif kind == "ingested":
                pending = event[1]
                pending.ingested = True
                if pending.lines_left == 0:
                    self._finish(pending)
            elif kind == "resumed":
                _, pending, pages, lines = event
                pending.outcome.pages += pages
                pending.outcome.lines += lines
                pending.outcome.resumed_pages, pending.outcome.resumed_lines = pages, lines
                progress.read(pages)
            elif kind == "skipped":  # done before: nothing to read
                progress.reach(0)
                progress.settle()
            elif kind == "copy":  # read once, as the first: its pages are not read again
                _, first, outcome, name = event
                progress.reach(0)
                if first.outcome.status == "pending":
                    first.copies.append((outcome, name))
                else:
                    self._settle_copy(first, outcome, name)
            elif kind == "failed":
                _, pending, outcome, path, exc = event
                self._fail(pending, outcome, path, exc)
            elif kind == "crash":
                raise event[1]
            else:  # "end"
                self._flush()
                return

    def _ingest_all(self, job_id: str, outcomes: list[DocumentOutcome], events: queue.Queue,
                    roots: Sequence[Path] = ()) -> None:
        names = named_inputs([o.path for o in outcomes], roots)
        try:
            for position, (outcome, (_, name, stored_name)) in enumerate(zip(outcomes, names)):
                outcome.stored_name = stored_name
                self._ingest(job_id, position, outcome, name, events)
            self._put(events, ("end",))
        except _Stopping:
            return
        except BaseException as exc:  # noqa: BLE001 - a bug, not bad input: re-raised by the consumer
            with contextlib.suppress(_Stopping):
                self._put(events, ("crash", exc))

    def _put(self, events: queue.Queue, event: tuple) -> None:
        """Hand an event to the reading side, waiting while its queue is full, unless the run is
        stopping: nobody drains the queue then, and the ingest thread must end instead."""
        while True:
            if self._stop.is_set():
                raise _Stopping
            try:
                events.put(event, timeout=0.2)
                return
            except queue.Full:
                continue

    def _ingest(self, job_id, position, outcome: DocumentOutcome, name: str, events: queue.Queue) -> None:
        path, stored_name = outcome.path, outcome.stored_name
        pending: _Pending | None = None
        kept: dict[int, int] = {}  # page number -> lines, of pages an interrupted run finished
        try:
            looked_at = time.time_ns()  # for file_hashes.racy
            seen = regular_file_stat(path)  # before hashing: reading a named pipe waits for ever
            size = seen.st_size
            # A file hashed by an earlier run and unchanged since is not read again.
            where = path.resolve()
            with session_scope(self.engine) as s:
                known = file_hashes.known(s, where, seen)
            sha = known or file_sha256(path)
            # Each session is closed before an event is queued: the reading side saves text
            # while it waits for room, and SQLite lets one writer at a time.
            for attempt in locks.until_unclaimed():  # a clean-up deleting its objects: after it
                with attempt, session_scope(self.engine) as s:
                    if known is None:
                        file_hashes.remember(s, where, seen, sha, looked_at)
                    doc, done = repo.upsert_document(
                        s, sha256=sha, profile=self.profile, name=stored_name,
                        source_uri=path.resolve().as_uri(), size_bytes=size,
                    )
                    job_rows.link_job_document(s, job_id, doc.id, position, stored_name)
                    ref, pages = DocumentRef(doc.id, sha, self.profile), doc.page_count or 0
                    done_reading = Reading.of(ref, doc)
                    first = self._read_in_run.get(doc.id)
                    skip = (done and not self.redo) or first is not None
                    reading = doc.id
                    if skip:
                        outcome.redo_waiting = (first is None
                                                and readings.find_redo(s, doc.id) is not None)
                    elif done:  # --redo: read into a row of its own; the earlier one stays till then
                        reading, kept = readings.begin_redo(s, doc)
                    elif self._interrupted(doc):
                        kept = repo.resume_document(s, doc.id)
                    else:
                        repo.start_document(s, doc.id)
            if first is not None:
                # The same bytes earlier in this run: read once (reading it again would drop the
                # rows the first is being read into), its exports written under this name too.
                outcome.same_as = first.outcome.path
                self._put(events, ("copy", first, outcome, name))
                return
            if skip:
                outcome.status, outcome.pages = "skipped", pages
                # Read before, maybe under another file name: the exports carry this one's, and
                # those an earlier run wrote into --out as they are now are left alone.
                self.outputs.read_before(outcome, name, done_reading)
                self._put(events, ("skipped", outcome))
                return
            pending = _Pending(ref, outcome, name, reading)
            self._read_in_run[doc.id] = pending
            key = storage.source_key(sha)
            if not self.store.exists(key):
                self.store.put_file(key, path)
            if kept:
                self._put(events, ("resumed", pending, len(kept), sum(kept.values())))
            for page in ingest_pages(self.engine, self.store, pending.reading_ref, path,
                                     self.settings.render, store_crops=False, skip=kept,
                                     counted=lambda n: self._put(events, ("counted", pending, n))):
                self._put(events, ("page", pending, page))
            self._put(events, ("ingested", pending))
        except QuireError as exc:
            self._put(events, ("failed", pending, outcome, path, exc))
        except OSError as exc:  # unreadable file, full disk: this document fails, the run goes on
            self._put(events, ("failed", pending, outcome, path, BadInputError(str(exc), source=str(path))))
        except _Stopping:  # the run is stopping: not this document's failure
            raise
        except Exception as exc:  # a file no check foresaw fails alone: it must not end a long run
            log.exception("%s: unexpected error", path)
            reason = f"unexpected error ({type(exc).__name__}: {exc}); please report it with the file"
            self._put(events, ("failed", pending, outcome, path, QuireError(reason, source=str(path))))

    @staticmethod
    def _interrupted(doc) -> bool:
        """Whether a run was stopped (Ctrl-C, or killed: still 'processing', or failed as killed)
        while reading the document, which was not done before: it goes on from the pages that run
        finished instead of page 1. A document that failed for a reason is read from the start."""
        return doc.status == DocumentStatus.PROCESSING or (
            doc.status == DocumentStatus.FAILED and doc.error in runs.STOP_REASONS)

    def _fail(self, pending: _Pending | None, outcome: DocumentOutcome, path: Path, exc: QuireError) -> None:
        log.warning("%s", exc)
        outcome.status, outcome.error = "failed", exc.reason
        if pending is None or pending.counted is None:  # failed before its pages were counted
            self._progress.reach(0)
        else:  # its pages not read are not to be read
            self._progress.recount(pending.counted - outcome.pages)
        self._progress.settle()
        if pending is not None:  # else the file failed before it had a row (unreadable)
            self._buffer = [item for item in self._buffer if item[0] is not pending]
            dropped: int | None = None
            with session_scope(self.engine) as s:
                if pending.redo:  # the new reading is dropped; the document keeps its reading
                    dropped = readings.drop_redo(s, pending.ref.id)
                    outcome.error += "; its earlier reading is kept"
                else:
                    # Deleted meanwhile (by a host that took this run as ended): nothing to mark.
                    with contextlib.suppress(NotFoundError):
                        repo.fail_document(s, pending.ref.id, exc.reason)
            self._delete_stored(dropped)
            for copy, name in pending.copies:
                self._settle_copy(pending, copy, name)

    def _flush(self) -> None:
        """Recognize every buffered line (sorted by width inside the Recognizer) and save the text."""
        if not self._buffer:
            return
        batch, self._buffer = self._buffer, []
        texts = self.recognizer.recognize([crop for _, _, crop in batch])
        save_texts(self.engine, [lid for _, lid, _ in batch], texts, self.settings.model)
        finished: list[_Pending] = []
        for pending, _, _ in batch:
            pending.lines_left -= 1
            if pending.lines_left == 0 and pending.ingested:
                finished.append(pending)
        self._progress.read_lines(len(batch))
        for pending in dict.fromkeys(finished):
            self._finish(pending)

    def _finish(self, pending: _Pending) -> None:
        outcome = pending.outcome
        try:
            if pending.redo:  # complete: the new reading takes the earlier one's place, at once
                with session_scope(self.engine) as s:
                    superseded = readings.adopt_redo(s, pending.ref.id, outcome.pages)
                self._delete_stored(superseded)
            outputs = finish_document(self.engine, self.store, pending.ref, outcome.pages,
                                      self.exporters, name=outcome.stored_name)
        except NotFoundError:  # deleted after its last page, by a host that took this run as ended
            gone = DocumentGoneError(f"document {pending.ref.id} was deleted while it was being read",
                                     source=str(outcome.path))
            self._fail(pending, outcome, outcome.path, gone)
            return
        outcome.status, pending.finished = "done", True
        pending.read_as = self.outputs.read_now(outcome, pending.name, pending.ref, outputs)
        if pending.counted is not None and pending.counted != outcome.pages:
            self._progress.recount(pending.counted - outcome.pages)
        self._progress.settle()
        for copy, name in pending.copies:
            self._settle_copy(pending, copy, name)

    def _delete_stored(self, deletion: int | None) -> None:
        """Delete the page images no row names any more, recorded as a pending deletion with
        the change (committed first, so no reading is ever left without its images). Killed
        before this ends, or with the store failing, the next run finishes it."""
        if deletion is not None:
            cleanup.finish_deletions(self.engine, self.store, [deletion])

    def _settle_copy(self, first: _Pending, copy: DocumentOutcome, name: str) -> None:
        """A later input with the first's bytes ends as the first did: its exports (under its own
        file name), or the first's failure."""
        self._progress.settle()
        if not first.finished:
            copy.status, copy.error = "failed", first.outcome.error
            return
        copy.status, copy.pages = "skipped", first.outcome.pages
        self.outputs.read_before(copy, name, first.read_as or Reading(first.ref, "", copy.pages))

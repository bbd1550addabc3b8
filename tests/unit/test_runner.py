"""The local runner's driving logic: batching across documents, bugs surface instead of hanging."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import Settings
from pipeline.errors import BadInputError
from pipeline.exporters import parse_formats
from pipeline.inputs import collect_inputs, output_names, passed_over
from pipeline.render import count_pages
from pipeline.runner import LocalRunner
from pipeline.types import LineText
from tests.model_fixtures import LETTER_LINES, make_letter_page
from tests.pagegen import make_pdf

pytestmark = pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="poppler-utils missing")
DPI = 150


class CountingRecognizer:
    """Stands in for the model (this tests the driver, not recognition): records each batch."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    def recognize(self, crops):
        self.batches.append(len(crops))
        return [LineText(f"line {i}", 0.5) for i in range(len(crops))]


def runner(tmp_path, recognizer=None) -> LocalRunner:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'q.sqlite'}",
                        storage_url=(tmp_path / "store").as_uri(), render={"dpi": DPI})
    return LocalRunner(settings, exporters=parse_formats("txt"), out_dir=tmp_path / "out",
                       recognizer_factory=lambda: recognizer or CountingRecognizer())


def test_lines_of_several_documents_share_one_recognition_batch(tmp_path):
    page = make_letter_page(DPI)
    pdfs = [make_pdf([page] * n, tmp_path / f"doc{n}.pdf", dpi=DPI) for n in (1, 2, 3)]
    counting = CountingRecognizer()
    summary = runner(tmp_path, counting).run(pdfs)
    assert summary.count("done") == 3 and summary.pages == 6
    assert sum(counting.batches) == 6 * len(LETTER_LINES)
    assert len(counting.batches) == 1  # 24 lines < one batch: read together, across documents
    assert (tmp_path / "out" / "doc3.txt").read_text().count("\f") == 2


def test_an_error_no_check_foresaw_fails_that_document_and_the_run_goes_on(tmp_path, monkeypatch):
    """A long run must not die on one odd file: the document fails with the error, named."""
    import pipeline.process

    pdfs = [make_pdf([make_letter_page(DPI)] * n, tmp_path / f"{n}.pdf", dpi=DPI) for n in (1, 2)]
    real = pipeline.process.segmented
    calls = []

    def broken_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("segmenter bug")
        return real(*args, **kwargs)

    monkeypatch.setattr("pipeline.process.segmented", broken_once)
    summary = runner(tmp_path).run(pdfs)
    first, second = summary.outcomes
    assert first.status == "failed" and "unexpected error (RuntimeError: segmenter bug)" in first.error
    assert second.status == "done" and second.pages == 2


def test_a_truncated_multi_page_tiff_fails_alone(tmp_path):
    from PIL import Image

    frames = [Image.fromarray(np.full((200, 300), 60 * (i + 1), np.uint8)) for i in range(3)]
    frames[0].save(tmp_path / "whole.tif", save_all=True, append_images=frames[1:])
    data = (tmp_path / "whole.tif").read_bytes()
    (tmp_path / "cut.tif").write_bytes(data[: len(data) // 2])
    pdf = make_pdf([make_letter_page(DPI)], tmp_path / "a.pdf", dpi=DPI)
    summary = runner(tmp_path).run([tmp_path / "cut.tif", pdf])
    cut, good = summary.outcomes
    assert cut.status == "failed" and "cut short or damaged at page" in cut.error, cut.error
    assert good.status == "done"


def test_a_stopped_run_ends_its_job_and_the_next_run_reads_what_was_left(tmp_path):
    from sqlalchemy import select

    from pipeline.db.models import Document, Job
    from pipeline.db.session import make_engine, session_scope

    pdfs = [make_pdf([make_letter_page(DPI)] * n, tmp_path / f"doc{n}.pdf", dpi=DPI) for n in (1, 6)]

    class Interrupted(CountingRecognizer):
        def recognize(self, crops):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        runner(tmp_path, Interrupted()).run(pdfs)
    # The ingest thread has ended too: nothing renders on while the process exits.
    assert not [t for t in threading.enumerate() if t.name == "quire-ingest"]
    engine = make_engine(f"sqlite:///{tmp_path / 'q.sqlite'}")
    with session_scope(engine) as s:
        [job] = s.scalars(select(Job)).all()
        docs = s.scalars(select(Document)).all()
        assert job.status == "stopped" and job.finished_at is not None  # not queued for ever
        assert job.local_run["stopped"] == "signal" and job.local_run["inputs"] == 2
        assert docs and {d.status for d in docs} == {"failed"}
        assert all("stopped (Ctrl-C or SIGTERM)" in d.error for d in docs)

    summary = runner(tmp_path).run(pdfs)  # the same command again
    assert summary.count("done") == 2 and (tmp_path / "out" / "doc6.txt").read_text().count("\f") == 5
    assert summary.went_on_from == [job.id]
    with session_scope(engine) as s:
        stopped = s.get(Job, job.id)
        # Its files are done now, by the run that went on: it still says it was stopped.
        assert (stopped.status, stopped.documents_done, stopped.documents_failed) == ("stopped", 2, 0)
        assert stopped.local_run["went_on_in"] == summary.job_id


@pytest.mark.parametrize("how", ["ctrl-c", "killed"])
def test_a_run_stopped_mid_document_goes_on_from_the_pages_it_had_read(tmp_path, monkeypatch, how):
    """The same command after Ctrl-C (or kill -9, which leaves the document 'processing') used
    to read a stopped document again from page 1."""
    from sqlalchemy import update

    import pipeline.process
    from pipeline.db.models import Document
    from pipeline.db.session import make_engine, session_scope

    pdf = make_pdf([make_letter_page(DPI)] * 6, tmp_path / "book.pdf", dpi=DPI)
    per_page = len(LETTER_LINES)

    class StoppedOnThirdBatch(CountingRecognizer):
        def recognize(self, crops):
            if len(self.batches) == 2:
                raise KeyboardInterrupt
            return super().recognize(crops)

    stopped = runner(tmp_path, StoppedOnThirdBatch())
    stopped.flush_lines = per_page  # one page a batch: pages 1 and 2 are read, then Ctrl-C
    with pytest.raises(KeyboardInterrupt):
        stopped.run([pdf])
    if how == "killed":  # no handler ran: the document is left as it was mid-read
        with session_scope(make_engine(f"sqlite:///{tmp_path / 'q.sqlite'}")) as s:
            s.execute(update(Document).values(status="processing", error=None))

    segmented_pages = []
    real = pipeline.process.segmented

    def counting_segmented(page, **kwargs):
        segmented_pages.append(page.number)
        return real(page, **kwargs)

    monkeypatch.setattr("pipeline.process.segmented", counting_segmented)
    counting = CountingRecognizer()
    summary = runner(tmp_path, counting).run([pdf])  # the same command again
    [book] = summary.outcomes
    assert book.status == "done" and (book.pages, book.resumed_pages) == (6, 2)
    assert segmented_pages == [3, 4, 5, 6]  # pages 1-2 are neither rendered nor segmented again
    assert sum(counting.batches) == 4 * per_page
    assert summary.pages == 4 and summary.lines == 4 * per_page  # this run's own work
    pages = (tmp_path / "out" / "book.txt").read_text().split("\f")
    assert len(pages) == 6 and all(page.strip() for page in pages)  # the text of all six pages


def test_a_file_done_before_among_new_ones_does_not_lock_the_database(tmp_path):
    """The ingest side used to hold a write transaction on a reused file while it waited for
    room in the queue, and the reading side waited on it to save text: 'database is locked'."""
    import time

    letter = make_letter_page(DPI)
    done = make_pdf([letter], tmp_path / "done.pdf", dpi=DPI)
    runner(tmp_path).run([done])

    class Slow(CountingRecognizer):
        def recognize(self, crops):
            time.sleep(0.3)  # long enough for the ingest side to fill the queue
            return super().recognize(crops)

    new = [make_pdf([letter] * 2, tmp_path / f"new{i}.pdf", dpi=DPI) for i in range(5)]
    reused = tmp_path / "again.pdf"
    reused.write_bytes(done.read_bytes())
    started = time.monotonic()
    fast = LocalRunner(Settings(database_url=f"sqlite:///{tmp_path / 'q.sqlite'}",
                                storage_url=(tmp_path / "store").as_uri(), render={"dpi": DPI}),
                       exporters=parse_formats("txt"), out_dir=tmp_path / "out",
                       recognizer_factory=Slow, flush_lines=4)
    summary = fast.run([*new[:3], reused, *new[3:]])
    assert summary.count("done") == 5 and summary.count("skipped") == 1
    assert time.monotonic() - started < 30


def test_inputs_and_output_names(tmp_path):
    (tmp_path / "a" / ".hidden").mkdir(parents=True)
    (tmp_path / "b").mkdir()
    for rel in ("a/x.pdf", "a/.hidden/y.pdf", "a/notes.txt", "b/x.PDF", "b/z.tif"):
        (tmp_path / rel).write_bytes(b"%PDF")
    found = collect_inputs([tmp_path / "a", tmp_path / "b"])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["a/x.pdf", "b/x.PDF", "b/z.tif"]
    assert list(output_names(found).values()) == ["x", "x-2", "z"]
    # Found in folders given: their trees are mirrored, so nothing needs a -2.
    assert list(output_names(found, [tmp_path]).values()) == ["a/x", "b/x", "b/z"]
    assert list(output_names(found, [tmp_path / "a", tmp_path / "b"]).values()) == ["x", "x-2", "z"]


def test_identical_files_in_one_run_are_read_once_and_both_get_full_outputs(tmp_path):
    """Reading the second copy used to drop the rows the first was still being read into: the
    first copy's text file came out with pages missing and lines empty."""
    pages = [make_letter_page(DPI)] * 3
    first = make_pdf(pages, tmp_path / "x.pdf", dpi=DPI)
    (tmp_path / "y.pdf").write_bytes(first.read_bytes())
    counting = CountingRecognizer()
    r = runner(tmp_path, counting)
    r.flush_lines = 4  # the first copy is still being read when the second comes up
    summary = r.run([first, tmp_path / "y.pdf"])
    x, y = summary.outcomes
    assert (x.status, y.status, y.same_as) == ("done", "skipped", first)
    assert sum(counting.batches) == 3 * len(LETTER_LINES)  # read once
    text = (tmp_path / "out" / "x.txt").read_text()
    assert text == (tmp_path / "out" / "y.txt").read_text()
    assert text.count("\f") == 2 and text.count("line ") == 3 * len(LETTER_LINES)


def test_a_redo_that_fails_or_is_stopped_keeps_the_earlier_reading(tmp_path, monkeypatch):
    """--redo used to drop a document's rows first: a failed or stopped re-read lost its text."""
    from pipeline.db import repo
    from pipeline.db.models import Document
    from pipeline.db.session import make_engine, session_scope

    pdf = make_pdf([make_letter_page(DPI)] * 2, tmp_path / "a.pdf", dpi=DPI)
    assert runner(tmp_path).run([pdf]).count("done") == 1
    engine = make_engine(f"sqlite:///{tmp_path / 'q.sqlite'}")

    def reading():
        with session_scope(engine) as s:
            [doc] = s.scalars(repo.select(Document).where(Document.redo_of.is_(None))).all()
            result = repo.load_document_result(s, doc.id)
            return doc.status, [[ln.text for ln in p.lines] for p in result.pages]

    before = reading()
    assert before[0] == "done" and len(before[1]) == 2 and all(before[1])

    real = _page_fails(monkeypatch, pdf, 2)
    redo = runner(tmp_path)
    redo.redo = True
    [outcome] = redo.run([pdf]).outcomes
    assert outcome.status == "failed" and outcome.error.endswith("its earlier reading is kept")
    assert reading() == before

    class Interrupted(CountingRecognizer):
        def recognize(self, crops):
            raise KeyboardInterrupt

    monkeypatch.setattr("pipeline.process.segmented", real)
    stopped = runner(tmp_path, Interrupted())
    stopped.redo = True
    with pytest.raises(KeyboardInterrupt):
        stopped.run([pdf])
    assert reading() == before


def test_a_redo_keeps_its_page_images_apart_until_it_takes_the_earlier_reading_s_place(tmp_path, monkeypatch):
    """A --redo wrote its page images over the earlier reading's keys: one that failed or was
    stopped half way left the earlier reading's rows naming images of a reading never adopted."""
    import io

    from PIL import Image, ImageDraw
    from sqlalchemy import select

    from pipeline.db.models import Document, Page
    from pipeline.db.session import make_engine, session_scope

    pdf = make_pdf([make_letter_page(DPI)] * 3, tmp_path / "a.pdf", dpi=DPI)
    assert runner(tmp_path).run([pdf]).count("done") == 1
    engine, store = make_engine(f"sqlite:///{tmp_path / 'q.sqlite'}"), tmp_path / "store"

    def image_keys(redo: bool = False) -> list[str]:
        with session_scope(engine) as s:
            kind = Document.redo_of.is_not(None) if redo else Document.redo_of.is_(None)
            return list(s.scalars(select(Page.image_key).join(Document).where(kind).order_by(Page.number)))

    def stored() -> dict[str, bytes]:
        return {p.relative_to(store).as_posix(): p.read_bytes() for p in store.rglob("*")
                if p.parent.name == "pages"}

    # The earlier reading's images as an earlier render made them (a mark in a corner), so a
    # new render over them shows.
    earlier_keys = image_keys()
    for key in earlier_keys:
        image = Image.open(store / key).convert("L")
        ImageDraw.Draw(image).rectangle((0, 0, 15, 15), fill=0)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG" if key.endswith(".jpg") else "PNG")
        (store / key).write_bytes(buffer.getvalue())
    before = stored()
    assert sorted(before) == earlier_keys and len(before) == 3

    real = _page_fails(monkeypatch, pdf, 3)
    failing = runner(tmp_path)
    failing.redo = True
    [outcome] = failing.run([pdf]).outcomes
    assert outcome.status == "failed"
    # Its two rendered pages went with the reading they belonged to.
    assert image_keys() == earlier_keys and stored() == before

    class StoppedOnSecondBatch(CountingRecognizer):
        def recognize(self, crops):
            if self.batches:
                raise KeyboardInterrupt
            return super().recognize(crops)

    monkeypatch.setattr("pipeline.process.segmented", real)
    stopped = runner(tmp_path, StoppedOnSecondBatch())
    stopped.redo, stopped.flush_lines = True, len(LETTER_LINES)  # page 1 read, then Ctrl-C
    with pytest.raises(KeyboardInterrupt):
        stopped.run([pdf])
    assert image_keys() == earlier_keys
    assert {key: data for key, data in stored().items() if key in before} == before
    new_keys = image_keys(redo=True)  # the stopped reading's, under keys of its own
    assert new_keys and not set(new_keys) & set(earlier_keys)
    assert all("/readings/" in key and (store / key).is_file() for key in new_keys)

    redo = runner(tmp_path)
    redo.redo = True
    [outcome] = redo.run([pdf]).outcomes
    assert outcome.status == "done" and outcome.resumed_pages == 1  # went on after page 1
    adopted = image_keys()
    assert adopted == new_keys and image_keys(redo=True) == []  # one reading, the new one
    now = stored()
    assert sorted(now) == adopted  # the earlier reading's images are gone, no strays
    for key in adopted:  # freshly rendered: no mark
        assert Image.open(io.BytesIO(now[key])).convert("L").getpixel((5, 5)) > 128


@contextlib.contextmanager
def released_after(fifo: Path, seconds: float = 5.0) -> Iterator[list[bool]]:
    """Fails a hang instead of hanging: past `seconds`, whoever waits to read `fifo` is handed
    an empty write end (so the read ends), and the list yielded says [True]."""
    released: list[bool] = []
    done = threading.Event()

    def watch() -> None:
        done.wait(seconds)
        while not done.is_set():
            with contextlib.suppress(OSError):  # ENXIO: nobody is reading it
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
                released[:] = [True]
            done.wait(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield released
    finally:
        done.set()
        watcher.join()


def test_a_named_pipe_given_by_name_fails_alone_instead_of_hanging(tmp_path):
    """Opening a FIFO waits for a writer: `quire run pipe.pdf good.pdf` hung for ever."""
    fifo = tmp_path / "pipe.pdf"
    os.mkfifo(fifo)
    pdf = make_pdf([make_letter_page(DPI)], tmp_path / "good.pdf", dpi=DPI)
    with released_after(fifo) as released:
        with pytest.raises(BadInputError, match=r"pipe\.pdf: is not a regular file \(a named pipe\)"):
            count_pages(fifo)  # the progress bar's total
        summary = runner(tmp_path).run([fifo, pdf])
    assert not released, "something waited on the named pipe"
    piped, good = summary.outcomes
    assert piped.status == "failed" and piped.error == "is not a regular file (a named pipe)"
    assert good.status == "done"


def test_a_folder_s_named_pipes_and_sockets_are_passed_over_and_named(tmp_path):
    folder = tmp_path / "box"
    folder.mkdir()
    (folder / "a.pdf").write_bytes(b"%PDF")
    os.mkfifo(folder / "pipe.pdf")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(folder / "s.tif"))
        assert collect_inputs([folder]) == [folder / "a.pdf"]
        others, links, specials = passed_over([folder])
    assert (others, links) == ([], [])
    assert specials == ["pipe.pdf (a named pipe)", "s.tif (a socket)"]


def test_an_output_name_too_long_for_the_file_system_fails_that_input_alone(tmp_path):
    """A 250-character file name plus '.txt.part' is over ext4's 255 bytes: the error used to
    end the whole run, leaving the next files unread."""
    page = make_letter_page(DPI)
    long_pdf = make_pdf([page], tmp_path / ("S" * 250 + ".pdf"), dpi=DPI)  # 254 bytes: legal
    normal = make_pdf([page], tmp_path / "normal.pdf", dpi=DPI)
    summary = runner(tmp_path).run([long_pdf, normal])
    first, second = summary.outcomes
    assert first.status == "failed" and "output cannot be written" in first.error, first.error
    assert second.status == "done" and (tmp_path / "out" / "normal.txt").exists()


def _page_fails(monkeypatch, pdf, number: int):
    """Segmenting page `number` of the run raises, as a damaged page does; returns the real
    segmenting, to put back."""
    import pipeline.process
    from pipeline.errors import CorruptDocumentError

    real = pipeline.process.segmented
    pages: list[int] = []

    def failing(*args, **kwargs):
        pages.append(1)
        if len(pages) == number:
            raise CorruptDocumentError(f"page {number} is damaged", source=str(pdf))
        return real(*args, **kwargs)

    monkeypatch.setattr("pipeline.process.segmented", failing)
    return real


@pytest.mark.parametrize("pages", [3, 1])  # deleted before its next page, or before it is finished
def test_a_document_deleted_while_a_run_reads_it_fails_alone(tmp_path, pages):
    """Another host, hearing no heartbeat, takes the run as stopped and deletes a document it is
    reading (`quire delete`): that document fails, named, and the run reads the others."""
    from sqlalchemy import select

    from pipeline import deletion
    from pipeline.db import runs
    from pipeline.db.models import Document
    from pipeline.db.session import session_scope

    page = make_letter_page(DPI)
    first = make_pdf([page] * pages, tmp_path / "first.pdf", dpi=DPI)
    second = make_pdf([page] * 2, tmp_path / "second.pdf", dpi=DPI)
    holder: dict[str, LocalRunner] = {}

    class DeletingRecognizer(CountingRecognizer):
        def recognize(self, crops):
            if not self.batches:  # the first batch: page 1 of first.pdf
                run = holder["runner"]
                with session_scope(run.engine) as s:
                    doc_id = s.scalar(select(Document.id).where(Document.name == "first.pdf"))
                    # Taken as ended, as by a host that lost touch with it: its job stopped, its
                    # document failed, so no longer 'being read'.
                    assert runs.settle_gone_runs(s, lambda run: True)
                deletion.delete_document(run.engine, run.store, doc_id)
            return super().recognize(crops)

    settings = Settings(database_url=f"sqlite:///{tmp_path / 'q.sqlite'}",
                        storage_url=(tmp_path / "store").as_uri(), render={"dpi": DPI})
    holder["runner"] = LocalRunner(settings, exporters=parse_formats("txt"), out_dir=tmp_path / "out",
                                   recognizer_factory=DeletingRecognizer, flush_lines=len(LETTER_LINES))
    summary = holder["runner"].run([first, second])
    by_name = {o.path.name: o for o in summary.outcomes}
    assert by_name["first.pdf"].status == "failed"
    assert "deleted" in (by_name["first.pdf"].error or "")
    assert by_name["second.pdf"].status == "done"
    assert (tmp_path / "out" / "second.txt").read_text().count("\f") == 1
    assert not (tmp_path / "out" / "first.txt").exists()


def test_a_rerun_takes_unchanged_files_hashes_from_the_database(tmp_path, monkeypatch):
    """A rerun over files done before reads their stat, not their bytes; a file written since,
    even to the same size with its modification time set back, is hashed and read again."""
    import pipeline.runner as runner_module
    from pipeline.process import file_sha256

    page = make_letter_page(DPI)
    pdfs = [make_pdf([page] * n, tmp_path / f"doc{n}.pdf", dpi=DPI) for n in (1, 2)]
    hashed: list[str] = []

    def counting_sha256(path):
        hashed.append(path.name)
        return file_sha256(path)

    monkeypatch.setattr(runner_module, "file_sha256", counting_sha256)
    assert runner(tmp_path).run(pdfs).count("done") == 2
    assert sorted(hashed) == ["doc1.pdf", "doc2.pdf"]

    hashed.clear()
    summary = runner(tmp_path).run(pdfs)
    assert summary.count("skipped") == 2 and hashed == []

    # Other bytes of the same size, the modification time put back: the change time tells.
    before = pdfs[0].stat()
    data = bytearray(pdfs[0].read_bytes())
    at = data.rindex(b"%%EOF")
    data[at - 2:at - 1] = b" " if data[at - 2:at - 1] != b" " else b"\n"
    pdfs[0].write_bytes(bytes(data))
    os.utime(pdfs[0], ns=(before.st_atime_ns, before.st_mtime_ns))
    assert pdfs[0].stat().st_size == before.st_size
    hashed.clear()
    summary = runner(tmp_path).run(pdfs)
    assert hashed == ["doc1.pdf"]
    assert [o.status for o in summary.outcomes] == ["done", "skipped"]  # new bytes: read anew

"""The progress bar of `quire run`: pages, with the documents settled out of all given beside it.

No file is opened before the run starts (counting 100,000 files' pages first kept the user
waiting minutes with nothing on screen): each document's pages are counted as the run reaches it,
from the count rendering makes anyway, or none for a file done before or a copy (they are not read
again). Until every file is reached the bar's total is those counts plus, for the files not
reached yet, as many pages each as the reached ones averaged, so that the percent and the time
left mean something from the first file; once all are reached it is exact, and it ends at the
pages read (a document that fails takes its unread pages off).

Until the run comes to a page to read, the bar counts documents instead (`2,400/8,000
documents`): a rerun over files all done before reads no page, and a bar of pages said only
"0page" the whole time. The first page to read turns it into the bar of pages, its clock kept.
"""

from __future__ import annotations

import time
from typing import Any

REFRESH_S = 0.25  # the bar is redrawn at most this often for what update() does not redraw


class RunProgress:
    """Drives a tqdm bar (or nothing, `bar` None) from the reading side of a run."""

    def __init__(self, bar: Any, documents: int) -> None:
        self.bar, self.documents = bar, documents
        self.reached = 0  # documents the run has come to
        self.expected = 0  # pages to read of those
        self.settled = 0  # documents done, skipped or failed
        self.lines = 0
        self.counts_pages = False  # what the bar counts: documents until a page is to be read
        self._shown = 0.0
        if bar is not None:
            bar.unit, bar.total = "document", documents
            bar.refresh()

    def reach(self, pages: int = 0) -> None:
        """The run has come to a document, with `pages` to read (0: done before, a copy, or a
        file that fails before its pages are counted)."""
        self.reached += 1
        self.expected += pages
        if pages:
            self._to_pages()
        self._total()

    def recount(self, pages: int) -> None:
        """A reached document reads `pages` fewer than were counted (it failed part way), or
        more where negative."""
        self.expected -= pages
        self._total()

    def read(self, pages: int = 1) -> None:
        if pages:
            self._to_pages()
            if self.bar is not None:
                self.bar.update(pages)

    def read_lines(self, lines: int) -> None:
        self.lines += lines
        self._describe()

    def settle(self) -> None:
        """A document is settled: done, skipped (done before, or a copy) or failed."""
        self.settled += 1
        if self.bar is not None and not self.counts_pages:
            self.bar.update(1)  # drawn by tqdm as often as it draws
            return
        self._describe()
        self._show()

    def close(self) -> None:
        """At the end of the run: the bar's total exact, what it says drawn."""
        if self.bar is None:
            return
        if self.counts_pages:
            self.bar.total = max(self.expected, self.bar.n)
            self._describe()
        self.bar.refresh()

    def _to_pages(self) -> None:
        """From documents to pages, on the first page to read: the count starts again at 0 and
        the documents settled go beside it; the time the run has taken is kept."""
        if self.counts_pages:
            return
        self.counts_pages = True
        if self.bar is None:
            return
        started = getattr(self.bar, "start_t", None)  # a disabled tqdm has none
        self.bar.unit = "page"
        self._describe()
        self.bar.reset(total=self.expected)
        if started is not None:
            self.bar.start_t = started

    def _total(self) -> None:
        if self.bar is None or not self.counts_pages:
            return
        left = self.documents - self.reached
        guess = round(self.expected / self.reached * left) if self.reached and left > 0 else 0
        self.bar.total = max(self.expected + guess, self.bar.n)

    def _describe(self) -> None:
        if self.bar is not None and self.counts_pages:
            # Strings: tqdm shows a round count as a power of ten (200,000 lines as 2e+5).
            self.bar.set_postfix(documents=f"{self.settled:,}/{self.documents:,}",
                                 lines=f"{self.lines:,}", refresh=False)

    def _show(self) -> None:
        """Redraw now and then: skipped documents move no page, so update() draws nothing."""
        now = time.monotonic()
        if self.bar is not None and now - self._shown >= REFRESH_S:
            self._shown = now
            self.bar.refresh()

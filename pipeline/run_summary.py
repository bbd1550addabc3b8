"""What a `quire run` did: each input's outcome, and the run's in all (its summary's figures)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(slots=True)  # one per input: a run of 100,000 files holds 100,000
class DocumentOutcome:
    path: Path
    status: str = "pending"  # done | skipped | failed
    pages: int = 0
    lines: int = 0
    error: str | None = None
    same_as: Path | None = None  # an earlier input of this run with the same bytes
    # Pages and lines an interrupted run had read, not read again (counted in pages and lines).
    resumed_pages: int = 0
    resumed_lines: int = 0
    # Its name in the database this run, which its exports carry whether read now or before.
    stored_name: str = ""
    # Skipped as done, though a --redo of it was stopped: `quire run --redo` goes on with it.
    redo_waiting: bool = False
    # Its files in --out written by this run, and those an earlier run wrote left as they were.
    written: int = 0
    unchanged: int = 0


@dataclass
class RunSummary:
    outcomes: list[DocumentOutcome]
    seconds: float
    job_id: str
    went_on_from: list[str] = field(default_factory=list)  # stopped runs' jobs this run went on from

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def pages(self) -> int:
        """Pages read by this run (not those a stopped run had read)."""
        return sum(o.pages - o.resumed_pages for o in self.outcomes if o.status == "done")

    @property
    def lines(self) -> int:
        return sum(o.lines - o.resumed_lines for o in self.outcomes if o.status == "done")

    @property
    def pages_per_minute(self) -> float:
        return self.pages * 60.0 / self.seconds if self.seconds > 0 else 0.0

    @property
    def failures(self) -> list[DocumentOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    @property
    def outputs(self) -> tuple[int, int]:
        """Files in --out (written now, left as an earlier run wrote them)."""
        return (sum(o.written for o in self.outcomes), sum(o.unchanged for o in self.outcomes))

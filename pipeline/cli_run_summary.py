"""What `quire run` prints when it ends: the counts, then what the user may have to act on.

A run over an archive is 100,000 files: a line per file done before would bury the few that
matter. Files that need nothing (done before, copies of a file read once) are counted, with a few
named as examples; those that do (failures, a stopped --redo waiting, a stopped run gone on from)
are each named, up to LISTED of a kind, and `quire status JOB --list ...` names every one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import typer

from pipeline.cli_common import counted

EXAMPLES = 3  # files named as examples of a kind that needs nothing
LISTED = 100  # files named of a kind the user acts on; the rest are left to `quire status`


def print_summary(summary: Any, options: Any, out_dir: Path | None = None,
                  echo: Callable[[str], Any] = typer.echo) -> None:
    """The summary of a finished run (run_summary.RunSummary) read with `options` (JobOptions)."""
    from pipeline.process import reading_described

    job = summary.job_id
    outcomes = summary.outcomes
    done, skipped, failed = summary.count("done"), summary.count("skipped"), summary.count("failed")
    # A copy (the same bytes as an input read in this run) is not read again, but it was not
    # done before either: counted apart from what an earlier run had read.
    copies = [o for o in outcomes if o.status == "skipped" and o.same_as is not None]
    copied = (f"{counted(len(copies), 'copy', 'copies', grouped=True)} of those (same bytes, read "
              "once), " if copies else "")
    # A run that read no page (all done before, or all failed) has no rate, and 0 pages to count.
    read = (f"{counted(summary.pages, 'page', grouped=True)}, {counted(summary.lines, 'line', grouped=True)} "
            f"in {summary.seconds:.1f} s ({summary.pages_per_minute:.1f} pages/min)" if summary.pages
            else f"no page read ({summary.seconds:.1f} s)")
    echo(f"{counted(len(outcomes), 'document', grouped=True)}: {done:,} done, {copied}"
         f"{skipped - len(copies):,} already done (skipped), {failed:,} failed; {read}")
    echo(f"  read with {reading_described(options)}; job {job} (`quire status {job}`)")
    for job_id in summary.went_on_from:
        echo(f"  went on from job {job_id}, stopped before it finished (`quire status {job_id}`)")
    if out_dir is not None:
        written, unchanged = summary.outputs
        left = f", {unchanged:,} left as an earlier run wrote them" if unchanged else ""
        echo(f"  --out {out_dir}: {counted(written, 'file', grouped=True)} written{left}")

    before = (o for o in outcomes if o.status == "skipped" and o.same_as is None and not o.redo_waiting)
    _examples(echo, "already done (skipped)", (str(o.path) for o in before), skipped - len(copies)
              - sum(o.redo_waiting for o in outcomes), f"`quire status {job} --list done` lists every "
              "document done")
    _examples(echo, "same content as a file read in this run, read once",
              (f"{o.path} (as {o.same_as})" for o in copies), len(copies),
              f"`quire status {job} --list done` lists them")
    waiting = [o for o in outcomes if o.status == "skipped" and o.redo_waiting]
    _listed(echo, (f"already done, its earlier reading kept (a --redo of it was stopped; `quire run "
                   f"--redo` goes on with it): {o.path}" for o in waiting), len(waiting),
            "more whose --redo was stopped", "`quire run --redo` goes on with them all")
    resumed = [o for o in outcomes if o.status != "skipped" and o.resumed_pages]
    _listed(echo, (f"went on where a stopped run left it ("
                   f"{counted(o.resumed_pages, 'page', grouped=True)} read then, not again): {o.path}"
                   for o in resumed), len(resumed),
            "more gone on with where a stopped run left them")
    failures = summary.failures
    _listed(echo, (f"FAILED {o.path}: {o.error}" for o in failures), len(failures), "more failed",
            f"`quire status {job} --list failed` lists them all with their reasons")


def _examples(echo: Callable[[str], Any], what: str, names: Iterator[str] | Iterable[str],
              total: int, where: str) -> None:
    """One line: `what`, a few names, and how many more (and where they are listed)."""
    if total <= 0:
        return
    shown = [name for name, _ in zip(names, range(EXAMPLES))]
    more = total - len(shown)
    tail = f" and {more:,} more ({where})" if more > 0 else ""
    echo(f"  {what}: {', '.join(shown)}{tail}")


def _listed(echo: Callable[[str], Any], lines: Iterable[str], total: int, more: str,
            where: str = "") -> None:
    """A line each, up to LISTED, then one line for the rest (and where they are listed)."""
    for line, _ in zip(lines, range(LISTED)):
        echo(f"  {line}")
    if total > LISTED:
        echo(f"  ... and {total - LISTED:,} {more}" + (f": {where}" if where else ""))

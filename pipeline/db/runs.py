"""Jobs of `quire run`: how a stopped or killed run's job ends, and which run went on after it.

A `quire run` job carries `local_run` (models.Job): the process running it, the number of inputs
it was given, and once it is stopped, how (`stopped`) and the job that went on (`went_on_in`).
A stopped job stays 'stopped', as a cancelled one stays cancelled: later runs that finish its
documents do not make it look like a run that finished.

A run killed outright is found by its process on its own host (pipeline.run_process); another
host sharing the database (PostgreSQL) cannot see that process, and goes by the job's heartbeat
instead, which a running run renews (`beat`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.orm import Session, aliased

from pipeline.db import job_rows, repo
from pipeline.db.models import Document, DocumentStatus, Job, JobDocument, JobStatus, utcnow

# Why a document a stopped run had not finished is not done; a later run goes on from its pages.
STOPPED = "quire run was stopped (Ctrl-C or SIGTERM) before this document was finished"
KILLED = "quire run ended before this document was finished (killed, or its machine stopped)"
SILENT = ("quire run on another host stopped sending heartbeats before this document was finished "
          "(killed, its machine stopped, or cut off from the database)")
STOP_REASONS = (STOPPED, KILLED, SILENT)

# local_run["stopped"]: how the run ended.
BY_SIGNAL = "signal"  # Ctrl-C or SIGTERM: the run recorded its own stop
BY_KILL = "killed"  # found later with its process gone
BY_SILENCE = "silent"  # found later from another host, its heartbeat too old

LIVE = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)


def local_run(process: Mapping[str, Any], inputs: int, redo: bool = False,
              heartbeat_s: int | None = None) -> dict[str, Any]:
    """What a `quire run` job records about itself when it is made (`heartbeat_s`: how often it
    renews its heartbeat)."""
    return {**process, "inputs": inputs, "redo": redo,
            **({"heartbeat_s": heartbeat_s} if heartbeat_s else {})}


def database_now(s: Session) -> datetime:
    """Now by the database's clock where it has its own (PostgreSQL), so that hosts whose clocks
    differ agree on a heartbeat's age; SQLite is one machine's file: this machine's clock."""
    if s.get_bind().dialect.name == "postgresql":
        return s.execute(select(func.now())).scalar_one()
    return utcnow()


def beat(s: Session, job_id: str) -> bool:
    """Renew a running run's heartbeat; False once its job has ended (taken as stopped from
    another host that had heard none for too long, say)."""
    renewed = s.execute(update(Job).where(Job.id == job_id, Job.status.in_(LIVE))
                        .values(heartbeat_at=database_now(s)),
                        execution_options={"synchronize_session": False})
    # An UPDATE's result is a CursorResult, which has rowcount; Session.execute is typed Result.
    return bool(cast("CursorResult[Any]", renewed).rowcount)


def stop_job(s: Session, job_id: str, how: str, **details: Any) -> Job:
    """End a run's job as 'stopped' (`how`: BY_SIGNAL, BY_KILL or BY_SILENCE, with `details`
    for `stop_described`), its counts as they are."""
    job = job_rows.update_job_counts(s, job_id)
    job.status, job.finished_at = JobStatus.STOPPED.value, utcnow()
    # A new dict: JSON changes are seen.
    job.local_run = {**(job.local_run or {}), "stopped": how, **details}
    s.flush()
    return job


def settle_gone_runs(s: Session, is_gone: Callable[[Mapping[str, Any]], bool | None],
                     job_id: str | None = None, silent_after: float | None = None) -> list[str]:
    """Stop the jobs (or job `job_id`) of `quire run`s that ended without saying so (kill -9, out
    of memory, a power cut). `is_gone(run)` looks at a run's process: True when it has surely
    ended, False when it runs, None when it cannot be told from here (another host's). Such a run
    whose heartbeat is older than `silent_after` seconds (and than three of its own beats) is
    taken as ended; one with no heartbeat (begun before runs had one) is left as it is.
    Their documents left 'processing' that no other live job holds fail with KILLED (SILENT),
    so `export` and `status` say why. Returns their ids."""
    query = select(Job).where(Job.status.in_(LIVE), Job.local_run.is_not(None)).order_by(Job.id)
    if job_id is not None:
        query = query.where(Job.id == job_id)
    now = database_now(s)
    stops: dict[str, dict[str, Any]] = {}
    for job in s.scalars(query):
        run = job.local_run or {}
        gone = is_gone(run)
        if gone:
            stops[job.id] = {"how": BY_KILL}
        elif gone is None and silent_after is not None and job.heartbeat_at is not None:
            limit = max(silent_after, 3 * float(run.get("heartbeat_s") or 0))
            silent = (now - job.heartbeat_at).total_seconds()
            if silent > limit:
                stops[job.id] = {"how": BY_SILENCE, "silent_for": round(silent), "silent_limit": round(limit)}
    for gone_id, details in stops.items():
        mine, others = aliased(JobDocument), aliased(JobDocument)
        held_elsewhere = (select(others.document_id).join(Job, Job.id == others.job_id)
                          .where(others.job_id != gone_id, Job.status.in_(LIVE)))
        left = s.scalars(select(Document.id).join(mine, mine.document_id == Document.id).where(
            mine.job_id == gone_id, Document.status == DocumentStatus.PROCESSING.value,
            Document.id.not_in(held_elsewhere)).distinct().order_by(Document.id)).all()
        reason = SILENT if details["how"] == BY_SILENCE else KILLED
        for document_id in left:
            repo.fail_document(s, document_id, reason)
        stop_job(s, gone_id, **details)
    return list(stops)


def went_on(s: Session, job_id: str) -> list[str]:
    """Record run `job_id` as the one that went on after the stopped runs it shares documents
    with, and return their ids: the same command run again, so a run without --redo does not
    go on after a --redo (it keeps the earlier readings a stopped --redo left in place)."""
    redo = bool((job_rows.get_job(s, job_id).local_run or {}).get("redo"))
    mine, theirs = aliased(JobDocument), aliased(JobDocument)
    # Ids first: PostgreSQL has no DISTINCT over the JSON column.
    sharing = (select(theirs.job_id).join(mine, mine.document_id == theirs.document_id)
               .where(mine.job_id == job_id, theirs.job_id != job_id))
    stopped = s.scalars(select(Job).where(Job.id.in_(sharing), Job.status == JobStatus.STOPPED.value)
                        .order_by(Job.created_at)).all()
    stopped = [job for job in stopped if bool((job.local_run or {}).get("redo")) == redo]
    for job in stopped:
        if not (job.local_run or {}).get("went_on_in"):
            job.local_run = {**(job.local_run or {}), "went_on_in": job_id}
    s.flush()
    return [job.id for job in stopped if (job.local_run or {}).get("went_on_in") == job_id]


def stop_described(run: Mapping[str, Any], reached: int) -> str:
    """One line on how a stopped run's job ended, for `quire status`."""
    from pipeline.run_process import describe

    if run.get("stopped") == BY_SIGNAL:
        how = "quire run was stopped (Ctrl-C or SIGTERM)"
    elif run.get("stopped") == BY_SILENCE:
        how = (f"quire run ({describe(run)}) sent no heartbeat for {_span(run.get('silent_for'))} "
               f"(the limit is {_span(run.get('silent_limit'))}), so it is taken as ended "
               "(killed, its machine stopped, or cut off from the database)")
    else:
        how = f"quire run ({describe(run)}) ended without finishing (killed, or its machine stopped)"
    inputs = run.get("inputs")
    line = how + (f", after reaching {reached} of its {inputs} files" if inputs else "")
    if run.get("went_on_in"):
        return line + f"; job {run['went_on_in']} went on from there"
    return line + "; the same command goes on from there"


def _span(seconds: Any) -> str:
    """`7 min`, `45 s`: a heartbeat's age for messages."""
    if not isinstance(seconds, int | float):
        return "a while"
    return f"{round(seconds / 60)} min" if seconds >= 120 else f"{round(seconds)} s"

"""Jobs of `quire run`: how a stopped or killed run's job ends, and which run went on after it.

A `quire run` job carries `local_run` (models.Job): the process running it, the number of inputs
it was given, and once it is stopped, how (`stopped`) and the job that went on (`went_on_in`).
A stopped job stays 'stopped', as a cancelled one stays cancelled: later runs that finish its
documents do not make it look like a run that finished.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from pipeline.db import repo
from pipeline.db.models import Document, DocumentStatus, Job, JobDocument, JobStatus, utcnow

# Why a document a stopped run had not finished is not done; a later run goes on from its pages.
STOPPED = "quire run was stopped (Ctrl-C or SIGTERM) before this document was finished"
KILLED = "quire run ended before this document was finished (killed, or its machine stopped)"
STOP_REASONS = (STOPPED, KILLED)

# local_run["stopped"]: how the run ended.
BY_SIGNAL = "signal"  # Ctrl-C or SIGTERM: the run recorded its own stop
BY_KILL = "killed"  # found later with its process gone

LIVE = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)


def local_run(process: Mapping[str, Any], inputs: int, redo: bool = False) -> dict[str, Any]:
    """What a `quire run` job records about itself when it is made."""
    return {**process, "inputs": inputs, "redo": redo}


def stop_job(s: Session, job_id: str, how: str) -> Job:
    """End a run's job as 'stopped' (`how`: BY_SIGNAL or BY_KILL), its counts as they are."""
    job = repo.update_job_counts(s, job_id)
    job.status, job.finished_at = JobStatus.STOPPED.value, utcnow()
    job.local_run = {**(job.local_run or {}), "stopped": how}  # a new dict: JSON changes are seen
    s.flush()
    return job


def settle_gone_runs(s: Session, is_gone: Callable[[Mapping[str, Any]], bool],
                     job_id: str | None = None) -> list[str]:
    """Stop the jobs (or job `job_id`) of `quire run`s whose process has ended without saying so
    (kill -9, out of memory, a power cut), by `is_gone`; their documents left 'processing' that
    no other live job holds fail with KILLED, so `export` and `status` say why. Returns their ids."""
    query = select(Job).where(Job.status.in_(LIVE), Job.local_run.is_not(None)).order_by(Job.id)
    if job_id is not None:
        query = query.where(Job.id == job_id)
    gone = [job.id for job in s.scalars(query) if is_gone(job.local_run or {})]
    for gone_id in gone:
        mine, others = aliased(JobDocument), aliased(JobDocument)
        held_elsewhere = (select(others.document_id).join(Job, Job.id == others.job_id)
                          .where(others.job_id != gone_id, Job.status.in_(LIVE)))
        left = s.scalars(select(Document.id).join(mine, mine.document_id == Document.id).where(
            mine.job_id == gone_id, Document.status == DocumentStatus.PROCESSING.value,
            Document.id.not_in(held_elsewhere)).distinct().order_by(Document.id)).all()
        for document_id in left:
            repo.fail_document(s, document_id, KILLED)
        stop_job(s, gone_id, BY_KILL)
    return gone


def went_on(s: Session, job_id: str) -> list[str]:
    """Record run `job_id` as the one that went on after the stopped runs it shares documents
    with, and return their ids: the same command run again, so a run without --redo does not
    go on after a --redo (it keeps the earlier readings a stopped --redo left in place)."""
    redo = bool((repo.get_job(s, job_id).local_run or {}).get("redo"))
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

    how = ("quire run was stopped (Ctrl-C or SIGTERM)" if run.get("stopped") == BY_SIGNAL else
           f"quire run ({describe(run)}) ended without finishing (killed, or its machine stopped)")
    inputs = run.get("inputs")
    line = how + (f", after reaching {reached} of its {inputs} files" if inputs else "")
    if run.get("went_on_in"):
        return line + f"; job {run['went_on_in']} went on from there"
    return line + "; the same command goes on from there"

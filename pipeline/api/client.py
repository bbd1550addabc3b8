"""A small client of the job API for `quire submit`, `status` and `cancel` with --api (httpx)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import httpx

from pipeline.errors import NotFoundError, QuireError


class ApiError(QuireError):
    exit_code = 1

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class ApiClient:
    def __init__(self, base_url: str, token: str | None, *, timeout: float = 300.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        # Uploads may take minutes, a connection should not: a wrong --api host fails in seconds.
        self.http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers,
                                 timeout=httpx.Timeout(timeout, connect=min(timeout, 15.0)))

    def _check(self, response: httpx.Response) -> dict[str, Any]:
        if response.status_code == 404:
            raise NotFoundError(response.json().get("detail", "not found"))
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail") or response.text
            except ValueError:
                detail = response.text
            raise ApiError(f"{response.request.method} {response.request.url.path}: "
                           f"{response.status_code} {str(detail)[:500]}", response.status_code)
        result: dict[str, Any] = response.json()
        return result

    def job(self, job_id: str) -> dict[str, Any]:
        return self._check(self.http.get(f"/v1/jobs/{job_id}"))

    def documents(self, job_id: str, *, status: str | None = None, after: str | None = None,
                  limit: int = 1000) -> dict[str, Any]:
        """A page of a job's documents in submission order (`next`: the following page's URL)."""
        params: dict[str, Any] = {"limit": limit}
        params.update({k: v for k, v in (("status", status), ("after", after)) if v is not None})
        return self._check(self.http.get(f"/v1/jobs/{job_id}/documents", params=params))

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self._check(self.http.post(f"/v1/jobs/{job_id}/cancel"))

    def submit_stream(self, sources: Iterable[Any], options: Any, key: str,
                      webhook: str | None, bar: Any,
                      on_missing: Callable[[str], None] = lambda uri: None) -> tuple[str, list[str]]:
        """Open a job, add documents one request at a time (S3 URIs 100 at a time), close it.
        Returns the job id and the files the API refused (over its upload limit: each is
        named, and the others go on). An object deleted since it was listed is passed over and
        told to `on_missing`, as `quire submit` without --api does.

        Run again with the same key, it reopens the job; files already taken in are skipped
        by the server's per-job checkpoints.
        """
        body = {**options.as_dict(), "open": True, "idempotency_key": key,
                "webhook_url": webhook}
        job_id = self._check(self.http.post("/v1/jobs", json=body))["id"]
        uris: list[str] = []
        refused: list[str] = []
        try:
            with bar:
                for src in sources:
                    if src.uri.startswith("s3://"):
                        uris.append(src.uri)
                        if len(uris) >= 100:
                            self._add_uris(job_id, uris, on_missing)
                            bar.update(len(uris))
                            uris = []
                        continue
                    try:
                        with src.path.open("rb") as fh:
                            self._check(self.http.post(f"/v1/jobs/{job_id}/documents",
                                                       files={"files": (src.name, fh)}))
                    except ApiError as exc:
                        if exc.status != 413:
                            raise
                        refused.append(f"{src.path}: {src.size:,} bytes, refused by the API: "
                                       f"{str(exc).rsplit(': 413 ', 1)[-1]} (QUIRE_API__MAX_UPLOAD_BYTES)")
                    bar.update(1)
                if uris:
                    self._add_uris(job_id, uris, on_missing)
                    bar.update(len(uris))
        except ApiError as exc:
            if exc.status != 503:
                raise
            raise ApiError(f"{exc}. Job {job_id} keeps what was taken in; run the same command again "
                           "once the API answers: it goes on from there", exc.status) from None
        self._check(self.http.post(f"/v1/jobs/{job_id}/close"))
        return str(job_id), refused

    def _add_uris(self, job_id: str, uris: list[str], on_missing: Callable[[str], None]) -> None:
        # Without pass_over_missing one deleted object would make the API refuse all 100 (422).
        answer = self._check(self.http.post(f"/v1/jobs/{job_id}/documents",
                                            json={"uris": uris, "pass_over_missing": True}))
        for uri in answer.get("missing", []):
            on_missing(uri)

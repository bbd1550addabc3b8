"""Request bodies of the job API (responses are plain dicts built in pipeline.api.views)."""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator


class JobOptionsIn(BaseModel):
    """Per-job options; anything left out comes from the server's settings."""

    model: str | None = Field(None, max_length=255)
    beam: int | None = Field(None, ge=1, le=16)
    dpi: int | None = Field(None, ge=50, le=1200)
    formats: list[str] | None = None
    webhook_url: str | None = Field(None, max_length=2048)
    idempotency_key: str | None = Field(None, max_length=255)

    @field_validator("formats", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):  # a form field: "text,json"
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    @field_validator("webhook_url")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("webhook_url must be an http(s) URL")
        return value or None


class JobCreate(JobOptionsIn):
    """JSON body of POST /v1/jobs: documents already in S3."""

    uris: list[str] = Field(default_factory=list, max_length=10_000)
    open: bool = Field(False, description="keep accepting documents until POST .../close")

    @field_validator("uris")
    @classmethod
    def _s3(cls, value: list[str]) -> list[str]:
        bad = [u for u in value if not u.startswith("s3://") or "/" not in u[5:]]
        if bad:
            raise ValueError(f"not an s3://bucket/key URI: {bad[0]!r}")
        return value


class DocumentsAdd(BaseModel):
    """JSON body of POST /v1/jobs/{id}/documents."""

    uris: list[str] = Field(default_factory=list, max_length=10_000)
    # An object gone since the caller listed it is answered in `missing` and the others are
    # taken in, instead of a 422 that refuses them all (`quire submit --api s3://...` asks this).
    pass_over_missing: bool = False

    _s3 = field_validator("uris")(JobCreate._s3.__func__)  # type: ignore[attr-defined]

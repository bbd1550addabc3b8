"""One exception tree for Quire: each error knows if a retry can help, its exit code and HTTP status."""

from __future__ import annotations


class QuireError(Exception):
    """Base of every error Quire raises on purpose."""

    retryable: bool = False
    exit_code: int = 1
    http_status: int = 500

    def __init__(self, message: str, *, source: str | None = None) -> None:
        self.source = source
        super().__init__(f"{source}: {message}" if source else message)

    @property
    def reason(self) -> str:
        """The message without the file name, as stored in documents.error."""
        text = str(self)
        prefix = f"{self.source}: " if self.source else ""
        return text[len(prefix):] if prefix and text.startswith(prefix) else text


class ConfigError(QuireError):
    """A setting is missing or invalid."""

    exit_code = 2
    http_status = 500


class BadInputError(QuireError):
    """The document itself is unusable: empty, corrupt, encrypted, not a document, too large."""

    exit_code = 1
    http_status = 422


class EmptyFileError(BadInputError):
    pass


class CorruptDocumentError(BadInputError):
    pass


class EncryptedDocumentError(BadInputError):
    pass


class UnsupportedFormatError(BadInputError):
    http_status = 415


class ImageTooLargeError(BadInputError):
    http_status = 413


class NoPagesError(BadInputError):
    pass


class StorageError(QuireError):
    """The object store failed; a retry may help."""

    retryable = True
    http_status = 503


class ObjectNotFoundError(StorageError):
    retryable = False
    http_status = 404


class ModelLoadError(QuireError):
    """A recognition model could not be loaded by name or path."""

    exit_code = 2


class NotFoundError(QuireError):
    http_status = 404


class DocumentGoneError(NotFoundError):
    """The document was deleted while it was being read (its job cancelled, then the document
    deleted, between two pages): its reading stops, for nobody wants it any more."""


class NoDataError(QuireError):
    """A command that reads results found no database where the settings point."""


class JobFinishedError(QuireError):
    """The job has ended (finished or cancelled): it cannot be cancelled or take documents."""

    http_status = 409


def unreachable_server(exc: BaseException) -> str | None:
    """One line for a database, broker or job API (--api) that cannot be reached (the commands
    and the API that need one otherwise end in a driver's traceback of hundreds of lines); None
    for anything else. Drivers are named, not imported: this module stays free of them."""
    kinds = {"sqlalchemy.exc.OperationalError": "database",
             "kombu.exceptions.OperationalError": "broker",
             "redis.exceptions.ConnectionError": "broker",
             # Refused, timed out, no such host, not http(s): the request never got an answer.
             "httpx.TransportError": "http"}
    for cls in type(exc).__mro__:
        what = kinds.get(f"{cls.__module__}.{cls.__qualname__}")
        if what is None:
            continue
        reason = next(iter(str(getattr(exc, "orig", None) or exc).strip().splitlines()), "")
        if what == "http":
            return _unanswered_request(exc, reason or type(exc).__name__)
        if what == "broker":
            return f"cannot reach the broker (QUIRE_BROKER_URL): {reason}"
        if any(m in reason for m in ("no such table", "no such column", "does not exist")):
            reason += "; create the schema with `quire db upgrade`"
        return f"database error (QUIRE_DATABASE_URL): {reason}"
    return None


def _unanswered_request(exc: BaseException, reason: str) -> str:
    """Named as the job API only for its routes: other libraries (the Hugging Face hub) use httpx too."""
    try:
        url = exc.request.url  # type: ignore[attr-defined]  # RuntimeError when unset
    except (AttributeError, RuntimeError):
        return f"cannot reach the server: {reason}"
    if "/v1/jobs" in url.path:  # pipeline/api/client.py's requests: name --api as it was given
        return f"cannot reach the job API (--api {str(url).split('/v1/jobs')[0]}): {reason}"
    return f"cannot reach {url.scheme}://{url.netloc.decode('ascii', 'replace')}: {reason}"

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


class JobFinishedError(QuireError):
    """The job has ended (finished or cancelled): it cannot be cancelled or take documents."""

    http_status = 409


def unreachable_server(exc: BaseException) -> str | None:
    """One line for a database or broker that cannot be reached (the commands and the API that
    need one otherwise end in a driver's traceback of hundreds of lines); None for anything else.
    Drivers are named, not imported: this module stays free of them."""
    kinds = {"sqlalchemy.exc.OperationalError": "database",
             "kombu.exceptions.OperationalError": "broker",
             "redis.exceptions.ConnectionError": "broker"}
    for cls in type(exc).__mro__:
        what = kinds.get(f"{cls.__module__}.{cls.__qualname__}")
        if what is None:
            continue
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        if what == "broker":
            return f"cannot reach the broker (QUIRE_BROKER_URL): {reason}"
        if any(m in reason for m in ("no such table", "no such column", "does not exist")):
            reason += "; create the schema with `quire db upgrade`"
        return f"database error (QUIRE_DATABASE_URL): {reason}"
    return None

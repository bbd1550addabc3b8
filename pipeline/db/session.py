"""Engines, sessions and programmatic Alembic upgrades for SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

import pipeline
from pipeline.errors import ConfigError

MIGRATIONS_DIR = Path(pipeline.__file__).resolve().parent.parent / "migrations"
SQLITE_BUSY_TIMEOUT_S = 30


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for url; SQLite gets WAL, foreign keys and a busy timeout on every connection."""
    try:
        parsed = make_url(url)
    except SQLAlchemyError as e:
        raise ConfigError(f"invalid database URL: {e}") from e
    if parsed.get_backend_name() != "sqlite":
        # pre_ping: workers hold pools for hours; a PostgreSQL restart must not fail a task.
        kwargs.setdefault("pool_pre_ping", True)
        return create_engine(url, **kwargs)

    memory = parsed.database in (None, "", ":memory:")
    if parsed.database and not memory:
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    connect_args = kwargs.pop("connect_args", {})
    # Threads of the local runner share the engine; sqlite3 waits this long on a locked file.
    connect_args.setdefault("timeout", SQLITE_BUSY_TIMEOUT_S)
    connect_args.setdefault("check_same_thread", False)
    engine = create_engine(url, connect_args=connect_args, **kwargs)

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        # sqlite3 would only BEGIN before the first write, leaving reads outside the
        # transaction; we issue BEGIN ourselves (below) so read-then-write is atomic.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        try:
            if not memory:
                # WAL: readers (API, progress) never block the writer, and vice versa.
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        # IMMEDIATE takes the write lock up front: concurrent writers queue on busy_timeout
        # instead of failing with "database is locked" when upgrading a read to a write.
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits on success and rolls back on error.

    expire_on_commit=False: rows returned from the block stay readable after it ends.
    """
    session = Session(engine, expire_on_commit=False)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def alembic_config(url: str | None = None) -> Any:
    """Alembic's Config pointing at this checkout's migrations (no alembic.ini needed)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))  # configparser escaping
    return cfg


def open_database(url: str, *, migrate: bool | None = None) -> Engine:
    """An engine for url with its schema up to date where that is Quire's to do: always for the
    embedded SQLite default (so no command needs `quire db upgrade` first on a fresh machine), for
    a server database only when `migrate` says so (`quire run`); elsewhere an operator upgrades."""
    engine = make_engine(url)
    if migrate is None:
        migrate = engine.dialect.name == "sqlite"
    if migrate:
        upgrade(engine)
    return engine


def upgrade(url: str | Engine, revision: str = "head") -> None:
    """Bring the schema at url (or on an engine, e.g. in-memory SQLite) up to revision."""
    from alembic import command

    if not isinstance(url, Engine):
        if make_url(url).get_backend_name() != "sqlite":
            command.upgrade(alembic_config(url), revision)
            return
        engine = make_engine(url, poolclass=NullPool)
        try:
            upgrade(engine, revision)
        finally:
            engine.dispose()
        return
    cfg = alembic_config(url.url.render_as_string(hide_password=False))
    with url.connect() as conn:
        sqlite = url.dialect.name == "sqlite"
        if sqlite:
            # SQLite alters a table by copying it and dropping the old one; with foreign keys on,
            # that drop would delete the rows that refer to it (ON DELETE CASCADE). The pragma
            # only takes effect outside a transaction, so it is set before Alembic's begins.
            conn.connection.dbapi_connection.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
        try:
            with conn.begin():
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, revision)
                if sqlite and conn.exec_driver_sql("PRAGMA foreign_key_check").first() is not None:
                    raise ConfigError("the schema upgrade left rows that refer to missing ones")
        finally:
            if sqlite:
                conn.connection.dbapi_connection.execute("PRAGMA foreign_keys=ON")  # type: ignore[union-attr]


def current_revision(url: str | Engine) -> str | None:
    """The schema revision the database is at, or None if it was never migrated."""
    from alembic.runtime.migration import MigrationContext

    engine = url if isinstance(url, Engine) else make_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        if engine is not url:
            engine.dispose()

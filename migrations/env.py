"""Alembic environment: metadata from pipeline.db.models, URL from alembic config or settings."""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy.pool import NullPool

from pipeline.db.models import Base, UTCDateTime
from pipeline.db.search import include_object
from pipeline.db.session import make_engine

config = context.config
target_metadata = Base.metadata

# Only the alembic CLI (with alembic.ini) configures logging; programmatic upgrades from
# `quire` leave the application's logging alone.
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def database_url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from pipeline.config import get_settings

    return get_settings().resolved_database_url()


def render_item(type_: str, obj: object, autogen_context: object) -> str | bool:
    """Autogenerate writes plain SQLAlchemy types, so migrations never import the models."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def configure(**kwargs: object) -> None:
    context.configure(
        target_metadata=target_metadata,
        compare_type=True,
        render_item=render_item,
        render_as_batch=True,  # SQLite can only ALTER through table copies
        include_object=include_object,  # FTS table/index of 0002_search are not in the models
        **kwargs,  # type: ignore[arg-type]
    )


def run_migrations_offline() -> None:
    configure(url=database_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:  # handed over by pipeline.db.session.upgrade(engine)
        configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(database_url(), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                # As pipeline.db.session.upgrade does: a table SQLite rebuilds (a CHECK changed,
                # a column dropped) is dropped and copied, and with foreign keys on, the drop
                # would delete the rows that refer to it (ON DELETE CASCADE). The pragma only
                # takes effect outside a transaction; the connection is discarded after.
                conn.connection.dbapi_connection.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
            configure(connection=conn)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()

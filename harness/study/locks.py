"""The claim lock: only one process at a time picks the next points of a study.

With a database that several machines share (PostgreSQL, MySQL) the lock lives in the
database. A SQLite study is guarded by a file lock beside its database file
(`study.db.lock`), so every process on that file shares it, whatever its results
directory; an in-memory study (a dry run) has one process and locks in `out`.
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Iterator
from pathlib import Path

import optuna
import sqlalchemy

from harness.files import file_lock


def sqlite_file(url: str | sqlalchemy.engine.URL) -> Path | None:
    """The database file of a SQLite URL; None for other databases and in-memory SQLite."""
    try:
        parsed = sqlalchemy.engine.make_url(url)
    except sqlalchemy.exc.ArgumentError:
        return None
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


@contextlib.contextmanager
def database_lock(database: Path) -> Iterator[None]:
    """The lock of one SQLite file, for whatever must not run twice at once on it."""
    with file_lock(database.with_name(database.name + ".lock")):
        yield


@contextlib.contextmanager
def claim_lock(storage: optuna.storages.BaseStorage, study_name: str, out: Path
               ) -> Iterator[None]:
    engine = getattr(storage, "engine", None)
    dialect = engine.dialect.name if engine is not None else ""
    if dialect not in ("postgresql", "mysql"):
        database = sqlite_file(engine.url) if engine is not None else None
        with database_lock(database) if database else file_lock(out / ".lock"):
            yield
        return
    key = zlib.crc32(f"harness:{study_name}".encode())  # one lock per study
    with engine.connect() as connection:
        if dialect == "postgresql":
            connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": key})
            try:
                yield
            finally:
                connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"),
                                   {"k": key})
        else:
            connection.execute(sqlalchemy.text("SELECT GET_LOCK(:k, -1)"), {"k": str(key)})
            try:
                yield
            finally:
                connection.execute(sqlalchemy.text("SELECT RELEASE_LOCK(:k)"), {"k": str(key)})

"""The claim lock: only one process at a time picks the next point of a study.

With a database that several machines share (PostgreSQL, MySQL) the lock lives in the
database; otherwise (SQLite, memory) it is a file lock in the results directory.
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Iterator
from pathlib import Path

import optuna
import sqlalchemy

from harness.files import file_lock


@contextlib.contextmanager
def claim_lock(storage: optuna.storages.BaseStorage, study_name: str, out: Path
               ) -> Iterator[None]:
    engine = getattr(storage, "engine", None)
    dialect = engine.dialect.name if engine is not None else ""
    if dialect not in ("postgresql", "mysql"):
        with file_lock(out / ".lock"):
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

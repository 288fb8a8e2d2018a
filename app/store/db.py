"""Engine and session factory for SQLite (default) and PostgreSQL.

SQLite runs in WAL mode with a busy timeout so that the API's readers never block on the
writer and concurrent writers queue instead of failing; foreign keys are off in SQLite by
default, so every connection turns them on.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVarTuple

from sqlalchemy import Engine, Row, Select, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

SQLITE_BUSY_TIMEOUT_MS = 30_000
PG_CONNECT_TIMEOUT_S = 5


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def shareable_url(url: str) -> str:
    """``url`` as another process on this machine reads it: a SQLite file by its absolute
    path (shard replicas run in Ray's worker processes, whose working directory is theirs)."""
    parsed = make_url(url)
    database = parsed.database
    if not is_sqlite(url) or not database or database == ":memory:":
        return url
    return parsed.set(database=str(Path(database).resolve())).render_as_string(hide_password=False)


def make_engine(url: str) -> Engine:
    if is_sqlite(url):
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        event.listen(engine, "connect", _sqlite_pragmas)
        # pysqlite's own BEGIN handling defers the write lock; BEGIN IMMEDIATE takes it at
        # the start, so two writers wait on busy_timeout instead of deadlocking on upgrade.
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    # pre-ping replaces connections that died with a restarted server; the connect timeout
    # bounds how long a request waits on a server that does not answer at all.
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=10,
        max_overflow=10,
        pool_timeout=10,
        connect_args={"connect_timeout": PG_CONNECT_TIMEOUT_S},
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()


def _sqlite_begin(connection: Any) -> None:
    write = connection.get_execution_options().get("vecroute_write", False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


class Store:
    """The engine plus two ways in: read sessions and write transactions."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.sqlite = is_sqlite(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._writes = sessionmaker(
            self.engine.execution_options(vecroute_write=True), expire_on_commit=False
        )

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._sessions() as session, session.begin():
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A transaction that will write; on SQLite it takes the write lock up front."""
        with self._writes() as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()


_Columns = TypeVarTuple("_Columns")


def row_blocks(
    session: Session, stmt: Select[*_Columns], block: int
) -> Iterator[Sequence[Row[*_Columns]]]:
    """The rows of ``stmt`` in blocks of ``block``, streamed (a server-side cursor where the
    driver has one). Through the session's connection, not the ORM: for plain columns the
    ORM's result layer cost a quarter of reading a collection (bench/store_reads.py,
    200,000 x 384 on PostgreSQL: 2.13 s against 1.60 s)."""
    result = session.connection().execute(stmt.execution_options(yield_per=block))
    return result.partitions(block)

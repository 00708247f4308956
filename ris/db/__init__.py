"""Persistence: one :class:`Database` per process, transactions as units of work."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from ris.db import migrate
from ris.db.engine import is_sqlite, make_engine, writer
from ris.domain.errors import AlreadyExists, ConcurrentUpdate, StorageUnavailable

log = logging.getLogger(__name__)

_AFTER_COMMIT = "ris_after_commit"


def after_commit(session: Session, action: Callable[[], None]) -> None:
    """Run ``action`` once the transaction of ``session`` (from `Database.transaction`) has
    committed, and not at all if it rolls back: for log lines that say a change was stored. An
    action that fails is logged, not raised: the change is stored whatever it does."""
    session.info[_AFTER_COMMIT].append(action)


@dataclass(frozen=True)
class SchemaStatus:
    reachable: bool
    revision: str | None
    head: str
    error: str = ""

    @property
    def up_to_date(self) -> bool:
        return self.reachable and self.revision == self.head


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._reader = sessionmaker(self.engine, expire_on_commit=False)
        self._writer = sessionmaker(writer(self.engine), expire_on_commit=False)
        # SQLite has one writer. Threads of this process (HL7 connections, DICOM associations) take
        # turns here instead of in SQLite's busy handler, which sleeps up to 100 ms per retry.
        self._write_turn = threading.Lock() if self.is_sqlite else contextlib.nullcontext()

    @property
    def is_sqlite(self) -> bool:
        return is_sqlite(self.engine)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A write transaction: commits when the block ends, rolls back on any exception.

        Database failures leave as domain errors, so adapters answer them with their protocol's
        failure status and never with success."""
        committed: list[Callable[[], None]] = []
        try:
            with self._write_turn, self._writer() as session, session.begin():
                session.info[_AFTER_COMMIT] = committed
                yield session
        except StaleDataError as exc:
            raise ConcurrentUpdate("the record was changed by someone else; reload and try again") from exc
        except IntegrityError as exc:
            raise AlreadyExists(f"a unique key is already taken ({_first_line(exc.orig)})") from exc
        except (DBAPIError, SQLAlchemyError) as exc:
            log.error("database transaction failed: %s", _first_line(exc))
            raise StorageUnavailable(f"the database refused the change: {_first_line(exc)}") from exc
        for action in committed:
            try:
                action()
            except Exception:
                # The change is stored: a failing action must not make the caller answer otherwise.
                log.exception("an action after commit failed; the transaction had committed")

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A read-only transaction (no write lock on SQLite)."""
        try:
            with self._reader() as session, session.begin():
                yield session
        except (DBAPIError, SQLAlchemyError) as exc:
            log.error("database read failed: %s", _first_line(exc))
            raise StorageUnavailable(f"the database cannot be read: {_first_line(exc)}") from exc

    def schema_status(self) -> SchemaStatus:
        head = migrate.head_revision()
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            return SchemaStatus(True, migrate.current_revision(self.engine), head)
        except SQLAlchemyError as exc:
            return SchemaStatus(False, None, head, _first_line(exc))

    def refresh_statistics(self, tables: tuple[str, ...]) -> None:
        """Let PostgreSQL's planner see a bulk load now (SQLite plans without statistics). A
        failure only costs plan quality until autovacuum analyses the tables: it is logged."""
        if self.is_sqlite:
            return
        try:
            with self.engine.connect() as connection:
                connection.execute(text(f"ANALYZE {', '.join(tables)}"))
                connection.commit()
        except SQLAlchemyError as exc:
            log.warning("planner statistics not refreshed: %s", _first_line(exc))

    def upgrade(self) -> None:
        migrate.upgrade(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()


def _first_line(exc: object) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__

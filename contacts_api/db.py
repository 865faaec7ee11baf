"""Tables of the Contacts API and the engine that serves them.

SQLite (a file under the data folder) is the default; PostgreSQL is chosen
by URL (``postgresql+psycopg://...``). The schema is created on start and
carries a version number so that a later release can migrate it.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    select,
)
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    mapped_column,
    relationship,
)

SCHEMA_VERSION = 1


class SchemaError(RuntimeError):
    """The database holds a schema this release cannot use."""


class Base(DeclarativeBase):
    pass


def new_id() -> str:
    """Return a new random UUID as text."""
    return str(uuid.uuid4())


def utcnow() -> datetime:
    """Return the current time in UTC, without tzinfo (as stored)."""
    return datetime.now(UTC).replace(tzinfo=None)


def later_than(previous: datetime | None) -> datetime:
    """Return now, or a microsecond after ``previous`` if the clock lags it.

    ``updated_at`` must change on every change, even two in one microsecond,
    because clients derive ETags from it.
    """
    now = utcnow()
    if previous is not None and now <= previous:
        return previous + timedelta(microseconds=1)
    return now


class SchemaInfo(Base):
    __tablename__ = "schema_info"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer)


class Organization(Base):
    __tablename__ = "organizations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # Counts every change to the organization's contacts and their access
    # rows; served as X-Directory-Revision so a cache can check freshness
    # with one small request (an extension of this implementation).
    revision: Mapped[int] = mapped_column(Integer, default=0)


class Identity(Base):
    __tablename__ = "identities"
    __table_args__ = (UniqueConstraint("organization_id", "agent_handle"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    organization_id: Mapped[str] = mapped_column(
        ForeignKey("organizations.id"), index=True
    )
    agent_handle: Mapped[str] = mapped_column(String(64))
    display_name: Mapped[str | None] = mapped_column(String(255))
    email_address: Mapped[str | None] = mapped_column(String(320))
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class APIKey(Base):
    """An API key, stored only as the SHA-256 of its text."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    organization_id: Mapped[str] = mapped_column(
        ForeignKey("organizations.id"), index=True
    )
    kind: Mapped[str] = mapped_column(String(16))  # "admin" or "agent"
    identity_id: Mapped[str | None] = mapped_column(ForeignKey("identities.id"))
    claimed: Mapped[bool] = mapped_column(Boolean, default=True)
    label: Mapped[str | None] = mapped_column(String(255))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Contact(Base):
    __tablename__ = "contacts"
    __table_args__ = (
        Index("ix_contacts_org_sort", "organization_id", "sort_name", "id"),
        Index("ix_contacts_org_updated", "organization_id", "updated_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"))
    preferred_name: Mapped[str | None] = mapped_column(String(255))
    name_prefix: Mapped[str | None] = mapped_column(String(32))
    given_name: Mapped[str | None] = mapped_column(String(128))
    middle_name: Mapped[str | None] = mapped_column(String(128))
    family_name: Mapped[str | None] = mapped_column(String(128))
    name_suffix: Mapped[str | None] = mapped_column(String(32))
    company_name: Mapped[str | None] = mapped_column(String(255))
    job_title: Mapped[str | None] = mapped_column(String(255))
    birthday: Mapped[str | None] = mapped_column(String(10))
    notes: Mapped[str | None] = mapped_column(Text)
    emails: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    phones: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    websites: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    dates: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    addresses: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    custom_fields: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(16), default="active")
    # Derived columns, rewritten on every change: the case-folded name used
    # for ordering, and the case-folded text that `q` searches.
    sort_name: Mapped[str] = mapped_column(String(255), default="")
    search_text: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    # Declared so that one flush inserts a contact before its child rows;
    # the rows are written and deleted explicitly, never through these.
    email_rows: Mapped[list[ContactEmail]] = relationship(
        passive_deletes="all", lazy="raise"
    )
    phone_rows: Mapped[list[ContactPhone]] = relationship(
        passive_deletes="all", lazy="raise"
    )
    access_rows: Mapped[list[AccessRow]] = relationship(
        passive_deletes="all", lazy="raise"
    )


class ContactEmail(Base):
    """Lookup index of a contact's emails, derived from ``Contact.emails``."""

    __tablename__ = "contact_emails"
    __table_args__ = (
        Index("ix_contact_emails_org_value", "organization_id", "value"),
        Index("ix_contact_emails_org_domain", "organization_id", "domain"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    organization_id: Mapped[str] = mapped_column(String(36))
    contact_id: Mapped[str] = mapped_column(
        ForeignKey("contacts.id", ondelete="CASCADE"), index=True
    )
    value: Mapped[str] = mapped_column(String(320))  # lower-cased
    domain: Mapped[str] = mapped_column(String(255))  # lower-cased


class ContactPhone(Base):
    """Lookup index of a contact's phones, derived from ``Contact.phones``."""

    __tablename__ = "contact_phones"
    __table_args__ = (Index("ix_contact_phones_org_value", "organization_id", "value"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    organization_id: Mapped[str] = mapped_column(String(36))
    contact_id: Mapped[str] = mapped_column(
        ForeignKey("contacts.id", ondelete="CASCADE"), index=True
    )
    value: Mapped[str] = mapped_column(String(16))


class AccessRow(Base):
    """One access row; ``identity_id`` None is the wildcard."""

    __tablename__ = "contact_access"
    __table_args__ = (Index("ix_contact_access_identity", "identity_id", "contact_id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    contact_id: Mapped[str] = mapped_column(
        ForeignKey("contacts.id", ondelete="CASCADE"), index=True
    )
    identity_id: Mapped[str | None] = mapped_column(ForeignKey("identities.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


def _prepare_sqlite(engine: Engine) -> None:
    """Make SQLite behave under concurrent requests.

    pysqlite opens transactions lazily and in deferred mode; a transaction
    that reads and then writes can then fail at once with "database is
    locked" instead of waiting. Writes therefore begin with BEGIN IMMEDIATE,
    which waits (busy_timeout) for the other writer to finish.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        if connection.get_execution_options().get("write"):
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            connection.exec_driver_sql("BEGIN")


class Database:
    """The engine, the schema check, and read and write sessions."""

    def __init__(self, url: str) -> None:
        self.url: URL = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        if self.is_sqlite and self.url.database not in (None, "", ":memory:"):
            Path(self.url.database).parent.mkdir(parents=True, exist_ok=True)
        self.engine = create_engine(self.url, pool_pre_ping=not self.is_sqlite)
        if self.is_sqlite:
            _prepare_sqlite(self.engine)
        self._write_engine = self.engine.execution_options(write=True)
        # SQLite has one writer at a time; queueing our own writers here
        # keeps them off the busy-wait path.
        self._write_lock = threading.Lock() if self.is_sqlite else None

    def create_schema(self) -> None:
        """Create the tables if missing, and refuse a schema of another version."""
        Base.metadata.create_all(self.engine)
        with self.write() as session:
            info = session.scalar(select(SchemaInfo))
            if info is None:
                session.add(SchemaInfo(id=1, version=SCHEMA_VERSION))
            elif info.version != SCHEMA_VERSION:
                raise SchemaError(
                    f"Database schema version {info.version} is not supported by "
                    f"this release (expected {SCHEMA_VERSION})."
                )

    @contextmanager
    def read(self) -> Iterator[Session]:
        """Open a session for reading."""
        with Session(self.engine) as session, session.begin():
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """Open a session whose transaction commits on success."""
        if self._write_lock is None:
            with Session(self._write_engine) as session, session.begin():
                yield session
            return
        with (
            self._write_lock,
            Session(self._write_engine) as session,
            session.begin(),
        ):
            yield session

    def dispose(self) -> None:
        self.engine.dispose()

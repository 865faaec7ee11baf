"""The gateway's own small state store.

It keeps what the Contacts API has no place for: the href a CardDAV user
chose for a card (per user, since every user has an address book of their
own), the UID a client gave a card (per contact, served to everyone), the
card a client sent for a contact (so that what the API cannot hold comes
back as it was sent), group cards (per user; they are not contacts), and
the state of each user's book behind every sync token handed out (RFC
6578), kept for 30 days.
SQLite under the data folder is the default; PostgreSQL serves several
gateway processes of one organization.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Float,
    String,
    Text,
    create_engine,
    delete,
    event,
    select,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column


class _Base(DeclarativeBase):
    pass


class _Href(_Base):
    __tablename__ = "card_hrefs"

    organization_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user: Mapped[str] = mapped_column(String(255), primary_key=True)
    href: Mapped[str] = mapped_column(String(1024), primary_key=True)
    contact_id: Mapped[str] = mapped_column(String(64), index=True)


class _Snapshot(_Base):
    """What a user's book held when a sync token was handed out."""

    __tablename__ = "sync_snapshots"

    organization_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user: Mapped[str] = mapped_column(String(255), primary_key=True)
    token: Mapped[str] = mapped_column(String(64), primary_key=True)
    etags: Mapped[str] = mapped_column(Text)  # JSON {href: etag}
    created_at: Mapped[float] = mapped_column(Float, index=True)


class _Original(_Base):
    """The card a client sent for a contact, and the fields the API got from it."""

    __tablename__ = "card_originals"

    organization_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    contact_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    digest: Mapped[str] = mapped_column(String(64))
    original: Mapped[str] = mapped_column(Text)
    fields: Mapped[str] = mapped_column(Text)  # JSON


class _LocalCard(_Base):
    """A card the directory cannot hold (a group card), kept for one user."""

    __tablename__ = "local_cards"

    organization_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user: Mapped[str] = mapped_column(String(255), primary_key=True)
    href: Mapped[str] = mapped_column(String(1024), primary_key=True)
    uid: Mapped[str | None] = mapped_column(String(1024))
    text: Mapped[str] = mapped_column(Text)


class _UID(_Base):
    __tablename__ = "card_uids"

    organization_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    contact_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    uid: Mapped[str] = mapped_column(String(1024))


def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: object, _record: object) -> None:
        cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()


class StateStore:
    """Hrefs and UIDs that CardDAV clients chose, keyed by organization."""

    def __init__(self, url: str, snapshot_retention: float = 30 * 86400) -> None:
        self.snapshot_retention = snapshot_retention
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (
            None,
            "",
            ":memory:",
        ):
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        self._engine = create_engine(parsed)
        if parsed.get_backend_name() == "sqlite":
            _sqlite_pragmas(self._engine)
        _Base.metadata.create_all(self._engine)

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with Session(self._engine) as session, session.begin():
            yield session

    def hrefs(self, organization_id: str, user: str) -> dict[str, str]:
        """Return the user's chosen hrefs as ``{contact_id: href}``."""
        with self._session() as session:
            rows = session.execute(
                select(_Href.contact_id, _Href.href).where(
                    _Href.organization_id == organization_id, _Href.user == user
                )
            )
            return {contact_id: href for contact_id, href in rows}

    def uids(self, organization_id: str) -> dict[str, str]:
        """Return the client-given UIDs as ``{contact_id: uid}``."""
        with self._session() as session:
            rows = session.execute(
                select(_UID.contact_id, _UID.uid).where(
                    _UID.organization_id == organization_id
                )
            )
            return {contact_id: uid for contact_id, uid in rows}

    def remember(
        self,
        organization_id: str,
        user: str,
        contact_id: str,
        href: str,
        uid: str | None,
    ) -> None:
        """Record the href (for this user) and UID a client gave a contact."""
        with self._session() as session:
            session.execute(
                delete(_Href).where(
                    _Href.organization_id == organization_id,
                    _Href.user == user,
                    (_Href.contact_id == contact_id) | (_Href.href == href),
                )
            )
            session.add(
                _Href(
                    organization_id=organization_id,
                    user=user,
                    href=href,
                    contact_id=contact_id,
                )
            )
            if uid is not None:
                existing = session.get(_UID, (organization_id, contact_id))
                if existing is None:
                    session.add(
                        _UID(
                            organization_id=organization_id,
                            contact_id=contact_id,
                            uid=uid,
                        )
                    )
                else:
                    existing.uid = uid
            try:
                session.flush()
            except IntegrityError as exc:  # pragma: no cover - guarded above
                raise ValueError(f"Href {href!r} is taken for {user!r}.") from exc

    def forget(self, organization_id: str, contact_id: str) -> None:
        """Drop every href and the UID of a deleted contact."""
        with self._session() as session:
            session.execute(
                delete(_Href).where(
                    _Href.organization_id == organization_id,
                    _Href.contact_id == contact_id,
                )
            )
            for table in (_UID, _Original):
                session.execute(
                    delete(table).where(
                        table.organization_id == organization_id,
                        table.contact_id == contact_id,
                    )
                )

    def snapshot(
        self, organization_id: str, user: str, etags: Mapping[str, str]
    ) -> str:
        """Store the book's state once and return its sync token (a hash)."""
        text = json.dumps(dict(sorted(etags.items())), separators=(",", ":"))
        token = hashlib.sha256(f"{user}\0{text}".encode()).hexdigest()[:40]
        now = time.time()
        with self._session() as session:
            existing = session.get(_Snapshot, (organization_id, user, token))
            if existing is not None:
                existing.created_at = now
                return token
            session.add(
                _Snapshot(
                    organization_id=organization_id,
                    user=user,
                    token=token,
                    etags=text,
                    created_at=now,
                )
            )
            session.execute(
                delete(_Snapshot).where(
                    _Snapshot.created_at < now - self.snapshot_retention
                )
            )
        return token

    def snapshot_etags(
        self, organization_id: str, user: str, token: str
    ) -> dict[str, str] | None:
        """Return the book's state for a token, or None if it is unknown."""
        with self._session() as session:
            row = session.get(_Snapshot, (organization_id, user, token))
            return None if row is None else dict(json.loads(row.etags))

    def keep_original(
        self,
        organization_id: str,
        contact_id: str,
        original: str,
        fields: Mapping[str, Any],
    ) -> None:
        """Keep the card a client sent for a contact, with its mapped fields."""
        digest = hashlib.sha256(original.encode("utf-8")).hexdigest()[:40]
        encoded = json.dumps(fields, sort_keys=True)
        with self._session() as session:
            row = session.get(_Original, (organization_id, contact_id))
            if row is None:
                session.add(
                    _Original(
                        organization_id=organization_id,
                        contact_id=contact_id,
                        digest=digest,
                        original=original,
                        fields=encoded,
                    )
                )
            else:
                row.digest, row.original, row.fields = digest, original, encoded

    def original_digests(self, organization_id: str) -> dict[str, str]:
        """Return ``{contact_id: digest}`` of every kept original (small rows)."""
        with self._session() as session:
            rows = session.execute(
                select(_Original.contact_id, _Original.digest).where(
                    _Original.organization_id == organization_id
                )
            )
            return {contact_id: digest for contact_id, digest in rows}

    def originals(
        self, organization_id: str, contact_ids: Iterable[str]
    ) -> dict[str, tuple[str, dict[str, Any]]]:
        """Return ``{contact_id: (original, fields)}`` for the given contacts."""
        wanted = list(contact_ids)
        found: dict[str, tuple[str, dict[str, Any]]] = {}
        with self._session() as session:
            for start in range(0, len(wanted), 500):
                rows = session.execute(
                    select(_Original.contact_id, _Original.original, _Original.fields)
                    .where(_Original.organization_id == organization_id)
                    .where(_Original.contact_id.in_(wanted[start : start + 500]))
                )
                for contact_id, original, fields in rows:
                    found[contact_id] = (original, json.loads(fields))
        return found

    def local_cards(
        self, organization_id: str, user: str
    ) -> dict[str, tuple[str | None, str]]:
        """Return the user's local cards as ``{href: (uid, text)}``."""
        with self._session() as session:
            rows = session.execute(
                select(_LocalCard.href, _LocalCard.uid, _LocalCard.text).where(
                    _LocalCard.organization_id == organization_id,
                    _LocalCard.user == user,
                )
            )
            return {href: (uid, text) for href, uid, text in rows}

    def put_local(
        self, organization_id: str, user: str, href: str, uid: str | None, text: str
    ) -> None:
        with self._session() as session:
            row = session.get(_LocalCard, (organization_id, user, href))
            if row is None:
                session.add(
                    _LocalCard(
                        organization_id=organization_id,
                        user=user,
                        href=href,
                        uid=uid,
                        text=text,
                    )
                )
            else:
                row.uid, row.text = uid, text

    def drop_local(self, organization_id: str, user: str, href: str) -> None:
        with self._session() as session:
            session.execute(
                delete(_LocalCard).where(
                    _LocalCard.organization_id == organization_id,
                    _LocalCard.user == user,
                    _LocalCard.href == href,
                )
            )

    def close(self) -> None:
        self._engine.dispose()

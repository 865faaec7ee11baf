"""The directory as one user sees it: cached listings rendered as cards.

A listing of the upstream is shared by every user behind the same upstream
credential (all users in directory mode, one agent in key mode) and is
reused while it is fresh: when the upstream sends ``X-Directory-Revision``
(this project's Contacts API does) one small request tells whether anything
changed; otherwise a listing is reused for ``max_age`` seconds. A client's
sync burst (PROPFIND, then multiget) therefore costs one listing, not one
call per card.

Writes go to the upstream first and are reported only once it accepted
them; they also drop the cached listings, so the next read lists again.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any, Literal

from cachetools import LRUCache

from gateway.client import ContactsClient, Invalid
from gateway.identity import Principal, can_see
from gateway.state import StateStore
from gateway.vcard import VCardError, contact_to_vcard, vcard_to_contact

logger = logging.getLogger(__name__)

NewContactAccess = Literal["everyone", "creator"]
# Ignore a revision older than this even if the upstream says nothing
# changed, in case a change escaped the counter.
MAX_REVISION_AGE = 300.0


class CardRejected(ValueError):
    """A card cannot be stored: the reason is for the CardDAV client."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Card:
    """One contact rendered for one user."""

    href: str
    contact_id: str
    uid: str
    text: str
    etag: str
    last_modified: str


@dataclass(frozen=True)
class View:
    """A user's address book at one moment."""

    principal: Principal
    cards: dict[str, Card]
    uids: frozenset[str]

    @property
    def ctag(self) -> str:
        digest = hashlib.sha256()
        for href in sorted(self.cards):
            digest.update(f"{href}/{self.cards[href].etag};".encode())
        return f'"{digest.hexdigest()[:40]}"'

    def card_for(self, contact_id: str) -> Card | None:
        return next(
            (card for card in self.cards.values() if card.contact_id == contact_id),
            None,
        )


@dataclass
class _Listing:
    contacts: list[dict[str, Any]]
    revision: str | None
    fetched_at: float


def _http_date(timestamp: str | None) -> str:
    moment = datetime.now(UTC)
    if timestamp:
        with contextlib.suppress(ValueError):
            moment = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return format_datetime(moment.astimezone(UTC), usegmt=True)


class Directory:
    """Reads and writes of the directory on behalf of principals."""

    def __init__(
        self,
        client: ContactsClient,
        state: StateStore,
        *,
        max_age: float = 5.0,
        new_contacts: NewContactAccess = "everyone",
        default_region: str | None = None,
        card_version: Literal["3.0", "4.0"] = "3.0",
    ) -> None:
        self._client = client
        self._state = state
        self._max_age = max_age
        self._new_contacts = new_contacts
        self._default_region = default_region
        # 3.0 by default: Apple clients refuse 4.0 cards, and Radicale
        # advertises only 3.0 in supported-address-data.
        self._card_version: Literal["3.0", "4.0"] = card_version
        self._listings: dict[str, _Listing] = {}
        self._rendered: LRUCache[tuple[str, str, str], tuple[str, str]] = LRUCache(
            50_000
        )
        self._lock = threading.Lock()
        self._refresh_locks: dict[str, threading.Lock] = {}

    def _client_for(self, principal: Principal) -> ContactsClient:
        return self._client.with_key(principal.api_key)

    def _contacts(self, principal: Principal) -> list[dict[str, Any]]:
        key = principal.credential
        with self._lock:
            refresh_lock = self._refresh_locks.setdefault(key, threading.Lock())
        # One listing at a time per credential: concurrent requests wait for
        # it instead of listing the whole directory again.
        with refresh_lock:
            with self._lock:
                cached = self._listings.get(key)
            if cached is not None and self._fresh(principal, cached):
                return cached.contacts
            listing = self._client_for(principal).list_all()
            entry = _Listing(listing.contacts, listing.revision, time.monotonic())
            with self._lock:
                self._listings[key] = entry
            return entry.contacts

    def _fresh(self, principal: Principal, cached: _Listing) -> bool:
        age = time.monotonic() - cached.fetched_at
        if cached.revision is None:
            return age < self._max_age
        if age >= MAX_REVISION_AGE:
            return False
        return self._client_for(principal).revision() == cached.revision

    def invalidate(self) -> None:
        """Forget every cached listing (after a write)."""
        with self._lock:
            self._listings.clear()

    def view(self, principal: Principal) -> View:
        """Return the user's address book: every visible contact as a card."""
        contacts = [c for c in self._contacts(principal) if can_see(principal, c)]
        chosen = self._state.hrefs(principal.organization_id, principal.user)
        uids = self._state.uids(principal.organization_id)
        taken = set(chosen.values())
        cards: dict[str, Card] = {}
        for contact in contacts:
            contact_id = str(contact["id"])
            href = chosen.get(contact_id)
            if href is None:
                href = f"{contact_id}.vcf"
                suffix = 1
                while href in taken:
                    suffix += 1
                    href = f"{contact_id}-{suffix}.vcf"
            cards[href] = self._render(contact, href, uids.get(contact_id))
        return View(principal, cards, frozenset(card.uid for card in cards.values()))

    def _render(self, contact: Mapping[str, Any], href: str, uid: str | None) -> Card:
        contact_id = str(contact["id"])
        uid = uid or f"urn:uuid:{contact_id}"
        key = (contact_id, str(contact.get("updated_at")), uid)
        # cachetools caches are not thread-safe; Radicale serves each
        # request in its own thread.
        with self._lock:
            rendered = self._rendered.get(key)
        if rendered is None:
            text = contact_to_vcard(contact, uid=uid, version=self._card_version)
            etag = f'"{hashlib.sha256(text.encode("utf-8")).hexdigest()[:40]}"'
            rendered = (text, etag)
            with self._lock:
                self._rendered[key] = rendered
        text, etag = rendered
        return Card(
            href=href,
            contact_id=contact_id,
            uid=uid,
            text=text,
            etag=etag,
            last_modified=_http_date(contact.get("updated_at")),
        )

    def _fields(self, text: str) -> dict[str, Any]:
        try:
            return vcard_to_contact(text, default_region=self._default_region)
        except VCardError as exc:
            raise CardRejected(f"The card cannot be read: {exc}") from exc

    def create(
        self, principal: Principal, href: str, text: str, uid: str | None
    ) -> Card:
        """Create a contact from a card PUT at a new href."""
        fields = self._fields(text)
        access: list[str] | None = None
        if self._new_contacts == "creator":
            access = [] if principal.identity_id is None else [principal.identity_id]
        try:
            contact = self._client_for(principal).create_contact(fields, access)
        except Invalid as exc:
            raise CardRejected(_reason(exc)) from exc
        finally:
            self.invalidate()
        self._state.remember(
            principal.organization_id, principal.user, str(contact["id"]), href, uid
        )
        logger.info(
            "User %r created contact %r at %r", principal.user, contact["id"], href
        )
        return self._render(contact, href, uid)

    def replace(self, principal: Principal, card: Card, text: str) -> Card:
        """Replace a visible contact with the mapped fields of a card."""
        fields = self._fields(text)
        try:
            contact = self._client_for(principal).update_contact(
                card.contact_id, fields
            )
        except Invalid as exc:
            raise CardRejected(_reason(exc)) from exc
        finally:
            self.invalidate()
        logger.info("User %r replaced contact %r", principal.user, card.contact_id)
        return self._render(contact, card.href, card.uid)

    def delete(self, principal: Principal, card: Card) -> None:
        """Delete a visible contact upstream."""
        try:
            self._client_for(principal).delete_contact(card.contact_id)
        finally:
            self.invalidate()
        self._state.forget(principal.organization_id, card.contact_id)
        logger.info("User %r deleted contact %r", principal.user, card.contact_id)

    def move(self, principal: Principal, card: Card, to_href: str) -> Card:
        """Give a card a new href in this user's address book."""
        self._state.remember(
            principal.organization_id, principal.user, card.contact_id, to_href, None
        )
        logger.info(
            "User %r moved contact %r to %r", principal.user, card.contact_id, to_href
        )
        return Card(
            href=to_href,
            contact_id=card.contact_id,
            uid=card.uid,
            text=card.text,
            etag=card.etag,
            last_modified=card.last_modified,
        )


def _reason(exc: Invalid) -> str:
    detail = exc.detail
    if isinstance(detail, str):
        return f"The directory refused the card: {detail}"
    return f"The directory refused the card: {exc}"

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
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any, Literal

from cachetools import LRUCache

from gateway.client import ContactsClient, Invalid
from gateway.identity import Principal, can_see
from gateway.keep import (
    PHOTO_CAP,
    Incoming,
    Version,
    convert_card,
    read_card,
    render_card,
)
from gateway.state import StateStore
from gateway.vcard import VCardError

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
    # A card the directory cannot hold (a group card), kept by the gateway.
    local: bool = False


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
        card_version: Version = "3.0",
        photo_cap: int = PHOTO_CAP,
    ) -> None:
        self._client = client
        self._state = state
        self._max_age = max_age
        self._new_contacts = new_contacts
        self._default_region = default_region
        # 3.0 by default: Apple clients refuse 4.0 cards, and Radicale
        # advertises only 3.0 in supported-address-data.
        self._card_version: Version = card_version
        self._photo_cap = photo_cap
        self._listings: dict[str, _Listing] = {}
        self._rendered: LRUCache[tuple[str, ...], tuple[str, str]] = LRUCache(50_000)
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

    def _follow(
        self,
        principal: Principal,
        client: ContactsClient,
        contact: Mapping[str, Any] | None,
        deleted: str | None = None,
    ) -> None:
        """Bring the cached listing up to date with our own write, or drop it.

        When the write's revision is the cached one plus one, nobody else
        changed the directory in between, so the listing is patched instead
        of fetched again; a client uploading many cards then costs one
        listing, not one per card. Listings of other credentials, and any
        listing of an upstream without revisions, are dropped.
        """
        key = principal.credential
        revision = client.last_revision
        with self._lock:
            cached = self._listings.get(key)
            self._listings.clear()
            if (
                cached is None
                or cached.revision is None
                or revision is None
                or not cached.revision.isdigit()
                or revision != str(int(cached.revision) + 1)
            ):
                return
            gone = deleted if contact is None else str(contact["id"])
            contacts = [c for c in cached.contacts if str(c["id"]) != gone]
            if contact is not None:
                contacts.append(dict(contact))
            self._listings[key] = _Listing(contacts, revision, cached.fetched_at)

    def view(self, principal: Principal, version: Version | None = None) -> View:
        """Return the user's address book: every visible contact as a card.

        ``version`` is the vCard version to serve (the configured one when
        None). ETags do not depend on it, so a client that lists in one
        version and fetches in another sees consistent ETags.
        """
        version = version or self._card_version
        organization_id = principal.organization_id
        contacts = [c for c in self._contacts(principal) if can_see(principal, c)]
        chosen = self._state.hrefs(organization_id, principal.user)
        uids = self._state.uids(organization_id)
        digests = self._state.original_digests(organization_id)
        taken = set(chosen.values())

        keys = {str(c["id"]): self._key(c, uids, digests, version) for c in contacts}
        with self._lock:
            missing = [cid for cid, key in keys.items() if key not in self._rendered]
        originals = self._state.originals(
            organization_id, [cid for cid in missing if cid in digests]
        )

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
            cards[href] = self._card(
                organization_id,
                contact,
                href,
                uids,
                digests,
                originals,
                keys[contact_id],
                version,
            )
        for href, (uid, text) in self._state.local_cards(
            organization_id, principal.user
        ).items():
            cards[href] = _local_card(href, uid, text, version)
        return View(principal, cards, frozenset(card.uid for card in cards.values()))

    def _key(
        self,
        contact: Mapping[str, Any],
        uids: Mapping[str, str],
        digests: Mapping[str, str],
        version: Version,
    ) -> tuple[str, ...]:
        contact_id = str(contact["id"])
        return (
            contact_id,
            str(contact.get("updated_at")),
            uids.get(contact_id, ""),
            digests.get(contact_id, ""),
            version,
        )

    def _card(
        self,
        organization_id: str,
        contact: Mapping[str, Any],
        href: str,
        uids: Mapping[str, str],
        digests: Mapping[str, str],
        originals: Mapping[str, tuple[str, dict[str, Any]]],
        key: tuple[str, ...],
        version: Version,
    ) -> Card:
        contact_id = str(contact["id"])
        uid = uids.get(contact_id) or f"urn:uuid:{contact_id}"
        with self._lock:
            rendered = self._rendered.get(key)
        if rendered is None:
            if contact_id in digests and contact_id not in originals:
                # Evicted since the view checked the cache: fetch it alone.
                originals = self._state.originals(organization_id, [contact_id])
            original, fields = originals.get(contact_id, (None, None))
            text = render_card(
                contact,
                uid=uid,
                version=version,
                original=original,
                original_fields=fields,
            )
            if version == self._card_version:
                etag = _etag(text)
            else:
                default_key = (*key[:-1], self._card_version)
                etag = self._card(
                    organization_id,
                    contact,
                    href,
                    uids,
                    digests,
                    originals,
                    default_key,
                    self._card_version,
                ).etag
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

    def _read(self, text: str) -> Incoming:
        try:
            return read_card(
                text, default_region=self._default_region, photo_cap=self._photo_cap
            )
        except VCardError as exc:
            raise CardRejected(f"The card cannot be read: {exc}") from exc

    def _served(self, principal: Principal, contact_id: str, href: str) -> Card:
        """Return the card as the next read will serve it."""
        view = self.view(principal)
        card = view.cards.get(href)
        if card is None or card.contact_id != contact_id:
            raise CardRejected("The card was stored but is not visible to you.")
        return card

    def create(
        self, principal: Principal, href: str, text: str, uid: str | None
    ) -> Card:
        """Create a contact (or keep a group card) from a card PUT at a new href."""
        incoming = self._read(text)
        organization_id = principal.organization_id
        if incoming.is_group:
            self._state.put_local(
                organization_id,
                principal.user,
                href,
                incoming.uid or uid,
                incoming.original,
            )
            logger.info("User %r stored group card %r", principal.user, href)
            # As the next read serves it, so that a PUT of a 4.0 group card
            # served as 3.0 is answered without an ETag.
            return _local_card(
                href, incoming.uid or uid, incoming.original, self._card_version
            )

        access: list[str] | None = None
        if self._new_contacts == "creator":
            access = [] if principal.identity_id is None else [principal.identity_id]
        client = self._client_for(principal)
        try:
            contact = client.create_contact(incoming.fields, access)
        except Invalid as exc:
            raise CardRejected(_reason(exc)) from exc
        except Exception:
            # It may have landed (a timeout after sending): list again.
            self.invalidate()
            raise
        self._follow(principal, client, contact)
        contact_id = str(contact["id"])
        self._state.keep_original(
            organization_id, contact_id, incoming.original, incoming.fields
        )
        self._state.remember(
            organization_id, principal.user, contact_id, href, incoming.uid or uid
        )
        logger.info(
            "User %r created contact %r at %r", principal.user, contact_id, href
        )
        return self._served(principal, contact_id, href)

    def replace(self, principal: Principal, card: Card, text: str) -> Card:
        """Replace a visible contact (or a group card) with a card's content."""
        incoming = self._read(text)
        organization_id = principal.organization_id
        if card.local:
            if not incoming.is_group:
                raise CardRejected("A group card cannot be replaced by a contact.")
            self._state.put_local(
                organization_id,
                principal.user,
                card.href,
                card.uid,
                incoming.original,
            )
            return _local_card(
                card.href, card.uid, incoming.original, self._card_version
            )
        if incoming.is_group:
            raise CardRejected("A contact cannot be replaced by a group card.")
        client = self._client_for(principal)
        try:
            contact = client.update_contact(card.contact_id, incoming.fields)
        except Invalid as exc:
            raise CardRejected(_reason(exc)) from exc
        except Exception:
            self.invalidate()
            raise
        self._follow(principal, client, contact)
        self._state.keep_original(
            organization_id, card.contact_id, incoming.original, incoming.fields
        )
        logger.info("User %r replaced contact %r", principal.user, card.contact_id)
        return self._served(principal, card.contact_id, card.href)

    def delete(self, principal: Principal, card: Card) -> None:
        """Delete a visible contact upstream (or the user's group card)."""
        if card.local:
            self._state.drop_local(principal.organization_id, principal.user, card.href)
            return
        client = self._client_for(principal)
        try:
            client.delete_contact(card.contact_id)
        except Exception:
            self.invalidate()
            raise
        self._follow(principal, client, None, deleted=card.contact_id)
        self._state.forget(principal.organization_id, card.contact_id)
        logger.info("User %r deleted contact %r", principal.user, card.contact_id)

    def move(self, principal: Principal, card: Card, to_href: str) -> Card:
        """Give a card a new href in this user's address book."""
        organization_id = principal.organization_id
        if card.local:
            self._state.put_local(
                organization_id,
                principal.user,
                to_href,
                card.uid,
                self._state.local_cards(organization_id, principal.user)[card.href][1],
            )
            self._state.drop_local(organization_id, principal.user, card.href)
        else:
            self._state.remember(
                organization_id, principal.user, card.contact_id, to_href, None
            )
        logger.info("User %r moved card %r to %r", principal.user, card.href, to_href)
        return replace(card, href=to_href)


def _etag(text: str) -> str:
    return f'"{hashlib.sha256(text.encode("utf-8")).hexdigest()[:40]}"'


def _local_card(href: str, uid: str | None, text: str, version: Version | None) -> Card:
    """Return a card kept by the gateway alone, in the requested version."""
    served = convert_card(text, version) if version else text
    return Card(
        href=href,
        contact_id="",
        uid=uid or "",
        text=served,
        etag=_etag(text),
        last_modified=_http_date(None),
        local=True,
    )


def _reason(exc: Invalid) -> str:
    detail = exc.detail
    if isinstance(detail, str):
        return f"The directory refused the card: {detail}"
    return f"The directory refused the card: {exc}"

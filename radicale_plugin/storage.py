"""Radicale storage plugin: the directory as each user may see it.

Paths: ``/`` (root), ``/<user>/`` (the principal) and ``/<user>/contacts/``
(the address book, every contact the user may see). Another user's paths
and invisible contacts do not exist: nothing is yielded for them, so every
method answers as for a missing resource and their hrefs never appear.

Errors of the core are turned into an ``Outcome`` for our WSGI wrapper,
which answers with the right status and a reason (Radicale itself would
answer 500 or a bare 400), and re-raised so that Radicale stops.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator, Mapping
from email.utils import formatdate
from typing import Any

from radicale import item as radicale_item
from radicale import pathutils, storage
from radicale.item import filter as radicale_filter

from gateway.client import (
    ContactsAPIError,
    DirectoryTooLarge,
    Forbidden,
    NotFound,
    TryLater,
)
from gateway.directory import Card, CardRejected, View
from gateway.identity import Principal
from radicale_plugin import context
from radicale_plugin.rights import BOOK
from radicale_plugin.runtime import Gateway, gateway_for

logger = logging.getLogger("radicale.inkbox.storage")

TIME_RANGE = (radicale_filter.TIMESTAMP_MIN, radicale_filter.TIMESTAMP_MAX)
DEFAULT_RETRY_AFTER = 5
SYNC_PREFIX = "http://inkbox-carddav.invalid/ns/sync/"


def refuse(status: int, reason: str, headers: dict[str, str] | None = None) -> None:
    """Record the response for this request, for the WSGI wrapper."""
    request = context.state()
    if request is not None:
        request.outcome = context.Outcome(status, reason, headers or {})


@contextlib.contextmanager
def translated_errors() -> Iterator[None]:
    """Turn errors of the gateway core into the outcome a client can act on."""
    try:
        yield
    except CardRejected as exc:
        refuse(400, exc.reason)
        raise ValueError(exc.reason) from exc
    except TryLater as exc:
        retry_after = exc.retry_after or DEFAULT_RETRY_AFTER
        refuse(
            503,
            "The contact directory is unavailable right now; try again later.",
            {"Retry-After": str(max(1, round(retry_after)))},
        )
        raise
    except DirectoryTooLarge as exc:
        refuse(507, str(exc))
        raise
    except NotFound as exc:
        refuse(404, "The contact no longer exists.")
        raise ValueError(str(exc)) from exc
    except Forbidden as exc:
        refuse(403, f"The directory refused the change: {exc}")
        raise ValueError(str(exc)) from exc
    except ContactsAPIError as exc:
        logger.error("Contacts API call failed: %s", exc)
        refuse(502, "The contact directory answered with an error.")
        raise


def _now() -> str:
    return formatdate(usegmt=True)


class _Folder(storage.BaseCollection):
    """The root or a principal: a plain collection holding nothing we store."""

    def __init__(self, path: str) -> None:
        self._path = path

    @property
    def path(self) -> str:
        return self._path

    def get_multi(self, hrefs: Iterable[str]) -> Iterable[tuple[str, Any]]:
        return ((href, None) for href in hrefs)

    def get_all(self) -> Iterable[Any]:
        return iter(())

    def has_uid(self, uid: str) -> bool:
        return False

    def upload(self, href: str, item: Any) -> Any:
        refuse(403, "Cards belong in the address book /<user>/contacts/.")
        raise ValueError("Upload outside the address book")

    def delete(self, href: str | None = None) -> None:
        refuse(403, "This collection cannot be deleted.")
        raise ValueError("Delete outside the address book")

    def get_meta(self, key: str | None = None) -> Any:
        return None if key else {}

    def set_meta(self, props: Mapping[str, str]) -> None:
        refuse(403, "The properties of this collection are read-only.")
        raise ValueError("Read-only properties")

    @property
    def last_modified(self) -> str:
        return _now()

    @property
    def etag(self) -> str:
        return '"folder"'


class AddressBook(storage.BaseCollection):
    """``/<user>/contacts/``: the contacts one principal may see."""

    def __init__(self, gateway: Gateway, principal: Principal) -> None:
        self._gateway = gateway
        self._principal = principal
        self._path = f"{principal.user}/{BOOK}"

    @property
    def path(self) -> str:
        return self._path

    def view(self) -> View:
        """Return the user's view, computed once per request."""
        request = context.state()
        cache = request.view_cache if request is not None else {}
        view = cache.get("view")
        if not isinstance(view, View):
            version = request.version if request is not None else None
            with translated_errors():
                view = self._gateway.directory.view(self._principal, version)
            cache["view"] = view
        return view

    def _forget_view(self) -> None:
        request = context.state()
        if request is not None:
            request.view_cache.pop("view", None)

    def item(self, card: Card) -> radicale_item.Item:
        return radicale_item.Item(
            collection=self,
            href=card.href,
            text=card.text,
            etag=card.etag,
            uid=card.uid,
            name="VCARD",
            component_name="",
            last_modified=card.last_modified,
            time_range=TIME_RANGE,
        )

    def get_multi(self, hrefs: Iterable[str]) -> Iterable[tuple[str, Any]]:
        cards = self.view().cards
        for href in hrefs:
            card = cards.get(href)
            yield href, (self.item(card) if card is not None else None)

    def get_all(self) -> Iterable[Any]:
        return [self.item(card) for card in self.view().cards.values()]

    def has_uid(self, uid: str) -> bool:
        return uid in self.view().uids

    def upload(self, href: str, item: Any) -> tuple[Any, Any]:
        view = self.view()
        existing = view.cards.get(href)
        text = _client_text(item)
        with translated_errors():
            if existing is None:
                card = self._gateway.directory.create(
                    self._principal, href, text, item.uid
                )
            else:
                card = self._gateway.directory.replace(self._principal, existing, text)
        self._forget_view()
        request = context.state()
        if request is not None and _normalized(text) != card.text:
            request.transformed = True
        replaced = self.item(existing) if existing is not None else None
        return self.item(card), replaced

    def delete(self, href: str | None = None) -> None:
        if href is None:
            refuse(403, "The address book cannot be deleted.")
            raise ValueError("Collection delete refused")
        card = self.view().cards.get(href)
        if card is None:
            refuse(404, "No such card.")
            raise ValueError(f"No card {href!r}")
        with translated_errors():
            self._gateway.directory.delete(self._principal, card)
        self._forget_view()

    def move_card(self, href: str, to_href: str) -> None:
        view = self.view()
        card = view.cards.get(href)
        if card is None:
            refuse(404, "No such card.")
            raise ValueError(f"No card {href!r}")
        overwritten = view.cards.get(to_href)
        with translated_errors():
            if overwritten is not None and overwritten.contact_id != card.contact_id:
                self._gateway.directory.delete(self._principal, overwritten)
            self._gateway.directory.move(self._principal, card, to_href)
        self._forget_view()

    def get_meta(self, key: str | None = None) -> Any:
        meta = {
            "tag": "VADDRESSBOOK",
            "D:displayname": "Contacts",
            "CR:addressbook-description": "The organization's contact directory",
        }
        return meta.get(key) if key else meta

    def set_meta(self, props: Mapping[str, str]) -> None:
        refuse(403, "The properties of the address book are read-only.")
        raise ValueError("Read-only properties")

    @property
    def last_modified(self) -> str:
        return _now()

    @property
    def etag(self) -> str:
        return self.view().ctag

    def sync(self, old_token: str = "") -> tuple[str, Iterable[str]]:
        """Return a sync token and the hrefs changed since ``old_token``.

        Tokens name a snapshot of this user's book (href -> ETag) in the
        state store, so a change of visibility shows up as a deletion in
        the next sync of that user. An unknown or expired token raises
        ValueError, which Radicale answers with 403 valid-sync-token.
        """
        view = self.view()
        etags = {href: card.etag for href, card in view.cards.items()}
        state = self._gateway.state
        organization_id, user = self._principal.organization_id, self._principal.user
        token = state.snapshot(organization_id, user, etags)
        if not old_token:
            return SYNC_PREFIX + token, list(etags)
        old = None
        if old_token.startswith(SYNC_PREFIX):
            old = state.snapshot_etags(
                organization_id, user, old_token.removeprefix(SYNC_PREFIX)
            )
        if old is None:
            raise ValueError(f"Unknown or expired sync token {old_token!r}")
        changed = [href for href, etag in etags.items() if old.get(href) != etag]
        gone = [href for href in old if href not in etags]
        return SYNC_PREFIX + token, changed + gone


def _client_text(item: Any) -> str:
    """Return the card as the client sent it, not Radicale's re-serialization.

    Radicale parses a PUT body with vobject and writes it again before the
    storage sees it, which damages vCard 4.0 data (see the field notes,
    section 1.5); the wrapper keeps the raw body for us.
    """
    request = context.state()
    if request is not None and request.raw_body is not None:
        try:
            return request.raw_body.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return str(item.serialize())


def _normalized(text: str) -> str:
    lines = text.replace("\r\n", "\n").replace("\r", "\n").strip("\n").split("\n")
    return "\r\n".join(lines) + "\r\n"


class Storage(storage.BaseStorage):
    # Clients choose hrefs such as "urn:uuid:1234.vcf" or non-ASCII names;
    # Radicale refuses those paths unless the storage declares support.
    _supports_unicode = True
    _supports_problematic_chars = True

    def __init__(self, configuration: Any) -> None:
        super().__init__(configuration)
        self._gateway = gateway_for(configuration)

    def _principal(self, user: str) -> Principal | None:
        request = context.state()
        principal = request.principal if request is not None else None
        if principal is None or not user or principal.user != user:
            return None
        return principal

    def discover(
        self,
        path: str,
        depth: str = "0",
        child_context_manager: Any = None,
        user_groups: Any = None,
    ) -> Iterator[Any]:
        request = context.state()
        user = request.principal.user if request and request.principal else ""
        principal = self._principal(user)
        sane = pathutils.strip_path(pathutils.sanitize_path(path))
        parts = sane.split("/") if sane else []

        if not parts:
            yield _Folder("")
            if depth != "0" and principal is not None:
                yield _Folder(principal.user)
            return
        if principal is None or parts[0] != principal.user:
            return
        if len(parts) == 1:
            yield _Folder(principal.user)
            if depth != "0":
                yield AddressBook(self._gateway, principal)
            return
        if parts[1] != BOOK or len(parts) > 3:
            return
        book = AddressBook(self._gateway, principal)
        if len(parts) == 2:
            yield book
            if depth != "0":
                yield from book.get_all()
            return
        card = book.view().cards.get(parts[2])
        if card is not None:
            yield book.item(card)

    @contextlib.contextmanager
    def acquire_lock(
        self, mode: str, user: str = "", *args: Any, **kwargs: Any
    ) -> Iterator[None]:
        # No global lock: the upstream orders writes, and each request works
        # on its own view.
        yield

    def create_collection(self, href: str, items: Any = None, props: Any = None) -> Any:
        refuse(
            403,
            "This server has one address book per user, /<user>/contacts/; "
            "it cannot create or replace collections.",
        )
        raise ValueError("Collections cannot be created")

    def move(self, item: Any, to_collection: Any, to_href: str) -> None:
        if not isinstance(to_collection, AddressBook) or (
            item.collection is None or item.collection.path != to_collection.path
        ):
            refuse(403, "Cards can only move within the same address book.")
            raise ValueError("Move across collections refused")
        to_collection.move_card(item.href, to_href)

    def verify(self) -> bool:
        return True

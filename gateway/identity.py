"""Who a CardDAV user is upstream, and the one access policy.

Two ways to map users to the directory's identities:

- *directory mode*: the gateway holds an admin key; passwords are checked
  elsewhere (an htpasswd file) and a mapping file names the agent identity
  (by handle) or ``admin`` for each user;
- *key mode*: the password is the user's own API key, checked with
  ``GET /api/whoami`` and cached by a hash of the key (never the key).
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cachetools import TTLCache

from gateway.client import ContactsAPIError, ContactsClient, NotFound, Unauthorized

logger = logging.getLogger(__name__)

ADMIN = "admin"
_MAP_LINE = re.compile(r"^\s*([^=#\s][^=]*?)\s*=\s*(\S+)\s*$")


@dataclass(frozen=True)
class Principal:
    """One authenticated CardDAV user and the upstream identity behind it."""

    user: str
    organization_id: str
    identity_id: str | None
    handle: str | None
    api_key: str = field(repr=False)

    @property
    def is_admin(self) -> bool:
        return self.identity_id is None

    @property
    def credential(self) -> str:
        """A stable, non-secret name of the upstream credential."""
        return hashlib.sha256(self.api_key.encode("utf-8")).hexdigest()


def can_see(principal: Principal, contact: Mapping[str, Any]) -> bool:
    """Return whether the contact's access rows let the principal see it.

    Administrators see everything; an agent sees a contact whose rows are
    the wildcard or name its identity.
    """
    if principal.is_admin:
        return True
    return any(
        row.get("identity_id") in (None, principal.identity_id)
        for row in contact.get("access") or []
    )


class IdentityMapError(ValueError):
    """The identity mapping file cannot be read."""


def read_identity_map(path: str | Path) -> dict[str, str]:
    """Read ``user = handle`` (or ``user = admin``) lines; ``#`` starts a comment."""
    mapping: dict[str, str] = {}
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise IdentityMapError(
            f"Cannot read identity map {str(path)!r}: {exc}"
        ) from exc
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _MAP_LINE.match(line)
        if match is None:
            raise IdentityMapError(
                f"Line {number} of identity map {str(path)!r} is not "
                f"'user = handle': {line!r}"
            )
        mapping[match.group(1)] = match.group(2)
    return mapping


class DirectoryIdentities:
    """Directory mode: users map to identities by a file; one admin key upstream."""

    def __init__(
        self,
        client: ContactsClient,
        admin_key: str,
        mapping: Mapping[str, str],
        ttl: float = 300.0,
    ) -> None:
        self._client = client
        self._admin_key = admin_key
        self._mapping = dict(mapping)
        self._organization_id: str | None = None
        self._identities: TTLCache[str, Principal | None] = TTLCache(1024, ttl)
        self._lock = threading.Lock()

    def organization_id(self) -> str:
        if self._organization_id is None:
            self._organization_id = str(self._client.whoami()["organization_id"])
        return self._organization_id

    def principal(self, user: str) -> Principal | None:
        """Return the principal of a user whose password was already checked."""
        handle = self._mapping.get(user)
        if handle is None:
            logger.warning("Refusing user %r: not in the identity map", user)
            return None
        with self._lock:
            if user in self._identities:
                return self._identities[user]
        principal = self._resolve(user, handle)
        with self._lock:
            self._identities[user] = principal
        return principal

    def _resolve(self, user: str, handle: str) -> Principal | None:
        organization_id = self.organization_id()
        if handle == ADMIN:
            return Principal(user, organization_id, None, None, self._admin_key)
        try:
            identity = self._client.get_identity(handle)
        except NotFound:
            logger.warning(
                "Refusing user %r: identity %r not found upstream", user, handle
            )
            return None
        return Principal(
            user, organization_id, str(identity["id"]), handle, self._admin_key
        )


class KeyIdentities:
    """Key mode: the password is the user's own API key."""

    def __init__(self, client: ContactsClient, ttl: float = 60.0) -> None:
        self._client = client
        self._checked: TTLCache[str, dict[str, Any] | None] = TTLCache(4096, ttl)
        self._lock = threading.Lock()

    def login(self, user: str, api_key: str) -> Principal | None:
        """Return the principal for a user and key, or None to refuse."""
        if not api_key:
            return None
        digest = hashlib.sha256(api_key.encode("utf-8")).hexdigest()
        with self._lock:
            cached = self._checked.get(digest, ...)
        if cached is ...:
            cached = self._whoami(api_key)
            with self._lock:
                self._checked[digest] = cached
        if cached is None:
            return None

        subtype = cached.get("auth_subtype")
        organization_id = str(cached["organization_id"])
        if subtype == "api_key.admin_scoped":
            return Principal(user, organization_id, None, None, api_key)
        if subtype != "api_key.agent_scoped.claimed":
            logger.warning("Refusing user %r: key is %s", user, subtype)
            return None
        handle = cached.get("agent_handle")
        if handle is not None and handle != user:
            logger.warning(
                "Refusing user %r: the key belongs to identity %r", user, handle
            )
            return None
        return Principal(
            user, organization_id, str(cached["identity_id"]), handle, api_key
        )

    def _whoami(self, api_key: str) -> dict[str, Any] | None:
        try:
            return self._client.with_key(api_key).whoami()
        except ValueError:
            # Not a key at all (not printable ASCII, so not sendable).
            return None
        except Unauthorized:
            return None
        except ContactsAPIError as exc:
            if exc.status_code == 403:
                return None
            raise

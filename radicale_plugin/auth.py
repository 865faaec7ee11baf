"""Radicale auth plugin: CardDAV users become principals of the directory.

In directory mode the password is checked by Radicale's htpasswd backend
(``[auth] htpasswd_filename``) and the identity map names the user's
identity. In key mode the password is the user's own API key.

Radicale turns its login cache off for plugin auth types, and a password
hash check costs up to a second by design, so successful logins are cached
here for ``[auth] login_cache_seconds`` (default 60), keyed by a hash of the
user and password (never the password).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from typing import Any

from cachetools import TTLCache
from radicale import auth
from radicale.auth import htpasswd

from gateway.identity import Principal
from radicale_plugin import context
from radicale_plugin.runtime import gateway_for
from radicale_plugin.storage import translated_errors

logger = logging.getLogger("radicale.inkbox.auth")


def _cache_seconds(configuration: Any) -> float:
    try:
        return float(configuration.get("auth", "login_cache_seconds"))
    except KeyError:
        return 60.0


class Auth(auth.BaseAuth):
    def __init__(self, configuration: Any) -> None:
        super().__init__(configuration)
        self._gateway = gateway_for(configuration)
        self._passwords: htpasswd.Auth | None = None
        if self._gateway.mode == "directory":
            self._passwords = htpasswd.Auth(configuration)
        self._logins: TTLCache[str, Principal] = TTLCache(
            4096, _cache_seconds(configuration)
        )
        self._lock = threading.Lock()

    def _login(self, login: str, password: str) -> str:
        digest = hashlib.sha256(f"{login}\0{password}".encode()).hexdigest()
        with self._lock:
            principal = self._logins.get(digest)
        if principal is None:
            # The first login asks the upstream who the user is: when it is
            # down, answer 503 with Retry-After, not Radicale's bare 500.
            with translated_errors():
                principal = self._check(login, password)
            if principal is None:
                return ""
            with self._lock:
                self._logins[digest] = principal
        request = context.state()
        if request is not None:
            request.principal = principal
        return login

    def _check(self, login: str, password: str) -> Principal | None:
        if self._passwords is not None:
            assert self._gateway.directory_identities is not None
            if self._passwords._login(login, password) != login:
                return None
            return self._gateway.directory_identities.principal(login)
        assert self._gateway.key_identities is not None
        return self._gateway.key_identities.login(login, password)

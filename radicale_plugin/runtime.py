"""The gateway core behind the plugins, built once from the configuration.

Radicale creates its auth, rights and storage plugins separately from the
same configuration; they share one client, state store, directory and
identity resolver through ``gateway_for``.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.client import ContactsClient
from gateway.directory import Directory
from gateway.identity import DirectoryIdentities, KeyIdentities, read_identity_map
from gateway.keep import PHOTO_CAP
from gateway.state import StateStore

MODES = ("directory", "key")


class ConfigurationError(ValueError):
    """The gateway options in the Radicale configuration are unusable."""


@dataclass
class Gateway:
    mode: str
    client: ContactsClient
    state: StateStore
    directory: Directory
    directory_identities: DirectoryIdentities | None
    key_identities: KeyIdentities | None


_gateways: dict[tuple[str, ...], Gateway] = {}
_lock = threading.Lock()


def _option(configuration: Any, name: str, default: str = "") -> str:
    try:
        value = configuration.get("storage", name)
    except KeyError:
        return default
    return default if value is None else str(value)


def _admin_key(configuration: Any) -> str:
    key_file = _option(configuration, "api_key_file")
    if key_file:
        try:
            return Path(key_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigurationError(
                f"Cannot read [storage] api_key_file {key_file!r}: {exc}"
            ) from exc
    return _option(configuration, "api_key") or os.environ.get("INKBOX_API_KEY", "")


def gateway_for(configuration: Any) -> Gateway:
    """Return the gateway core for this configuration, building it once."""
    options = (
        "api_url",
        "api_key",
        "api_key_file",
        "identity_mode",
        "identity_map",
        "state_database",
        "cache_max_age",
        "new_contacts",
        "default_region",
        "vcard_version",
        "timeout",
        "retries",
        "photo_cap",
    )
    key = tuple(_option(configuration, name) for name in options)
    with _lock:
        if key not in _gateways:
            _gateways[key] = _build(configuration)
        return _gateways[key]


def _build(configuration: Any) -> Gateway:
    api_url = _option(configuration, "api_url")
    if not api_url:
        raise ConfigurationError("Set [storage] api_url to the Contacts API root.")
    mode = _option(configuration, "identity_mode", "directory")
    if mode not in MODES:
        raise ConfigurationError(
            f"Invalid [storage] identity_mode {mode!r}: expected directory or key."
        )
    new_contacts = _option(configuration, "new_contacts", "everyone")
    if new_contacts not in ("everyone", "creator"):
        raise ConfigurationError(
            f"Invalid [storage] new_contacts {new_contacts!r}: "
            "expected everyone or creator."
        )
    version = _option(configuration, "vcard_version", "3.0")
    if version not in ("3.0", "4.0"):
        raise ConfigurationError(
            f"Invalid [storage] vcard_version {version!r}: expected 3.0 or 4.0."
        )
    try:
        max_age = float(_option(configuration, "cache_max_age", "5"))
        timeout = float(_option(configuration, "timeout", "10"))
        retries = int(_option(configuration, "retries", "2"))
        photo_cap = int(_option(configuration, "photo_cap", str(PHOTO_CAP)))
    except ValueError as exc:
        raise ConfigurationError(f"Invalid number in [storage]: {exc}") from exc

    admin_key = _admin_key(configuration)
    if mode == "directory" and not admin_key:
        raise ConfigurationError(
            "Directory mode needs the upstream admin key: set [storage] "
            "api_key_file (or api_key, or INKBOX_API_KEY)."
        )
    client = ContactsClient(api_url, admin_key, timeout=timeout, retries=retries)
    state = StateStore(
        _option(configuration, "state_database", "sqlite:///data/gateway.db")
    )
    directory = Directory(
        client,
        state,
        max_age=max_age,
        new_contacts="creator" if new_contacts == "creator" else "everyone",
        default_region=_option(configuration, "default_region") or None,
        card_version="4.0" if version == "4.0" else "3.0",
        photo_cap=photo_cap,
    )
    directory_identities = key_identities = None
    if mode == "directory":
        map_file = _option(configuration, "identity_map")
        if not map_file:
            raise ConfigurationError(
                "Directory mode needs [storage] identity_map, a file of "
                "'user = handle' lines."
            )
        directory_identities = DirectoryIdentities(
            client, admin_key, read_identity_map(map_file)
        )
    else:
        key_identities = KeyIdentities(client)
    return Gateway(mode, client, state, directory, directory_identities, key_identities)

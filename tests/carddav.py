"""Fixtures for the CardDAV gateway: a real gateway process per organization.

The gateway runs as ``inkbox-carddav serve`` in front of the session's
Contacts API process (SQLite), with users ``alice`` and ``bob`` (agents) and
``boss`` (admin) in directory mode, or the same users logging in with their
own API keys in key mode.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import httpx
import pytest

from tests.conftest import CLIENT_TIMEOUT, Org, Server, make_org, start_process, stop

PASSWORDS = {"alice": "alice-secret", "bob": "bob-secret", "boss": "boss-secret"}
IDENTITIES = {"alice": "alice", "bob": "bob", "boss": "admin"}
NS = {
    "D": "DAV:",
    "CR": "urn:ietf:params:xml:ns:carddav",
    "CS": "http://calendarserver.org/ns/",
}


@dataclass
class Gateway:
    """A running gateway for one organization, with a client per user."""

    server: Server
    org: Org
    mode: str
    passwords: dict[str, str]
    clients: dict[str, httpx.Client] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.server.url

    def client(self, user: str, password: str | None = None) -> httpx.Client:
        """Return an httpx client logged in as ``user``."""
        key = f"{user}:{password}" if password is not None else user
        if key not in self.clients:
            self.clients[key] = httpx.Client(
                base_url=self.url,
                auth=(user, password if password is not None else self.passwords[user]),
                timeout=CLIENT_TIMEOUT,
            )
        return self.clients[key]

    def book(self, user: str) -> str:
        return f"/{user}/contacts/"

    def close(self) -> None:
        for client in self.clients.values():
            client.close()
        stop(self.server)


def free_port() -> int:
    """Return a loopback port that is free now (Radicale refuses port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _htpasswd(passwords: dict[str, str]) -> str:
    from passlib.hash import sha256_crypt

    # Few rounds: these are test passwords, and the hash is checked once
    # per user thanks to the gateway's login cache.
    hasher = sha256_crypt.using(rounds=1000)
    return "".join(f"{user}:{hasher.hash(pw)}\n" for user, pw in passwords.items())


def start_gateway(
    api: Server,
    org: Org,
    folder: Path,
    *,
    mode: str = "directory",
    storage: dict[str, str] | None = None,
) -> Gateway:
    """Write a configuration for ``org`` and start a gateway process."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "users").write_text(_htpasswd(PASSWORDS), encoding="utf-8")
    (folder / "identities").write_text(
        "".join(f"{u} = {h}\n" for u, h in IDENTITIES.items()), encoding="utf-8"
    )
    (folder / "admin.key").write_text(org.keys["admin"], encoding="utf-8")
    options = {
        "type": "radicale_plugin.storage",
        "api_url": api.url,
        "identity_mode": mode,
        "identity_map": str(folder / "identities"),
        "api_key_file": str(folder / "admin.key"),
        "state_database": f"sqlite:///{folder / 'gateway.db'}",
        **(storage or {}),
    }
    sections: dict[str, dict[str, str]] = {
        "server": {"delay_on_error": "0"},
        "auth": {
            "type": "radicale_plugin.auth",
            "htpasswd_filename": str(folder / "users"),
            "htpasswd_encryption": "autodetect",
            "delay": "0",
        },
        "rights": {
            "type": "radicale_plugin.rights",
            "permit_delete_collection": "False",
            "permit_overwrite_collection": "False",
        },
        "storage": options,
        "web": {"type": "none"},
        "sharing": {"type": "none"},
        "logging": {"level": "info"},
    }
    config = folder / "radicale.conf"
    config.write_text(
        "".join(
            f"[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in values.items()) + "\n"
            for name, values in sections.items()
        ),
        encoding="utf-8",
    )
    command = [
        sys.executable,
        "-m",
        "contacts_api.cli",
        "serve",
        "--config",
        str(config),
        "--port",
        str(free_port()),
    ]
    server = start_process(command, r"Listening on '(127\.0\.0\.1:\d+)'")
    server.url = f"http://{server.url}"
    passwords = dict(PASSWORDS)
    if mode == "key":
        passwords = {
            "alice": org.keys["alice"],
            "bob": org.keys["bob"],
            "boss": org.keys["admin"],
        }
    return Gateway(server, org, mode, passwords)


@pytest.fixture(scope="session")
def sqlite_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A Contacts API process on SQLite for the gateway tests."""
    from tests.conftest import start_api

    path = tmp_path_factory.mktemp("gateway-api") / "contacts.db"
    server = start_api(f"sqlite:///{path}")
    yield server
    stop(server)


@pytest.fixture
def directory_org(sqlite_api: Server) -> Iterator[Org]:
    org = make_org(sqlite_api)
    yield org
    org.close()


@pytest.fixture
def gateway(
    sqlite_api: Server, directory_org: Org, tmp_path: Path
) -> Iterator[Gateway]:
    """A gateway in directory mode for a fresh organization."""
    running = start_gateway(sqlite_api, directory_org, tmp_path / "gateway")
    yield running
    running.close()


def multistatus(response: httpx.Response) -> dict[str, dict[str, Any]]:
    """Parse a 207 body into ``{href: {"status": ..., "props": {tag: element}}}``."""
    assert response.status_code == 207, response.text
    root = ElementTree.fromstring(response.content)
    result: dict[str, dict[str, Any]] = {}
    for entry in root.findall("D:response", NS):
        href = entry.findtext("D:href", namespaces=NS) or ""
        props: dict[str, Any] = {}
        status = entry.findtext("D:status", namespaces=NS)
        for propstat in entry.findall("D:propstat", NS):
            code = propstat.findtext("D:status", namespaces=NS) or ""
            if " 200 " in code:
                for prop in propstat.find("D:prop", NS) or []:
                    props[prop.tag] = prop
        result[href] = {"status": status, "props": props}
    return result


def card(uid: str, name: str, *lines: str, version: str = "3.0") -> str:
    """Return a minimal vCard with CRLF line endings."""
    family, _, given = name.partition(" ")
    body = [
        "BEGIN:VCARD",
        f"VERSION:{version}",
        f"UID:{uid}",
        f"FN:{name}",
        f"N:{given};{family};;;",
        *lines,
        "END:VCARD",
    ]
    return "\r\n".join(body) + "\r\n"

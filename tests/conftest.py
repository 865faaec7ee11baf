"""Shared fixtures: a real Contacts API process on loopback, per database.

Every API test runs against SQLite and PostgreSQL. When no PostgreSQL
server is reachable the PostgreSQL half is skipped with the reason, except
under CI (``CI`` set), where a missing server is an error.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from contacts_api import admin
from contacts_api.db import Database

# Fixtures of the CardDAV gateway (gateway processes per organization).
pytest_plugins = ("tests.carddav",)

JWT_SECRET = "test-secret-for-people-tokens-0123456789"
POSTGRES_URL = os.environ.get(
    "INKBOX_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
STARTUP_SECONDS = 60
# A 1000-card import takes seconds on a loaded two-core machine.
CLIENT_TIMEOUT = httpx.Timeout(120.0, connect=10.0)


@dataclass
class Server:
    """A running Contacts API process and what it logged."""

    url: str
    database_url: str
    process: subprocess.Popen[str]
    log: list[str] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)
    reader: threading.Thread | None = None

    def database(self) -> Database:
        return Database(self.database_url)

    def wait_for_log(self, needle: str, timeout: float = 10.0) -> str:
        """Return the log once it contains ``needle`` (or when time runs out)."""
        with self.changed:
            self.changed.wait_for(lambda: needle in "".join(self.log), timeout)
            return "".join(self.log)


def _postgres_database(request: pytest.FixtureRequest) -> str:
    """Create a throw-away PostgreSQL database and return its URL."""
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - the test extra installs it
        _unavailable(f"psycopg is not installed ({exc})")
    plain = POSTGRES_URL.replace("postgresql+psycopg://", "postgresql://")
    try:
        admin_conn = psycopg.connect(plain, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        _unavailable(f"no PostgreSQL server at {POSTGRES_URL}: {exc}".strip())
    name = f"inkbox_test_{uuid.uuid4().hex[:12]}"
    admin_conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        admin_conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin_conn.close()

    request.addfinalizer(drop)
    return POSTGRES_URL.rsplit("/", 1)[0] + "/" + name


def _unavailable(reason: str) -> Any:
    if os.environ.get("CI"):
        pytest.fail(f"PostgreSQL is required under CI: {reason}")
    pytest.skip(f"PostgreSQL tests skipped: {reason}")


def start_process(command: list[str], ready: str) -> Server:
    """Start a server process and wait for the log line that gives its URL.

    ``ready`` is a regular expression whose first group is the URL; reading
    the output line by line is the readiness signal (no polling).
    """
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=Path(__file__).parent.parent,
    )
    assert process.stdout is not None
    log: list[str] = []
    deadline = time.monotonic() + STARTUP_SECONDS
    url = None
    for line in process.stdout:
        log.append(line)
        found = re.search(ready, line)
        if found:
            url = found.group(1)
            break
        if time.monotonic() > deadline:
            break
    if url is None:
        process.kill()
        process.wait()
        process.stdout.close()
        raise RuntimeError("Server did not start:\n" + "".join(log))
    server = Server(url=url, database_url="", process=process, log=log)

    def drain() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            with server.changed:
                log.append(line)
                server.changed.notify_all()

    server.reader = threading.Thread(target=drain, daemon=True)
    server.reader.start()
    return server


def start_api(database_url: str, *extra: str) -> Server:
    """Start ``inkbox-carddav api`` on a free loopback port and wait until ready."""
    command = [
        sys.executable,
        "-m",
        "contacts_api.cli",
        "api",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--database",
        database_url,
        "--jwt-secret",
        JWT_SECRET,
        *extra,
    ]
    server = start_process(command, r"running on (http://127\.0\.0\.1:\d+)")
    server.database_url = database_url
    return server


def stop(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
    if server.reader is not None:
        server.reader.join(timeout=15)
    if server.process.stdout is not None:
        server.process.stdout.close()


@pytest.fixture(
    scope="session",
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
def api_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """Yield a running Contacts API process on SQLite or PostgreSQL."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("sqlite") / "contacts.db"
        database_url = f"sqlite:///{path}"
    else:
        database_url = _postgres_database(request)
    server = start_api(database_url)
    yield server
    stop(server)


@dataclass
class Org:
    """A fresh organization with an admin, two agents and an unclaimed key.

    Clients: ``admin`` (admin key), ``alice`` and ``bob`` (claimed agent
    keys), ``carol_unclaimed`` (an unclaimed agent key), ``human`` (a signed
    token of a person of the organization) and ``anonymous`` (no credential).
    """

    id: str
    name: str
    server: Server
    identities: dict[str, str]
    keys: dict[str, str]
    clients: dict[str, httpx.Client]

    def __getattr__(self, name: str) -> httpx.Client:
        try:
            return self.clients[name]
        except KeyError:
            raise AttributeError(name) from None

    def close(self) -> None:
        for client in self.clients.values():
            client.close()

    def client_for_key(self, key: str) -> httpx.Client:
        client = httpx.Client(
            base_url=self.server.url,
            headers={"X-API-Key": key},
            timeout=CLIENT_TIMEOUT,
        )
        self.clients[f"extra-{len(self.clients)}"] = client
        return client

    def new_identity(self, handle: str) -> str:
        db = self.server.database()
        try:
            identity = admin.create_identity(db, self.id, handle)
        finally:
            db.dispose()
        self.identities[handle] = identity["id"]
        return str(identity["id"])

    def new_agent_key(self, handle: str, unclaimed: bool = False) -> str:
        db = self.server.database()
        try:
            key = admin.create_key(db, self.id, identity=handle, unclaimed=unclaimed)
        finally:
            db.dispose()
        return str(key["key"])


def human_token(organization_id: str, secret: str = JWT_SECRET, **claims: Any) -> str:
    payload = {"sub": "person-1", "organization_id": organization_id, **claims}
    return jwt.encode(payload, secret, algorithm="HS256")


def make_org(server: Server, name: str | None = None) -> Org:
    db = server.database()
    try:
        name = name or f"org-{uuid.uuid4().hex[:8]}"
        org_id = admin.create_organization(db, name)["id"]
        identities = {
            handle: admin.create_identity(db, org_id, handle)["id"]
            for handle in ("alice", "bob", "carol")
        }
        keys = {
            "admin": admin.create_key(db, org_id, admin=True, label="tests")["key"],
            "alice": admin.create_key(db, org_id, identity="alice")["key"],
            "bob": admin.create_key(db, org_id, identity="bob")["key"],
            "carol_unclaimed": admin.create_key(
                db, org_id, identity="carol", unclaimed=True
            )["key"],
        }
    finally:
        db.dispose()
    clients = {
        role: httpx.Client(
            base_url=server.url, headers={"X-API-Key": key}, timeout=CLIENT_TIMEOUT
        )
        for role, key in keys.items()
    }
    clients["human"] = httpx.Client(
        base_url=server.url,
        headers={"Authorization": f"Bearer {human_token(org_id)}"},
        timeout=CLIENT_TIMEOUT,
    )
    clients["anonymous"] = httpx.Client(base_url=server.url, timeout=CLIENT_TIMEOUT)
    return Org(org_id, name, server, identities, keys, clients)


@pytest.fixture
def org(api_server: Server) -> Iterator[Org]:
    """Yield a fresh organization on the running API."""
    made = make_org(api_server)
    yield made
    made.close()


def new_contact(client: httpx.Client, **fields: Any) -> dict[str, Any]:
    """Create a contact and return it; fail the test on any error."""
    body = {"given_name": "Test", **fields}
    response = client.post("/api/v1/contacts", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def visible_ids(client: httpx.Client) -> set[str]:
    """Return the ids of every contact the client can list."""
    response = client.get("/api/v1/contacts", params={"limit": 1000})
    assert response.status_code == 200, response.text
    return {item["id"] for item in response.json()["items"]}

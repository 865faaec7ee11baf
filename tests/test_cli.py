"""The ``inkbox-carddav`` command line, run as a real process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from tests.conftest import Server, make_org, start_api, stop


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "contacts_api.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).parent.parent,
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def _json(*args: str) -> Any:
    return json.loads(_run(*args).stdout)


@pytest.fixture
def database(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


def test_admin_commands_print_json_and_issue_working_keys(database: str) -> None:
    org = _json("admin", "org", "create", "Acme", "--database", database)
    identity = _json(
        "admin", "identity", "create", "--org", "Acme", "scout", "--database", database
    )
    admin_key = _json(
        "admin", "key", "create", "--org", org["id"], "--admin", "--database", database
    )
    agent_key = _json(
        "admin",
        "key",
        "create",
        "--org",
        "Acme",
        "--identity",
        "scout",
        "--database",
        database,
    )
    unclaimed = _json(
        "admin",
        "key",
        "create",
        "--org",
        "Acme",
        "--identity",
        "scout",
        "--unclaimed",
        "--database",
        database,
    )
    server = start_api(database)

    try:
        with httpx.Client(base_url=server.url) as client:
            whoami = [
                client.get("/api/whoami", headers={"X-API-Key": key["key"]}).json()
                for key in (admin_key, agent_key, unclaimed)
            ]
    finally:
        stop(server)

    assert org["name"] == "Acme"
    assert identity["agent_handle"] == "scout"
    assert identity["organization_id"] == org["id"]
    assert [w["auth_subtype"] for w in whoami] == [
        "api_key.admin_scoped",
        "api_key.agent_scoped.claimed",
        "api_key.agent_scoped.unclaimed",
    ]
    assert whoami[1]["identity_id"] == identity["id"]


def test_keys_are_stored_only_as_hashes(database: str) -> None:
    _json("admin", "org", "create", "Acme", "--database", database)
    key = _json(
        "admin", "key", "create", "--org", "Acme", "--admin", "--database", database
    )

    stored = Path(database.removeprefix("sqlite:///")).read_bytes()

    assert key["key"].encode() not in stored


@pytest.mark.parametrize(
    "args",
    [
        ("admin", "identity", "create", "--org", "Nowhere", "x"),
        ("admin", "key", "create", "--org", "Nowhere", "--admin"),
        ("admin", "key", "create", "--org", "Acme", "--identity", "ghost"),
        ("admin", "identity", "create", "--org", "Acme", "bad:handle"),
    ],
)
def test_admin_errors_exit_1_with_message(database: str, args: tuple[str, ...]) -> None:
    _json("admin", "org", "create", "Acme", "--database", database)

    result = _run(*args, "--database", database, check=False)

    assert result.returncode == 1
    assert result.stderr.startswith("error: ")
    assert result.stdout == ""


def test_import_command_migrates_file_and_reports_rejected_cards(
    api_server: Server, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    org = make_org(api_server)
    request.addfinalizer(org.close)
    cards = []
    for index in range(2100):
        name = f"FN:Person {index:04}" if index % 700 != 5 else "N:;;;;"
        cards.append(f"BEGIN:VCARD\r\nVERSION:3.0\r\n{name}\r\nEND:VCARD\r\n")
    path = tmp_path / "book.vcf"
    path.write_text("".join(cards), encoding="utf-8")

    result = _run(
        "import",
        str(path),
        "--url",
        api_server.url,
        "--api-key",
        org.keys["admin"],
        check=False,
    )
    listed = org.admin.get("/api/v1/contacts", params={"limit": 1000, "offset": 0})
    second = org.admin.get("/api/v1/contacts", params={"limit": 1000, "offset": 1000})
    third = org.admin.get("/api/v1/contacts", params={"limit": 1000, "offset": 2000})

    assert result.returncode == 1
    assert "Imported 2097 contacts; 3 rejected" in result.stderr
    for index in (5, 705, 1405):
        assert f"#{index} " in result.stderr
    total = sum(len(r.json()["items"]) for r in (listed, second, third))
    assert total == 2097
    assert org.keys["admin"] not in result.stderr + result.stdout


def test_api_verifies_rs256_tokens_with_the_public_key(
    database: str, tmp_path: Path
) -> None:
    """An RS256-configured server accepts tokens of the private key only."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    key_file = tmp_path / "public.pem"
    key_file.write_bytes(public_pem)
    org = _json("admin", "org", "create", "Acme", "--database", database)
    claims = {"sub": "person-9", "organization_id": org["id"]}
    good = jwt.encode(claims, private, algorithm="RS256")
    # A server configured for RS256 must not accept an HS256 token at all
    # (the algorithm-confusion forgery).
    forged = jwt.encode(claims, "an-hmac-secret-" * 3, algorithm="HS256")
    server = start_api(database, "--jwt-public-key", str(key_file))

    try:
        with httpx.Client(base_url=server.url) as client:
            statuses = [
                client.get(
                    "/api/v1/contacts", headers={"Authorization": f"Bearer {token}"}
                ).status_code
                for token in (good, forged)
            ]
            whoami = client.get(
                "/api/whoami", headers={"Authorization": f"Bearer {good}"}
            ).json()
    finally:
        stop(server)

    assert statuses == [200, 401]
    assert whoami["user_id"] == "person-9"


def test_api_refuses_database_of_another_schema_version(database: str) -> None:
    from sqlalchemy import update

    from contacts_api.db import Database, SchemaInfo

    db = Database(database)
    db.create_schema()
    with db.write() as session:
        session.execute(update(SchemaInfo).values(version=99))
    db.dispose()

    result = _run("admin", "org", "list", "--database", database, check=False)

    assert result.returncode != 0
    assert "schema version 99 is not supported" in result.stderr


def test_serve_with_missing_admin_key_file_exits_2_with_one_line(
    tmp_path: Path,
) -> None:
    config = tmp_path / "radicale.conf"
    config.write_text(
        "[auth]\ntype = radicale_plugin.auth\n"
        "[rights]\ntype = radicale_plugin.rights\n"
        "[storage]\ntype = radicale_plugin.storage\n"
        "api_url = http://127.0.0.1:9\n"
        f"api_key_file = {tmp_path / 'missing.key'}\n"
        f"identity_map = {tmp_path / 'identities'}\n",
        encoding="utf-8",
    )

    result = _run("serve", "--config", str(config), "--port", "5399", check=False)

    assert result.returncode == 2
    assert result.stderr.startswith("error: Cannot read [storage] api_key_file")
    assert "Traceback" not in result.stderr

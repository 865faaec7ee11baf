"""The ``inkbox-carddav`` command line, run as a real process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
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

"""Two-way sync of alice's address book with a local vdir, by the vdirsyncer CLI.

vdirsyncer runs as a subprocess with its own configuration: a ``filesystem``
storage (one ``.vcf`` file per card) paired with the gateway's book as a
``carddav`` storage, ``collections = null`` so that discovery asks nothing.
What each run did is read from its log lines ("Copying (uploading) item X
to gateway", "Deleting item X from local"); what the sides hold is read
from the folder, from the gateway and from the Contacts API.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.carddav import Gateway, card, multistatus
from tests.conftest import Org

VDIRSYNCER = Path(sys.executable).with_name("vdirsyncer")
RUN_SECONDS = 120
ACTION = re.compile(
    r"^(?:Copying \((?P<copy>uploading|updating)\)|(?P<delete>Deleting)) "
    r"item (?P<ident>\S+) (?:to|from) (?P<storage>\S+)$"
)
QUERY_ALL = (
    '<?xml version="1.0" encoding="utf-8"?>'
    '<CR:addressbook-query xmlns:D="DAV:" xmlns:CR="urn:ietf:params:xml:ns:carddav">'
    "<D:prop><CR:address-data/></D:prop>"
    '<CR:filter><CR:prop-filter name="UID"/></CR:filter></CR:addressbook-query>'
)


@dataclass
class Pair:
    """A vdirsyncer configuration pairing a local folder with one user's book."""

    config: Path
    folder: Path

    def run(self, *arguments: str) -> set[tuple[str, str, str]]:
        """Run vdirsyncer; return its actions as ``(action, ident, storage)``."""
        finished = subprocess.run(
            [str(VDIRSYNCER), "-c", str(self.config), *arguments],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=RUN_SECONDS,
            check=False,
        )
        output = finished.stdout + finished.stderr
        assert finished.returncode == 0, output
        assert "error" not in output.lower(), output
        actions = set()
        for line in output.splitlines():
            found = ACTION.match(line.strip())
            if found:
                action = found["copy"] or "delete"
                actions.add((action, found["ident"], found["storage"]))
        return actions

    def cards(self) -> dict[str, dict[str, str]]:
        """Return the local cards' properties by UID (every file must have one)."""
        cards = {}
        for path in sorted(self.folder.glob("*.vcf")):
            props = _props(path.read_text(encoding="utf-8"))
            assert props.get("UID"), path
            assert props["UID"] not in cards, f"UID {props['UID']} twice"
            cards[props["UID"]] = props
        return cards

    def file_of(self, uid: str) -> Path:
        (path,) = (
            path
            for path in self.folder.glob("*.vcf")
            if _props(path.read_text(encoding="utf-8")).get("UID") == uid
        )
        return path


def _props(text: str) -> dict[str, str]:
    """Return ``{NAME: value}`` of a small vCard's unfolded lines (last one wins)."""
    unfolded = re.sub(r"\r?\n[ \t]", "", text)
    props = {}
    for line in unfolded.splitlines():
        name, _, value = line.partition(":")
        props[name.split(";")[0].upper()] = value
    return props


def _names(cards: dict[str, dict[str, str]]) -> dict[str, str]:
    return {uid: props["FN"] for uid, props in cards.items()}


def _served(gateway: Gateway, user: str) -> dict[str, dict[str, str]]:
    """Return the cards the gateway serves to ``user``, by UID."""
    response = gateway.client(user).request(
        "REPORT",
        f"/{user}/contacts/",
        content=QUERY_ALL.encode(),
        headers={"Depth": "1", "Content-Type": "application/xml; charset=utf-8"},
    )
    cards = {}
    for entry in multistatus(response).values():
        data = entry["props"].get("{urn:ietf:params:xml:ns:carddav}address-data")
        if data is not None:
            props = _props(data.text or "")
            assert props["UID"] not in cards, f"UID {props['UID']} twice"
            cards[props["UID"]] = props
    return cards


def _upstream(org: Org) -> dict[str, dict[str, Any]]:
    """Return every contact of the organization by id, as the admin sees it."""
    response = org.admin.get("/api/v1/contacts", params={"limit": 1000})
    assert response.status_code == 200, response.text
    return {item["id"]: item for item in response.json()["items"]}


def _create(org: Org, given: str, family: str, **fields: Any) -> str:
    body = {"given_name": given, "family_name": family, **fields}
    response = org.admin.post("/api/v1/contacts", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


@pytest.fixture
def pair(gateway: Gateway, tmp_path: Path) -> Pair:
    """A discovered vdirsyncer pair of ``tmp_path/contacts`` and alice's book."""
    folder = tmp_path / "contacts"
    folder.mkdir()
    config = tmp_path / "vdirsyncer.conf"
    config.write_text(
        "[general]\n"
        f'status_path = "{tmp_path / "status"}/"\n\n'
        "[pair book]\n"
        'a = "local"\n'
        'b = "gateway"\n'
        "collections = null\n\n"
        "[storage local]\n"
        'type = "filesystem"\n'
        f'path = "{folder}/"\n'
        'fileext = ".vcf"\n\n'
        "[storage gateway]\n"
        'type = "carddav"\n'
        f'url = "{gateway.url}/alice/contacts/"\n'
        'username = "alice"\n'
        f'password = "{gateway.passwords["alice"]}"\n',
        encoding="utf-8",
    )
    made = Pair(config, folder)
    made.run("discover")
    return made


@dataclass
class Scenario:
    """Ids and UIDs of the contacts of the two-way scenario."""

    ids: dict[str, str]

    def uid(self, name: str) -> str:
        return f"urn:uuid:{self.ids[name]}"


def _start(org: Org) -> Scenario:
    """Create four contacts alice sees and one she does not."""
    ids = {
        name: _create(org, name, family)
        for name, family in (
            ("Anna", "Archer"),
            ("Ben", "Baker"),
            ("Cleo", "Cole"),
            ("Dora", "Dunn"),
        )
    }
    ids["Hal"] = _create(
        org, "Hal", "Hidden", access_identity_ids=[org.identities["bob"]]
    )
    return Scenario(ids)


def _change_both_sides(gateway: Gateway, pair: Pair, scenario: Scenario) -> None:
    """Create, edit and delete one card locally and three others upstream."""
    org = gateway.org
    (pair.folder / "lars.vcf").write_text(
        card("lars-local", "Lars Lind", "EMAIL:lars@example.com"), encoding="utf-8"
    )
    anna = pair.file_of(scenario.uid("Anna"))
    text = anna.read_text(encoding="utf-8")
    anna.write_text(
        text.replace("FN:Anna Archer", "FN:Anna Archer-Smith").replace(
            "END:VCARD", "TITLE:Captain\nEND:VCARD"
        ),
        encoding="utf-8",
    )
    pair.file_of(scenario.uid("Ben")).unlink()

    created = gateway.client("bob").put(
        "/bob/contacts/sam.vcf",
        content=card("sam-server", "Sam Stone"),
        headers={"Content-Type": "text/vcard; charset=utf-8"},
    )
    edited = org.admin.patch(
        f"/api/v1/contacts/{scenario.ids['Cleo']}",
        json={"preferred_name": "Cleo Cole-Dean"},
    )
    deleted = gateway.client("boss").delete(
        f"/boss/contacts/{scenario.ids['Dora']}.vcf"
    )
    # Radicale answers a DELETE with 200 and a small multistatus body.
    statuses = (created.status_code, edited.status_code, deleted.status_code)
    assert statuses == (201, 200, 200)


def test_first_sync_downloads_every_visible_card(gateway: Gateway, pair: Pair) -> None:
    """Alice's two cards arrive as two files; bob's contact stays on the server."""
    org = gateway.org
    anna = _create(org, "Anna", "Archer")
    ben = _create(org, "Ben", "Baker")
    _create(org, "Hal", "Hidden", access_identity_ids=[org.identities["bob"]])

    actions = pair.run("sync")

    assert actions == {
        ("uploading", f"urn:uuid:{anna}", "local"),
        ("uploading", f"urn:uuid:{ben}", "local"),
    }
    assert len(list(pair.folder.iterdir())) == 2
    assert _names(pair.cards()) == {
        f"urn:uuid:{anna}": "Anna Archer",
        f"urn:uuid:{ben}": "Ben Baker",
    }


def test_sync_merges_changes_of_both_sides_without_loss_or_duplicates(
    gateway: Gateway, pair: Pair
) -> None:
    """Local create, edit and delete meet server create, edit and delete."""
    scenario = _start(gateway.org)
    pair.run("sync")
    _change_both_sides(gateway, pair, scenario)
    hidden_before = _upstream(gateway.org)[scenario.ids["Hal"]]

    actions = pair.run("sync")

    assert actions == {
        ("uploading", "lars-local", "gateway"),
        ("updating", scenario.uid("Anna"), "gateway"),
        ("delete", scenario.uid("Ben"), "gateway"),
        ("uploading", "sam-server", "local"),
        ("updating", scenario.uid("Cleo"), "local"),
        ("delete", scenario.uid("Dora"), "local"),
    }
    expected = {
        scenario.uid("Anna"): "Anna Archer-Smith",
        scenario.uid("Cleo"): "Cleo Cole-Dean",
        "lars-local": "Lars Lind",
        "sam-server": "Sam Stone",
    }
    assert _names(pair.cards()) == expected
    assert len(list(pair.folder.iterdir())) == 4
    assert _names(_served(gateway, "alice")) == expected
    upstream = _upstream(gateway.org)
    assert sorted(c["preferred_name"] for c in upstream.values()) == sorted(
        [*expected.values(), "Hal Hidden"]
    )
    assert upstream[scenario.ids["Anna"]]["job_title"] == "Captain"
    assert upstream[scenario.ids["Hal"]] == hidden_before
    (lars,) = (c for c in upstream.values() if c["preferred_name"] == "Lars Lind")
    assert [e["value"] for e in lars["emails"]] == ["lars@example.com"]


def test_sync_after_a_two_way_merge_changes_nothing(
    gateway: Gateway, pair: Pair
) -> None:
    scenario = _start(gateway.org)
    pair.run("sync")
    _change_both_sides(gateway, pair, scenario)
    pair.run("sync")
    files = {path.name: path.read_bytes() for path in pair.folder.iterdir()}
    upstream = _upstream(gateway.org)

    actions = pair.run("sync")

    assert actions == set()
    assert {path.name: path.read_bytes() for path in pair.folder.iterdir()} == files
    assert _upstream(gateway.org) == upstream


def test_sync_follows_access_changes_without_deleting_upstream(
    gateway: Gateway, pair: Pair
) -> None:
    """A revoked card leaves the folder but not the directory; a granted one arrives."""
    org = gateway.org
    scenario = _start(org)
    pair.run("sync")
    revoked = org.admin.delete(
        f"/api/v1/contacts/{scenario.ids['Anna']}/access/{org.identities['alice']}"
    )
    granted = org.admin.post(
        f"/api/v1/contacts/{scenario.ids['Hal']}/access",
        json={"identity_id": org.identities["alice"]},
    )

    actions = pair.run("sync")

    assert (revoked.status_code, granted.status_code) == (204, 201)
    assert actions == {
        ("delete", scenario.uid("Anna"), "local"),
        ("uploading", scenario.uid("Hal"), "local"),
    }
    assert set(pair.cards()) == {
        scenario.uid(name) for name in ("Ben", "Cleo", "Dora", "Hal")
    }
    assert set(_upstream(org)) == set(scenario.ids.values())
    assert _served(gateway, "bob").keys() >= {scenario.uid("Anna")}

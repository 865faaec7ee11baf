"""Several gateway processes of one organization share a PostgreSQL state store."""

from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree

import httpx
import pytest

from tests.carddav import NS, card, multistatus, start_gateway
from tests.conftest import Org, Server, _postgres_database
from tests.test_carddav_sync import SYNC

REPORT = {"Content-Type": "application/xml", "Depth": "1"}


def _sync_token(response: httpx.Response) -> str:
    assert response.status_code == 207, response.text
    token = ElementTree.fromstring(response.content).findtext(
        "D:sync-token", namespaces=NS
    )
    assert token
    return token


@pytest.mark.postgres
def test_two_gateways_share_hrefs_uids_and_sync_tokens(
    sqlite_api: Server,
    directory_org: Org,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    """A card PUT through one gateway is served by the other at the same href."""
    state = _postgres_database(request)
    first = start_gateway(
        sqlite_api, directory_org, tmp_path / "one", storage={"state_database": state}
    )
    request.addfinalizer(first.close)
    second = start_gateway(
        sqlite_api, directory_org, tmp_path / "two", storage={"state_database": state}
    )
    request.addfinalizer(second.close)
    href = "/alice/contacts/Chosen%20Name.vcf"

    put = first.client("alice").put(
        href, content=card("client-uid-1", "Shared Card", "EMAIL:s@example.com")
    )
    listed = multistatus(
        second.client("alice").request(
            "PROPFIND", "/alice/contacts/", headers={"Depth": "1"}
        )
    )
    got = second.client("alice").get(href)
    token = _sync_token(
        first.client("alice").request(
            "REPORT", "/alice/contacts/", content=SYNC.format(token=""), headers=REPORT
        )
    )
    again = second.client("alice").request(
        "REPORT", "/alice/contacts/", content=SYNC.format(token=token), headers=REPORT
    )

    assert put.status_code == 201
    assert href in listed
    assert got.status_code == 200
    assert "UID:client-uid-1\r\n" in got.text
    assert again.status_code == 207
    assert _sync_token(again) == token

"""vCard import and export through the real API process."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from gateway.vcard import MAPPED_FIELDS
from tests.conftest import Org, new_contact, visible_ids
from tests.test_api_contacts import RICH

VCARD = {"Content-Type": "text/vcard; charset=utf-8"}
MAPPED = MAPPED_FIELDS


def _card(*lines: str, version: str = "3.0") -> str:
    return "\r\n".join(["BEGIN:VCARD", f"VERSION:{version}", *lines, "END:VCARD"])


def _import(client: httpx.Client, body: str | bytes, **headers: str) -> httpx.Response:
    content = body.encode("utf-8") if isinstance(body, str) else body
    return client.post(
        "/api/v1/contacts/import", content=content, headers={**VCARD, **headers}
    )


def _mapped(contact: dict[str, Any]) -> dict[str, Any]:
    return {name: contact[name] for name in MAPPED}


def test_export_is_a_vcard_4_document(org: Org) -> None:
    contact = new_contact(org.admin, **RICH)

    response = org.admin.get(f"/api/v1/contacts/{contact['id']}.vcf")

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/vcard; charset=utf-8"
    text = response.text
    assert text.startswith("BEGIN:VCARD\r\nVERSION:4.0\r\n")
    assert text.rstrip("\r\n").endswith("END:VCARD")
    assert f"UID:urn:uuid:{contact['id']}" in text
    assert "FN:Dr. Ada King" in text


def test_export_then_import_gives_equal_contacts(org: Org) -> None:
    originals = [
        new_contact(org.admin, **RICH),
        new_contact(org.admin, given_name="Zoë", family_name="Ünal"),
        new_contact(
            org.admin,
            company_name="Comma, Semicolon; Backslash\\ Inc",
            notes="Multi\nline\nnote, with; specials\\",
            phones=[
                {"label": "work", "value_e164": "+442071234567", "is_primary": False},
                {"label": "fax", "value_e164": "+442071234568", "is_primary": True},
            ],
        ),
    ]
    exported = "".join(
        org.admin.get(f"/api/v1/contacts/{c['id']}.vcf").text for c in originals
    )

    response = _import(org.admin, exported)

    assert response.status_code == 200
    report = response.json()
    assert (report["created_count"], report["error_count"]) == (3, 0)
    imported = [result["contact"] for result in report["results"]]
    assert [_mapped(c) for c in imported] == [_mapped(c) for c in originals]
    assert {c["id"] for c in imported}.isdisjoint({c["id"] for c in originals})


def test_import_keeps_good_cards_and_reports_bad_ones_by_index(org: Org) -> None:
    stream = "\r\n".join(
        [
            _card("FN:Good One", "N:One;Good;;;", "EMAIL:one@example.com"),
            _card("N:;;;;", "EMAIL:nameless@example.com"),
            _card("FN:Bad Email", "EMAIL:not an email"),
            _card("FN:Good Two", "TEL:+15551234567"),
            "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:No End",
            _card("FN:Bad Phone", "TEL:12"),
            _card("FN:Good Three", version="4.0"),
        ]
    )

    response = _import(org.admin, stream)

    assert response.status_code == 200
    report = response.json()
    statuses = [(r["index"], r["status"]) for r in report["results"]]
    assert statuses == [
        (0, "created"),
        (1, "error"),
        (2, "error"),
        (3, "created"),
        (4, "error"),
        (5, "error"),
        (6, "created"),
    ]
    assert (report["created_count"], report["error_count"]) == (3, 4)
    errors = {r["index"]: r["error"] for r in report["results"] if "error" in r}
    assert "given_name" in errors[1]
    assert "not an email" in errors[2]
    assert "E.164" in errors[5]
    names = sorted(r["contact"]["preferred_name"] for r in report["results"][::3])
    assert names == ["Good One", "Good Three", "Good Two"]
    assert len(visible_ids(org.admin)) == 3


def test_import_accepts_text_x_vcard(org: Org) -> None:
    response = _import(
        org.admin, _card("FN:Legacy"), **{"Content-Type": "text/x-vcard"}
    )

    assert response.status_code == 200
    assert response.json()["created_count"] == 1


def test_imported_contacts_are_wildcard(org: Org) -> None:
    report = _import(org.admin, _card("FN:Shared")).json()

    contact_id = report["results"][0]["contact"]["id"]

    assert contact_id in visible_ids(org.bob)


@pytest.mark.parametrize(
    ("content_type", "status"),
    [("application/json", 415), ("text/plain", 415), ("", 415)],
)
def test_import_with_other_content_type_is_415(
    org: Org, content_type: str, status: int
) -> None:
    response = org.admin.post(
        "/api/v1/contacts/import",
        content=_card("FN:X").encode(),
        headers={"Content-Type": content_type},
    )

    assert response.status_code == status
    assert visible_ids(org.admin) == set()


def test_import_of_zero_cards_is_422(org: Org) -> None:
    response = _import(org.admin, "no cards here\r\n")

    assert response.status_code == 422


def test_import_over_five_mib_is_413_and_imports_nothing(org: Org) -> None:
    filler = "NOTE:" + "x" * 70
    card = _card("FN:Big", *([filler] * 1000))
    body = "\r\n".join([card] * 80)
    assert len(body.encode()) > 5 * 1024 * 1024

    response = _import(org.admin, body)

    assert response.status_code == 413
    assert visible_ids(org.admin) == set()


def test_import_of_more_than_1000_cards_is_413(org: Org) -> None:
    body = "\r\n".join(_card(f"FN:Card {i}") for i in range(1001))

    response = _import(org.admin, body)

    assert response.status_code == 413
    assert visible_ids(org.admin) == set()


def test_import_of_exactly_1000_cards_creates_them_all(org: Org) -> None:
    body = "\r\n".join(_card(f"FN:Card {i:04}") for i in range(1000))

    response = _import(org.admin, body)

    assert response.status_code == 200
    assert response.json()["created_count"] == 1000
    page = org.admin.get("/api/v1/contacts", params={"limit": 1000}).json()["items"]
    assert len(page) == 1000


def test_import_of_non_utf8_body_is_422(org: Org) -> None:
    response = _import(org.admin, _card("FN:Caf\xe9").encode("latin-1"))

    assert response.status_code == 422
    assert "UTF-8" in response.json()["detail"]


def test_import_reads_vcard_4_and_3_conventions(org: Org) -> None:
    stream = "\r\n".join(
        [
            _card(
                "UID:urn:uuid:11111111-1111-4111-8111-111111111111",
                "FN:Thunder Bird",
                "N:Bird;Thunder;;;",
                "EMAIL;PREF=1;TYPE=work:tb@example.com",
                "TEL;VALUE=uri;TYPE=cell:tel:+15551234567",
                "BDAY:19800102",
                "ANNIVERSARY:20050607",
                version="4.0",
            ),
            _card(
                "FN:Ios Person",
                "N:Person;Ios;;;",
                "item1.EMAIL;type=INTERNET;type=pref:ios@example.com",
                "item1.X-ABLabel:_$!<Other>!$_",
                "TEL;type=CELL;type=VOICE;type=pref:+44 20 7123 4567",
                "ORG:Fruit Co;Devices",
                "TITLE:Designer",
            ),
        ]
    )

    report = _import(org.admin, stream).json()

    first, second = (r["contact"] for r in report["results"])
    assert first["emails"] == [
        {"label": "work", "value": "tb@example.com", "is_primary": True}
    ]
    assert first["phones"][0]["value_e164"] == "+15551234567"
    assert first["phones"][0]["label"] == "mobile"
    assert first["birthday"] == "1980-01-02"
    assert first["dates"] == [{"label": "anniversary", "date": "2005-06-07"}]
    assert second["emails"] == [
        {"label": "other", "value": "ios@example.com", "is_primary": True}
    ]
    assert second["phones"][0]["value_e164"] == "+442071234567"
    assert (second["company_name"], second["job_title"]) == ("Fruit Co", "Designer")


def test_agent_export_of_invisible_contact_is_404(org: Org) -> None:
    contact = new_contact(org.admin, access_identity_ids=[])

    response = org.alice.get(f"/api/v1/contacts/{contact['id']}.vcf")

    assert response.status_code == 404

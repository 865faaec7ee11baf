"""Per-contact access through CardDAV: who sees, reads and writes which card.

Three users look at one organization at once: ``boss`` (admin), ``alice``
and ``bob`` (agents). The directory holds one contact for each kind of
access rule; every read path must show each user exactly the contacts
their identity may see, and an invisible contact must behave exactly like
a missing one, on reads and on writes.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.carddav import Gateway, card, multistatus, start_gateway
from tests.conftest import Org, Server

USERS = ("boss", "alice", "bob")
FAMILY = "Zephyr"
# Given names, so that a card's data can be recognised in any response body.
NAMES = {
    "wildcard": "Wanda",
    "alice_only": "Alma",
    "bob_only": "Boris",
    "admins_only": "Ada",
    "revoked_from_bob": "Rita",
    "reset_to_wildcard": "Remy",
}
VISIBLE = {
    "boss": set(NAMES),
    "alice": {"wildcard", "alice_only", "revoked_from_bob", "reset_to_wildcard"},
    "bob": {"wildcard", "bob_only", "reset_to_wildcard"},
}

PROPFIND_ETAGS = (
    b'<?xml version="1.0" encoding="utf-8"?>'
    b'<D:propfind xmlns:D="DAV:"><D:prop><D:getetag/></D:prop></D:propfind>'
)
PROPFIND_CTAG = (
    b'<?xml version="1.0" encoding="utf-8"?>'
    b'<D:propfind xmlns:D="DAV:" xmlns:CS="http://calendarserver.org/ns/">'
    b"<D:prop><CS:getctag/></D:prop></D:propfind>"
)
PROPPATCH_NAME = (
    b'<?xml version="1.0" encoding="utf-8"?>'
    b'<D:propertyupdate xmlns:D="DAV:"><D:set><D:prop>'
    b"<D:displayname>Mine now</D:displayname></D:prop></D:set></D:propertyupdate>"
)
QUERY_FILTERS = {
    # An empty prop-filter matches every card that has the property
    # (RFC 6352 10.5.1, the CardDAV form of "is-defined").
    "fn-defined": '<CR:prop-filter name="FN"/>',
    "fn-contains": (
        '<CR:prop-filter name="FN"><CR:text-match collation="i;unicode-casemap"'
        f' match-type="contains">{FAMILY.lower()}</CR:text-match></CR:prop-filter>'
    ),
}


def _contacts(org: Org) -> dict[str, str]:
    """Create one contact per kind of access rule; return their ids by kind."""
    alice, bob = org.identities["alice"], org.identities["bob"]
    access: dict[str, list[str] | None] = {
        "wildcard": None,
        "alice_only": [alice],
        "bob_only": [bob],
        "admins_only": [],
        "revoked_from_bob": None,
        "reset_to_wildcard": [bob],
    }
    ids = {}
    for kind, identity_ids in access.items():
        body = {
            "given_name": NAMES[kind],
            "family_name": FAMILY,
            "access_identity_ids": identity_ids,
        }
        response = org.admin.post("/api/v1/contacts", json=body)
        assert response.status_code == 201, response.text
        ids[kind] = response.json()["id"]
    revoke = org.admin.delete(
        f"/api/v1/contacts/{ids['revoked_from_bob']}/access/{bob}"
    )
    assert revoke.status_code == 204, revoke.text
    reset = org.admin.post(
        f"/api/v1/contacts/{ids['reset_to_wildcard']}/access",
        json={"identity_id": None},
    )
    assert reset.status_code == 201, reset.text
    return ids


@pytest.fixture
def ids(gateway: Gateway) -> dict[str, str]:
    return _contacts(gateway.org)


def _href(user: str, contact_id: str) -> str:
    return f"/{user}/contacts/{contact_id}.vcf"


def _kinds(hrefs: set[str], ids: dict[str, str]) -> set[str]:
    """Name the contact behind each card href (unknown hrefs stay as they are)."""
    by_id = {contact_id: kind for kind, contact_id in ids.items()}
    return {
        by_id.get(href.rsplit("/", 1)[-1].removesuffix(".vcf"), href) for href in hrefs
    }


def _listed(client: httpx.Client, user: str) -> dict[str, str]:
    """Return ``{href: etag}`` of every card in a PROPFIND Depth 1 of the book."""
    response = client.request(
        "PROPFIND", f"/{user}/contacts/", content=PROPFIND_ETAGS, headers={"Depth": "1"}
    )
    entries = multistatus(response)
    return {
        href: entry["props"]["{DAV:}getetag"].text
        for href, entry in entries.items()
        if href != f"/{user}/contacts/"
    }


def _statuses(response: httpx.Response) -> dict[str, int]:
    """Return the status of each href of a multistatus (200 when it has props)."""
    statuses = {}
    for href, entry in multistatus(response).items():
        status = entry["status"]
        if status:
            statuses[href] = int(status.split()[1])
        else:
            statuses[href] = 200 if entry["props"] else 0
    return statuses


def _report(client: httpx.Client, user: str, body: str) -> httpx.Response:
    return client.request(
        "REPORT",
        f"/{user}/contacts/",
        content=body.encode(),
        headers={"Depth": "1", "Content-Type": "application/xml; charset=utf-8"},
    )


def _multiget(client: httpx.Client, user: str, hrefs: list[str]) -> httpx.Response:
    body = (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<CR:addressbook-multiget xmlns:D="DAV:"'
        ' xmlns:CR="urn:ietf:params:xml:ns:carddav">'
        "<D:prop><D:getetag/><CR:address-data/></D:prop>"
        + "".join(f"<D:href>{href}</D:href>" for href in hrefs)
        + "</CR:addressbook-multiget>"
    )
    return _report(client, user, body)


def _query(client: httpx.Client, user: str, prop_filter: str) -> httpx.Response:
    body = (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<CR:addressbook-query xmlns:D="DAV:"'
        ' xmlns:CR="urn:ietf:params:xml:ns:carddav">'
        "<D:prop><D:getetag/><CR:address-data/></D:prop>"
        f"<CR:filter>{prop_filter}</CR:filter></CR:addressbook-query>"
    )
    return _report(client, user, body)


def _ctag(client: httpx.Client, user: str) -> str:
    response = client.request(
        "PROPFIND", f"/{user}/contacts/", content=PROPFIND_CTAG, headers={"Depth": "0"}
    )
    prop = multistatus(response)[f"/{user}/contacts/"]["props"]
    return str(prop["{http://calendarserver.org/ns/}getctag"].text)


def _upstream(org: Org, contact_id: str) -> dict[str, Any]:
    response = org.admin.get(f"/api/v1/contacts/{contact_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def _hidden_data(ids: dict[str, str], kinds: set[str]) -> set[str]:
    """Return strings that only the cards of ``kinds`` contain."""
    return {NAMES[kind] for kind in kinds} | {f"urn:uuid:{ids[kind]}" for kind in kinds}


# Reads


def test_propfind_lists_exactly_the_visible_cards(
    gateway: Gateway, ids: dict[str, str]
) -> None:
    seen = {user: set(_listed(gateway.client(user), user)) for user in USERS}

    assert {user: _kinds(hrefs, ids) for user, hrefs in seen.items()} == VISIBLE
    assert seen["bob"] == {_href("bob", ids[kind]) for kind in VISIBLE["bob"]}


def test_get_finds_visible_cards_and_404s_the_others(
    gateway: Gateway, ids: dict[str, str]
) -> None:
    responses = {
        user: {
            kind: gateway.client(user).get(_href(user, contact_id))
            for kind, contact_id in ids.items()
        }
        for user in USERS
    }

    found = {
        user: {kind for kind, r in answers.items() if r.status_code == 200}
        for user, answers in responses.items()
    }
    missing = {
        user: {kind for kind, r in answers.items() if r.status_code == 404}
        for user, answers in responses.items()
    }
    assert found == VISIBLE
    assert missing == {user: set(NAMES) - VISIBLE[user] for user in USERS}
    assert NAMES["alice_only"] in responses["alice"]["alice_only"].text
    for user, answers in responses.items():
        hidden = _hidden_data(ids, set(NAMES) - VISIBLE[user])
        leaked = {s for r in answers.values() for s in hidden if s in r.text}
        assert leaked == set(), user


def test_multiget_of_every_href_answers_404_for_invisible_cards(
    gateway: Gateway, ids: dict[str, str]
) -> None:
    """A multiget of all hrefs gives each user 200 entries only for visible cards."""
    responses = {
        user: _multiget(
            gateway.client(user), user, [_href(user, i) for i in ids.values()]
        )
        for user in USERS
    }

    for user, response in responses.items():
        statuses = _statuses(response)
        expected = {
            _href(user, contact_id): 200 if kind in VISIBLE[user] else 404
            for kind, contact_id in ids.items()
        }
        assert statuses == expected, user
        hidden = _hidden_data(ids, set(NAMES) - VISIBLE[user])
        assert {s for s in hidden if s in response.text} == set(), user
        assert response.text.count(f"FN:{NAMES['wildcard']} {FAMILY}") == 1, user


@pytest.mark.parametrize("prop_filter", QUERY_FILTERS.values(), ids=QUERY_FILTERS)
def test_addressbook_query_matching_all_returns_only_visible_cards(
    gateway: Gateway, ids: dict[str, str], prop_filter: str
) -> None:
    responses = {
        user: _query(gateway.client(user), user, prop_filter) for user in USERS
    }

    matched = {
        user: _kinds(set(_statuses(response)), ids)
        for user, response in responses.items()
    }
    assert matched == VISIBLE
    for user, response in responses.items():
        hidden = _hidden_data(ids, set(NAMES) - VISIBLE[user])
        assert {s for s in hidden if s in response.text} == set(), user


def test_ctag_differs_between_users_who_see_different_cards(
    gateway: Gateway, ids: dict[str, str]
) -> None:
    ctags = {user: _ctag(gateway.client(user), user) for user in USERS}

    assert ctags["alice"] != ctags["bob"]
    assert ctags["alice"] != ctags["boss"]
    assert ctags["bob"] != ctags["boss"]


def test_ctag_ignores_changes_to_cards_the_user_cannot_see(
    gateway: Gateway, ids: dict[str, str]
) -> None:
    """An edit of a bob-only contact changes bob's ctag and not alice's."""
    before = {user: _ctag(gateway.client(user), user) for user in USERS}

    response = gateway.org.admin.patch(
        f"/api/v1/contacts/{ids['bob_only']}", json={"job_title": "Pilot"}
    )
    after = {user: _ctag(gateway.client(user), user) for user in USERS}

    assert response.status_code == 200
    assert after["alice"] == before["alice"]
    assert after["bob"] != before["bob"]
    assert after["boss"] != before["boss"]


def test_sync_collection_from_scratch_lists_only_visible_cards(
    gateway: Gateway, ids: dict[str, str]
) -> None:
    body = (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<D:sync-collection xmlns:D="DAV:"><D:sync-token/>'
        "<D:sync-level>1</D:sync-level><D:prop><D:getetag/></D:prop>"
        "</D:sync-collection>"
    )

    responses = {user: _report(gateway.client(user), user, body) for user in USERS}

    synced = {
        user: _kinds(set(_statuses(response)), ids)
        for user, response in responses.items()
    }
    assert synced == VISIBLE


def test_invisible_href_answers_exactly_like_a_missing_one(
    gateway: Gateway, ids: dict[str, str]
) -> None:
    """Every method gives alice the same answer for bob's card as for no card."""
    alice = gateway.client("alice")
    etag = _listed(gateway.client("bob"), "bob")[_href("bob", ids["bob_only"])]
    put_headers = {"Content-Type": "text/vcard; charset=utf-8"}

    def answers(contact_id: str) -> dict[str, tuple[int, str, str]]:
        href = _href("alice", contact_id)
        sent = {
            "GET": alice.get(href),
            "HEAD": alice.head(href),
            "PROPFIND": alice.request(
                "PROPFIND", href, content=PROPFIND_ETAGS, headers={"Depth": "0"}
            ),
            "multiget": _multiget(alice, "alice", [href]),
            "PUT If-Match etag": alice.put(
                href,
                content=card("probe", "Probe Pat"),
                headers={**put_headers, "If-Match": etag},
            ),
            "PUT If-Match *": alice.put(
                href,
                content=card("probe", "Probe Pat"),
                headers={**put_headers, "If-Match": "*"},
            ),
            "PROPPATCH": alice.request(
                "PROPPATCH",
                href,
                content=PROPPATCH_NAME,
                headers={"Content-Type": "application/xml; charset=utf-8"},
            ),
            "DELETE": alice.delete(href),
            "DELETE If-Match": alice.delete(href, headers={"If-Match": etag}),
            "MOVE": alice.request(
                "MOVE",
                href,
                headers={"Destination": f"{gateway.url}/alice/contacts/moved.vcf"},
            ),
        }
        return {
            method: (
                r.status_code,
                r.headers.get("Content-Type", ""),
                r.text.replace(contact_id, "<id>"),
            )
            for method, r in sent.items()
        }

    invisible = answers(ids["bob_only"])
    missing = answers(str(uuid.uuid4()))

    assert invisible == missing
    assert invisible["GET"][0] == 404
    assert _upstream(gateway.org, ids["bob_only"])["given_name"] == NAMES["bob_only"]


# Writes to invisible contacts


def test_put_with_if_match_to_invisible_href_is_412_and_changes_nothing(
    gateway: Gateway, ids: dict[str, str]
) -> None:
    """Alice overwriting bob's or the admins' card with its real ETag gets 412."""
    org = gateway.org
    targets = ("bob_only", "admins_only")
    etags = _listed(gateway.client("boss"), "boss")
    before = {kind: _upstream(org, ids[kind]) for kind in targets}

    statuses = {
        kind: gateway.client("alice")
        .put(
            _href("alice", ids[kind]),
            content=card(f"urn:uuid:{ids[kind]}", "Mallory Eve"),
            headers={
                "If-Match": etags[_href("boss", ids[kind])],
                "Content-Type": "text/vcard; charset=utf-8",
            },
        )
        .status_code
        for kind in targets
    }

    assert statuses == {"bob_only": 412, "admins_only": 412}
    assert {kind: _upstream(org, ids[kind]) for kind in targets} == before
    assert (
        _kinds(set(_listed(gateway.client("alice"), "alice")), ids) == VISIBLE["alice"]
    )


def test_put_without_precondition_to_invisible_href_creates_a_separate_contact(
    gateway: Gateway, ids: dict[str, str]
) -> None:
    """The href is free for alice: her card is new and bob's contact is untouched."""
    org = gateway.org
    before = _upstream(org, ids["bob_only"])
    bob_before = _listed(gateway.client("bob"), "bob")

    response = gateway.client("alice").put(
        _href("alice", ids["bob_only"]),
        content=card("alice-new-card", "Newman Nina"),
        headers={"Content-Type": "text/vcard; charset=utf-8"},
    )
    alice_after = _listed(gateway.client("alice"), "alice")
    bob_after = _listed(gateway.client("bob"), "bob")
    got = gateway.client("alice").get(_href("alice", ids["bob_only"]))

    assert response.status_code == 201
    assert _upstream(org, ids["bob_only"]) == before
    assert NAMES["bob_only"] not in got.text
    assert "FN:Newman Nina" in got.text
    assert len(alice_after) == len(VISIBLE["alice"]) + 1
    assert {h: e for h, e in bob_after.items() if h in bob_before} == bob_before
    assert len(bob_after) == len(bob_before) + 1


def test_delete_of_invisible_href_is_404_and_keeps_the_contact(
    gateway: Gateway, ids: dict[str, str]
) -> None:
    org = gateway.org
    targets = ("bob_only", "admins_only")
    before = {kind: _upstream(org, ids[kind]) for kind in targets}

    statuses = {
        kind: gateway.client("alice").delete(_href("alice", ids[kind])).status_code
        for kind in targets
    }

    assert statuses == {"bob_only": 404, "admins_only": 404}
    assert {kind: _upstream(org, ids[kind]) for kind in targets} == before
    assert _kinds(set(_listed(gateway.client("boss"), "boss")), ids) == set(NAMES)


def test_move_of_invisible_href_is_404_and_keeps_the_card(
    gateway: Gateway, ids: dict[str, str]
) -> None:
    bob_before = _listed(gateway.client("bob"), "bob")

    response = gateway.client("alice").request(
        "MOVE",
        _href("alice", ids["bob_only"]),
        headers={"Destination": f"{gateway.url}/alice/contacts/moved.vcf"},
    )
    alice_after = _listed(gateway.client("alice"), "alice")

    assert response.status_code == 404
    assert "/alice/contacts/moved.vcf" not in alice_after
    assert _kinds(set(alice_after), ids) == VISIBLE["alice"]
    assert _listed(gateway.client("bob"), "bob") == bob_before


def test_move_onto_invisible_href_leaves_the_hidden_contact_alone(
    gateway: Gateway, ids: dict[str, str]
) -> None:
    """The destination is free for alice, so the move neither replaces nor deletes."""
    org = gateway.org
    before = _upstream(org, ids["bob_only"])
    bob_before = _listed(gateway.client("bob"), "bob")

    response = gateway.client("alice").request(
        "MOVE",
        _href("alice", ids["alice_only"]),
        headers={
            "Destination": f"{gateway.url}{_href('alice', ids['bob_only'])}",
            "Overwrite": "T",
        },
    )
    moved = gateway.client("alice").get(_href("alice", ids["bob_only"]))

    assert response.status_code in (201, 204)
    assert _upstream(org, ids["bob_only"]) == before
    assert _listed(gateway.client("bob"), "bob") == bob_before
    assert f"FN:{NAMES['alice_only']} {FAMILY}" in moved.text
    assert NAMES["bob_only"] not in moved.text


# Access changes


def test_grant_and_revoke_show_on_the_next_read(
    gateway: Gateway, ids: dict[str, str]
) -> None:
    org = gateway.org
    alice = gateway.client("alice")
    href = _href("alice", ids["bob_only"])
    url = f"/api/v1/contacts/{ids['bob_only']}/access"

    before = (alice.get(href).status_code, href in _listed(alice, "alice"))
    granted = org.admin.post(url, json={"identity_id": org.identities["alice"]})
    after_grant = (alice.get(href).status_code, href in _listed(alice, "alice"))
    revoked = org.admin.delete(f"{url}/{org.identities['alice']}")
    after_revoke = (alice.get(href).status_code, href in _listed(alice, "alice"))

    assert (granted.status_code, revoked.status_code) == (201, 204)
    assert before == (404, False)
    assert after_grant == (200, True)
    assert after_revoke == (404, False)


def test_revoke_from_wildcard_hides_the_card_on_the_next_read(
    gateway: Gateway, ids: dict[str, str]
) -> None:
    org = gateway.org
    bob = gateway.client("bob")
    href = _href("bob", ids["wildcard"])
    first = bob.get(href).status_code

    revoked = org.admin.delete(
        f"/api/v1/contacts/{ids['wildcard']}/access/{org.identities['bob']}"
    )
    multiget = _statuses(_multiget(bob, "bob", [href]))

    assert revoked.status_code == 204
    assert first == 200
    assert bob.get(href).status_code == 404
    assert multiget == {href: 404}
    assert _kinds(set(_listed(bob, "bob")), ids) == VISIBLE["bob"] - {"wildcard"}
    assert (
        gateway.client("alice").get(_href("alice", ids["wildcard"])).status_code == 200
    )


def test_reset_to_wildcard_shows_an_admins_only_card_to_every_agent(
    gateway: Gateway, ids: dict[str, str]
) -> None:
    org = gateway.org
    before = {u: set(_listed(gateway.client(u), u)) for u in ("alice", "bob")}

    reset = org.admin.post(
        f"/api/v1/contacts/{ids['admins_only']}/access", json={"identity_id": None}
    )
    after = {u: set(_listed(gateway.client(u), u)) for u in ("alice", "bob")}

    assert reset.status_code == 201
    assert after == {u: before[u] | {_href(u, ids["admins_only"])} for u in after}


# Another user's address book


def test_other_users_book_is_refused_without_leaking_hrefs(
    gateway: Gateway, ids: dict[str, str]
) -> None:
    """Bob's paths are 403 for alice; naming bob's card in her own book is a 404."""
    alice = gateway.client("alice")
    bob_card = _href("bob", ids["bob_only"])

    responses = {
        "propfind": alice.request(
            "PROPFIND", "/bob/contacts/", content=PROPFIND_ETAGS, headers={"Depth": "1"}
        ),
        "propfind-principal": alice.request(
            "PROPFIND", "/bob/", content=PROPFIND_ETAGS, headers={"Depth": "1"}
        ),
        "get": alice.get(bob_card),
        "multiget": _multiget(alice, "bob", [bob_card]),
        "query": _query(alice, "bob", QUERY_FILTERS["fn-defined"]),
        "delete": alice.delete(bob_card),
        "put": alice.put(
            "/bob/contacts/new.vcf",
            content=card("alice-in-bob", "Intruder Ivy"),
            headers={"Content-Type": "text/vcard; charset=utf-8"},
        ),
    }
    crossed = _multiget(alice, "alice", [bob_card])

    statuses = {name: r.status_code for name, r in responses.items()}
    assert statuses == dict.fromkeys(responses, 403)
    assert _statuses(crossed) == {bob_card: 404}
    assert NAMES["bob_only"] not in crossed.text
    leaked = {
        name
        for name, r in responses.items()
        for contact_id in ids.values()
        if contact_id in r.text
    }
    assert leaked == set()
    assert _upstream(gateway.org, ids["bob_only"])["given_name"] == NAMES["bob_only"]
    assert _kinds(set(_listed(gateway.client("bob"), "bob")), ids) == VISIBLE["bob"]


def test_root_propfind_shows_only_the_users_own_principal(
    gateway: Gateway, ids: dict[str, str]
) -> None:
    response = gateway.client("alice").request(
        "PROPFIND", "/", content=PROPFIND_ETAGS, headers={"Depth": "1"}
    )

    assert set(multistatus(response)) == {"/", "/alice/"}


# Key mode


@pytest.fixture
def key_gateway(
    sqlite_api: Server, directory_org: Org, tmp_path: Path
) -> Iterator[Gateway]:
    """A gateway in key mode: users log in with their own API keys."""
    running = start_gateway(sqlite_api, directory_org, tmp_path / "keys", mode="key")
    yield running
    running.close()


def test_key_mode_users_see_what_their_key_may_see(key_gateway: Gateway) -> None:
    """Alice and bob log in with their agent keys, boss with the admin key."""
    ids = _contacts(key_gateway.org)

    seen = {user: set(_listed(key_gateway.client(user), user)) for user in USERS}
    gets = {
        user: {
            kind
            for kind, contact_id in ids.items()
            if key_gateway.client(user).get(_href(user, contact_id)).status_code == 200
        }
        for user in USERS
    }

    assert {user: _kinds(hrefs, ids) for user, hrefs in seen.items()} == VISIBLE
    assert gets == VISIBLE


def test_key_mode_refuses_wrong_unclaimed_and_borrowed_keys(
    key_gateway: Gateway,
) -> None:
    """Bad keys get 401, and refusals do not spoil the next correct login."""
    keys = key_gateway.org.keys
    attempts = {
        "wrong key": ("alice", "sk-not-a-real-key"),
        "unclaimed key": ("carol", keys["carol_unclaimed"]),
        "agent key with another name": ("bob", keys["alice"]),
        "agent key with an unknown name": ("mallory", keys["alice"]),
        "empty password": ("alice", ""),
    }

    statuses = {
        name: key_gateway.client(user, password)
        .request(
            "PROPFIND",
            f"/{user}/contacts/",
            content=PROPFIND_ETAGS,
            headers={"Depth": "1"},
        )
        .status_code
        for name, (user, password) in attempts.items()
    }
    correct = key_gateway.client("alice").request(
        "PROPFIND", "/alice/contacts/", content=PROPFIND_ETAGS, headers={"Depth": "1"}
    )

    assert statuses == dict.fromkeys(attempts, 401)
    assert correct.status_code == 207


# New contacts


@pytest.fixture
def creator_gateway(
    sqlite_api: Server, directory_org: Org, tmp_path: Path
) -> Iterator[Gateway]:
    """A gateway whose new cards are visible to their creator (and admins) only."""
    running = start_gateway(
        sqlite_api,
        directory_org,
        tmp_path / "creator",
        storage={"new_contacts": "creator"},
    )
    yield running
    running.close()


def test_creator_mode_shows_a_new_card_to_its_creator_and_admins_only(
    creator_gateway: Gateway,
) -> None:
    org = creator_gateway.org

    response = creator_gateway.client("alice").put(
        "/alice/contacts/mine.vcf",
        content=card("alice-private", "Private Paula"),
        headers={"Content-Type": "text/vcard; charset=utf-8"},
    )
    seen = {
        user: [
            href
            for href in _listed(creator_gateway.client(user), user)
            if "Paula" in creator_gateway.client(user).get(href).text
        ]
        for user in USERS
    }
    listing = org.admin.get("/api/v1/contacts", params={"q": "Paula"})

    assert response.status_code == 201
    assert seen["alice"] == ["/alice/contacts/mine.vcf"]
    assert len(seen["boss"]) == 1
    assert seen["bob"] == []
    (contact,) = listing.json()["items"]
    access = [row["identity_id"] for row in contact["access"]]
    assert access == [org.identities["alice"]]

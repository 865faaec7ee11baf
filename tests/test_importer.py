"""Tests for the batched vCard importer.

The upstream is faked with ``httpx.MockTransport``: the real ``contacts_api``
server is still being written, and the fault tests need answers it cannot
give on demand (429 with Retry-After, 503, connection resets, a 413 for one
batch). Move the plain batching tests to the real server once it lands.
"""

import io
import logging
import re
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from gateway.importer import (
    ImportFailed,
    ImportReport,
    Rejected,
    format_summary,
    import_vcards,
    run_import_command,
)

KEY = "sk-test-0123456789-very-secret"
BASE = "http://contacts.test"
IMPORT_URL = "http://contacts.test/api/v1/contacts/import"
REJECT_MARK = "X-REJECT:yes"

Handler = Callable[[httpx.Request], httpx.Response]


def make_card(name: str, *extra: str) -> str:
    """Return a small vCard 4.0 with FN set to name and extra lines."""
    lines = ["BEGIN:VCARD", "VERSION:4.0", f"FN:{name}", *extra, "END:VCARD"]
    return "\r\n".join(lines) + "\r\n"


def make_file(count: int, rejected: tuple[int, ...] = ()) -> str:
    """Return count cards named "Person NNNN"; those at rejected are marked bad."""
    return "".join(
        make_card(f"Person {i:04d}", *([REJECT_MARK] if i in rejected else []))
        for i in range(count)
    )


def cards_in(request: httpx.Request) -> list[str]:
    """Return the cards of an import request body."""
    body = request.content.decode("utf-8")
    return re.findall(r"BEGIN:VCARD.*?END:VCARD", body, flags=re.DOTALL)


class FakeImport:
    """Answer like POST /contacts/import, first playing any scripted faults.

    Cards holding REJECT_MARK get ``status: "error"``; a fault is an
    ``httpx.Response`` to return or an exception to raise.
    """

    def __init__(self, *faults: httpx.Response | Exception) -> None:
        self.faults = list(faults)
        self.requests: list[httpx.Request] = []
        self.batches: list[list[str]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.faults:
            fault = self.faults.pop(0)
            if isinstance(fault, Exception):
                raise fault
            return fault

        cards = cards_in(request)
        self.batches.append(cards)
        results = [
            {"index": i, "status": "error", "error": "invalid email 'x@'"}
            if REJECT_MARK in card
            else {"index": i, "status": "created", "contact": {"id": str(i)}}
            for i, card in enumerate(cards)
        ]
        created = sum(result["status"] == "created" for result in results)
        body = {
            "created_count": created,
            "error_count": len(cards) - created,
            "results": results,
        }
        return httpx.Response(200, json=body)


def run_import(
    text: str, handler: Handler, **kwargs: object
) -> tuple[ImportReport, list[float]]:
    """Import text through a mock transport; return the report and the sleeps."""
    sleeps: list[float] = []
    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        report = import_vcards(
            text,
            base_url=BASE,
            api_key=KEY,
            client=client,
            sleep=sleeps.append,
            **kwargs,  # type: ignore[arg-type]
        )
    return report, sleeps


def test_import_batches_by_count_and_maps_indexes_to_file_positions() -> None:
    upstream = FakeImport()
    progress: list[int] = []

    report, sleeps = run_import(
        make_file(2500, rejected=(5, 1500, 2499)), upstream, progress=progress.append
    )

    assert [len(batch) for batch in upstream.batches] == [1000, 1000, 500]
    assert progress == [1000, 1000, 500]
    assert report.requests == 3
    assert report.created_count == 2497
    assert report.error_count == 3
    assert report.rejected == [
        Rejected(5, "Person 0005", "invalid email 'x@'"),
        Rejected(1500, "Person 1500", "invalid email 'x@'"),
        Rejected(2499, "Person 2499", "invalid email 'x@'"),
    ]
    assert sleeps == []


def test_import_batches_by_bytes() -> None:
    upstream = FakeImport()
    card_size = len(make_card("Person 0000").encode())

    report, _ = run_import(make_file(10), upstream, batch_bytes=3 * card_size + 10)

    assert [len(batch) for batch in upstream.batches] == [3, 3, 3, 1]
    assert max(len(r.content) for r in upstream.requests) <= 3 * card_size + 10
    assert report.created_count == 10


def test_import_sends_cards_joined_with_crlf_to_the_root_url() -> None:
    """A base URL ending in /api/v1 is accepted, and the key goes in a header."""
    upstream = FakeImport()
    text = make_card("Ada") + make_card("Grace")

    with httpx.Client(transport=httpx.MockTransport(upstream)) as client:
        import_vcards(text, base_url=BASE + "/api/v1/", api_key=KEY, client=client)

    (request,) = upstream.requests
    assert str(request.url) == IMPORT_URL
    assert request.headers["X-API-Key"] == KEY
    assert request.headers["Content-Type"] == "text/vcard; charset=utf-8"
    assert request.content == text.encode()


def test_import_of_empty_text_sends_nothing() -> None:
    upstream = FakeImport()

    report, _ = run_import("", upstream)

    assert report == ImportReport(0, 0, [], 0)
    assert upstream.requests == []


def test_import_sends_oversized_card_alone_and_records_413() -> None:
    """Faked upstream: a 413 for one batch is hard to get from the real server."""
    text = make_card("Small 1") + make_card("Big", "NOTE:" + "x" * 2000)
    text += make_card("Small 2")

    def upstream(request: httpx.Request) -> httpx.Response:
        if len(request.content) > 500:
            return httpx.Response(413, json={"detail": "Body exceeds 5 MiB."})
        return FakeImport()(request)

    report, _ = run_import(text, upstream, batch_bytes=500)

    assert report.requests == 3
    assert report.created_count == 2
    assert report.rejected == [Rejected(1, "Big", "Body exceeds 5 MiB.")]


def test_import_records_cards_of_a_422_batch_as_rejected() -> None:
    """Faked upstream: the real server gives 422 only for an empty body."""
    upstream = FakeImport(httpx.Response(422, json={"detail": "no cards"}))

    report, _ = run_import(make_file(3), upstream, batch_cards=2)

    assert report.created_count == 1
    assert report.error_count == 2
    assert report.rejected == [
        Rejected(0, "Person 0000", "no cards"),
        Rejected(1, "Person 0001", "no cards"),
    ]


def test_import_maps_mixed_results_to_card_names() -> None:
    """Names come from FN (unfolded, unescaped), else from N, else are empty."""
    cards = [
        make_card("Ada"),
        "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Ada\r\n  Lovelace\r\nX-REJECT:yes\r\n"
        "END:VCARD\r\n",
        'BEGIN:VCARD\r\nitem1.FN;ALTID="a:b":Smith\\, John\r\nX-REJECT:yes\r\n'
        "END:VCARD\r\n",
        "BEGIN:VCARD\r\nN:Hopper;Grace;Brewster;Rear Adm.;\r\nX-REJECT:yes\r\n"
        "END:VCARD\r\n",
        "BEGIN:VCARD\r\nFN:\r\nN:Curie;Marie;;;\r\nX-REJECT:yes\r\nEND:VCARD\r\n",
        "BEGIN:VCARD\r\nORG:Acme\r\nX-REJECT:yes\r\nEND:VCARD\r\n",
    ]

    report, _ = run_import("".join(cards), FakeImport())

    assert report.created_count == 1
    assert [(r.index, r.name) for r in report.rejected] == [
        (1, "Ada Lovelace"),
        (2, "Smith, John"),
        (3, "Rear Adm. Grace Brewster Hopper"),
        (4, "Marie Curie"),
        (5, ""),
    ]


def test_import_retries_503_then_succeeds_with_backoff() -> None:
    """Faked upstream: the real server cannot answer 503 on demand."""
    upstream = FakeImport(httpx.Response(503), httpx.Response(503))

    report, sleeps = run_import(make_file(2), upstream)

    assert sleeps == [0.5, 1.0]
    assert report.requests == 3
    assert report.created_count == 2


def test_import_honours_retry_after_capped_at_30_seconds() -> None:
    """Faked upstream: the real server cannot answer 429 on demand."""
    upstream = FakeImport(
        httpx.Response(429, headers={"Retry-After": "7"}),
        httpx.Response(503, headers={"Retry-After": "120"}),
        httpx.Response(503, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}),
    )

    report, sleeps = run_import(make_file(1), upstream)

    assert sleeps == [7.0, 30.0, 2.0]
    assert report.created_count == 1


def test_import_retries_connection_reset_and_timeout() -> None:
    """Faked upstream: resets and timeouts cannot be caused on a real server."""
    upstream = FakeImport(
        httpx.ConnectError("Connection reset by peer"),
        httpx.ReadTimeout("timed out"),
    )

    report, sleeps = run_import(make_file(2), upstream)

    assert sleeps == [0.5, 1.0]
    assert report.created_count == 2


def test_import_with_persistent_503_raises_import_failed_with_progress() -> None:
    """Faked upstream: 503 from the second batch on, as if the server went down."""
    upstream = FakeImport()

    def failing_after_first(request: httpx.Request) -> httpx.Response:
        if len(upstream.requests) == 1:
            upstream.faults = [
                httpx.Response(503, json={"detail": "Maintenance."}) for _ in range(5)
            ]
        return upstream(request)

    with pytest.raises(ImportFailed) as caught:
        run_import(make_file(3), failing_after_first, batch_cards=2)

    exc = caught.value
    assert str(exc) == (
        "The Contacts API kept failing (HTTP 503) after 5 attempts: Maintenance."
    )
    assert exc.status_code == 503
    assert exc.next_index == 2
    assert exc.report.created_count == 2
    assert exc.report.requests == 6


def test_import_with_unreachable_upstream_raises_after_retries() -> None:
    """Faked upstream: the connection is refused on every attempt."""
    sleeps: list[float] = []
    upstream = FakeImport(*[httpx.ConnectError("Connection refused") for _ in range(5)])

    with (
        pytest.raises(ImportFailed, match="Cannot reach the Contacts API"),
        httpx.Client(transport=httpx.MockTransport(upstream)) as client,
    ):
        import_vcards(
            make_file(1), base_url=BASE, api_key=KEY, client=client, sleep=sleeps.append
        )

    assert sleeps == [0.5, 1.0, 2.0, 4.0]


def test_import_with_401_raises_at_once_without_the_key() -> None:
    """Faked upstream until the real server lands; it would answer the same."""
    upstream = FakeImport(httpx.Response(401, json={"detail": "Invalid API key"}))

    with pytest.raises(ImportFailed) as caught:
        run_import(make_file(2), upstream)

    assert str(caught.value) == (
        "The Contacts API refused the API key (HTTP 401): Invalid API key. "
        "Check --api-key or INKBOX_API_KEY."
    )
    assert caught.value.status_code == 401
    assert len(upstream.requests) == 1
    assert KEY not in str(caught.value)


def test_import_with_415_raises_at_once() -> None:
    """Faked upstream: the importer never sends another type by itself."""
    upstream = FakeImport(httpx.Response(415, json={"detail": "Use text/vcard"}))

    with pytest.raises(ImportFailed, match=r"HTTP 415\): Use text/vcard\."):
        run_import(make_file(2), upstream)

    assert len(upstream.requests) == 1


def test_format_summary_with_nothing_rejected() -> None:
    report = ImportReport(created_count=3, error_count=0, rejected=[], requests=1)

    assert format_summary(report) == "Imported 3 contacts; none rejected"


def test_format_summary_lists_rejected_cards() -> None:
    report = ImportReport(
        created_count=1,
        error_count=2,
        rejected=[Rejected(4, "Ada", "invalid email"), Rejected(9, "", "no\nname")],
        requests=1,
    )

    assert format_summary(report) == (
        "Imported 1 contact; 2 rejected:\n"
        "  #4 Ada: invalid email\n"
        "  #9 (no name): no name"
    )


def write_vcf(tmp_path: Path, content: str | bytes) -> str:
    """Write a vCard file under tmp_path and return its path."""
    path = tmp_path / "book.vcf"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", newline="")
    return str(path)


def run_command(path: str, handler: Handler, api_key: str = KEY) -> tuple[int, str]:
    """Run the import command against a mock transport; return code and output."""
    out = io.StringIO()
    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        code = run_import_command(path, BASE, api_key, out=out, client=client)
    return code, out.getvalue()


def test_run_import_command_returns_0_when_all_imported(tmp_path: Path) -> None:
    code, output = run_command(write_vcf(tmp_path, make_file(3)), FakeImport())

    assert code == 0
    assert output == "Imported 3 contacts; none rejected\n"


def test_run_import_command_returns_1_when_some_rejected(tmp_path: Path) -> None:
    path = write_vcf(tmp_path, make_file(3, rejected=(1,)))

    code, output = run_command(path, FakeImport())

    assert code == 1
    assert output == (
        "Imported 2 contacts; 1 rejected:\n  #1 Person 0001: invalid email 'x@'\n"
    )


def test_run_import_command_returns_2_on_refused_key(tmp_path: Path) -> None:
    upstream = FakeImport(httpx.Response(403, json={"detail": "Key not claimed"}))

    code, output = run_command(write_vcf(tmp_path, make_file(1)), upstream)

    assert code == 2
    assert output == (
        "The Contacts API refused the API key (HTTP 403): Key not claimed. "
        "Check --api-key or INKBOX_API_KEY.\n"
    )


def test_run_import_command_says_where_a_stopped_import_can_resume(
    tmp_path: Path,
) -> None:
    """Faked upstream: the key is revoked between the first and second batch."""
    upstream = FakeImport()

    def revoked_after_first(request: httpx.Request) -> httpx.Response:
        if len(upstream.requests) == 1:
            upstream.faults = [httpx.Response(401, json={"detail": "Key revoked"})]
        return upstream(request)

    code, output = run_command(
        write_vcf(tmp_path, make_file(1001)), revoked_after_first
    )

    assert code == 2
    assert output == (
        "The Contacts API refused the API key (HTTP 401): Key revoked. "
        "Check --api-key or INKBOX_API_KEY.\n"
        "Imported 1000 contacts; none rejected\n"
        "Cards from #1000 on were not imported.\n"
    )


def test_run_import_command_returns_2_on_invalid_utf8(tmp_path: Path) -> None:
    upstream = FakeImport()
    path = write_vcf(tmp_path, make_card("Zoë").encode("latin-1"))

    code, output = run_command(path, upstream)

    assert code == 2
    assert "is not valid UTF-8" in output
    assert upstream.requests == []


def test_run_import_command_takes_key_from_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INKBOX_API_KEY", "env-key")
    upstream = FakeImport()

    code, _ = run_command(write_vcf(tmp_path, make_file(1)), upstream, api_key="")

    assert code == 0
    assert upstream.requests[0].headers["X-API-Key"] == "env-key"


def test_run_import_command_without_any_key_returns_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("INKBOX_API_KEY", raising=False)

    code, output = run_command(
        write_vcf(tmp_path, make_file(1)), FakeImport(), api_key=""
    )

    assert code == 2
    assert output == "No API key given: pass --api-key or set INKBOX_API_KEY.\n"


def test_import_logs_one_line_per_request_without_the_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Faked upstream: a 503 then a 401, to log both retries and failures."""
    caplog.set_level(logging.DEBUG)
    upstream = FakeImport(
        httpx.Response(503),
        httpx.Response(401, json={"detail": "Invalid API key"}),
    )

    with pytest.raises(ImportFailed):
        run_import(make_file(2), upstream)

    ours = [r for r in caplog.records if r.name == "gateway.importer"]
    assert [r.getMessage() for r in ours if r.levelno == logging.INFO] == [
        f"Import batch 1 (2 cards, {len(upstream.requests[0].content)} bytes, "
        "attempt 1): HTTP 503",
        f"Import batch 1 (2 cards, {len(upstream.requests[0].content)} bytes, "
        "attempt 2): HTTP 401",
    ]
    for record in caplog.records:
        assert KEY not in record.getMessage()
        assert KEY not in repr(record.args)
    assert KEY not in caplog.text

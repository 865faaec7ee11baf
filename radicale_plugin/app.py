"""The WSGI application of the gateway: Radicale, wrapped.

The wrapper gives each request its state (``context``), keeps the raw PUT
body (Radicale hands the storage a re-serialized card), checks that a PUT
body is a card we can read before Radicale parses it, refuses the
collection operations a directory cannot offer with a clear reason, and
replaces Radicale's generic error responses with the ones the gateway core
decided on (503 with Retry-After when the upstream is down, 400 with the
reason when a card is refused).
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Callable, Iterable
from typing import Any, Literal

from radicale import pathutils
from radicale.app import Application

from gateway.keep import convert_card
from gateway.vcard import VCardError, split_vcards, vcard_to_contact
from radicale_plugin import context
from radicale_plugin.rights import BOOK

logger = logging.getLogger("radicale.inkbox.app")

StartResponse = Callable[..., Any]
# An FN content line, possibly grouped ("item1.FN"); folded lines start with
# a space, so they never match.
_FN_LINE = re.compile(r"^(?:[A-Za-z0-9-]+\.)?FN[;:]", re.IGNORECASE | re.MULTILINE)
# A UID content line with a value, in unfolded text.
_UID_LINE = re.compile(
    r"^(?:[A-Za-z0-9-]+\.)?UID(?:;[^:\r\n]*)?:[^\r\n]", re.IGNORECASE | re.MULTILINE
)
_FOLD = re.compile(r"\r?\n[ \t]")
_VERSION_2_1 = re.compile(
    r"^VERSION:[ \t]*2\.1[ \t]*\r?$", re.IGNORECASE | re.MULTILINE
)

REASONS = {
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
    502: "Bad Gateway",
    503: "Service Unavailable",
    507: "Insufficient Storage",
}


class GatewayApplication:
    """Radicale's WSGI application with the gateway's request handling."""

    def __init__(self, configuration: Any) -> None:
        _allow_client_hrefs(configuration)
        self._radicale = Application(configuration)
        self._max_body = int(configuration.get("server", "max_content_length"))

    def __call__(
        self, environ: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        path = str(environ.get("PATH_INFO", "/"))
        request = context.RequestState(method, path)
        token = context.current.set(request)
        try:
            refusal = self._refusal(method, path)
            if refusal is None and method == "PUT":
                refusal = self._take_body(environ, request)
            if method in ("GET", "HEAD"):
                request.version = _accepted_version(environ.get("HTTP_ACCEPT", ""))
            elif method == "REPORT":
                request.version = _report_version(environ)
            if refusal is not None:
                return _respond(start_response, refusal, method)

            captured: dict[str, Any] = {}

            def capture(
                status: str, headers: list[tuple[str, str]], exc_info: Any = None
            ) -> Any:
                captured["status"] = status
                captured["headers"] = headers
                return lambda data: None

            body = list(self._radicale(environ, capture))
            if request.outcome is not None:
                return _respond(start_response, request.outcome, method)
            headers = list(captured["headers"])
            if method == "PUT" and request.transformed:
                # RFC 9110 8.8.3: no validator for a representation we changed;
                # clients then read the card back instead of keeping theirs.
                headers = [(k, v) for k, v in headers if k.lower() != "etag"]
            start_response(captured["status"], headers)
            return body
        finally:
            context.current.reset(token)

    def _refusal(self, method: str, path: str) -> context.Outcome | None:
        parts = [p for p in pathutils.strip_path(path).split("/") if p]
        if method in ("MKCOL", "MKCALENDAR"):
            return context.Outcome(
                403,
                "This server has one address book per user, /<user>/contacts/; "
                "it cannot create collections.",
            )
        if len(parts) in (1, 2) and (len(parts) == 1 or parts[1] == BOOK):
            if method == "DELETE":
                return context.Outcome(403, "The address book cannot be deleted.")
            if method == "PUT":
                return context.Outcome(
                    403,
                    "Replacing the whole address book with one upload is not "
                    "supported; PUT each card to its own href.",
                )
            if method == "PROPPATCH":
                return context.Outcome(
                    403, "The properties of the address book are read-only."
                )
        return None

    def _take_body(
        self, environ: dict[str, Any], request: context.RequestState
    ) -> context.Outcome | None:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return context.Outcome(400, "Invalid Content-Length.")
        if length > self._max_body:
            return context.Outcome(
                413, f"The card is larger than {self._max_body} bytes."
            )
        body = environ["wsgi.input"].read(length) if length else b""
        request.raw_body = body
        refusal = _unreadable_card(body)
        if refusal is None:
            body = _parseable(body)
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        return refusal


_VERSION_PARAM = re.compile(r"version\s*=\s*\"?([34]\.0)", re.IGNORECASE)
_ADDRESS_DATA = re.compile(rb"<[^>]*address-data\b([^>]*)>", re.IGNORECASE)


def _accepted_version(accept: str) -> Literal["3.0", "4.0"] | None:
    """Return the vCard version an Accept header asks for (RFC 6352 6.2)."""
    for part in accept.split(","):
        if part.strip().lower().startswith("text/vcard"):
            found = _VERSION_PARAM.search(part)
            if found:
                return "4.0" if found.group(1) == "4.0" else "3.0"
    return None


def _report_version(environ: dict[str, Any]) -> Literal["3.0", "4.0"] | None:
    """Return the version a REPORT's address-data element asks for.

    The body is read here and put back for Radicale.
    """
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None
    body = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
    found = _ADDRESS_DATA.search(body)
    if found is None:
        return None
    version = _VERSION_PARAM.search(found.group(1).decode("utf-8", "replace"))
    if version is None:
        return None
    return "4.0" if version.group(1) == "4.0" else "3.0"


def _allow_client_hrefs(configuration: Any) -> None:
    """Let Radicale accept hrefs such as ``urn:uuid:1234.vcf`` (unless configured)."""
    # HACK(https://github.com/Kozea/Radicale/blob/v3.9.0/radicale/app/base.py):
    # the default `[server] validate_path_value = minimal` answers 400 to any
    # path with ":" (and ' " * ? ,) even when the storage declares
    # `_supports_problematic_chars`, so clients naming cards after a urn:uuid
    # UID cannot store them. Our paths never reach a file system; "none"
    # still refuses control characters. An explicit setting is kept.
    if configuration.get_source("server", "validate_path_value") == "default config":
        configuration.update(
            {"server": {"validate_path_value": "none"}}, "inkbox-carddav"
        )


def _unreadable_card(body: bytes) -> context.Outcome | None:
    """Return a 400 with the reason when the body is not one readable card."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return context.Outcome(400, f"The card is not UTF-8 (byte {exc.start}).")
    cards = split_vcards(text)
    if len(cards) != 1:
        return context.Outcome(
            400, f"Expected exactly one vCard in the body, found {len(cards)}."
        )
    try:
        vcard_to_contact(cards[0])
    except VCardError as exc:
        return context.Outcome(400, f"The card cannot be read: {exc}")
    if _FN_LINE.search(cards[0]) is None:
        # vobject (in Radicale) refuses such a card with a bare 400.
        return context.Outcome(
            400,
            "The card has no FN property; vCard requires a formatted name "
            "(RFC 6350 section 6.2.1).",
        )
    if _UID_LINE.search(_FOLD.sub("", cards[0])) is None:
        # vobject (in Radicale) refuses such a card with a bare 400.
        return context.Outcome(
            400,
            "The card has no UID property; CardDAV requires one on every card "
            "(RFC 6352 section 5.1).",
        )
    return None


def _parseable(body: bytes) -> bytes:
    """Return the body Radicale is to parse: a vCard 2.1 card as its 3.0 rewrite.

    The storage stores the raw body (``raw_body``), not what Radicale parsed,
    so the card itself is kept as sent.
    """
    # HACK(https://github.com/Kozea/Radicale/issues/1238): vobject fails to
    # serialize the ENCODING=BASE64 photo of a 2.1 card, and Radicale answers
    # a bare 400; the same card in 3.0 goes through.
    text = body.decode("utf-8")
    if _VERSION_2_1.search(text) is None:
        return body
    try:
        return convert_card(text, "3.0").encode("utf-8")
    except VCardError:
        return body


def _respond(
    start_response: StartResponse, outcome: context.Outcome, method: str
) -> list[bytes]:
    body = (outcome.reason + "\n").encode("utf-8")
    status = f"{outcome.status} {REASONS.get(outcome.status, 'Error')}"
    headers = [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
        *outcome.headers.items(),
    ]
    start_response(status, headers)
    logger.info("Answered %s with %s: %s", method, status, outcome.reason)
    return [] if method == "HEAD" else [body]


def serve(configuration: Any) -> None:
    """Serve the gateway with Radicale's own server (threads, TLS, limits)."""
    import radicale.server
    from radicale import log

    log.setup()
    log.set_level(
        configuration.get("logging", "level"),
        configuration.get("logging", "backtrace_on_debug"),
        configuration.get("logging", "trace_filter"),
    )

    # HACK(https://github.com/Kozea/Radicale/blob/v3.9.0/radicale/server.py):
    # Radicale's server builds `Application(configuration)` itself and offers
    # no hook to wrap it; replacing the name it looks up is the one place to
    # put our WSGI wrapper in front. Re-check on every Radicale upgrade.
    radicale.server.Application = GatewayApplication  # type: ignore[attr-defined,assignment]
    radicale.server.serve(configuration)

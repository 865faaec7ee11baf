"""Talk to the Contacts API over HTTP: the gateway's only way upstream.

``ContactsClient`` wraps one ``httpx.Client`` and one API key. It sends the
key in the ``X-API-Key`` header only (never in a URL or a log line), writes
one INFO line per upstream call, retries idempotent calls (GET and DELETE)
on 429, 5xx, timeouts and connection errors, and turns every failure into
one of the exceptions below, once, in ``error_for``.

Exceptions:

    ContactsAPIError -- the base; ``status_code`` (None without a response),
                        ``detail`` (the upstream's ``detail`` member, a string
                        or an object) and ``reason`` (that detail as one line
                        of text).
     ├── NotFound            -- 404: no such contact or identity, or one the
     │                          credential may not see.
     ├── Conflict            -- 409; ``detail`` keeps the upstream's object,
     │                          e.g. ``{"error": "redundant_grant", ...}``.
     ├── Invalid             -- 400 and 422; ``reason`` is what a CardDAV
     │                          client should be told.
     ├── Unauthorized        -- 401: missing or unknown credential.
     ├── Forbidden           -- 403: e.g. an unclaimed agent key.
     ├── TryLater            -- the upstream cannot answer now;
     │   │                      ``retry_after`` in seconds or None.
     │   ├── RateLimited         -- 429.
     │   └── UpstreamUnavailable -- 5xx, timeouts and connection errors.
     └── DirectoryTooLarge   -- listing by offset cannot reach every contact.

Any other unexpected answer (another status, a body that is not the JSON
the contract promises) raises ``ContactsAPIError`` itself.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import httpx

logger = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
REVISION_HEADER = "X-Directory-Revision"

_IDEMPOTENT = frozenset({"GET", "DELETE"})
# Errors after which the same request may succeed when sent again.
_RETRYABLE_ERRORS = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
)
# Errors raised before any byte reached the upstream: a write did not land.
_NOT_SENT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_MAX_REASON_CHARS = 300


class ContactsAPIError(Exception):
    """A call to the Contacts API failed."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        detail: object = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.detail = detail
        self.reason = _reason_text(detail) if reason is None else reason


class NotFound(ContactsAPIError):
    """The contact or identity does not exist for this credential (404)."""


class Conflict(ContactsAPIError):
    """The upstream refused a change that conflicts with its state (409)."""


class Invalid(ContactsAPIError):
    """The upstream refused the request's content (400 or 422)."""


class Unauthorized(ContactsAPIError):
    """The credential is missing or unknown (401)."""


class Forbidden(ContactsAPIError):
    """The credential may not do this (403)."""


class TryLater(ContactsAPIError):
    """The upstream cannot answer now; ``retry_after`` says when to ask again."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        detail: object = None,
        reason: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code, detail=detail, reason=reason)
        self.retry_after = retry_after


class RateLimited(TryLater):
    """The upstream asks us to slow down (429)."""


class UpstreamUnavailable(TryLater):
    """The upstream failed (5xx), timed out or could not be reached."""


class DirectoryTooLarge(ContactsAPIError):
    """The directory has more contacts than listing by offset can reach."""

    def __init__(self, message: str, *, reached: int) -> None:
        super().__init__(message, reason=message)
        self.reached = reached


_ERROR_CLASSES: dict[int, type[ContactsAPIError]] = {
    400: Invalid,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    422: Invalid,
}


@dataclass(frozen=True)
class Listing:
    """Every contact a credential can see, and the directory revision."""

    contacts: list[dict[str, Any]]
    # The X-Directory-Revision header of the first page (None when the
    # upstream does not send it, as the hosted service does not).
    revision: str | None


class ContactsClient:
    """Call the Contacts API with one API key.

    Only GET and DELETE are retried: at most ``retries`` more attempts, on
    429, 5xx, timeouts and connection errors, after ``backoff``,
    ``2 * backoff``, ... seconds, or after a numeric ``Retry-After`` when it
    is at most ``max_retry_after``. A larger ``Retry-After`` is not waited
    for: the call raises ``RateLimited`` or ``UpstreamUnavailable`` at once
    with ``retry_after`` set, so that the CardDAV side can answer 503 with
    ``Retry-After``. An HTTP-date ``Retry-After`` is ignored (our backoff
    applies). POST and PATCH are never retried.

    A DELETE that gets 404 after an earlier attempt whose outcome is unknown
    (a timeout, a dropped connection or a 5xx) counts as success: that
    attempt may have deleted the thing. After a 429, which means the request
    was refused, a 404 stays ``NotFound``.

    Args:
        base_url: the service root (``https://inkbox.ai``); a trailing
            ``/api/v1`` or ``/`` is accepted.
        api_key: sent as ``X-API-Key``; never logged.
        http: used as is and left open by ``close``; by default the client
            makes one and closes it in ``close``.
        timeout: seconds for every request, also on a given ``http``.
        page_size: ``limit`` of each page in ``list_all``.
        max_offset: the highest ``offset`` the upstream accepts (10,000 on
            the hosted service).
        sleep: waits between retries; tests pass a recorder.

    Raises:
        ValueError: on a base URL that is not http(s) or carries
            credentials, an API key that cannot be sent in a header, or a
            limit out of range.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        http: httpx.Client | None = None,
        timeout: float = 10.0,
        retries: int = 2,
        backoff: float = 0.2,
        max_retry_after: float = 2.0,
        page_size: int = 1000,
        max_offset: int = 10_000,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if retries < 0 or page_size < 1 or max_offset < 0:
            raise ValueError(
                f"Invalid client limits (retries={retries}, page_size={page_size}, "
                f"max_offset={max_offset}): retries and max_offset must be at "
                "least 0 and page_size at least 1"
            )
        _check_key(api_key)

        self._root = _service_root(base_url)
        self._api_key = api_key
        # X-Directory-Revision of the last successful call through this
        # object (this project's API sends it on lists and contact writes).
        self.last_revision: str | None = None
        self._owns_http = http is None
        self._http = httpx.Client(timeout=timeout) if http is None else http
        self._timeout = timeout
        self._retries = retries
        self._backoff = backoff
        self._max_retry_after = max_retry_after
        self._page_size = page_size
        self._max_offset = max_offset
        self._sleep = sleep

    def __repr__(self) -> str:
        # The key stays out of reprs, which end up in logs and tracebacks.
        return f"ContactsClient({self._root!r})"

    def __enter__(self) -> ContactsClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def base_url(self) -> str:
        """Return the service root that paths are appended to."""
        return self._root

    @property
    def http(self) -> httpx.Client:
        """Return the underlying httpx client."""
        return self._http

    def with_key(self, api_key: str) -> ContactsClient:
        """Return a client for another key on the same connections.

        The new client never closes the shared ``httpx.Client``; it stops
        working when this one is closed.
        """
        return ContactsClient(
            self._root,
            api_key,
            http=self._http,
            timeout=self._timeout,
            retries=self._retries,
            backoff=self._backoff,
            max_retry_after=self._max_retry_after,
            page_size=self._page_size,
            max_offset=self._max_offset,
            sleep=self._sleep,
        )

    def close(self) -> None:
        """Close the httpx client if this object made it."""
        if self._owns_http:
            self._http.close()

    def whoami(self) -> dict[str, Any]:
        """Tell who the API key is (``auth_subtype``, ``identity_id``, ...)."""
        return self._object("GET", "/api/whoami")

    def list_identities(self) -> list[dict[str, Any]]:
        """Return the organization's agent identities."""
        path = f"{API_PREFIX}/identities"
        # Our server answers with a bare list; accept the usual envelope too.
        return _items(self._json("GET", path), f"GET {self._root}{path}")

    def get_identity(self, handle: str) -> dict[str, Any]:
        """Return one agent identity by its handle."""
        return self._object("GET", f"{API_PREFIX}/identities/{_segment(handle)}")

    def revision(self) -> str | None:
        """Return the directory revision, or None when the upstream has none.

        The revision is ``X-Directory-Revision``, an extension of this
        project's server: it changes on every change of the organization's
        directory, so an unchanged value means a cached listing is current.
        """
        response = self._call("GET", f"{API_PREFIX}/contacts", params={"limit": 1})
        return _revision(response)

    def list_all(self) -> Listing:
        """Return every contact the key can see, in name order.

        Pages of ``page_size`` are fetched until one comes back short. A
        contact renamed while paging can move to a later page and come twice;
        the first copy is kept. It can also move to an earlier page and be
        missed, which is why the revision is the first page's: when anything
        changed meanwhile, ``revision()`` differs and the caller lists again.

        Raises:
            DirectoryTooLarge: the page at the last offset the upstream
                accepts is full, so contacts beyond it cannot be listed.
        """
        path = f"{API_PREFIX}/contacts"
        contacts: list[dict[str, Any]] = []
        seen: set[object] = set()
        revision: str | None = None
        offset = 0
        while True:
            params: dict[str, str | int] = {
                "limit": self._page_size,
                "offset": offset,
                "order": "name",
            }
            response = self._call("GET", path, params=params)
            if offset == 0:
                revision = _revision(response)
            elif _revision(response) != revision:
                logger.debug(
                    "Directory changed while listing (revision %s, now %s)",
                    revision,
                    _revision(response),
                )

            call = f"GET {self._root}{path}"
            page = _items(_decode(response, call), call)
            for contact in page:
                if contact.get("id") not in seen:
                    seen.add(contact.get("id"))
                    contacts.append(contact)

            if len(page) < self._page_size:
                return Listing(contacts=contacts, revision=revision)
            if offset + self._page_size > self._max_offset:
                raise DirectoryTooLarge(
                    f"The directory is larger than listing by offset can reach: "
                    f"{len(contacts)} contacts were reached, and the upstream "
                    f"accepts no offset above {self._max_offset}",
                    reached=len(contacts),
                )
            offset += self._page_size

    def get_contact(self, contact_id: str) -> dict[str, Any]:
        """Return one contact."""
        return self._object("GET", _contact_path(contact_id))

    def create_contact(
        self,
        fields: Mapping[str, Any],
        access_identity_ids: list[str] | None = None,
    ) -> dict[str, Any]:
        """Create a contact and return it as stored.

        ``access_identity_ids`` None leaves the member out, which makes the
        contact visible to every agent; ``[]`` makes it visible to admins and
        people only.
        """
        body = dict(fields)
        if access_identity_ids is not None:
            body["access_identity_ids"] = list(access_identity_ids)
        return self._object("POST", f"{API_PREFIX}/contacts", json=body)

    def update_contact(
        self, contact_id: str, patch: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Apply a JSON merge patch (RFC 7396) and return the contact."""
        return self._object("PATCH", _contact_path(contact_id), json=dict(patch))

    def delete_contact(self, contact_id: str) -> None:
        """Delete a contact."""
        self._call("DELETE", _contact_path(contact_id))

    def grant(self, contact_id: str, identity_id: str | None) -> dict[str, Any]:
        """Grant one identity access, or reset the contact to the wildcard (None)."""
        path = f"{_contact_path(contact_id)}/access"
        return self._object("POST", path, json={"identity_id": identity_id})

    def revoke(self, contact_id: str, identity_id: str) -> None:
        """Revoke one identity's access to a contact."""
        path = f"{_contact_path(contact_id)}/access/{_segment(identity_id)}"
        self._call("DELETE", path)

    def _object(
        self, method: str, path: str, *, json: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Send a call whose answer is one JSON object, and return it."""
        payload = self._json(method, path, json=json)
        if not isinstance(payload, dict):
            raise ContactsAPIError(
                f"The Contacts API answered {method} {self._root}{path} with "
                f"{type(payload).__name__} where a JSON object was expected"
            )
        return payload

    def _json(
        self, method: str, path: str, *, json: dict[str, Any] | None = None
    ) -> Any:
        """Send a call and return its decoded JSON body."""
        response = self._call(method, path, json=json)
        return _decode(response, f"{method} {self._root}{path}")

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        json: dict[str, Any] | None = None,
    ) -> httpx.Response:
        """Send one call, with retries if idempotent; return a 2xx answer."""
        url = self._root + path
        shown = f"{path}?{urlencode(params)}" if params else path
        headers = {"X-API-Key": self._api_key, "Accept": "application/json"}
        attempts = self._retries + 1 if method in _IDEMPOTENT else 1
        uncertain = False
        for attempt in range(1, attempts + 1):
            started = time.perf_counter()
            try:
                response = self._http.request(
                    method,
                    url,
                    params=params,
                    json=json,
                    headers=headers,
                    timeout=self._timeout,
                )
            except httpx.HTTPError as exc:
                elapsed_ms = (time.perf_counter() - started) * 1000
                logger.warning(
                    "Upstream %s %s failed after %.0f ms: %s",
                    method,
                    shown,
                    elapsed_ms,
                    type(exc).__name__,
                )
                error = error_for(exc, method, url)
                if attempt == attempts or not isinstance(exc, _RETRYABLE_ERRORS):
                    raise error from exc
                uncertain = uncertain or not isinstance(exc, _NOT_SENT_ERRORS)
                self._wait(method, shown, attempt, None, type(exc).__name__)
                continue

            elapsed_ms = (time.perf_counter() - started) * 1000
            status = response.status_code
            logger.info(
                "Upstream %s %s: HTTP %d in %.0f ms", method, shown, status, elapsed_ms
            )
            if response.is_success:
                self.last_revision = _revision(response)
                return response
            if method == "DELETE" and status == httpx.codes.NOT_FOUND and uncertain:
                logger.warning(
                    "Taking 404 on retried DELETE %s as success: an earlier "
                    "attempt may have deleted it",
                    path,
                )
                return response

            error = error_for(response, method, url)
            retryable = status == httpx.codes.TOO_MANY_REQUESTS or status >= 500
            if not retryable or attempt == attempts:
                raise error
            retry_after = _retry_after(response)
            if retry_after is not None and retry_after > self._max_retry_after:
                raise error
            uncertain = uncertain or status >= 500
            self._wait(method, shown, attempt, retry_after, f"HTTP {status}")
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _wait(
        self,
        method: str,
        shown: str,
        attempt: int,
        retry_after: float | None,
        cause: str,
    ) -> None:
        """Sleep before the next attempt: Retry-After, else exponential backoff."""
        if retry_after is None:
            delay = self._backoff * 2 ** (attempt - 1)
        else:
            delay = retry_after
        logger.warning(
            "Retrying %s %s in %.1f s after %s (attempt %d of %d)",
            method,
            shown,
            delay,
            cause,
            attempt + 1,
            self._retries + 1,
        )
        self._sleep(delay)


def error_for(
    outcome: httpx.Response | httpx.HTTPError, method: str, url: str
) -> ContactsAPIError:
    """Return the exception for a failed call: an error answer or an httpx error.

    ``url`` names the call in the message; it must carry no secret (ours
    never do: the key travels in a header).
    """
    if isinstance(outcome, httpx.HTTPError):
        problem = f"{type(outcome).__name__}: {outcome}".rstrip(": ")
        if not isinstance(outcome, httpx.TransportError):
            return ContactsAPIError(
                f"The call {method} {url} failed: {problem}.", reason=problem
            )
        message = f"The Contacts API did not answer {method} {url}: {problem}."
        if method not in _IDEMPOTENT and not isinstance(outcome, _NOT_SENT_ERRORS):
            message += " The change may have been applied upstream."
        return UpstreamUnavailable(message, reason=problem)

    status = outcome.status_code
    detail = _detail(outcome)
    reason = _reason_text(detail) or f"HTTP {status} {outcome.reason_phrase}"
    message = f"The Contacts API answered {method} {url} with HTTP {status}: {reason}"
    if not message.endswith((".", "!", "?")):
        message += "."
    if status == httpx.codes.UNAUTHORIZED:
        message += " Check the API key."

    if status == httpx.codes.TOO_MANY_REQUESTS or status >= 500:
        retry_after = _retry_after(outcome)
        if retry_after is not None:
            message += f" Retry after {retry_after:g} s."
        busy_class = (
            RateLimited
            if status == httpx.codes.TOO_MANY_REQUESTS
            else UpstreamUnavailable
        )
        return busy_class(
            message,
            status_code=status,
            detail=detail,
            reason=reason,
            retry_after=retry_after,
        )

    error_class = _ERROR_CLASSES.get(status, ContactsAPIError)
    return error_class(message, status_code=status, detail=detail, reason=reason)


def _service_root(base_url: str) -> str:
    """Return the service root of an api_url, without a trailing /api/v1."""
    root = base_url.strip().rstrip("/").removesuffix(API_PREFIX).rstrip("/")
    parts = urlsplit(root)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"Invalid api_url {base_url!r}: expected http or https")
    if parts.username is not None or parts.password is not None:
        # Not echoed: httpx logs every URL, so a secret in one would leak.
        raise ValueError(
            "Invalid api_url: it carries credentials; remove them and pass the "
            "API key on its own"
        )
    return root


def _check_key(api_key: str) -> None:
    """Refuse a key that cannot travel in a header, without showing it."""
    if not api_key.isascii() or not api_key.isprintable():
        raise ValueError(
            "Invalid API key: it must be printable ASCII to be sent in X-API-Key"
        )


def _segment(value: str) -> str:
    """Quote a value for one path segment; refuse one that would change the path."""
    if value in ("", ".", ".."):
        raise NotFound(f"No contact or identity can have the id {value!r}")
    return quote(value, safe="")


def _contact_path(contact_id: str) -> str:
    return f"{API_PREFIX}/contacts/{_segment(contact_id)}"


def _decode(response: httpx.Response, call: str) -> Any:
    """Return a response's JSON body, or raise when it is not JSON."""
    try:
        return response.json()
    except ValueError as exc:
        raise ContactsAPIError(
            f"The Contacts API answered {call} with a body that is not JSON",
            status_code=response.status_code,
        ) from exc


def _items(payload: Any, call: str) -> list[dict[str, Any]]:
    """Return the objects of a list answer: a bare list or ``{"items": [...]}``."""
    if isinstance(payload, dict):
        payload = payload.get("items")
    if not isinstance(payload, list) or not all(
        isinstance(item, dict) for item in payload
    ):
        raise ContactsAPIError(
            f"The Contacts API answered {call} without a list of objects"
        )
    return payload


def _detail(response: httpx.Response) -> object:
    """Return the ``detail`` member of an error body, else its text, else None."""
    try:
        payload = response.json()
    except ValueError:
        text = response.text.strip()
        return text[:_MAX_REASON_CHARS] or None
    if isinstance(payload, dict) and "detail" in payload:
        detail: object = payload["detail"]
        return detail
    return payload


def _reason_text(detail: object) -> str:
    """Return an upstream detail as one line of text for people."""
    if isinstance(detail, dict):
        detail = detail.get("detail") or detail.get("error") or ""
    if isinstance(detail, list):
        # FastAPI's own validation errors: a list of {"msg": ...} objects.
        detail = "; ".join(
            str(item.get("msg", item)) if isinstance(item, dict) else str(item)
            for item in detail
        )
    flat = " ".join(str(detail or "").split())
    if len(flat) > _MAX_REASON_CHARS:
        flat = flat[: _MAX_REASON_CHARS - 3] + "..."
    return flat


def _revision(response: httpx.Response) -> str | None:
    """Return the X-Directory-Revision header, or None when absent."""
    value: str | None = response.headers.get(REVISION_HEADER)
    return value


def _retry_after(response: httpx.Response) -> float | None:
    """Return a numeric Retry-After in seconds, or None (absent, a date, junk)."""
    try:
        seconds = float(response.headers.get("Retry-After", ""))
    except ValueError:
        return None
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds

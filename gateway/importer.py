"""Migrate a vCard file of any size into the Contacts API in batches.

The upstream ``POST /api/v1/contacts/import`` takes at most 1000 cards and
5 MiB per request, so a whole address book goes up in several requests and
the per-batch results are mapped back to positions in the file.

Exceptions:

    ImportFailed -- the import cannot go on: the credential or the content
                    type was refused, or the upstream stayed unreachable or
                    failing after every retry.
"""

import logging
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TextIO

import httpx

# tqdm ships no type information; types-tqdm provides it when installed.
from tqdm import tqdm

from gateway.vcard import split_vcards

logger = logging.getLogger(__name__)

IMPORT_PATH = "/api/v1/contacts/import"
API_KEY_ENV = "INKBOX_API_KEY"

# Delays before the 1st..4th retry of a batch; a 5th failure is final.
RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0)
MAX_RETRY_AFTER = 30.0

_DEFAULT_TIMEOUT = httpx.Timeout(120.0, connect=10.0)
_RETRYABLE_ERRORS = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
)
_MAX_DETAIL_CHARS = 300


@dataclass(frozen=True)
class Rejected:
    """One card the upstream did not import."""

    index: int
    name: str
    reason: str


@dataclass
class ImportReport:
    """What an import did: counts, rejected cards and HTTP requests sent."""

    created_count: int = 0
    error_count: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    requests: int = 0


class ImportFailed(Exception):
    """The whole import cannot go on.

    ``report`` holds what was done before the failure and ``next_index`` the
    file position of the first card that was not imported, so that a caller
    can say where to resume.
    """

    def __init__(
        self, message: str, *, status_code: int | None = None, detail: str = ""
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.detail = detail
        self.report = ImportReport()
        self.next_index = 0


def import_vcards(
    text: str,
    *,
    base_url: str,
    api_key: str,
    client: httpx.Client | None = None,
    batch_cards: int = 1000,
    batch_bytes: int = 5 * 1024 * 1024 - 64 * 1024,
    progress: Callable[[int], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> ImportReport:
    """Import every card of a vCard stream, batch by batch.

    Each batch holds at most ``batch_cards`` cards and ``batch_bytes`` bytes; a
    single card above the byte cap goes alone, and when the upstream refuses a
    batch as a whole (413, 422) all its cards are recorded as rejected and the
    import goes on. Connection errors, timeouts, 429 and 5xx are retried up to
    four times with backoff (0.5, 1, 2, 4 s, or a numeric ``Retry-After`` of at
    most 30 s). Retrying 429 and 503 is safe, but retrying after a timeout or a
    dropped connection can create duplicates when the first attempt did land
    upstream.

    Args:
        text: the vCard stream; cards are found with ``split_vcards``.
        base_url: the service root, e.g. ``https://inkbox.ai``; a trailing
            ``/api/v1`` is accepted.
        client: used as is and left open; by default one is made and closed.
        progress: called after each batch with its number of cards.
        sleep: waits between retries; tests pass a recorder.

    Raises:
        ImportFailed: on 401, 403, 415, another unexpected status, or a
            failure that outlasted the retries.
    """
    return _import_cards(
        split_vcards(text),
        base_url=base_url,
        api_key=api_key,
        client=client,
        batch_cards=batch_cards,
        batch_bytes=batch_bytes,
        progress=progress,
        sleep=sleep,
    )


def format_summary(report: ImportReport) -> str:
    """Render an import report for a person to read."""
    noun = "contact" if report.created_count == 1 else "contacts"
    head = f"Imported {report.created_count} {noun}"
    if not report.rejected:
        return f"{head}; none rejected"

    lines = [f"{head}; {len(report.rejected)} rejected:"]
    for item in report.rejected:
        reason = " ".join(item.reason.split())
        lines.append(f"  #{item.index} {item.name or '(no name)'}: {reason}")
    return "\n".join(lines)


def run_import_command(
    path: str,
    base_url: str,
    api_key: str,
    *,
    out: TextIO = sys.stderr,
    client: httpx.Client | None = None,
) -> int:
    """Import a vCard file with a progress bar and return the exit code.

    The code is 0 when every card was imported, 1 when some were rejected and
    2 when the import could not run or stopped (the message says why). An
    empty ``api_key`` is taken from the ``INKBOX_API_KEY`` environment
    variable.
    """
    api_key = api_key or os.environ.get(API_KEY_ENV, "")
    if not api_key:
        print(f"No API key given: pass --api-key or set {API_KEY_ENV}.", file=out)
        return 2

    try:
        # utf-8-sig drops a byte order mark; newline="" keeps CRLF as sent.
        with open(path, encoding="utf-8-sig", newline="") as file:
            text = file.read()
    except UnicodeDecodeError as exc:
        print(
            f"Cannot read {path!r}: byte {exc.start} is not valid UTF-8. "
            "Convert the file to UTF-8 first (for example with iconv).",
            file=out,
        )
        return 2
    except OSError as exc:
        print(f"Cannot read {path!r}: {exc.strerror or exc}.", file=out)
        return 2

    cards = split_vcards(text)
    if not cards:
        print(f"No vCard found in {path!r}: expected BEGIN:VCARD blocks.", file=out)
        return 2

    try:
        with tqdm(
            total=len(cards), unit="card", file=out, disable=not out.isatty()
        ) as bar:

            def advance(count: int) -> None:
                bar.update(count)

            report = _import_cards(
                cards,
                base_url=base_url,
                api_key=api_key,
                client=client,
                progress=advance,
            )
    except ImportFailed as exc:
        print(str(exc), file=out)
        if exc.next_index:
            print(format_summary(exc.report), file=out)
            print(f"Cards from #{exc.next_index} on were not imported.", file=out)
        return 2

    print(format_summary(report), file=out)
    return 1 if report.rejected else 0


def _import_cards(
    cards: Sequence[str],
    *,
    base_url: str,
    api_key: str,
    client: httpx.Client | None = None,
    batch_cards: int = 1000,
    batch_bytes: int = 5 * 1024 * 1024 - 64 * 1024,
    progress: Callable[[int], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> ImportReport:
    """Import already split cards; see import_vcards."""
    if batch_cards < 1 or batch_bytes < 1:
        raise ValueError(
            f"Invalid batch limits ({batch_cards} cards, {batch_bytes} bytes): "
            "both must be at least 1"
        )

    url = _import_url(base_url)
    http = httpx.Client(timeout=_DEFAULT_TIMEOUT) if client is None else client
    try:
        run = _ImportRun(http, url, api_key, cards, sleep)
        sizes = [len(body) for body in run.encoded]
        for number, (start, end) in enumerate(
            _batches(sizes, batch_cards, batch_bytes), start=1
        ):
            try:
                run.send_batch(number, start, end)
            except ImportFailed as exc:
                exc.report = run.report
                exc.next_index = start
                raise
            if progress is not None:
                progress(end - start)
    finally:
        if client is None:
            http.close()
    return run.report


def _import_url(base_url: str) -> str:
    """Return the import endpoint under a service root."""
    root = base_url.strip().rstrip("/")
    root = root.removesuffix("/api/v1")
    if not root.startswith(("http://", "https://")):
        raise ImportFailed(f"Invalid base URL {base_url!r}: expected http or https.")
    return root + IMPORT_PATH


def _batches(
    sizes: Sequence[int], max_cards: int, max_bytes: int
) -> Iterator[tuple[int, int]]:
    """Yield (start, end) ranges within both caps; an oversized card goes alone."""
    start = 0
    while start < len(sizes):
        end = start + 1
        total = sizes[start]
        while (
            end < len(sizes)
            and end - start < max_cards
            and total + sizes[end] <= max_bytes
        ):
            total += sizes[end]
            end += 1
        yield start, end
        start = end


class _ImportRun:
    """Send the batches of one import and collect their outcome."""

    def __init__(
        self,
        client: httpx.Client,
        url: str,
        api_key: str,
        cards: Sequence[str],
        sleep: Callable[[float], None],
    ) -> None:
        self.client = client
        self.url = url
        self.headers = {
            "X-API-Key": api_key,
            "Content-Type": "text/vcard; charset=utf-8",
        }
        self.cards = cards
        # Each card ends in CRLF, so joined cards are separated by CRLF.
        self.encoded = [card.rstrip("\r\n").encode() + b"\r\n" for card in cards]
        self.sleep = sleep
        self.report = ImportReport()

    def send_batch(self, number: int, start: int, end: int) -> None:
        """Send cards[start:end] and add the outcome to the report."""
        count = end - start
        response = self._post(number, count, b"".join(self.encoded[start:end]))
        status = response.status_code
        if status == httpx.codes.OK:
            self._record_results(response, number, start, end)
            return

        detail = _detail(response)
        # The messages below end in a period of their own.
        shown = detail.rstrip(".")
        if status in (
            httpx.codes.REQUEST_ENTITY_TOO_LARGE,
            httpx.codes.UNPROCESSABLE_ENTITY,
        ):
            logger.warning(
                "Upstream rejected import batch %d (%d cards) whole: HTTP %d %s",
                number,
                count,
                status,
                detail,
            )
            for index in range(start, end):
                self._reject(index, detail)
            return

        if status in (httpx.codes.UNAUTHORIZED, httpx.codes.FORBIDDEN):
            message = (
                f"The Contacts API refused the API key (HTTP {status}): {shown}. "
                f"Check --api-key or {API_KEY_ENV}."
            )
        elif status == httpx.codes.UNSUPPORTED_MEDIA_TYPE:
            message = (
                f"The Contacts API refused the vCard upload (HTTP {status}): {shown}."
            )
        elif _is_retryable(status):
            message = (
                f"The Contacts API kept failing (HTTP {status}) after "
                f"{len(RETRY_DELAYS) + 1} attempts: {shown}."
            )
        else:
            message = f"Unexpected HTTP {status} from {self.url}: {shown}."
        raise ImportFailed(message, status_code=status, detail=detail)

    def _post(self, number: int, count: int, body: bytes) -> httpx.Response:
        """POST one batch, retrying transport errors, 429 and 5xx with backoff."""
        attempts = len(RETRY_DELAYS) + 1
        for attempt in range(1, attempts + 1):
            self.report.requests += 1
            try:
                response = self.client.post(
                    self.url, content=body, headers=self.headers
                )
            except _RETRYABLE_ERRORS as exc:
                if attempt == attempts:
                    raise ImportFailed(
                        f"Cannot reach the Contacts API at {self.url} after "
                        f"{attempts} attempts: {type(exc).__name__}: {exc}."
                    ) from exc
                delay = RETRY_DELAYS[attempt - 1]
                logger.warning(
                    "Import batch %d (%d cards) failed with %s; retrying in %.1f s",
                    number,
                    count,
                    type(exc).__name__,
                    delay,
                )
                self.sleep(delay)
                continue
            except httpx.HTTPError as exc:
                raise ImportFailed(
                    f"Cannot send to the Contacts API at {self.url}: "
                    f"{type(exc).__name__}: {exc}."
                ) from exc

            logger.info(
                "Import batch %d (%d cards, %d bytes, attempt %d): HTTP %d",
                number,
                count,
                len(body),
                attempt,
                response.status_code,
            )
            if not _is_retryable(response.status_code) or attempt == attempts:
                return response

            delay = _retry_delay(response, RETRY_DELAYS[attempt - 1])
            logger.warning(
                "Retrying import batch %d in %.1f s after HTTP %d",
                number,
                delay,
                response.status_code,
            )
            self.sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _record_results(
        self, response: httpx.Response, number: int, start: int, end: int
    ) -> None:
        """Map a 200 response's per-card results back to file positions."""
        try:
            payload = response.json()
        except ValueError as exc:
            raise ImportFailed(
                f"The Contacts API answered import batch {number} with invalid JSON.",
                status_code=response.status_code,
            ) from exc
        results = payload.get("results") if isinstance(payload, dict) else None
        if not isinstance(results, list):
            raise ImportFailed(
                f"The Contacts API answered import batch {number} without a "
                "results list.",
                status_code=response.status_code,
            )

        accounted = 0
        for result in results:
            index = result.get("index") if isinstance(result, dict) else None
            if not isinstance(index, int) or not 0 <= index < end - start:
                logger.warning(
                    "Ignoring import result with index %r in batch %d", index, number
                )
                continue
            accounted += 1
            if result.get("status") == "created":
                self.report.created_count += 1
            else:
                reason = str(result.get("error") or "rejected without a reason")
                self._reject(start + index, reason)

        if accounted != end - start:
            logger.warning(
                "Upstream reported %d results for %d cards in import batch %d",
                accounted,
                end - start,
                number,
            )

    def _reject(self, index: int, reason: str) -> None:
        """Record the card at a file position as rejected."""
        name = _card_name(self.cards[index])
        self.report.rejected.append(Rejected(index=index, name=name, reason=reason))
        self.report.error_count += 1


def _is_retryable(status: int) -> bool:
    """Tell whether a status is worth sending the same batch again."""
    return status == httpx.codes.TOO_MANY_REQUESTS or status >= 500


def _retry_delay(response: httpx.Response, backoff: float) -> float:
    """Return the wait before a retry: a numeric Retry-After, else the backoff."""
    value = response.headers.get("Retry-After", "")
    try:
        seconds = float(value)
    except ValueError:
        # An HTTP-date or garbage: fall back to our own backoff.
        return backoff
    if not math.isfinite(seconds) or seconds < 0:
        return backoff
    return min(seconds, MAX_RETRY_AFTER)


def _detail(response: httpx.Response) -> str:
    """Return the upstream's error detail as one short line of text."""
    try:
        payload = response.json()
    except ValueError:
        payload = None

    detail: object = payload.get("detail") if isinstance(payload, dict) else None
    if isinstance(detail, dict):
        detail = detail.get("detail") or detail.get("error")
    if isinstance(detail, list):
        # FastAPI validation errors: a list of {"msg": ...} objects.
        detail = "; ".join(
            str(item.get("msg", item)) if isinstance(item, dict) else str(item)
            for item in detail
        )
    if not detail:
        text = response.text.strip() if payload is None else ""
        detail = text or f"HTTP {response.status_code} {response.reason_phrase}"

    flat = " ".join(str(detail).split())
    if len(flat) > _MAX_DETAIL_CHARS:
        flat = flat[: _MAX_DETAIL_CHARS - 3] + "..."
    return flat


def _card_name(card: str) -> str:
    """Return a card's FN, else its N in reading order, else ""."""
    # RFC 6350 3.2: a line break followed by a space or tab continues a line.
    unfolded = card.replace("\r\n", "\n").replace("\n ", "").replace("\n\t", "")
    n_value = None
    for line in unfolded.split("\n"):
        prop, value = _split_property(line)
        if prop == "FN" and value.strip():
            return _unescape(value).strip()
        if prop == "N" and n_value is None:
            n_value = value

    if n_value is None:
        return ""
    parts = [
        " ".join(_unescape(value) for value in _split_escaped(part, ","))
        for part in _split_escaped(n_value)
    ]
    parts += [""] * (5 - len(parts))
    family, given, additional, prefix, suffix = parts[:5]
    ordered = (prefix, given, additional, family, suffix)
    return " ".join(" ".join(ordered).split())


def _split_property(line: str) -> tuple[str, str]:
    """Split a content line into its upper-case property name and raw value."""
    quoted = False
    for position, char in enumerate(line):
        if char == '"':
            quoted = not quoted
        elif char == ":" and not quoted:
            head, value = line[:position], line[position + 1 :]
            name = head.split(";", 1)[0].rsplit(".", 1)[-1]
            return name.strip().upper(), value
    return "", ""


def _split_escaped(value: str, separator: str = ";") -> list[str]:
    """Split a value at separators that no backslash escapes."""
    parts: list[str] = []
    current: list[str] = []
    chars = iter(value)
    for char in chars:
        if char == "\\":
            current.append(char + next(chars, ""))
        elif char == separator:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _unescape(value: str) -> str:
    """Undo vCard text escapes; an escaped newline becomes a space."""
    out: list[str] = []
    chars = iter(value)
    for char in chars:
        if char == "\\":
            escaped = next(chars, "")
            out.append(" " if escaped in ("n", "N") else escaped)
        else:
            out.append(char)
    return "".join(out)

"""Benchmark the Contacts API: bulk import, list and lookup latency, memory.

The benchmark starts a real ``contacts_api`` process on loopback with a fresh
SQLite database in a temporary folder, imports generated cards through
``POST /api/v1/contacts/import`` and times list and lookup requests one at a
time with real API keys. It prints a table and writes every figure to a JSON
file. See ``bench/README.md``.

Run ``python -m bench.api_bench --help`` for the options.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import queue
import random
import re
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import unicodedata
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

# Under ``python -m`` the module is named "__main__"; give it a stable name.
logger = logging.getLogger("bench.api_bench")

DEFAULT_CONTACTS = 100_000
DEFAULT_SAMPLES = 200
DEFAULT_OUT = Path("bench/results/api_bench.json")
DEFAULT_BUDGET_MINUTES = 30.0
SEED = 20_260_601

BATCH_CARDS = 1000  # the contract's limit per import request
MAX_BATCH_BYTES = 5 * 1024 * 1024
PAGE = 100
MAX_OFFSET = 10_000  # the contract's largest offset
WARMUP_REQUESTS = 3
STARTUP_SECONDS = 60.0
STOP_SECONDS = 10.0
PROJECT = Path(__file__).resolve().parents[1]
READY = re.compile(r"Uvicorn running on (http://\S+)")
READ_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
IMPORT_TIMEOUT = httpx.Timeout(300.0, connect=10.0)


def _names(text: str) -> tuple[str, ...]:
    """Split a comma-separated list (names such as "Da Silva" hold spaces)."""
    return tuple(name.strip() for name in text.split(","))


GIVEN_NAMES = _names(
    "Aaliyah, Adam, Aiko, Alejandro, Amara, Ana, Andrei, Anika, Arjun, Astrid, "
    "Ben, Bianca, Carlos, Chen, Chiara, Chloé, Daniel, Dmitri, Elena, Elif, "
    "Emily, Emma, Ethan, Fatima, Felix, Freya, Gabriel, Grace, Hana, Hannah, "
    "Hiroshi, Ibrahim, Ingrid, Isabel, Ivan, Jakob, James, Javier, Jing, Jonas, "
    "José, Julia, Kai, Kenji, Khalid, Lars, Laura, Leila, Liam, Lucas, Lucía, "
    "Maya, Mei, Mohammed, Nadia, Noah, Nora, Olivia, Omar, Oskar, Paolo, Priya, "
    "Rafael, Ravi, Rosa, Sara, Sebastian, Sofia, Søren, Tomás, Uma, Victor, "
    "Wei, William, Yara, Yusuf, Zara, Zoë"
)
FAMILY_NAMES = _names(
    "Abe, Adeyemi, Andersen, Bauer, Becker, Brown, Castillo, Chen, Costa, "
    "Da Silva, Dubois, Evans, Fernández, Fischer, García, Gonzalez, Gupta, Hansen, "
    "Hernández, Hoffmann, Ivanova, Jensen, Johnson, Kaur, Kim, Kowalski, Kumar, "
    "Larsen, Lee, Lopez, Martin, Martínez, Meyer, Miller, Moreau, Müller, "
    "Nakamura, Nguyen, Nielsen, Novak, Okafor, Olsen, Park, Patel, Petrov, "
    "Popescu, Rossi, Russo, Sato, Schmidt, Schneider, Silva, Singh, Smith, "
    "Suzuki, Tanaka, Taylor, Thompson, Wagner, Wang, Weber, Williams, Wilson, "
    "Wójcik, Yamamoto, Yilmaz, Zhang, Ziegler"
)
WEBMAIL_DOMAINS = ("gmail.com", "outlook.com", "yahoo.com", "icloud.com", "proton.me")
DOMAIN_STEMS = _names(
    "acme, alpine, amber, apex, arcadia, atlas, aurora, beacon, birch, blue, "
    "bright, cedar, cobalt, comet, coral, crest, delta, ember, everest, falcon, "
    "fjord, forge, granite, harbor, helix, horizon, indigo, iron, juniper, "
    "keystone, lumen, maple, meridian, nimbus, north, oak, orbit, pine, polar, "
    "quartz, redwood, river, sage, sierra, solar, summit, terra, tidal, vertex, "
    "willow, zenith"
)
DOMAIN_SUFFIXES = ("labs", "tech", "group", "works")
TLDS = ("com", "io", "de", "co.uk", "org")
JOB_TITLES = (
    "Account Executive",
    "CEO",
    "CTO",
    "Customer Success Manager",
    "Data Scientist",
    "Designer",
    "Engineering Manager",
    "Head of Sales",
    "Marketing Lead",
    "Office Manager",
    "Operations Director",
    "Procurement Officer",
    "Product Manager",
    "Recruiter",
    "Software Engineer",
    "Support Specialist",
)
NOTES = (
    "Met at the {city} trade fair; follow up in Q3.",
    "Prefers email over phone. Decision maker for {company}.",
    "Introduced by a mutual contact; interested in the enterprise plan.",
    "Renewal due next spring; ask about volume pricing.",
    "Speaks German and English. Call between 9 and 12 CET.",
    "Former colleague; now at {company}.",
)
CITIES = (
    ("Berlin", "BE", "10115", "Germany"),
    ("London", None, "EC1A 1BB", "United Kingdom"),
    ("Madrid", "MD", "28001", "Spain"),
    ("New York", "NY", "10001", "USA"),
    ("Paris", None, "75002", "France"),
    ("San Francisco", "CA", "94105", "USA"),
    ("São Paulo", "SP", "01310-100", "Brazil"),
    ("Tokyo", None, "100-0005", "Japan"),
    ("Toronto", "ON", "M5H 2N2", "Canada"),
    ("Warsaw", None, "00-001", "Poland"),
)
STREETS = ("Main St", "High Street", "Hauptstraße", "Rue de la Paix", "Elm Ave")
US_AREA_CODES = (212, 305, 312, 415, 503, 617, 646, 702, 718, 917)


class BudgetExceeded(Exception):
    """The benchmark ran past its time budget."""


class Stopped(Exception):
    """The benchmark received SIGTERM or SIGHUP."""


class BenchError(Exception):
    """The benchmark cannot go on: the server or a request failed."""


@dataclass(frozen=True)
class Card:
    """One generated vCard and the values it should be found by."""

    text: str
    name: str
    emails: tuple[str, ...]
    phones: tuple[str, ...]


@dataclass
class Server:
    """A running Contacts API process and the tail of its log."""

    process: subprocess.Popen[str]
    url: str = ""
    log: deque[str] = field(default_factory=lambda: deque(maxlen=40))
    problems: int = 0

    def memory_mib(self) -> dict[str, float]:
        """Return the process's VmRSS and VmHWM (peak RSS) in MiB."""
        status = Path(f"/proc/{self.process.pid}/status").read_text(encoding="ascii")
        found: dict[str, float] = {}
        for line in status.splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                found[name] = round(int(value.split()[0]) / 1024, 1)
        return found

    def log_tail(self) -> str:
        return "\n".join(self.log)


def _ascii(text: str) -> str:
    """Return ``text`` lower-cased with accents dropped, for email local parts."""
    decomposed = unicodedata.normalize("NFKD", text.replace("ø", "o"))
    return "".join(c for c in decomposed if c.isascii() and c.isalnum()).lower()


def _escape(text: str) -> str:
    """Escape a vCard text value (RFC 6350, section 3.4)."""
    return (
        text.replace("\\", "\\\\")
        .replace(",", "\\,")
        .replace(";", "\\;")
        .replace("\n", "\\n")
    )


def _fold(line: str) -> str:
    """Fold a content line at 75 octets (RFC 6350, section 3.2)."""
    if len(line.encode("utf-8")) <= 75:
        return line
    parts: list[str] = []
    current, size = "", 0
    for char in line:
        width = len(char.encode("utf-8"))
        if size + width > 75:
            parts.append(current)
            current, size = " ", 1
        current += char
        size += width
    parts.append(current)
    return "\r\n".join(parts)


def _companies() -> list[tuple[str, str]]:
    """Return ~200 companies and their domains, which emails are spread over."""
    return [
        (
            f"{stem.title()} {suffix.title()}",
            f"{stem}{suffix}.{TLDS[(i + j) % len(TLDS)]}",
        )
        for i, stem in enumerate(DOMAIN_STEMS)
        for j, suffix in enumerate(DOMAIN_SUFFIXES)
    ]


def _phone(rng: random.Random, index: int | None) -> str:
    """Return an E.164 number; unique per ``index`` when one is given."""
    if index is None:
        country = rng.choice(("+4420", "+4930", "+3491"))
        width = 8 if country != "+3491" else 7
        return country + "".join(rng.choice("0123456789") for _ in range(width))
    exchange = 200 + (index // 10_000) % 800
    return f"+1{rng.choice(US_AREA_CODES)}{exchange}{index % 10_000:04d}"


def generate_cards(count: int, seed: int = SEED) -> list[Card]:
    """Return ``count`` deterministic, realistic vCard 3.0 cards."""
    rng = random.Random(seed)
    companies = _companies()
    cards = []
    for index in range(count):
        given, family = rng.choice(GIVEN_NAMES), rng.choice(FAMILY_NAMES)
        name = f"{given} {family}"
        local = f"{_ascii(given)}.{_ascii(family)}"
        company, company_domain = rng.choice(companies)
        has_company = rng.random() < 0.6

        # About a third of the people use a webmail address, so a few domains
        # have thousands of members and the rest hundreds.
        first_domain = (
            rng.choice(WEBMAIL_DOMAINS) if rng.random() < 0.35 else company_domain
        )
        emails = [f"{local}{index}@{first_domain}"]
        if rng.random() < 0.4:
            second_domain = company_domain
            if second_domain == first_domain:
                second_domain = rng.choice(WEBMAIL_DOMAINS)
            emails.append(f"{_ascii(given)[0]}{_ascii(family)}.{index}@{second_domain}")
        phones = [_phone(rng, index)]
        if rng.random() < 0.3:
            phones.append(_phone(rng, None))

        lines = [
            "BEGIN:VCARD",
            "VERSION:3.0",
            f"UID:bench-{index:07d}@example.invalid",
            f"FN:{_escape(name)}",
            f"N:{_escape(family)};{_escape(given)};;;",
        ]
        for position, email in enumerate(emails):
            kind = (
                "HOME" if position == 0 and first_domain in WEBMAIL_DOMAINS else "WORK"
            )
            lines.append(f"EMAIL;TYPE=INTERNET,{kind}:{email}")
        for position, phone in enumerate(phones):
            lines.append(f"TEL;TYPE={'CELL' if position == 0 else 'WORK'}:{phone}")
        if has_company:
            lines.append(f"ORG:{_escape(company)}")
            lines.append(f"TITLE:{_escape(rng.choice(JOB_TITLES))}")
        city, region, postal, country = rng.choice(CITIES)
        if rng.random() < 0.25:
            note = rng.choice(NOTES).format(city=city, company=company)
            lines.append(f"NOTE:{_escape(note)}")
        if rng.random() < 0.35:
            street = f"{rng.randint(1, 250)} {rng.choice(STREETS)}"
            fields = (street, city, region or "", postal, country)
            lines.append("ADR;TYPE=WORK:;;" + ";".join(_escape(f) for f in fields))
        if rng.random() < 0.2:
            birthday = f"{rng.randint(1950, 2003)}-{rng.randint(1, 12):02d}-"
            lines.append(f"BDAY:{birthday}{rng.randint(1, 28):02d}")
        lines.append("END:VCARD")

        text = "".join(_fold(line) + "\r\n" for line in lines)
        cards.append(Card(text, name, tuple(emails), tuple(phones)))
    return cards


def percentile(values: Sequence[float], fraction: float) -> float:
    """Return the nearest-rank percentile of ``values`` (fraction in 0..1)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def summary_ms(seconds: Sequence[float]) -> dict[str, float]:
    """Return p50, p95, max and mean of durations, in milliseconds."""
    return {
        "p50_ms": round(percentile(seconds, 0.50) * 1000, 2),
        "p95_ms": round(percentile(seconds, 0.95) * 1000, 2),
        "max_ms": round(max(seconds) * 1000, 2),
        "mean_ms": round(sum(seconds) / len(seconds) * 1000, 2),
    }


def _drain(server: Server, lines: queue.Queue[str | None]) -> None:
    """Keep reading the server's stderr so that it never blocks on a full pipe."""
    assert server.process.stderr is not None
    for line in server.process.stderr:
        line = line.rstrip("\n")
        server.log.append(line)
        if "ERROR" in line or "Traceback" in line:
            server.problems += 1
        lines.put(line)
    lines.put(None)


@contextmanager
def running_server(database_url: str) -> Iterator[Server]:
    """Start the API on a free loopback port; stop it when the block ends."""
    command = [
        *(sys.executable, "-m", "contacts_api.cli", "api"),
        *("--host", "127.0.0.1", "--port", "0"),
        *("--database", database_url, "--log-level", "info"),
    ]
    # uvicorn writes its access log (one line per request) to stdout.
    process = subprocess.Popen(
        command,
        cwd=PROJECT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        errors="replace",
    )
    server = Server(process)
    try:
        lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=_drain, args=(server, lines), daemon=True).start()
        deadline = time.monotonic() + STARTUP_SECONDS
        while not server.url:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BenchError(
                    f"The API did not start within {STARTUP_SECONDS:.0f} s; "
                    f"its log:\n{server.log_tail()}"
                )
            try:
                line = lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise BenchError(
                    f"The API exited with status {process.wait()} before it was "
                    f"ready; its log:\n{server.log_tail()}"
                )
            match = READY.search(line)
            if match:
                server.url = match.group(1)
        logger.info("API process %d is serving %s", process.pid, server.url)
        yield server
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                logger.warning(
                    "API process %d ignored SIGTERM; killing it", process.pid
                )
                process.kill()
                process.wait()


def create_keys(database_url: str) -> tuple[str, str]:
    """Create the organization, one agent identity and keys; return both keys."""
    from contacts_api import admin
    from contacts_api.db import Database

    db = Database(database_url)
    try:
        db.create_schema()
        org = admin.create_organization(db, "bench")
        admin.create_identity(db, org["id"], "agent1")
        admin_key = admin.create_key(db, org["id"], admin=True)["key"]
        agent_key = admin.create_key(db, org["id"], identity="agent1")["key"]
    finally:
        db.dispose()
    return str(admin_key), str(agent_key)


def batches(cards: Sequence[Card]) -> Iterator[bytes]:
    """Yield import bodies of at most BATCH_CARDS cards and MAX_BATCH_BYTES."""
    for start in range(0, len(cards), BATCH_CARDS):
        body = "".join(card.text for card in cards[start : start + BATCH_CARDS])
        data = body.encode("utf-8")
        if len(data) > MAX_BATCH_BYTES:
            raise BenchError(f"A batch of {len(data)} bytes is over the 5 MiB limit.")
        yield data


def run_import(client: httpx.Client, key: str, cards: Sequence[Card]) -> dict[str, Any]:
    """Import every card in batches; return throughput figures."""
    bodies = list(batches(cards))
    headers = {"X-API-Key": key, "Content-Type": "text/vcard; charset=utf-8"}
    durations: list[float] = []
    created = errors = 0
    first_errors: list[str] = []
    response_bytes = 0

    started = time.perf_counter()
    for number, body in enumerate(bodies, start=1):
        before = time.perf_counter()
        response = client.post(
            "/api/v1/contacts/import",
            content=body,
            headers=headers,
            timeout=IMPORT_TIMEOUT,
        )
        durations.append(time.perf_counter() - before)
        if response.status_code != 200:
            raise BenchError(
                f"Import batch {number} failed with HTTP {response.status_code}: "
                f"{response.text[:500]}"
            )
        report = response.json()
        created += report["created_count"]
        errors += report["error_count"]
        response_bytes += len(response.content)
        for result in report["results"]:
            if result["status"] == "error" and len(first_errors) < 5:
                first_errors.append(f"batch {number} card {result['index']}: ")
                first_errors[-1] += str(result["error"])
        if number % 10 == 0 or number == len(bodies):
            logger.info(
                "Imported batch %d of %d (%d contacts, last batch %.2f s)",
                number,
                len(bodies),
                created,
                durations[-1],
            )
    wall = time.perf_counter() - started

    if created != len(cards):
        raise BenchError(
            f"The import created {created} of {len(cards)} contacts "
            f"({errors} errors); first errors: {first_errors}"
        )
    return {
        "cards": len(cards),
        "batches": len(bodies),
        "created_count": created,
        "error_count": errors,
        "wall_s": round(wall, 2),
        "cards_per_s": round(len(cards) / wall, 1),
        "request_mib": round(sum(len(body) for body in bodies) / 2**20, 1),
        "response_mib": round(response_bytes / 2**20, 1),
        "batch_first_s": round(durations[0], 3),
        "batch_last_s": round(durations[-1], 3),
        "batch_p50_s": round(percentile(durations, 0.50), 3),
        "batch_max_s": round(max(durations), 3),
    }


Check = Callable[[dict[str, Any], list[dict[str, Any]]], None]
Probe = tuple[dict[str, Any], Check]


def measure(
    client: httpx.Client, label: str, path: str, key: str, probes: Sequence[Probe]
) -> dict[str, Any]:
    """Send one GET per probe, one at a time, and check and time each answer."""
    headers = {"X-API-Key": key}
    counts: list[int] = []

    def send(params: dict[str, Any], check: Check) -> float:
        before = time.perf_counter()
        response = client.get(path, params=params, headers=headers)
        elapsed = time.perf_counter() - before
        if response.status_code != 200:
            raise BenchError(
                f"{label}: GET {path} {params} gave HTTP {response.status_code}: "
                f"{response.text[:500]}"
            )
        # Only list and lookup answers hold items; whoami has none.
        items = response.json().get("items", [])
        check(params, items)
        counts.append(len(items))
        return elapsed

    for params, check in probes[:WARMUP_REQUESTS]:
        send(params, check)
    counts.clear()
    durations = [send(params, check) for params, check in probes]

    figures: dict[str, Any] = {"label": label, "path": path, "samples": len(probes)}
    figures.update(summary_ms(durations))
    figures["mean_items"] = round(sum(counts) / len(counts), 1)
    logger.info(
        "%s: p50 %.2f ms, p95 %.2f ms", label, figures["p50_ms"], figures["p95_ms"]
    )
    return figures


def _nothing(_params: dict[str, Any], _items: list[dict[str, Any]]) -> None:
    """Accept any answer (for whoami, which holds no items)."""


def _has_email(email: str) -> Check:
    def check(params: dict[str, Any], items: list[dict[str, Any]]) -> None:
        values = {e["value"].lower() for item in items for e in item["emails"]}
        if email.lower() not in values:
            raise BenchError(f"No contact with {email!r} in the answer to {params}.")

    return check


def _has_phone(phone: str) -> Check:
    def check(params: dict[str, Any], items: list[dict[str, Any]]) -> None:
        values = {p["value_e164"] for item in items for p in item["phones"]}
        if phone not in values:
            raise BenchError(f"No contact with {phone!r} in the answer to {params}.")

    return check


def _in_domain(domain: str) -> Check:
    def check(params: dict[str, Any], items: list[dict[str, Any]]) -> None:
        if not items:
            raise BenchError(f"No contact answered {params}.")
        suffix = "@" + domain
        for item in items:
            if not any(e["value"].lower().endswith(suffix) for e in item["emails"]):
                raise BenchError(f"Contact {item['id']} does not match {params}.")

    return check


def _full_page(total: int) -> Check:
    def check(params: dict[str, Any], items: list[dict[str, Any]]) -> None:
        if len(items) != min(PAGE, total - params["offset"]):
            raise BenchError(f"A list page {params} held {len(items)} contacts.")

    return check


def run_latency(
    client: httpx.Client,
    admin_key: str,
    agent_key: str,
    cards: Sequence[Card],
    samples: int,
) -> dict[str, dict[str, Any]]:
    """Time list pages, the three lookups and the ``q`` scan baseline.

    ``whoami`` comes first: it costs a request and the key check but no
    contact query, so it shows what every other figure pays before querying.
    """
    rng = random.Random(SEED + 1)
    top = max(0, min(MAX_OFFSET, len(cards) - PAGE))
    full_page = _full_page(len(cards))
    pages: list[Probe] = [
        ({"limit": PAGE, "offset": rng.randint(0, top), "order": "name"}, full_page)
        for _ in range(samples)
    ]
    targets = [rng.choice(cards) for _ in range(samples)]
    emails = [rng.choice(card.emails) for card in targets]
    domains = sorted({e.rpartition("@")[2] for card in cards for e in card.emails})
    chosen_domains = [rng.choice(domains) for _ in range(samples)]
    phones = [rng.choice(rng.choice(cards).phones) for _ in range(samples)]

    listing = "/api/v1/contacts"
    lookup = "/api/v1/contacts/lookup"
    by_email: list[Probe] = [({"email": e}, _has_email(e)) for e in emails]
    by_domain: list[Probe] = [
        ({"email_domain": d, "limit": PAGE}, _in_domain(d)) for d in chosen_domains
    ]
    by_phone: list[Probe] = [({"phone": p}, _has_phone(p)) for p in phones]
    # The q search covers names, company, title and notes but not emails
    # (contacts-api.md), so the baseline finds the same contacts by the other
    # thing a caller knows, the name, and checks that the email is among them.
    by_name: list[Probe] = [
        ({"q": card.name, "limit": PAGE}, _has_email(email))
        for card, email in zip(targets, emails, strict=True)
    ]
    return {
        "whoami": measure(
            client,
            "whoami (HTTP and key check only)",
            "/api/whoami",
            admin_key,
            [({}, _nothing)] * samples,
        ),
        "list_admin": measure(
            client, "list page, order=name (admin)", listing, admin_key, pages
        ),
        "list_agent": measure(
            client, "list page, order=name (agent)", listing, agent_key, pages
        ),
        "lookup_email": measure(
            client, "lookup email (admin)", lookup, admin_key, by_email
        ),
        "lookup_domain": measure(
            client,
            "lookup email_domain, limit=100 (admin)",
            lookup,
            admin_key,
            by_domain,
        ),
        "lookup_phone": measure(
            client, "lookup phone (admin)", lookup, admin_key, by_phone
        ),
        "q_scan": measure(
            client, "q name search, same contacts (admin)", listing, admin_key, by_name
        ),
    }


def machine() -> dict[str, Any]:
    """Describe the machine: processors, memory, system."""
    meminfo = Path("/proc/meminfo").read_text(encoding="ascii")
    total_kib = int(re.search(r"MemTotal:\s+(\d+)", meminfo).group(1))  # type: ignore[union-attr]
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "memory_mib": total_kib // 1024,
        "system": platform.platform(),
        "processor": platform.machine(),
    }


def code_version() -> dict[str, Any]:
    """Return the measured commit and whether tracked files differ from it."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(PROJECT), *args],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout.rstrip("\n")

    try:
        commit = git("rev-parse", "HEAD")
        changed = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "modified_files": None}
    return {
        "commit": commit,
        "modified_files": [line[3:] for line in changed.splitlines()],
    }


def print_report(result: dict[str, Any]) -> None:
    """Print the figures as a table."""
    imported = result["import"]
    print()
    print(
        f"Contacts API benchmark: {result['contacts']} contacts, "
        f"{result['samples']} samples, Python {result['python']}, "
        f"SQLite {result['sqlite']}, {result['machine']['nproc']} CPUs"
    )
    print(
        f"Import: {imported['cards']} cards in {imported['batches']} batches, "
        f"{imported['wall_s']:.1f} s, {imported['cards_per_s']:.0f} cards/s "
        f"(batch p50 {imported['batch_p50_s']:.2f} s, "
        f"max {imported['batch_max_s']:.2f} s)"
    )
    print()
    print(f"{'request':<42} {'p50 ms':>9} {'p95 ms':>9} {'max ms':>9} {'items':>7}")
    for figures in result["latency"].values():
        print(
            f"{figures['label']:<42} {figures['p50_ms']:>9.2f} "
            f"{figures['p95_ms']:>9.2f} {figures['max_ms']:>9.2f} "
            f"{figures['mean_items']:>7.1f}"
        )
    print()
    print(
        "lookup email p50 / q scan p50: "
        f"{result['lookup_vs_scan_p50_ratio']:.4f} "
        f"(the scan is {1 / result['lookup_vs_scan_p50_ratio']:.0f}x slower)"
    )
    memory = result["memory_mib"]
    print(
        f"Server memory: RSS after import {memory['rss_after_import']:.1f} MiB, "
        f"peak (VmHWM) {memory['peak']:.1f} MiB; "
        f"database {result['database_mib']:.1f} MiB"
    )


def _database_mib(folder: Path) -> float:
    return round(sum(p.stat().st_size for p in folder.glob("contacts.db*")) / 2**20, 1)


def run(args: argparse.Namespace, argv: Sequence[str]) -> dict[str, Any]:
    """Run the whole benchmark in a temporary folder; return the figures."""
    started = time.monotonic()
    load_at_start = os.getloadavg()
    code = code_version()
    logger.info("Generating %d cards", args.contacts)
    cards = generate_cards(args.contacts)

    folder = Path(tempfile.mkdtemp(prefix="contacts-bench-"))
    try:
        database_url = f"sqlite:///{folder / 'contacts.db'}"
        admin_key, agent_key = create_keys(database_url)
        with (
            running_server(database_url) as server,
            httpx.Client(base_url=server.url, timeout=READ_TIMEOUT) as client,
        ):
            imported = run_import(client, admin_key, cards)
            after_import = server.memory_mib()
            latency = run_latency(client, admin_key, agent_key, cards, args.samples)
            at_end = server.memory_mib()
            problems = server.problems
        database_mib = _database_mib(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    return {
        "command": shlex.join(["python", "-m", "bench.api_bench", *argv]),
        "contacts": args.contacts,
        "samples": args.samples,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "httpx": httpx.__version__,
        "code": code,
        "machine": machine(),
        "import": imported,
        "latency": latency,
        "lookup_vs_scan_p50_ratio": round(
            latency["lookup_email"]["p50_ms"] / latency["q_scan"]["p50_ms"], 4
        ),
        "memory_mib": {
            "rss_after_import": after_import["VmRSS"],
            "peak_after_import": after_import["VmHWM"],
            "rss_at_end": at_end["VmRSS"],
            "peak": at_end["VmHWM"],
        },
        "database_mib": database_mib,
        "server_error_lines": problems,
        # Other work on the machine skews the latencies; this shows how much.
        "load_average_1_5_15": {
            "start": [round(x, 2) for x in load_at_start],
            "end": [round(x, 2) for x in os.getloadavg()],
        },
        "total_s": round(time.monotonic() - started, 1),
    }


def _parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.api_bench", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--contacts", type=int, default=DEFAULT_CONTACTS)
    parser.add_argument("--samples", type=int, default=DEFAULT_SAMPLES)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--budget-minutes",
        type=float,
        default=DEFAULT_BUDGET_MINUTES,
        help="abort when the run takes longer (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    if args.contacts < PAGE or args.samples < 1:
        parser.error(f"--contacts must be at least {PAGE} and --samples at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark from the command line; return the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    # httpx logs every request at INFO.
    logging.getLogger("httpx").setLevel(logging.WARNING)

    budget = args.budget_minutes * 60

    def out_of_time(_signum: int, _frame: FrameType | None) -> None:
        raise BudgetExceeded(
            f"Benchmark aborted: it ran past its {args.budget_minutes:g}-minute "
            "budget; try fewer --contacts or raise --budget-minutes."
        )

    def stopped(signum: int, _frame: FrameType | None) -> None:
        raise Stopped(f"Benchmark stopped by {signal.Signals(signum).name}.")

    # Both handlers raise in the main thread, even during a blocked socket
    # read, so the finally blocks still stop the server and remove the folder.
    handlers = {
        signal.SIGALRM: out_of_time,
        signal.SIGTERM: stopped,
        signal.SIGHUP: stopped,
    }
    previous = {number: signal.signal(number, h) for number, h in handlers.items()}
    signal.setitimer(signal.ITIMER_REAL, budget)
    try:
        result = run(args, argv)
    except (BudgetExceeded, Stopped, BenchError, httpx.HTTPError) as exc:
        logger.error("%s", exc)
        return 1
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        for number, handler in previous.items():
            signal.signal(number, handler)

    print_report(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    logger.info("Wrote %s", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

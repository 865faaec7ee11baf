"""Map Contacts API contacts to vCards and back.

The mapping is pure: no I/O and no Radicale. ``contact_to_vcard`` writes
vCard 4.0 (RFC 6350); ``vcard_to_contact`` reads vCard 3.0 (RFC 2426) and 4.0
as Apple, Google, Outlook and Thunderbird write them.

A label travels as a ``TYPE`` parameter when vCard has a type for it (``home``,
``work``, ``cell``...) and otherwise as an Apple-style group::

    item1.EMAIL:ada@example.com
    item1.X-ABLabel:school

Exceptions: ``VCardError`` (a ``ValueError``) for text that is not one usable
vCard.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import date
from typing import Any, Literal

from vobject.base import VObjectError, textLineToContentLine

from gateway.validation import to_e164

__all__ = [
    "PRODID",
    "VCardError",
    "contact_to_vcard",
    "split_vcards",
    "synthesize_preferred_name",
    "vcard_to_contact",
]

PRODID = "-//inkbox-carddav//EN"

# RFC 6350 section 3.2: lines SHOULD NOT be longer than 75 octets.
_FOLD_OCTETS = 75

# The contact fields this mapping covers, as the Contacts API names them.
NAME_PARTS = ("name_prefix", "given_name", "middle_name", "family_name", "name_suffix")
# The order of the components of N (RFC 6350 section 6.2.2).
_N_ORDER = ("family_name", "given_name", "middle_name", "name_prefix", "name_suffix")
SCALAR_FIELDS = (
    "preferred_name",
    *NAME_PARTS,
    "company_name",
    "job_title",
    "birthday",
    "notes",
)
# Single text properties and the field each fills; the first one wins.
_TEXT_PROPERTIES = {"FN": "preferred_name", "TITLE": "job_title", "NOTE": "notes"}
LIST_FIELDS = ("emails", "phones", "websites", "dates", "addresses", "custom_fields")
MAPPED_FIELDS = (*SCALAR_FIELDS, *LIST_FIELDS)

# Labels that vCard expresses as TYPE values, per property.
_Types = Mapping[str, tuple[str, ...]]
_PLACE_TYPES: _Types = {"home": ("home",), "work": ("work",)}
_TEL_TYPES: _Types = {
    **_PLACE_TYPES,
    "mobile": ("cell",),
    "fax": ("fax",),
    "pager": ("pager",),
    "voice": ("voice",),
    "text": ("text",),
    "video": ("video",),
    "textphone": ("textphone",),
    "home fax": ("home", "fax"),
    "work fax": ("work", "fax"),
}
_NO_TYPES: _Types = {}

# Labels with no vCard type that Apple Contacts writes in its own notation.
_APPLE_LABELS = {
    "other": "_$!<Other>!$_",
    "homepage": "_$!<HomePage>!$_",
    "anniversary": "_$!<Anniversary>!$_",
}
# The year Apple writes for a date without one.
_APPLE_NO_YEAR = "1604"
_APPLE_LABEL_RE = re.compile(r"_\$!<(.*)>!\$_", re.DOTALL)

# TYPE values that say nothing a label could carry (RFC 2426 section 3.3).
_GENERIC_TYPES = frozenset(
    {"pref", "internet", "x400", "dom", "intl", "postal", "parcel", "msg"}
)
_TYPE_ALIASES = {"iphone": "cell", "mobile": "cell"}
_LABEL_FOR_TYPE = {"cell": "mobile"}

_BEGIN_RE = re.compile(r"\s*BEGIN\s*:", re.IGNORECASE)
_LINE_RE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n|$)")
_ESCAPE_RE = re.compile(r"\\(.)", re.DOTALL)
_CARET_RE = re.compile(r"\^(.)", re.DOTALL)
_ISO_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
_CARD_DATE_RE = re.compile(r"(\d{4})(-?)(\d{2})\2(\d{2})(?:T.*)?", re.ASCII | re.DOTALL)
_E164_RE = re.compile(r"\+[1-9]\d{1,14}", re.ASCII)


class VCardError(ValueError):
    """Text that is not one usable vCard."""

    def __init__(self, message: str, *, line_number: int | None = None) -> None:
        super().__init__(message)
        self.line_number = line_number


# --- Contact to vCard ----------------------------------------------------------


def synthesize_preferred_name(fields: Mapping[str, Any]) -> str | None:
    """Return a display name from the name parts, else the company, else None."""
    parts = [_str(fields, key) for key in NAME_PARTS]
    name = " ".join(" ".join(part for part in parts if part).split())
    if name:
        return name

    company = " ".join((_str(fields, "company_name") or "").split())
    return company or None


def contact_to_vcard(
    contact: Mapping[str, Any],
    *,
    uid: str | None = None,
    version: Literal["3.0", "4.0"] = "4.0",
) -> str:
    """Render a contact as a vCard document with CRLF line endings.

    The same contact always gives the same text: properties come in a fixed
    order and nothing depends on the clock. ``uid`` replaces the default
    ``urn:uuid:<id>`` (a CardDAV client's own UID is served back).
    ``version`` 3.0 is what Apple clients accept: primaries are marked with
    ``TYPE=pref`` and an anniversary becomes Apple's labelled X-ABDATE.

    Raises:
        ValueError: a birthday or date is not ``YYYY-MM-DD``.
    """
    card = _CardWriter()
    card.add("VERSION", version)
    card.add("PRODID", PRODID)
    if uid:
        card.add("UID", _escape_text(uid))
    elif contact.get("id"):
        card.add("UID", "urn:uuid:" + str(contact["id"]))
    fn = _str(contact, "preferred_name") or synthesize_preferred_name(contact) or ""
    card.add("FN", _escape_text(fn))
    card.add("N", ";".join(_escape_component(_str(contact, k)) for k in _N_ORDER))

    company = _str(contact, "company_name")
    if company:
        card.add("ORG", _escape_component(company))
    title = _str(contact, "job_title")
    if title:
        card.add("TITLE", _escape_text(title))
    birthday = _str(contact, "birthday")
    if birthday:
        day = _checked_date(birthday)
        card.add("BDAY", day if version == "3.0" else day.replace("-", ""))

    for email in _items(contact, "emails"):
        value = _str(email, "value")
        if value:
            card.add_labelled(
                "EMAIL", _escape_text(value), email, _PLACE_TYPES, _pref(email, version)
            )
    for phone in _items(contact, "phones"):
        number = _str(phone, "value_e164")
        if number:
            card.add_labelled(
                "TEL", _escape_text(number), phone, _TEL_TYPES, _pref(phone, version)
            )
    for address in _items(contact, "addresses"):
        card.add_labelled("ADR", _address_value(address), address, _PLACE_TYPES)
    for website in _items(contact, "websites"):
        url = _str(website, "url")
        if url:
            card.add_labelled("URL", _escape_uri(url), website, _PLACE_TYPES)
    _add_dates(card, _items(contact, "dates"), version)

    notes = _str(contact, "notes")
    if notes:
        card.add("NOTE", _escape_text(notes))
    for field in _items(contact, "custom_fields"):
        label = _escape_param(_str(field, "label") or "")
        value = _escape_text(_str(field, "value") or "")
        card.add("X-INKBOX-FIELD", value, ["X-LABEL=" + label])
    return card.text()


class _CardWriter:
    """Collect content lines and fold them into a vCard document."""

    def __init__(self) -> None:
        self._lines = ["BEGIN:VCARD"]
        self._groups = 0

    def add(
        self,
        name: str,
        value: str,
        params: Sequence[str] = (),
        group: str | None = None,
    ) -> None:
        """Append one content line; the value must already be escaped."""
        prefix = group + "." if group else ""
        self._lines.append(
            prefix + name + "".join(";" + p for p in params) + ":" + value
        )

    def new_group(self) -> str:
        """Return the next unused Apple-style group name."""
        self._groups += 1
        return f"item{self._groups}"

    def add_labelled(
        self,
        name: str,
        value: str,
        item: Mapping[str, Any],
        types: _Types,
        params: Sequence[str] = (),
    ) -> None:
        """Append a property whose label becomes TYPE or an X-ABLabel group."""
        label = _str(item, "label")
        if not label:
            self.add(name, value, params)
            return

        key = label.lower()
        if key in types:
            # 3.0 marks the primary with a TYPE value: merge it into one list.
            extra = [p.removeprefix("TYPE=") for p in params if p.startswith("TYPE=")]
            rest = [p for p in params if not p.startswith("TYPE=")]
            type_list = ",".join([*types[key], *extra])
            self.add(name, value, ["TYPE=" + type_list, *rest])
        else:
            group = self.new_group()
            self.add(name, value, params, group)
            self.add(
                "X-ABLabel", _escape_text(_APPLE_LABELS.get(key, label)), (), group
            )

    def text(self) -> str:
        """Return the folded document, END:VCARD included."""
        lines = [*self._lines, "END:VCARD"]
        return "".join(fold(line) + "\r\n" for line in lines)


def _add_dates(card: _CardWriter, dates: list[Mapping[str, Any]], version: str) -> None:
    """Append the first anniversary as ANNIVERSARY, the others as X-ABDATE.

    vCard 3.0 has no ANNIVERSARY; there it is an X-ABDATE labelled the way
    Apple labels anniversaries.
    """
    anniversary_written = version == "3.0"
    for item in dates:
        value = _checked_date(_str(item, "date") or "")
        label = _str(item, "label")
        key = label.lower() if label else None
        if key == "anniversary" and not anniversary_written:
            card.add("ANNIVERSARY", value.replace("-", ""))
            anniversary_written = True
            continue

        # Apple's X-ABDATE takes the extended date form, as Apple writes it.
        group = card.new_group()
        card.add("X-ABDATE", value, (), group)
        if label and key is not None:
            ab_label = _APPLE_LABELS.get(key, label)
            card.add("X-ABLabel", _escape_text(ab_label), (), group)


def _address_value(address: Mapping[str, Any]) -> str:
    """Return the escaped ADR value: no PO box, no extended address."""
    keys = ("street", "city", "region", "postal", "country")
    return ";;" + ";".join(_escape_component(_str(address, key)) for key in keys)


def _pref(item: Mapping[str, Any], version: str) -> list[str]:
    """Return the parameter marking a primary item (RFC 6350 5.3, RFC 2426)."""
    if not item.get("is_primary"):
        return []
    return ["TYPE=pref"] if version == "3.0" else ["PREF=1"]


def _checked_date(value: str) -> str:
    """Return a ``YYYY-MM-DD`` date unchanged, or raise ValueError."""
    try:
        if _ISO_DATE_RE.fullmatch(value):
            date.fromisoformat(value)
            return value
    except ValueError:
        pass
    raise ValueError(f"Date {value!r} is not a calendar date in YYYY-MM-DD form.")


def _escape_text(value: str) -> str:
    """Escape a text value (RFC 6350 section 3.4)."""
    value = value.replace("\\", "\\\\").replace(",", "\\,")
    return value.replace("\r\n", "\\n").replace("\r", "\\n").replace("\n", "\\n")


def _escape_component(value: str | None) -> str:
    """Escape one component of a structured value such as N or ADR."""
    return _escape_text(value or "").replace(";", "\\;")


def _escape_uri(value: str) -> str:
    """Escape a URI value: commas stay, since a URI is not a text list."""
    value = value.replace("\\", "\\\\")
    return value.replace("\r\n", "\\n").replace("\r", "\\n").replace("\n", "\\n")


def _escape_param(value: str) -> str:
    """Quote a parameter value with RFC 6868 caret encoding."""
    value = value.replace("^", "^^").replace('"', "^'")
    value = value.replace("\r\n", "^n").replace("\r", "^n").replace("\n", "^n")
    return '"' + value + '"'


def fold(line: str) -> str:
    """Fold a line at 75 octets without splitting a UTF-8 sequence (RFC 6350 3.2)."""
    if line.isascii():
        if len(line) <= _FOLD_OCTETS:
            return line
        # Fast path for the long base64 lines of photos.
        step = _FOLD_OCTETS - 1
        rest = [" " + line[i : i + step] for i in range(_FOLD_OCTETS, len(line), step)]
        return "\r\n".join([line[:_FOLD_OCTETS], *rest])
    if len(line.encode("utf-8")) <= _FOLD_OCTETS:
        return line

    pieces: list[str] = []
    current: list[str] = []
    size = 0
    for char in line:
        width = len(char.encode("utf-8"))
        if size + width > _FOLD_OCTETS:
            pieces.append("".join(current))
            current = [" "]
            size = 1
        current.append(char)
        size += width
    pieces.append("".join(current))
    return "\r\n".join(pieces)


# --- vCard stream to cards -------------------------------------------------------


def split_vcards(text: str) -> list[str]:
    """Split a vCard stream into the text of each card, in order.

    Each card runs from its BEGIN:VCARD line through its END:VCARD line. A card
    whose END:VCARD is missing ends where the next card begins, or at the end
    of the text, so the caller can still report it by its position. Text
    outside cards is ignored.
    """
    cards: list[str] = []
    start: int | None = None
    for line in _logical_lines(text):
        marker = line.text.lstrip("\ufeff").strip().upper()
        if marker == "BEGIN:VCARD":
            if start is not None:
                cards.append(text[start : line.start])
            start = line.start
        elif marker == "END:VCARD" and start is not None:
            cards.append(text[start : line.end])
            start = None
    if start is not None:
        cards.append(text[start:])
    return cards


class _LogicalLine:
    """One unfolded content line and where it sits in the text."""

    __slots__ = ("end", "number", "start", "text")

    def __init__(self, text: str, start: int, end: int, number: int) -> None:
        self.text = text
        self.start = start
        self.end = end
        self.number = number


def _logical_lines(text: str) -> Iterator[_LogicalLine]:
    """Unfold the text (RFC 6350 section 3.2) into logical lines.

    A vCard 2.1 quoted-printable value that ends in "=" goes on in the next
    line; the soft line break stays for vobject's decoder to remove.
    """
    current: _LogicalLine | None = None
    for number, match in enumerate(_LINE_RE.finditer(text), start=1):
        if match.start() == match.end():
            break
        physical = match.group().rstrip("\r\n")
        if current is not None and _has_soft_line_break(current.text):
            current.text += "\n" + physical
            current.end = match.end()
            continue
        if current is not None and physical[:1] in (" ", "\t"):
            current.text += physical[1:]
            current.end = match.end()
            continue

        if current is not None:
            yield current
        current = _LogicalLine(physical, match.start(), match.end(), number)
    if current is not None:
        yield current


def _has_soft_line_break(line: str) -> bool:
    """Tell whether a vCard 2.1 quoted-printable value goes on in the next line."""
    if not line.endswith("="):
        return False
    params = line.split(":", 1)[0]
    return "QUOTED-PRINTABLE" in params.upper()


# --- vCard to contact --------------------------------------------------------------


def vcard_to_contact(text: str, *, default_region: str | None = None) -> dict[str, Any]:
    """Parse one vCard 3.0 or 4.0 into the contact fields of the Contacts API.

    Args:
        text: exactly one card.
        default_region: ISO 3166 region ("US") for phone numbers written
            without a country code; without it such numbers are kept as
            written and the API's validation reports them.

    Raises:
        VCardError: the text is not exactly one vCard or a line cannot be
            parsed.
    """
    lines = _read_card(text)
    ab_labels = _ab_labels(lines)
    contact: dict[str, Any] = dict.fromkeys(SCALAR_FIELDS)
    contact.update({key: [] for key in LIST_FIELDS})
    ranks: dict[str, list[int | None]] = {"emails": [], "phones": []}
    seen_n = False

    for line in lines:
        name = line.name
        if name == "N" and not seen_n:
            seen_n = True
            parts = [*_split_components(line.value), "", "", "", "", ""]
            for key, part in zip(_N_ORDER, parts, strict=False):
                contact[key] = part or None
        elif name in _TEXT_PROPERTIES:
            key = _TEXT_PROPERTIES[name]
            if contact[key] is None:
                contact[key] = _unescape(line.value) or None
        elif name == "ORG" and contact["company_name"] is None:
            contact["company_name"] = _split_components(line.value)[0] or None
        elif name == "BDAY" and contact["birthday"] is None:
            contact["birthday"] = _card_date(line)
        elif name == "EMAIL":
            value = _unescape(line.value).strip()
            if value:
                label = _label(line, _PLACE_TYPES, ab_labels)
                contact["emails"].append({"label": label, "value": value})
                ranks["emails"].append(_pref_rank(line))
        elif name == "TEL":
            value = _unescape(line.value).strip()
            if value:
                label = _label(line, _TEL_TYPES, ab_labels)
                number = _normalize_phone(value, default_region)
                contact["phones"].append({"label": label, "value_e164": number})
                ranks["phones"].append(_pref_rank(line))
        elif name == "URL":
            url = _unescape(line.value).strip()
            if url:
                label = _label(line, _PLACE_TYPES, ab_labels)
                contact["websites"].append({"label": label, "url": url})
        elif name == "ADR":
            address = _read_address(line.value)
            address["label"] = _label(line, _PLACE_TYPES, ab_labels)
            contact["addresses"].append(address)
        elif name in ("ANNIVERSARY", "X-ANNIVERSARY", "X-ABDATE"):
            day = _card_date(line)
            if day is not None:
                label = (
                    _label(line, _NO_TYPES, ab_labels)
                    if name == "X-ABDATE"
                    else "anniversary"
                )
                contact["dates"].append({"label": label, "date": day})
        elif name == "X-INKBOX-FIELD":
            label = _decode_param(",".join(line.params.get("X-LABEL", [])))
            value = _unescape(line.value)
            contact["custom_fields"].append({"label": label, "value": value})

    for key, key_ranks in ranks.items():
        _mark_primary(contact[key], key_ranks)
    return contact


def _read_card(text: str) -> list[Any]:
    """Return the content lines of the single VCARD in the text."""
    # HACK(https://github.com/py-vobject/vobject/issues/55): vobject's component
    # reader decodes every text value as a comma-separated list and keeps the
    # first item, cutting "NOTE:Hello, world" (as many 3.0 clients write it) to
    # "Hello". Only its content-line parser is used until that is fixed; the
    # values are unescaped here.
    lines: list[Any] = []
    depth = 0
    cards = 0
    for logical in _logical_lines(text.lstrip("\ufeff")):
        if not logical.text.strip():
            continue
        if depth == 0 and not _BEGIN_RE.match(logical.text):
            continue  # text outside the card is ignored, as split_vcards does
        line = _parse_line(logical)
        if line.name == "BEGIN" and depth == 0:
            kind = line.value.strip().upper()
            if kind != "VCARD":
                raise VCardError(
                    f"The text holds a {kind} component where a VCARD was expected.",
                    line_number=logical.number,
                )
            if cards:
                raise VCardError(
                    "The text holds more than one vCard; expected exactly one.",
                    line_number=logical.number,
                )
            cards += 1
            depth = 1
        elif line.name == "BEGIN":
            depth += 1  # a nested component, such as a vCard 2.1 AGENT
        elif line.name == "END":
            depth -= 1
        elif depth == 1:
            lines.append(line)

    if cards == 0:
        raise VCardError("The text holds no vCard: there is no BEGIN:VCARD line.")
    if depth > 0:
        raise VCardError("The vCard is not closed: its END:VCARD line is missing.")
    return lines


def _parse_line(logical: _LogicalLine) -> Any:
    """Parse one content line with vobject, or raise VCardError."""
    try:
        return textLineToContentLine(logical.text, logical.number)
    except (VObjectError, ValueError, LookupError) as exc:
        shown = logical.text if len(logical.text) <= 60 else logical.text[:57] + "..."
        raise VCardError(
            f"Line {logical.number} of the vCard ({shown!r}) is not a valid content "
            "line: expected NAME;PARAMS:VALUE.",
            line_number=logical.number,
        ) from exc


def _ab_labels(lines: list[Any]) -> dict[str, str]:
    """Map each group to its Apple X-ABLabel, Apple's own labels unwrapped."""
    labels: dict[str, str] = {}
    for line in lines:
        if line.name != "X-ABLABEL" or not line.group:
            continue
        label = _unescape(line.value)
        match = _APPLE_LABEL_RE.fullmatch(label)
        if match:
            label = match.group(1).lower()
        if label:
            labels.setdefault(line.group.lower(), label)
    return labels


def _label(line: Any, types: _Types, ab_labels: Mapping[str, str]) -> str | None:
    """Return the label of a property: its X-ABLabel, else its types."""
    if line.group and line.group.lower() in ab_labels:
        label = ab_labels[line.group.lower()]
        key = label.lower()
        return key if key in types or key in _APPLE_LABELS else label

    kinds: list[str] = []
    for value in _types(line):
        kind = _TYPE_ALIASES.get(value, value)
        if kind not in _GENERIC_TYPES and kind not in kinds:
            kinds.append(kind)
    if len(kinds) > 1 and "voice" in kinds:
        kinds.remove("voice")
    if not kinds:
        return None

    wanted = set(kinds)
    for label, label_types in types.items():
        if set(label_types) == wanted:
            return label
    return _LABEL_FOR_TYPE.get(kinds[0], kinds[0])


def _types(line: Any) -> list[str]:
    """Return the lower-cased TYPE values of a line in every vCard dialect.

    Accepts ``TYPE=a,b``, ``TYPE=a;TYPE=b``, ``TYPE="a,b"`` and vCard 2.1's
    bare ``;A;B`` parameters.
    """
    found: list[str] = []
    for raw in [*line.params.get("TYPE", []), *line.singletonparams]:
        for part in raw.split(","):
            value = part.strip().lower()
            if value and value not in found:
                found.append(value)
    return found


def _pref_rank(line: Any) -> int | None:
    """Return how preferred a line is (1 is most), or None if not at all."""
    if "pref" in _types(line):
        return 1
    values = line.params.get("PREF")
    if not values:
        return None
    try:
        return int(values[0])
    except ValueError:
        return 100


def _mark_primary(items: list[dict[str, Any]], ranks: list[int | None]) -> None:
    """Set is_primary on the most preferred item only, the first on a tie."""
    candidates = [rank for rank in ranks if rank is not None]
    best = min(candidates) if candidates else None
    primary = ranks.index(best) if best is not None else None
    for index, item in enumerate(items):
        item["is_primary"] = index == primary


def _read_address(value: str) -> dict[str, Any]:
    """Return the address fields of an ADR value.

    The PO box and extended address have no field of their own, so they are
    appended to the street on lines of their own.
    """
    parts = [*_split_components(value), "", "", "", "", "", "", ""]
    street = "\n".join(part for part in (parts[2], parts[1], parts[0]) if part)
    return {
        "label": None,
        "street": street or None,
        "city": parts[3] or None,
        "region": parts[4] or None,
        "postal": parts[5] or None,
        "country": parts[6] or None,
    }


def _card_date(line: Any) -> str | None:
    """Return a full date as ``YYYY-MM-DD``, or None for a partial one.

    Accepts ``YYYYMMDD``, ``YYYY-MM-DD`` and date-times. Apple marks a
    birthday without a year with X-APPLE-OMIT-YEAR and a placeholder year.
    """
    if "X-APPLE-OMIT-YEAR" in line.params:
        return None
    match = _CARD_DATE_RE.fullmatch(line.value.strip())
    if match is None:
        return None
    year, _, month, day = match.groups()
    if year == _APPLE_NO_YEAR:
        # Some iOS versions send the placeholder year without the parameter
        # (https://github.com/nextcloud/server/issues/24108).
        return None
    try:
        return date(int(year), int(month), int(day)).isoformat()
    except ValueError:
        return None


def _normalize_phone(value: str, default_region: str | None) -> str:
    """Return a phone number in E.164, or the value as written if it is not one.

    A number with an extension is kept as written too: E.164 cannot hold the
    extension and dropping it would lose data without a word. The rules are
    the API's own (``gateway.validation``).
    """
    if value[:4].lower() == "tel:":
        value = value[4:].strip()
    return to_e164(value, default_region) or value


def _unescape(value: str) -> str:
    """Undo backslash escapes; unknown escapes keep their backslash."""

    def replace(match: re.Match[str]) -> str:
        char = match.group(1)
        if char in "nN":
            return "\n"
        if char in "\\,;:":
            return char
        return match.group()

    # A decoded vCard 2.1 quoted-printable value may hold CRLF line breaks.
    return _ESCAPE_RE.sub(replace, value.replace("\r\n", "\n"))


def _split_components(value: str) -> list[str]:
    """Split a structured value at unescaped semicolons and unescape each part.

    An unescaped comma (a list inside a component) is kept as a comma.
    """
    parts: list[str] = []
    current: list[str] = []
    index = 0
    while index < len(value):
        char = value[index]
        if char == "\\" and index + 1 < len(value):
            current.append(value[index : index + 2])
            index += 2
            continue
        if char == ";":
            parts.append(_unescape("".join(current)))
            current = []
        else:
            current.append(char)
        index += 1
    parts.append(_unescape("".join(current)))
    return parts


def _decode_param(value: str) -> str:
    """Undo RFC 6868 caret encoding in a parameter value."""

    def replace(match: re.Match[str]) -> str:
        return {"n": "\n", "N": "\n", "^": "^", "'": '"'}.get(
            match.group(1), match.group()
        )

    return _CARET_RE.sub(replace, value)


# --- Helpers -----------------------------------------------------------------------


def _str(mapping: Mapping[str, Any], key: str) -> str | None:
    """Return a non-empty string member, else None."""
    value = mapping.get(key)
    return value if isinstance(value, str) and value else None


def _items(contact: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    """Return the entries of a list member, None and missing meaning none."""
    value = contact.get(key) or []
    return [item for item in value if isinstance(item, Mapping)]

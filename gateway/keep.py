"""Keep what the Contacts API cannot hold, so that every card round-trips.

The API holds names, emails, phones, websites, dates, addresses and custom
fields, and validates them strictly. Clients send much more: photos, groups,
nicknames, labels, year-less birthdays, local phone numbers, Apple and
Evolution extensions. The gateway therefore stores, per contact, the client's
card as it came (``Incoming.original``) and the fields the API received from it
(``Incoming.fields``), and serves the stored card back:

- while the contact's fields in the API still equal the stored fields, the
  original is served as it is (converted when another vCard version is asked
  for);
- when some fields changed through the REST API, the lines of each unchanged
  field stay as the client wrote them, the lines of each changed field are
  dropped and freshly rendered ones take their place. Lines that map to no
  field (PHOTO, NICKNAME, X-..., IMPP...) and values the API refused are
  always kept.

Lists are merged entry by entry: an email that is still in the API keeps its
line, parameters and ``itemN.X-ABLabel`` companion even when another email
was added or removed.

Exceptions: ``VCardError`` (from ``gateway.vcard``) for text that is not one
vCard; ``shrink_photo`` raises ``ValueError`` for data it cannot shrink.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import dataclasses
import io
import logging
import math
import quopri
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import phonenumbers
from PIL import Image, ImageOps

from gateway.validation import (
    LIST_LIMITS,
    MAX_ADDRESS_PART,
    MAX_CUSTOM_LABEL,
    MAX_CUSTOM_VALUE,
    MAX_LABEL,
    MAX_POSTAL,
    MAX_URL,
    TEXT_LIMITS,
    is_full_date,
    is_valid_email,
    to_e164,
)
from gateway.vcard import (
    LIST_FIELDS,
    NAME_PARTS,
    SCALAR_FIELDS,
    VCardError,
    contact_to_vcard,
    fold,
    synthesize_preferred_name,
    vcard_to_contact,
)

__all__ = [
    "PHOTO_CAP",
    "Incoming",
    "convert_card",
    "read_card",
    "render_card",
    "shrink_photo",
]

logger = logging.getLogger(__name__)

# Default size above which an embedded photo is scaled down. iCloud refuses
# photos above about 224 KB; 256 KiB keeps what phones usually send.
PHOTO_CAP = 256 * 1024

Version = Literal["3.0", "4.0"]

# The API's FN rule: one of these must be non-empty.
_FN_RULE = ("given_name", "family_name", "company_name", "preferred_name")

# Properties the mapping reads into a list, and the list.
_LIST_PROPERTIES = {
    "EMAIL": "emails",
    "TEL": "phones",
    "URL": "websites",
    "ADR": "addresses",
    "ANNIVERSARY": "dates",
    "X-ANNIVERSARY": "dates",
    "X-ABDATE": "dates",
    "X-INKBOX-FIELD": "custom_fields",
}
# Single-valued properties, the merge group of each and the field it fills.
_SCALAR_PROPERTIES = {
    "FN": ("fn", "preferred_name"),
    "ORG": ("org", "company_name"),
    "TITLE": ("title", "job_title"),
    "NOTE": ("note", "notes"),
}
_ITEM_KEYS = {
    "emails": ("label", "value", "is_primary"),
    "phones": ("label", "value_e164", "is_primary"),
    "websites": ("label", "url"),
    "dates": ("label", "date"),
    "addresses": ("label", "street", "city", "region", "postal", "country"),
    "custom_fields": ("label", "value"),
}
# Merge groups: the fields each one covers, in the order fresh lines are
# written when several land at the same place.
_GROUP_FIELDS: dict[str, tuple[str, ...]] = {
    "fn": ("preferred_name",),
    "n": NAME_PARTS,
    "org": ("company_name",),
    "title": ("job_title",),
    "bday": ("birthday",),
    "emails": ("emails",),
    "phones": ("phones",),
    "addresses": ("addresses",),
    "websites": ("websites",),
    "dates": ("dates",),
    "note": ("notes",),
    "custom_fields": ("custom_fields",),
}
# What contact_to_vcard writes for each scalar group.
_GROUP_PROPERTY = {
    "fn": "FN",
    "n": "N",
    "org": "ORG",
    "title": "TITLE",
    "bday": "BDAY",
    "note": "NOTE",
}
# Lines that only describe the other lines of their group (Apple).
_COMPANIONS = frozenset({"X-ABLABEL", "X-ABADR"})
_MEDIA_KINDS = {
    "PHOTO": "image/",
    "LOGO": "image/",
    "SOUND": "audio/",
    "KEY": "application/",
}
# Marks an N the gateway added because 3.0 requires one; dropped again in 4.0.
_ADDED_N = "X-INKBOX-ADDED"
_SHRUNK = frozenset({"PHOTO", "LOGO"})

_ANNIVERSARY_LABEL = "_$!<Anniversary>!$_"
# Apple's placeholder year for a date without one (X-APPLE-OMIT-YEAR).
_NO_YEAR = "1604"

# vCard 2.1 parameter values written without a name (RFC 2425 predecessor).
_V21_ENCODINGS = frozenset({"7BIT", "8BIT", "QUOTED-PRINTABLE", "BASE64", "B"})
_V21_VALUES = {"INLINE": None, "URL": "uri", "CONTENT-ID": "content-id", "CID": "cid"}

_LINE_RE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n|$)")
_DATA_URI_RE = re.compile(r"data:([^,;]*);base64,(.*)", re.IGNORECASE | re.DOTALL)
_PARTIAL_DATE_RE = re.compile(r"--(\d{2})(\d{2})", re.ASCII)
_APPLE_DATE_RE = re.compile(r"(\d{4})-?(\d{2})-?(\d{2})", re.ASCII)
_GEO_URI_RE = re.compile(r"geo:(-?\d+(?:\.\d+)?),(-?\d+(?:\.\d+)?)", re.ASCII)
_GEO_V3_RE = re.compile(r"(-?\d+(?:\.\d+)?);(-?\d+(?:\.\d+)?)", re.ASCII)
_ESCAPE_RE = re.compile(r"\\(.)", re.DOTALL)


@dataclass(frozen=True)
class Incoming:
    """A card a client sent, split into what the API holds and what is kept.

    ``fields`` always pass the API's validation: a value that breaks a rule
    (a phone that is not E.164, an invalid or repeated email, a second
    primary, a partial date, an over-long text) is left out of it and lives
    on in ``original`` only. Store both per contact and pass them back to
    ``render_card``.
    """

    fields: dict[str, Any]
    original: str
    version: Version
    uid: str | None
    is_group: bool


# --- Content lines -----------------------------------------------------------------

_Param = tuple[str | None, str]


@dataclass(frozen=True)
class _Line:
    """One unfolded content line; ``text`` is what is written out."""

    group: str | None
    name: str
    params: tuple[_Param, ...]
    value: str
    text: str
    nested: bool = False

    @property
    def key(self) -> str:
        """Return the property name in upper case."""
        return self.name.upper()


def _make(group: str | None, name: str, params: Iterable[_Param], value: str) -> _Line:
    """Build a line from its parts."""
    params = tuple(params)
    head = (group + "." if group else "") + name
    for param_name, raw in params:
        head += ";" + (raw if param_name is None else param_name + "=" + raw)
    return _Line(group, name, params, value, head + ":" + value)


def _with(line: _Line, **changes: Any) -> _Line:
    """Return the line with some parts replaced and its text rebuilt."""
    changed = dataclasses.replace(line, **changes)
    return dataclasses.replace(
        _make(changed.group, changed.name, changed.params, changed.value),
        nested=line.nested,
    )


def _parse_line(text: str, number: int) -> _Line:
    """Split a content line into group, name, parameters and value."""
    end = _find_unquoted(text, ";:", 0)
    if end < 0:
        raise _bad_line(text, number)
    group, _, name = text[:end].strip().rpartition(".")
    if not name:
        raise _bad_line(text, number)

    params: list[_Param] = []
    while text[end] == ";":
        start = end + 1
        end = _find_unquoted(text, ";:", start)
        if end < 0:
            raise _bad_line(text, number)
        raw = text[start:end]
        param_name, equals, value = raw.partition("=")
        params.append((param_name, value) if equals else (None, raw))
    return _Line(group or None, name, tuple(params), text[end + 1 :], text)


def _find_unquoted(text: str, chars: str, start: int) -> int:
    """Return the index of the first of ``chars`` outside double quotes, or -1."""
    quoted = False
    for index in range(start, len(text)):
        char = text[index]
        if char == '"':
            quoted = not quoted
        elif not quoted and char in chars:
            return index
    return -1


def _bad_line(text: str, number: int) -> VCardError:
    shown = text if len(text) <= 60 else text[:57] + "..."
    return VCardError(
        f"Line {number} of the vCard ({shown!r}) is not a valid content line: "
        "expected NAME;PARAMS:VALUE.",
        line_number=number,
    )


def _unfold(text: str) -> list[tuple[str, int]]:
    """Return the logical lines of a text and the line number of each.

    A vCard 2.1 quoted-printable value ending in "=" goes on in the next
    line; the soft line break stays for the decoder.
    """
    logical: list[tuple[str, int]] = []
    for number, match in enumerate(_LINE_RE.finditer(text), start=1):
        if match.start() == match.end():
            break
        physical = match.group().rstrip("\r\n")
        if logical and _has_soft_line_break(logical[-1][0]):
            logical[-1] = (logical[-1][0] + "\n" + physical, logical[-1][1])
        elif logical and physical[:1] in (" ", "\t"):
            logical[-1] = (logical[-1][0] + physical[1:], logical[-1][1])
        else:
            logical.append((physical, number))
    return logical


def _has_soft_line_break(line: str) -> bool:
    return line.endswith("=") and "QUOTED-PRINTABLE" in line.split(":", 1)[0].upper()


def _card_lines(text: str) -> list[_Line]:
    """Return the lines inside the single VCARD of a text, BEGIN and END excluded.

    Lines of a nested component (a vCard 2.1 AGENT) are kept, marked nested.
    """
    lines: list[_Line] = []
    depth = 0
    cards = 0
    for logical, number in _unfold(text.lstrip("\ufeff")):
        marker = logical.strip().upper()
        if not marker:
            continue
        if depth == 0:
            if marker.replace(" ", "") != "BEGIN:VCARD":
                if marker.startswith("BEGIN"):
                    raise VCardError(
                        "The text holds another component where a VCARD was expected.",
                        line_number=number,
                    )
                continue  # text outside the card is ignored, as split_vcards does
            if cards:
                raise VCardError(
                    "The text holds more than one vCard; expected exactly one.",
                    line_number=number,
                )
            cards += 1
            depth = 1
            continue

        line = _parse_line(logical, number)
        if line.key == "END" and depth == 1:
            depth = 0
            continue
        if line.key == "BEGIN":
            depth += 1
        elif line.key == "END":
            depth -= 1
        lines.append(dataclasses.replace(line, nested=depth > 1 or line.key == "END"))

    if cards == 0:
        raise VCardError("The text holds no vCard: there is no BEGIN:VCARD line.")
    if depth > 0:
        raise VCardError("The vCard is not closed: its END:VCARD line is missing.")
    return lines


def _serialize(lines: Iterable[_Line]) -> str:
    """Return the card document: folded lines, CRLF, BEGIN and END included."""
    body = "".join(fold(line.text) + "\r\n" for line in lines)
    return "BEGIN:VCARD\r\n" + body + "END:VCARD\r\n"


# --- Parameters and values -----------------------------------------------------------


def _split_unquoted(raw: str, separator: str) -> list[str]:
    """Split at a separator outside double quotes."""
    parts: list[str] = []
    start = 0
    while True:
        end = _find_unquoted(raw, separator, start)
        if end < 0:
            parts.append(raw[start:])
            return parts
        parts.append(raw[start:end])
        start = end + 1


def _unquote(raw: str) -> str:
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        return raw[1:-1]
    return raw


def _list_values(raw: str) -> list[str]:
    """Return the values of a list parameter; ``"a,b"`` counts as a list too."""
    values: list[str] = []
    for part in _split_unquoted(raw, ","):
        values += [value for value in _unquote(part).split(",") if value]
    return values


def _param_value(line: _Line, name: str) -> str | None:
    """Return the first value of a named parameter, unquoted, or None."""
    for param_name, raw in line.params:
        if param_name is not None and param_name.upper() == name:
            return _unquote(raw)
    return None


def _without(params: Iterable[_Param], *names: str) -> list[_Param]:
    return [p for p in params if p[0] is None or p[0].upper() not in names]


def _is_safe_value(value: str) -> bool:
    """Tell whether a parameter value may be written without quotes."""
    return bool(value) and not any(char in value for char in ';:",')


def _unescape(value: str) -> str:
    """Undo text escapes (RFC 6350 section 3.4); unknown ones stay."""

    def replace(match: re.Match[str]) -> str:
        char = match.group(1)
        if char in "nN":
            return "\n"
        return char if char in "\\,;:" else match.group()

    return _ESCAPE_RE.sub(replace, value)


def _escape_text(value: str) -> str:
    value = value.replace("\\", "\\\\").replace(",", "\\,")
    return value.replace("\r\n", "\\n").replace("\r", "\\n").replace("\n", "\\n")


def _split_components(value: str) -> list[str]:
    """Split a structured value at unescaped semicolons, escapes left in place."""
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
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
        index += 1
    parts.append("".join(current))
    return parts


# --- Reading a card ------------------------------------------------------------------


def read_card(
    text: str, *, default_region: str | None = None, photo_cap: int = PHOTO_CAP
) -> Incoming:
    """Split a client's card into API fields and the card to keep.

    Args:
        text: exactly one vCard 2.1, 3.0 or 4.0.
        default_region: ISO 3166 region ("US") for phone numbers written
            without a country code.
        photo_cap: embedded photos larger than this many bytes are scaled
            down (never refused).

    Raises:
        VCardError: the text is not exactly one vCard.
    """
    vcard_to_contact(text)  # the mapping's own checks and error messages
    lines = _card_lines(text)
    version = _version(lines)
    if version == "2.1":
        lines = _from_v21(lines)
    elif version == "3.0":
        lines = [_unquoted_types(line) for line in lines]
    lines = [_capped_photo(line, photo_cap) for line in lines]
    if not any(line.key == "VERSION" and not line.nested for line in lines):
        lines.insert(0, _make(None, "VERSION", (), "3.0"))
    original = _serialize(lines)

    whole = vcard_to_contact(original, default_region=default_region)
    layout = _Layout(lines, whole)
    fields = _api_fields(layout, default_region)
    return Incoming(
        fields=fields,
        original=original,
        version="4.0" if version == "4.0" else "3.0",
        uid=_uid(lines),
        is_group=_is_group(lines),
    )


def _version(lines: Sequence[_Line]) -> str:
    """Return "2.1", "3.0" or "4.0"; a card without a known version is 3.0."""
    for line in lines:
        if line.key == "VERSION" and not line.nested:
            value = line.value.strip()
            return value if value in ("2.1", "4.0") else "3.0"
    return "3.0"


def _uid(lines: Sequence[_Line]) -> str | None:
    for line in lines:
        if line.key == "UID" and not line.nested:
            return _unescape(line.value).strip() or None
    return None


def _is_group(lines: Sequence[_Line]) -> bool:
    kinds = ("KIND", "X-ADDRESSBOOKSERVER-KIND")
    return any(
        line.key in kinds and line.value.strip().lower() == "group" and not line.nested
        for line in lines
    )


def _from_v21(lines: Sequence[_Line]) -> list[_Line]:
    """Rewrite vCard 2.1 lines as 3.0: named TYPE lists, no quoted-printable.

    The card is kept as 3.0 so that it can be served to 3.0 and 4.0 clients;
    every value the mapping reads stays the same.
    """
    result: list[_Line] = []
    for line in lines:
        if line.nested:
            result.append(line)
            continue
        if line.key == "VERSION":
            result.append(_make(None, "VERSION", (), "3.0"))
            continue

        params: list[_Param] = []
        types: list[str] = []
        type_at: int | None = None
        encoding = charset = None
        for name, raw in line.params:
            upper = (name or raw).upper()
            if name is None and upper in _V21_ENCODINGS:
                encoding = upper
            elif name is None and upper in _V21_VALUES:
                value_type = _V21_VALUES[upper]
                if value_type:
                    params.append(("VALUE", value_type))
            elif name is None:
                type_at = len(params) if type_at is None else type_at
                types.append(raw)
            elif upper == "ENCODING":
                encoding = _unquote(raw).upper()
            elif upper == "CHARSET":
                charset = _unquote(raw)
            elif upper == "VALUE" and _unquote(raw).upper() == "URL":
                params.append((name, "uri"))
            else:
                params.append((name, raw))
        if types:
            params.insert(type_at or 0, ("TYPE", ",".join(types)))

        value = line.value
        if encoding == "QUOTED-PRINTABLE":
            decoded = quopri.decodestring(value.encode("utf-8"))
            text = decoded.decode(_codec(charset), errors="replace")
            value = text.replace("\r\n", "\\n").replace("\r", "\\n")
            value = value.replace("\n", "\\n")
        elif encoding in ("BASE64", "B"):
            params.append(("ENCODING", "b"))
            value = "".join(value.split())
        result.append(_with(line, params=tuple(params), value=value))
    return result


def _codec(charset: str | None) -> str:
    """Return a Python codec for a vCard 2.1 CHARSET, UTF-8 when unknown."""
    if charset:
        try:
            return codecs.lookup(charset).name
        except LookupError:
            pass
    return "utf-8"


def _unquoted_types(line: _Line) -> _Line:
    """Write quoted TYPE lists unquoted, as 3.0 clients expect.

    iOS shows a quoted list (valid only in 4.0) as a literal label
    (https://github.com/nextcloud/server/issues/25485).
    """
    if line.nested or not any(
        name and name.upper() == "TYPE" and '"' in raw for name, raw in line.params
    ):
        return line
    params: list[_Param] = []
    for name, raw in line.params:
        if name and name.upper() == "TYPE":
            values = _list_values(raw)
            if all(_is_safe_value(value) for value in values) and values:
                raw = ",".join(values)
        params.append((name, raw))
    return _with(line, params=tuple(params))


def _capped_photo(line: _Line, cap: int) -> _Line:
    """Scale an embedded PHOTO or LOGO above ``cap`` bytes down to a JPEG."""
    if line.key not in _SHRUNK or line.nested:
        return line
    data_uri = _DATA_URI_RE.fullmatch(line.value.strip())
    encoding = (_param_value(line, "ENCODING") or "").lower()
    if data_uri is None and encoding not in ("b", "base64"):
        return line  # a URI: kept as given and never fetched
    encoded = data_uri.group(2) if data_uri else line.value
    try:
        data = base64.b64decode("".join(encoded.split()))
    except (binascii.Error, ValueError):
        return line
    if len(data) <= cap:
        return line

    try:
        smaller = shrink_photo(data, cap)
    except ValueError as exc:
        logger.warning("Keeping a %d-byte %s as sent: %s", len(data), line.name, exc)
        return line
    logger.debug("Scaled a %s from %d to %d bytes", line.name, len(data), len(smaller))
    encoded = base64.b64encode(smaller).decode("ascii")
    if data_uri:
        params = [
            (name, "image/jpeg")
            if name and name.upper() == "MEDIATYPE"
            else (name, raw)
            for name, raw in line.params
        ]
        return _with(
            line, params=tuple(params), value="data:image/jpeg;base64," + encoded
        )

    params = []
    typed = False
    for name, raw in line.params:
        if name and name.upper() == "TYPE" and not typed:
            raw = "image/jpeg" if "/" in raw else "JPEG"
            typed = True
        params.append((name, raw))
    if not typed:
        params.append(("TYPE", "JPEG"))
    return _with(line, params=tuple(params), value=encoded)


def shrink_photo(data: bytes, cap: int) -> bytes:
    """Return a photo as a JPEG of at most ``cap`` bytes, scaled down as needed.

    The aspect ratio is kept, the EXIF orientation applied and transparency
    flattened onto white.

    Raises:
        ValueError: the data is not an image Pillow reads, or even a
            one-pixel JPEG is larger than ``cap``.
    """
    try:
        with warnings.catch_warnings():
            # Refuse to decode an image bomb rather than spend the memory.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as source:
                image = _flattened(ImageOps.exif_transpose(source))
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ValueError(f"The photo is not an image Pillow can read: {exc}") from exc
    except Image.DecompressionBombWarning as exc:
        raise ValueError(f"The photo is too large to decode: {exc}") from exc

    width, height = image.size
    scale = 1.0
    while True:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        if size == image.size:
            scaled = image
        else:
            scaled = image.resize(size, Image.Resampling.LANCZOS)
        encoded = _jpeg(scaled)
        if len(encoded) <= cap:
            return encoded
        if size == (1, 1):
            raise ValueError(f"A photo cannot be made as small as {cap} bytes.")
        # JPEG size grows roughly with the pixel count.
        scale *= min(0.9, math.sqrt(cap / len(encoded)) * 0.95)


def _flattened(image: Image.Image) -> Image.Image:
    """Return an RGB or greyscale copy of an image, transparency on white."""
    image.load()
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if image.mode in ("RGB", "L"):
        return image.copy()
    return image.convert("RGB")


def _jpeg(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=85, optimize=True)
    return out.getvalue()


# --- Which line holds which field ----------------------------------------------------


class _Layout:
    """Which lines of a card the mapping read each field from.

    ``scalar_lines`` maps a merge group ("fn", "n", "org", "title", "note",
    "bday") to the line its value came from; ``candidates`` lists, per list
    field, every line the mapping read an entry from, with the entry.
    """

    def __init__(self, lines: Sequence[_Line], whole: Mapping[str, Any]) -> None:
        self.lines = lines
        self.scalar_lines: dict[str, int] = {}
        self.scalars: dict[str, Any] = {}
        self.bday_lines: list[int] = []
        indexes: dict[str, list[int]] = {name: [] for name in LIST_FIELDS}

        for index, line in enumerate(lines):
            key = line.key
            if line.nested or (
                key not in _LIST_PROPERTIES
                and key not in _SCALAR_PROPERTIES
                and key not in ("N", "BDAY")
            ):
                continue
            # One line at a time through the mapping itself, so that what
            # counts as a value here is exactly what vcard_to_contact reads.
            alone = vcard_to_contact(
                "BEGIN:VCARD\r\nVERSION:3.0\r\n" + line.text + "\r\nEND:VCARD\r\n"
            )
            if key == "N":
                if "n" not in self.scalar_lines:
                    self.scalar_lines["n"] = index
                    self.scalars["n"] = {part: alone[part] for part in NAME_PARTS}
            elif key in _SCALAR_PROPERTIES:
                group, field = _SCALAR_PROPERTIES[key]
                if group not in self.scalar_lines and alone[field] is not None:
                    self.scalar_lines[group] = index
                    self.scalars[group] = alone[field]
            elif key == "BDAY":
                self.bday_lines.append(index)
                if "bday" not in self.scalar_lines and _is_api_date(alone["birthday"]):
                    self.scalar_lines["bday"] = index
                    self.scalars["bday"] = alone["birthday"]
            else:
                name = _LIST_PROPERTIES[key]
                if alone[name]:
                    indexes[name].append(index)

        # The card's own mapping gives the labels (from X-ABLabel companions)
        # and the primary entry; it reads the lines in the same order.
        self.candidates = {
            name: list(zip(indexes[name], whole[name], strict=True))
            for name in LIST_FIELDS
        }


def _is_api_date(value: Any) -> bool:
    """Tell whether a mapped date goes to the API: full, and not Apple's no-year."""
    # Some iOS versions write 1604 without X-APPLE-OMIT-YEAR
    # (https://github.com/nextcloud/server/issues/24108).
    return (
        isinstance(value, str)
        and is_full_date(value)
        and not value.startswith(_NO_YEAR + "-")
    )


def _api_fields(layout: _Layout, region: str | None) -> dict[str, Any]:
    """Return the fields of a card that pass the API's validation."""
    fields: dict[str, Any] = dict.fromkeys(SCALAR_FIELDS)
    names = layout.scalars.get("n") or {}
    for part in NAME_PARTS:
        fields[part] = _api_text(part, names.get(part))
    fields["preferred_name"] = _api_text("preferred_name", layout.scalars.get("fn"))
    fields["company_name"] = _api_text("company_name", layout.scalars.get("org"))
    fields["job_title"] = _api_text("job_title", layout.scalars.get("title"))
    fields["notes"] = _api_text("notes", layout.scalars.get("note"))
    fields["birthday"] = layout.scalars.get("bday")

    for name in LIST_FIELDS:
        items: list[dict[str, Any]] = []
        seen: set[str] = set()
        for _, candidate in layout.candidates[name]:
            item = _api_item(name, candidate)
            if item is None:
                continue
            if name == "phones":
                item["value_e164"] = to_e164(item["value_e164"], region)
                if item["value_e164"] is None:
                    continue
            unique = _unique_key(name, item)
            if unique is not None and unique in seen:
                continue
            if len(items) == LIST_LIMITS[name]:
                break
            if unique is not None:
                seen.add(unique)
            items.append(item)
        fields[name] = items

    # The API fills an empty preferred_name from the other names on create
    # (but not on update): do it here so that what is stored is what was sent.
    if not fields["preferred_name"]:
        synthesized = synthesize_preferred_name(fields)
        fields["preferred_name"] = _clipped(synthesized) if synthesized else None
    # A card the client considers valid must never be refused for want of a
    # name (the API's FN rule, a 400): fall back to FN, ORG, the first
    # email's local part, then "Unnamed". The card itself is kept as sent.
    if not any(fields[name] for name in _FN_RULE):
        fields["preferred_name"] = _fallback_name(layout)
    return fields


def _api_text(field: str, value: Any) -> str | None:
    """Return a scalar the API accepts: not blank and not too long, else None."""
    if not isinstance(value, str) or not value.strip():
        return None
    return value if len(value) <= TEXT_LIMITS[field] else None


def _clipped(value: str) -> str:
    return value[: TEXT_LIMITS["preferred_name"]].strip()


def _api_item(name: str, item: Mapping[str, Any]) -> dict[str, Any] | None:
    """Return a list entry the API accepts, or None.

    Phone numbers are left as they are: the caller normalizes them.
    """
    label = item.get("label")
    if name == "custom_fields":
        value = item.get("value")
        if (
            not isinstance(label, str)
            or not 0 < len(label) <= MAX_CUSTOM_LABEL
            or not isinstance(value, str)
            or len(value) > MAX_CUSTOM_VALUE
        ):
            return None
        return {"label": label, "value": value}

    label = label if isinstance(label, str) and 0 < len(label) <= MAX_LABEL else None
    primary = bool(item.get("is_primary"))
    if name == "emails":
        value = item.get("value")
        if not isinstance(value, str) or not is_valid_email(value):
            return None
        return {"label": label, "value": value, "is_primary": primary}
    if name == "phones":
        value = item.get("value_e164")
        if not isinstance(value, str):
            return None
        return {"label": label, "value_e164": value, "is_primary": primary}
    if name == "websites":
        url = item.get("url")
        if not isinstance(url, str) or not 0 < len(url) <= MAX_URL:
            return None
        return {"label": label, "url": url}
    if name == "dates":
        day = item.get("date")
        return {"label": label, "date": day} if _is_api_date(day) else None

    address: dict[str, Any] = {"label": label}
    for part in ("street", "city", "region", "postal", "country"):
        value = item.get(part)
        limit = MAX_POSTAL if part == "postal" else MAX_ADDRESS_PART
        address[part] = (
            value if isinstance(value, str) and len(value) <= limit else None
        )
    return address


def _unique_key(name: str, item: Mapping[str, Any]) -> str | None:
    """Return what may not repeat within a list: emails and phone numbers."""
    if name == "emails":
        return str(item["value"]).lower()
    if name == "phones":
        return str(item["value_e164"])
    return None


def _fallback_name(layout: _Layout) -> str:
    """Return a display name for a card with no name the API accepts."""
    candidates: list[str] = []
    for line in layout.lines:
        if line.nested:
            continue
        if line.key == "FN":
            candidates.append(_unescape(line.value))
        elif line.key == "ORG":
            parts = (_unescape(part) for part in _split_components(line.value))
            candidates.append(" ".join(part for part in parts if part))
    emails = [str(item.get("value") or "") for _, item in layout.candidates["emails"]]
    candidates += [email.rpartition("@")[0] for email in emails if "@" in email]

    for candidate in candidates:
        name = _clipped(" ".join(candidate.split()))
        if name:
            return name
    return "Unnamed"


# --- Rendering a card ----------------------------------------------------------------


def render_card(
    contact: Mapping[str, Any],
    *,
    uid: str,
    version: Version,
    original: str | None = None,
    original_fields: Mapping[str, Any] | None = None,
) -> str:
    """Render a contact as a vCard, merged into the client's original card.

    Args:
        contact: the contact as the API returns it.
        uid: the UID to serve (the client's own UID for a card it created).
        version: the vCard version to write.
        original: ``Incoming.original`` of the card the client last sent, if
            any; without it the contact is rendered from its fields alone.
        original_fields: ``Incoming.fields`` of that card, which the API
            received. When omitted they are read again from ``original``
            without a default region, so pass them.

    Returns:
        The card with CRLF line endings, folded at 75 octets. The same input
        always gives the same text.
    """
    if original is None:
        return contact_to_vcard(contact, uid=uid, version=version)

    lines = _card_lines(original)
    source = _version(lines)
    if source == "2.1":
        lines = _from_v21(lines)
    source_version: Version = "4.0" if source == "4.0" else "3.0"
    if original_fields is None:
        original_fields = read_card(original).fields

    merged = _merged(lines, source_version, contact, original_fields)
    merged = _with_uid(merged, uid)
    return _serialize(_converted(merged, source_version, version))


def _merged(
    lines: list[_Line],
    version: Version,
    contact: Mapping[str, Any],
    stored: Mapping[str, Any],
) -> list[_Line]:
    """Return the original lines with each field the API changed rendered anew."""
    new = _normalized(contact)
    old = _normalized(stored)
    whole = vcard_to_contact(_serialize(lines))
    layout = _Layout(lines, whole)

    drop: set[int] = set()
    replace: dict[int, _Line] = {}
    fresh: dict[str, list[_Line]] = {}
    anchors: dict[str, int] = {}
    after_version = next(
        (i + 1 for i, line in enumerate(lines) if line.key == "VERSION"), 0
    )

    for group, property_name in _GROUP_PROPERTY.items():
        keys = _GROUP_FIELDS[group]
        if all(new[key] == old[key] for key in keys):
            continue
        index = layout.scalar_lines.get(group)
        values = {key: new[key] for key in keys}
        if group == "org" and index is not None:
            line = _renamed_org(lines[index], new["company_name"])
            if line is None:
                drop.add(index)
            else:
                replace[index] = line
            continue
        if group == "bday" and new["birthday"] is not None:
            # A year-less birthday only stays while the API has none.
            drop.update(layout.bday_lines)
            anchors[group] = min(layout.bday_lines, default=len(lines))
        if index is not None:
            drop.add(index)
            anchors[group] = index
        if group in ("fn", "n"):
            anchors.setdefault(group, after_version)
        if group in ("fn", "n") or any(value is not None for value in values.values()):
            fresh[group] = _fresh_lines(values, version, {property_name})

    for name in LIST_FIELDS:
        kept_dates = name == "dates" and version == "4.0"
        items, dropped, last = _merge_list(name, layout, new[name], old[name])
        drop.update(dropped)
        if dropped:
            anchors[name] = min(dropped)
        elif last is not None:
            anchors[name] = last + 1
        if items:
            anniversary_kept = kept_dates and any(
                line.key == "ANNIVERSARY" and i not in drop and not line.nested
                for i, line in enumerate(lines)
            )
            fresh[name] = _fresh_list(name, items, version, anniversary_kept)

    drop.update(_orphaned_companions(lines, drop))
    return _assembled(lines, drop, replace, fresh, anchors)


def _normalized(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Return the mapped fields in one comparable shape.

    Blank texts are None, missing lists are empty, list entries hold exactly
    their keys, and an empty preferred_name is synthesized as the API does.
    """
    result: dict[str, Any] = {}
    for name in SCALAR_FIELDS:
        value = fields.get(name)
        result[name] = value if isinstance(value, str) and value.strip() else None
    if result["preferred_name"] is None:
        synthesized = synthesize_preferred_name(result)
        result["preferred_name"] = _clipped(synthesized) if synthesized else None
    for name in LIST_FIELDS:
        entries = fields.get(name) or []
        result[name] = [
            _normalized_item(name, item)
            for item in entries
            if isinstance(item, Mapping)
        ]
    return result


def _normalized_item(name: str, item: Mapping[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    for key in _ITEM_KEYS[name]:
        value = item.get(key)
        if key == "is_primary":
            entry[key] = bool(value)
        elif name == "custom_fields":
            entry[key] = value
        else:
            entry[key] = value if value != "" else None
    return entry


def _renamed_org(line: _Line, company: str | None) -> _Line | None:
    """Return the ORG line with a new company, keeping its units; None if empty."""
    components = _split_components(line.value)
    components[0] = _escape_text(company or "").replace(";", "\\;")
    if not any(components):
        return None
    return _with(line, value=";".join(components))


def _merge_list(
    name: str,
    layout: _Layout,
    current: list[dict[str, Any]],
    stored: list[dict[str, Any]],
) -> tuple[list[dict[str, Any]], list[int], int | None]:
    """Match one list of the API against the card's lines.

    Returns the entries to render anew, the lines to drop, and the last line
    the list was read from.
    """
    candidates = layout.candidates[name]
    # Which line each stored entry came from: the stored entries are the
    # accepted candidates, in order, so match them up in order.
    sources: list[tuple[int, dict[str, Any]]] = []
    start = 0
    for index, candidate in candidates:
        for position in range(start, len(stored)):
            if _same_entry(name, candidate, stored[position]):
                sources.append((index, stored[position]))
                start = position + 1
                break

    remaining = list(current)
    dropped: list[int] = []
    for index, entry in sources:
        if entry in remaining:
            remaining.remove(entry)
        else:
            dropped.append(index)
    last = candidates[-1][0] if candidates else None
    return remaining, dropped, last


def _same_entry(
    name: str, candidate: Mapping[str, Any], stored: Mapping[str, Any]
) -> bool:
    """Tell whether a line's entry is the stored entry read from it."""
    item = _api_item(name, candidate)
    if item is None:
        return False
    item = _normalized_item(name, item)
    if name == "phones":
        return item["label"] == stored["label"] and _same_phone(
            item["value_e164"], stored["value_e164"]
        )
    keys = [key for key in _ITEM_KEYS[name] if key != "is_primary"]
    return all(item[key] == stored[key] for key in keys)


def _same_phone(written: str, e164: Any) -> bool:
    """Tell whether a number as written normalizes to a stored E.164 number.

    The default region used when the card was read is not known here; the
    stored number tells which region a local number was read in.
    """
    if not isinstance(e164, str):
        return False
    if to_e164(written) == e164:
        return True
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return False
    # A possible but unassigned number (+1 555...) has no region of its own:
    # fall back to the main region of its country code.
    regions = (
        phonenumbers.region_code_for_number(number),
        phonenumbers.region_code_for_country_code(number.country_code or 0),
    )
    return any(
        region and region != "ZZ" and to_e164(written, region) == e164
        for region in regions
    )


def _fresh_lines(
    fields: Mapping[str, Any], version: Version, names: set[str]
) -> list[_Line]:
    """Return the lines contact_to_vcard writes for some fields, by property name."""
    text = contact_to_vcard(fields, version=version)
    return [line for line in _card_lines(text) if line.key in names]


def _fresh_list(
    name: str, items: list[dict[str, Any]], version: Version, anniversary_kept: bool
) -> list[_Line]:
    """Return the lines contact_to_vcard writes for some entries of a list."""
    entries = list(items)
    if anniversary_kept:
        # vCard 4.0 allows one ANNIVERSARY, and a kept line holds it:
        # contact_to_vcard writes every later anniversary as X-ABDATE, so
        # let a placeholder take the ANNIVERSARY line and drop it.
        entries.insert(0, {"label": "anniversary", "date": "2000-01-01"})
    text = contact_to_vcard({"preferred_name": "-", name: entries}, version=version)
    skipped = {"VERSION", "PRODID", "UID", "FN", "N"}
    lines = [line for line in _card_lines(text) if line.key not in skipped]
    if anniversary_kept:
        lines = [line for line in lines if line.key != "ANNIVERSARY"]
    return lines


def _orphaned_companions(lines: Sequence[_Line], drop: set[int]) -> set[int]:
    """Return the X-ABLabel-like lines whose group lost all its other lines."""
    members: dict[str, list[int]] = {}
    for index, line in enumerate(lines):
        if line.group and not line.nested:
            members.setdefault(line.group.lower(), []).append(index)
    orphans: set[int] = set()
    for indexes in members.values():
        if not any(index in drop for index in indexes):
            continue
        left = [index for index in indexes if index not in drop]
        if all(lines[index].key in _COMPANIONS for index in left):
            orphans.update(left)
    return orphans


def _assembled(
    lines: Sequence[_Line],
    drop: set[int],
    replace: Mapping[int, _Line],
    fresh: Mapping[str, list[_Line]],
    anchors: Mapping[str, int],
) -> list[_Line]:
    """Put the kept lines and the fresh lines together, renumbering groups."""
    inserts: dict[int, list[str]] = {}
    for group in _GROUP_FIELDS:
        if group in fresh:
            inserts.setdefault(anchors.get(group, len(lines)), []).append(group)

    used = {
        line.group.lower()
        for index, line in enumerate(lines)
        if line.group and index not in drop
    }
    result: list[_Line] = []
    for index in range(len(lines) + 1):
        for group in inserts.get(index, []):
            result += _renumbered(fresh[group], used)
        if index < len(lines) and index not in drop:
            result.append(replace.get(index, lines[index]))
    return result


def _renumbered(lines: Iterable[_Line], used: set[str]) -> list[_Line]:
    """Give the groups of fresh lines names unused in the card (updates ``used``)."""
    names: dict[str, str] = {}
    result: list[_Line] = []
    for line in lines:
        if line.group is None:
            result.append(line)
            continue
        key = line.group.lower()
        if key not in names:
            names[key] = _next_group(used)
            used.add(names[key].lower())
        result.append(_with(line, group=names[key]))
    return result


def _next_group(used: set[str]) -> str:
    """Return the first ``itemN`` group name not in ``used`` (lower case)."""
    number = 1
    while f"item{number}" in used:
        number += 1
    return f"item{number}"


def _with_uid(lines: list[_Line], uid: str) -> list[_Line]:
    """Return the lines with exactly one UID line, holding ``uid``."""
    result: list[_Line] = []
    written = False
    for line in lines:
        if line.key != "UID" or line.nested:
            result.append(line)
        elif not written:
            same = _unescape(line.value).strip() == uid
            result.append(line if same else _make(None, "UID", (), _escape_text(uid)))
            written = True
    if not written:
        at = next((i + 1 for i, line in enumerate(result) if line.key == "VERSION"), 0)
        result.insert(at, _make(None, "UID", (), _escape_text(uid)))
    return result


# --- Version conversion --------------------------------------------------------------


def convert_card(text: str, version: Version) -> str:
    """Rewrite a card in another vCard version, losing no value.

    - ``PHOTO;ENCODING=b;TYPE=JPEG`` (3.0) and ``data:image/jpeg;base64,``
      (4.0), likewise LOGO and SOUND;
    - ``TYPE=pref`` (3.0) and ``PREF=1`` (4.0); 3.0 TYPE lists unquoted;
    - a 4.0 ``tel:`` URI becomes 3.0 text (3.0 text stays text: 4.0 allows it);
    - ``--MMDD`` (4.0) and Apple's ``1604-MM-DD`` with X-APPLE-OMIT-YEAR;
    - KIND:group and MEMBER (4.0) and X-ADDRESSBOOKSERVER-KIND and -MEMBER
      (Apple);
    - ANNIVERSARY (4.0) and an ``itemN.X-ABDATE`` labelled
      ``_$!<Anniversary>!$_`` (Apple);
    - ``GEO:geo:lat,lon`` (4.0) and ``GEO:lat;lon`` (3.0);
    - KEY ``data:`` URIs (4.0) and inline base64 (3.0), like PHOTO;
    - a 4.0 card without N gets an empty N in 3.0, which requires one,
      marked ``X-INKBOX-ADDED`` so that 4.0 drops it again.

    A card already in ``version`` comes back unchanged but for line endings
    and folding. A 2.1 card is read as 3.0. Converting there and back gives
    the same card except for two value types that are 4.0 defaults: a
    ``TEL;VALUE=uri:tel:...`` comes back as text, and the VALUE parameter of
    a ``data:`` URI (Thunderbird's ``PHOTO;VALUE=URL:data:...``) is dropped.

    Raises:
        VCardError: the text is not one vCard.
    """
    lines = _card_lines(text)
    source = _version(lines)
    if source == "2.1":
        lines = _from_v21(lines)
    return _serialize(_converted(lines, "4.0" if source == "4.0" else "3.0", version))


def _converted(lines: list[_Line], source: Version, target: Version) -> list[_Line]:
    if source == target:
        return lines
    return _to_v3(lines) if target == "3.0" else _to_v4(lines)


def _to_v3(lines: Sequence[_Line]) -> list[_Line]:
    """Rewrite vCard 4.0 lines the way 3.0 clients (Apple) expect."""
    result: list[_Line] = []
    for line in lines:
        if line.nested:
            result.append(line)
            continue
        line = _params_to_v3(line)
        key = line.key
        data_uri = _DATA_URI_RE.fullmatch(line.value) if key in _MEDIA_KINDS else None
        if key == "VERSION":
            line = _make(None, "VERSION", (), "3.0")
        elif data_uri:
            line = _data_uri_to_v3(line, data_uri)
        elif key == "TEL" and _is_tel_uri(line):
            params = tuple(_without(line.params, "VALUE"))
            line = _with(line, params=params, value=line.value[4:])
        elif key == "BDAY":
            line = _partial_to_apple(line)
        elif key == "KIND" and line.value.strip().lower() == "group":
            # Apple knows groups only; other kinds stay KIND, which 3.0
            # clients ignore.
            line = _with(line, name="X-ADDRESSBOOKSERVER-KIND")
        elif key == "MEMBER":
            line = _with(line, name="X-ADDRESSBOOKSERVER-MEMBER")
        elif key == "GEO" and (geo := _GEO_URI_RE.fullmatch(line.value)):
            line = _with(line, value=f"{geo.group(1)};{geo.group(2)}")
        result.append(line)
    if not any(line.key == "N" and not line.nested for line in result):
        # N is optional in 4.0 (DAVx5 writes groups without it) but 3.0
        # requires it: add an empty one, marked so that 4.0 drops it again.
        at = next((i + 1 for i, ln in enumerate(result) if ln.key == "FN"), 2)
        result.insert(at, _make(None, "N", ((_ADDED_N, "1"),), ";;;;"))
    return _anniversaries_to_v3(result)


def _is_tel_uri(line: _Line) -> bool:
    value_type = (_param_value(line, "VALUE") or "").lower()
    return value_type == "uri" and line.value[:4].lower() == "tel:"


def _params_to_v3(line: _Line) -> _Line:
    """Turn ``PREF=1`` into ``TYPE=pref`` and write TYPE lists unquoted."""
    params: list[_Param] = []
    pref_at: int | None = None
    for name, raw in line.params:
        upper = (name or "").upper()
        if upper == "PREF" and _unquote(raw) == "1" and pref_at is None:
            pref_at = len(params)
            continue
        if upper == "TYPE":
            values = _list_values(raw)
            if values and all(_is_safe_value(value) for value in values):
                raw = ",".join(values)
        params.append((name, raw))
    if pref_at is None and params == list(line.params):
        return line
    if pref_at is not None:
        typed = next(
            (i for i, (name, _) in enumerate(params) if (name or "").upper() == "TYPE"),
            None,
        )
        if typed is None:
            params.insert(pref_at, ("TYPE", "pref"))
        else:
            params[typed] = (params[typed][0], params[typed][1] + ",pref")
    return _with(line, params=tuple(params))


def _data_uri_to_v3(line: _Line, data_uri: re.Match[str]) -> _Line:
    """Turn a ``data:`` URI into 3.0 inline base64 with ENCODING=b and TYPE."""
    media = data_uri.group(1)
    kind = _MEDIA_KINDS[line.key]
    # MEDIATYPE holds the TYPE a 3.0 card wrote as a media type (Evolution).
    mediatype = _param_value(line, "MEDIATYPE")
    params = _without(line.params, "VALUE", "MEDIATYPE")
    params.append(("ENCODING", "b"))
    if mediatype:
        params.append(("TYPE", mediatype))
    elif media.lower().startswith(kind) and _is_safe_value(media[len(kind) :]):
        params.append(("TYPE", media[len(kind) :].upper()))
    elif media:
        params.append(("TYPE", media))
    return _with(line, params=tuple(params), value="".join(data_uri.group(2).split()))


def _partial_to_apple(line: _Line) -> _Line:
    """Write a 4.0 date without a year (``--MMDD``) as Apple does in 3.0."""
    match = _PARTIAL_DATE_RE.fullmatch(line.value)
    if match is None:
        return line
    params = (*line.params, ("X-APPLE-OMIT-YEAR", _NO_YEAR))
    value = f"{_NO_YEAR}-{match.group(1)}-{match.group(2)}"
    return _with(line, params=params, value=value)


def _anniversaries_to_v3(lines: list[_Line]) -> list[_Line]:
    """Write ANNIVERSARY as Apple's labelled ``itemN.X-ABDATE``.

    The converted line goes before any other anniversary X-ABDATE, so that
    converting back picks it as the ANNIVERSARY again.
    """
    labels = _group_labels(lines)
    used = {line.group.lower() for line in lines if line.group}
    theirs = [
        line
        for line in lines
        if line.key == "X-ABDATE"
        and line.group
        and _is_anniversary_label(labels.get(line.group.lower()))
    ]
    result: list[_Line] = []
    for line in lines:
        if line.key != "ANNIVERSARY" or line.nested:
            result.append(line)
            continue
        label = labels.get(line.group.lower()) if line.group else None
        if label is not None and not _is_anniversary_label(label):
            result.append(line)  # labelled otherwise: X-ABDATE would rename it
            continue

        converted = _partial_to_apple(_with(line, name="X-ABDATE"))
        added: list[_Line] = [converted]
        if line.group is None:
            group = _next_group(used)
            used.add(group)
            added = [_with(converted, group=group)]
        if label is None:
            group = added[0].group or ""
            added.append(_make(group, "X-ABLabel", (), _ANNIVERSARY_LABEL))
        first = next(
            (i for i, kept in enumerate(result) if any(kept is x for x in theirs)),
            None,
        )
        if first is None:
            result += added
        else:
            result[first:first] = added
    return result


def _group_labels(lines: Iterable[_Line]) -> dict[str, str]:
    """Map each group (lower case) to the value of its first X-ABLabel."""
    labels: dict[str, str] = {}
    for line in lines:
        if line.key == "X-ABLABEL" and line.group and not line.nested:
            labels.setdefault(line.group.lower(), line.value)
    return labels


def _is_anniversary_label(label: str | None) -> bool:
    if label is None:
        return False
    text = _unescape(label).strip().lower()
    return text in (_ANNIVERSARY_LABEL.lower(), "anniversary")


def _to_v4(lines: Sequence[_Line]) -> list[_Line]:
    """Rewrite vCard 3.0 lines as 4.0."""
    labels = _group_labels(lines)
    anniversary: int | None = None
    label_dropped: int | None = None
    if not any(line.key == "ANNIVERSARY" and not line.nested for line in lines):
        anniversary = next(
            (
                i
                for i, line in enumerate(lines)
                if line.key == "X-ABDATE"
                and line.group
                and not line.nested
                and _is_anniversary_label(labels.get(line.group.lower()))
            ),
            None,
        )
    if anniversary is not None:
        label_dropped = _lone_label(lines, anniversary)

    result: list[_Line] = []
    for index, line in enumerate(lines):
        if line.nested:
            result.append(line)
            continue
        if index == label_dropped:
            continue
        if line.key == "N" and _param_value(line, _ADDED_N) is not None:
            continue
        line = _params_to_v4(line)
        key = line.key
        encoding = (_param_value(line, "ENCODING") or "").lower()
        if key == "VERSION":
            line = _make(None, "VERSION", (), "4.0")
        elif key in _MEDIA_KINDS and encoding in ("b", "base64"):
            line = _inline_to_data_uri(line)
        elif key == "BDAY":
            line = _apple_to_partial(line)
        elif (
            key == "X-ADDRESSBOOKSERVER-KIND" and line.value.strip().lower() == "group"
        ):
            line = _with(line, name="KIND")
        elif key == "X-ADDRESSBOOKSERVER-MEMBER":
            line = _with(line, name="MEMBER")
        elif key == "GEO" and (geo := _GEO_V3_RE.fullmatch(line.value)):
            line = _with(line, value=f"geo:{geo.group(1)},{geo.group(2)}")
        elif index == anniversary:
            line = _apple_to_partial(_with(line, name="ANNIVERSARY"))
            if label_dropped is not None:
                line = _with(line, group=None)
        result.append(line)
    return result


def _lone_label(lines: Sequence[_Line], index: int) -> int | None:
    """Return the label line to drop when an X-ABDATE becomes a plain ANNIVERSARY.

    Only a group of exactly the date and Apple's own anniversary label is
    unwrapped, since converting back writes exactly that.
    """
    group = (lines[index].group or "").lower()
    members = [i for i, line in enumerate(lines) if (line.group or "").lower() == group]
    others = [i for i in members if i != index]
    if len(others) != 1:
        return None
    label = lines[others[0]]
    if (
        label.key == "X-ABLABEL"
        and not label.params
        and label.value == _ANNIVERSARY_LABEL
    ):
        return others[0]
    return None


def _params_to_v4(line: _Line) -> _Line:
    """Turn ``TYPE=pref`` into ``PREF=1``."""
    params: list[_Param] = []
    pref_at: int | None = None
    for name, raw in line.params:
        if (name or "").upper() == "TYPE":
            values = _list_values(raw)
            kept = [value for value in values if value.lower() != "pref"]
            if len(kept) != len(values):
                pref_at = len(params) if pref_at is None else pref_at
                if kept:
                    params.append((name, ",".join(kept)))
                continue
        params.append((name, raw))
    if pref_at is None:
        return line
    if _param_value(line, "PREF") is None:
        params.insert(pref_at, ("PREF", "1"))
    return _with(line, params=tuple(params))


def _inline_to_data_uri(line: _Line) -> _Line:
    """Turn 3.0 inline base64 into a 4.0 ``data:`` URI."""
    kind = _MEDIA_KINDS[line.key]
    mediatype = _param_value(line, "TYPE") or ""
    params = _without(line.params, "ENCODING", "VALUE")
    # Drop the first TYPE, which names the media type.
    for position, (name, _) in enumerate(params):
        if (name or "").upper() == "TYPE":
            del params[position]
            break
    if "/" in mediatype:
        # Keep Evolution's "image/jpeg" so that converting back writes it again.
        media = mediatype
        params.append(("MEDIATYPE", mediatype))
    else:
        media = kind + mediatype.lower() if mediatype else ""
    value = f"data:{media};base64," + "".join(line.value.split())
    return _with(line, params=tuple(params), value=value)


def _apple_to_partial(line: _Line) -> _Line:
    """Write Apple's 3.0 date without a year as 4.0 ``--MMDD``."""
    omitted = _param_value(line, "X-APPLE-OMIT-YEAR")
    match = _APPLE_DATE_RE.fullmatch(line.value)
    if omitted is None or match is None or match.group(1) != omitted:
        return line
    params = tuple(_without(line.params, "X-APPLE-OMIT-YEAR"))
    return _with(line, params=params, value=f"--{match.group(2)}{match.group(3)}")

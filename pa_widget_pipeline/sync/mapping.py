"""Turn one PA widget into the string values of its Shopify metaobject (the contract in sync/contract.py).

Rules, in one place:

* Handle: ``"pa-"`` + the widget id lower-cased, every character other than ``a-z``, ``0-9`` and ``-`` replaced by
  ``-`` (one ``-`` per replaced character; nothing is collapsed or trimmed, so the mapping is easy to predict).
  Two different ids can therefore share a handle (``"A_1"`` and ``"a.1"``): sync/frames.py fails both.
* Every contract key is always present in the result. An absent optional value (``None``, or an empty / blank
  ``updatedAt``) is written as the empty string ``""``. ``metaobjectUpsert`` leaves fields it is not given as they
  are, so omitting a key would keep a stale value in Shopify after PA cleared it; ``""`` clears it instead.
* Booleans are ``"true"`` / ``"false"``, integers their decimal string, json fields compact JSON with sorted keys
  (``ensure_ascii=False``: unicode is kept as characters), ``pa_updated_at`` ISO 8601 normalised to UTC with a
  ``Z`` suffix (``2025-03-02T22:41:00Z``; microseconds only when non-zero; a value without an offset is taken as
  UTC; a date alone means midnight UTC).
* Text is kept as it is: markup and unicode in names are not escaped or stripped (storefronts escape on output).
* ``sync_hash`` is the sha256 hex digest of the canonical JSON (sorted keys) of every other value, so it is
  independent of dict key order and changes whenever any written value changes.

Values Shopify would reject raise :class:`MappingError` instead of failing at write time:

* json value longer than 2,000,000 characters, or any other value longer than 65,535 → ``TOO_LONG``
* single-line text containing a newline (``\\n``, ``\\r``, U+2028, U+2029) or a control character
  (Unicode category Cc, which includes tab and DEL) → ``INVALID_VALUE``
* ``updatedAt`` that is not ISO 8601 → ``INVALID_VALUE``; json that is not representable (NaN, Infinity,
  non-JSON objects) → ``INVALID_VALUE``; an integer outside Shopify's ±9,007,199,254,740,991 → ``INVALID_VALUE``
* empty or whitespace-only name → ``BLANK``
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from datetime import datetime, timezone
from typing import Any

from pa_widget_pipeline.pa.models import Widget
from pa_widget_pipeline.sync.contract import HANDLE_PREFIX

JSON_MAX_CHARS = 2_000_000
SCALAR_MAX_CHARS = 65_535
INTEGER_LIMIT = 9_007_199_254_740_991
HASH_FIELD = "sync_hash"

_HANDLE_BAD = re.compile(r"[^a-z0-9-]")
_LINE_BREAKS = frozenset("\n\r\u2028\u2029\x85")


class MappingError(ValueError):
    """A widget value Shopify would reject. ``field`` is the contract key, ``code`` a MetaobjectUserErrorCode."""

    def __init__(self, field: str, code: str, message: str, *, widget_id: str | None = None):
        self.field = field
        self.code = code
        self.message = message
        self.widget_id = widget_id
        where = f"widget {widget_id!r}, " if widget_id is not None else ""
        super().__init__(f"{where}field {field!r}: {code}: {message}")


def metaobject_handle(widget_id: str) -> str:
    """``"pa-"`` + ``widget_id`` lower-cased with every character outside ``[a-z0-9-]`` replaced by ``-``."""
    return HANDLE_PREFIX + _HANDLE_BAD.sub("-", widget_id.lower())


def _single_line(field: str, value: str, widget_id: str) -> str:
    if len(value) > SCALAR_MAX_CHARS:
        raise MappingError(field, "TOO_LONG", f"{len(value)} characters, Shopify allows {SCALAR_MAX_CHARS}",
                           widget_id=widget_id)
    for index, char in enumerate(value):
        if char in _LINE_BREAKS:
            raise MappingError(field, "INVALID_VALUE",
                               f"single-line text contains a line break at position {index}", widget_id=widget_id)
        if unicodedata.category(char) == "Cc":
            raise MappingError(field, "INVALID_VALUE",
                               f"single-line text contains control character U+{ord(char):04X} at position {index}",
                               widget_id=widget_id)
    return value


def _json_value(field: str, value: Any, widget_id: str) -> str:
    if value is None:
        return ""
    try:
        text = json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise MappingError(field, "INVALID_VALUE", f"not representable as JSON: {exc}", widget_id=widget_id) from None
    if len(text) > JSON_MAX_CHARS:
        raise MappingError(field, "TOO_LONG", f"{len(text)} characters of JSON, Shopify allows {JSON_MAX_CHARS}",
                           widget_id=widget_id)
    return text


def _integer(field: str, value: int | None, widget_id: str) -> str:
    if value is None:
        return ""
    if abs(value) > INTEGER_LIMIT:
        raise MappingError(field, "INVALID_VALUE", f"{value} is outside ±{INTEGER_LIMIT}", widget_id=widget_id)
    return str(value)


def normalise_datetime(field: str, value: str | None, widget_id: str | None = None) -> str:
    """ISO 8601 → ``YYYY-MM-DDTHH:MM:SS[.ffffff]Z`` in UTC; ``None`` / blank → ``""``."""
    if value is None or not value.strip():
        return ""
    if len(value) > 64:
        raise MappingError(field, "INVALID_VALUE", f"{len(value)} characters is not an ISO 8601 date-time",
                           widget_id=widget_id)
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise MappingError(field, "INVALID_VALUE", f"{value!r} is not an ISO 8601 date-time",
                           widget_id=widget_id) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    parsed = parsed.astimezone(timezone.utc)
    text = parsed.strftime("%Y-%m-%dT%H:%M:%S")
    if parsed.microsecond:
        text += f".{parsed.microsecond:06d}"
    return text + "Z"


def compute_sync_hash(values: dict[str, str]) -> str:
    """sha256 hex of the canonical JSON of every value except ``sync_hash`` itself (key order does not matter)."""
    payload = {k: v for k, v in values.items() if k != HASH_FIELD}
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def widget_fields(widget: Widget) -> dict[str, str]:
    """Every contract field of ``widget`` as a Shopify string value, plus ``sync_hash``. Raises MappingError."""
    wid = widget.id
    if not widget.name.strip():
        raise MappingError("name", "BLANK", "name is empty", widget_id=wid)
    values: dict[str, str] = {
        "pa_widget_id": _single_line("pa_widget_id", widget.id, wid),
        "name": _single_line("name", widget.name, wid),
        "location": "" if widget.location is None else _single_line("location", widget.location, wid),
        "is_active": "true" if widget.is_active else "false",
        "number_of_slots": _integer("number_of_slots", widget.number_of_slots, wid),
        "header": _json_value("header", widget.header, wid),
        "slots": _json_value("slots", widget.slots, wid),
        "routes": _json_value("routes", widget.routes, wid),
        "styles": _json_value("styles", widget.styles, wid),
        "pa_updated_at": normalise_datetime("pa_updated_at", widget.updated_at, wid),
    }
    values[HASH_FIELD] = compute_sync_hash(values)
    return values


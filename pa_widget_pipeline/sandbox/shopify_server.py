"""A local Shopify Admin GraphQL server (metaobjects, staged uploads, bulk mutations and queries) for tests and
benchmarks.

Faithful where a client can tell the difference: every document is parsed and validated against an SDL subset of
the Admin API (shopify_schema.graphql), costed with Shopify's calculated-cost rules against a per-shop leaky bucket
(shopify_cost.py), metaobject writes are validated against their definition with Shopify's userError codes, and
bulk mutations go through a staged upload, a background run and an out-of-order result JSONL; bulk queries run a
connection query over every node in the background and write one JSONL line per node.

Routes (base = the server URL):
- POST {base}/shops/{key}/admin/api/{version}/graphql.json     header X-Shopify-Access-Token
- POST {base}/staged/{key}/upload                               multipart target of stagedUploadsCreate
- GET  {base}/staged/{key}/results/{name}                       bulk operation result / partial data JSONL
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import datetime as dt
import itertools
import json
import logging
import re
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any, Callable

from graphql import (
    DocumentNode,
    FieldNode,
    GraphQLError,
    InlineFragmentNode,
    ListValueNode,
    OperationDefinitionNode,
    build_schema,
    execute,
    get_named_type,
    parse,
    validate,
)
from graphql.language import Visitor, visit
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from .shopify_cost import MAX_QUERY_COST, CostBucket, OperationCost, max_cost_message

SCHEMA_PATH = Path(__file__).with_name("shopify_schema.graphql")
INPUT_ARRAY_LIMIT = 250
PAGE_LIMIT = 250
MAX_FIELD_DEFINITIONS = 40
LIST_ITEM_LIMIT = 128
JSON_VALUE_LIMIT = 2_000_000
SCALAR_VALUE_LIMIT = 65_535
INVALID_TOKEN_MESSAGE = "[API] Invalid API key or access token (unrecognized login or wrong password)"
THROTTLE_DOCS = "https://shopify.dev/api/usage/rate-limits"
BULK_RESULT_CHUNK = 3  # result lines are written in reversed chunks of this size (Shopify gives no order guarantee)
# Bulk queries a shop may run at once: one before API version 2026-01, five from it (shopify.dev bulk query guide).
BULK_QUERY_CONCURRENCY = {"before-2026-01": 1, "2026-01": 5}
BULK_QUERY_MAX_CONNECTIONS = 5
BULK_QUERY_MAX_DEPTH = 2
_ACTIVE_BULK = ("CREATED", "RUNNING", "CANCELING")

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------ state


@dataclass
class ShopFaults:
    """Mutable fault switches of one shop; all default off, counters decrement as they are used."""

    fail_next: int = 0                 # next N GraphQL requests answer fail_status (500/502/503/504)
    fail_status: int = 503
    internal_error_next: int = 0       # next N answer HTTP 200 with errors[].extensions.code INTERNAL_SERVER_ERROR
    drop_after_apply_next: int = 0     # next N *mutation* requests are executed, then the connection is dropped
    latency_seconds: float = 0.0       # added to every GraphQL request
    failing_handles: dict[str, str] = field(default_factory=dict)  # handle -> userError code for its writes
    http_status: int | None = None     # 401 / 402 / 403 / 423 (any status) on every GraphQL request while set
    throttle_http_status: int = 200    # THROTTLED answers come with 200 or 429
    # bulk operations (additions to the TEAM_NOTES interface)
    bulk_fail_next: int = 0            # next N bulk operations end FAILED (errorCode below) after half their lines
    bulk_fail_error_code: str = "INTERNAL_SERVER_ERROR"
    bulk_start_error_next: int = 0     # next N bulkOperationRunMutation calls answer a userError (cannot start)
    bulk_line_latency_seconds: float = 0.0  # the bulk runner sleeps this long per line (keeps an op RUNNING)
    bulk_query_fail_next: int = 0      # next N bulk *queries* end FAILED (bulk_fail_error_code) after half their
                                       # objects, those in partialDataUrl (bulk mutations are not affected)


@dataclass(frozen=True)
class ShopRequest:
    """One GraphQL request as the sandbox saw it: the shop in the URL and whose token it carried (the key of the
    shop that token belongs to, None for a missing or unknown token). The token itself is never recorded."""

    shop: str
    token_of: str | None


@dataclass
class ShopStats:
    requests: int = 0            # GraphQL requests received (every outcome)
    throttled: int = 0           # THROTTLED answers
    mutations_applied: int = 0   # successful writes (upserts, deletes, definition changes), bulk lines included
    upserts: int = 0             # metaobjects created or updated (metaobjectUpsert/Create/Update)
    deletes: int = 0
    points_spent: float = 0.0    # actual cost charged to the bucket
    faults_served: int = 0       # answers shaped by a fault switch
    graphql_errors: int = 0      # answers with top-level errors other than THROTTLED (validation, cost, ...)
    user_errors: int = 0         # userErrors returned (bulk lines included)
    bulk_operations: int = 0     # bulk mutations started
    bulk_queries: int = 0        # bulk queries started


def _now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _gid(kind: str, num: int) -> str:
    return f"gid://shopify/{kind}/{num}"


_VERSION_RE = re.compile(r"(\d{4}-(01|04|07|10)|unstable)\Z")
_GID_RE = re.compile(r"gid://shopify/([A-Za-z]+)/(\d+)\Z")


def _parse_gid(value: Any) -> tuple[str, int] | None:
    m = _GID_RE.match(value) if isinstance(value, str) else None
    return (m.group(1), int(m.group(2))) if m else None


def _uerr(field_path: list[str] | None, message: str, code: str | None, *, index: int | None = None,
          key: str | None = None) -> dict[str, Any]:
    return {"field": field_path, "message": message, "code": code, "elementIndex": index, "elementKey": key}


# --- field types and value checks

_BASE_FIELD_TYPES = {
    "single_line_text_field", "multi_line_text_field", "rich_text_field", "number_integer", "number_decimal",
    "boolean", "json", "date", "date_time", "url", "color", "rating", "dimension", "volume", "weight", "money",
    "link", "id", "language", "product_reference", "variant_reference", "collection_reference", "page_reference",
    "file_reference", "metaobject_reference", "mixed_reference", "customer_reference", "company_reference",
    "product_taxonomy_value_reference",
}
_NO_LIST = {"boolean", "json", "money", "rich_text_field", "multi_line_text_field", "id", "language"}
FIELD_TYPES = _BASE_FIELD_TYPES | {f"list.{t}" for t in _BASE_FIELD_TYPES - _NO_LIST}
_CATEGORY = {"boolean": "TRUE_FALSE", "json": "JSON", "url": "URL", "color": "COLOR", "date": "DATE_TIME",
             "date_time": "DATE_TIME", "number_integer": "NUMBER", "number_decimal": "NUMBER"}

_INT_RE = re.compile(r"[-+]?\d+\Z")
_DEC_RE = re.compile(r"[-+]?\d+(\.\d+)?\Z")
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}\Z")
_HANDLE_RE = re.compile(r"[a-z0-9-]{1,255}\Z")
_TYPE_RE = re.compile(r"[A-Za-z0-9_-]{3,255}\Z")
_KEY_RE = re.compile(r"[a-zA-Z0-9_-]{2,64}\Z")
_COLOR_RE = re.compile(r"#[0-9a-fA-F]{6}\Z")
INT_LIMIT = 9_007_199_254_740_991


def _check_scalar(type_name: str, value: str) -> str | None:
    """None when `value` is a valid string for the (non-list) field type, else a message."""
    if type_name == "boolean":
        return None if value in ("true", "false") else "Value must be true or false."
    if type_name == "number_integer":
        if not _INT_RE.match(value):
            return "Value must be an integer."
        return None if abs(int(value)) <= INT_LIMIT else "Value is out of range."
    if type_name == "number_decimal":
        return None if _DEC_RE.match(value) else "Value must be a decimal number."
    if type_name == "json":
        try:
            json.loads(value)
        except ValueError as exc:
            return f"Value is invalid JSON: {exc.msg}."
        return None
    if type_name == "date_time":
        try:
            if "T" not in value:
                raise ValueError
            dt.datetime.fromisoformat(value)
        except ValueError:
            return "Value must be in ISO 8601 date and time format (YYYY-MM-DDTHH:MM:SS)."
        return None
    if type_name == "date":
        try:
            if not _DATE_RE.match(value):
                raise ValueError
            dt.date.fromisoformat(value)
        except ValueError:
            return "Value must be in YYYY-MM-DD format."
        return None
    if type_name == "single_line_text_field":
        return "Value must be a single line of text." if ("\n" in value or "\r" in value) else None
    if type_name == "url":
        ok = value.startswith(("http://", "https://", "mailto:", "sms:", "tel:"))
        return None if ok else "Value must be a URL with an allowed scheme (http, https, mailto, sms, tel)."
    if type_name == "color":
        return None if _COLOR_RE.match(value) else "Value must be a hex color (#RRGGBB)."
    return None


def check_field_value(type_name: str, value: str) -> tuple[str, str] | None:
    """(code, message) when `value` is not acceptable for a field of `type_name`, else None."""
    limit = JSON_VALUE_LIMIT if type_name == "json" else SCALAR_VALUE_LIMIT
    if len(value) > limit:
        return "TOO_LONG", f"Value is too long (maximum is {limit} characters)."
    if type_name.startswith("list."):
        base = type_name[5:]
        try:
            items = json.loads(value)
        except ValueError:
            return "INVALID_VALUE", "Value must be a JSON array."
        if not isinstance(items, list):
            return "INVALID_VALUE", "Value must be a JSON array."
        if len(items) > LIST_ITEM_LIMIT:
            return "INVALID_VALUE", f"Value has too many items (maximum is {LIST_ITEM_LIMIT})."
        for item in items:
            problem = _check_scalar(base, item if isinstance(item, str) else json.dumps(item))
            if problem:
                return "INVALID_VALUE", f"List item is invalid: {problem}"
        return None
    problem = _check_scalar(type_name, value)
    return ("INVALID_VALUE", problem) if problem else None


def check_validations(type_name: str, value: str, validations: list[dict]) -> tuple[str, str] | None:
    """(code, message) when `value` breaks one of the field definition's validations (min, max, regex, choices)."""
    numeric = type_name in ("number_integer", "number_decimal")
    for v in validations:
        name, limit = v["name"], v.get("value")
        if limit is None:
            continue
        try:
            if name in ("min", "max"):
                if numeric:
                    number, bound = float(value), float(limit)
                    if (number < bound) if name == "min" else (number > bound):
                        word = "greater" if name == "min" else "less"
                        return "INVALID_VALUE", f"Value must be {word} than or equal to {limit}."
                elif "text" in type_name:
                    if name == "min" and len(value) < int(limit):
                        return "TOO_SHORT", f"Value is too short (minimum is {limit} characters)."
                    if name == "max" and len(value) > int(limit):
                        return "TOO_LONG", f"Value is too long (maximum is {limit} characters)."
            elif name == "regex" and "text" in type_name:
                if not re.search(limit, value):
                    return "INVALID_VALUE", f"Value does not match the pattern {limit!r}."
            elif name == "choices" and "text" in type_name:
                if value not in json.loads(limit):
                    return "INCLUSION", "Value is not included in the list of choices."
        except (ValueError, re.error, TypeError):
            continue  # a validation the sandbox cannot read is not enforced
    return None


def _field_definition_record(spec: dict[str, Any]) -> dict[str, Any]:
    type_name = spec["type"]["name"] if isinstance(spec.get("type"), dict) else spec["type"]
    base = type_name[5:] if type_name.startswith("list.") else type_name
    return {
        "key": spec["key"],
        "name": spec.get("name") or spec["key"],
        "description": spec.get("description"),
        "required": bool(spec.get("required") or False),
        "type": {"name": type_name, "category": _CATEGORY.get(base, "TEXT" if "text" in base else "REFERENCE"
                                                                if base.endswith("reference") else "OTHER")},
        "validations": [{"name": v["name"], "value": v.get("value"), "type": "string"}
                        for v in (spec.get("validations") or [])],
    }


class ShopState:
    """Everything one shop holds: auth, faults, cost bucket, definitions, metaobjects, staged files, bulk ops.

    Guard every read/write with `lock` (the GraphQL executor holds it for a whole document).
    """

    def __init__(self, key: str, access_token: str, *, clock: Callable[[], float] = time.monotonic,
                 bucket_size: float = 2000.0, restore_rate: float = 100.0, ids: Any = None,
                 api_client_id: int = 2811841):
        self.key = key
        self.access_token = access_token
        self.faults = ShopFaults()
        self.bucket = CostBucket(bucket_size, restore_rate, clock)
        self.stats = ShopStats()
        self.lock = threading.RLock()
        self.api_client_id = api_client_id
        self.definitions: dict[str, dict] = {}
        self.metaobjects: dict[str, dict[str, dict]] = {}
        self.staged_files: dict[str, dict[str, Any]] = {}    # stagedUploadPath -> {policy, data: bytes | None}
        self.bulk_operations: dict[str, dict[str, Any]] = {}  # gid -> BulkOperation dict
        self.bulk_files: dict[str, bytes] = {}                # result file name -> JSONL bytes
        self._ids = ids if ids is not None else itertools.count(1000)
        self._obj_by_id: dict[str, dict] = {}
        self._def_by_id: dict[str, str] = {}
        self._field_index: dict[str, dict[str, dict]] = {}
        self._fault_serial = 0

    # ---- ids and lookups
    def _next_num(self) -> int:
        return next(self._ids)

    def resolve_type(self, metaobject_type: str) -> str:
        """`$app:foo` is this app's reserved type `app--{api_client_id}--foo`."""
        if metaobject_type.startswith("$app:"):
            return f"app--{self.api_client_id}--{metaobject_type[5:]}"
        return metaobject_type

    def definition(self, metaobject_type: str) -> dict | None:
        return self.definitions.get(self.resolve_type(metaobject_type))

    def definition_by_id(self, gid: str) -> dict | None:
        t = self._def_by_id.get(gid)
        return self.definitions.get(t) if t else None

    def metaobject_by_id(self, gid: str) -> dict | None:
        return self._obj_by_id.get(gid)

    def field_index(self, metaobject_type: str) -> dict[str, dict]:
        return self._field_index.get(metaobject_type, {})

    def _reindex(self, metaobject_type: str) -> None:
        d = self.definitions[metaobject_type]
        self._field_index[metaobject_type] = {f["key"]: f for f in d["fieldDefinitions"]}

    # ---- definitions
    def create_definition(self, type: str, fields: list[Any], name: str | None = None,
                          display_name_key: str | None = None) -> dict:
        """Create a definition directly (tests, demo data). `fields`: dicts {key, type, required?, name?} or
        objects with those attributes (e.g. ContractField). Raises ValueError on what Shopify would refuse."""
        specs = []
        for f in fields:
            if not isinstance(f, dict):
                f = {"key": f.key, "type": f.type, "required": getattr(f, "required", False),
                     "name": getattr(f, "name", "") or None}
            specs.append(f)
        with self.lock:
            d, errors = self.create_definition_input(
                {"type": type, "name": name, "fieldDefinitions": specs, "displayNameKey": display_name_key})
        if errors:
            raise ValueError("; ".join(f"{e['code']}: {e['message']}" for e in errors))
        return d

    def remove_definition_field(self, type: str, key: str) -> None:
        """Drop a field from a definition (tests: make a store's definition fail the contract check)."""
        with self.lock:
            d = self.definitions[self.resolve_type(type)]
            d["fieldDefinitions"] = [f for f in d["fieldDefinitions"] if f["key"] != key]
            self._reindex(d["type"])
            for obj in self.metaobjects.get(d["type"], {}).values():
                obj["fields"].pop(key, None)

    def set_definition_field(self, type: str, key: str, *, field_type: str | None = None,
                             required: bool | None = None) -> None:
        """Tests: change a field's type or required flag in place (what Shopify would not let a client do)."""
        with self.lock:
            d = self.definitions[self.resolve_type(type)]
            for f in d["fieldDefinitions"]:
                if f["key"] == key:
                    if field_type is not None:
                        f["type"] = _field_definition_record({"key": key, "type": field_type})["type"]
                    if required is not None:
                        f["required"] = required
            self._reindex(d["type"])

    def _check_field_definition(self, spec: dict, path: list[str], index: int) -> list[dict]:
        errors = []
        key = spec.get("key") or ""
        if not _KEY_RE.match(key):
            errors.append(_uerr(path + [str(index), "key"], f"Key {key!r} is invalid: use 2-64 letters, digits, "
                                "'_' or '-'.", "INVALID", index=index, key=key))
        type_name = spec.get("type") or ""
        if type_name not in FIELD_TYPES:
            errors.append(_uerr(path + [str(index), "type"], f"Type {type_name!r} is not a valid field type.",
                                "FIELD_TYPE_INVALID", index=index, key=key))
        return errors

    def create_definition_input(self, inp: dict) -> tuple[dict | None, list[dict]]:
        """metaobjectDefinitionCreate. Call with `lock` held."""
        errors: list[dict] = []
        raw_type = inp.get("type") or ""
        mtype = self.resolve_type(raw_type)
        bare = raw_type[5:] if raw_type.startswith("$app:") else raw_type
        if not _TYPE_RE.match(bare):
            errors.append(_uerr(["definition", "type"], "Type is invalid: use 3-255 letters, digits, '_' or '-'.",
                                "INVALID"))
        elif mtype in self.definitions:
            errors.append(_uerr(["definition", "type"], "Type has already been taken", "TAKEN"))
        elif raw_type.startswith("shopify--"):
            errors.append(_uerr(["definition", "type"], "Type uses a reserved namespace.", "RESERVED_NAME"))
        specs = inp.get("fieldDefinitions") or []
        if len(specs) > MAX_FIELD_DEFINITIONS:
            errors.append(_uerr(["definition", "fieldDefinitions"],
                                f"Field definitions exceed the maximum of {MAX_FIELD_DEFINITIONS}.",
                                "INPUT_LIMIT_EXCEEDED"))
        seen: set[str] = set()
        for i, spec in enumerate(specs):
            errors += self._check_field_definition(spec, ["definition", "fieldDefinitions"], i)
            if spec.get("key") in seen:
                errors.append(_uerr(["definition", "fieldDefinitions", str(i), "key"],
                                    f"Field key {spec.get('key')!r} is already taken.", "OBJECT_FIELD_TAKEN",
                                    index=i, key=spec.get("key")))
            seen.add(spec.get("key"))
        dnk = inp.get("displayNameKey")
        if dnk is not None and dnk not in seen:
            errors.append(_uerr(["definition", "displayNameKey"], f"Display name key {dnk!r} is not a field.",
                                "INVALID"))
        if errors:
            return None, errors
        access = inp.get("access") or {}
        caps = inp.get("capabilities") or {}
        num = self._next_num()
        d = {
            "__typename": "MetaobjectDefinition",
            "id": _gid("MetaobjectDefinition", num),
            "type": mtype,
            "name": inp.get("name") or bare,
            "description": inp.get("description"),
            "displayNameKey": dnk,
            "fieldDefinitions": [_field_definition_record(s) for s in specs],
            "access": {"admin": access.get("admin") or "MERCHANT_READ_WRITE",
                       "storefront": access.get("storefront") or "NONE"},
            "capabilities": {k: {"enabled": bool((caps.get(k) or {}).get("enabled", False))}
                             for k in ("publishable", "translatable", "renderable", "onlineStore")},
            "hasThumbnailField": False,
            "_num": num,
        }
        self.definitions[mtype] = d
        self._def_by_id[d["id"]] = mtype
        self.metaobjects.setdefault(mtype, {})
        self._reindex(mtype)
        return d, []

    def update_definition_input(self, gid: str, inp: dict) -> tuple[dict | None, list[dict]]:
        """metaobjectDefinitionUpdate: name/description/displayNameKey/access/capabilities and field operations
        (create / update / delete), all or nothing. Call with `lock` held."""
        d = self.definition_by_id(gid)
        if d is None:
            return None, [_uerr(["id"], "Record not found", "RECORD_NOT_FOUND")]
        errors: list[dict] = []
        fields = [dict(f) for f in d["fieldDefinitions"]]
        by_key = {f["key"]: f for f in fields}
        path = ["definition", "fieldDefinitions"]
        for i, op in enumerate(inp.get("fieldDefinitions") or []):
            given = [k for k in ("create", "update", "delete") if op.get(k) is not None]
            if len(given) != 1:
                errors.append(_uerr(path + [str(i)], "Exactly one of create, update or delete is required.",
                                    "INVALID", index=i))
                continue
            kind, spec = given[0], op[given[0]]
            key = spec.get("key")
            if kind == "create":
                errs = self._check_field_definition(spec, path, i)
                if key in by_key:
                    errs.append(_uerr(path + [str(i), "create", "key"], f"Field key {key!r} is already taken.",
                                      "OBJECT_FIELD_TAKEN", index=i, key=key))
                if errs:
                    errors += errs
                    continue
                rec = _field_definition_record(spec)
                fields.append(rec)
                by_key[key] = rec
            elif key not in by_key:
                errors.append(_uerr(path + [str(i), kind, "key"], f"Field definition {key!r} does not exist.",
                                    "UNDEFINED_OBJECT_FIELD", index=i, key=key))
            elif kind == "update":
                rec = by_key[key]
                for attr in ("name", "description", "required"):
                    if spec.get(attr) is not None:
                        rec[attr] = spec[attr]
                if spec.get("validations") is not None:
                    rec["validations"] = _field_definition_record({**spec, "type": "x"})["validations"]
            else:
                fields = [f for f in fields if f["key"] != key]
                del by_key[key]
        if len(fields) > MAX_FIELD_DEFINITIONS:
            errors.append(_uerr(path, f"Field definitions exceed the maximum of {MAX_FIELD_DEFINITIONS}.",
                                "INPUT_LIMIT_EXCEEDED"))
        dnk = inp.get("displayNameKey", d["displayNameKey"])
        if dnk is not None and dnk not in by_key:
            errors.append(_uerr(["definition", "displayNameKey"], f"Display name key {dnk!r} is not a field.",
                                "INVALID"))
        if errors:
            return None, errors
        removed = set(f["key"] for f in d["fieldDefinitions"]) - set(by_key)
        if inp.get("resetFieldOrder"):
            fields.sort(key=lambda f: f["key"])
        d["fieldDefinitions"] = fields
        d["displayNameKey"] = dnk
        for attr in ("name", "description"):
            if inp.get(attr) is not None:
                d[attr] = inp[attr]
        if inp.get("access"):
            d["access"] = {**d["access"], **{k: v for k, v in inp["access"].items() if v is not None}}
        for k, v in (inp.get("capabilities") or {}).items():
            if v is not None:
                d["capabilities"][k] = {"enabled": bool(v.get("enabled"))}
        if removed:
            for obj in self.metaobjects.get(d["type"], {}).values():
                for k in removed:
                    obj["fields"].pop(k, None)
        self._reindex(d["type"])
        return d, []

    def delete_definition(self, gid: str) -> tuple[str | None, list[dict]]:
        d = self.definition_by_id(gid)
        if d is None:
            return None, [_uerr(["id"], "Record not found", "RECORD_NOT_FOUND")]
        mtype = d["type"]
        for obj in self.metaobjects.pop(mtype, {}).values():
            self._obj_by_id.pop(obj["id"], None)
        del self.definitions[mtype]
        del self._def_by_id[gid]
        self._field_index.pop(mtype, None)
        return gid, []

    # ---- metaobjects
    def _validate_fields(self, mtype: str, fields_input: list[dict], path: list[str]
                         ) -> tuple[dict[str, str | None], list[dict]]:
        index = self._field_index[mtype]
        values: dict[str, str | None] = {}
        errors: list[dict] = []
        seen: set[str] = set()
        for i, f in enumerate(fields_input):
            key, value = f["key"], f["value"]
            fd = index.get(key)
            if key in seen:
                errors.append(_uerr(path, f"Field {key!r} was given more than once.", "DUPLICATE_FIELD_INPUT",
                                    index=i, key=key))
                continue
            seen.add(key)
            if fd is None:
                errors.append(_uerr(path, f"Field definition {key!r} does not exist.", "UNDEFINED_OBJECT_FIELD",
                                    index=i, key=key))
                continue
            if value.strip() == "":
                if fd["required"]:
                    errors.append(_uerr(path, f"Field {key!r} can't be blank.", "BLANK", index=i, key=key))
                values[key] = None
                continue
            problem = check_field_value(fd["type"]["name"], value)
            if problem is None and fd["validations"]:
                problem = check_validations(fd["type"]["name"], value, fd["validations"])
            if problem:
                errors.append(_uerr(path, f"Field {key!r}: {problem[1]}", problem[0], index=i, key=key))
                continue
            values[key] = value
        return values, errors

    def _handle_error(self, handle: Any, path: list[str]) -> dict | None:
        if not isinstance(handle, str) or not _HANDLE_RE.match(handle):
            return _uerr(path, f"Handle {handle!r} is invalid: use lower-case letters, digits and '-'.", "INVALID")
        return None

    def write_metaobject(self, metaobject_type: str, *, handle: str | None, fields_input: list[dict] | None,
                         mode: str, existing: dict | None = None, new_handle: str | None = None,
                         status: str | None = None) -> tuple[dict | None, list[dict]]:
        """Create or update one metaobject, all or nothing. mode: 'upsert' | 'create' | 'update'.
        Call with `lock` held."""
        mtype = self.resolve_type(metaobject_type)
        failing = self.faults.failing_handles.get(handle or new_handle or "")
        if failing:
            return None, [_uerr(None, f"Metaobject {handle!r} could not be saved ({failing}).", failing)]
        if mtype not in self.definitions:
            tpath = ["handle", "type"] if mode == "upsert" else ["metaobject", "type"]
            return None, [_uerr(tpath, f"No metaobject definition exists for type {metaobject_type!r}",
                                "UNDEFINED_OBJECT_TYPE")]
        errors: list[dict] = []
        objects = self.metaobjects[mtype]
        if mode == "upsert":
            e = self._handle_error(handle, ["handle", "handle"])
            if e:
                errors.append(e)
            existing = objects.get(handle) if not e else None
        target_handle = new_handle or (existing["handle"] if existing else handle)
        if new_handle is not None:
            e = self._handle_error(new_handle, ["metaobject", "handle"])
            if e:
                errors.append(e)
            elif new_handle in objects and objects[new_handle] is not existing:
                errors.append(_uerr(["metaobject", "handle"], f"Handle {new_handle!r} has already been taken",
                                    "TAKEN"))
        elif mode == "create" and handle is not None:
            e = self._handle_error(handle, ["metaobject", "handle"])
            if e:
                errors.append(e)
            elif handle in objects:
                errors.append(_uerr(["metaobject", "handle"], f"Handle {handle!r} has already been taken",
                                    "TAKEN"))
        fields_input = fields_input or []
        if len(fields_input) > INPUT_ARRAY_LIMIT:
            errors.append(_uerr(["metaobject", "fields"], "Too many fields.", "INPUT_LIMIT_EXCEEDED"))
            return None, errors
        values, ferrs = self._validate_fields(mtype, fields_input, ["metaobject", "fields"])
        errors += ferrs
        if existing is None:
            given = {k for k, v in values.items() if v is not None}
            flagged = {e["elementKey"] for e in ferrs}
            for fd in self.definitions[mtype]["fieldDefinitions"]:
                if fd["required"] and fd["key"] not in given and fd["key"] not in flagged:
                    errors.append(_uerr(["metaobject", "fields"], f"Field {fd['key']!r} is required.",
                                        "OBJECT_FIELD_REQUIRED", key=fd["key"]))
        if errors:
            return None, errors
        now = _now_iso()
        if existing is None:
            num = self._next_num()
            if target_handle is None:
                target_handle = f"{mtype.replace('_', '-').lower()}-{num}"
            obj = {"__typename": "Metaobject", "id": _gid("Metaobject", num), "handle": target_handle,
                   "type": mtype, "updatedAt": now, "createdAt": now,
                   "fields": {k: v for k, v in values.items() if v is not None},
                   "status": status or "ACTIVE", "_num": num}
            objects[target_handle] = obj
            self._obj_by_id[obj["id"]] = obj
        else:
            obj = existing
            changed = False
            for k, v in values.items():
                if obj["fields"].get(k) != v:
                    changed = True
                    if v is None:
                        obj["fields"].pop(k, None)
                    else:
                        obj["fields"][k] = v
            if status and status != obj["status"]:
                obj["status"], changed = status, True
            if target_handle != obj["handle"]:
                del objects[obj["handle"]]
                obj["handle"] = target_handle
                objects[target_handle] = obj
                # keep creation (id) order for paging
                self.metaobjects[mtype] = dict(sorted(objects.items(), key=lambda kv: kv[1]["_num"]))
                changed = True
            if changed:
                obj["updatedAt"] = now
        self.stats.upserts += 1
        self.stats.mutations_applied += 1
        return obj, []

    def upsert_metaobject(self, metaobject_type: str, handle: str, fields: dict[str, str]) -> dict:
        """Direct upsert (tests, demo data). Raises ValueError with the userErrors when Shopify would refuse."""
        with self.lock:
            obj, errors = self.write_metaobject(
                metaobject_type, handle=handle, mode="upsert",
                fields_input=[{"key": k, "value": v} for k, v in fields.items()])
        if errors:
            raise ValueError("; ".join(f"{e['code']}: {e['message']}" for e in errors))
        return obj

    def delete_metaobject(self, gid: str) -> tuple[str | None, list[dict]]:
        """metaobjectDelete. Call with `lock` held."""
        obj = self._obj_by_id.get(gid) if isinstance(gid, str) else None
        if obj is None:
            return None, [_uerr(["id"], "Record not found", "RECORD_NOT_FOUND")]
        failing = self.faults.failing_handles.get(obj["handle"])
        if failing:
            return None, [_uerr(None, f"Metaobject {obj['handle']!r} could not be deleted ({failing}).", failing)]
        del self._obj_by_id[gid]
        del self.metaobjects[obj["type"]][obj["handle"]]
        self.stats.deletes += 1
        self.stats.mutations_applied += 1
        return gid, []

    def count(self, metaobject_type: str) -> int:
        with self.lock:
            return len(self.metaobjects.get(self.resolve_type(metaobject_type), {}))

    def __repr__(self) -> str:  # never the token
        return f"ShopState(key={self.key!r}, definitions={sorted(self.definitions)})"


# ------------------------------------------------------------------------------------------------ GraphQL


class _DroppedConnection(Exception):
    """Raised after a partial body to make uvicorn drop the connection (the drop_after_apply fault)."""


class _QuietDrops(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, _DroppedConnection)


logging.getLogger("uvicorn.error").addFilter(_QuietDrops())


class _DroppingResponse(Response):
    """Announces the full Content-Length, sends half the body, then fails: the client sees a broken response."""

    def __init__(self, body: bytes):
        super().__init__(body, status_code=200, media_type="application/json")

    async def __call__(self, scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": self.body[: max(1, len(self.body) // 2)],
                    "more_body": True})
        raise _DroppedConnection("sandbox fault: connection dropped after the mutation was applied")


@dataclass
class _Doc:
    document: DocumentNode | None
    errors: list[dict] | None
    operations: dict[str | None, OperationCost]
    max_literal_list: int


class _ListSizeVisitor(Visitor):
    def __init__(self):
        super().__init__()
        self.largest = 0

    def enter_list_value(self, node: ListValueNode, *_):
        self.largest = max(self.largest, len(node.values))


def _largest_list(value: Any) -> int:
    if isinstance(value, list):
        return max([len(value)] + [_largest_list(v) for v in value])
    if isinstance(value, dict):
        return max([0] + [_largest_list(v) for v in value.values()])
    return 0


def _cursor(num: int) -> str:
    return base64.b64encode(json.dumps({"last_id": num, "last_value": str(num)},
                                       separators=(",", ":")).encode()).decode()


def _decode_cursor(cursor: str) -> int:
    try:
        return int(json.loads(base64.b64decode(cursor.encode(), validate=True))["last_id"])
    except Exception:
        raise GraphQLError("Invalid cursor for current pagination sort.") from None


def _take_fault(shop: "ShopState", counter: str) -> bool:
    """Use one shot of a counting fault switch; True when it fired."""
    if getattr(shop.faults, counter) <= 0:
        return False
    setattr(shop.faults, counter, getattr(shop.faults, counter) - 1)
    shop.stats.faults_served += 1
    return True


class ShopifySandbox:
    """Shops plus the Starlette app that serves them. `clock` drives every shop's cost bucket."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.shops: dict[str, ShopState] = {}
        self.schema = build_schema(SCHEMA_PATH.read_text())
        self.schema.type_map["UnsignedInt64"].serialize = lambda v: str(int(v))  # type: ignore[attr-defined]
        self._ids = itertools.count(100000)
        self._docs: dict[str, _Doc] = {}
        self._docs_lock = threading.Lock()
        self._bulk_threads: list[threading.Thread] = []
        self.requests: list[ShopRequest] = []  # every GraphQL request, in order (which token reached which shop)
        self._wire_resolvers()

    def add_shop(self, key: str, access_token: str, *, bucket_size: float = 2000.0,
                 restore_rate: float = 100.0) -> ShopState:
        shop = ShopState(key, access_token, clock=self.clock, bucket_size=bucket_size, restore_rate=restore_rate,
                         ids=self._ids)
        self.shops[key] = shop
        return shop

    def wait_for_bulk(self, timeout: float = 10.0) -> None:
        """Tests: wait until every started bulk operation thread has finished."""
        deadline = time.monotonic() + timeout
        for t in list(self._bulk_threads):
            t.join(max(0.0, deadline - time.monotonic()))

    # ---------------------------------------------------------------- documents
    def _document(self, query: str) -> _Doc:
        doc = self._docs.get(query)
        if doc is not None:
            return doc
        try:
            document = parse(query)
        except GraphQLError as exc:
            doc = _Doc(None, [_format_error(exc)], {}, 0)
        else:
            errs = validate(self.schema, document)
            if errs:
                doc = _Doc(None, [_format_error(e) for e in errs], {}, 0)
            else:
                fragments = {d.name.value: d for d in document.definitions
                             if d.__class__.__name__ == "FragmentDefinitionNode"}
                ops = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
                costs: dict[str | None, OperationCost] = {}
                for op in ops:
                    c = OperationCost(self.schema, op, fragments)
                    costs[op.name.value if op.name else None] = c
                if len(ops) == 1:
                    costs[None] = costs[ops[0].name.value if ops[0].name else None]
                sizes = _ListSizeVisitor()
                visit(document, sizes)
                doc = _Doc(document, None, costs, sizes.largest)
        with self._docs_lock:
            if len(self._docs) > 2000:
                self._docs.clear()
            self._docs[query] = doc
        return doc

    # ---------------------------------------------------------------- execution
    def handle_graphql(self, shop: ShopState, query: Any, variables: Any, operation_name: Any,
                       base_url: str, api_version: str | None = None
                       ) -> tuple[int, dict[str, Any], dict[str, str], bool]:
        """Everything after HTTP-level faults and auth: returns (status, body, headers, drop_connection)."""
        if not isinstance(query, str) or not query.strip():
            return 400, {"errors": {"query": "Required parameter missing or invalid"}}, {}, False
        if variables is None:
            variables = {}
        if not isinstance(variables, dict):
            return 400, {"errors": {"variables": "Required parameter missing or invalid"}}, {}, False
        doc = self._document(query)
        if doc.errors:
            with shop.lock:
                shop.stats.graphql_errors += 1
            return 200, {"errors": doc.errors}, {}, False
        op_cost = doc.operations.get(operation_name if isinstance(operation_name, str) else None)
        if op_cost is None:
            with shop.lock:
                shop.stats.graphql_errors += 1
            msg = (f"No operation named {operation_name!r}" if operation_name
                   else "An operation name is required when the document has more than one operation.")
            return 200, {"errors": [{"message": msg, "extensions": {"code": "OPERATION_NOT_FOUND"}}]}, {}, False
        largest = max(doc.max_literal_list, _largest_list(variables))
        if largest > INPUT_ARRAY_LIMIT:
            with shop.lock:
                shop.stats.graphql_errors += 1
            return 200, {"errors": [{
                "message": f"The input array size of {largest} is greater than the maximum allowed of "
                           f"{INPUT_ARRAY_LIMIT}.",
                "extensions": {"code": "MAX_INPUT_SIZE_EXCEEDED"}}]}, {}, False
        requested = op_cost.requested(variables)
        bucket = shop.bucket
        if requested > MAX_QUERY_COST:
            with shop.lock:
                shop.stats.graphql_errors += 1
            return 200, {
                "errors": [{"message": max_cost_message(requested),
                            "extensions": {"code": "MAX_COST_EXCEEDED", "cost": requested,
                                           "maxCost": MAX_QUERY_COST}}],
                "extensions": {"cost": {"requestedQueryCost": requested, "actualQueryCost": None,
                                        "throttleStatus": bucket.throttle_status()}},
            }, {}, False
        faults = shop.faults
        with shop.lock:
            if faults.internal_error_next > 0:
                faults.internal_error_next -= 1
                shop.stats.faults_served += 1
                request_id = str(uuid.uuid4())
                return 200, {"errors": [{
                    "message": "Internal error. Looks like something went wrong on our end.\n"
                               f"Request ID: {request_id} (include this in support requests).",
                    "extensions": {"code": "INTERNAL_SERVER_ERROR", "requestId": request_id}}]}, \
                    {"X-Request-Id": request_id}, False
        if not bucket.try_take(requested):
            with shop.lock:
                shop.stats.throttled += 1
            status = faults.throttle_http_status or 200
            headers = {}
            if status == 429:
                headers["Retry-After"] = f"{max(1.0, bucket.seconds_until(requested)):.1f}"
            return status, {
                "errors": [{"message": "Throttled",
                            "extensions": {"code": "THROTTLED", "documentation": THROTTLE_DOCS}}],
                "extensions": {"cost": {"requestedQueryCost": requested, "actualQueryCost": None,
                                        "throttleStatus": bucket.throttle_status()}},
            }, headers, False
        context = {"shop": shop, "sandbox": self, "refund": 0, "base_url": base_url, "op_cost": op_cost,
                   "bulk": False, "api_version": api_version}
        with shop.lock:
            result = execute(self.schema, doc.document, context_value=context, variable_values=variables,
                             operation_name=operation_name if isinstance(operation_name, str) else None)
            actual = max(0, requested - context["refund"]) if result.data is not None else 0
            drop = False
            if op_cost.is_mutation and faults.drop_after_apply_next > 0:
                faults.drop_after_apply_next -= 1
                shop.stats.faults_served += 1
                drop = True
            shop.stats.points_spent += actual
            if result.errors:
                shop.stats.graphql_errors += 1
        bucket.refund(requested - actual)
        body: dict[str, Any] = {}
        if result.errors:
            body["errors"] = [_format_error(e) for e in result.errors]
        body["data"] = result.data
        body["extensions"] = {"cost": {"requestedQueryCost": requested, "actualQueryCost": actual,
                                       "throttleStatus": bucket.throttle_status()}}
        return 200, body, {}, drop

    def _execute_bulk_line(self, shop: ShopState, doc: _Doc, variables: dict) -> dict[str, Any]:
        context = {"shop": shop, "sandbox": self, "refund": 0, "base_url": "", "op_cost": doc.operations[None],
                   "bulk": True}
        with shop.lock:
            result = execute(self.schema, doc.document, context_value=context, variable_values=variables)
        line: dict[str, Any] = {"data": result.data}
        if result.errors:
            line["errors"] = [_format_error(e) for e in result.errors]
        return line

    # ---------------------------------------------------------------- HTTP
    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/shops/{shop}/admin/api/{version}/graphql.json", self._graphql_endpoint, methods=["POST"]),
            Route("/staged/{shop}/upload", self._upload_endpoint, methods=["POST"]),
            Route("/staged/{shop}/results/{name}", self._result_endpoint, methods=["GET"]),
        ])

    async def _graphql_endpoint(self, request: Request) -> Response:
        shop = self.shops.get(request.path_params["shop"])
        if shop is None:
            return JSONResponse({"errors": "Not Found"}, status_code=404)
        if not _VERSION_RE.match(request.path_params["version"]):
            return JSONResponse({"errors": "Not Found"}, status_code=404)
        faults = shop.faults
        token = request.headers.get("x-shopify-access-token")
        token_of = next((key for key, other in list(self.shops.items()) if token and secrets.compare_digest(
            token.encode(), other.access_token.encode())), None)
        with shop.lock:
            shop.stats.requests += 1
            self.requests.append(ShopRequest(shop.key, token_of))
        if faults.latency_seconds > 0:
            await asyncio.sleep(faults.latency_seconds)
        if faults.http_status is not None:
            with shop.lock:
                shop.stats.faults_served += 1
            return _status_response(faults.http_status)
        if not token or not secrets.compare_digest(token.encode(), shop.access_token.encode()):
            return JSONResponse({"errors": INVALID_TOKEN_MESSAGE}, status_code=401)
        with shop.lock:
            failing = faults.fail_next > 0
            if failing:
                faults.fail_next -= 1
                shop.stats.faults_served += 1
                shop._fault_serial += 1
                serial = shop._fault_serial
        if failing:
            return _server_error_response(faults.fail_status, html=serial % 2 == 1)
        try:
            raw_body = await request.body()
            if request.headers.get("content-type", "").startswith("application/graphql"):
                payload = {"query": raw_body.decode("utf-8")}
            else:
                payload = json.loads(raw_body)
        except ValueError:
            return JSONResponse({"errors": {"query": "Required parameter missing or invalid"}}, status_code=400)
        if not isinstance(payload, dict):
            return JSONResponse({"errors": {"query": "Required parameter missing or invalid"}}, status_code=400)
        base_url = str(request.base_url).rstrip("/")
        status, body, headers, drop = self.handle_graphql(
            shop, payload.get("query"), payload.get("variables"), payload.get("operationName"), base_url,
            request.path_params["version"])
        headers = {"X-Request-Id": headers.pop("X-Request-Id", str(uuid.uuid4())),
                   "X-Shopify-API-Version": request.path_params["version"], **headers}
        raw = json.dumps(body, separators=(",", ":")).encode()
        if drop:
            return _DroppingResponse(raw)
        return Response(raw, status_code=status, media_type="application/json", headers=headers)

    async def _upload_endpoint(self, request: Request) -> Response:
        shop = self.shops.get(request.path_params["shop"])
        if shop is None:
            return _xml_error(404, "NoSuchBucket", "The specified bucket does not exist.")
        try:
            form = await request.form(max_files=1, max_fields=50)
        except Exception as exc:  # malformed multipart
            return _xml_error(400, "InvalidArgument", f"Malformed multipart body: {exc}")
        try:
            names = list(form.keys())
            key = form.get("key")
            upload = form.get("file")
            if not isinstance(key, str) or upload is None:
                return _xml_error(400, "InvalidArgument", "A 'key' field and a 'file' part are required.")
            if names[-1] != "file":
                return _xml_error(400, "InvalidArgument", "The 'file' part must be the last part of the form.")
            with shop.lock:
                staged = shop.staged_files.get(key)
            if staged is None or form.get("policy") != staged["policy"]:
                return _xml_error(403, "AccessDenied", "Invalid key or policy for this upload target.")
            data = upload.encode() if isinstance(upload, str) else await upload.read()
        finally:
            await form.close()
        with shop.lock:
            staged["data"] = data
        xml = (f'<?xml version="1.0" encoding="UTF-8"?><PostResponse><Location>{request.url}</Location>'
               f"<Bucket>shopify-staged-uploads</Bucket><Key>{key}</Key><ETag>\"{uuid.uuid4().hex}\"</ETag>"
               "</PostResponse>")
        status = int(staged.get("success_status") or 201)
        return Response(xml if status == 201 else b"", status_code=status, media_type="application/xml")

    async def _result_endpoint(self, request: Request) -> Response:
        shop = self.shops.get(request.path_params["shop"])
        data = shop.bulk_files.get(request.path_params["name"]) if shop else None
        if data is None:
            return _xml_error(404, "NoSuchKey", "The specified key does not exist.")
        return Response(data, media_type="application/jsonl")

    # ---------------------------------------------------------------- resolvers
    def _wire_resolvers(self) -> None:
        s = self.schema
        q = s.query_type.fields  # type: ignore[union-attr]
        m = s.mutation_type.fields  # type: ignore[union-attr]

        def shop_of(info) -> ShopState:
            return info.context["shop"]

        q["shop"].resolve = lambda _, info: {
            "__typename": "Shop", "id": _gid("Shop", 1), "name": shop_of(info).key,
            "myshopifyDomain": f"{shop_of(info).key}.myshopify.com"}
        q["node"].resolve = lambda _, info, id: self._node(shop_of(info), id)
        q["nodes"].resolve = lambda _, info, ids: [self._node(shop_of(info), i) for i in ids]
        q["metaobjectDefinition"].resolve = lambda _, info, id: shop_of(info).definition_by_id(id)
        q["metaobjectDefinitionByType"].resolve = lambda _, info, type: shop_of(info).definition(type)
        q["metaobject"].resolve = lambda _, info, id: shop_of(info).metaobject_by_id(id)

        def by_handle(_, info, handle):
            shop = shop_of(info)
            return shop.metaobjects.get(shop.resolve_type(handle["type"]), {}).get(handle["handle"])

        q["metaobjectByHandle"].resolve = by_handle

        def definitions(_, info, **args):
            items = sorted(shop_of(info).definitions.values(), key=lambda d: d["_num"])
            return self._paginate(info, items, **args)

        q["metaobjectDefinitions"].resolve = definitions

        def metaobjects(_, info, type, sortKey=None, query=None, **args):
            shop = shop_of(info)
            return self._paginate(info, list(shop.metaobjects.get(shop.resolve_type(type), {}).values()), **args)

        q["metaobjects"].resolve = metaobjects
        q["bulkOperation"].resolve = lambda _, info, id: shop_of(info).bulk_operations.get(id)

        def current_bulk(_, info, type="QUERY"):
            ops = [o for o in shop_of(info).bulk_operations.values() if o["type"] == type]
            return max(ops, key=lambda o: o["_num"]) if ops else None

        q["currentBulkOperation"].resolve = current_bulk

        d = s.type_map["MetaobjectDefinition"].fields  # type: ignore[union-attr]
        d["metaobjectsCount"].resolve = lambda defn, info: len(shop_of(info).metaobjects.get(defn["type"], {}))
        d["metaobjects"].resolve = lambda defn, info, **args: self._paginate(
            info, list(shop_of(info).metaobjects.get(defn["type"], {}).values()), **args)

        o = s.type_map["Metaobject"].fields  # type: ignore[union-attr]

        def fields_of(obj, info):
            defn = shop_of(info).definitions.get(obj["type"])
            values = obj["fields"]
            return [{"key": fd["key"], "type": fd["type"]["name"], "value": values.get(fd["key"]), "_def": fd}
                    for fd in (defn["fieldDefinitions"] if defn else ())]

        def field_of(obj, info, key):
            fd = shop_of(info).field_index(obj["type"]).get(key)
            if fd is None:
                return None
            return {"key": key, "type": fd["type"]["name"], "value": obj["fields"].get(key), "_def": fd}

        def display_name(obj, info):
            defn = shop_of(info).definitions.get(obj["type"]) or {}
            dnk = defn.get("displayNameKey")
            return (obj["fields"].get(dnk) if dnk else None) or obj["handle"]

        o["fields"].resolve = fields_of
        o["field"].resolve = field_of
        o["displayName"].resolve = display_name
        o["definition"].resolve = lambda obj, info: shop_of(info).definitions.get(obj["type"])
        o["capabilities"].resolve = lambda obj, info: {"publishable": {"status": obj.get("status", "ACTIVE")}}

        f = s.type_map["MetaobjectField"].fields  # type: ignore[union-attr]
        f["definition"].resolve = lambda fld, info: fld["_def"]
        f["jsonValue"].resolve = lambda fld, info: _json_value(fld["type"], fld["value"])

        # mutations
        def definition_create(_, info, definition):
            d_, errors = shop_of(info).create_definition_input(definition)
            if d_ is not None:
                shop_of(info).stats.mutations_applied += 1
            return self._payload(info, {"metaobjectDefinition": d_, "userErrors": errors})

        def definition_update(_, info, id, definition, resetFieldOrder=False):
            d_, errors = shop_of(info).update_definition_input(
                id, {**definition, "resetFieldOrder": resetFieldOrder or definition.get("resetFieldOrder")})
            if d_ is not None:
                shop_of(info).stats.mutations_applied += 1
            return self._payload(info, {"metaobjectDefinition": d_, "userErrors": errors})

        def definition_delete(_, info, id):
            gid, errors = shop_of(info).delete_definition(id)
            if gid is not None:
                shop_of(info).stats.mutations_applied += 1
            return self._payload(info, {"deletedId": gid, "userErrors": errors})

        def status_of(inp):
            return ((inp.get("capabilities") or {}).get("publishable") or {}).get("status")

        def upsert(_, info, handle, metaobject):
            obj, errors = shop_of(info).write_metaobject(
                handle["type"], handle=handle["handle"], fields_input=metaobject.get("fields"), mode="upsert",
                new_handle=metaobject.get("handle") if metaobject.get("handle") != handle["handle"] else None,
                status=status_of(metaobject))
            return self._payload(info, {"metaobject": obj, "userErrors": errors})

        def create(_, info, metaobject):
            obj, errors = shop_of(info).write_metaobject(
                metaobject["type"], handle=metaobject.get("handle"), fields_input=metaobject.get("fields"),
                mode="create", new_handle=None, status=status_of(metaobject))
            return self._payload(info, {"metaobject": obj, "userErrors": errors})

        def update(_, info, id, metaobject):
            shop = shop_of(info)
            existing = shop.metaobject_by_id(id)
            if existing is None:
                return self._payload(info, {"metaobject": None,
                                            "userErrors": [_uerr(["id"], "Record not found", "RECORD_NOT_FOUND")]})
            new_handle = metaobject.get("handle")
            obj, errors = shop.write_metaobject(
                existing["type"], handle=existing["handle"], fields_input=metaobject.get("fields"), mode="update",
                existing=existing, new_handle=new_handle if new_handle != existing["handle"] else None,
                status=status_of(metaobject))
            return self._payload(info, {"metaobject": obj, "userErrors": errors})

        def delete(_, info, id):
            gid, errors = shop_of(info).delete_metaobject(id)
            return self._payload(info, {"deletedId": gid, "userErrors": errors})

        m["metaobjectDefinitionCreate"].resolve = definition_create
        m["metaobjectDefinitionUpdate"].resolve = definition_update
        m["metaobjectDefinitionDelete"].resolve = definition_delete
        m["metaobjectUpsert"].resolve = upsert
        m["metaobjectCreate"].resolve = create
        m["metaobjectUpdate"].resolve = update
        m["metaobjectDelete"].resolve = delete
        m["stagedUploadsCreate"].resolve = lambda _, info, input: self._staged_uploads(info, input)
        m["bulkOperationRunMutation"].resolve = (
            lambda _, info, mutation, stagedUploadPath, clientIdentifier=None, groupObjects=True:
            self._bulk_run(info, mutation, stagedUploadPath))
        m["bulkOperationRunQuery"].resolve = (
            lambda _, info, query, groupObjects=True: self._bulk_run_query(info, query))
        m["bulkOperationCancel"].resolve = lambda _, info, id: self._bulk_cancel(info, id)

    @staticmethod
    def _payload(info, payload: dict) -> dict:
        if payload.get("userErrors"):
            info.context["shop"].stats.user_errors += len(payload["userErrors"])
        return payload

    def _node(self, shop: ShopState, gid: str) -> dict | None:
        parsed = _parse_gid(gid)
        if parsed is None:
            raise GraphQLError(f"Invalid global id '{gid}'")
        kind = parsed[0]
        if kind == "Metaobject":
            return shop.metaobject_by_id(gid)
        if kind == "MetaobjectDefinition":
            return shop.definition_by_id(gid)
        if kind == "BulkOperation":
            return shop.bulk_operations.get(gid)
        return None

    def _paginate(self, info, items: list[dict], first: int | None = None, after: str | None = None,
                  last: int | None = None, before: str | None = None, reverse: bool = False) -> dict:
        """Cursor pagination over items in ascending `_num` (id) order; refunds what a short page did not use.
        Inside a bulk query there are no pages: every item, whatever first/last say (as on Shopify)."""
        if info.context.get("bulk_query"):
            page = items[::-1] if reverse else list(items)
            return {"nodes": page, "edges": [{"cursor": _cursor(it["_num"]), "node": it} for it in page],
                    "pageInfo": {"hasNextPage": False, "hasPreviousPage": False, "startCursor": None,
                                 "endCursor": None}}
        if first is None and last is None:
            raise GraphQLError("you must provide one of first or last")
        if first is not None and last is not None:
            raise GraphQLError("providing both first and last is not supported")
        size = first if first is not None else last
        if size < 0 or size > PAGE_LIMIT:
            raise GraphQLError(f"The page size must be between 0 and {PAGE_LIMIT}, got {size}.")
        if reverse:
            items = items[::-1]
        nums = [it["_num"] if not reverse else -it["_num"] for it in items]
        start, end = 0, len(items)
        if after is not None:
            n = _decode_cursor(after)
            start = bisect.bisect_right(nums, -n if reverse else n)
        if before is not None:
            n = _decode_cursor(before)
            end = bisect.bisect_left(nums, -n if reverse else n)
        window = items[start:max(start, end)]
        page = window[:size] if first is not None else window[max(0, len(window) - size):]
        if first is not None:
            has_next, has_prev = len(window) > size, start > 0
        else:
            has_next, has_prev = end < len(items), len(window) > size
        shortfall = size - len(page)
        if shortfall > 0:
            info.context["refund"] += shortfall * info.context["op_cost"].node_cost(info.field_nodes[0])
        cursors = [_cursor(it["_num"]) for it in page]
        return {
            "nodes": page,
            "edges": [{"cursor": c, "node": it} for c, it in zip(cursors, page)],
            "pageInfo": {"hasNextPage": has_next, "hasPreviousPage": has_prev,
                         "startCursor": cursors[0] if cursors else None,
                         "endCursor": cursors[-1] if cursors else None},
        }

    # ---------------------------------------------------------------- staged uploads and bulk
    def _staged_uploads(self, info, inputs: list[dict]) -> dict:
        shop: ShopState = info.context["shop"]
        base = info.context["base_url"]
        targets = []
        for inp in inputs:
            key = f"tmp/{shop.api_client_id}/bulk/{uuid.uuid4()}/{inp['filename']}"
            policy = secrets.token_urlsafe(24)
            shop.staged_files[key] = {"policy": policy, "data": None, "resource": inp["resource"],
                                      "success_status": "201"}
            url = f"{base}/staged/{shop.key}/upload"
            params = [  # Shopify's order for BULK_MUTATION_VARIABLES targets
                {"name": "key", "value": key},
                {"name": "Content-Type", "value": inp["mimeType"]},
                {"name": "success_action_status", "value": "201"},
                {"name": "acl", "value": "private"},
                {"name": "policy", "value": policy},
                {"name": "x-goog-credential", "value": "merchant-assets@shopify-tiers.iam.gserviceaccount.com/"
                                                       "20240101/auto/storage/goog4_request"},
                {"name": "x-goog-algorithm", "value": "GOOG4-RSA-SHA256"},
                {"name": "x-goog-date", "value": dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")},
                {"name": "x-goog-signature", "value": secrets.token_hex(32)},
            ]
            targets.append({"url": url, "resourceUrl": f"{url}/{key}" if inp["resource"] != "BULK_MUTATION_VARIABLES"
                            else None, "parameters": params})
        return {"stagedTargets": targets, "userErrors": []}

    def _bulk_run(self, info, mutation: str, path: str) -> dict:
        shop: ShopState = info.context["shop"]

        def refuse(code: str, message: str, field_path: list[str] | None = None) -> dict:
            shop.stats.user_errors += 1
            return {"bulkOperation": None, "userErrors": [{"field": field_path, "message": message, "code": code}]}

        if info.context["bulk"]:
            return refuse("INVALID_MUTATION", "bulkOperationRunMutation cannot run inside a bulk operation.")
        if shop.faults.bulk_start_error_next > 0:
            shop.faults.bulk_start_error_next -= 1
            shop.stats.faults_served += 1
            return refuse("INTERNAL_FILE_SERVER_ERROR", "Failed to start the bulk operation: internal file server "
                          "error. Try again.")
        running = [o for o in shop.bulk_operations.values()
                   if o["type"] == "MUTATION" and o["status"] in ("CREATED", "RUNNING", "CANCELING")]
        if running:
            return refuse("OPERATION_IN_PROGRESS", "A bulk mutation operation for this app and shop is already in "
                          f"progress: {running[0]['id']}.")
        staged = shop.staged_files.get(path)
        if staged is None or staged["data"] is None:
            return refuse("NO_SUCH_FILE", "The JSONL file could not be found. Try uploading the file again, and "
                          "check that you've entered the URL correctly for the stagedUploadPath mutation argument.",
                          ["stagedUploadPath"])
        doc = self._document(mutation)
        op = doc.operations.get(None)
        if doc.errors or op is None or not op.is_mutation or len(op.operation.selection_set.selections) != 1:
            detail = "; ".join(e["message"] for e in doc.errors) if doc.errors else \
                "the document must hold exactly one mutation with exactly one top-level field"
            return refuse("INVALID_MUTATION", f"Invalid bulk mutation: {detail}", ["mutation"])
        lines = []
        try:
            for raw in staged["data"].decode("utf-8").splitlines():
                if raw.strip():
                    value = json.loads(raw)
                    if not isinstance(value, dict):
                        raise ValueError("a line is not a JSON object")
                    lines.append(value)
        except ValueError as exc:
            return refuse("INVALID_STAGED_UPLOAD_FILE", f"The staged upload file is not valid JSONL: {exc}",
                          ["stagedUploadPath"])
        op_record = self._new_bulk_operation(shop, "MUTATION", mutation)
        shop.stats.bulk_operations += 1
        fail = _take_fault(shop, "bulk_fail_next")
        self._start_bulk_thread(self._bulk_worker, (shop, op_record, doc, lines, fail, info.context["base_url"]),
                                f"shopify-bulk-{op_record['_num']}")
        return {"bulkOperation": op_record, "userErrors": []}

    @staticmethod
    def _new_bulk_operation(shop: ShopState, op_type: str, query: str) -> dict:
        num = shop._next_num()
        op_record = {
            "__typename": "BulkOperation", "id": _gid("BulkOperation", num), "status": "CREATED",
            "errorCode": None, "type": op_type, "query": query, "createdAt": _now_iso(), "completedAt": None,
            "objectCount": 0, "rootObjectCount": 0, "fileSize": None, "url": None, "partialDataUrl": None,
            "_num": num, "_cancel": False,
        }
        shop.bulk_operations[op_record["id"]] = op_record
        return op_record

    @staticmethod
    def _finish_bulk_operation(shop: ShopState, op: dict, lines: list[dict], fail: bool, base: str) -> None:
        """Serve the result lines as JSONL and set the final status. No lines: COMPLETED with url null, as on
        Shopify; failed or canceled: what was done so far as partialDataUrl."""
        data = "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines).encode()
        name = f"bulk-{op['_num']}.jsonl"
        with shop.lock:
            if lines:
                shop.bulk_files[name] = data
            url = f"{base}/staged/{shop.key}/results/{name}" if lines else None
            op["completedAt"] = _now_iso()
            if op["_cancel"]:
                op["status"], op["partialDataUrl"] = "CANCELED", url
            elif fail:
                op["status"], op["errorCode"], op["partialDataUrl"] = "FAILED", shop.faults.bulk_fail_error_code, url
            else:
                op["status"], op["url"], op["fileSize"] = "COMPLETED", url, len(data) if lines else None

    def _start_bulk_thread(self, target: Callable[..., None], args: tuple, name: str) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        self._bulk_threads = [t for t in self._bulk_threads if t.is_alive()] + [thread]
        thread.start()

    def _bulk_worker(self, shop: ShopState, op: dict, doc: _Doc, lines: list[dict], fail: bool,
                     base: str) -> None:
        try:
            time.sleep(0.02)
            with shop.lock:
                op["status"] = "RUNNING"
            results: list[dict] = []
            stop_at = len(lines) // 2 if fail else len(lines)
            for i, variables in enumerate(lines):
                if op["_cancel"] or i >= stop_at:
                    break
                if shop.faults.bulk_line_latency_seconds > 0:
                    time.sleep(shop.faults.bulk_line_latency_seconds)
                line = self._execute_bulk_line(shop, doc, variables)
                line["__lineNumber"] = i
                with shop.lock:
                    results.append(line)
                    op["objectCount"] = len(results)
                    op["rootObjectCount"] = len(results)
            chunks = [results[i:i + BULK_RESULT_CHUNK] for i in range(0, len(results), BULK_RESULT_CHUNK)]
            ordered = [line for chunk in reversed(chunks) for line in chunk]
            self._finish_bulk_operation(shop, op, ordered, fail, base)
        except Exception:  # pragma: no cover - a sandbox bug must not leave the op RUNNING forever
            log.exception("bulk operation %s crashed", op["id"])
            with shop.lock:
                op["status"], op["errorCode"], op["completedAt"] = "FAILED", "INTERNAL_SERVER_ERROR", _now_iso()

    def _bulk_run_query(self, info, query: str) -> dict:
        """bulkOperationRunQuery: validate the query, then run it over every node in a background thread."""
        shop: ShopState = info.context["shop"]

        def refuse(code: str, message: str, field_path: list[str] | None = None) -> dict:
            shop.stats.user_errors += 1
            return {"bulkOperation": None, "userErrors": [{"field": field_path, "message": message, "code": code}]}

        if info.context["bulk"]:
            return refuse("INVALID", "bulkOperationRunQuery cannot run inside a bulk operation.")
        version = info.context.get("api_version") or ""
        limit = BULK_QUERY_CONCURRENCY["2026-01" if version == "unstable" or version >= "2026-01"
                                       else "before-2026-01"]
        running = [o for o in shop.bulk_operations.values() if o["type"] == "QUERY" and o["status"] in _ACTIVE_BULK]
        if len(running) >= limit:
            return refuse("OPERATION_IN_PROGRESS", "A bulk query operation for this app and shop is already in "
                          f"progress: {running[0]['id']}.")
        doc = self._document(query)
        op = doc.operations.get(None)
        if doc.errors:
            return refuse("INVALID", "Invalid bulk query: " + "; ".join(e["message"] for e in doc.errors), ["query"])
        if op is None or op.is_mutation:
            return refuse("INVALID", "Invalid bulk query: the document must hold exactly one query operation.",
                          ["query"])
        if len(op.operation.selection_set.selections) != 1:
            return refuse("INVALID", "Bulk queries must select exactly one top-level field.", ["query"])
        depths = _connection_depths(self.schema, self.schema.query_type, op.operation.selection_set, 0)
        if not depths:
            return refuse("INVALID", "Bulk queries must contain at least one connection.", ["query"])
        if len(depths) > BULK_QUERY_MAX_CONNECTIONS:
            return refuse("INVALID", f"Bulk queries cannot contain more than {BULK_QUERY_MAX_CONNECTIONS} "
                          "connections.", ["query"])
        if max(depths) > BULK_QUERY_MAX_DEPTH:
            return refuse("INVALID", f"Bulk queries cannot contain connections with a nesting depth greater than "
                          f"{BULK_QUERY_MAX_DEPTH}.", ["query"])
        op_record = self._new_bulk_operation(shop, "QUERY", query)
        shop.stats.bulk_queries += 1
        fail = _take_fault(shop, "bulk_query_fail_next")
        self._start_bulk_thread(self._bulk_query_worker, (shop, op_record, doc, fail, info.context["base_url"]),
                                f"shopify-bulk-query-{op_record['_num']}")
        return {"bulkOperation": op_record, "userErrors": []}

    def _bulk_query_worker(self, shop: ShopState, op: dict, doc: _Doc, fail: bool, base: str) -> None:
        try:
            time.sleep(0.02)
            with shop.lock:
                op["status"] = "RUNNING"
            context = {"shop": shop, "sandbox": self, "refund": 0, "base_url": base,
                       "op_cost": doc.operations[None], "bulk": True, "bulk_query": True}
            with shop.lock:  # one consistent snapshot of the shop, as a query sees it
                result = execute(self.schema, doc.document, context_value=context)
            if result.errors or result.data is None:
                raise RuntimeError("; ".join(str(e) for e in result.errors or ()) or "no data")
            objects = list(_bulk_query_lines(result.data))
            stop_at = len(objects) // 2 if fail else len(objects)
            written: list[dict] = []
            for i, line in enumerate(objects):
                if op["_cancel"] or i >= stop_at:
                    break
                if shop.faults.bulk_line_latency_seconds > 0:
                    time.sleep(shop.faults.bulk_line_latency_seconds)
                written.append(line)
                with shop.lock:
                    op["objectCount"] = len(written)
                    if "__parentId" not in line:
                        op["rootObjectCount"] += 1
            self._finish_bulk_operation(shop, op, written, fail, base)
        except Exception:  # a sandbox bug (or a resolver error) must not leave the op RUNNING forever
            log.exception("bulk query %s crashed", op["id"])
            with shop.lock:
                op["status"], op["errorCode"], op["completedAt"] = "FAILED", "INTERNAL_SERVER_ERROR", _now_iso()

    def _bulk_cancel(self, info, gid: str) -> dict:
        shop: ShopState = info.context["shop"]
        op = shop.bulk_operations.get(gid)
        if op is None:
            return {"bulkOperation": None, "userErrors": [{"field": ["id"], "message": "Bulk operation does not "
                                                           "exist", "code": None}]}
        if op["status"] not in ("CREATED", "RUNNING"):
            return {"bulkOperation": op, "userErrors": [{"field": None, "message": "A bulk operation cannot be "
                                                         f"canceled when it is {op['status'].lower()}", "code": None}]}
        op["_cancel"] = True
        op["status"] = "CANCELING"
        return {"bulkOperation": op, "userErrors": []}


def _connection_depths(schema, parent_type, selection_set, depth: int) -> list[int]:
    """The nesting depth of every connection field a selection reaches (1 = a top-level connection)."""
    out: list[int] = []
    if selection_set is None:
        return out
    for sel in selection_set.selections:
        if isinstance(sel, InlineFragmentNode):
            cond = schema.get_type(sel.type_condition.name.value) if sel.type_condition else parent_type
            out += _connection_depths(schema, cond, sel.selection_set, depth)
            continue
        if not isinstance(sel, FieldNode) or sel.name.value.startswith("__"):
            continue
        fdef = (getattr(parent_type, "fields", None) or {}).get(sel.name.value)
        if fdef is None:
            continue
        named = get_named_type(fdef.type)
        inner = depth
        if named.name.endswith("Connection"):
            inner = depth + 1
            out.append(inner)
        out += _connection_depths(schema, named, sel.selection_set, inner)
    return out


def _is_connection_value(value: Any) -> bool:
    return (isinstance(value, dict) and bool(value) and set(value) <= {"nodes", "edges", "pageInfo"}
            and ("nodes" in value or "edges" in value))


def _bulk_query_lines(data: dict[str, Any]):
    """Shopify's bulk query output: one JSON object per node, connections flattened away; a node of a nested
    connection is its own line with `__parentId` (its parent's id), after its parent."""

    def emit(conn: dict, parent_id: str | None):
        nodes = conn.get("nodes")
        if nodes is None:
            nodes = [edge.get("node") for edge in conn.get("edges") or [] if isinstance(edge, dict)]
        for node in nodes:
            if not isinstance(node, dict):
                continue
            line = {k: v for k, v in node.items() if not _is_connection_value(v)}
            if parent_id is not None:
                line["__parentId"] = parent_id
            yield line
            for v in node.values():
                if _is_connection_value(v):
                    yield from emit(v, node.get("id"))

    for value in data.values():
        if _is_connection_value(value):
            yield from emit(value, None)


def _json_value(type_name: str, value: str | None) -> Any:
    if value is None:
        return None
    try:
        if type_name == "json" or type_name.startswith("list."):
            return json.loads(value)
        if type_name == "boolean":
            return value == "true"
        if type_name == "number_integer":
            return int(value)
        if type_name == "number_decimal":
            return value
    except ValueError:
        return value
    return value


def _format_error(err: GraphQLError) -> dict[str, Any]:
    out = err.formatted
    ext = dict(out.get("extensions") or {})
    if "code" not in ext and err.path is None and err.nodes:
        ext.setdefault("code", "GRAPHQL_VALIDATION_FAILED")
    if ext:
        out["extensions"] = ext
    return out


_STATUS_BODIES = {
    401: INVALID_TOKEN_MESSAGE,
    402: "Unavailable Shop",
    403: "[API] This action requires merchant approval for read_metaobjects scope.",
    404: "Not Found",
    423: "Locked",
}


def _status_response(status: int) -> Response:
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    return JSONResponse({"errors": _STATUS_BODIES.get(status, phrase)}, status_code=status)


def _server_error_response(status: int, *, html: bool) -> Response:
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    if html:
        return PlainTextResponse(
            f"<!DOCTYPE html><html><head><title>{phrase}</title></head><body><h1>{status} {phrase}</h1>"
            "<p>There was a problem loading this website. Please try again.</p></body></html>",
            status_code=status, media_type="text/html")
    return JSONResponse({"errors": phrase}, status_code=status)


def _xml_error(status: int, code: str, message: str) -> Response:
    return Response(f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{message}</Message>'
                    "</Error>", status_code=status, media_type="application/xml")

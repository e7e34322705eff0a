"""Shopify bulk operations: large upserts as one bulk mutation (staged upload of a JSONL file, run, poll, read the
result file) and large reads as one bulk query (run, poll, download one JSON object per node).

`run_bulk_upsert` never loses an item: every item ends either with a result (success, its userErrors, or a clear
failure when its line is missing from a COMPLETED result) or in `fallback`, which the caller writes through batched
upserts (when the operation could not start, or ended FAILED / CANCELED / EXPIRED / timed out).
`run_bulk_query` gives the objects of a COMPLETED query or nothing (with the reason): a read that deletes depend on
is used whole or not at all, never from a partial file.
The staged-upload POST and the result downloads go to another host (cloud storage): they never carry the token.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

import httpx

from . import queries as q
from .errors import ShopifyError, ShopifyGraphQLError
from .models import UpsertItem, UserError, WriteResult
from .transport import ShopifyConfigError, ShopifyTransport, check_url

log = logging.getLogger(__name__)

FINAL_STATUSES = frozenset({"COMPLETED", "FAILED", "CANCELED", "EXPIRED"})
MAX_BULK_FILE_BYTES = 100 * 1000 * 1000  # Shopify's limit for a bulk mutation's variables file
SIDE_TRANSFER_ATTEMPTS = 4  # upload / download tries (these hosts are not the Admin API: a short retry is enough)


@dataclass
class BulkOutcome:
    results: dict[int, WriteResult] = field(default_factory=dict)  # item index -> final result
    fallback: list[int] = field(default_factory=list)  # item indexes to write another way
    reason: str | None = None  # why there is a fallback
    operation_id: str | None = None
    status: str | None = None


@dataclass
class BulkQueryOutcome:
    objects: list[dict] | None  # every line of a COMPLETED query's result, in file order; None: not usable
    reason: str | None = None  # why `objects` is None
    operation_id: str | None = None
    status: str | None = None


class _BulkUnusable(Exception):
    """The bulk path cannot be used for this write; the message says why."""


def jsonl_for(metaobject_type: str, items: list[UpsertItem]) -> bytes:
    lines = []
    for item in items:
        line = {
            "handle": {"type": metaobject_type, "handle": item.handle},
            "metaobject": {"handle": item.handle, "fields": [{"key": k, "value": v} for k, v in item.fields.items()]},
        }
        lines.append(json.dumps(line, ensure_ascii=False, separators=(",", ":")))
    return ("\n".join(lines) + "\n").encode("utf-8")


def run_bulk_upsert(
    transport: ShopifyTransport,
    metaobject_type: str,
    items: list[UpsertItem],
    *,
    poll_seconds: float = 1.0,
    max_wait_seconds: float = 1800.0,
) -> BulkOutcome:
    """Upsert `items` in one bulk operation. Auth / shop-unavailable / retries-exhausted errors propagate."""
    store = transport.store
    everything = list(range(len(items)))
    try:
        staged_path = _stage(transport, metaobject_type, items)
        data = transport.execute(
            q.BULK_RUN_MUTATION,
            {"mutation": q.BULK_UPSERT_MUTATION, "stagedUploadPath": staged_path},
            requested_cost=q.BULK_SETUP_COST,
        )
    except (_BulkUnusable, ShopifyGraphQLError, ShopifyConfigError) as exc:
        return BulkOutcome(fallback=everything, reason=f"could not start: {exc}")
    payload = data.get("bulkOperationRunMutation") or {}
    errors = payload.get("userErrors") or []
    operation = payload.get("bulkOperation") or {}
    if errors or not operation.get("id"):
        text = "; ".join(str(e.get("message")) for e in errors if isinstance(e, dict)) or "no operation id"
        return BulkOutcome(fallback=everything, reason=f"could not start: {text}")
    op_id = operation["id"]
    transport.stats.bulk_operations += 1
    log.info("store %r: bulk upsert of %d %s started as %s", store, len(items), metaobject_type, op_id)

    op, problem = _wait(transport, op_id, operation, poll_seconds, max_wait_seconds)
    status = op.get("status")
    if problem:
        return BulkOutcome(fallback=everything, operation_id=op_id, status=status, reason=problem)

    outcome = BulkOutcome(operation_id=op_id, status=status)
    if status == "COMPLETED":
        try:
            lines = _download(transport, op["url"]) if op.get("url") else {}
        except _BulkUnusable as exc:
            # The writes most likely happened, but without the result file nothing is proven: upserts are keyed by
            # handle, so writing them again is safe.
            return BulkOutcome(fallback=everything, operation_id=op_id, status=status,
                               reason=f"{op_id} completed but its result could not be read: {exc}")
        for i, item in enumerate(items):
            line = lines.get(i)
            outcome.results[i] = (
                _line_result(item.handle, line)
                if line is not None
                else WriteResult(
                    key=item.handle, ok=False,
                    errors=(UserError("BULK_RESULT_MISSING",
                                      f"store {store!r}: bulk operation {op_id} completed without a result line "
                                      f"for {item.handle} (line {i})"),),
                )
            )
        return outcome

    # FAILED / CANCELED / EXPIRED: keep what the partial file proves written, write the rest another way.
    partial: dict[int, dict] = {}
    if op.get("partialDataUrl"):
        try:
            partial = _download(transport, op["partialDataUrl"])
        except _BulkUnusable as exc:
            log.warning("store %r: could not read the partial result of %s: %s", store, op_id, exc)
    for i, item in enumerate(items):
        line = partial.get(i)
        result = _line_result(item.handle, line) if line is not None else None
        if result is not None and result.ok:
            outcome.results[i] = result
        else:
            outcome.fallback.append(i)
    code = f" ({op.get('errorCode')})" if op.get("errorCode") else ""
    outcome.reason = f"{op_id} ended {status}{code}"
    return outcome


def run_bulk_query(
    transport: ShopifyTransport,
    query: str,
    *,
    poll_seconds: float = 1.0,
    max_wait_seconds: float = 600.0,
) -> BulkQueryOutcome:
    """Run `query` (a connection query, no variables) as one bulk query and return every object of its result.
    Auth / shop-unavailable / retries-exhausted errors propagate; anything else that keeps the result from being
    complete (cannot start, FAILED / CANCELED / EXPIRED, outlasting `max_wait_seconds`, an unreadable file) is an
    outcome without objects, with the reason."""
    try:
        data = transport.execute(q.BULK_RUN_QUERY, {"query": query}, requested_cost=q.BULK_SETUP_COST)
    except (ShopifyGraphQLError, ShopifyConfigError) as exc:
        return BulkQueryOutcome(None, reason=f"could not start: {exc}")
    payload = data.get("bulkOperationRunQuery") or {}
    errors = payload.get("userErrors") or []
    operation = payload.get("bulkOperation") or {}
    if errors or not operation.get("id"):
        text = "; ".join(
            f"{e.get('message')}" + (f" ({e['code']})" if e.get("code") else "") for e in errors if isinstance(e, dict)
        ) or "no operation id"
        return BulkQueryOutcome(None, reason=f"could not start: {text}")
    op_id = operation["id"]
    transport.stats.bulk_queries += 1
    log.info("store %r: bulk query started as %s", transport.store, op_id)
    op, problem = _wait(transport, op_id, operation, poll_seconds, max_wait_seconds)
    status = op.get("status")
    if problem:
        return BulkQueryOutcome(None, reason=problem, operation_id=op_id, status=status)
    if status != "COMPLETED":
        code = f" ({op.get('errorCode')})" if op.get("errorCode") else ""
        return BulkQueryOutcome(None, reason=f"{op_id} ended {status}{code}", operation_id=op_id, status=status)
    if not op.get("url"):  # Shopify gives no file when the query found nothing
        return BulkQueryOutcome([], operation_id=op_id, status=status)
    try:
        objects = []
        for number, raw in enumerate(_fetch(transport, op["url"]).splitlines()):
            if not raw.strip():
                continue
            try:
                value = json.loads(raw)
            except ValueError:
                value = None
            if not isinstance(value, dict):
                raise _BulkUnusable(f"line {number} of the result is not a JSON object")
            objects.append(value)
    except _BulkUnusable as exc:
        return BulkQueryOutcome(None, reason=f"{op_id} completed but its result could not be read: {exc}",
                                operation_id=op_id, status=status)
    return BulkQueryOutcome(objects, operation_id=op_id, status=status)


def _wait(transport: ShopifyTransport, op_id: str, operation: dict, poll_seconds: float,
          max_wait_seconds: float) -> tuple[dict, str | None]:
    """Poll until the operation reaches a final status: (its last state, None), or (last state, why not) when it
    outlasted `max_wait_seconds` (it is then canceled) or Shopify no longer knows it."""
    deadline = transport.clock() + max_wait_seconds
    op: dict[str, Any] = operation
    status = op.get("status")
    while status not in FINAL_STATUSES:
        if transport.clock() >= deadline:
            _cancel(transport, op_id)
            return op, f"{op_id} did not finish within {max_wait_seconds:g}s (last status {status})"
        transport.sleep(poll_seconds)
        op = (transport.execute(q.BULK_OPERATION, {"id": op_id}, requested_cost=2) or {}).get("bulkOperation") or {}
        status = op.get("status")
        if status is None:
            return op, f"{op_id} is unknown to Shopify"
    return op, None


def _stage(transport: ShopifyTransport, metaobject_type: str, items: list[UpsertItem]) -> str:
    filename = f"{metaobject_type}-upserts.jsonl"
    data = transport.execute(
        q.STAGED_UPLOADS_CREATE,
        {"input": [{"resource": "BULK_MUTATION_VARIABLES", "filename": filename,
                    "mimeType": "text/jsonl", "httpMethod": "POST"}]},
        requested_cost=q.BULK_SETUP_COST,
    )
    payload = data.get("stagedUploadsCreate") or {}
    errors = payload.get("userErrors") or []
    targets = payload.get("stagedTargets") or []
    if errors or not targets:
        text = "; ".join(str(e.get("message")) for e in errors if isinstance(e, dict)) or "no staged target"
        raise _BulkUnusable(f"stagedUploadsCreate: {text}")
    target = targets[0]
    params = [(p["name"], p["value"]) for p in target.get("parameters") or [] if isinstance(p, dict)]
    key = next((value for name, value in params if name == "key"), None)
    if not key or not target.get("url"):
        raise _BulkUnusable("stagedUploadsCreate returned no url or no `key` parameter")
    url = check_url(transport.store, target["url"], "staged upload url")
    body = jsonl_for(metaobject_type, items)
    if len(body) > MAX_BULK_FILE_BYTES:
        raise _BulkUnusable(f"the JSONL file would be {len(body) / 1e6:.0f} MB, over Shopify's 100 MB limit")
    # Every returned parameter first (their order matters to the storage host), then the file. No token here.
    response = _side_transfer(
        transport, "upload",
        lambda: transport.http.post(url, data=dict(params), files={"file": (filename, body, "text/jsonl")}),
    )
    if response.status_code >= 300:
        raise _BulkUnusable(f"staged upload answered HTTP {response.status_code}")
    return key


def _fetch(transport: ShopifyTransport, url: str) -> str:
    """GET a bulk result file (never with the token)."""
    try:
        checked = check_url(transport.store, url, "bulk result url")
    except ShopifyConfigError as exc:
        raise _BulkUnusable(str(exc)) from None
    response = _side_transfer(transport, "download", lambda: transport.http.get(checked))
    if response.status_code != 200:
        raise _BulkUnusable(f"bulk result download answered HTTP {response.status_code}")
    return response.text


def _download(transport: ShopifyTransport, url: str) -> dict[int, dict]:
    lines: dict[int, dict] = {}
    for raw in _fetch(transport, url).splitlines():
        raw = raw.strip()
        if not raw:
            continue
        try:
            line = json.loads(raw)
            number = int(line["__lineNumber"])
        except (ValueError, KeyError, TypeError):
            log.warning("store %r: skipping an unreadable bulk result line", transport.store)
            continue
        lines[number] = line
    return lines


def _side_transfer(transport: ShopifyTransport, what: str, send) -> httpx.Response:
    last = ""
    for attempt in range(1, SIDE_TRANSFER_ATTEMPTS + 1):
        try:
            response = send()
        except httpx.TransportError as exc:
            last = type(exc).__name__
        else:
            if response.status_code < 500 and response.status_code != 429:
                return response
            last = f"HTTP {response.status_code}"
        if attempt < SIDE_TRANSFER_ATTEMPTS:
            transport.sleep(transport._backoff(attempt))
    raise _BulkUnusable(f"bulk {what} kept failing ({last})")


def _line_result(handle: str, line: dict) -> WriteResult:
    from .metaobjects import user_errors  # local: metaobjects imports this module

    if line.get("errors"):
        messages = "; ".join(str(e.get("message")) for e in line["errors"] if isinstance(e, dict))
        return WriteResult(key=handle, ok=False, errors=(UserError("BULK_LINE_ERROR", messages or "error"),))
    payload = ((line.get("data") or {}).get("metaobjectUpsert")) or {}
    errors = user_errors(payload.get("userErrors"))
    mo = payload.get("metaobject") or {}
    if errors:
        return WriteResult(key=handle, ok=False, metaobject_id=mo.get("id"), errors=errors)
    if not mo.get("id"):
        return WriteResult(key=handle, ok=False, errors=(UserError("NO_RESULT", f"no metaobject for {handle}"),))
    return WriteResult(key=handle, ok=True, metaobject_id=mo["id"])


def _cancel(transport: ShopifyTransport, op_id: str) -> None:
    try:
        transport.execute(q.BULK_CANCEL, {"id": op_id}, requested_cost=q.BULK_SETUP_COST)
    except ShopifyError as exc:  # best effort: the fallback writes are idempotent anyway
        log.warning("store %r: could not cancel %s: %s", transport.store, op_id, exc)

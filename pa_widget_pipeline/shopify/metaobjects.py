"""Metaobject operations on one store: read definitions and metaobjects, write them in cost-sized batches.

Writes come back as one WriteResult per input item, in input order. A userError fails only its own item.
A store-level failure (auth, shop unavailable, retries exhausted, a GraphQL bug) is raised; the exception then
carries `partial_results` (the WriteResults of the items finished before it, in input order, None for the rest)
so a caller can still report what was written.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Sequence

import httpx

from ..sync.contract import ContractField
from . import queries as q
from .bulk import run_bulk_query, run_bulk_upsert
from .errors import ShopifyError, ShopifyGraphQLError, ShopifyMaxCostExceeded
from .models import ExistingMetaobject, TransportStats, UpsertItem, UserError, WriteResult
from .transport import ShopifyTransport

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


class ShopifyDefinitionError(ShopifyError):
    """A metaobject definition could not be created or changed (Shopify answered with userErrors)."""

    code = "DEFINITION_ERROR"

    def __init__(self, store: str, message: str, user_errors: Sequence[UserError] = ()):
        self.user_errors = tuple(user_errors)
        super().__init__(store, message)


def user_errors(raw: Any) -> tuple[UserError, ...]:
    out = []
    for e in raw or []:
        if not isinstance(e, dict):
            continue
        field = e.get("field") or ()
        out.append(
            UserError(
                code=e.get("code"),
                message=str(e.get("message") or "no message"),
                field=tuple(str(f) for f in field) if isinstance(field, (list, tuple)) else (str(field),),
            )
        )
    return tuple(out)


def describe_user_errors(errors: Sequence[UserError]) -> str:
    return "; ".join(
        f"{'.'.join(e.field) + ': ' if e.field else ''}{e.message}{f' ({e.code})' if e.code else ''}" for e in errors
    )


def failed(key: str, code: str, message: str) -> WriteResult:
    return WriteResult(key=key, ok=False, errors=(UserError(code=code, message=message),))


class MetaobjectClient:
    def __init__(
        self,
        transport: ShopifyTransport,
        *,
        bulk_threshold: int | None = 300,
        bulk_poll_seconds: float = 1.0,
        bulk_max_wait_seconds: float = 1800.0,
        bulk_only_past_bucket: bool = True,
        bulk_read_threshold: int | None = 1000,
        bulk_read_max_wait_seconds: float | None = None,
    ):
        self.transport = transport
        self.store = transport.store
        self.bulk_threshold = bulk_threshold
        self.bulk_poll_seconds = bulk_poll_seconds
        self.bulk_max_wait_seconds = bulk_max_wait_seconds
        self.bulk_only_past_bucket = bulk_only_past_bucket
        # Reads: a bulk query past this many metaobjects of a type when paging them would cost more than the bucket
        # holds (None: always page). Wait for it at most this long (None: twice what paging would take, >= 60 s).
        self.bulk_read_threshold = bulk_read_threshold
        self.bulk_read_max_wait_seconds = bulk_read_max_wait_seconds
        # metaobjectsCount of a type from the definition just read; list_metaobjects takes it (once) instead of
        # asking again. It only picks the read path: both paths read everything.
        self._counts: dict[str, int] = {}
        # Learned from answers (requestedQueryCost / items in the document); start from the documented rules.
        self._item_cost = {"upsert": q.UPSERT_ITEM_COST, "delete": q.DELETE_ITEM_COST}

    @property
    def stats(self) -> TransportStats:
        return self.transport.stats

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> "MetaobjectClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------- reading
    def definition_by_type(self, metaobject_type: str) -> dict | None:
        data = self.transport.execute(
            q.DEFINITION_BY_TYPE, {"type": metaobject_type}, requested_cost=q.DEFINITION_BY_TYPE_COST
        )
        definition = data.get("metaobjectDefinitionByType")
        count = (definition or {}).get("metaobjectsCount")
        if isinstance(count, int) and not isinstance(count, bool):
            self._counts[metaobject_type] = count
        else:
            self._counts.pop(metaobject_type, None)
        return definition

    def metaobjects_count(self, metaobject_type: str) -> int:
        """How many metaobjects the type holds (0 without a definition): one point, one request."""
        data = self.transport.execute(
            q.METAOBJECTS_COUNT, {"type": metaobject_type}, requested_cost=q.METAOBJECTS_COUNT_COST
        )
        count = (data.get("metaobjectDefinitionByType") or {}).get("metaobjectsCount")
        return count if isinstance(count, int) and not isinstance(count, bool) else 0

    def list_metaobjects(self, metaobject_type: str) -> list[ExistingMetaobject]:
        """Every metaobject of the type: one bulk query when paging them would cost more than the bucket holds
        (see `_bulk_read_pays_off`), else 250 a page. A bulk read that cannot start, fails or outlasts its wait
        falls back to pages (logged, `stats.bulk_read_fallbacks`)."""
        if self.bulk_read_threshold is not None:
            count = self._counts.pop(metaobject_type, None)
            if count is None:
                count = self.metaobjects_count(metaobject_type)
            if self._bulk_read_pays_off(count):
                existing = self._list_in_bulk(metaobject_type, count)
                if existing is not None:
                    return existing
        return self._list_paged(metaobject_type)

    def _bulk_read_pays_off(self, count: int) -> bool:
        """Bulk when the type holds more than `bulk_read_threshold` metaobjects and paging them would cost more
        than the bucket holds right now: a bulk query is not charged to the
        bucket, but its start, polling and download take a second or more that a read from a full bucket
        does not need."""
        if self.bulk_read_threshold is None or count <= self.bulk_read_threshold:
            return False
        available = self.transport.bucket_available
        return available is None or count * q.LIST_NODE_COST > available

    def _points_before_bulk_could_finish(self) -> float | None:
        """What plain requests can spend before a bulk operation could be done: the bucket now plus what it
        restores during one status poll (a bulk operation takes at least that). None before any answer."""
        available = self.transport.bucket_available
        if available is None:
            return None
        return available + (self.transport.bucket_restore_rate or 0.0) * self.bulk_poll_seconds

    def _list_in_bulk(self, metaobject_type: str, count: int) -> list[ExistingMetaobject] | None:
        wait = self.bulk_read_max_wait_seconds
        if wait is None:
            rate = self.transport.bucket_restore_rate or 0.0
            paged_seconds = count * q.LIST_NODE_COST / rate if rate > 0 else 0.0
            wait = max(60.0, 2.0 * paged_seconds)
        outcome = run_bulk_query(
            self.transport, q.bulk_list_query(metaobject_type),
            poll_seconds=self.bulk_poll_seconds, max_wait_seconds=wait,
        )
        reason = outcome.reason
        out: list[ExistingMetaobject] = []
        if outcome.objects is not None:
            for number, obj in enumerate(outcome.objects):
                if "__parentId" in obj:
                    continue  # a nested connection's node: this query has none
                mid, handle = obj.get("id"), obj.get("handle")
                if not isinstance(mid, str) or not isinstance(handle, str):
                    reason = f"{outcome.operation_id} completed but line {number} has no id or handle"
                    break
                sync_hash = obj.get("sync_hash")
                out.append(ExistingMetaobject(
                    id=mid, handle=handle, sync_hash=sync_hash.get("value") if isinstance(sync_hash, dict) else None,
                    updated_at=obj.get("updatedAt"),
                ))
            else:
                log.info("store %r: read %d %s metaobject(s) in bulk (%s)", self.store, len(out), metaobject_type,
                         outcome.operation_id)
                return out
        self.stats.bulk_read_fallbacks += 1
        log.warning(
            "store %r: bulk read of %s %s; reading its %d metaobject(s) page by page instead",
            self.store, metaobject_type, reason, count,
        )
        return None

    def _list_paged(self, metaobject_type: str) -> list[ExistingMetaobject]:
        """Every metaobject of the type, 250 a page (fewer while the bucket is unknown or small)."""
        out: list[ExistingMetaobject] = []
        after: str | None = None
        cap = q.LIST_PAGE_SIZE
        while True:
            ceiling = self.transport.cost_ceiling(fraction=0.5)
            first = max(1, min(cap, int((ceiling - 3) // 2)))
            try:
                data = self.transport.execute(
                    q.LIST_METAOBJECTS,
                    {"type": metaobject_type, "first": first, "after": after},
                    requested_cost=q.list_cost(first),
                )
            except ShopifyMaxCostExceeded:
                if first <= 1:
                    raise
                cap = max(1, first // 2)
                log.info("store %r: listing %s: page of %d too costly, trying %d", self.store, metaobject_type, first, cap)
                continue
            conn = data.get("metaobjects") or {}
            for node in conn.get("nodes") or []:
                sync_hash = (node.get("sync_hash") or {}).get("value")
                out.append(
                    ExistingMetaobject(
                        id=node["id"], handle=node["handle"], sync_hash=sync_hash, updated_at=node.get("updatedAt")
                    )
                )
            page = conn.get("pageInfo") or {}
            if not page.get("hasNextPage"):
                return out
            cursor = page.get("endCursor")
            if not cursor or cursor == after:
                raise self.transport.error(
                    ShopifyGraphQLError, f"listing {metaobject_type}: hasNextPage without a new endCursor"
                )
            after = cursor

    # ------------------------------------------------------------- writing
    def _bulk_pays_off(self, count: int) -> bool:
        """Bulk when the writes are over the threshold and cost more than batched upserts could spend before a
        bulk operation could be done. Below that, batched upserts finish sooner and skip bulk's staging and
        polling (measured: on a full Plus bucket, 2,000 batched writes beat bulk; 5,000 take 22x longer)."""
        if self.bulk_threshold is None or count <= self.bulk_threshold:
            return False
        if not self.bulk_only_past_bucket:
            return True
        budget = self._points_before_bulk_could_finish()
        return budget is None or count * self._item_cost["upsert"] > budget

    def upsert_metaobjects(
        self, metaobject_type: str, items: list[UpsertItem], *, on_progress: Progress | None = None
    ) -> list[WriteResult]:
        total = len(items)
        results: list[WriteResult | None] = [None] * total
        todo: list[int] = []
        for i, item in enumerate(items):
            problem = self._check_item(metaobject_type, item)
            if problem:
                results[i] = problem
            else:
                todo.append(i)
        done = total - len(todo)
        progress = _Progress(on_progress, total, done)

        if self._bulk_pays_off(len(todo)):
            outcome = run_bulk_upsert(
                self.transport,
                metaobject_type,
                [items[i] for i in todo],
                poll_seconds=self.bulk_poll_seconds,
                max_wait_seconds=self.bulk_max_wait_seconds,
            )
            for j, res in outcome.results.items():
                results[todo[j]] = res
            progress.add(len(outcome.results))
            if outcome.fallback:
                self.stats.bulk_fallbacks += 1
                log.warning(
                    "store %r: bulk upsert of %s %s; writing %d item(s) through batched upserts instead",
                    self.store, metaobject_type, outcome.reason, len(outcome.fallback),
                )
            todo = [todo[j] for j in outcome.fallback]

        def send(batch: list[int]) -> list[WriteResult]:
            variables: dict[str, Any] = {}
            for j, i in enumerate(batch):
                item = items[i]
                variables[f"h{j}"] = {"type": metaobject_type, "handle": item.handle}
                variables[f"m{j}"] = {
                    "handle": item.handle,
                    "fields": [{"key": k, "value": v} for k, v in item.fields.items()],
                }
            data = self.transport.execute(
                q.upsert_document(len(batch)), variables, requested_cost=self._item_cost["upsert"] * len(batch)
            )
            out = []
            for j, i in enumerate(batch):
                out.append(self._upsert_result(items[i].handle, data.get(f"u{j}")))
            return out

        self._batched("upsert", todo, [it.handle for it in items], send, results, progress)
        return results  # type: ignore[return-value]

    def delete_metaobjects(self, ids: list[str], *, on_progress: Progress | None = None) -> list[WriteResult]:
        total = len(ids)
        results: list[WriteResult | None] = [None] * total
        todo: list[int] = []
        for i, mid in enumerate(ids):
            if not isinstance(mid, str) or not mid.startswith("gid://"):
                results[i] = failed(str(mid), "INVALID_INPUT", f"store {self.store!r}: {mid!r} is not a metaobject id")
            else:
                todo.append(i)
        progress = _Progress(on_progress, total, total - len(todo))

        def send(batch: list[int]) -> list[WriteResult]:
            variables = {f"id{j}": ids[i] for j, i in enumerate(batch)}
            data = self.transport.execute(
                q.delete_document(len(batch)), variables, requested_cost=self._item_cost["delete"] * len(batch)
            )
            return [self._delete_result(ids[i], data.get(f"d{j}")) for j, i in enumerate(batch)]

        self._batched("delete", todo, list(ids), send, results, progress)
        return results  # type: ignore[return-value]

    # ------------------------------------------------------------- definitions
    def create_definition(self, metaobject_type: str, name: str, fields: Sequence[ContractField]) -> dict:
        keys = [f.key for f in fields]
        definition: dict[str, Any] = {
            "type": metaobject_type,
            "name": name,
            "fieldDefinitions": [_field_input(f) for f in fields],
        }
        if "name" in keys:
            definition["displayNameKey"] = "name"
        data = self.transport.execute(
            q.CREATE_DEFINITION, {"definition": definition}, requested_cost=q.DEFINITION_MUTATION_COST
        )
        payload = data.get("metaobjectDefinitionCreate") or {}
        errors = user_errors(payload.get("userErrors"))
        if errors:
            if any(e.code == "TAKEN" for e in errors):
                # A retry after a dropped connection lands here when the first try was applied: if what exists
                # has every field we asked for, the goal state holds.
                existing = self.definition_by_type(metaobject_type)
                have = {f.get("key") for f in (existing or {}).get("fieldDefinitions") or []}
                if existing and set(keys) <= have:
                    log.info("store %r: definition %s already exists with every field", self.store, metaobject_type)
                    return existing
            raise ShopifyDefinitionError(
                self.store,
                f"could not create metaobject definition {metaobject_type!r}: {describe_user_errors(errors)}",
                errors,
            )
        created = payload.get("metaobjectDefinition")
        if not created:
            raise ShopifyDefinitionError(
                self.store, f"creating metaobject definition {metaobject_type!r} returned no definition"
            )
        return created

    def add_definition_fields(self, definition_id: str, fields: Sequence[ContractField]) -> dict:
        if not fields:
            raise ShopifyDefinitionError(self.store, f"no fields to add to metaobject definition {definition_id}")
        definition = {"fieldDefinitions": [{"create": _field_input(f)} for f in fields]}
        data = self.transport.execute(
            q.UPDATE_DEFINITION, {"id": definition_id, "definition": definition},
            requested_cost=q.DEFINITION_MUTATION_COST,
        )
        payload = data.get("metaobjectDefinitionUpdate") or {}
        errors = user_errors(payload.get("userErrors"))
        if errors:
            raise ShopifyDefinitionError(
                self.store,
                f"could not add fields {', '.join(f.key for f in fields)} to metaobject definition "
                f"{definition_id}: {describe_user_errors(errors)}",
                errors,
            )
        updated = payload.get("metaobjectDefinition")
        if not updated:
            raise ShopifyDefinitionError(self.store, f"updating metaobject definition {definition_id} returned nothing")
        return updated

    # ------------------------------------------------------------- internals
    def _check_item(self, metaobject_type: str, item: UpsertItem) -> WriteResult | None:
        handle = getattr(item, "handle", None)
        if not isinstance(handle, str) or not handle:
            return failed(str(handle), "INVALID_INPUT", f"store {self.store!r}, {metaobject_type}: empty handle")
        for key, value in (item.fields or {}).items():
            if not isinstance(value, str):
                return failed(
                    handle,
                    "INVALID_INPUT",
                    f"store {self.store!r}, {metaobject_type} {handle}: field {key!r} is "
                    f"{type(value).__name__}, Shopify takes strings",
                )
        return None

    def _batch_size(self, kind: str, cap: int) -> int:
        per_item = max(1.0, self._item_cost[kind])
        return max(1, min(cap, q.MAX_ITEMS_PER_DOCUMENT, int(self.transport.cost_ceiling() // per_item)))

    def _batched(
        self,
        kind: str,
        todo: list[int],
        keys: list[str],
        send: Callable[[list[int]], list[WriteResult]],
        results: list[WriteResult | None],
        progress: "_Progress",
    ) -> None:
        cap = q.MAX_ITEMS_PER_DOCUMENT
        pos = 0
        while pos < len(todo):
            batch = todo[pos : pos + self._batch_size(kind, cap)]
            try:
                batch_results = send(batch)
            except ShopifyMaxCostExceeded as exc:
                if len(batch) == 1:
                    results[batch[0]] = failed(keys[batch[0]], "MAX_COST_EXCEEDED", str(exc))
                    pos += 1
                    progress.add(1)
                    continue
                cap = max(1, len(batch) // 2)
                log.info("store %r: %s batch of %d over the cost limit, halving to %d", self.store, kind, len(batch), cap)
                continue
            except ShopifyError as exc:
                exc.partial_results = list(results)  # type: ignore[attr-defined]
                raise
            learned = self.transport.last_requested_cost
            if learned and learned > 0:
                self._item_cost[kind] = learned / len(batch)
            for i, res in zip(batch, batch_results):
                results[i] = res
            pos += len(batch)
            progress.add(len(batch))

    def _upsert_result(self, handle: str, payload: Any) -> WriteResult:
        if not isinstance(payload, dict):
            return failed(handle, "NO_RESULT", f"store {self.store!r}: Shopify returned no result for {handle}")
        errors = user_errors(payload.get("userErrors"))
        mo = payload.get("metaobject") or {}
        if errors:
            return WriteResult(key=handle, ok=False, metaobject_id=mo.get("id"), errors=errors)
        if not mo.get("id"):
            return failed(handle, "NO_RESULT", f"store {self.store!r}: upsert of {handle} returned no metaobject")
        return WriteResult(key=handle, ok=True, metaobject_id=mo["id"])

    def _delete_result(self, mid: str, payload: Any) -> WriteResult:
        if not isinstance(payload, dict):
            return failed(mid, "NO_RESULT", f"store {self.store!r}: Shopify returned no result for deleting {mid}")
        errors = user_errors(payload.get("userErrors"))
        # RECORD_NOT_FOUND: the metaobject is already gone (deleted by someone else, or by our own earlier attempt
        # whose answer was lost). The goal of a delete -- it does not exist -- holds, so that counts as done.
        remaining = tuple(e for e in errors if e.code != "RECORD_NOT_FOUND")
        if remaining:
            return WriteResult(key=mid, ok=False, errors=remaining)
        return WriteResult(key=mid, ok=True, metaobject_id=payload.get("deletedId") or mid)


class _Progress:
    def __init__(self, callback: Progress | None, total: int, done: int = 0):
        self.callback = callback
        self.total = total
        self.done = done
        if callback and done:
            callback(done, total)

    def add(self, n: int) -> None:
        if n <= 0:
            return
        self.done = min(self.total, self.done + n)
        if self.callback:
            self.callback(self.done, self.total)


def _field_input(f: ContractField) -> dict[str, Any]:
    return {"key": f.key, "name": f.name or f.key, "type": f.type, "required": bool(f.required)}


def make_shopify_client(
    *,
    store: str,
    admin_url: str,
    api_version: str,
    access_token: str,
    bulk_threshold: int | None = 300,
    bulk_read_threshold: int | None = 1000,
    http_client: httpx.Client | None = None,
    **transport_options: Any,
) -> MetaobjectClient:
    transport = ShopifyTransport(
        store=store, admin_url=admin_url, api_version=api_version, access_token=access_token,
        http_client=http_client, **transport_options,
    )
    return MetaobjectClient(transport, bulk_threshold=bulk_threshold, bulk_read_threshold=bulk_read_threshold)

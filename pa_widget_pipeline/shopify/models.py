"""Plain data the Shopify client hands back: no transport details leak past these."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class UserError:
    code: str | None
    message: str
    field: tuple[str, ...] = ()


@dataclass(frozen=True)
class UpsertItem:
    """One metaobject to create or update, keyed by (type, handle)."""

    handle: str
    fields: dict[str, str]


@dataclass(frozen=True)
class WriteResult:
    """What happened to one upsert or delete; `key` is the handle (upsert) or the id (delete)."""

    key: str
    ok: bool
    metaobject_id: str | None = None
    errors: tuple[UserError, ...] = ()


@dataclass(frozen=True)
class ExistingMetaobject:
    id: str
    handle: str
    sync_hash: str | None
    updated_at: str | None = None


@dataclass
class TransportStats:
    """Counters a benchmark or a run's metadata can quote."""

    requests: int = 0
    throttled: int = 0
    retries: int = 0
    requested_points: float = 0.0
    actual_points: float = 0.0
    throttle_wait_seconds: float = 0.0
    pacing_wait_seconds: float = 0.0
    bulk_operations: int = 0  # bulk mutations started
    bulk_fallbacks: int = 0  # bulk mutations that could not start or finish (written batched instead)
    bulk_queries: int = 0  # bulk queries started (reads)
    bulk_read_fallbacks: int = 0  # bulk reads that could not start, failed or timed out (read page by page)

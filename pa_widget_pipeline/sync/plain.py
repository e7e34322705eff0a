"""One store's whole sync as a plain function: fetch, group, then every type through ``sync_type``.

The same steps and the same accounting as the Dagster graph (pa_widgets -> widgets_by_type -> one write asset per
type), without Dagster: for scripts, benchmarks and for measuring what the orchestration layer costs.

Like the graph, a type that fails (its definition cannot be read, a client call aborts) does not stop the other
types: its ``TypeSyncResult`` still accounts for every widget, and the cause is kept in ``aborted``. A fetch error
(``PAError``) is raised, as the graph fails its first step.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

from pa_widget_pipeline.pa.models import WidgetFetch
from pa_widget_pipeline.sync.contract import TYPE_KEYS
from pa_widget_pipeline.sync.engine import MetaobjectWriter, TypeSyncAborted, sync_type
from pa_widget_pipeline.sync.frames import WidgetsByType, group_widgets
from pa_widget_pipeline.sync.outcome import TypeSyncResult, sync_status

# (type_key, phase, done, total), phase "upsert" or "delete"
StoreProgress = Callable[[str, str, int, int], None]


class WidgetSource(Protocol):
    def fetch_widgets(self) -> WidgetFetch: ...


@dataclass
class PlainSyncResult:
    """What one store's sync did. Widgets: ``total == synced + unchanged + skipped + failed``."""

    store: str
    grouped: WidgetsByType
    types: dict[str, TypeSyncResult]
    aborted: dict[str, str] = field(default_factory=dict)  # type_key -> why its sync stopped
    seconds: dict[str, float] = field(default_factory=dict)  # fetch, group, and one entry per type key

    @property
    def total(self) -> int:
        return self.grouped.total

    @property
    def synced(self) -> int:
        return sum(r.synced for r in self.types.values())

    @property
    def unchanged(self) -> int:
        return sum(r.unchanged for r in self.types.values())

    @property
    def skipped(self) -> int:
        return len(self.grouped.skipped)

    @property
    def failed(self) -> int:
        return len(self.grouped.failed) + sum(r.failed for r in self.types.values())

    @property
    def deleted(self) -> int:
        return sum(r.deleted for r in self.types.values())

    @property
    def status(self) -> str:
        return sync_status(synced=self.synced, unchanged=self.unchanged, failed=self.failed,
                           run_failed=bool(self.aborted))


def _type_progress(on_progress: StoreProgress | None, type_key: str) -> Callable[[str, int, int], None] | None:
    if on_progress is None:
        return None

    def progress(phase: str, done: int, total: int) -> None:
        on_progress(type_key, phase, done, total)

    return progress


def sync_store_plain(
    *,
    store: str,
    pa_client: WidgetSource,
    shopify_client: MetaobjectWriter,
    metaobject_types: dict[str, str] | None = None,
    allow_mass_delete: bool = False,
    dry_run: bool = False,
    rewrite_unchanged: bool = False,
    on_progress: StoreProgress | None = None,
) -> PlainSyncResult:
    """Fetch the store's widgets from PA, group them by type and sync each type (in ``TYPE_KEYS`` order)."""
    clock = time.perf_counter
    seconds: dict[str, float] = {}
    started = clock()
    fetch = pa_client.fetch_widgets()
    seconds["fetch"] = clock() - started

    started = clock()
    grouped = group_widgets(fetch, metaobject_types)
    seconds["group"] = clock() - started

    types: dict[str, TypeSyncResult] = {}
    aborted: dict[str, str] = {}
    for type_key in TYPE_KEYS:
        progress = _type_progress(on_progress, type_key)
        started = clock()
        try:
            types[type_key] = sync_type(
                store=store,
                type_key=type_key,
                metaobject_type=grouped.metaobject_types[type_key],
                frame=grouped.frames[type_key],
                client=shopify_client,
                fetch_complete=grouped.complete,
                allow_mass_delete=allow_mass_delete,
                dry_run=dry_run,
                on_progress=progress,
                keep_handles=grouped.keep_handles_for(type_key),
                rewrite_unchanged=rewrite_unchanged,
            )
        except TypeSyncAborted as exc:
            types[type_key] = exc.partial_result
            aborted[type_key] = f"{type(exc.cause).__name__}: {exc.cause}"
        seconds[type_key] = clock() - started
    return PlainSyncResult(store=store, grouped=grouped, types=types, aborted=aborted, seconds=seconds)

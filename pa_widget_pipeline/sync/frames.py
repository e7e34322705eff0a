"""Group one store's fetched widgets by synced type, as pandas frames of metaobject payloads.

Every widget of the fetch lands in exactly one place: a type's frame, ``skipped`` (a PA type that is not synced)
or ``failed`` (rejected by validation, a MappingError, or a handle shared with another widget):
``total == sum(counts.values()) + len(skipped) + len(failed)``.

``keep_handles`` lists, per type, the handles of failed widgets whose id is known: PA still has those widgets, so
their existing metaobjects must not be deleted as "gone from PA" (pass them to ``plan_writes`` / ``sync_type``).
A failed widget whose type is unknown protects its handle in every type.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from pa_widget_pipeline.pa.models import WIDGET_TYPE_NAMES, WidgetFetch
from pa_widget_pipeline.sync.contract import DEFAULT_METAOBJECT_TYPES, SYNCED_PA_TYPES, TYPE_KEYS
from pa_widget_pipeline.sync.mapping import MappingError, metaobject_handle, widget_fields
from pa_widget_pipeline.sync.outcome import WidgetError

FRAME_COLUMNS: tuple[str, ...] = ("widget_id", "pa_type", "handle", "fields", "sync_hash")
DUPLICATE_HANDLE = "DUPLICATE_HANDLE"


@dataclass(frozen=True)
class SkippedWidget:
    widget_id: str
    type: int
    type_name: str


def pa_type_label(pa_type: int | None) -> str | None:
    """The ``WidgetError.type`` for a widget: its type key when synced, else the PA type name (or number)."""
    if pa_type is None:
        return None
    if pa_type in SYNCED_PA_TYPES:
        return SYNCED_PA_TYPES[pa_type]
    return WIDGET_TYPE_NAMES.get(pa_type, str(pa_type))


def empty_frame() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series([], dtype="int64" if c == "pa_type" else object) for c in FRAME_COLUMNS})


@dataclass
class WidgetsByType:
    store: str
    complete: bool
    total: int
    frames: dict[str, pd.DataFrame]
    skipped: list[SkippedWidget] = field(default_factory=list)
    failed: list[WidgetError] = field(default_factory=list)
    metaobject_types: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_METAOBJECT_TYPES))
    keep_handles: dict[str, frozenset[str]] = field(default_factory=dict)
    incomplete_reason: str | None = None

    @property
    def counts(self) -> dict[str, int]:
        """Widgets to sync per type key."""
        return {k: len(f) for k, f in self.frames.items()}

    def keep_handles_for(self, type_key: str) -> frozenset[str]:
        return self.keep_handles.get(type_key, frozenset())

    def summary(self, max_errors: int = 20) -> dict[str, Any]:
        """JSON-able metadata: counts, skipped by PA type name, failures by code and the first ``max_errors``."""
        return {
            "store": self.store,
            "complete": self.complete,
            "incomplete_reason": self.incomplete_reason,
            "total": self.total,
            "counts": self.counts,
            "metaobject_types": dict(self.metaobject_types),
            "skipped": len(self.skipped),
            "skipped_by_type": dict(Counter(s.type_name for s in self.skipped)),
            "failed": len(self.failed),
            "failed_by_code": dict(Counter(e.code for e in self.failed)),
            "failed_by_type": dict(Counter(e.type or "unknown" for e in self.failed)),
            "errors": [e.model_dump(mode="json") for e in self.failed[:max_errors]],
        }


def group_widgets(fetch: WidgetFetch, metaobject_types: dict[str, str] | None = None) -> WidgetsByType:
    """Split ``fetch`` into per-type frames (PA types 1/6/5 → recommendation/merchandising/bundle), skipped widgets
    and failed ones. ``metaobject_types`` overrides the default metaobject type per type key; handles must be
    unique per metaobject type, so two widgets mapping to one handle there both fail with DUPLICATE_HANDLE."""
    unknown = set(metaobject_types or {}) - set(TYPE_KEYS)
    if unknown:
        raise ValueError(f"store {fetch.store!r}: unknown type keys in metaobject_types: {sorted(unknown)}")
    mo_types = {**DEFAULT_METAOBJECT_TYPES, **(metaobject_types or {})}

    failed: list[WidgetError] = []
    skipped: list[SkippedWidget] = []
    keep: dict[str, set[str]] = {k: set() for k in TYPE_KEYS}

    for reject in fetch.rejects:
        failed.append(WidgetError(
            widget_id=reject.widget_id, type=pa_type_label(reject.type), code=reject.code,
            message=f"field {reject.field!r}: {reject.message}",
        ))
        if reject.widget_id is not None:
            handle = metaobject_handle(reject.widget_id)
            if reject.type is None:
                for k in TYPE_KEYS:
                    keep[k].add(handle)
            elif reject.type in SYNCED_PA_TYPES:
                keep[SYNCED_PA_TYPES[reject.type]].add(handle)

    # (type_key, widget_id, pa_type, handle, fields) of every widget that mapped.
    mapped: list[tuple[str, str, int, str, dict[str, str]]] = []
    for widget in fetch.widgets:
        type_key = SYNCED_PA_TYPES.get(widget.type)
        if type_key is None:
            skipped.append(SkippedWidget(widget.id, widget.type,
                                         widget.type_name or WIDGET_TYPE_NAMES.get(widget.type, str(widget.type))))
            continue
        handle = metaobject_handle(widget.id)
        try:
            values = widget_fields(widget)
        except MappingError as exc:
            failed.append(WidgetError(widget_id=widget.id, type=type_key, code=exc.code,
                                      message=f"field {exc.field!r}: {exc.message}"))
            keep[type_key].add(handle)
            continue
        mapped.append((type_key, widget.id, widget.type, handle, values))

    # Handles are unique per metaobject type: every widget sharing one fails.
    handle_counts = Counter((mo_types[t], h) for t, _, _, h, _ in mapped)
    columns: dict[str, dict[str, list[Any]]] = {k: {c: [] for c in FRAME_COLUMNS} for k in TYPE_KEYS}
    for type_key, wid, pa_type, handle, values in mapped:
        n = handle_counts[(mo_types[type_key], handle)]
        if n > 1:
            failed.append(WidgetError(
                widget_id=wid, type=type_key, code=DUPLICATE_HANDLE,
                message=f"field 'id': handle {handle!r} is shared by {n} widgets in metaobject type "
                        f"{mo_types[type_key]!r}",
            ))
            keep[type_key].add(handle)
            continue
        cols = columns[type_key]
        cols["widget_id"].append(wid)
        cols["pa_type"].append(pa_type)
        cols["handle"].append(handle)
        cols["fields"].append(values)
        cols["sync_hash"].append(values["sync_hash"])

    frames: dict[str, pd.DataFrame] = {}
    for type_key in TYPE_KEYS:
        cols = columns[type_key]
        if not cols["widget_id"]:
            frames[type_key] = empty_frame()
            continue
        frames[type_key] = pd.DataFrame({
            "widget_id": pd.Series(cols["widget_id"], dtype=object),
            "pa_type": pd.Series(cols["pa_type"], dtype="int64"),
            "handle": pd.Series(cols["handle"], dtype=object),
            "fields": pd.Series(cols["fields"], dtype=object),
            "sync_hash": pd.Series(cols["sync_hash"], dtype=object),
        })

    result = WidgetsByType(
        store=fetch.store, complete=fetch.complete, total=fetch.total, frames=frames, skipped=skipped,
        failed=failed, metaobject_types=mo_types, keep_handles={k: frozenset(v) for k, v in keep.items()},
        incomplete_reason=fetch.incomplete_reason,
    )
    placed = sum(result.counts.values()) + len(skipped) + len(failed)
    if placed != result.total:  # pragma: no cover - a bug guard, not an input condition
        raise AssertionError(f"store {fetch.store!r}: {placed} widgets placed of {result.total}")
    return result

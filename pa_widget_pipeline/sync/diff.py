"""Plan one type's writes: compare PA's payloads (a frame from sync/frames.py) with what Shopify holds.

* same ``sync_hash`` → unchanged; handle not in Shopify → create; different (or missing) hash → update.
* A metaobject whose handle starts with ``pa-`` and that PA no longer has → delete, but only
  - when the fetch was complete (else no deletes, ``delete_refused`` says "fetch incomplete"), and
  - when it is not a mass delete: more than half of the type's existing ``pa-`` metaobjects *and* more than
    ``MASS_DELETE_MIN`` (10) of them is refused (no deletes at all) unless ``allow_mass_delete``.
* Handles in ``keep_handles`` (widgets PA still has but that failed this run) are never deleted.
* Metaobjects without the ``pa-`` prefix are never touched: not updated, not deleted, not counted by the guard.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import pandas as pd

from pa_widget_pipeline.shopify.models import ExistingMetaobject, UpsertItem
from pa_widget_pipeline.sync.contract import HANDLE_PREFIX

MASS_DELETE_MIN = 10


@dataclass
class WritePlan:
    creates: list[UpsertItem] = field(default_factory=list)
    updates: list[UpsertItem] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deletes: list[ExistingMetaobject] = field(default_factory=list)
    delete_refused: str | None = None
    existing_managed: int = 0  # existing metaobjects with the pa- prefix
    delete_candidates: int = 0  # pa- metaobjects PA no longer has (deleted or withheld)

    @property
    def writes(self) -> list[UpsertItem]:
        return self.creates + self.updates


def is_mass_delete(to_delete: int, existing: int) -> bool:
    """More than half of the existing managed metaobjects, and more than MASS_DELETE_MIN."""
    return to_delete > MASS_DELETE_MIN and to_delete * 2 > existing


def plan_writes(
    frame: pd.DataFrame,
    existing: list[ExistingMetaobject],
    *,
    fetch_complete: bool,
    allow_mass_delete: bool,
    keep_handles: Iterable[str] = (),
    rewrite_unchanged: bool = False,
) -> WritePlan:
    """Diff ``frame`` (columns handle, fields, sync_hash) against ``existing`` (all metaobjects of the type).

    ``rewrite_unchanged`` updates even metaobjects whose ``sync_hash`` matches: the way to repair values that
    changed in Shopify behind the hash's back (e.g. a definition field removed, which drops its values, then
    added again)."""
    handles: list[str] = frame["handle"].tolist() if len(frame) else []
    fields_col: list[dict[str, str]] = frame["fields"].tolist() if len(frame) else []
    hashes: list[str] = frame["sync_hash"].tolist() if len(frame) else []
    if len(set(handles)) != len(handles):
        raise ValueError("frame has duplicate handles; group_widgets fails those widgets before planning")

    managed = {m.handle: m for m in existing if m.handle.startswith(HANDLE_PREFIX)}
    plan = WritePlan(existing_managed=len(managed))
    for handle, values, sync_hash in zip(handles, fields_col, hashes):
        current = managed.get(handle)
        if current is None:
            plan.creates.append(UpsertItem(handle=handle, fields=values))
        elif not rewrite_unchanged and current.sync_hash is not None and current.sync_hash == sync_hash:
            plan.unchanged.append(handle)
        else:
            plan.updates.append(UpsertItem(handle=handle, fields=values))

    wanted = set(handles) | set(keep_handles)
    gone = [m for h, m in managed.items() if h not in wanted]
    plan.delete_candidates = len(gone)
    if not fetch_complete:
        plan.delete_refused = (f"fetch incomplete: {len(gone)} pa- metaobjects not seen in PA were kept; "
                               "deletes need a complete fetch")
    elif gone and is_mass_delete(len(gone), len(managed)) and not allow_mass_delete:
        plan.delete_refused = (
            f"mass delete refused: {len(gone)} of {len(managed)} existing pa- metaobjects would be deleted "
            f"(more than half and more than {MASS_DELETE_MIN}); set allow_mass_delete to delete them"
        )
    else:
        plan.deletes = gone
    return plan

"""Outcomes: per-widget errors, one type's sync result, the run's history entry and its status rule.

Bucket invariant (every widget lands in exactly one bucket):
    total = synced + unchanged + skipped + failed
for a finished entry. ``deleted`` counts metaobjects removed from Shopify, not widgets, so it is outside the sum.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field, model_validator

from pa_widget_pipeline.sync.contract import DefinitionCheck

if TYPE_CHECKING:  # frames.py imports this module
    from pa_widget_pipeline.sync.frames import WidgetsByType

SyncStatus = Literal["success", "partial", "failed", "running"]
Trigger = Literal["manual", "schedule", "sensor", "backfill"]

NOT_SYNCED = "NOT_SYNCED"
DEFINITION_MISMATCH = "DEFINITION_MISMATCH"


class WidgetError(BaseModel):
    """One failure. ``widget_id`` is None when the widget's id is unknown or the error is about a type
    (e.g. a failed delete). ``type`` is the type key (``"bundle"``), or for widgets of other types the PA type
    name or number as a string."""

    model_config = ConfigDict(frozen=True)

    widget_id: str | None
    type: str | None
    code: str
    message: str


def sync_status(*, synced: int, unchanged: int, failed: int, run_failed: bool, running: bool = False) -> str:
    """The run's status.

    * ``running`` → ``"running"`` (whatever the counts so far).
    * nothing failed (``failed == 0``) and the run did not fail → ``"success"`` (also when there was nothing to do).
    * something failed (widgets, or the run itself) but some widgets are in step with PA
      (``synced + unchanged > 0``) → ``"partial"``.
    * something failed and nothing was written or in step → ``"failed"``.
    """
    if running:
        return "running"
    if failed == 0 and not run_failed:
        return "success"
    if synced + unchanged > 0:
        return "partial"
    return "failed"


def describe_check(check: DefinitionCheck | None) -> dict[str, Any] | None:
    if check is None:
        return None
    return {
        "metaobject_type": check.metaobject_type,
        "passed": check.passed,
        "exists": check.exists,
        "missing_keys": list(check.missing_keys),
        "wrong_types": [list(t) for t in check.wrong_types],
        "extra_required_keys": list(check.extra_required_keys),
        "definition_id": check.definition_id,
        "description": check.describe(),
    }


class TypeSyncResult(BaseModel):
    """What one type's sync did. Widgets: ``total = synced + unchanged + failed`` (for a dry run,
    ``total = planned_creates + planned_updates + unchanged + failed``). Deletes are metaobjects, counted apart:
    ``deleted`` succeeded, ``delete_failed`` did not, ``delete_refused`` says why none were attempted."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    type_key: str
    metaobject_type: str
    store: str | None = None
    check: DefinitionCheck | None = None
    total: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    delete_failed: int = 0
    failed: int = 0
    errors: list[WidgetError] = Field(default_factory=list)
    delete_refused: str | None = None
    dry_run: bool = False
    planned_creates: int = 0
    planned_updates: int = 0
    planned_deletes: int = 0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def synced(self) -> int:
        """Widgets written successfully (created + updated)."""
        return self.created + self.updated

    @property
    def check_failed(self) -> bool:
        return self.check is not None and not self.check.passed

    @property
    def in_step(self) -> int:
        """Widgets that are (or, in a dry run, would be) in step with PA."""
        if self.dry_run:
            return self.planned_creates + self.planned_updates + self.unchanged
        return self.synced + self.unchanged

    @property
    def accounted(self) -> int:
        return self.in_step + self.failed

    def to_metadata(self, max_errors: int = 100) -> dict[str, Any]:
        """A JSON-able dict for run/asset metadata; at most ``max_errors`` errors, with the total count."""
        return {
            "store": self.store,
            "type_key": self.type_key,
            "metaobject_type": self.metaobject_type,
            "check": describe_check(self.check),
            "total": self.total,
            "created": self.created,
            "updated": self.updated,
            "synced": self.synced,
            "unchanged": self.unchanged,
            "deleted": self.deleted,
            "delete_failed": self.delete_failed,
            "failed": self.failed,
            "delete_refused": self.delete_refused,
            "dry_run": self.dry_run,
            "planned_creates": self.planned_creates,
            "planned_updates": self.planned_updates,
            "planned_deletes": self.planned_deletes,
            "errors_total": len(self.errors),
            "error_codes": dict(Counter(e.code for e in self.errors)),
            "errors": [e.model_dump(mode="json") for e in self.errors[:max_errors]],
        }


def _check_from_metadata(data: dict[str, Any] | None) -> DefinitionCheck | None:
    if not data:
        return None
    return DefinitionCheck(
        metaobject_type=data["metaobject_type"], exists=data["exists"],
        missing_keys=tuple(data.get("missing_keys", ())),
        wrong_types=tuple(tuple(t) for t in data.get("wrong_types", ())),  # type: ignore[misc]
        extra_required_keys=tuple(data.get("extra_required_keys", ())),
        definition_id=data.get("definition_id"),
    )


def type_result_from_metadata(data: dict[str, Any]) -> TypeSyncResult:
    """The inverse of ``TypeSyncResult.to_metadata`` (errors as far as they were kept)."""
    fields = {k: v for k, v in data.items() if k in TypeSyncResult.model_fields and k not in ("check", "errors")}
    return TypeSyncResult(
        **fields, check=_check_from_metadata(data.get("check")),
        errors=[WidgetError.model_validate(e) for e in data.get("errors", [])],
    )


class SyncHistoryEntry(BaseModel):
    """One sync run of one store, as the history shows it. A finished entry obeys
    ``total == synced + unchanged + skipped + failed``; a running one has ``synced + unchanged + skipped + failed
    <= total`` (the rest is still in flight)."""

    store: str
    run_id: str
    trigger: Trigger
    status: SyncStatus
    total: int = Field(ge=0)
    synced: int = Field(ge=0)
    unchanged: int = Field(ge=0)
    deleted: int = Field(ge=0)
    skipped: int = Field(ge=0)
    failed: int = Field(ge=0)
    errors: list[WidgetError] = Field(default_factory=list)
    started_at: datetime
    ended_at: datetime | None = None
    dry_run: bool = False
    message: str | None = None

    @model_validator(mode="after")
    def _buckets_add_up(self) -> "SyncHistoryEntry":
        buckets = self.synced + self.unchanged + self.skipped + self.failed
        if self.status == "running":
            if buckets > self.total:
                raise ValueError(f"buckets ({buckets}) exceed total ({self.total})")
        elif buckets != self.total:
            raise ValueError(
                f"total ({self.total}) != synced ({self.synced}) + unchanged ({self.unchanged}) + "
                f"skipped ({self.skipped}) + failed ({self.failed})"
            )
        return self


class GroupingSummary(BaseModel):
    """What the history needs of a grouping, small enough to live in run metadata.

    Built from a ``WidgetsByType`` in process (``from_grouping``, with every widget id) or from the summary that
    ``widgets_by_type`` recorded as metadata (``from_metadata``: counts and the first errors only).
    """

    store: str
    complete: bool = True
    incomplete_reason: str | None = None
    total: int = 0
    counts: dict[str, int] = Field(default_factory=dict)
    skipped: int = 0
    failed: int = 0
    errors: list[WidgetError] = Field(default_factory=list)
    widget_ids: dict[str, list[str]] | None = None

    @classmethod
    def from_grouping(cls, grouping: "WidgetsByType") -> "GroupingSummary":
        return cls(
            store=grouping.store, complete=grouping.complete, incomplete_reason=grouping.incomplete_reason,
            total=grouping.total, counts=grouping.counts, skipped=len(grouping.skipped),
            failed=len(grouping.failed), errors=list(grouping.failed),
            widget_ids={k: f["widget_id"].tolist() for k, f in grouping.frames.items()},
        )

    @classmethod
    def from_metadata(cls, summary: dict[str, Any]) -> "GroupingSummary":
        return cls(
            store=summary["store"], complete=summary["complete"], incomplete_reason=summary.get("incomplete_reason"),
            total=summary["total"], counts=summary["counts"], skipped=summary["skipped"], failed=summary["failed"],
            errors=[WidgetError.model_validate(e) for e in summary.get("errors", [])],
        )


def build_history_entry(
    *,
    grouping: "WidgetsByType | GroupingSummary | None",
    results: list[TypeSyncResult],
    run_id: str,
    trigger: str,
    started_at: datetime,
    ended_at: datetime | None = None,
    run_failed: bool = False,
    running: bool = False,
    store: str | None = None,
    message: str | None = None,
    dry_run: bool | None = None,
    max_errors: int | None = None,
) -> SyncHistoryEntry:
    """Assemble the run's history entry from the grouping (None when the PA fetch failed) and the type results.

    * total, skipped and the grouping's failures come from ``grouping``; synced / unchanged / deleted / failed of
      each synced type from its ``TypeSyncResult``.
    * A synced type with widgets but no result (the run died, the step was never reached) counts all its widgets
      as failed with code ``NOT_SYNCED`` — unless ``running``, when they are simply not done yet.
    * A result whose counts do not add up, or whose total differs from its frame, raises ``ValueError``
      (a bug upstream; the history must never show buckets that do not add up).
    * Dry run (``dry_run`` or any result's ``dry_run``): widgets that would be created or updated are reported as
      ``synced`` and deletes as ``deleted``, with ``dry_run=True`` and a message saying nothing was written.
    * Status per :func:`sync_status`; failed deletes and failed definition checks count as a run-level failure
      (the run is not a success, though no widget failed because of them).
    * ``grouping is None`` with results: a run that re-synced some types from an earlier fetch (e.g. a backfill of
      one write asset); the entry covers those types. With no results either, the run failed before widgets were
      known: total 0, status failed.
    * ``max_errors`` caps the errors list (the message then says how many were left out).
    """
    if grouping is not None and not isinstance(grouping, GroupingSummary):
        grouping = GroupingSummary.from_grouping(grouping)
    if grouping is None and store is None:
        raise ValueError("store is required when there is no grouping")
    entry_store = grouping.store if grouping is not None else store
    assert entry_store is not None
    is_dry = bool(dry_run) if dry_run is not None else any(r.dry_run for r in results)

    by_type: dict[str, TypeSyncResult] = {}
    for result in results:
        if result.type_key in by_type:
            raise ValueError(f"two results for type {result.type_key!r}")
        by_type[result.type_key] = result

    errors: list[WidgetError] = []
    total = skipped = failed = synced = unchanged = deleted = 0
    notes: list[str] = []
    type_problem = False

    if grouping is not None:
        total = grouping.total
        skipped = grouping.skipped
        failed = grouping.failed
        errors.extend(grouping.errors)
        if not grouping.complete:
            notes.append("PA fetch incomplete" + (f": {grouping.incomplete_reason}" if grouping.incomplete_reason
                                                  else ""))
        expected = dict(grouping.counts)
    else:
        # A run that re-synced some types from an earlier fetch (a backfill of one write asset): the entry
        # covers the types it ran. With no results either, the fetch itself failed.
        expected = {r.type_key: r.total for r in results}
        if not results and not running:
            run_failed = True
            notes.append("no widgets were fetched")
        total = sum(expected.values())

    for type_key, frame_len in expected.items():
        result = by_type.pop(type_key, None)
        if result is None:
            if running or frame_len == 0:
                continue
            failed += frame_len
            why = f"{type_key} widgets were not synced: the run ended before this type finished"
            ids = ((grouping.widget_ids if grouping else None) or {}).get(type_key)
            if ids is None:
                errors.append(WidgetError(widget_id=None, type=type_key, code=NOT_SYNCED,
                                          message=f"{frame_len} {why}"))
            else:
                errors.extend(WidgetError(widget_id=wid, type=type_key, code=NOT_SYNCED, message=why)
                              for wid in ids)
            notes.append(f"{type_key}: {frame_len} widgets not synced")
            continue
        if result.total != frame_len:
            raise ValueError(f"result for {type_key!r} has total {result.total}, grouping has {frame_len}")
        if result.accounted != result.total:
            raise ValueError(
                f"result for {type_key!r} does not add up: {result.accounted} accounted of {result.total}")
        synced += result.in_step - result.unchanged
        unchanged += result.unchanged
        failed += result.failed
        deleted += result.planned_deletes if result.dry_run else result.deleted
        errors.extend(result.errors)
        if result.delete_failed or result.check_failed:
            type_problem = True
        if result.delete_refused:
            notes.append(f"{type_key}: deletes refused ({result.delete_refused})")
    if by_type:
        raise ValueError(f"results for types the grouping does not have: {sorted(by_type)}")

    if max_errors is not None and len(errors) > max_errors:
        notes.append(f"{len(errors) - max_errors} more errors not listed")
        errors = errors[:max_errors]
    if is_dry:
        notes.insert(0, "dry run: nothing was written; synced and deleted are what would have been written")
    parts = ([message] if message else []) + notes
    status = sync_status(synced=synced, unchanged=unchanged, failed=failed,
                         run_failed=run_failed or type_problem, running=running)
    return SyncHistoryEntry(
        store=entry_store, run_id=run_id, trigger=trigger,  # type: ignore[arg-type]
        status=status,  # type: ignore[arg-type]
        total=total, synced=synced, unchanged=unchanged, deleted=deleted, skipped=skipped, failed=failed,
        errors=errors, started_at=started_at, ended_at=ended_at, dry_run=is_dry,
        message="; ".join(parts) if parts else None,
    )

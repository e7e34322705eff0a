"""Sync one metaobject type of one store: check the definition, read, plan, write, delete, account per widget.

No Dagster and no HTTP here: the Shopify side is any object with the ``MetaobjectWriter`` methods
(shopify/metaobjects.py's ``MetaobjectClient`` in production, an in-memory fake in tests).

Client exceptions are never swallowed: ``sync_type`` raises ``TypeSyncAborted`` (chained ``from`` the cause) whose
``partial_result`` is a complete account of the type so far — what was written is counted as synced, widgets whose
outcome is unknown are failed with code ``NOT_SYNCED`` (message names the cause), so
``total == synced + unchanged + failed`` still holds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol, runtime_checkable

import pandas as pd

from pa_widget_pipeline.shopify.models import ExistingMetaobject, UpsertItem, WriteResult
from pa_widget_pipeline.sync.contract import DefinitionCheck, check_definition
from pa_widget_pipeline.sync.diff import WritePlan, plan_writes
from pa_widget_pipeline.sync.outcome import DEFINITION_MISMATCH, NOT_SYNCED, TypeSyncResult, WidgetError

WRITE_FAILED = "WRITE_FAILED"
DELETE_FAILED = "DELETE_FAILED"

ProgressCallback = Callable[[int, int], None]
# Engine progress: (phase, done, total) with phase "upsert" or "delete".
EngineProgress = Callable[[str, int, int], None]


@runtime_checkable
class MetaobjectWriter(Protocol):
    def definition_by_type(self, metaobject_type: str) -> dict | None: ...

    def list_metaobjects(self, metaobject_type: str) -> list[ExistingMetaobject]: ...

    def upsert_metaobjects(self, metaobject_type: str, items: list[UpsertItem], *,
                           on_progress: ProgressCallback | None = None) -> list[WriteResult]: ...

    def delete_metaobjects(self, ids: list[str], *,
                           on_progress: ProgressCallback | None = None) -> list[WriteResult]: ...


class TypeSyncAborted(Exception):
    """A client call failed mid-sync. ``partial_result`` accounts for every widget so far; ``cause`` is the error."""

    def __init__(self, partial_result: TypeSyncResult, cause: BaseException):
        self.partial_result = partial_result
        self.cause = cause
        r = partial_result
        super().__init__(
            f"store {r.store!r}: {r.type_key} sync ({r.metaobject_type}) aborted after {r.synced} written, "
            f"{r.deleted} deleted, {r.failed} failed: {type(cause).__name__}: {cause}"
        )


def _cause_text(cause: BaseException) -> str:
    code = getattr(cause, "code", None)
    prefix = f"{code}: " if isinstance(code, str) else f"{type(cause).__name__}: "
    return prefix + str(cause)


def _user_error_text(result: WriteResult, default_code: str = WRITE_FAILED) -> tuple[str, str]:
    if not result.errors:
        return default_code, "Shopify reported a failure without a userError"
    code = result.errors[0].code or default_code
    parts = []
    for err in result.errors:
        where = ".".join(err.field)
        parts.append(f"{err.code or 'ERROR'}: {err.message}" + (f" (field {where})" if where else ""))
    return code, "; ".join(parts)


def _phase_progress(on_progress: EngineProgress | None, phase: str, offset: int,
                    total: int) -> ProgressCallback | None:
    """Adapt the client's (done, total) of one call to the engine's (phase, done overall, total overall)."""
    if on_progress is None:
        return None

    def progress(done: int, _call_total: int) -> None:
        on_progress(phase, offset + done, total)

    return progress


def _chunks(items: list[UpsertItem], size: int | None) -> list[list[UpsertItem]]:
    if not items:
        return []
    if size is None or size >= len(items):
        return [items]
    return [items[i:i + size] for i in range(0, len(items), size)]


def sync_type(
    *,
    store: str,
    type_key: str,
    metaobject_type: str,
    frame: pd.DataFrame,
    client: MetaobjectWriter,
    fetch_complete: bool,
    allow_mass_delete: bool = False,
    dry_run: bool = False,
    check: DefinitionCheck | None = None,
    on_progress: EngineProgress | None = None,
    keep_handles: Iterable[str] = (),
    chunk_size: int | None = None,
    rewrite_unchanged: bool = False,
) -> TypeSyncResult:
    """Sync ``frame`` (one type's widgets, from group_widgets) into ``metaobject_type``.

    1. Definition: ``check`` or, when None, ``check_definition`` on ``client.definition_by_type``. A failing
       check writes nothing and fails every widget with ``DEFINITION_MISMATCH`` (message = the check's description).
    2. ``list_metaobjects`` and ``plan_writes`` (``keep_handles``: handles of failed widgets, never deleted).
    3. ``dry_run``: stop, with planned_creates / planned_updates / planned_deletes and unchanged filled in.
    4. Upsert creates + updates (in chunks of ``chunk_size`` items, default one call), each WriteResult mapped back
       to its widget: userErrors → a WidgetError with the first userError's code and every message.
    5. Delete what the plan deletes; a failed delete is an error with ``widget_id=None`` and counts in
       ``delete_failed``.
    ``on_progress(phase, done, total)`` is called with phase "upsert" or "delete".
    Raises ``TypeSyncAborted`` (with ``partial_result``) when a client call raises.
    """
    handles: list[str] = frame["handle"].tolist() if len(frame) else []
    widget_ids: list[str] = frame["widget_id"].tolist() if len(frame) else []
    widget_of = dict(zip(handles, widget_ids))
    result = TypeSyncResult(type_key=type_key, metaobject_type=metaobject_type, store=store, total=len(frame),
                            dry_run=dry_run)

    def fail(handle: str, code: str, message: str) -> None:
        result.failed += 1
        result.errors.append(WidgetError(widget_id=widget_of.get(handle), type=type_key, code=code, message=message))

    def abort(cause: BaseException, pending: Iterable[str]) -> TypeSyncAborted:
        text = f"not synced: {type_key} sync aborted: {_cause_text(cause)}"
        for handle in pending:
            fail(handle, NOT_SYNCED, text)
        return TypeSyncAborted(result, cause)

    # 1. The definition.
    if check is None:
        try:
            definition = client.definition_by_type(metaobject_type)
        except Exception as exc:
            raise abort(exc, handles) from exc
        check = check_definition(metaobject_type, definition)
    result.check = check
    if not check.passed:
        description = check.describe()
        for handle in handles:
            fail(handle, DEFINITION_MISMATCH, description)
        if not handles:
            result.errors.append(WidgetError(widget_id=None, type=type_key, code=DEFINITION_MISMATCH,
                                             message=description))
        return result

    # 2. Read and plan.
    try:
        existing = client.list_metaobjects(metaobject_type)
    except Exception as exc:
        raise abort(exc, handles) from exc
    plan: WritePlan = plan_writes(frame, existing, fetch_complete=fetch_complete,
                                  allow_mass_delete=allow_mass_delete, keep_handles=keep_handles,
                                  rewrite_unchanged=rewrite_unchanged)
    result.unchanged = len(plan.unchanged)
    result.planned_creates = len(plan.creates)
    result.planned_updates = len(plan.updates)
    result.planned_deletes = len(plan.deletes)
    result.delete_refused = plan.delete_refused
    if dry_run:
        return result

    # 3. Upserts.
    creates = {item.handle for item in plan.creates}
    items = plan.writes
    done_before = 0
    chunks = _chunks(items, chunk_size)
    for index, chunk in enumerate(chunks):
        progress = _phase_progress(on_progress, "upsert", done_before, len(items))
        try:
            write_results = client.upsert_metaobjects(metaobject_type, chunk, on_progress=progress)
        except Exception as exc:
            pending = [item.handle for later in chunks[index:] for item in later]
            raise abort(exc, pending) from exc
        by_key = {r.key: r for r in write_results}
        for item in chunk:
            outcome = by_key.get(item.handle)
            if outcome is None:
                fail(item.handle, NOT_SYNCED, "Shopify returned no result for this metaobject's upsert")
            elif outcome.ok:
                if item.handle in creates:
                    result.created += 1
                else:
                    result.updated += 1
            else:
                code, message = _user_error_text(outcome)
                fail(item.handle, code, f"upsert of {item.handle!r} failed: {message}")
        done_before += len(chunk)

    # 4. Deletes.
    if plan.deletes:
        ids = [m.id for m in plan.deletes]
        handle_of = {m.id: m.handle for m in plan.deletes}
        progress = _phase_progress(on_progress, "delete", 0, len(ids))
        try:
            delete_results = client.delete_metaobjects(ids, on_progress=progress)
        except Exception as exc:
            result.delete_failed += len(ids)
            result.errors.append(WidgetError(
                widget_id=None, type=type_key, code=DELETE_FAILED,
                message=f"{len(ids)} deletes of metaobjects PA no longer has aborted: {_cause_text(exc)}",
            ))
            raise TypeSyncAborted(result, exc) from exc
        by_id = {r.key: r for r in delete_results}
        for mo_id in ids:
            outcome = by_id.get(mo_id)
            if outcome is not None and outcome.ok:
                result.deleted += 1
                continue
            result.delete_failed += 1
            if outcome is None:
                code, message = DELETE_FAILED, "Shopify returned no result"
            else:
                code, message = _user_error_text(outcome, default_code=DELETE_FAILED)
            result.errors.append(WidgetError(
                widget_id=None, type=type_key, code=code,
                message=f"delete of metaobject {handle_of[mo_id]!r} ({mo_id}) failed: {message}",
            ))
    return result


def failed_before_writes(*, store: str, type_key: str, metaobject_type: str, frame: pd.DataFrame,
                         cause: BaseException) -> TypeSyncResult:
    """The account of a type that `cause` stopped before anything was read or written (e.g. the definition
    could not be read): every widget failed NOT_SYNCED, the message naming the cause."""
    text = f"not synced: {type_key} sync aborted: {_cause_text(cause)}"
    widget_ids = frame["widget_id"].tolist() if len(frame) else []
    return TypeSyncResult(
        type_key=type_key, metaobject_type=metaobject_type, store=store, total=len(widget_ids),
        failed=len(widget_ids),
        errors=[WidgetError(widget_id=wid, type=type_key, code=NOT_SYNCED, message=text) for wid in widget_ids],
    )

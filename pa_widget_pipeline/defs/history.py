"""The sync history, read from Dagster's run and event storage (SQLite or PostgreSQL, whichever is configured).

Nothing is stored twice: an entry is assembled from one run's record (status, tags, times) and the metadata its
steps recorded: `widgets_by_type`'s summary and each write asset's outcome (on its materialization, or on its
step failure when it failed).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import IO, Any, Iterable

import pandas as pd
from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter
from dagster._core.storage.dagster_run import RunRecord

from pa_widget_pipeline.sync.contract import TYPE_KEYS
from pa_widget_pipeline.sync.outcome import (
    GroupingSummary,
    SyncHistoryEntry,
    build_history_entry,
    type_result_from_metadata,
)

TRIGGER_TAG = "pa_widget_sync/trigger"
PARTITION_TAG = "dagster/partition"
TRIGGERS = ("manual", "schedule", "sensor", "backfill")
WRITE_ASSET_TYPES = {f"{type_key}_metaobjects": type_key for type_key in TYPE_KEYS}
SYNC_ASSET_NAMES = {"pa_widgets", "widgets_by_type", *WRITE_ASSET_TYPES}
IN_FLIGHT = {
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
}
HISTORY_COLUMNS = list(SyncHistoryEntry.model_fields)


def run_trigger(tags: dict[str, str]) -> str:
    """What started the run: our own tag first, then Dagster's backfill/schedule/sensor tags."""
    if tags.get(TRIGGER_TAG) in TRIGGERS:
        return tags[TRIGGER_TAG]
    if "dagster/backfill" in tags:
        return "backfill"
    if "dagster/schedule_name" in tags:
        return "schedule"
    if "dagster/sensor_name" in tags:
        return "sensor"
    return "manual"


def is_sync_run(record: RunRecord) -> bool:
    run = record.dagster_run
    if PARTITION_TAG not in run.tags:
        return False
    if run.asset_selection:
        return any(key.path[-1] in SYNC_ASSET_NAMES for key in run.asset_selection)
    return run.job_name == "sync_store"


def _metadata_value(value: Any) -> Any:
    return getattr(value, "data", getattr(value, "value", value))


def _to_datetime(timestamp: float | None) -> datetime | None:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc) if timestamp else None


def entry_from_record(instance: DagsterInstance, record: RunRecord) -> SyncHistoryEntry:
    run = record.dagster_run
    store = run.tags[PARTITION_TAG]
    grouping: GroupingSummary | None = None
    results = []
    failures: list[str] = []
    logs = instance.all_logs(
        run.run_id, of_type={DagsterEventType.ASSET_MATERIALIZATION, DagsterEventType.STEP_FAILURE}
    )
    for log in logs:
        event = log.dagster_event
        if event is None:
            continue
        if event.event_type == DagsterEventType.ASSET_MATERIALIZATION:
            materialization = event.step_materialization_data.materialization
            name = materialization.asset_key.path[-1]
            metadata = materialization.metadata
            if name == "widgets_by_type" and "summary" in metadata:
                grouping = GroupingSummary.from_metadata(_metadata_value(metadata["summary"]))
            elif name in WRITE_ASSET_TYPES and "outcome" in metadata:
                results.append(type_result_from_metadata(_metadata_value(metadata["outcome"])))
        else:
            failure = event.step_failure_data
            user = failure.user_failure_data
            if user is not None and "outcome" in user.metadata:
                results.append(type_result_from_metadata(_metadata_value(user.metadata["outcome"])))
            why = (user.description if user is not None and user.description else None) or (
                failure.error.message.strip().splitlines()[-1] if failure.error else "step failed"
            )
            failures.append(f"{event.step_key}: {why}")

    if grouping is not None and run.asset_selection:
        # A run of a subset (the definition-fix sensor's fetch + one write asset): the entry covers the types it
        # ran, as for a backfill of one write asset; the types left out of the selection are not "not synced".
        selected = {WRITE_ASSET_TYPES[k.path[-1]] for k in run.asset_selection if k.path[-1] in WRITE_ASSET_TYPES}
        left_out = {t: n for t, n in grouping.counts.items() if t not in selected}
        if left_out:
            grouping = grouping.model_copy(update={
                "total": grouping.total - sum(left_out.values()),
                "counts": {t: n for t, n in grouping.counts.items() if t in selected},
                "widget_ids": None if grouping.widget_ids is None
                else {t: ids for t, ids in grouping.widget_ids.items() if t in selected},
            })

    running = run.status in IN_FLIGHT
    run_failed = run.status in (DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED)
    if run_failed and not failures:
        failures.append(f"run {run.status.value.lower()}")
    dry_run = any(r.dry_run for r in results)
    return build_history_entry(
        grouping=grouping,
        results=results,
        run_id=run.run_id,
        trigger=run_trigger(run.tags),
        started_at=_to_datetime(record.start_time) or record.create_timestamp,
        ended_at=None if running else _to_datetime(record.end_time),
        run_failed=run_failed,
        running=running,
        store=store,
        message="; ".join(failures) or None,
        dry_run=dry_run,
        max_errors=100,
    )


def history_entry_for_run(instance: DagsterInstance, run_id: str) -> SyncHistoryEntry:
    records = instance.get_run_records(RunsFilter(run_ids=[run_id]), limit=1)
    if not records:
        raise KeyError(f"no run {run_id} in this Dagster instance")
    return entry_from_record(instance, records[0])


def read_history(instance: DagsterInstance, *, store: str | None = None, limit: int = 20) -> list[SyncHistoryEntry]:
    """The newest `limit` sync entries (of one store, or all), oldest first."""
    filters = RunsFilter(tags={PARTITION_TAG: store}) if store else None
    entries: list[SyncHistoryEntry] = []
    cursor = None
    while len(entries) < limit:
        batch = instance.get_run_records(filters=filters, limit=max(limit * 2, 50), cursor=cursor)
        if not batch:
            break
        for record in batch:
            if is_sync_run(record):
                entries.append(entry_from_record(instance, record))
                if len(entries) == limit:
                    break
        cursor = batch[-1].dagster_run.run_id
    return list(reversed(entries))


def history_dataframe(
    instance: DagsterInstance | None = None, *, store: str | None = None, limit: int = 100
) -> pd.DataFrame:
    """The sync history as a pandas DataFrame, one row per sync run, oldest first."""
    instance = instance or DagsterInstance.get()
    entries = read_history(instance, store=store, limit=limit)
    rows = [e.model_dump(mode="python") for e in entries]
    return pd.DataFrame(rows, columns=HISTORY_COLUMNS)


def _why(entry: SyncHistoryEntry) -> str:
    """The run-level reason when there is one (a failed step says why), else the first widget error."""
    if entry.message:
        return entry.message
    if entry.errors:
        e = entry.errors[0]
        more = f" (+{entry.failed - 1} more)" if entry.failed > 1 else ""
        return f"{e.code} {e.type or ''} {e.widget_id or ''}: {e.message}{more}"
    return ""


def render_history_table(entries: Iterable[SyncHistoryEntry], out: IO[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(show_lines=False)
    for column in ("store", "status", "trigger", "total", "synced", "unchanged", "deleted", "skipped", "failed",
                   "started", "ended", "run", "why"):
        table.add_column(column, overflow="fold")
    styles = {"success": "green", "partial": "yellow", "failed": "red", "running": "cyan"}
    for e in entries:
        table.add_row(
            e.store,
            f"[{styles[e.status]}]{e.status}[/]" + (" (dry run)" if e.dry_run else ""),
            e.trigger,
            *(str(n) for n in (e.total, e.synced, e.unchanged, e.deleted, e.skipped, e.failed)),
            e.started_at.strftime("%Y-%m-%d %H:%M:%S"),
            e.ended_at.strftime("%H:%M:%S") if e.ended_at else "-",
            e.run_id[:8],
            _why(e),
        )
    Console(file=out, width=200 if not out.isatty() else None).print(table)

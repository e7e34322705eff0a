"""Run store syncs through Dagster on a given instance: the same runs, events and history as the UI."""

from __future__ import annotations

import sys
import threading
import uuid
from typing import IO, Sequence

from dagster import DagsterEventType, DagsterInstance, RunsFilter

from pa_widget_pipeline.defs.history import IN_FLIGHT, PARTITION_TAG, TRIGGER_TAG, history_entry_for_run
from pa_widget_pipeline.defs.history_sensor import record_history
from pa_widget_pipeline.defs.jobs import SYNC_JOB_NAME
from pa_widget_pipeline.defs.partitions import STORES_PARTITION_NAME
from pa_widget_pipeline.sync.outcome import SyncHistoryEntry

_SHOWN_EVENTS = {DagsterEventType.STEP_START, DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE}


def add_store_partitions(instance: DagsterInstance, keys: Sequence[str]) -> list[str]:
    existing = set(instance.get_dynamic_partitions(STORES_PARTITION_NAME))
    new = [k for k in keys if k not in existing]
    if new:
        instance.add_dynamic_partitions(STORES_PARTITION_NAME, new)
    return new


def sync_run_config(*, dry_run: bool, allow_mass_delete: bool, rewrite_unchanged: bool, verbose: bool) -> dict:
    options = {"dry_run": dry_run, "allow_mass_delete": allow_mass_delete, "rewrite_unchanged": rewrite_unchanged}
    return {
        "resources": {"sync_options": {"config": options}},
        "loggers": {"console": {"config": {"log_level": "INFO" if verbose else "CRITICAL"}}},
    }


def _follow(instance: DagsterInstance, run_id: str, done: threading.Event, prefix: str, out: IO[str]) -> None:
    """Print step starts/ends and the writes' progress lines while the run executes."""
    seen = 0
    while True:
        finished = done.wait(0.5)
        records = instance.all_logs(run_id)
        for record in records[seen:]:
            event = record.dagster_event
            if event is not None and event.event_type in _SHOWN_EVENTS:
                verb = {"STEP_START": "started", "STEP_SUCCESS": "done", "STEP_FAILURE": "FAILED"}[
                    event.event_type_value
                ]
                print(f"{prefix} {event.step_key}: {verb}", file=out, flush=True)
            elif event is None and "writes done" in (record.user_message or ""):
                print(f"{prefix}   {record.user_message}", file=out, flush=True)
        seen = len(records)
        if finished:
            return


def run_in_flight(instance: DagsterInstance, store: str) -> str | None:
    """The id of a queued or running sync of `store`, if any: the CLI runs in-process, outside the run queue
    that keeps one run per store, so it checks by itself."""
    records = instance.get_run_records(RunsFilter(tags={PARTITION_TAG: store}, statuses=list(IN_FLIGHT)), limit=1)
    return records[0].dagster_run.run_id if records else None


def sync_stores(
    instance: DagsterInstance,
    keys: Sequence[str],
    *,
    dry_run: bool = False,
    allow_mass_delete: bool = False,
    rewrite_unchanged: bool = False,
    verbose: bool = False,
    trigger: str = "manual",
    out: IO[str] | None = None,
) -> list[SyncHistoryEntry]:
    """Sync each store in turn (one run each) and return their history entries. A store that already has a
    sync in flight is left alone (no entry) rather than synced twice at once."""
    from pa_widget_pipeline.definitions import defs

    out = out or sys.stderr
    add_store_partitions(instance, keys)
    job = defs.resolve_job_def(SYNC_JOB_NAME)
    entries: list[SyncHistoryEntry] = []
    for index, key in enumerate(keys, 1):
        prefix = f"[{index}/{len(keys)} {key}]"
        busy = run_in_flight(instance, key)
        if busy:
            print(f"{prefix} not started: run {busy} of this store is still queued or running", file=out, flush=True)
            continue
        run_id = str(uuid.uuid4())
        print(f"{prefix} sync started (run {run_id})", file=out, flush=True)
        done = threading.Event()
        follower = threading.Thread(target=_follow, args=(instance, run_id, done, prefix, out), daemon=True)
        follower.start()
        try:
            job.execute_in_process(
                instance=instance,
                partition_key=key,
                run_id=run_id,
                run_config=sync_run_config(dry_run=dry_run, allow_mass_delete=allow_mass_delete,
                                           rewrite_unchanged=rewrite_unchanged, verbose=verbose),
                tags={TRIGGER_TAG: trigger},
                raise_on_error=False,
            )
        finally:
            done.set()
            follower.join()
        entry = history_entry_for_run(instance, run_id)
        record_history(instance, run_id, entry)
        print(f"{prefix} {entry.status}: {entry.synced} synced, {entry.unchanged} unchanged, "
              f"{entry.skipped} skipped, {entry.failed} failed", file=out, flush=True)
        entries.append(entry)
    return entries

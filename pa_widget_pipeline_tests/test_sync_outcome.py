"""Status rule, type results and the run's history entry (sync/outcome.py)."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from pydantic import ValidationError

from pa_widget_pipeline.pa.models import WidgetFetch, parse_widgets
from pa_widget_pipeline.sync.contract import DefinitionCheck
from pa_widget_pipeline.sync.frames import group_widgets
from pa_widget_pipeline.sync.outcome import (
    SyncHistoryEntry,
    TypeSyncResult,
    WidgetError,
    build_history_entry,
    sync_status,
)

STARTED = datetime(2025, 3, 2, 10, 0, tzinfo=timezone.utc)
ENDED = datetime(2025, 3, 2, 10, 1, tzinfo=timezone.utc)


@pytest.mark.parametrize("synced, unchanged, failed, run_failed, running, expected", [
    (5, 0, 0, False, False, "success"),
    (0, 5, 0, False, False, "success"),
    (0, 0, 0, False, False, "success"),      # nothing to do is not a failure
    (3, 0, 2, False, False, "partial"),
    (0, 3, 2, False, False, "partial"),      # in step counts as "something fine"
    (3, 0, 0, True, False, "partial"),       # run failed after writing
    (0, 0, 2, False, False, "failed"),
    (0, 0, 0, True, False, "failed"),
    (0, 0, 4, True, False, "failed"),
    (3, 1, 2, True, True, "running"),
    (0, 0, 0, False, True, "running"),
])
def test_sync_status_rules(synced, unchanged, failed, run_failed, running, expected):
    assert sync_status(synced=synced, unchanged=unchanged, failed=failed, run_failed=run_failed,
                       running=running) == expected


def test_type_result_synced_is_created_plus_updated_and_metadata_is_json():
    check = DefinitionCheck(metaobject_type="pa_bundle_widget", exists=True, missing_keys=("slots",))
    result = TypeSyncResult(type_key="bundle", metaobject_type="pa_bundle_widget", check=check, total=6, created=2,
                            updated=1, unchanged=1, failed=2, deleted=3,
                            errors=[WidgetError(widget_id=f"w{i}", type="bundle", code="INVALID_VALUE",
                                                message="bad") for i in range(2)])
    assert result.synced == 3
    meta = json.loads(json.dumps(result.to_metadata(max_errors=1)))
    assert meta["synced"] == 3 and meta["deleted"] == 3
    assert meta["check"]["passed"] is False and "slots" in meta["check"]["description"]
    assert meta["errors_total"] == 2 and len(meta["errors"]) == 1
    assert meta["error_codes"] == {"INVALID_VALUE": 2}


def entry(**overrides) -> dict:
    base = dict(store="demo", run_id="r1", trigger="manual", status="success", total=10, synced=4, unchanged=3,
                deleted=1, skipped=2, failed=1, errors=[], started_at=STARTED, ended_at=ENDED)
    base.update(overrides)
    return base


def test_history_entry_json_field_names():
    data = json.loads(SyncHistoryEntry(**entry(status="partial")).model_dump_json())
    assert {"store", "run_id", "trigger", "status", "total", "synced", "unchanged", "deleted", "skipped", "failed",
            "errors", "started_at", "ended_at"} <= set(data)
    assert set(data) - {"store", "run_id", "trigger", "status", "total", "synced", "unchanged", "deleted",
                        "skipped", "failed", "errors", "started_at", "ended_at"} == {"dry_run", "message"}
    assert data["started_at"].startswith("2025-03-02T10:00:00")


def test_history_entry_rejects_buckets_that_do_not_add_up():
    with pytest.raises(ValidationError, match="total"):
        SyncHistoryEntry(**entry(total=11))
    # a running entry may have widgets still in flight
    SyncHistoryEntry(**entry(total=11, status="running", ended_at=None))
    with pytest.raises(ValidationError):
        SyncHistoryEntry(**entry(total=9, status="running"))


@pytest.mark.parametrize("field, value", [("status", "ok"), ("trigger", "cron")])
def test_history_entry_rejects_unknown_status_and_trigger(field, value):
    with pytest.raises(ValidationError):
        SyncHistoryEntry(**entry(**{field: value}))


# ---------------------------------------------------------------- build_history_entry

def grouping_of(raws: list, complete: bool = True):
    widgets, rejects = parse_widgets(raws)
    return group_widgets(WidgetFetch(store="demo", website_id="site", widgets=widgets, rejects=rejects,
                                     complete=complete))


def widget(wid: str, type_: int, **extra) -> dict:
    return {"id": wid, "type": type_, "name": f"W {wid}", **extra}


RAWS = [widget("r1", 1), widget("r2", 1), widget("r3", 1), widget("m1", 6), widget("b1", 5),
        widget("modal", 2), widget("bad", 1, name="")]


def result(type_key: str, total: int, **counts) -> TypeSyncResult:
    return TypeSyncResult(type_key=type_key, metaobject_type=f"pa_{type_key}_widget", total=total, **counts)


def build(grouping, results, **kw):
    return build_history_entry(grouping=grouping, results=results, run_id="run-1", trigger="manual",
                               started_at=STARTED, ended_at=ENDED, **kw)


def test_history_entry_sums_grouping_and_results():
    g = grouping_of(RAWS)
    err = WidgetError(widget_id="r3", type="recommendation", code="TAKEN", message="handle taken")
    e = build(g, [result("recommendation", 3, created=1, unchanged=1, failed=1, errors=[err]),
                  result("merchandising", 1, updated=1, deleted=2),
                  result("bundle", 1, unchanged=1)])
    assert (e.total, e.synced, e.unchanged, e.skipped, e.failed, e.deleted) == (7, 2, 2, 1, 2, 2)
    assert e.total == e.synced + e.unchanged + e.skipped + e.failed
    assert e.status == "partial"
    assert {x.widget_id for x in e.errors} == {"bad", "r3"}
    assert e.store == "demo" and e.ended_at == ENDED


def test_history_entry_all_good_is_success():
    g = grouping_of([widget("r1", 1), widget("modal", 2)])
    e = build(g, [result("recommendation", 1, created=1), result("merchandising", 0), result("bundle", 0)])
    assert e.status == "success" and (e.synced, e.skipped, e.failed) == (1, 1, 0)


def test_missing_type_results_count_as_not_synced():
    g = grouping_of(RAWS)
    e = build(g, [result("merchandising", 1, updated=1)], run_failed=True)
    assert e.failed == 1 + 3 + 1          # the reject, three recommendations, one bundle
    assert e.total == e.synced + e.unchanged + e.skipped + e.failed
    not_synced = sorted(x.widget_id for x in e.errors if x.code == "NOT_SYNCED")
    assert not_synced == ["b1", "r1", "r2", "r3"]
    assert e.status == "partial"


def test_everything_failed_is_failed():
    g = grouping_of([widget("r1", 1), widget("b1", 5)])
    check = DefinitionCheck(metaobject_type="pa_recommendation_widget", exists=False)
    e = build(g, [result("recommendation", 1, failed=1, check=check,
                         errors=[WidgetError(widget_id="r1", type="recommendation", code="DEFINITION_MISMATCH",
                                             message=check.describe())])], run_failed=True)
    assert e.status == "failed" and e.failed == 2 and e.synced == 0


def test_pa_fetch_failed_without_grouping():
    e = build(None, [], store="demo", message="PA unavailable")
    assert (e.status, e.total, e.failed) == ("failed", 0, 0)
    assert "PA unavailable" in e.message
    with pytest.raises(ValueError):
        build(None, [])


def test_running_entry_counts_missing_types_as_pending():
    g = grouping_of(RAWS)
    e = build_history_entry(grouping=g, results=[result("bundle", 1, created=1)], run_id="run-1",
                            trigger="sensor", started_at=STARTED, running=True)
    assert e.status == "running" and e.ended_at is None
    assert (e.synced, e.failed, e.skipped) == (1, 1, 1)
    assert e.synced + e.unchanged + e.skipped + e.failed < e.total


def test_inconsistent_results_are_refused():
    g = grouping_of(RAWS)
    with pytest.raises(ValueError, match="does not add up"):
        build(g, [result("recommendation", 3, created=1)])
    with pytest.raises(ValueError, match="grouping has"):
        build(g, [result("bundle", 2, created=2)])


def test_failed_deletes_and_failed_checks_make_a_clean_run_partial():
    g = grouping_of([widget("r1", 1)])
    delete_err = WidgetError(widget_id=None, type="recommendation", code="DELETE_FAILED", message="x")
    e = build(g, [result("recommendation", 1, created=1, delete_failed=1, errors=[delete_err])])
    assert e.status == "partial" and e.failed == 0 and e.errors == [delete_err]
    bad = DefinitionCheck(metaobject_type="pa_bundle_widget", exists=False)
    e = build(g, [result("recommendation", 1, created=1), result("bundle", 0, check=bad)])
    assert e.status == "partial"


def test_dry_run_reports_planned_writes():
    g = grouping_of([widget("r1", 1), widget("r2", 1), widget("r3", 1)])
    e = build(g, [result("recommendation", 3, dry_run=True, planned_creates=1, planned_updates=1, unchanged=1,
                         planned_deletes=4)])
    assert e.dry_run is True and (e.synced, e.unchanged, e.deleted) == (2, 1, 4)
    assert "dry run" in e.message
    assert e.status == "success"


def test_incomplete_fetch_and_refused_deletes_are_explained():
    g = grouping_of([widget("r1", 1)], complete=False)
    e = build(g, [result("recommendation", 1, unchanged=1, delete_refused="fetch incomplete: 3 kept")])
    assert "PA fetch incomplete" in e.message and "fetch incomplete: 3 kept" in e.message


def test_max_errors_caps_the_list():
    g = grouping_of([widget(f"r{i}", 1, name="") for i in range(5)])
    e = build(g, [result("recommendation", 0)], max_errors=2)
    assert e.failed == 5 and len(e.errors) == 2 and "3 more errors" in e.message

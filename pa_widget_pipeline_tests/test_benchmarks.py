"""Tiny versions of every benchmark (benchmarks/), so they keep working: counts only, never time."""

from __future__ import annotations

import pytest

from benchmarks import bulk_vs_batched, dagster_overhead, noop_resync, run, scale, sustained_writes
from benchmarks.common import STANDARD
from benchmarks.naive_client import NaiveClient
from pa_widget_pipeline.sandbox.runner import DEFAULT_API_VERSION, Sandbox


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox() as running:
        yield running


def test_sustained_writes_batched_and_naive_write_everything_with_fewer_requests_batched(sandbox):
    # A 100-point bucket restoring 100/s: 20 writes (200 points) run into it whatever the machine's speed.
    r = sustained_writes.compare(sandbox, 20, bucket=(100.0, 100.0), naive_throttle_sleep=0.05)
    b, n = r["batched"], r["naive"]
    assert (b["written"], b["failed"], b["in_shop"]) == (20, 0, 20)
    assert (n["written"], n["failed"], n["in_shop"]) == (20, 0, 20)
    assert b["points"] == n["points"] == 200  # 10 points a metaobjectUpsert, whoever sends it
    assert b["throttled"] == b["sandbox_throttled"] == 0  # paced: never THROTTLED from a full bucket
    assert n["throttled"] == n["sandbox_throttled"] > 0
    assert n["requests"] == 20 + n["throttled"]  # one request per write, plus one per THROTTLED answer
    assert b["requests"] <= 20 / 2 + 1  # at least two upserts a request (a quarter of the bucket each)
    assert n["steady_state"]["points"] > 0  # the naive client drained the bucket

    summary = sustained_writes.summarize(r, r, r)
    assert {t["name"]: t["met"] for t in summary["targets"]}["failed widgets (batched, every setting)"] is True
    assert "| requests |" in sustained_writes.markdown(summary)


def test_naive_client_counts_a_user_error_as_failed(sandbox):
    from benchmarks.common import add_store, upsert_items

    store = add_store(sandbox, "naive-fail", 0)
    [item] = upsert_items(1)
    store.shop.faults.failing_handles[item.handle] = "INTERNAL_ERROR"
    with NaiveClient(store.admin_url, DEFAULT_API_VERSION, store.token) as client:
        assert client.upsert("pa_recommendation_widget", item) is False
    assert (client.stats.written, client.stats.failed, client.stats.requests) == (0, 1, 1)


def test_noop_resync_second_sync_writes_nothing(sandbox):
    r = noop_resync.measure(sandbox, 45, bucket=STANDARD, bulk_threshold=10, bulk_poll_seconds=0.05)
    first, second = r["first"], r["second"]
    # 15 writes a type fit in the bucket, so they go batched although over bulk_threshold.
    assert (first["synced"], first["failed"], first["shopify_writes"], first["bulk_operations"]) == (45, 0, 45, 0)
    assert (second["synced"], second["unchanged"], second["failed"]) == (0, 45, 0)
    assert (second["shopify_writes"], second["bulk_operations"], second["status"]) == (0, 0, "success")
    # per type: its definition (which carries metaobjectsCount) and one page of metaobjects: 15 fit the bucket
    assert (second["shopify_requests"], second["bulk_queries"]) == (6, 0)
    assert second["shopify_points"] > 0 and second["pa_requests"] > 0

    summary = noop_resync.summarize(r, r)
    assert all(t["met"] for t in summary["targets"])
    assert "second sync (no-op)" in noop_resync.markdown(summary)


def test_noop_resync_reads_in_bulk_past_the_bucket(sandbox):
    # A 25-point bucket: paging 15 metaobjects (30 points) does not fit it, so with bulk_read_threshold=10 the
    # second sync reads each type with one bulk query (and the first writes each in bulk: 15 x 12 > 25).
    r = noop_resync.measure(sandbox, 45, bucket=(25.0, 1000.0), bulk_threshold=10, bulk_poll_seconds=0.05,
                            bulk_read_threshold=10)
    first, second = r["first"], r["second"]
    assert (first["synced"], first["failed"], first["bulk_operations"], first["bulk_queries"]) == (45, 0, 3, 0)
    assert (second["synced"], second["unchanged"], second["failed"], second["status"]) == (0, 45, 0, "success")
    assert (second["shopify_writes"], second["bulk_operations"]) == (0, 0)
    assert (second["bulk_queries"], second["bulk_read_fallbacks"]) == (3, 0)
    assert "bulk queries (reads)" in noop_resync.markdown(noop_resync.summarize(r, r))


def test_bulk_vs_batched_both_write_everything_and_bulk_spends_almost_no_points(sandbox):
    r = bulk_vs_batched.measure(sandbox, 30, bulk_threshold=10, poll_seconds=0.05)
    bulk, batched = r["bulk"], r["batched"]
    assert (bulk["written"], bulk["failed"], bulk["in_shop"]) == (30, 0, 30)
    assert (batched["written"], batched["failed"], batched["in_shop"]) == (30, 0, 30)
    assert (bulk["bulk_operations"], bulk["bulk_fallbacks"], batched["bulk_operations"]) == (1, 0, 0)
    assert 300 <= batched["points"] < 320 and bulk["points"] < 100  # 10 a write, plus the definition read
    assert batched["requests"] == 3  # the definition, then 25 + 5 aliased upserts
    assert (r["auto_chose"], r["auto"]["written"]) == ("batched", 30)  # 30 writes fit in a full Plus bucket

    summary = bulk_vs_batched.summarize([r])
    assert "| 30 |" in bulk_vs_batched.markdown(summary)


def test_dagster_overhead_both_paths_sync_the_same_widgets(sandbox):
    r = dagster_overhead.measure(sandbox, stores=2, widgets=6, warm=False)
    assert r["dagster"]["runs"] == 2
    for path in ("dagster", "plain"):
        assert (r[path]["synced"], r[path]["failed"], r[path]["statuses"]) == (12, 0, ["success"])

    summary = dagster_overhead.summarize(r, r)
    assert all(t["met"] for t in summary["targets"])
    assert "overhead per partition" in dagster_overhead.markdown(summary)


def test_scale_child_process_syncs_and_reports_its_peak_memory(sandbox):
    r = scale.measure(sandbox, 30, timeout=120)
    assert (r["total"], r["synced"], r["failed"], r["in_shop"], r["status"]) == (30, 30, 0, 30, "success")
    assert r["aborted"] == {}
    assert r["peak_rss_kib"] >= r["after_imports_rss_kib"] > 0

    summary = scale.summarize([r, r])
    assert [t["met"] for t in summary["targets"]] == [True, True]
    assert summary["growth"][0]["widgets_x"] == 1.0


def test_report_renders_every_benchmark_and_the_targets(tmp_path):
    targets = [{"name": "writes", "target": "0", "value": 0, "met": True},
               {"name": "ratio", "target": ">= 0.9", "value": 0.5, "met": False}]
    report = {"command": "python -m benchmarks.run --only x", "quick": True, "machine": run.machine_info(),
              "results": {"noop_resync": {"error": "RuntimeError: boom", "targets": targets, "seconds": 1.0}}}
    text = run.render_markdown(report, {"noop_resync": noop_resync})
    assert "| noop_resync | ratio | >= 0.9 | 0.5 | **no** |" in text
    assert "Failed: `RuntimeError: boom`" in text
    machine = report["machine"]
    assert machine["cpu_count"] and machine["python"] and machine["dagster"] and machine["httpx"]


def test_run_rejects_an_unknown_benchmark_name(capsys):
    with pytest.raises(SystemExit):
        run.main(["--only", "nope"])
    assert "invalid choice" in capsys.readouterr().err

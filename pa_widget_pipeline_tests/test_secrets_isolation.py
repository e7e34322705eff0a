"""Issue 7, secrets and isolation: no token or secret leaks into anything an operator (or an attacker reading logs)
sees; each store's credentials reach only that store's servers; the production instance config keeps one run
per store while different stores run side by side."""

from __future__ import annotations

import io
import json
import shutil
import traceback
import uuid
from pathlib import Path

import pytest
from dagster import DagsterEvent, DagsterEventType, DagsterInstance, DagsterRun, DagsterRunStatus
from dagster._serdes import serialize_value

from pa_widget_pipeline.cli import main as cli_main
from pa_widget_pipeline.defs.history import read_history
from pa_widget_pipeline.defs.launch import sync_stores
from pa_widget_pipeline.pa.client import PAClient
from pa_widget_pipeline.pa.errors import PAConfigError
from pa_widget_pipeline.shopify.errors import ShopifyAuthError
from pa_widget_pipeline.shopify.metaobjects import make_shopify_client

REPO = Path(__file__).resolve().parents[1]


def _exception_texts(exc: BaseException) -> str:
    return "\n".join([str(exc), repr(exc), *traceback.format_exception(exc)])


def test_no_secret_in_logs_events_metadata_history_or_errors(stores, dagster_instance, sandbox, caplog, capfd,
                                                              monkeypatch):
    caplog.set_level("DEBUG")
    clean = stores.add("clean", types=[1, 6, 5])
    bad_token = stores.add("bad-token", types=[1, 6])
    bad_secret = stores.add("bad-pa-secret", types=[1])
    # Failure paths: Shopify answers 401 to a token it does not know; PA refuses a wrong client secret.
    wrong_token = f"shpat_wrong_{uuid.uuid4().hex}"
    wrong_secret = f"csecret-wrong-{uuid.uuid4().hex}"
    monkeypatch.setenv("BAD_TOKEN_SHOPIFY_TOKEN", wrong_token)
    monkeypatch.setenv("BAD_PA_SECRET_PA_CLIENT_SECRET", wrong_secret)

    out = io.StringIO()
    entries = sync_stores(dagster_instance, ["clean", "bad-token", "bad-pa-secret"], out=out, verbose=True)
    assert [e.status for e in entries] == ["success", "failed", "failed"]
    assert "HTTP 401" in entries[1].message and "invalid_client" in entries[2].message

    # Direct client errors on the same failure paths, with their whole tracebacks.
    registry_entry = {e["key"]: e for e in stores.entries}
    pa_entry = registry_entry["bad-pa-secret"]
    with pytest.raises(PAConfigError) as pa_error:
        with PAClient(store="bad-pa-secret", api_url=pa_entry["pa_api_url"], auth_url=pa_entry["pa_auth_url"],
                      website_id=bad_secret.website_id, client_id=bad_secret.env["BAD_PA_SECRET_PA_CLIENT_ID"],
                      client_secret=wrong_secret, retry_budget_seconds=1) as client:
            client_repr = repr(client)
            client.fetch_widgets()
    shop_client = make_shopify_client(store="bad-token", admin_url=registry_entry["bad-token"]["shopify_admin_url"],
                                      api_version="2025-10", access_token=wrong_token)
    with pytest.raises(ShopifyAuthError) as shop_error:
        shop_client.definition_by_type("pa_bundle_widget")
    shop_repr = repr(shop_client.transport)
    shop_client.close()
    assert cli_main(["history", "--json"]) == 0

    secrets = {
        "clean Shopify token": clean.env["CLEAN_SHOPIFY_TOKEN"],
        "clean PA secret": clean.env["CLEAN_PA_CLIENT_SECRET"],
        "wrong Shopify token": wrong_token,
        "real Shopify token of bad-token": bad_token.env["BAD_TOKEN_SHOPIFY_TOKEN"],
        "bad-token PA secret": bad_token.env["BAD_TOKEN_PA_CLIENT_SECRET"],
        "wrong PA secret": wrong_secret,
        "real PA secret of bad-pa-secret": bad_secret.env["BAD_PA_SECRET_PA_CLIENT_SECRET"],
        "bad-pa-secret Shopify token": bad_secret.env["BAD_PA_SECRET_SHOPIFY_TOKEN"],
    }
    issued = list(sandbox.pa._tokens)  # the PA access tokens the runs were given
    assert len(issued) >= 2
    secrets.update({f"PA access token {i}": token for i, token in enumerate(issued)})

    captured = capfd.readouterr()
    places = {
        "python logging": "\n".join([caplog.text, *(repr(r.args) for r in caplog.records),
                                     *(r.getMessage() for r in caplog.records)]),
        "stdout/stderr": captured.out + captured.err,
        "sync progress output": out.getvalue(),
        "history": json.dumps([e.model_dump(mode="json") for e in read_history(dagster_instance, limit=50)]),
        "exceptions": _exception_texts(pa_error.value) + _exception_texts(shop_error.value),
        "reprs": client_repr + shop_repr,
    }
    for entry in entries:
        records = dagster_instance.all_logs(entry.run_id)
        assert any(r.dagster_event and r.dagster_event.event_type_value == "STEP_FAILURE" for r in records) \
            or entry.status == "success"
        # Every event whole: message, metadata, error info (exception text and stack) of step failures.
        places[f"event log of {entry.store}"] = "\n".join(serialize_value(r) for r in records)
        places[f"run of {entry.store}"] = serialize_value(dagster_instance.get_run_by_id(entry.run_id))
    assert "invalid_client" in places["event log of bad-pa-secret"]  # the failure is there, just not the secret
    assert "HTTP 401" in places["event log of bad-token"]
    for place, text in places.items():
        for name, value in secrets.items():
            assert value not in text, f"{name} leaked into {place}"


def test_two_stores_each_server_sees_only_that_stores_credentials_and_website(stores, dagster_instance, sandbox):
    one = stores.add("store-one", types=[1, 6, 5])
    two = stores.add("store-two", types=[1, 5])
    entries = sync_stores(dagster_instance, ["store-one", "store-two"], out=io.StringIO())
    assert [e.status for e in entries] == ["success", "success"]

    client_of = {one.website_id: one.env["STORE_ONE_PA_CLIENT_ID"], two.website_id: two.env["STORE_TWO_PA_CLIENT_ID"]}
    widget_requests = [r for r in sandbox.pa.requests if r.path == "/3.0/widgets"]
    assert {r.website_id for r in widget_requests} == set(client_of)
    for r in widget_requests:
        assert r.client_id == client_of[r.website_id] and r.status == 200
    token_requests = [r for r in sandbox.pa.requests if r.path == "/auth/connect/token"]
    assert sorted(r.client_id for r in token_requests) == sorted(client_of.values())

    seen = sandbox.shopify.requests
    assert {r.shop for r in seen} == {"store-one", "store-two"}
    assert all(r.token_of == r.shop for r in seen), [r for r in seen if r.token_of != r.shop]
    assert one.shop.count("pa_bundle_widget") == 1 and two.shop.count("pa_merchandising_widget") == 0


@pytest.mark.postgres
def test_production_dagster_yaml_one_run_per_store_and_stores_side_by_side(pg_database, tmp_path, monkeypatch):
    """Unit-level: the repo's dagster.yaml as the coordinator sees it, and the QueuedRunCoordinatorDaemon's own
    dequeue choice over queued runs of stores A, A, B (no daemon process; the lead's full-stack test runs one)."""
    from dagster._core.remote_origin import RegisteredCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin
    from dagster._core.run_coordinator import QueuedRunCoordinator
    from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon

    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("DAGSTER_PG_URL", pg_database)
    with DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
        assert instance.run_monitoring_enabled
        concurrency = instance.get_concurrency_config()
        queue = concurrency.run_queue_config
        assert queue.max_concurrent_runs == 8
        assert list(queue.tag_concurrency_limits) == [
            {"key": "dagster/partition", "value": {"applyLimitPerUniqueValue": True}, "limit": 1}
        ]
        assert concurrency.pool_config.default_pool_limit == 4

        origin = RemoteJobOrigin(
            repository_origin=RemoteRepositoryOrigin(RegisteredCodeLocationOrigin("pa_widget_pipeline"),
                                                     "__repository__"),
            job_name="sync_store")

        def queue_run(store: str) -> DagsterRun:
            return instance.add_run(DagsterRun(job_name="sync_store", run_id=str(uuid.uuid4()),
                                               status=DagsterRunStatus.QUEUED, tags={"dagster/partition": store},
                                               remote_job_origin=origin))

        first_a, second_a, first_b = queue_run("store-a"), queue_run("store-a"), queue_run("store-b")
        daemon = QueuedRunCoordinatorDaemon(interval_seconds=1)
        chosen = daemon._get_runs_to_dequeue(instance, concurrency, fixed_iteration_time=None)
        assert [r.run_id for r in chosen] == [first_a.run_id, first_b.run_id]  # the second A waits

        # While A's first run is in flight, its second stays queued; another store's run is let through.
        for run in (first_a, first_b):  # what launching records: the runs start
            instance.report_dagster_event(
                DagsterEvent(event_type_value=DagsterEventType.RUN_START.value, job_name="sync_store"),
                run_id=run.run_id)
        assert instance.get_run_by_id(first_a.run_id).status == DagsterRunStatus.STARTED
        second_b = queue_run("store-b")
        third_c = queue_run("store-c")
        chosen = daemon._get_runs_to_dequeue(instance, concurrency, fixed_iteration_time=None)
        assert [r.run_id for r in chosen] == [third_c.run_id]
        assert {second_a.run_id, second_b.run_id}.isdisjoint(r.run_id for r in chosen)

"""The production shape end to end: PostgreSQL, dagster-webserver, dagster-daemon and the code location as a gRPC
server, each a real process on loopback, configured by a copy of the repo's dagster.yaml.

The sandbox (PA + Shopify) runs in this test process on free ports; the code server and the run workers it starts
reach it over HTTP and read the store registry and the store secrets from their environment. Everything is driven
the way a data engineer drives it: launches and backfills through the webserver's GraphQL API (what the UI sends),
the history through the `pa-widget-sync` command, run times from the instance.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

from pa_widget_pipeline.defs.history import TRIGGER_TAG
from pa_widget_pipeline_tests.harness import StoreHarness

pytestmark = [pytest.mark.fullstack, pytest.mark.postgres, pytest.mark.timeout(270)]

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LOCATION = "pa_widget_pipeline"
REPOSITORY = "__repository__"  # the repository name Dagster gives a Definitions object
SYNC_ASSETS = ["pa_widgets", "widgets_by_type", "recommendation_metaobjects", "merchandising_metaobjects",
               "bundle_metaobjects"]
TERMINAL = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}
STORE_KEYS = ["north", "south", "east"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def poll(what: str, check, timeout: float, every: float = 0.5):
    """Call `check` until it returns something truthy; fail saying what never happened."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


class Stack:
    """The processes of one deployment; logs in files, stopped by their own ids (terminate, then kill)."""

    def __init__(self, home: Path, env: dict[str, str]):
        self.home = home
        self.env = env
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = open(self.home / f"{name}.log", "wb")
        proc = subprocess.Popen(
            argv, cwd=self.home, env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: the run workers it spawns go with it
        )
        log.close()
        self.procs[name] = proc
        return proc

    def assert_alive(self) -> None:
        dead = {n: p.returncode for n, p in self.procs.items() if p.poll() is not None}
        assert not dead, f"processes exited early: {dead}"

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 15
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        for proc in self.procs.values():  # anything its group left behind (a run worker mid-run)
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def dump_logs(self, tail: int = 12000) -> None:
        for name in self.procs:
            text = (self.home / f"{name}.log").read_text(errors="replace")
            print(f"\n===== {name} log (last {tail} chars) =====\n{text[-tail:]}", file=sys.stderr)


@pytest.fixture
def fullstack(sandbox, tmp_path, monkeypatch, pg_database, request):
    stores = StoreHarness(sandbox, tmp_path, monkeypatch)
    for key in STORE_KEYS:
        stores.add(key, types=[1, 6, 5, 2])

    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")  # the production instance config, unchanged
    grpc_port, web_port = free_port(), free_port()
    (home / "workspace.yaml").write_text(
        f"load_from:\n  - grpc_server:\n      host: 127.0.0.1\n      port: {grpc_port}\n"
        f"      location_name: {LOCATION}\n"
    )
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("DAGSTER_PG_URL", pg_database)
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_URL": pg_database,
        "PA_WIDGET_STORES": str(stores.path),
        "PYTHONUNBUFFERED": "1",
    }
    for handle in stores.stores.values():
        env.update(handle.env)

    # The schema, and the stores' partitions added before the daemon starts: the registry sensor then finds no new
    # store and launches nothing by itself (asserted below through its ticks).
    instance = DagsterInstance.from_config(str(home))
    instance.add_dynamic_partitions("stores", STORE_KEYS)

    stack = Stack(home, env)
    try:
        stack.start("code-server", [str(BIN / "dagster"), "api", "grpc", "-m", "pa_widget_pipeline.definitions",
                                    "-h", "127.0.0.1", "-p", str(grpc_port)])
        health = [str(BIN / "dagster"), "api", "grpc-health-check", "-h", "127.0.0.1", "-p", str(grpc_port)]

        def grpc_ready():
            stack.assert_alive()
            return subprocess.run(health, env=env, cwd=home, capture_output=True, timeout=30).returncode == 0

        poll("the gRPC code server", grpc_ready, timeout=90, every=1)
        stack.start("webserver", [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(web_port),
                                  "-w", str(home / "workspace.yaml")])
        stack.start("daemon", [str(BIN / "dagster-daemon"), "run", "-w", str(home / "workspace.yaml")])

        def web_ready():
            stack.assert_alive()
            try:
                return httpx.get(f"http://127.0.0.1:{web_port}/server_info", timeout=5).status_code == 200
            except httpx.HTTPError:
                return False

        poll("dagster-webserver /server_info", web_ready, timeout=90)
        needed = {"SENSOR", "SCHEDULER", "QUEUED_RUN_COORDINATOR", "BACKFILL"}

        def daemon_ready():
            stack.assert_alive()
            return needed <= set(instance.get_daemon_heartbeats())

        poll("dagster-daemon heartbeats", daemon_ready, timeout=90)
        yield stack, instance, stores, web_port
    except BaseException:
        stack.dump_logs()
        raise
    finally:
        stack.stop()
        instance.dispose()


def graphql(port: int, query: str, variables: dict | None = None) -> dict:
    response = httpx.post(f"http://127.0.0.1:{port}/graphql", json={"query": query, "variables": variables or {}},
                          timeout=30)
    response.raise_for_status()
    body = response.json()
    assert not body.get("errors"), body["errors"]
    return body["data"]


def wait_runs(instance: DagsterInstance, run_ids: list[str], timeout: float) -> dict:
    def done():
        runs = {r.run_id: r for r in instance.get_runs(RunsFilter(run_ids=run_ids))}
        return runs if len(runs) == len(run_ids) and all(r.status in TERMINAL for r in runs.values()) else None

    return poll(f"runs {run_ids} to finish", done, timeout=timeout)


LAUNCH_BACKFILL = """
mutation LaunchPartitionBackfill($backfillParams: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $backfillParams) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on PartitionKeysNotFoundError { message }
    ... on InvalidSubsetError { message }
    ... on UnauthorizedError { message }
  }
}
"""

SENSOR_TICKS = """
query SensorTicks($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    __typename
    ... on Sensor { sensorState { status ticks(limit: 5) { status skipReason error { message } } } }
  }
}
"""


def sensor_ticks(port: int, name: str) -> list[dict]:
    data = graphql(port, SENSOR_TICKS, {"selector": {
        "repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "sensorName": name}})
    return data["sensorOrError"]["sensorState"]["ticks"]


def test_ui_launches_backfill_history_and_one_run_per_store_on_the_production_stack(fullstack, sandbox):
    from dagster_graphql import DagsterGraphQLClient

    stack, instance, stores, web_port = fullstack
    client = DagsterGraphQLClient("127.0.0.1", port_number=web_port)
    try:
        # (a) One store's partition, as the launchpad of the partitioned `sync_store` job sends it: the job, and
        # the partition as the dagster/partition tag (no run config: the defaults).
        manual_id = client.submit_job_execution(
            "sync_store", repository_location_name=LOCATION, repository_name=REPOSITORY,
            tags={"dagster/partition": "north"},
        )
        manual = wait_runs(instance, [manual_id], timeout=90)[manual_id]
        assert manual.status == DagsterRunStatus.SUCCESS
        assert client.get_run_status(manual_id) == DagsterRunStatus.SUCCESS
        assert stores.stores["north"].shop.count("pa_recommendation_widget") == 1

        # (b) A backfill of several partitions, as the asset graph's "Materialize → backfill" sends it: an asset
        # backfill (assetSelection + partitionNames, no partition-set selector). The daemon's backfill loop
        # submits one run per partition to the queue.
        data = graphql(web_port, LAUNCH_BACKFILL, {"backfillParams": {
            "partitionNames": STORE_KEYS,
            "assetSelection": [{"path": [name]} for name in SYNC_ASSETS],
            "fromFailure": False,
            "tags": [],
        }})
        launched = data["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        backfill_id = launched["backfillId"]

        def backfill_runs():
            runs = instance.get_runs(RunsFilter(tags={"dagster/backfill": backfill_id}))
            return runs if len(runs) == len(STORE_KEYS) and all(r.status in TERMINAL for r in runs) else None

        runs = poll(f"backfill {backfill_id}'s runs", backfill_runs, timeout=120)
        assert sorted(r.tags["dagster/partition"] for r in runs) == sorted(STORE_KEYS)
        assert {r.status for r in runs} == {DagsterRunStatus.SUCCESS}
        backfill_ids = {r.run_id for r in runs}

        # (d) Two runs of one store and one of another, submitted at once, each lasting a few seconds (Shopify
        # latency). The queued run coordinator's dagster/partition limit holds the second "north" run back while
        # "south" runs alongside the first.
        for key in ("north", "south"):
            stores.stores[key].shop.faults.latency_seconds = 0.3
        burst = [
            client.submit_job_execution("sync_store", repository_location_name=LOCATION,
                                        repository_name=REPOSITORY, tags={"dagster/partition": key})
            for key in ("north", "north", "south")
        ]
        finished = wait_runs(instance, burst, timeout=120)
        assert {r.status for r in finished.values()} == {DagsterRunStatus.SUCCESS}
        records = {r.dagster_run.run_id: r for r in instance.get_run_records(RunsFilter(run_ids=burst))}
        a1, a2, b = (records[run_id] for run_id in burst)
        spans = {name: (r.start_time, r.end_time) for name, r in (("a1", a1), ("a2", a2), ("b", b))}
        assert all(start and end and start < end for start, end in spans.values()), spans
        (first_start, first_end), (second_start, second_end) = sorted([spans["a1"], spans["a2"]])
        assert first_end <= second_start, f"two runs of one store overlapped: {spans}"
        b_start, b_end = spans["b"]
        assert any(b_start < end and start < b_end for start, end in (spans["a1"], spans["a2"])), (
            f"the other store's run did not run alongside store north's: {spans}"
        )

        # (c) The history from PostgreSQL through the CLI, in a process of its own.
        result = subprocess.run(
            [str(BIN / "pa-widget-sync"), "history", "--json", "--limit", "50"],
            env=stack.env, cwd=stack.home, capture_output=True, text=True, timeout=60,
        )
        assert result.returncode == 0, result.stderr
        entries = {e["run_id"]: e for e in json.loads(result.stdout)}
        assert (entries[manual_id]["store"], entries[manual_id]["trigger"], entries[manual_id]["status"]) == (
            "north", "manual", "success"
        )
        assert (entries[manual_id]["total"], entries[manual_id]["synced"], entries[manual_id]["skipped"]) == (4, 3, 1)
        assert sorted((entries[i]["store"], entries[i]["trigger"], entries[i]["status"]) for i in backfill_ids) == [
            (key, "backfill", "success") for key in sorted(STORE_KEYS)
        ]
        # the second runs found nothing to change
        assert [(entries[i]["trigger"], entries[i]["unchanged"]) for i in burst] == [("manual", 3)] * 3

        # Nothing launched by the daemon on its own: the registry sensor had no new store (partitions were added
        # first), and its ticks and the definition-fix sensor's ran cleanly against PostgreSQL.
        registry_ticks = poll("a store_registry_sensor tick", lambda: sensor_ticks(web_port, "store_registry_sensor"),
                              timeout=30)
        assert registry_ticks[0]["status"] == "SKIPPED" and "no new stores" in registry_ticks[0]["skipReason"]
        fix_ticks = poll("a definition_fix_sensor tick", lambda: sensor_ticks(web_port, "definition_fix_sensor"),
                         timeout=30)
        assert fix_ticks[0]["status"] == "SKIPPED", fix_ticks[0]
        mine = {manual_id, *backfill_ids, *burst}
        others = [r for r in instance.get_runs() if r.run_id not in mine]
        assert all(r.tags.get(TRIGGER_TAG) != "sensor" for r in others), [r.tags for r in others]
    except BaseException:
        stack.dump_logs()
        raise

"""The pa-widget-sync command as a user runs it: separate processes, real ports."""

import json
import os
import signal
import socket
import subprocess
import sys

import httpx
import pytest

from pa_widget_pipeline.sandbox.demo import DEMO_PA_PORT, DEMO_SHOPIFY_PORT, DEMO_STORES

CLI = [sys.executable, "-m", "pa_widget_pipeline.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_busy(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_sandbox_command_serves_both_apis_until_stopped():
    pa_port, shopify_port = free_port(), free_port()
    proc = subprocess.Popen(
        [*CLI, "sandbox", "--pa-port", str(pa_port), "--shopify-port", str(shopify_port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        lines = []
        while not any("Serving until Ctrl-C" in line for line in lines):
            line = proc.stdout.readline()
            assert line, "sandbox exited early:\n" + "".join(lines)
            lines.append(line)
        banner = "".join(lines)
        assert f"http://127.0.0.1:{pa_port}" in banner and f"http://127.0.0.1:{shopify_port}" in banner
        healthy = DEMO_STORES[0]
        assert f"export DEMO_HEALTHY_SHOPIFY_TOKEN={healthy.shopify_token}" in banner

        token = httpx.post(
            f"http://127.0.0.1:{pa_port}/auth/connect/token",
            data={"client_id": healthy.pa_client_id, "client_secret": healthy.pa_client_secret,
                  "grant_type": "client_credentials"},
        ).json()["access_token"]
        page = httpx.get(
            f"http://127.0.0.1:{pa_port}/3.0/widgets",
            params={"websiteId": healthy.website_id, "page": 1, "pageSize": 5},
            headers={"Authorization": f"Bearer {token}"},
        ).json()
        assert page["pagination"]["totalCount"] == len(healthy.widget_types)
        answer = httpx.post(
            f"http://127.0.0.1:{shopify_port}/shops/{healthy.key}/admin/api/2025-10/graphql.json",
            json={"query": '{ metaobjectDefinitionByType(type: "pa_bundle_widget") { type } }'},
            headers={"X-Shopify-Access-Token": healthy.shopify_token},
        ).json()
        assert answer["data"]["metaobjectDefinitionByType"]["type"] == "pa_bundle_widget"
        assert "throttleStatus" in answer["extensions"]["cost"]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0


@pytest.mark.skipif(port_busy(DEMO_PA_PORT) or port_busy(DEMO_SHOPIFY_PORT), reason="demo ports in use")
def test_demo_command_shows_success_success_partial_and_keeps_its_history(tmp_path):
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "home")}
    env.pop("PA_WIDGET_STORES", None)
    demo = subprocess.run([*CLI, "demo", "--json"], env=env, capture_output=True, text=True, timeout=240)
    assert demo.returncode == 0, demo.stderr[-3000:]
    printed = demo.stdout[demo.stdout.index("["): demo.stdout.rindex("]") + 1]
    entries = json.loads(printed)
    assert [(e["store"], e["status"]) for e in entries] == [
        ("demo-healthy", "success"), ("demo-large", "success"), ("demo-broken-bundle", "partial")
    ]
    assert "pa_bundle_widget" in entries[2]["message"] and "slots" in entries[2]["message"]
    assert "[2/3 demo-large] recommendation_metaobjects: done" in demo.stderr

    history = subprocess.run([*CLI, "history", "--json"], env=env, capture_output=True, text=True, timeout=60)
    assert [e["run_id"] for e in json.loads(history.stdout)] == [e["run_id"] for e in entries]

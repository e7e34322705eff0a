import os
import uuid

import pytest

from pa_widget_pipeline.sandbox.runner import Sandbox
from pa_widget_pipeline_tests.harness import StoreHarness


@pytest.fixture
def sandbox():
    with Sandbox() as running:
        yield running


@pytest.fixture
def stores(sandbox, tmp_path, monkeypatch) -> StoreHarness:
    return StoreHarness(sandbox, tmp_path, monkeypatch)


@pytest.fixture
def dagster_instance(tmp_path, monkeypatch):
    from dagster import instance_for_test

    home = tmp_path / "dagster_home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with instance_for_test(temp_dir=str(home)) as instance:
        yield instance


@pytest.fixture
def pg_url():
    url = os.environ.get("PA_WIDGET_PG_URL")
    if not url:
        if os.environ.get("CI"):
            pytest.fail("CI must provide PostgreSQL in PA_WIDGET_PG_URL (see .ci/run)")
        pytest.skip("no PostgreSQL: set PA_WIDGET_PG_URL, or run scripts/test.sh which starts one")
    return url


@pytest.fixture
def pg_database(pg_url):
    """A database of its own for one test, dropped afterwards."""
    import psycopg2

    name = f"pa_widget_test_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(pg_url)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    base = pg_url.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with admin.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
            )
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.close()

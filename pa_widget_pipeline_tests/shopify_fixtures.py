"""Reusable Shopify sandbox fixtures: a running sandbox on a loopback port with one shop whose three contract
definitions exist. Import the fixtures into a test module (or conftest.py) to use them:

    from pa_widget_pipeline_tests.shopify_fixtures import shopify_sandbox, fake_clock  # noqa: F401
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any, Iterator

import httpx
import pytest

from pa_widget_pipeline.sandbox.server import ServerThread
from pa_widget_pipeline.sandbox.shopify_server import ShopifySandbox, ShopState
from pa_widget_pipeline.sync.contract import CONTRACT_FIELDS, DEFAULT_METAOBJECT_TYPES
from pa_widget_pipeline_tests.fakes import FakeClock

SHOP_KEY = "test-shop"
ACCESS_TOKEN = "shpat_sandbox_test_token_0001"
API_VERSION = "2025-10"
RECOMMENDATION_TYPE = DEFAULT_METAOBJECT_TYPES["recommendation"]


@dataclass
class RunningShopify:
    sandbox: ShopifySandbox
    shop: ShopState
    server: ServerThread
    shop_key: str = SHOP_KEY
    access_token: str = ACCESS_TOKEN
    api_version: str = API_VERSION

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def admin_url(self) -> str:
        """The store's admin base (what a store config's admin_url holds)."""
        return f"{self.server.url}/shops/{self.shop_key}"

    @property
    def graphql_url(self) -> str:
        return f"{self.admin_url}/admin/api/{self.api_version}/graphql.json"

    def post(self, client: httpx.Client, query: str, variables: dict | None = None, *,
             token: str | None = None) -> httpx.Response:
        """POST one GraphQL document the way a client would."""
        headers = {"Content-Type": "application/json",
                   "X-Shopify-Access-Token": self.access_token if token is None else token}
        return client.post(self.graphql_url, json={"query": query, "variables": variables or {}}, headers=headers)

    def gql(self, client: httpx.Client, query: str, variables: dict | None = None) -> dict[str, Any]:
        """POST and return the JSON body (asserting HTTP 200)."""
        response = self.post(client, query, variables)
        assert response.status_code == 200, response.text
        return response.json()


def create_contract_definitions(shop: ShopState, types: Any = None) -> dict[str, dict]:
    """Create the pipeline's metaobject definitions (CONTRACT_FIELDS) on `shop`; returns type -> definition."""
    types = list(types if types is not None else DEFAULT_METAOBJECT_TYPES.values())
    return {t: shop.create_definition(t, list(CONTRACT_FIELDS), name=t.replace("_", " ").title(),
                                      display_name_key="name") for t in types}


def contract_values(widget_id: str = "W1", **overrides: str) -> dict[str, str]:
    """A valid set of contract field values for one widget."""
    values = {
        "pa_widget_id": widget_id,
        "name": f"Widget {widget_id}",
        "location": "home",
        "is_active": "true",
        "number_of_slots": "4",
        "header": '{"title": "You may like"}',
        "slots": "[]",
        "routes": '["/"]',
        "styles": "{}",
        "pa_updated_at": "2024-05-01T10:00:00Z",
        "sync_hash": f"hash-{widget_id}",
    }
    values.update(overrides)
    return values


@contextlib.contextmanager
def running_shopify_sandbox(*, clock: Any = None, with_definitions: bool = True, bucket_size: float = 2000.0,
                            restore_rate: float = 100.0) -> Iterator[RunningShopify]:
    """A sandbox with one shop (SHOP_KEY / ACCESS_TOKEN) served over HTTP on a free loopback port."""
    sandbox = ShopifySandbox(clock=clock or time.monotonic)
    shop = sandbox.add_shop(SHOP_KEY, ACCESS_TOKEN, bucket_size=bucket_size, restore_rate=restore_rate)
    if with_definitions:
        create_contract_definitions(shop)
    server = ServerThread(sandbox.app()).start()
    try:
        yield RunningShopify(sandbox=sandbox, shop=shop, server=server)
    finally:
        sandbox.wait_for_bulk(timeout=5)
        server.stop()


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def shopify_sandbox() -> Iterator[RunningShopify]:
    """A running sandbox (real clock) with one shop and the three contract definitions."""
    with running_shopify_sandbox() as running:
        yield running


@pytest.fixture
def shopify_http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10.0) as client:
        yield client

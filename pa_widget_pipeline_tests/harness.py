"""Stores on a running sandbox plus the registry that names them: the set-up most graph tests share."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pa_widget_pipeline.sandbox.demo import contract_field_definitions
from pa_widget_pipeline.sandbox.pa_server import make_widget
from pa_widget_pipeline.sandbox.runner import Sandbox
from pa_widget_pipeline.sync.contract import DEFAULT_METAOBJECT_TYPES


@dataclass
class StoreHandle:
    key: str
    website_id: str
    env: dict[str, str]
    shop: Any  # sandbox ShopState

    @property
    def secrets(self) -> list[str]:
        return list(self.env.values())


def widgets_of_types(website_id: str, types: list[int], start: int = 0) -> list[dict]:
    return [make_widget(start + i, website_id, pa_type) for i, pa_type in enumerate(types)]


class StoreHarness:
    def __init__(self, sandbox: Sandbox, tmp_path: Path, monkeypatch):
        self.sandbox = sandbox
        self.path = tmp_path / "stores.yaml"
        self.monkeypatch = monkeypatch
        self.entries: list[dict[str, Any]] = []
        self.stores: dict[str, StoreHandle] = {}

    def add(
        self,
        key: str,
        widgets: list[dict] | None = None,
        *,
        types: list[int] | None = None,
        bucket_size: float = 2000.0,
        restore_rate: float = 1000.0,
        definitions: bool = True,
        broken: dict[str, str] | None = None,
        **registry_overrides: Any,
    ) -> StoreHandle:
        """A store on both servers. `broken` maps a type key to a contract field left out of its definition."""
        website_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"pa-widget-test/{key}"))
        prefix = key.upper().replace("-", "_")
        env = {
            f"{prefix}_SHOPIFY_TOKEN": f"shpat_{uuid.uuid4().hex}",
            f"{prefix}_PA_CLIENT_ID": f"cid-{uuid.uuid4().hex[:12]}",
            f"{prefix}_PA_CLIENT_SECRET": f"csecret-{uuid.uuid4().hex}",
        }
        if widgets is None:
            widgets = widgets_of_types(website_id, types or [1, 6, 5, 2])
        self.sandbox.pa.add_website(
            website_id, env[f"{prefix}_PA_CLIENT_ID"], env[f"{prefix}_PA_CLIENT_SECRET"], widgets
        )
        shop = self.sandbox.shopify.add_shop(
            key, env[f"{prefix}_SHOPIFY_TOKEN"], bucket_size=bucket_size, restore_rate=restore_rate
        )
        if definitions:
            for type_key, metaobject_type in DEFAULT_METAOBJECT_TYPES.items():
                skip = (broken or {}).get(type_key)
                shop.create_definition(metaobject_type, contract_field_definitions(skip), name=f"PA {type_key}")
        for name, value in env.items():
            self.monkeypatch.setenv(name, value)
        self.entries.append(self.sandbox.registry_entry(key, website_id, prefix, **registry_overrides))
        handle = StoreHandle(key, website_id, env, shop)
        self.stores[key] = handle
        self.write()
        return handle

    def write(self) -> Path:
        Sandbox.write_registry(self.path, self.entries)
        self.monkeypatch.setenv("PA_WIDGET_STORES", str(self.path))
        return self.path


REGISTRY_TEST_ENV = {"TOK": "t", "CID": "c", "CSEC": "s", "TOK2": "t2", "CID2": "c2", "CSEC2": "s2"}


def registry_entry(**overrides: Any) -> dict[str, Any]:
    """A valid registry entry (secrets named as in REGISTRY_TEST_ENV), with `overrides` applied."""
    base = {
        "key": "acme-au",
        "shop_domain": "acme-au.myshopify.com",
        "shopify_api_version": "2025-10",
        "shopify_token_env": "TOK",
        "pa_website_id": "b2a7c9d0-1111-4e2f-8a3b-222233334444",
        "pa_api_url": "https://pa-api.example",
        "pa_auth_url": "https://pa-auth.example",
        "pa_client_id_env": "CID",
        "pa_client_secret_env": "CSEC",
    }
    base.update(overrides)
    return base

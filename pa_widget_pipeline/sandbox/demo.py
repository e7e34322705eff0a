"""Demo stores for the sandbox: a healthy store, a large one, and one whose bundle definition is broken.

A demo sync shows Success, Success and Partial. The credentials below are sandbox-only values that
exist nowhere but in these local servers; the demo command exports them under the variable names
the bundled registry (demo_stores.yaml) expects.
"""

from __future__ import annotations

from dataclasses import dataclass

from pa_widget_pipeline.sandbox.pa_server import PASandbox, make_widget
from pa_widget_pipeline.sandbox.shopify_server import ShopifySandbox
from pa_widget_pipeline.sync.contract import CONTRACT_FIELDS, DEFAULT_METAOBJECT_TYPES

DEMO_PA_PORT = 8789
DEMO_SHOPIFY_PORT = 8790


@dataclass(frozen=True)
class DemoStore:
    key: str
    website_id: str
    env_prefix: str
    widget_types: tuple[int, ...]  # one widget per entry, cycling through PA types
    broken_bundle_field: str | None = None
    bucket_size: float = 2000.0  # Shopify Standard plan
    restore_rate: float = 100.0

    @property
    def env(self) -> dict[str, str]:
        return {
            f"{self.env_prefix}_SHOPIFY_TOKEN": f"shpat_sandbox_{self.key.replace('-', '_')}",
            f"{self.env_prefix}_PA_CLIENT_ID": f"sandbox-client-{self.key}",
            f"{self.env_prefix}_PA_CLIENT_SECRET": f"sandbox-secret-{self.key}",
        }

    @property
    def shopify_token(self) -> str:
        return self.env[f"{self.env_prefix}_SHOPIFY_TOKEN"]

    @property
    def pa_client_id(self) -> str:
        return self.env[f"{self.env_prefix}_PA_CLIENT_ID"]

    @property
    def pa_client_secret(self) -> str:
        return self.env[f"{self.env_prefix}_PA_CLIENT_SECRET"]


ALL_PA_TYPES = (1, 2, 3, 4, 5, 6, 7, 8, 9)

DEMO_STORES: tuple[DemoStore, ...] = (
    DemoStore("demo-healthy", "b2a7c9d0-1111-4e2f-8a3b-222233334444", "DEMO_HEALTHY",
              widget_types=ALL_PA_TYPES * 3),
    DemoStore("demo-large", "c3b8d0e1-2222-4f30-9b4c-333344445555", "DEMO_LARGE",
              widget_types=(1, 6, 5, 1, 6, 1, 2, 1) * 150, bucket_size=20000.0, restore_rate=1000.0),  # Plus
    DemoStore("demo-broken-bundle", "d4c9e1f2-3333-4041-8c5d-444455556666", "DEMO_BROKEN",
              widget_types=(1, 5, 6, 5, 1, 4), broken_bundle_field="slots"),
)


def demo_environment() -> dict[str, str]:
    env: dict[str, str] = {}
    for store in DEMO_STORES:
        env.update(store.env)
    return env


def contract_field_definitions(skip: str | None = None) -> list[dict]:
    return [
        {"key": f.key, "name": f.name or f.key, "type": f.type, "required": f.required}
        for f in CONTRACT_FIELDS
        if f.key != skip
    ]


def demo_widgets(store: DemoStore) -> list[dict]:
    return [make_widget(i, store.website_id, pa_type) for i, pa_type in enumerate(store.widget_types)]


def load_demo(pa: PASandbox, shopify: ShopifySandbox, stores: tuple[DemoStore, ...] = DEMO_STORES) -> None:
    """Register every demo store on both servers, with the contract definitions (one broken where asked)."""
    for store in stores:
        pa.add_website(store.website_id, store.pa_client_id, store.pa_client_secret, demo_widgets(store))
        shop = shopify.add_shop(store.key, store.shopify_token, bucket_size=store.bucket_size,
                                restore_rate=store.restore_rate)
        for type_key, metaobject_type in DEFAULT_METAOBJECT_TYPES.items():
            skip = store.broken_bundle_field if type_key == "bundle" else None
            shop.create_definition(metaobject_type, contract_field_definitions(skip), name=f"PA {type_key} widget")

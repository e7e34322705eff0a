"""Both sandbox servers together, on loopback, plus a registry that points at them."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import yaml

from pa_widget_pipeline.sandbox.pa_server import PASandbox
from pa_widget_pipeline.sandbox.server import ServerThread
from pa_widget_pipeline.sandbox.shopify_server import ShopifySandbox

DEFAULT_API_VERSION = "2025-10"


class Sandbox:
    def __init__(self, *, pa_port: int = 0, shopify_port: int = 0, token_lifetime_seconds: int = 90000,
                 clock: Callable[[], float] = time.monotonic):
        self.pa = PASandbox(token_lifetime_seconds=token_lifetime_seconds)
        self.shopify = ShopifySandbox(clock=clock)
        self._pa_server = ServerThread(self.pa.app(), port=pa_port)
        self._shopify_server = ServerThread(self.shopify.app(), port=shopify_port)

    @property
    def pa_url(self) -> str:
        return self._pa_server.url

    @property
    def shopify_url(self) -> str:
        return self._shopify_server.url

    def admin_url(self, shop_key: str) -> str:
        return f"{self.shopify_url}/shops/{shop_key}"

    def start(self) -> "Sandbox":
        self._pa_server.start()
        try:
            self._shopify_server.start()
        except BaseException:
            self._pa_server.stop()
            raise
        return self

    def stop(self) -> None:
        self._shopify_server.stop()
        self._pa_server.stop()

    def __enter__(self) -> "Sandbox":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def registry_entry(self, key: str, website_id: str, env_prefix: str, **overrides: Any) -> dict[str, Any]:
        """A registry entry for a store served by this sandbox; secrets named as {env_prefix}_*."""
        entry = {
            "key": key,
            "shop_domain": f"{key}.myshopify.com",
            "shopify_api_version": DEFAULT_API_VERSION,
            "shopify_token_env": f"{env_prefix}_SHOPIFY_TOKEN",
            "shopify_admin_url": self.admin_url(key),
            "pa_website_id": website_id,
            "pa_api_url": self.pa_url,
            "pa_auth_url": self.pa_url,
            "pa_client_id_env": f"{env_prefix}_PA_CLIENT_ID",
            "pa_client_secret_env": f"{env_prefix}_PA_CLIENT_SECRET",
        }
        entry.update(overrides)
        return entry

    @staticmethod
    def write_registry(path: str | Path, entries: list[dict[str, Any]]) -> Path:
        path = Path(path)
        path.write_text(yaml.safe_dump({"stores": entries}, sort_keys=False), encoding="utf-8")
        return path

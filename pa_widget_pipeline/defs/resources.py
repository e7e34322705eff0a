"""Resources: the store registry and the two API clients built from it, plus per-run sync options."""

from __future__ import annotations

import os
from typing import Optional

from dagster import ConfigurableResource

from pa_widget_pipeline.pa.client import PAClient
from pa_widget_pipeline.shopify.metaobjects import MetaobjectClient, make_shopify_client
from pa_widget_pipeline.stores import (
    DEMO_REGISTRY_PATH,
    StoreConfig,
    StoreRegistry,
    StoreSecrets,
    load_registry,
    registry_path,
)

PA_RETRY_BUDGET_ENV = "PA_WIDGET_PA_RETRY_BUDGET_SECONDS"
SHOPIFY_RETRY_BUDGET_ENV = "PA_WIDGET_SHOPIFY_RETRY_BUDGET_SECONDS"
DEFAULT_PA_RETRY_BUDGET_SECONDS = 60.0
DEFAULT_SHOPIFY_RETRY_BUDGET_SECONDS = 120.0


def _seconds(configured: Optional[float], env_name: str, default: float) -> float:
    """The configured value; when unset, the environment variable; else the default."""
    if configured is not None:
        return configured
    raw = os.environ.get(env_name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"environment variable {env_name} must be a number of seconds, got {raw!r}") from None
    if value < 0:
        raise ValueError(f"environment variable {env_name} must be >= 0, got {raw!r}")
    return value


class WidgetSyncResource(ConfigurableResource):
    """Where the stores are and how to talk to them. Secrets come from the environment variables the
    registry names, read only when a store's client is built, never stored in config or metadata."""

    registry_path: Optional[str] = None  # None: $PA_WIDGET_STORES, else the bundled demo registry
    bulk_threshold: int = 300  # writes of one type past which bulk mutations are used (when past the bucket)
    bulk_read_threshold: int = 1000  # metaobjects of one type past which reads use a bulk query (ditto)
    pa_page_size: int = 200
    # Retry budgets: None = $PA_WIDGET_PA_RETRY_BUDGET_SECONDS / $PA_WIDGET_SHOPIFY_RETRY_BUDGET_SECONDS, else
    # 60 s / 120 s. The environment lets an operator (or a test) tune a CLI or `dagster dev` run without run config.
    pa_retry_budget_seconds: Optional[float] = None
    shopify_retry_budget_seconds: Optional[float] = None

    def registry(self) -> StoreRegistry:
        return load_registry(self.registry_path, require_secrets=False)

    def store(self, key: str) -> StoreConfig:
        return self.registry().get(key)

    def secrets(self, store: StoreConfig) -> StoreSecrets:
        """From the environment. With the bundled demo registry (loopback sandbox only), the sandbox's own
        demo credentials fill in what the environment lacks, so `dagster dev` beside `pa-widget-sync sandbox`
        works without exports."""
        environ: dict[str, str] = dict(os.environ)
        if registry_path(self.registry_path).resolve() == DEMO_REGISTRY_PATH.resolve():
            from pa_widget_pipeline.sandbox.demo import demo_environment

            environ = {**demo_environment(), **environ}
        return store.secrets(environ)

    def pa_client(self, store: StoreConfig) -> PAClient:
        secrets = self.secrets(store)
        return PAClient(
            store=store.key,
            api_url=store.pa_api_url,
            auth_url=store.pa_auth_url,
            website_id=store.pa_website_id,
            client_id=secrets.pa_client_id,
            client_secret=secrets.pa_client_secret,
            page_size=self.pa_page_size,
            retry_budget_seconds=_seconds(self.pa_retry_budget_seconds, PA_RETRY_BUDGET_ENV,
                                          DEFAULT_PA_RETRY_BUDGET_SECONDS),
        )

    def shopify_client(self, store: StoreConfig) -> MetaobjectClient:
        secrets = self.secrets(store)
        return make_shopify_client(
            store=store.key,
            admin_url=store.admin_url,
            api_version=store.shopify_api_version,
            access_token=secrets.shopify_token,
            bulk_threshold=self.bulk_threshold,
            bulk_read_threshold=self.bulk_read_threshold,
            retry_budget_seconds=_seconds(self.shopify_retry_budget_seconds, SHOPIFY_RETRY_BUDGET_ENV,
                                          DEFAULT_SHOPIFY_RETRY_BUDGET_SECONDS),
        )


class SyncOptions(ConfigurableResource):
    """Per-run switches, set in the launchpad (`resources: {sync_options: {config: ...}}`) or by the CLI."""

    dry_run: bool = False
    allow_mass_delete: bool = False
    rewrite_unchanged: bool = False  # write every widget even when its sync_hash matches (repairs Shopify-side drift)

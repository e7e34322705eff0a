"""Shared pieces of the benchmarks: stores on the sandbox, widgets, clients, and a sampler of the shop's bucket."""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterator

from pa_widget_pipeline.pa.client import PAClient
from pa_widget_pipeline.pa.models import Widget
from pa_widget_pipeline.sandbox.demo import contract_field_definitions
from pa_widget_pipeline.sandbox.pa_server import make_widget
from pa_widget_pipeline.sandbox.runner import DEFAULT_API_VERSION, Sandbox
from pa_widget_pipeline.shopify.metaobjects import MetaobjectClient, make_shopify_client
from pa_widget_pipeline.shopify.models import UpsertItem
from pa_widget_pipeline.sync.contract import DEFAULT_METAOBJECT_TYPES
from pa_widget_pipeline.sync.mapping import metaobject_handle, widget_fields

# Shopify's buckets (points, points restored per second).
STANDARD = (2000.0, 100.0)
PLUS = (20000.0, 1000.0)

SYNCED_TYPES = (1, 6, 5)  # recommendation, merchandising, bundle: every widget is written
RECOMMENDATION_TYPE = "pa_recommendation_widget"

_counter = iter(range(1, 1 << 30))


@dataclass
class BenchStore:
    """One store on both sandbox servers, with its secrets (sandbox-only values) kept apart from the registry."""

    key: str
    website_id: str
    env_prefix: str
    env: dict[str, str]
    shop: Any  # sandbox ShopState
    sandbox: Sandbox

    @property
    def token(self) -> str:
        return self.env[f"{self.env_prefix}_SHOPIFY_TOKEN"]

    @property
    def admin_url(self) -> str:
        return self.sandbox.admin_url(self.key)

    def registry_entry(self) -> dict[str, Any]:
        return self.sandbox.registry_entry(self.key, self.website_id, self.env_prefix)

    def pa_client(self, **options: Any) -> PAClient:
        return PAClient(
            store=self.key, api_url=self.sandbox.pa_url, auth_url=self.sandbox.pa_url, website_id=self.website_id,
            client_id=self.env[f"{self.env_prefix}_PA_CLIENT_ID"],
            client_secret=self.env[f"{self.env_prefix}_PA_CLIENT_SECRET"], **options,
        )

    def shopify_client(self, *, bulk_threshold: int | None = 300, bulk_poll_seconds: float = 1.0,
                       **options: Any) -> MetaobjectClient:
        client = make_shopify_client(store=self.key, admin_url=self.admin_url, api_version=DEFAULT_API_VERSION,
                                     access_token=self.token, bulk_threshold=bulk_threshold, **options)
        client.bulk_poll_seconds = bulk_poll_seconds
        return client

    def metaobject_count(self) -> int:
        return sum(len(v) for v in self.shop.metaobjects.values())


def add_store(sandbox: Sandbox, name: str, widgets: int = 0, *, bucket: tuple[float, float] = PLUS,
              types: tuple[int, ...] = SYNCED_TYPES) -> BenchStore:
    """A fresh store (unique key) with `widgets` PA widgets cycling through `types` and the contract definitions."""
    key = f"{name}-{next(_counter)}"
    website_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"pa-widget-bench/{key}"))
    prefix = "BENCH_" + key.upper().replace("-", "_")
    env = {
        f"{prefix}_SHOPIFY_TOKEN": f"shpat_bench_{uuid.uuid4().hex}",
        f"{prefix}_PA_CLIENT_ID": f"bench-{uuid.uuid4().hex[:12]}",
        f"{prefix}_PA_CLIENT_SECRET": f"bench-secret-{uuid.uuid4().hex}",
    }
    raw = [make_widget(i, website_id, types[i % len(types)]) for i in range(widgets)]
    sandbox.pa.add_website(website_id, env[f"{prefix}_PA_CLIENT_ID"], env[f"{prefix}_PA_CLIENT_SECRET"], raw)
    shop = sandbox.shopify.add_shop(key, env[f"{prefix}_SHOPIFY_TOKEN"], bucket_size=bucket[0],
                                    restore_rate=bucket[1])
    for type_key, metaobject_type in DEFAULT_METAOBJECT_TYPES.items():
        shop.create_definition(metaobject_type, contract_field_definitions(), name=f"PA {type_key} widget")
    return BenchStore(key, website_id, prefix, env, shop, sandbox)


def upsert_items(count: int, *, start: int = 0, pa_type: int = 1, website_id: str = "bench-site") -> list[UpsertItem]:
    """`count` metaobject payloads exactly as the sync maps PA widgets (handle, string fields, sync_hash)."""
    items = []
    for i in range(start, start + count):
        widget = Widget.model_validate(make_widget(i, website_id, pa_type))
        items.append(UpsertItem(metaobject_handle(widget.id), widget_fields(widget)))
    return items


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the duration (the registry reads secrets from the environment)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@dataclass
class BucketSampler:
    """Samples a sandbox shop's points spent and bucket level every `interval` seconds (a background thread),
    so a run can be split into the initial drain of the full bucket and the steady state after it."""

    shop: Any
    interval: float = 0.05
    samples: list[tuple[float, float, float]] = field(default_factory=list)  # (t, points_spent, available)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def sample(self) -> None:
        self.samples.append((time.monotonic(), float(self.shop.stats.points_spent), self.shop.bucket.available()))

    def __enter__(self) -> "BucketSampler":
        self.sample()

        def loop() -> None:
            while not self._stop.wait(self.interval):
                self.sample()

        self._thread = threading.Thread(target=loop, name="bucket-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        self.sample()

    def steady_state(self, restore_rate: float, drained_below: float) -> dict[str, Any]:
        """From the first sample with the bucket below `drained_below` to the first sample that saw every point
        spent: the points drawn from the refill (points spent minus what the bucket itself gave up over the window)
        per second, over the restore rate. 1.0 = every restored point used. None when the bucket never got that low."""
        start = next((i for i, (_, _, avail) in enumerate(self.samples) if avail < drained_below), None)
        if start is None:
            return {"ratio": None, "seconds": 0.0, "points": 0.0, "drained_after_seconds": None}
        last_points = self.samples[-1][1]
        end = next(i for i, s in enumerate(self.samples) if s[1] >= last_points)
        t0, p0, a0 = self.samples[start]
        t1, p1, a1 = self.samples[end]
        seconds = t1 - t0
        if seconds <= 0:
            return {"ratio": None, "seconds": 0.0, "points": 0.0,
                    "drained_after_seconds": round(t0 - self.samples[0][0], 2)}
        rate = (p1 - p0) / seconds
        # Points the bucket level gave up over the window were not refill; points it gained were refill left unused.
        from_refill = (p1 - p0 - max(0.0, a0 - a1)) / seconds
        return {
            "ratio": round(from_refill / restore_rate, 3),
            "points_per_second": round(rate, 1),
            "refill_points_per_second": round(from_refill, 1),
            "seconds": round(seconds, 2),
            "points": p1 - p0,
            "drained_after_seconds": round(t0 - self.samples[0][0], 2),
        }


class Timer:
    def __enter__(self) -> "Timer":
        self.started = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.started


def ratio(a: float | None, b: float | None, digits: int = 2) -> float | None:
    if a is None or not b:
        return None
    return round(a / b, digits)


def target(name: str, goal: str, value: Any, met: bool | None) -> dict[str, Any]:
    return {"name": name, "target": goal, "value": value, "met": met}

"""The baseline: how many integrations write metaobjects. Plain httpx, one metaobjectUpsert per request, and a
fixed 1 second sleep whenever Shopify answers THROTTLED (then the same write again). No cost arithmetic, no
batching, no pacing. Used only by the benchmarks, to compare against the project's MetaobjectClient.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import httpx

from pa_widget_pipeline.shopify.models import UpsertItem

UPSERT = (
    "mutation Upsert($handle: MetaobjectHandleInput!, $metaobject: MetaobjectUpsertInput!) {\n"
    "  metaobjectUpsert(handle: $handle, metaobject: $metaobject) {\n"
    "    metaobject { id }\n"
    "    userErrors { field message code }\n"
    "  }\n"
    "}"
)


@dataclass
class NaiveStats:
    requests: int = 0
    throttled: int = 0
    server_errors: int = 0
    written: int = 0
    failed: int = 0
    points: float = 0.0  # actualQueryCost summed over the answers
    slept_seconds: float = 0.0


class NaiveClient:
    """One request per metaobject; on THROTTLED sleep `throttle_sleep` seconds and send the same request again."""

    def __init__(self, admin_url: str, api_version: str, access_token: str, *, throttle_sleep: float = 1.0,
                 max_tries: int = 100, sleep: Callable[[float], None] = time.sleep):
        self.endpoint = f"{admin_url.rstrip('/')}/admin/api/{api_version}/graphql.json"
        self.headers = {"X-Shopify-Access-Token": access_token, "Content-Type": "application/json"}
        self.http = httpx.Client(timeout=30.0)
        self.throttle_sleep = throttle_sleep
        self.max_tries = max_tries
        self.sleep = sleep
        self.stats = NaiveStats()

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> "NaiveClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def upsert(self, metaobject_type: str, item: UpsertItem) -> bool:
        payload = {
            "query": UPSERT,
            "variables": {
                "handle": {"type": metaobject_type, "handle": item.handle},
                "metaobject": {"handle": item.handle,
                               "fields": [{"key": k, "value": v} for k, v in item.fields.items()]},
            },
        }
        for _ in range(self.max_tries):
            self.stats.requests += 1
            try:
                response = self.http.post(self.endpoint, json=payload, headers=self.headers)
                body = response.json()
            except (httpx.HTTPError, ValueError):
                self.stats.server_errors += 1
                self._sleep()
                continue
            cost = (body.get("extensions") or {}).get("cost") or {}
            self.stats.points += float(cost.get("actualQueryCost") or 0)
            codes = {(e.get("extensions") or {}).get("code") for e in body.get("errors") or [] if isinstance(e, dict)}
            if "THROTTLED" in codes:
                self.stats.throttled += 1
                self._sleep()
                continue
            if response.status_code >= 500 or codes:
                self.stats.server_errors += 1
                self._sleep()
                continue
            result = (body.get("data") or {}).get("metaobjectUpsert") or {}
            ok = bool((result.get("metaobject") or {}).get("id")) and not result.get("userErrors")
            if ok:
                self.stats.written += 1
            else:
                self.stats.failed += 1
            return ok
        self.stats.failed += 1
        return False

    def upsert_all(self, metaobject_type: str, items: list[UpsertItem]) -> NaiveStats:
        for item in items:
            self.upsert(metaobject_type, item)
        return self.stats

    def _sleep(self) -> None:
        self.stats.slept_seconds += self.throttle_sleep
        self.sleep(self.throttle_sleep)

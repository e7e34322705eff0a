"""2. No-op resync: a store whose widgets did not change, synced twice through the real sync path
(PAClient.fetch_widgets -> group_widgets -> sync_type per type with a MetaobjectClient: sync_store_plain).

The first sync writes every widget; the second must write nothing. What the second one still spends is reading:
the definition (with its metaobjectsCount) and every existing metaobject's sync_hash. Paged, that costs 2 points a
metaobject (250 a page); past 1,000 metaobjects of a type, when paging would cost more than the bucket holds, the
client reads the type with one bulk query instead, which the bucket does not pay for (bulkOperationRunQuery 10
points, 2 a status poll).
"""

from __future__ import annotations

from typing import Any

from benchmarks.common import PLUS, STANDARD, Timer, add_store, target
from pa_widget_pipeline.sandbox.runner import Sandbox
from pa_widget_pipeline.sync.plain import sync_store_plain

NAME = "noop_resync"
TITLE = "2. No-op resync: the same widgets synced twice"


def _sync(store, *, bulk_threshold: int | None, bulk_poll_seconds: float,
          bulk_read_threshold: int | None) -> dict[str, Any]:
    shop_before = (store.shop.stats.requests, store.shop.stats.points_spent, store.shop.stats.upserts,
                   store.shop.stats.deletes, store.shop.stats.bulk_operations, store.shop.stats.bulk_queries)
    pa_before = len(store.sandbox.pa.requests)
    with store.pa_client() as pa, store.shopify_client(
            bulk_threshold=bulk_threshold, bulk_poll_seconds=bulk_poll_seconds,
            bulk_read_threshold=bulk_read_threshold) as shopify, Timer() as t:
        result = sync_store_plain(store=store.key, pa_client=pa, shopify_client=shopify)
    stats = store.shop.stats
    return {
        "status": result.status,
        "total": result.total,
        "synced": result.synced,
        "unchanged": result.unchanged,
        "failed": result.failed,
        "shopify_writes": stats.upserts - shop_before[2] + stats.deletes - shop_before[3],
        "bulk_operations": stats.bulk_operations - shop_before[4],
        "bulk_queries": stats.bulk_queries - shop_before[5],
        "bulk_read_fallbacks": shopify.stats.bulk_read_fallbacks,
        "shopify_requests": stats.requests - shop_before[0],
        "shopify_points": stats.points_spent - shop_before[1],
        "pa_requests": len(store.sandbox.pa.requests) - pa_before,
        "seconds": round(t.seconds, 2),
        "seconds_by_phase": {k: round(v, 2) for k, v in result.seconds.items()},
    }


def measure(sandbox: Sandbox, n: int, *, bucket=PLUS, bulk_threshold: int | None = 300,
            bulk_poll_seconds: float = 1.0, bulk_read_threshold: int | None = 1000) -> dict[str, Any]:
    store = add_store(sandbox, "noop", n, bucket=bucket)
    options = dict(bulk_threshold=bulk_threshold, bulk_poll_seconds=bulk_poll_seconds,
                   bulk_read_threshold=bulk_read_threshold)
    first = _sync(store, **options)
    second = _sync(store, **options)
    return {
        "n": n,
        "bucket": {"maximum": bucket[0], "restore_rate": bucket[1]},
        "bulk_read_threshold": bulk_read_threshold,
        "first": first,
        "second": second,
        "second_points_per_widget": round(second["shopify_points"] / n, 2) if n else None,
        "second_seconds_of_bucket_restore": round(second["shopify_points"] / bucket[1], 1),
    }


def run(sandbox: Sandbox, *, quick: bool) -> dict[str, Any]:
    n = 1000 if quick else 5000
    plus = measure(sandbox, n, bucket=PLUS)
    standard = measure(sandbox, n, bucket=STANDARD)
    return summarize(plus, standard)


def summarize(plus: dict[str, Any], standard: dict[str, Any]) -> dict[str, Any]:
    writes = plus["second"]["shopify_writes"] + standard["second"]["shopify_writes"]
    return {
        "plus": plus,
        "standard": standard,
        "targets": [
            target("writes on the second (no-op) sync", "0", writes, writes == 0),
            target("widgets failed (both syncs, both buckets)", "0",
                   sum(r[s]["failed"] for r in (plus, standard) for s in ("first", "second")),
                   all(r[s]["failed"] == 0 for r in (plus, standard) for s in ("first", "second"))),
        ],
    }


def markdown(result: dict[str, Any]) -> str:
    out = []
    for label, key in (("Plus bucket (20,000 / 1,000 per s)", "plus"),
                       ("Standard bucket (2,000 / 100 per s)", "standard")):
        r = result[key]
        threshold = r.get("bulk_read_threshold")
        reads = ("250 a page" if threshold is None else f"a bulk query for more than {threshold:,} metaobjects of a "
                 "type when paging them would cost more than the bucket holds, else 250 a page")
        out.append(f"**{label}**: {r['n']:,} widgets (recommendation, merchandising, bundle), first sync writes "
                   f"them (bulk for more than 300 of a type), second sync finds them unchanged. Reads: {reads}.\n")
        out.append("| | first sync | second sync (no-op) |")
        out.append("|---|---:|---:|")
        f, s = r["first"], r["second"]
        for name, fn in (
            ("status", lambda x: x["status"]),
            ("synced / unchanged / failed", lambda x: f"{x['synced']:,} / {x['unchanged']:,} / {x['failed']}"),
            ("Shopify writes (upserts + deletes)", lambda x: f"{x['shopify_writes']:,}"),
            ("bulk mutations (writes)", lambda x: str(x["bulk_operations"])),
            ("bulk queries (reads) / fell back to pages", lambda x: f"{x.get('bulk_queries', 0)} / "
                                                                    f"{x.get('bulk_read_fallbacks', 0)}"),
            ("Shopify requests", lambda x: f"{x['shopify_requests']:,}"),
            ("Shopify points spent", lambda x: f"{x['shopify_points']:,.0f}"),
            ("PA requests", lambda x: f"{x['pa_requests']:,}"),
            ("wall time, s", lambda x: f"{x['seconds']:.1f}"),
        ):
            out.append(f"| {name} | {fn(f)} | {fn(s)} |")
        out.append(f"\nSecond sync: {r['second_points_per_widget']} points per unchanged widget (reads only), "
                   f"i.e. {r['second_seconds_of_bucket_restore']} s of this bucket's restore rate.\n")
    return "\n".join(out)

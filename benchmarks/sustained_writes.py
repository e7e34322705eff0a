"""1. Sustained writes: N changed metaobjects through the project's batched upserts (bulk disabled) and through the
naive client, each against a fresh shop with the same bucket, in the same run.

Figures per client: written, failed, requests, THROTTLED answers (and their share of requests), points spent,
wall time, points/s overall, and the steady state: points/s after the initial bucket is drained, over the restore
rate. Two settings:

* loopback: the sandbox answers in a millisecond, so neither client is slowed by the network; the bucket is the
  only limit once it is drained.
* Standard bucket (2,000 / 100 per s), starting empty: where a fixed 1 s sleep meets a slow refill.
* simulated round trip: the sandbox delays every GraphQL answer (ShopFaults.latency_seconds), as a real network
  does; the bucket starts empty so the whole run is steady state.
"""

from __future__ import annotations

from typing import Any

from benchmarks.common import (
    PLUS,
    RECOMMENDATION_TYPE,
    STANDARD,
    BucketSampler,
    Timer,
    add_store,
    ratio,
    target,
    upsert_items,
)
from benchmarks.naive_client import NaiveClient
from pa_widget_pipeline.sandbox.runner import DEFAULT_API_VERSION, Sandbox

NAME = "sustained_writes"
TITLE = "1. Sustained writes: batched upserts against the naive client"


def _prepare(sandbox: Sandbox, name: str, bucket: tuple[float, float], latency: float, start_available: float | None):
    store = add_store(sandbox, name, 0, bucket=bucket)
    store.shop.faults.latency_seconds = latency
    if start_available is not None:
        store.shop.bucket.set_available(start_available)
    return store


def _figures(*, items: int, written: int, failed: int, requests: int, throttled: int, points: float,
             seconds: float, sampler: BucketSampler, bucket: tuple[float, float], in_shop: int) -> dict[str, Any]:
    steady = sampler.steady_state(bucket[1], drained_below=0.1 * bucket[0])
    return {
        "items": items,
        "written": written,
        "failed": failed,
        "in_shop": in_shop,
        "requests": requests,
        "throttled": throttled,
        "throttled_share": round(throttled / requests, 4) if requests else 0.0,
        "points": points,
        "seconds": round(seconds, 2),
        "items_per_second": round(written / seconds, 1) if seconds else None,
        "points_per_second": round(points / seconds, 1) if seconds else None,
        "steady_state": steady,
    }


def measure_batched(sandbox: Sandbox, items, *, bucket=PLUS, latency: float = 0.0,
                    start_available: float | None = None) -> dict[str, Any]:
    store = _prepare(sandbox, "batched", bucket, latency, start_available)
    with store.shopify_client(bulk_threshold=None) as client, BucketSampler(store.shop) as sampler, Timer() as t:
        results = client.upsert_metaobjects(RECOMMENDATION_TYPE, items)
    stats = client.stats
    out = _figures(
        items=len(items), written=sum(r.ok for r in results), failed=sum(not r.ok for r in results),
        requests=stats.requests, throttled=stats.throttled, points=store.shop.stats.points_spent,
        seconds=t.seconds, sampler=sampler, bucket=bucket, in_shop=store.metaobject_count(),
    )
    out["items_per_request"] = round(len(items) / max(1, stats.requests), 1)
    out["pacing_wait_seconds"] = round(stats.pacing_wait_seconds, 2)
    out["sandbox_throttled"] = store.shop.stats.throttled
    return out


def measure_naive(sandbox: Sandbox, items, *, bucket=PLUS, latency: float = 0.0,
                  start_available: float | None = None, throttle_sleep: float = 1.0) -> dict[str, Any]:
    store = _prepare(sandbox, "naive", bucket, latency, start_available)
    with NaiveClient(store.admin_url, DEFAULT_API_VERSION, store.token, throttle_sleep=throttle_sleep) as client, \
            BucketSampler(store.shop) as sampler, Timer() as t:
        stats = client.upsert_all(RECOMMENDATION_TYPE, items)
    out = _figures(
        items=len(items), written=stats.written, failed=stats.failed, requests=stats.requests,
        throttled=stats.throttled, points=store.shop.stats.points_spent, seconds=t.seconds, sampler=sampler,
        bucket=bucket, in_shop=store.metaobject_count(),
    )
    out["slept_seconds"] = round(stats.slept_seconds, 1)
    out["sandbox_throttled"] = store.shop.stats.throttled
    return out


def compare(sandbox: Sandbox, n: int, *, bucket=PLUS, latency: float = 0.0, start_available: float | None = None,
            naive_throttle_sleep: float = 1.0) -> dict[str, Any]:
    """Both clients write the same `n` metaobjects, each into a fresh shop with the same bucket."""
    items = upsert_items(n)
    batched = measure_batched(sandbox, items, bucket=bucket, latency=latency, start_available=start_available)
    naive = measure_naive(sandbox, items, bucket=bucket, latency=latency, start_available=start_available,
                          throttle_sleep=naive_throttle_sleep)
    return {
        "n": n,
        "bucket": {"maximum": bucket[0], "restore_rate": bucket[1],
                   "starts_at": bucket[0] if start_available is None else start_available},
        "latency_seconds": latency,
        "batched": batched,
        "naive": naive,
        "naive_over_batched_wall_time": ratio(naive["seconds"], batched["seconds"]),
        "naive_over_batched_requests": ratio(naive["requests"], batched["requests"], 1),
    }


def run(sandbox: Sandbox, *, quick: bool) -> dict[str, Any]:
    if quick:
        loopback = compare(sandbox, 2500)
        standard = compare(sandbox, 50, bucket=STANDARD, start_available=0.0)
        rtt = compare(sandbox, 150, latency=0.05, start_available=0.0)
    else:
        loopback = compare(sandbox, 6000)
        standard = compare(sandbox, 200, bucket=STANDARD, start_available=0.0)
        rtt = compare(sandbox, 1000, latency=0.05, start_available=0.0)
    return summarize(loopback, standard, rtt)


def summarize(loopback: dict[str, Any], standard: dict[str, Any], rtt: dict[str, Any]) -> dict[str, Any]:
    b = loopback["batched"]
    steady = b["steady_state"]["ratio"]
    failed = sum(r["batched"]["failed"] for r in (loopback, standard, rtt))
    return {
        "loopback": loopback,
        "standard_bucket": standard,
        "round_trip_50ms": rtt,
        "targets": [
            target("steady-state points/s over restore rate (batched, loopback)", ">= 0.9", steady,
                   None if steady is None else steady >= 0.9),
            target("throttled answers / requests (batched, loopback)", "< 2%", b["throttled_share"],
                   b["throttled_share"] < 0.02),
            target("failed widgets (batched, every setting)", "0", failed, failed == 0),
        ],
    }


def markdown(result: dict[str, Any]) -> str:
    rows = [
        ("items written / failed", lambda c: f"{c['written']:,} / {c['failed']}"),
        ("requests", lambda c: f"{c['requests']:,}"),
        ("items per request", lambda c: f"{c['written'] / max(1, c['requests']):.1f}"),
        ("THROTTLED answers (share of requests)", lambda c: f"{c['throttled']:,} ({c['throttled_share']:.2%})"),
        ("points spent", lambda c: f"{c['points']:,.0f}"),
        ("wall time, s", lambda c: f"{c['seconds']:.1f}"),
        ("points/s overall", lambda c: f"{c['points_per_second']:,.0f}"),
        ("steady state: points/s / restore rate",
         lambda c: "n/a (bucket never drained)" if c["steady_state"]["ratio"] is None else
         f"{c['steady_state']['ratio']:.3f} (over {c['steady_state']['seconds']:.0f} s)"),
    ]
    out = ["Steady state: from the moment the bucket first holds less than 10% of its size until the last write, "
           "the points drawn from the refill per second (points spent minus what the bucket level itself gave "
           "up), over the restore rate; 1.0 = every restored point used. Sampled every 50 ms from the sandbox's "
           "counters, so the window's edges are exact to about one request (up to 250 points).\n"]
    for label, key in (("loopback, Plus bucket", "loopback"), ("loopback, Standard bucket", "standard_bucket"),
                       ("simulated 50 ms round trip, Plus bucket", "round_trip_50ms")):
        r = result[key]
        b = r["bucket"]
        out.append(f"**{label}**: {r['n']:,} changed metaobjects, bucket {b['maximum']:,.0f} points restoring "
                   f"{b['restore_rate']:,.0f}/s, starting at {b['starts_at']:,.0f}; "
                   f"answer delay {r['latency_seconds'] * 1000:.0f} ms.\n")
        out.append("| | batched (MetaobjectClient, bulk off) | naive (1 upsert/request, sleep 1 s on THROTTLED) |")
        out.append("|---|---:|---:|")
        for name, fn in rows:
            out.append(f"| {name} | {fn(r['batched'])} | {fn(r['naive'])} |")
        out.append(f"| naive / batched | wall time x{r['naive_over_batched_wall_time']} | "
                   f"requests x{r['naive_over_batched_requests']} |")
        if b["starts_at"] == 0:
            out.append("\nThe bucket starts empty, so the whole run is steady state; the batched client's first "
                       "request goes out before any answer has told it the bucket, and is THROTTLED once.")
        out.append("")
    return "\n".join(out)

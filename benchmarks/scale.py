"""5. Scale: one store of 500, 5,000 and 50,000 widgets (--quick: 500 and 2,000), a complete first sync each
(PA fetch of every page, group, diff against Shopify, writes: bulk for a type with more than 300 changes, batched
below) against a Plus bucket.

The sync runs in a child process (`python -m benchmarks.scale --child`, config on stdin) so that its memory is its
own: the sandbox servers, which hold every widget and metaobject, stay in the parent. Peak memory is the child's
RSS high-water mark as the kernel keeps it (VmHWM in /proc/self/status, the same figure as getrusage's ru_maxrss),
read by the child when its sync is done; the baseline is VmHWM right after its imports.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pa_widget_pipeline.sandbox.runner import Sandbox

# Only the standard library at module level: the child must not load the sandbox (uvicorn, graphql) it does not use.
PLUS = (20000.0, 1000.0)

NAME = "scale"
TITLE = "5. Scale: time and peak memory of one store's sync"
ROOT = Path(__file__).resolve().parent.parent
GIB = 1024 ** 3


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    if field == "VmHWM":
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux
    return None


def child_main() -> None:
    baseline_kib = _status_kib("VmHWM")  # the interpreter and this module only
    from pa_widget_pipeline.pa.client import PAClient
    from pa_widget_pipeline.shopify.metaobjects import make_shopify_client
    from pa_widget_pipeline.sync.plain import sync_store_plain

    cfg = json.load(sys.stdin)
    imported_kib = _status_kib("VmHWM")
    started = time.perf_counter()
    with PAClient(store=cfg["store"], api_url=cfg["pa_url"], auth_url=cfg["pa_url"], website_id=cfg["website_id"],
                  client_id=cfg["client_id"], client_secret=cfg["client_secret"]) as pa, \
            make_shopify_client(store=cfg["store"], admin_url=cfg["admin_url"], api_version=cfg["api_version"],
                                access_token=cfg["token"], bulk_threshold=cfg["bulk_threshold"]) as shopify:
        result = sync_store_plain(store=cfg["store"], pa_client=pa, shopify_client=shopify)
        stats = shopify.stats
    seconds = time.perf_counter() - started
    json.dump({
        "seconds": seconds,
        "seconds_by_phase": result.seconds,
        "status": result.status,
        "total": result.total,
        "synced": result.synced,
        "unchanged": result.unchanged,
        "failed": result.failed,
        "aborted": result.aborted,
        "shopify_requests": stats.requests,
        "throttled": stats.throttled,
        "bulk_operations": stats.bulk_operations,
        "bulk_fallbacks": stats.bulk_fallbacks,
        "peak_rss_kib": _status_kib("VmHWM"),
        "startup_rss_kib": baseline_kib,
        "after_imports_rss_kib": imported_kib,
    }, sys.stdout)


def measure(sandbox: Sandbox, n: int, *, bucket=PLUS, bulk_threshold: int | None = 300,
            timeout: float = 900) -> dict[str, Any]:
    from benchmarks.common import add_store
    from pa_widget_pipeline.sandbox.runner import DEFAULT_API_VERSION

    store = add_store(sandbox, f"scale{n}", n, bucket=bucket)
    cfg = {
        "store": store.key, "pa_url": sandbox.pa_url, "website_id": store.website_id,
        "client_id": store.env[f"{store.env_prefix}_PA_CLIENT_ID"],
        "client_secret": store.env[f"{store.env_prefix}_PA_CLIENT_SECRET"],
        "admin_url": store.admin_url, "api_version": DEFAULT_API_VERSION, "token": store.token,
        "bulk_threshold": bulk_threshold,
    }
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "benchmarks.scale", "--child"], input=json.dumps(cfg),
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=timeout)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"scale child for {n} widgets failed ({proc.returncode}): {proc.stderr[-2000:]}")
    out = json.loads(proc.stdout)
    out["seconds"] = round(out["seconds"], 2)
    out["seconds_by_phase"] = {k: round(v, 2) for k, v in out["seconds_by_phase"].items()}
    out["process_wall_seconds"] = round(wall, 2)
    out["n"] = n
    out["in_shop"] = store.metaobject_count()
    out["peak_rss_mib"] = round(out["peak_rss_kib"] / 1024, 1)
    out["after_imports_rss_mib"] = round(out["after_imports_rss_kib"] / 1024, 1)
    out["widgets_per_second"] = round(n / out["seconds"], 1) if out["seconds"] else None
    return out


def run(sandbox: Sandbox, *, quick: bool) -> dict[str, Any]:
    sizes = [500, 2000] if quick else [500, 5000, 50000]
    return summarize([measure(sandbox, n) for n in sizes])


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    from benchmarks.common import target

    largest = rows[-1]
    growth = [
        {"from": a["n"], "to": b["n"], "widgets_x": round(b["n"] / a["n"], 1),
         "time_x": round(b["seconds"] / a["seconds"], 1) if a["seconds"] else None}
        for a, b in zip(rows, rows[1:])
    ]
    failed = sum(r["failed"] for r in rows)
    return {
        "memory_measure": "child process RSS high-water mark (VmHWM), read by the child after its sync",
        "rows": rows,
        "growth": growth,
        "targets": [
            target(f"peak RSS of one store's sync at {largest['n']:,} widgets", "< 1 GiB",
                   f"{largest['peak_rss_mib']} MiB", largest["peak_rss_kib"] * 1024 < GIB),
            target("failed widgets (all sizes)", "0", failed, failed == 0),
        ],
    }


def markdown(result: dict[str, Any]) -> str:
    out = ["Complete first sync of one store (every widget written), in a child process; Plus bucket; bulk for a "
           "type with more than 300 changes. Memory: " + result["memory_measure"] + ".\n",
           "| widgets | synced / failed | Shopify requests | bulk ops | fetch, s | group, s | write (3 types), s | "
           "total, s | widgets/s | peak RSS, MiB (after imports) |",
           "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        ph = r["seconds_by_phase"]
        write = sum(v for k, v in ph.items() if k not in ("fetch", "group"))
        out.append(f"| {r['n']:,} | {r['synced']:,} / {r['failed']} | {r['shopify_requests']:,} | "
                   f"{r['bulk_operations']} | {ph['fetch']:.1f} | {ph['group']:.1f} | {write:.1f} | "
                   f"{r['seconds']:.1f} | {r['widgets_per_second']:,.0f} | {r['peak_rss_mib']:,.0f} "
                   f"({r['after_imports_rss_mib']:,.0f}) |")
    out.append("\nGrowth: " + "; ".join(f"{g['from']:,} -> {g['to']:,} widgets (x{g['widgets_x']}): time "
                                        f"x{g['time_x']}" for g in result["growth"]) + ".\n")
    return "\n".join(out)


if __name__ == "__main__":
    if sys.argv[1:] == ["--child"]:
        child_main()
    else:
        sys.exit("usage: python -m benchmarks.scale --child  (config as JSON on stdin; run benchmarks.run instead)")

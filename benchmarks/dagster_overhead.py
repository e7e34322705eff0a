"""4. Dagster overhead: the same store sync through `sync_stores` (pa_widget_pipeline/defs/launch.py, the code behind
`pa-widget-sync sync`, one run per store on a temporary SQLite DagsterInstance) and as a plain function
(sync_store_plain: fetch -> group -> sync_type per type), each path on its own fresh stores with identical widgets.

Overhead per partition = (Dagster time - plain time) / stores. Both paths use the same clients and bulk threshold.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.common import PLUS, Timer, add_store, environment, target
from pa_widget_pipeline.sandbox.runner import Sandbox
from pa_widget_pipeline.sync.plain import sync_store_plain

NAME = "dagster_overhead"
TITLE = "4. Dagster overhead per partition"


def _stores(sandbox: Sandbox, name: str, count: int, widgets: int):
    return [add_store(sandbox, name, widgets, bucket=PLUS) for _ in range(count)]


def plain_path(stores) -> dict[str, Any]:
    synced = failed = 0
    statuses = []
    with Timer() as t:
        for store in stores:
            with store.pa_client() as pa, store.shopify_client() as shopify:
                result = sync_store_plain(store=store.key, pa_client=pa, shopify_client=shopify)
            synced += result.synced
            failed += result.failed
            statuses.append(result.status)
    return {"seconds": round(t.seconds, 3), "synced": synced, "failed": failed, "statuses": sorted(set(statuses))}


def dagster_path(sandbox: Sandbox, stores) -> dict[str, Any]:
    from dagster import DagsterInstance

    from pa_widget_pipeline.defs.launch import sync_stores

    env: dict[str, str] = {}
    for store in stores:
        env.update(store.env)
    with tempfile.TemporaryDirectory(prefix="pa-bench-dagster-") as tmp:
        registry = Sandbox.write_registry(f"{tmp}/stores.yaml", [s.registry_entry() for s in stores])
        env["PA_WIDGET_STORES"] = str(registry)
        home = Path(tmp) / "dagster_home"
        home.mkdir()
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
        with environment(env), DagsterInstance.local_temp(tempdir=str(home)) as instance, Timer() as t:
            entries = sync_stores(instance, [s.key for s in stores], out=io.StringIO())
    return {
        "seconds": round(t.seconds, 3),
        "synced": sum(e.synced for e in entries),
        "failed": sum(e.failed for e in entries),
        "statuses": sorted({e.status for e in entries}),
        "runs": len(entries),
        "first_problem": next((f"{e.store}: {e.message or (e.errors[0].message if e.errors else e.status)}"
                               for e in entries if e.status != "success"), None),
    }


def measure(sandbox: Sandbox, *, stores: int, widgets: int, warm: bool = True) -> dict[str, Any]:
    if warm:  # import Dagster and load the definitions once, outside the measurement
        dagster_path(sandbox, _stores(sandbox, "warm", 1, 3))
    dagster = dagster_path(sandbox, _stores(sandbox, "dagster", stores, widgets))
    plain = plain_path(_stores(sandbox, "plain", stores, widgets))
    overhead = (dagster["seconds"] - plain["seconds"]) / stores
    return {
        "stores": stores,
        "widgets_per_store": widgets,
        "dagster": dagster,
        "plain": plain,
        "overhead_seconds_per_partition": round(overhead, 3),
        "dagster_over_plain": round(dagster["seconds"] / plain["seconds"], 1) if plain["seconds"] else None,
    }


def run(sandbox: Sandbox, *, quick: bool) -> dict[str, Any]:
    one = measure(sandbox, stores=1, widgets=100)
    backfill = measure(sandbox, stores=5 if quick else 20, widgets=20, warm=False)
    return summarize(one, backfill)


def summarize(one: dict[str, Any], backfill: dict[str, Any]) -> dict[str, Any]:
    failed = sum(r[p]["failed"] for r in (one, backfill) for p in ("dagster", "plain"))
    return {
        "one_store": one,
        "backfill": backfill,
        "targets": [target("failed widgets (both paths)", "0", failed, failed == 0)],
    }


def markdown(result: dict[str, Any]) -> str:
    out = ["| | stores x widgets | Dagster (sync_stores), s | plain function, s | Dagster / plain | "
           "overhead per partition, s |",
           "|---|---:|---:|---:|---:|---:|"]
    for label, key in (("one store", "one_store"), ("backfill-like, in sequence", "backfill")):
        r = result[key]
        out.append(f"| {label} | {r['stores']} x {r['widgets_per_store']} | {r['dagster']['seconds']:.2f} | "
                   f"{r['plain']['seconds']:.2f} | x{r['dagster_over_plain']} | "
                   f"{r['overhead_seconds_per_partition']:.2f} |")
    out.append("\nBoth paths wrote the same widgets: "
               + "; ".join(f"{key}: Dagster {result[key]['dagster']['synced']} synced / "
                           f"{result[key]['dagster']['failed']} failed, plain {result[key]['plain']['synced']} / "
                           f"{result[key]['plain']['failed']}" for key in ("one_store", "backfill"))
               + ". The one-store Dagster figure excludes a warm-up run (imports, definitions).\n")
    return "\n".join(out)

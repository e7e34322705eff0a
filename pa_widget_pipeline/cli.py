"""`pa-widget-sync`: run syncs through Dagster, read the sync history, serve the sandbox, run the demo."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Sequence

DEFAULT_DAGSTER_HOME = ".dagster_home"


def ensure_dagster_home(explicit: str | None = None) -> Path:
    """DAGSTER_HOME as given, else `.dagster_home` in the current folder: a SQLite instance that outlives the
    command, so `dagster dev` started from the same folder shows the same runs."""
    home = Path(explicit or os.environ.get("DAGSTER_HOME") or Path.cwd() / DEFAULT_DAGSTER_HOME).resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        # Dagster's defaults (SQLite in this folder); the file only silences its "no dagster.yaml" warning.
        config.write_text("# Local instance: SQLite run, event and schedule storage in this folder.\n"
                          "telemetry:\n  enabled: false\n")
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def _instance(args: argparse.Namespace):
    from dagster import DagsterInstance

    ensure_dagster_home(getattr(args, "dagster_home", None))
    return DagsterInstance.get()


def _print_history(entries, as_json: bool) -> None:
    from pa_widget_pipeline.defs.history import render_history_table

    out = sys.stdout
    if as_json:
        out.write(json.dumps([e.model_dump(mode="json") for e in entries], indent=2) + "\n")
    else:
        render_history_table(entries, out)


def cmd_history(args: argparse.Namespace) -> int:
    from pa_widget_pipeline.defs.history import read_history

    entries = read_history(_instance(args), store=args.store, limit=args.limit)
    _print_history(entries, args.json)
    return 0


def cmd_sync(args: argparse.Namespace) -> int:
    from pa_widget_pipeline.defs.launch import sync_stores
    from pa_widget_pipeline.stores import RegistryError, load_registry

    if args.registry:
        os.environ["PA_WIDGET_STORES"] = str(Path(args.registry).resolve())
    try:
        registry = load_registry(require_secrets=False)
    except RegistryError as exc:
        print(exc, file=sys.stderr)
        return 2
    keys = registry.keys if args.all else args.store
    unknown = [k for k in keys if k not in registry.keys]
    if unknown:
        print(f"not in the store registry: {', '.join(unknown)} (known: {', '.join(registry.keys)})", file=sys.stderr)
        return 2
    entries = sync_stores(
        _instance(args), keys, dry_run=args.dry_run, allow_mass_delete=args.allow_mass_delete,
        rewrite_unchanged=args.rewrite_unchanged,
        verbose=args.verbose, out=sys.stderr,
    )
    _print_history(entries, args.json)
    return 0 if len(entries) == len(keys) and all(e.status == "success" for e in entries) else 1


def cmd_sandbox(args: argparse.Namespace) -> int:
    from pa_widget_pipeline.sandbox.demo import DEMO_PA_PORT, DEMO_SHOPIFY_PORT, demo_environment, load_demo
    from pa_widget_pipeline.sandbox.runner import Sandbox

    sandbox = Sandbox(pa_port=args.pa_port or DEMO_PA_PORT, shopify_port=args.shopify_port or DEMO_SHOPIFY_PORT)
    if not args.empty:
        load_demo(sandbox.pa, sandbox.shopify)
    try:
        sandbox.start()
    except OSError as exc:
        print(f"cannot start the sandbox: {exc} (is another sandbox running?)", file=sys.stderr)
        return 2
    print(f"PA sandbox:      {sandbox.pa_url}  (token: {sandbox.pa_url}/auth/connect/token, widgets: /3.0/widgets)")
    print(f"Shopify sandbox: {sandbox.shopify_url}/shops/<store>/admin/api/<version>/graphql.json")
    if not args.empty:
        print("Demo stores loaded. Their sandbox-only credentials, for `dagster dev` or `pa-widget-sync sync`:")
        for name, value in demo_environment().items():
            print(f"  export {name}={value}")
    print("Serving until Ctrl-C.", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        sandbox.stop()
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from pa_widget_pipeline.defs.launch import sync_stores
    from pa_widget_pipeline.sandbox.demo import DEMO_PA_PORT, DEMO_SHOPIFY_PORT, demo_environment, load_demo
    from pa_widget_pipeline.sandbox.runner import Sandbox
    from pa_widget_pipeline.stores import DEMO_REGISTRY_PATH, load_registry

    for name, value in demo_environment().items():
        os.environ.setdefault(name, value)
    os.environ["PA_WIDGET_STORES"] = str(DEMO_REGISTRY_PATH)
    instance = _instance(args)
    sandbox = Sandbox(pa_port=DEMO_PA_PORT, shopify_port=DEMO_SHOPIFY_PORT)
    load_demo(sandbox.pa, sandbox.shopify)
    try:
        sandbox.start()
    except OSError as exc:
        print(f"cannot start the sandbox on ports {DEMO_PA_PORT}/{DEMO_SHOPIFY_PORT}: {exc}. "
              "Stop the other sandbox, or run `pa-widget-sync sync --all` against it.", file=sys.stderr)
        return 2
    try:
        print(f"Sandbox up: PA {sandbox.pa_url}, Shopify {sandbox.shopify_url}. "
              f"Dagster instance: {os.environ['DAGSTER_HOME']}", file=sys.stderr)
        keys = load_registry(DEMO_REGISTRY_PATH).keys
        entries = sync_stores(instance, keys, verbose=args.verbose, out=sys.stderr)
    finally:
        sandbox.stop()
    print("\nSync history of this demo (newest last):")
    _print_history(entries, args.json)
    print(f"\nAll runs: `pa-widget-sync history`; the UI: `DAGSTER_HOME={os.environ['DAGSTER_HOME']} "
          "dagster dev -w workspace.yaml`")
    return 0 if [e.status for e in entries] == ["success", "success", "partial"] else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pa-widget-sync", description=__doc__)
    parser.add_argument("--dagster-home", help="Dagster instance folder (default: $DAGSTER_HOME or ./.dagster_home)")
    sub = parser.add_subparsers(dest="command", required=True)

    sync = sub.add_parser("sync", help="sync stores through Dagster on the configured instance")
    which = sync.add_mutually_exclusive_group(required=True)
    which.add_argument("--store", action="append", metavar="KEY", help="a store key (repeatable)")
    which.add_argument("--all", action="store_true", help="every store of the registry")
    sync.add_argument("--registry", help="store registry YAML (default: $PA_WIDGET_STORES or the demo registry)")
    sync.add_argument("--dry-run", action="store_true", help="fetch, check and diff; write nothing")
    sync.add_argument("--allow-mass-delete", action="store_true", help="allow deleting most of a type's metaobjects")
    sync.add_argument("--rewrite-unchanged", action="store_true",
                      help="write every widget even when its sync_hash matches (repairs values changed in Shopify)")
    sync.add_argument("--json", action="store_true", help="print the history entries as JSON")
    sync.add_argument("-v", "--verbose", action="store_true", help="show Dagster's own log lines")
    sync.set_defaults(func=cmd_sync)

    history = sub.add_parser("history", help="show the sync history from the Dagster instance")
    history.add_argument("--store", help="only this store")
    history.add_argument("--limit", type=int, default=20, help="newest N entries (default 20)")
    history.add_argument("--json", action="store_true", help="JSON instead of a table")
    history.set_defaults(func=cmd_history)

    sandbox = sub.add_parser("sandbox", help="serve the local PA and Shopify sandboxes until stopped")
    sandbox.add_argument("--pa-port", type=int, default=0, help="default 8789")
    sandbox.add_argument("--shopify-port", type=int, default=0, help="default 8790")
    sandbox.add_argument("--empty", action="store_true", help="no demo stores")
    sandbox.set_defaults(func=cmd_sandbox)

    demo = sub.add_parser("demo", help="start the sandbox, sync every demo store, print the history")
    demo.add_argument("--json", action="store_true")
    demo.add_argument("-v", "--verbose", action="store_true")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "dagster_home", None):
        ensure_dagster_home(args.dagster_home)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

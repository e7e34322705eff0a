"""Run the benchmarks against the sandbox on loopback and write their figures.

    python -m benchmarks.run [--quick] [--only NAME ...] [--out DIR]

Writes DIR/latest.json (every figure, with date, machine, versions and git commit) and DIR/RESULTS.md (a table
per benchmark), both replaced by each run. DIR defaults to benchmarks/results.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import logging
import os
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

MODULES = ("sustained_writes", "noop_resync", "bulk_vs_batched", "dagster_overhead", "scale")
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = Path(__file__).resolve().parent / "results"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git(*args: str) -> str | None:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "load_average_at_start": [round(x, 2) for x in load] if load else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "dagster": _version("dagster"),
        "httpx": _version("httpx"),
        "pandas": _version("pandas"),
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
    }


def render_markdown(report: dict[str, Any], modules: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        "# Benchmark results",
        "",
        f"Latest run: {m['date']}, `{report['command']}`{' (quick sizes)' if report['quick'] else ''}. "
        f"Machine: {m['cpu_count']} x {m['cpu_model']} (shared; load average at start "
        f"{m['load_average_at_start']}), Python {m['python']}, dagster {m['dagster']}, httpx {m['httpx']}, "
        f"pandas {m['pandas']}, commit {(m['git_commit'] or '?')[:10]}"
        f"{' + uncommitted changes' if m['git_dirty'] else ''}.",
        "",
        "Everything runs against the local sandbox servers over HTTP on loopback (`Sandbox()`, free ports). Counts "
        "and ratios are the results; absolute times depend on this machine and are context only. Every figure is in "
        "`latest.json`.",
        "",
        "## Targets",
        "",
        "| benchmark | target | goal | value | met |",
        "|---|---|---|---|---|",
    ]
    for name, result in report["results"].items():
        for t in result.get("targets", []):
            met = {True: "yes", False: "**no**", None: "n/a"}[t["met"]]
            lines.append(f"| {name} | {t['name']} | {t['target']} | {t['value']} | {met} |")
    for name, result in report["results"].items():
        module = modules[name]
        lines += ["", f"## {module.TITLE}", "", f"({result['seconds']:.0f} s)", ""]
        if "error" in result:
            lines.append(f"Failed: `{result['error']}`")
        else:
            lines.append(module.markdown(result))
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="far smaller sizes (about two minutes)")
    parser.add_argument("--only", nargs="+", choices=MODULES, metavar="NAME",
                        help=f"run only these benchmarks: {', '.join(MODULES)}")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where latest.json and RESULTS.md go")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)  # the clients log throttle waits and bulk fallbacks at INFO/WARNING
    warnings.filterwarnings("ignore", message=".*(is currently in preview|is currently in beta).*")

    from pa_widget_pipeline.sandbox.runner import Sandbox

    names = list(args.only or MODULES)
    modules = {name: importlib.import_module(f"benchmarks.{name}") for name in names}
    command = "python -m benchmarks.run" + (" --quick" if args.quick else "") + (
        f" --only {' '.join(args.only)}" if args.only else "")
    report: dict[str, Any] = {"command": command, "quick": args.quick, "machine": machine_info(), "results": {}}
    started = time.perf_counter()
    with Sandbox() as sandbox:
        for name, module in modules.items():
            print(f"[benchmarks] {name} ...", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            try:
                result = module.run(sandbox, quick=args.quick)
            except Exception as exc:  # noqa: BLE001 - one broken benchmark must not lose the others' figures
                logging.exception("benchmark %s failed", name)
                result = {"error": f"{type(exc).__name__}: {exc}", "targets": []}
            result["seconds"] = round(time.perf_counter() - t0, 1)
            report["results"][name] = result
            for t in result.get("targets", []):
                print(f"[benchmarks]   {t['name']}: {t['value']} (target {t['target']}, met: {t['met']})",
                      file=sys.stderr, flush=True)
    report["total_seconds"] = round(time.perf_counter() - started, 1)

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (args.out / "RESULTS.md").write_text(render_markdown(report, modules), encoding="utf-8")
    print(f"[benchmarks] done in {report['total_seconds']:.0f} s: {args.out / 'latest.json'}, "
          f"{args.out / 'RESULTS.md'}", file=sys.stderr)
    return 1 if any("error" in r for r in report["results"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())

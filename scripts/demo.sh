#!/usr/bin/env bash
# The main job: set up, start the sandbox, sync every demo store through Dagster on a local SQLite
# instance (./.dagster_home, kept for `dagster dev`), and print the sync history.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh
exec .venv/bin/pa-widget-sync demo "$@"

#!/usr/bin/env bash
# The test command: installs the venv when missing, starts a throwaway PostgreSQL when none is given
# (PA_WIDGET_PG_URL), and runs the whole suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh
if [ -z "${PA_WIDGET_PG_URL:-}" ]; then
  pgdir=$(mktemp -d /tmp/pa-widget-pg.XXXXXX)
  chmod 755 "$pgdir"
  if PA_WIDGET_PG_URL=$(scripts/postgres.sh start "$pgdir"); then
    export PA_WIDGET_PG_URL
    trap 'scripts/postgres.sh stop "$pgdir"' EXIT
  else
    echo "PostgreSQL is not installed: the PostgreSQL tests will be skipped (CI runs them)." >&2
  fi
fi
.venv/bin/pytest -n 2 --dist loadfile "$@"

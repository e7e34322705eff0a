#!/usr/bin/env bash
# Idempotent set-up: a .venv with the project and its dev extra, reinstalled when pyproject.toml changes.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/pa-widget-sync ] || [ pyproject.toml -nt .venv/.installed ]; then
  echo "setting up .venv (first run only) ..." >&2
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip >&2
  .venv/bin/pip install -q -e '.[dev]' >&2
  touch .venv/.installed
fi

#!/usr/bin/env bash
# Create or reuse .venv and install ionworks-prefect with the extras the commands need.
# Sourced by demo.sh and test.sh; safe to run again (it re-installs only when pyproject.toml changed).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${IONWORKS_PREFECT_VENV:-$root/.venv}"
python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null 2>&1 || python=python3

if [ ! -x "$venv/bin/python" ]; then
  echo "Creating virtual environment in $venv"
  "$python" -m venv "$venv"
fi
stamp="$venv/.ionworks-prefect-installed"
digest="$(sha256sum "$root/pyproject.toml" | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$digest" ]; then
  echo "Installing ionworks-prefect and its dependencies (first run takes a few minutes)"
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  "$venv/bin/python" -m pip install --quiet -e "$root[test,docker,biologic-mpr]"
  echo "$digest" > "$stamp"
fi
export PATH="$venv/bin:$PATH"
export PREFECT_SERVER_ANALYTICS_ENABLED=false
export DO_NOT_TRACK=1
